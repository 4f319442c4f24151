//! The live engine as the collector drives it: OTLP bytes in per batch, a clock tick, and
//! signals out as OTLP bytes. Everything the C ABI does, in safe code; `ffi.rs` only
//! translates pointers and codes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use prost::Message;

use super::outbox::Outbox;

use crate::diagnostic::{Report, SourceFile};
use crate::engine::buffer::BufferConfig;
use crate::engine::signal::{Mode, Signal};
use crate::engine::{Engine, EngineConfig, Stats};
use crate::otlp;
use crate::otlp::encode::{self, Detected};
use crate::rules::ruleset::RuleSet;

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
}

/// Counters for the component's own telemetry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// The engine's counters.
    pub engine: Stats,
    /// Signals dropped because nobody took them.
    pub signals_dropped: u64,
    /// Batches that could not be decoded at all.
    pub decode_errors: u64,
    /// Spans skipped because they could not be read (a bad id, value or string); the rest
    /// of their batch is kept.
    pub invalid_spans: u64,
}

/// At most one warning about unreadable spans per this much engine time.
const INVALID_SPAN_LOG_INTERVAL: u64 = 10_000_000_000;

/// A live engine with its outgoing queues.
pub struct Live {
    engine: Engine,
    outputs: Outputs,
    logs: Outbox,
    spans: Outbox,
    decode_errors: AtomicU64,
    invalid_spans: AtomicU64,
    /// When unreadable spans were last logged (engine time), for rate limiting.
    invalid_logged_at: AtomicU64,
    shut_down: AtomicBool,
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
        let rules = load_rules(rules)?;
        tracing::info!(target: "betrace", rules = rules.rules().len(), "rules loaded");
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
            invalid_logged_at: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
        })
    }

    /// Replaces the rules; on error the old ones keep running.
    pub fn set_rules(&self, rules: Vec<SourceFile>) -> Result<(), LiveError> {
        let rules = load_rules(rules)?;
        tracing::info!(target: "betrace", rules = rules.rules().len(), "rules reloaded");
        self.engine.set_rules(rules);
        Ok(())
    }

    /// Ingests one OTLP `ExportTraceServiceRequest`.
    pub fn ingest(&self, bytes: &[u8], now: u64) -> Result<(), LiveError> {
        if self.shut_down.load(Relaxed) {
            return Err(LiveError::ShutDown);
        }
        let rules = self.engine.rules();
        let batch = otlp::decode_protobuf(bytes, rules.projection()).inspect_err(|e| {
            self.decode_errors.fetch_add(1, Relaxed);
            tracing::warn!(target: "betrace", error = %e, "batch not decoded");
        })?;
        if batch.invalid_spans > 0 {
            let total =
                self.invalid_spans.fetch_add(batch.invalid_spans, Relaxed) + batch.invalid_spans;
            let last = self.invalid_logged_at.load(Relaxed);
            let due = last == 0 || now.saturating_sub(last) >= INVALID_SPAN_LOG_INTERVAL;
            if due
                && self
                    .invalid_logged_at
                    .compare_exchange(last, now.max(1), Relaxed, Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    target: "betrace",
                    skipped = batch.invalid_spans,
                    total,
                    first = batch.first_invalid.as_deref().unwrap_or(""),
                    "unreadable spans skipped; the rest of each batch is judged"
                );
            }
        }
        let signals = self.engine.ingest(batch.fragments, now);
        self.queue(signals, now);
        Ok(())
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

    /// Takes the waiting violation spans as `ExportTraceServiceRequest` bytes, and how many.
    pub fn take_spans(&self) -> (Vec<u8>, usize) {
        let taken = self.spans.take();
        if taken.is_empty() {
            return (Vec::new(), 0);
        }
        (encode::violation_spans(&taken).encode_to_vec(), taken.len())
    }

    /// Counters now.
    pub fn stats(&self) -> LiveStats {
        LiveStats {
            engine: self.engine.stats(),
            signals_dropped: self.logs.dropped() + self.spans.dropped(),
            decode_errors: self.decode_errors.load(Relaxed),
            invalid_spans: self.invalid_spans.load(Relaxed),
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

    #[test]
    fn a_violation_split_over_two_batches_comes_out_once_as_a_log_record() {
        let live = Live::new(
            one(RULES),
            BufferConfig::default(),
            Outputs {
                logs: true,
                spans: true,
            },
        )
        .unwrap();
        live.ingest(&batch(1, &["checkout"]), 0).unwrap();
        live.ingest(&batch(1, &["payment.charge"]), S).unwrap();
        live.tick(3 * S);
        assert_eq!(live.take_logs().1, 0, "not yet idle");
        live.tick(6 * S);
        let (bytes, n) = live.take_logs();
        assert_eq!(n, 1);
        let req = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
        let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.trace_id[0], 1);
        assert_eq!(rec.observed_time_unix_nano, 6 * S);
        let (spans, n) = live.take_spans();
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
        live.ingest(&batch(2, &["payment.charge"]), 0).unwrap();
        live.shutdown(1);
        assert_eq!(live.take_logs().1, 1);
        assert!(matches!(
            live.ingest(&batch(3, &["x"]), 2),
            Err(LiveError::ShutDown)
        ));
        assert_eq!(
            live.take_spans().1,
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
            live.ingest(b"\xff\xff\xff garbage", 0),
            Err(LiveError::Decode(_))
        ));
        assert_eq!(live.stats().decode_errors, 1);
        assert!(live.set_rules(one("rules: [")).is_err());
        live.ingest(&batch(4, &["payment.charge"]), 0).unwrap();
        live.shutdown(1);
        assert_eq!(live.take_logs().1, 1, "the old rules kept running");
    }

    /// Counts the `betrace` warnings emitted on this thread while `f` runs.
    fn warnings_during(f: impl FnOnce()) -> Vec<String> {
        use std::sync::{Arc, Mutex as StdMutex};
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

        struct Collect(Arc<StdMutex<Vec<String>>>);
        impl<S: tracing::Subscriber> Layer<S> for Collect {
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                if *event.metadata().level() == tracing::Level::WARN {
                    let mut fields = String::new();
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
        let logged = warnings_during(|| {
            live.ingest(&with_bad(5), S).unwrap();
            live.ingest(&with_bad(6), 2 * S).unwrap();
            live.ingest(&with_bad(7), 9 * S).unwrap();
            live.ingest(&with_bad(8), 12 * S).unwrap();
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
        assert_eq!((stats.invalid_spans, stats.decode_errors), (4, 0));
    }
}
