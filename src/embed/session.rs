//! The live engine as the collector drives it: OTLP bytes in per batch, a clock tick, and
//! signals out as OTLP bytes. Everything the C ABI does, in safe code; `ffi.rs` only
//! translates pointers and codes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use prost::Message;

use super::journal::Journal;
use super::outbox::Outbox;

use crate::diagnostic::{Report, SourceFile};
use crate::engine::buffer::BufferConfig;
use crate::engine::ratelimit::LogLimit;
use crate::engine::signal::{Mode, Signal};
use crate::engine::{Counters, Engine, EngineConfig, RuleCounts, Stats};
use crate::otlp;
use crate::otlp::encode::{self, Detected};
use crate::rules::ruleset::RuleSet;
use crate::trace::projected::Trace;
use crate::trace::TraceId;

/// What a live engine sends out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outputs {
    /// Signals as OTLP log records (the connector).
    pub logs: bool,
    /// Signals as violation spans (the processor with `emit_violation_spans`).
    pub spans: bool,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            logs: true,
            spans: false,
        }
    }
}

/// Why a live call failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No rule file was given.
    #[error("no rule files given")]
    NoRules,
    /// The rules do not load: every error, located (rendered as text by `Display`).
    #[error("{}", .0.render())]
    Rules(Report),
    /// The bytes are not an OTLP `ExportTraceServiceRequest`.
    #[error("{0}")]
    Decode(#[from] otlp::DecodeError),
    /// The engine was shut down.
    #[error("the engine is shut down")]
    ShutDown,
    /// A feed number past [`MAX_FEEDS`].
    #[error("feed {0} is out of range: feeds are numbered 0 to 63")]
    Feed(u32),
}

/// How many inputs may share one engine ([`Live::ingest`]'s `feed`).
pub const MAX_FEEDS: u32 = 64;

/// The digest of rule files as given (names and texts, in order): a reload of the same
/// files is recognised without loading them.
fn sources_digest(sources: &[SourceFile]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    for s in sources {
        h.write(s.name.as_bytes());
        h.write_u8(0xff);
        h.write(s.text.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// A live engine with its outgoing queues.
pub struct Live {
    engine: Engine,
    outputs: Outputs,
    logs: Outbox,
    spans: Outbox,
    decode_errors: AtomicU64,
    invalid_spans: AtomicU64,
    own_spans: AtomicU64,
    /// Unreadable spans are logged at most once per interval.
    invalid_logged: LogLimit,
    /// The digest of the rule files last loaded ([`sources_digest`]).
    sources: parking_lot::Mutex<u64>,
    rule_changes: AtomicU64,
    shut_down: AtomicBool,
    /// Which stored batches are still needed (a host with storage).
    journal: parking_lot::Mutex<Journal>,
}

/// Loads rule files (name and text each), or returns every error rendered.
pub fn load_rules(sources: Vec<SourceFile>) -> Result<RuleSet, LiveError> {
    if sources.is_empty() {
        return Err(LiveError::NoRules);
    }
    match RuleSet::from_sources(sources) {
        Ok((rules, warnings)) => {
            for w in &warnings.items {
                tracing::warn!(target: "betrace::rules", "{}", warnings.render_one(w).trim_end());
            }
            Ok(rules)
        }
        Err(report) => Err(LiveError::Rules(report)),
    }
}

impl Live {
    /// A live engine from rule files (name and text each).
    pub fn new(
        rules: Vec<SourceFile>,
        buffer: BufferConfig,
        outputs: Outputs,
    ) -> Result<Live, LiveError> {
        let sources = sources_digest(&rules);
        let rules = load_rules(rules)?;
        tracing::info!(
            target: "betrace",
            rules = rules.rules().len(),
            digest = %format_args!("{:016x}", rules.digest()),
            "rules loaded"
        );
        Ok(Live {
            engine: Engine::new(
                rules,
                EngineConfig {
                    buffer,
                    mode: Mode::Live,
                    window: None,
                    evidence: false,
                },
            ),
            outputs,
            logs: Outbox::default(),
            spans: Outbox::default(),
            decode_errors: AtomicU64::new(0),
            invalid_spans: AtomicU64::new(0),
            own_spans: AtomicU64::new(0),
            invalid_logged: LogLimit::default(),
            sources: parking_lot::Mutex::new(sources),
            rule_changes: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
            journal: parking_lot::Mutex::new(Journal::default()),
        })
    }

    /// Replaces the rules when they changed, and says whether they did; on error the old
    /// ones keep running. The same files as last loaded (names and texts) cost nothing and
    /// log nothing — a host may call this every second. Files that changed without changing
    /// a rule (a comment, the order of rules) replace nothing. A change is logged once, at
    /// info, with the rules added, removed and edited and the new digest.
    pub fn set_rules(&self, rules: Vec<SourceFile>) -> Result<bool, LiveError> {
        let digest = sources_digest(&rules);
        let mut loaded = self.sources.lock();
        if *loaded == digest {
            return Ok(false);
        }
        let new = load_rules(rules)?;
        *loaded = digest;
        let changes = new.changes_from(&self.engine.rules());
        if changes.is_empty() {
            return Ok(false);
        }
        tracing::info!(
            target: "betrace",
            rules = new.rules().len(),
            added = %changes.added.join(", "),
            removed = %changes.removed.join(", "),
            edited = %changes.edited.join(", "),
            digest = %format_args!("{:016x}", new.digest()),
            "rules reloaded"
        );
        self.engine.set_rules(new);
        self.rule_changes.fetch_add(1, Relaxed);
        Ok(true)
    }

    /// Ingests one OTLP `ExportTraceServiceRequest` that came in through `feed` (below
    /// [`MAX_FEEDS`]; 0 for a host with one input): the violation spans of a trace are
    /// taken by every feed that carried spans of it ([`Live::take_spans`]).
    pub fn ingest(&self, bytes: &[u8], feed: u32, now: u64) -> Result<(), LiveError> {
        let fragments = self.fragments(bytes, feed, now)?;
        let signals = self.engine.ingest(fragments, now);
        self.queue(signals, now);
        Ok(())
    }

    /// Ingests a batch the host has written to storage under sequence number `seq` (rising
    /// from one batch to the next; judged trace ids taken with [`Live::take_journal`] come
    /// in the same sequence): as [`Live::ingest`], and the journal learns which traces the
    /// batch carried, so that [`Live::take_journal`] says when it may be deleted. A batch
    /// that does not decode is free at once.
    pub fn ingest_stored(
        &self,
        bytes: &[u8],
        feed: u32,
        now: u64,
        seq: u64,
    ) -> Result<(), LiveError> {
        self.engine.keep_judged();
        let fragments = self.stored_fragments(bytes, feed, now, seq)?;
        let signals = self.engine.ingest(fragments, now);
        self.queue(signals, now);
        Ok(())
    }

    /// Brings back a batch kept in storage across a restart (what [`Live::ingest_stored`]
    /// was given, with the time it arrived), judging nothing: stored batches and judged
    /// ids ([`Live::restore_judged`]) handed back in their sequence order leave the engine
    /// holding what it held before, and the next tick judges what fell due meanwhile.
    pub fn restore(&self, bytes: &[u8], feed: u32, now: u64, seq: u64) -> Result<(), LiveError> {
        self.engine.keep_judged();
        let fragments = self.stored_fragments(bytes, feed, now, seq)?;
        self.engine.restore(fragments, now);
        Ok(())
    }

    /// After a restart that stood `extra` ns: traces whose latest span arrives before
    /// `until` wait `extra` longer than the idle timeout, so that the spans their senders
    /// queued meanwhile, retried each after its own backoff, still join them
    /// ([`crate::engine::buffer::TraceBuffer::extend_idle`]).
    pub fn extend_idle(&self, until: u64, extra: u64) -> Result<(), LiveError> {
        if self.shut_down.load(Relaxed) {
            return Err(LiveError::ShutDown);
        }
        self.engine.extend_idle(until, extra);
        Ok(())
    }

    /// Brings back the ids of traces judged before a restart: they are dropped without
    /// being judged again, and their later spans count as late.
    pub fn restore_judged(&self, ids: &[TraceId]) -> Result<(), LiveError> {
        if self.shut_down.load(Relaxed) {
            return Err(LiveError::ShutDown);
        }
        self.engine.keep_judged();
        let mut journal = self.journal.lock();
        for id in ids {
            self.engine.forget(*id);
            journal.judged(id);
        }
        Ok(())
    }

    /// The fragments of a stored batch, the journal told which traces it carried; a batch
    /// that does not decode is free at once. Each `seq` is given once.
    fn stored_fragments(
        &self,
        bytes: &[u8],
        feed: u32,
        now: u64,
        seq: u64,
    ) -> Result<Vec<Trace>, LiveError> {
        let fragments = self.fragments(bytes, feed, now).inspect_err(|e| {
            if matches!(e, LiveError::Decode(_)) {
                self.journal.lock().add(seq, []);
            }
        })?;
        self.journal
            .lock()
            .add(seq, fragments.iter().map(|f| f.trace_id));
        Ok(fragments)
    }

    /// The ids of the traces judged since the last call (to store, in sequence with the
    /// batches), and the sequence numbers of the stored batches no longer needed (to
    /// delete in the same write). Exact when no ingest runs meanwhile: the host takes the
    /// journal with ingest held off, together with the signals those judgements produced.
    pub fn take_journal(&self) -> (Vec<TraceId>, Vec<u64>) {
        let mut judged = self.engine.take_judged();
        // A trace judged and waiting again (a late span came after its deadline) is still
        // held: its batches stay, and it is not written down as judged — after a crash it
        // is judged again whole (its signals may come twice; none is lost).
        judged.retain(|id| !self.engine.is_waiting(id));
        let mut journal = self.journal.lock();
        for id in &judged {
            journal.judged(id);
        }
        journal.settle(|id| self.engine.is_waiting(id));
        (judged, journal.take_freed())
    }

    /// Decodes a batch into fragments of the traces it carries, each marked with `feed`,
    /// counting and logging what cannot be read.
    fn fragments(&self, bytes: &[u8], feed: u32, now: u64) -> Result<Vec<Trace>, LiveError> {
        if feed >= MAX_FEEDS {
            return Err(LiveError::Feed(feed));
        }
        if self.shut_down.load(Relaxed) {
            return Err(LiveError::ShutDown);
        }
        let rules = self.engine.rules();
        let batch = otlp::decode_protobuf(bytes, rules.projection()).inspect_err(|e| {
            self.decode_errors.fetch_add(1, Relaxed);
            tracing::warn!(target: "betrace", error = %e, "batch not decoded");
        })?;
        if batch.own_spans > 0 {
            self.own_spans.fetch_add(batch.own_spans, Relaxed);
        }
        if batch.invalid_spans > 0 {
            let total =
                self.invalid_spans.fetch_add(batch.invalid_spans, Relaxed) + batch.invalid_spans;
            if self.invalid_logged.due(now) {
                tracing::warn!(
                    target: "betrace",
                    skipped = batch.invalid_spans,
                    total,
                    first = batch.first_invalid.as_deref().unwrap_or(""),
                    "unreadable spans skipped; the rest of each batch is judged"
                );
            }
        }
        let mut fragments = batch.fragments;
        fragments.iter_mut().for_each(|f| f.feeds = 1 << feed);
        Ok(fragments)
    }

    /// Judges traces whose time has come.
    pub fn tick(&self, now: u64) {
        let signals = self.engine.tick(now);
        self.queue(signals, now);
    }

    /// Judges everything held; later ingests fail with [`LiveError::ShutDown`].
    pub fn shutdown(&self, now: u64) {
        self.shut_down.store(true, Relaxed);
        let signals = self.engine.shutdown();
        self.queue(signals, now);
    }

    fn queue(&self, signals: Vec<Signal>, now: u64) {
        if signals.is_empty() {
            return;
        }
        let detected: Vec<Detected> = signals
            .into_iter()
            .map(|signal| Detected {
                signal,
                detected_unix_nano: now,
            })
            .collect();
        if self.outputs.spans {
            self.spans.push(detected.clone());
        }
        if self.outputs.logs {
            self.logs.push(detected);
        }
    }

    /// Takes the waiting signals as `ExportLogsServiceRequest` bytes, and how many.
    pub fn take_logs(&self) -> (Vec<u8>, usize) {
        let taken = self.logs.take();
        if taken.is_empty() {
            return (Vec::new(), 0);
        }
        (encode::logs_request(&taken).encode_to_vec(), taken.len())
    }

    /// Takes the waiting violation spans of the traces `feed` carried as
    /// `ExportTraceServiceRequest` bytes, and how many (none for a feed past
    /// [`MAX_FEEDS`]).
    pub fn take_spans(&self, feed: u32) -> (Vec<u8>, usize) {
        if feed >= MAX_FEEDS {
            return (Vec::new(), 0);
        }
        let taken = self.spans.take_feed(feed);
        if taken.is_empty() {
            return (Vec::new(), 0);
        }
        (encode::violation_spans(&taken).encode_to_vec(), taken.len())
    }

    /// Counters now: the engine's, with the session's own fields filled in.
    pub fn counters(&self) -> Counters {
        self.with_own_counters(self.engine.counters())
    }

    /// Counters and per-rule counts now.
    pub fn stats(&self) -> Stats {
        let stats = self.engine.stats();
        Stats {
            counters: self.with_own_counters(stats.counters),
            rules: stats.rules,
        }
    }

    /// Per-rule counts of the rules loaded now: a rule removed by a reload is left out
    /// (what it counted is kept, and comes back with the rule if it is loaded again), so a
    /// host's per-rule series end with the rule.
    pub fn loaded_rule_counts(&self) -> BTreeMap<String, RuleCounts> {
        let loaded = self.engine.rules();
        let mut counts = self.engine.stats().rules;
        counts.retain(|id, _| loaded.rules().iter().any(|r| r.def.id == *id));
        counts
    }

    /// The engine's counters with the session's own fields filled in.
    fn with_own_counters(&self, engine: Counters) -> Counters {
        let rules = self.engine.rules();
        Counters {
            signals_dropped: self.logs.dropped() + self.spans.dropped(),
            decode_errors: self.decode_errors.load(Relaxed),
            invalid_spans: self.invalid_spans.load(Relaxed),
            own_spans: self.own_spans.load(Relaxed),
            rules: rules.rules().len() as u64,
            rules_digest: rules.digest(),
            rule_changes: self.rule_changes.load(Relaxed),
            ..engine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::TracesData;

    const RULES: &str = "rules:\n  - id: pay\n    name: Pay needs reserve\n    condition: when { payment.charge } always { inventory.reserve }\n";
    const S: u64 = 1_000_000_000;

    fn one(text: &str) -> Vec<SourceFile> {
        vec![SourceFile {
            name: "rules".into(),
            text: text.into(),
        }]
    }

    /// A batch of spans of one trace, each with a span id never used before.
    fn batch(trace: u8, names: &[&str]) -> Vec<u8> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let spans: Vec<String> = names
            .iter()
            .map(|n| {
                let id = NEXT_ID.fetch_add(1, Relaxed);
                format!(r#"{{"traceId":"{trace:02x}{}","spanId":"{id:016x}","name":"{n}","startTimeUnixNano":"1","endTimeUnixNano":"2"}}"#, "00".repeat(15))
            })
            .collect();
        let json = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"shop"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        );
        let data: TracesData = serde_json::from_str(&json).unwrap();
        data.encode_to_vec()
    }

    /// Two feeds share one engine (a processor listed in two pipelines): a trace whose
    /// spans come in through both is judged once, whole, and its violation span goes to
    /// every feed that carried part of it; log records are not split by feed.
    #[test]
    fn a_trace_over_two_feeds_is_judged_whole_and_its_violation_span_follows_it() {
        let live = both_outputs();
        // Trace 1 only on feed 1, trace 2 only on feed 0, trace 4 over both.
        live.ingest(&batch(1, &["payment.charge"]), 1, 0).unwrap();
        live.ingest(&batch(2, &["payment.charge"]), 0, 0).unwrap();
        live.ingest(&batch(4, &["payment.charge"]), 1, 0).unwrap();
        live.ingest(&batch(4, &["checkout"]), 0, S).unwrap();
        // Trace 3: `inventory.reserve` comes through feed 0 and keeps the charge that came
        // through feed 1 from violating (judged whole, not per feed).
        live.ingest(&batch(3, &["payment.charge"]), 1, S).unwrap();
        live.ingest(&batch(3, &["inventory.reserve"]), 0, S)
            .unwrap();
        // Trace 5: the same spans through both feeds (one receiver in both pipelines).
        let same = batch(5, &["payment.charge"]);
        live.ingest(&same, 0, S).unwrap();
        live.ingest(&same, 1, S).unwrap();
        assert_eq!(
            live.ingest(&same, MAX_FEEDS, S).unwrap_err().to_string(),
            "feed 64 is out of range: feeds are numbered 0 to 63"
        );
        live.tick(10 * S);
        let trace_ids = |bytes: Vec<u8>| -> Vec<u8> {
            let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
            let mut ids: Vec<u8> = req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.trace_id[0])
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(trace_ids(live.take_spans(1).0), [1, 4, 5]);
        assert_eq!(trace_ids(live.take_spans(0).0), [2, 4, 5]);
        assert_eq!(live.take_spans(1).1 + live.take_spans(0).1, 0, "taken once");
        assert_eq!(live.take_spans(MAX_FEEDS).1, 0);
        assert_eq!(
            live.take_logs().1,
            4,
            "one log record a violation, whatever the feeds"
        );
        let c = live.stats().counters;
        assert_eq!((c.traces_judged, c.duplicate_spans), (5, 1));
    }

    /// A live engine on [`RULES`] building log records and violation spans.
    fn both_outputs() -> Live {
        Live::new(
            one(RULES),
            BufferConfig::default(),
            Outputs {
                logs: true,
                spans: true,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_violation_split_over_two_batches_comes_out_once_as_a_log_record() {
        let live = both_outputs();
        live.ingest(&batch(1, &["checkout"]), 0, 0).unwrap();
        live.ingest(&batch(1, &["payment.charge"]), 0, S).unwrap();
        live.tick(3 * S);
        assert_eq!(live.take_logs().1, 0, "not yet idle");
        live.tick(6 * S);
        let (bytes, n) = live.take_logs();
        assert_eq!(n, 1);
        let req = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
        let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.trace_id[0], 1);
        assert_eq!(rec.observed_time_unix_nano, 6 * S);
        let (spans, n) = live.take_spans(0);
        assert_eq!(n, 1);
        assert_eq!(
            ExportTraceServiceRequest::decode(spans.as_slice())
                .unwrap()
                .resource_spans[0]
                .scope_spans[0]
                .spans[0]
                .name,
            "betrace.violation"
        );
        assert_eq!(live.take_logs().1, 0, "taken once");
    }

    #[test]
    fn shutdown_delivers_held_traces_and_refuses_more() {
        let live = Live::new(one(RULES), BufferConfig::default(), Outputs::default()).unwrap();
        live.ingest(&batch(2, &["payment.charge"]), 0, 0).unwrap();
        live.shutdown(1);
        assert_eq!(live.take_logs().1, 1);
        assert!(matches!(
            live.ingest(&batch(3, &["x"]), 0, 2),
            Err(LiveError::ShutDown)
        ));
        assert_eq!(
            live.take_spans(0).1,
            0,
            "spans are not an output unless asked for"
        );
    }

    #[test]
    fn errors_are_values() {
        assert!(
            matches!(Live::new(one("rules: [ {id: x} ]"), BufferConfig::default(), Outputs::default()), Err(LiveError::Rules(r)) if r.render().contains("missing field"))
        );
        let live = Live::new(one(RULES), BufferConfig::default(), Outputs::default()).unwrap();
        assert!(matches!(
            live.ingest(b"\xff\xff\xff garbage", 0, 0),
            Err(LiveError::Decode(_))
        ));
        assert_eq!(live.stats().counters.decode_errors, 1);
        assert!(live.set_rules(one("rules: [")).is_err());
        live.ingest(&batch(4, &["payment.charge"]), 0, 0).unwrap();
        live.shutdown(1);
        assert_eq!(live.take_logs().1, 1, "the old rules kept running");
    }

    /// The events at info or above emitted on this thread while `f` runs, each as its
    /// level and fields.
    fn events_during(f: impl FnOnce()) -> Vec<String> {
        use std::sync::{Arc, Mutex as StdMutex};
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

        struct Collect(Arc<StdMutex<Vec<String>>>);
        impl<S: tracing::Subscriber> Layer<S> for Collect {
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                if *event.metadata().level() <= tracing::Level::INFO {
                    let mut fields = format!("{} ", event.metadata().level());
                    struct V<'a>(&'a mut String);
                    impl tracing::field::Visit for V<'_> {
                        fn record_debug(
                            &mut self,
                            f: &tracing::field::Field,
                            v: &dyn std::fmt::Debug,
                        ) {
                            self.0.push_str(&format!("{}={v:?} ", f.name()));
                        }
                    }
                    event.record(&mut V(&mut fields));
                    self.0.lock().unwrap().push(fields);
                }
            }
        }
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Collect(seen.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let out = seen.lock().unwrap().clone();
        out
    }

    #[test]
    fn a_bad_span_keeps_its_batch_and_is_logged_at_most_every_ten_seconds() {
        let live = Live::new(one(RULES), BufferConfig::default(), Outputs::default()).unwrap();
        let with_bad = |trace: u8| {
            let mut data =
                TracesData::decode(batch(trace, &["payment.charge"]).as_slice()).unwrap();
            let spans = &mut data.resource_spans[0].scope_spans[0].spans;
            let mut bad = spans[0].clone();
            bad.trace_id = vec![1, 2, 3];
            bad.name = "bad.id.marker".into();
            spans.insert(0, bad);
            data.encode_to_vec()
        };
        let logged = events_during(|| {
            live.ingest(&with_bad(5), 0, S).unwrap();
            live.ingest(&with_bad(6), 0, 2 * S).unwrap();
            live.ingest(&with_bad(7), 0, 9 * S).unwrap();
            live.ingest(&with_bad(8), 0, 12 * S).unwrap();
        });
        let ours: Vec<_> = logged
            .iter()
            .filter(|l| l.contains("bad.id.marker"))
            .collect();
        assert_eq!(ours.len(), 2, "rate-limited to one per 10s: {logged:?}");
        assert!(ours[0].contains("total=1"), "{ours:?}");
        assert!(ours[1].contains("total=4"), "{ours:?}");
        live.shutdown(20 * S);
        assert_eq!(live.take_logs().1, 4, "every good span was judged");
        let stats = live.stats();
        assert_eq!(
            (stats.counters.invalid_spans, stats.counters.decode_errors),
            (4, 0)
        );
    }

    /// Traces judged early under pressure are logged at most every ten seconds, naming the
    /// limit that made it, how many since the last line, and what to raise: a rule with
    /// `incomplete: skip` skipping all of them cannot go unnoticed.
    #[test]
    fn judging_early_is_logged_naming_the_limit_at_most_every_ten_seconds() {
        let early = |buffer: BufferConfig, traces: &[(u8, u64)]| {
            let live = Live::new(one(RULES), buffer, Outputs::default()).unwrap();
            let logged = events_during(|| {
                for &(t, at) in traces {
                    live.ingest(&batch(t, &["payment.charge"]), 0, at).unwrap();
                }
            });
            let lines: Vec<String> = logged
                .into_iter()
                .filter(|l| l.contains("judged early"))
                .collect();
            (lines, live.stats().counters)
        };
        let few = BufferConfig {
            max_traces: 2,
            ..BufferConfig::default()
        };
        let at = [(1, S), (2, S), (3, S), (4, 2 * S), (5, 9 * S), (6, 12 * S)];
        let (lines, c) = early(few, &at);
        assert_eq!(c.traces_judged_early, 4);
        assert_eq!(lines.len(), 2, "once, then once ten seconds on: {lines:?}");
        for line in &lines {
            assert!(line.starts_with("WARN "), "{line}");
            assert!(line.contains("limit=max_traces "), "{line}");
            assert!(line.contains("raise max_traces"), "{line}");
            assert!(line.contains("incomplete: skip"), "{line}");
        }
        assert!(lines[0].contains("traces=1 "), "the first one: {lines:?}");
        assert!(
            lines[1].contains("traces=3 ") && lines[1].contains("total=4 "),
            "the ones since: {lines:?}"
        );
        assert_eq!(c.traces_judged_early_memory, 0);

        let small = BufferConfig {
            max_bytes: 3_000,
            ..BufferConfig::default()
        };
        let (lines, c) = early(small, &at);
        assert!(c.traces_judged_early > 0, "{c:?}");
        assert_eq!(c.traces_judged_early_memory, c.traces_judged_early);
        assert!(c.held_bytes <= 3_000, "{c:?}");
        assert!(
            lines[0].contains("limit=memory_limit_mib ")
                && lines[0].contains("raise memory_limit_mib"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_reload_of_the_same_rules_says_nothing_and_a_change_says_what_changed() {
        let live = Live::new(one(RULES), BufferConfig::default(), Outputs::default()).unwrap();
        let digest = live.stats().counters.rules_digest;
        let two = format!(
            "{RULES}  - id: audit\n    name: Audited\n    condition: when {{ admin.action }} always {{ audit.log }}\n"
        );
        let mut results = Vec::new();
        let logged = events_during(|| {
            results.push(live.set_rules(one(RULES)).unwrap());
            results.push(
                live.set_rules(one(&format!("# a comment\n{RULES}")))
                    .unwrap(),
            );
            results.push(live.set_rules(one(&two)).unwrap());
            results.push(live.set_rules(one(&two)).unwrap());
            let edited = two.replace("always { audit.log }", "always { audit.write }");
            results.push(live.set_rules(one(&edited)).unwrap());
            results.push(live.set_rules(one(RULES)).unwrap());
        });
        assert_eq!(results, [false, false, true, false, true, true]);
        let reloads: Vec<_> = logged
            .iter()
            .filter(|l| l.contains("rules reloaded"))
            .collect();
        assert_eq!(reloads.len(), 3, "{logged:?}");
        assert!(reloads[0].contains("added=audit") && reloads[0].contains("removed= "));
        assert!(reloads[1].contains("edited=audit"), "{reloads:?}");
        assert!(reloads[2].contains("removed=audit"), "{reloads:?}");
        let stats = live.stats();
        assert_eq!((stats.counters.rules, stats.counters.rule_changes), (1, 3));
        assert_eq!(
            stats.counters.rules_digest, digest,
            "the same rules, the same digest"
        );
        assert!(live.set_rules(one("rules: [")).is_err());
        assert_eq!(live.stats().counters.rules_digest, digest);
    }

    #[test]
    fn counts_of_a_rule_a_reload_removed_are_left_out_until_it_comes_back() {
        let two = format!(
            "{RULES}  - id: audit\n    name: Audited\n    condition: when {{ admin.action }} always {{ audit.log }}\n"
        );
        let live = Live::new(one(&two), BufferConfig::default(), Outputs::default()).unwrap();
        live.ingest(&batch(1, &["payment.charge", "admin.action"]), 0, 0)
            .unwrap();
        live.tick(10 * S);
        let ids = |live: &Live| live.loaded_rule_counts().into_keys().collect::<Vec<_>>();
        assert_eq!(ids(&live), ["audit", "pay"]);
        live.set_rules(one(RULES)).unwrap();
        assert_eq!(ids(&live), ["pay"], "audit was removed: its series end");
        assert_eq!(live.stats().rules["audit"].violated, 1, "its count is kept");
        live.set_rules(one(&two)).unwrap();
        assert_eq!(
            live.loaded_rule_counts()["audit"].violated,
            1,
            "back, with its count"
        );
    }

    #[test]
    fn own_violation_spans_sent_back_in_are_counted_and_not_judged() {
        let outputs = Outputs {
            logs: true,
            spans: true,
        };
        let live = Live::new(one(RULES), BufferConfig::default(), outputs).unwrap();
        live.ingest(&batch(9, &["payment.charge"]), 0, 0).unwrap();
        live.tick(10 * S);
        let (spans, n) = live.take_spans(0);
        assert_eq!(n, 1);
        assert_eq!(live.take_logs().1, 1);
        live.ingest(&spans, 0, 11 * S).unwrap();
        live.shutdown(30 * S);
        let stats = live.stats();
        assert_eq!(stats.counters.own_spans, 1);
        assert_eq!(stats.counters.late_spans, 0, "not a late span of its trace");
        assert_eq!(stats.counters.traces_judged, 1, "judged once");
        assert_eq!(live.take_logs().1, 0);
    }

    /// What a host with storage keeps, in memory: batches by sequence number, and judged
    /// ids written in the same sequence.
    #[derive(Default, Clone)]
    struct Stored {
        batches: BTreeMap<u64, (Vec<u8>, u64)>,
        judged: BTreeMap<u64, Vec<TraceId>>,
        next: u64,
    }

    /// The trace ids (first byte) of the violations in a logs request.
    fn violated(bytes: &[u8]) -> Vec<u8> {
        if bytes.is_empty() {
            return Vec::new();
        }
        let req = ExportLogsServiceRequest::decode(bytes).unwrap();
        req.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|l| l.trace_id[0])
            .collect()
    }

    /// A batch carrying spans of several traces.
    fn batch_of(parts: &[(u8, &[&str])]) -> Vec<u8> {
        let mut all = TracesData::default();
        for (trace, names) in parts {
            let one = TracesData::decode(batch(*trace, names).as_slice()).unwrap();
            all.resource_spans.extend(one.resource_spans);
        }
        all.encode_to_vec()
    }

    /// A host's pause: judge what is due, take the signals, store the judged ids and
    /// delete the batches no longer needed.
    fn pause(live: &Live, store: &mut Stored, now: u64, out: &mut Vec<u8>) {
        live.tick(now);
        out.extend(violated(&live.take_logs().0));
        let (judged, freed) = live.take_journal();
        if !judged.is_empty() {
            store.judged.insert(store.next, judged);
            store.next += 1;
        }
        for seq in freed {
            assert!(
                store.batches.remove(&seq).is_some(),
                "batch {seq} freed once"
            );
        }
        // Judged ids are kept while an older batch is stored, and the latest of them as
        // many as the buffer remembers exactly (late spans of those stay late).
        let oldest = store.batches.keys().next().copied().unwrap_or(store.next);
        let mut newer = 0;
        let keep: Vec<u64> = store
            .judged
            .iter()
            .rev()
            .filter(|(&seq, ids)| {
                newer += ids.len();
                seq >= oldest || newer <= 1000
            })
            .map(|(&seq, _)| seq)
            .collect();
        store.judged.retain(|seq, _| keep.contains(seq));
    }

    /// The engine stopped at any point and brought back from what a host stored judges
    /// every trace as the engine that never stopped does: each violation once, none lost,
    /// none added; and what is stored goes back to nothing once every trace is judged.
    #[test]
    fn a_crash_at_any_point_then_a_restore_gives_the_signals_of_no_crash() {
        let config = BufferConfig {
            trace_idle_timeout: S,
            ..BufferConfig::default()
        };
        // 24 traces, a batch every 0.3 s: trace t's charge comes with the reservation of
        // trace t-1 when t-1 is a multiple of 3 (the batch is shared, and stays stored
        // after trace t-1... is judged, while t waits); every fourth trace gets a second
        // charge 0.9 s later, in a batch of its own.
        let mut arrivals: Vec<(u64, Vec<u8>)> = Vec::new();
        for t in 1..=24u8 {
            let at = u64::from(t) * 3 * S / 10;
            let charge: &[&str] = &["payment.charge"];
            let reserve: &[&str] = &["inventory.reserve"];
            let mut parts = vec![(t, charge)];
            if (t - 1) % 3 == 0 && t > 1 {
                parts.push((t - 1, reserve));
            }
            arrivals.push((at, batch_of(&parts)));
            if t % 4 == 0 {
                arrivals.push((at + 9 * S / 10, batch(t, &["payment.charge"])));
            }
        }
        // Trace 1's batch sent again long after it was judged: late, kept by no trace.
        arrivals.push((10 * S, arrivals[0].1.clone()));
        arrivals.sort_by_key(|a| a.0);
        let steps: Vec<u64> = (0..60).map(|i| i * S / 4).collect();
        let run = |crash_at: Option<u64>| -> (Vec<u8>, Stored) {
            let mut live = Live::new(one(RULES), config, Outputs::default()).unwrap();
            let mut store = Stored::default();
            let mut out = Vec::new();
            let mut next = 0;
            for &now in &steps {
                while next < arrivals.len() && arrivals[next].0 <= now {
                    let (at, bytes) = &arrivals[next];
                    let seq = store.next;
                    store.next += 1;
                    store.batches.insert(seq, (bytes.clone(), *at));
                    live.ingest_stored(bytes, 0, *at, seq).unwrap();
                    next += 1;
                }
                pause(&live, &mut store, now, &mut out);
                if crash_at == Some(now) {
                    // Everything in memory is lost; the store is read back in order.
                    live = Live::new(one(RULES), config, Outputs::default()).unwrap();
                    let mut seqs: Vec<u64> = store
                        .batches
                        .keys()
                        .chain(store.judged.keys())
                        .copied()
                        .collect();
                    seqs.sort();
                    for seq in seqs {
                        if let Some((bytes, at)) = store.batches.get(&seq) {
                            live.restore(bytes, 0, *at, seq).unwrap();
                        }
                        if let Some(ids) = store.judged.get(&seq) {
                            live.restore_judged(ids).unwrap();
                        }
                    }
                }
            }
            out.sort();
            (out, store)
        };
        let (want, left) = run(None);
        assert_eq!(want.len(), 17, "the traces without a reservation violate");
        assert!(left.batches.is_empty(), "no batch left stored");
        for &crash in &steps {
            let (got, left) = run(Some(crash));
            assert_eq!(got, want, "crash at {} ms", crash / 1_000_000);
            assert!(
                left.batches.is_empty(),
                "crash at {} ms: batches left",
                crash / 1_000_000
            );
        }
    }
}
