//! `betrace replay`: judge stored traces with the live engine, exactly, whatever the order
//! of the input (docs/replay.md).
//!
//! # What a replay's signals are
//!
//! Replay judges each trace as the live engine would if each batch's spans of the trace (a
//! *fragment*) had arrived when the last of them ended. With that clock, whether a span
//! belongs to a trace's first judgement or comes late depends only on the trace's own
//! fragments ([`crate::engine::buffer::TraceBuffer::ingest_one`]), never on other traces,
//! on how the input is ordered or on how many threads judge. Replay never judges a trace
//! early to stay within `--max-traces`/`--max-spans`; it spills to disk instead.
//!
//! # How: stream, or spill
//!
//! * **Stream** ([`order`]). Inputs are read together, merged by time (an input is opened
//!   when the data reaches its first batch, and the next batch is taken from the open input
//!   furthest behind). Fragments are dealt by trace id to one judging thread per core; each
//!   holds them in a reorder window ([`order::REORDER`] of data time) and feeds its engine in
//!   time order. Time-ordered input — one collector's files, several replicas' merged — is
//!   judged in one pass.
//! * **Spill** ([`spill`]). A fragment older than what a judging thread already fed (input
//!   out of order beyond the window), or more held than the limits allow, stops the stream:
//!   everything is read again and written by trace id into partition files, and each
//!   partition is read back, sorted by time and judged whole. The summary says so.
//!
//! Standard input and pipes are spooled to the spill directory first, so they can be read
//! twice. Signals come out at the end, in a deterministic order: by the first trigger
//! span's start, then trace id, then rule id.

pub mod index;
pub mod input;
#[cfg(feature = "jaeger")]
pub mod jaeger;
pub mod order;
pub mod spill;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::engine::buffer::BufferConfig;
use crate::engine::evidence::Evidence;
use crate::engine::signal::{now_unix_nano, Mode, Signal};
use crate::engine::{Engine, EngineConfig, Observer, Stats};
use crate::lang::hir::{required_names as rule_names, NameMatch};
use crate::otlp::Batch;
use crate::rules::ruleset::RuleSet;
pub use input::{BadRecord, Limits, Location, Record};

/// What to replay, and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Files, directories or `-`.
    pub inputs: Vec<String>,
    /// The buffer's timeouts and limits, in data time (as live). The limits bound what is
    /// held in memory; replay spills rather than judge early.
    pub buffer: BufferConfig,
    /// Judge only traces whose first span starts at or after this (ns).
    pub from: Option<u64>,
    /// …and at or before this (ns).
    pub to: Option<u64>,
    /// What one record may cost.
    pub limits: Limits,
    /// Threads decoding and judging (0: one per core). The signals do not depend on it.
    pub threads: usize,
    /// Keep compliance evidence by day, service and version ([`Summary::evidence`]).
    pub evidence: bool,
    /// Where to spool standard input and spill out-of-order input (default: the system's
    /// temporary directory). A directory of its own is made inside and removed at the end.
    pub spill_dir: Option<PathBuf>,
    /// Read every input whole, even those with an index ([`index`]).
    pub no_index: bool,
    /// Makes an observer for each engine judging ([`crate::engine::Engine::with_observer`]):
    /// `betrace discover` sees every complete trace through it.
    pub observe: Option<Observe>,
    /// Keep only each rule's first N signals (in the order they are reported): what
    /// `betrace discover` names as exceptions, in memory bounded whatever the input. The
    /// counts still count every one.
    pub signals_per_rule: Option<usize>,
}

/// Signals a judging thread holds until the end, bounded by
/// [`Options::signals_per_rule`] when it is set.
pub(crate) struct Held {
    list: Vec<Signal>,
    per_rule: Option<usize>,
    prune_at: usize,
}

/// Signals held before the first pruning (then twice what the last one kept).
const PRUNE_AT: usize = 1 << 16;

impl Held {
    /// Nothing held yet.
    pub(crate) fn new(per_rule: Option<usize>) -> Held {
        Held {
            list: Vec::new(),
            per_rule,
            prune_at: PRUNE_AT,
        }
    }

    /// Holds more signals; prunes to each rule's first N when they grow past the bound.
    pub(crate) fn extend(&mut self, signals: Vec<Signal>) {
        self.list.extend(signals);
        let Some(n) = self.per_rule else {
            return;
        };
        if self.list.len() < self.prune_at {
            return;
        }
        self.list.sort_by(|a, b| {
            (&a.rule_id, a.time_unix_nano, a.trace_id).cmp(&(
                &b.rule_id,
                b.time_unix_nano,
                b.trace_id,
            ))
        });
        let (mut rule, mut kept): (Option<String>, usize) = (None, 0);
        self.list.retain(|s| {
            if rule.as_deref() != Some(s.rule_id.as_str()) {
                rule = Some(s.rule_id.clone());
                kept = 0;
            }
            kept += 1;
            kept <= n
        });
        self.prune_at = PRUNE_AT.max(2 * self.list.len());
    }

    /// What is held.
    pub(crate) fn into_vec(self) -> Vec<Signal> {
        self.list
    }
}

/// Makes one [`Observer`] per judging engine (each judging thread has its own, so an
/// observer needs no lock of its own).
#[derive(Clone)]
pub struct Observe {
    /// Makes one observer.
    pub make: Arc<dyn Fn() -> Box<Observer> + Send + Sync>,
    /// Called when a stream stops to spill (its engines, and their observers, dropped by
    /// then): every trace is judged, and observed, again from the partitions, so what was
    /// observed of the stream is to be forgotten.
    pub restart: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Observe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observe(..)")
    }
}

/// Progress counters, readable from another thread while a replay runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Raw bytes read from the inputs (counted again when the input is read a second time).
    pub bytes_read: Arc<AtomicU64>,
    /// Spans decoded.
    pub spans: AtomicU64,
    /// Signals found.
    pub signals: AtomicU64,
    /// Inputs finished.
    pub inputs_done: AtomicU64,
}

/// What a spill did: why the stream stopped, and what was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spilled {
    /// Why the input could not be judged in one pass.
    pub reason: String,
    /// Spans written to partition files.
    pub spans: u64,
    /// Partition files judged (after any that had to be split again).
    pub partitions: u64,
    /// Bytes written to partition files.
    pub bytes: u64,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Inputs read.
    pub inputs: usize,
    /// Raw bytes read.
    pub bytes_read: u64,
    /// Spans decoded.
    pub spans: u64,
    /// Records that could not be read.
    pub bad_records: u64,
    /// Spans skipped because they could not be read (a bad id, value or string).
    pub invalid_spans: u64,
    /// Spans whose end time is implausibly far in the future; they are judged after every
    /// other span of the input.
    pub implausible_times: u64,
    /// Inputs that could not be read twice (standard input, pipes), copied to the spill
    /// directory first.
    pub spooled: u64,
    /// Set when the input was not in time order (or held too much at once) and was
    /// judged by partitions spilled to disk.
    pub spilled: Option<Spilled>,
    /// Inputs opened after the data had passed their first batch, because more inputs
    /// overlapped in time than are read at once (it costs memory, never exactness).
    pub inputs_opened_late: u64,
    /// The engines' counters at the end, summed.
    pub stats: Stats,
    /// Compliance evidence, when asked for.
    pub evidence: Option<Evidence>,
    /// What the inputs' indexes did, when they were used.
    pub index: Option<index::select::IndexUse>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    /// Fills in what the end of a replay on one engine knows (the Jaeger replay): bytes
    /// read, the engine's counters and evidence, the wall time since `started`.
    pub(crate) fn close(&mut self, engine: &Engine, progress: &Progress, started: Instant) {
        self.bytes_read = progress.bytes_read.load(Relaxed);
        self.stats = engine.stats();
        self.evidence = engine.evidence();
        self.elapsed = started.elapsed();
    }

    /// Whether any input was bad (exit code 2).
    pub fn had_bad_input(&self) -> bool {
        self.bad_records > 0 || self.invalid_spans > 0
    }
}

/// Most inputs read at once; inputs overlapping in time beyond this are read when one
/// finishes (and counted in [`Summary::inputs_opened_late`]).
pub const MAX_OPEN_INPUTS: usize = 64;

/// A span ending this long after the wall clock is taken for an implausible time.
pub(crate) const FUTURE_SLACK: u64 = 86_400_000_000_000;

/// An input: the name reports give, and the file read (a spooled copy for a pipe).
#[derive(Debug, Clone)]
pub(crate) struct Source {
    name: String,
    path: String,
}

/// What judging produced: signals, counts, evidence.
#[derive(Default)]
pub(crate) struct Judged {
    signals: Vec<Signal>,
    stats: Stats,
    evidence: Option<Evidence>,
}

impl Judged {
    /// Adds what an engine judged, and its counts and evidence.
    fn add(&mut self, engine: &Engine, signals: Vec<Signal>) {
        self.absorb(Judged {
            signals,
            stats: engine.stats(),
            evidence: engine.evidence(),
        });
    }

    /// Adds what another judging thread judged.
    fn absorb(&mut self, other: Judged) {
        self.signals.extend(other.signals);
        self.stats.add(&other.stats);
        if let Some(e) = other.evidence {
            match &mut self.evidence {
                Some(mine) => mine.merge(e),
                None => self.evidence = Some(e),
            }
        }
    }
}

/// What a reading of the inputs counted, and which bad records were already reported (a
/// second reading reports only the ones after them).
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    spans: u64,
    bad_records: u64,
    invalid_spans: u64,
    implausible_times: u64,
    /// Bad records (and batches with unreadable spans) met by this reading, per input.
    seen: Vec<u64>,
    /// …and reported by any reading, per input.
    reported: Vec<u64>,
}

impl Counts {
    /// Counts for a first reading of `inputs` inputs.
    fn new(inputs: usize) -> Counts {
        Counts {
            seen: vec![0; inputs],
            reported: vec![0; inputs],
            ..Counts::default()
        }
    }

    /// Counts for a second reading: nothing counted, what was reported remembered.
    fn again(self) -> Counts {
        Counts {
            reported: self.reported,
            ..Counts::new(self.seen.len())
        }
    }

    /// Reports a bad record of input `order` unless a first reading already did.
    fn report(&mut self, order: usize, on_bad: &mut dyn FnMut(&BadRecord), b: &BadRecord) {
        self.seen[order] += 1;
        if self.seen[order] > self.reported[order] {
            self.reported[order] = self.seen[order];
            on_bad(b);
        }
    }

    /// Counts a bad record and reports it.
    fn bad_record(&mut self, order: usize, on_bad: &mut dyn FnMut(&BadRecord), b: &BadRecord) {
        self.bad_records += 1;
        self.report(order, on_bad, b);
    }
}

/// Everything a reading needs.
pub(crate) struct Ctx<'a> {
    rules: &'a RuleSet,
    opts: &'a Options,
    sources: &'a [Source],
    /// Threads decoding.
    threads: usize,
    /// Threads judging: as many as decode, but at most two per core (each holds an
    /// engine and a share of the limits; more would only divide the limits).
    judges: usize,
    horizon: u64,
    progress: &'a Progress,
    pool: Arc<rayon::ThreadPool>,
    /// Per input, the index it is read through (none when no input has an index).
    selections: Option<Vec<Arc<index::select::Selection>>>,
}

impl Ctx<'_> {
    /// A fresh engine judging with these rules, counting apart. Its buffer has no limits:
    /// replay bounds what it holds itself (by spilling), and never judges a trace early.
    fn engine(&self) -> Engine {
        let window = match (self.opts.from, self.opts.to) {
            (None, None) => None,
            (from, to) => Some((from.unwrap_or(0), to.unwrap_or(u64::MAX))),
        };
        let engine = Engine::new(
            self.rules.fresh(),
            EngineConfig {
                buffer: BufferConfig {
                    max_traces: usize::MAX,
                    max_spans: usize::MAX,
                    max_bytes: usize::MAX,
                    ..self.opts.buffer
                },
                mode: Mode::Replay,
                window,
                evidence: self.opts.evidence,
            },
        );
        match &self.opts.observe {
            Some(observe) => engine.with_observer((observe.make)()),
            None => engine,
        }
    }

    /// How many spans and traces one judging thread may hold.
    fn share(&self) -> (usize, usize) {
        let t = self.judges.max(1);
        (
            (self.opts.buffer.max_spans / t).max(1),
            (self.opts.buffer.max_traces / t).max(1),
        )
    }

    /// Counts a decoded batch's spans and reports its unreadable ones.
    fn count_batch(
        &self,
        counts: &mut Counts,
        order: usize,
        on_bad: &mut dyn FnMut(&BadRecord),
        batch: &Batch,
        location: &Location,
        stamp: Stamp,
    ) {
        if let Some(why) = &batch.first_invalid {
            let bad = BadRecord {
                source: self.sources[order].name.clone(),
                location: location.clone(),
                message: format!(
                    "{} unreadable span{} skipped, the rest of the batch kept; first: {why}",
                    batch.invalid_spans,
                    if batch.invalid_spans == 1 { "" } else { "s" }
                ),
            };
            counts.report(order, on_bad, &bad);
        }
        let n = batch.span_count() as u64;
        counts.spans += n;
        counts.invalid_spans += batch.invalid_spans;
        counts.implausible_times += stamp.implausible;
        self.progress.spans.fetch_add(n, Relaxed);
    }
}

/// Replays `opts.inputs` with `rules`. Signals go to `on_signal` at the end, in a
/// deterministic order; bad records to `on_bad` as they are found; what the run notes
/// (an index not used, and why) to `on_note`. Fails only when an input does not exist or
/// the spill directory cannot be written.
pub fn run(
    rules: RuleSet,
    opts: &Options,
    progress: &Progress,
    on_signal: &mut dyn FnMut(Signal),
    on_bad: &mut dyn FnMut(&BadRecord),
    on_note: &mut dyn FnMut(&str),
) -> Result<Summary, BadRecord> {
    let started = Instant::now();
    let names = input::expand(&opts.inputs)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if opts.threads == 0 {
        cores
    } else {
        opts.threads
    };
    let dir = spill::Dir::new(opts.spill_dir.clone());
    let mut summary = Summary {
        inputs: names.len(),
        ..Summary::default()
    };
    let mut sources = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let path = if input::rereadable(&name) {
            name.clone()
        } else {
            summary.spooled += 1;
            dir.spool(&name, i, &progress.bytes_read)?
        };
        sources.push(Source { name, path });
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("betrace-decode-{i}"))
            .build()
            .expect("start the decoding threads"),
    );
    let plan = plan_indexes(&rules, opts, &sources, &pool, on_note)?;
    summary.index = plan.as_ref().map(|p| p.used.clone());
    let ctx = Ctx {
        rules: &rules,
        opts,
        sources: &sources,
        threads,
        judges: threads.min(2 * cores).max(1),
        horizon: now_unix_nano().saturating_add(FUTURE_SLACK),
        progress,
        pool,
        selections: plan.map(|p| p.selections),
    };
    let mut counts = Counts::new(sources.len());
    let judged = match order::stream(&ctx, &mut counts, on_bad) {
        Ok((judged, opened_late)) => {
            summary.inputs_opened_late = opened_late;
            judged
        }
        Err(reason) => {
            if let Some(observe) = &opts.observe {
                (observe.restart)();
            }
            progress.spans.store(0, Relaxed);
            progress.bytes_read.store(0, Relaxed);
            progress.inputs_done.store(0, Relaxed);
            counts = counts.again();
            let (judged, spilled) = spill::judge(&ctx, &dir, reason, &mut counts, on_bad)?;
            summary.spilled = Some(spilled);
            judged
        }
    };
    let Judged {
        mut signals,
        stats,
        evidence,
    } = judged;
    signals.sort_by(|a, b| {
        (a.time_unix_nano, a.trace_id, &a.rule_id).cmp(&(b.time_unix_nano, b.trace_id, &b.rule_id))
    });
    if let Some(n) = opts.signals_per_rule {
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        signals.retain(|s| {
            let k = seen.entry(s.rule_id.clone()).or_default();
            *k += 1;
            *k <= n
        });
    }
    for s in signals {
        progress.signals.fetch_add(1, Relaxed);
        on_signal(s);
    }
    summary.spans = counts.spans + summary.index.as_ref().map_or(0, |i| i.spans_skipped);
    summary.bad_records = counts.bad_records;
    summary.invalid_spans = counts.invalid_spans;
    summary.implausible_times = counts.implausible_times;
    summary.bytes_read = progress.bytes_read.load(Relaxed);
    summary.stats = stats;
    summary.evidence = evidence;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// How the inputs' indexes are used, if at all: not with `--no-index`, not when no input
/// has one, and not when some rule can apply to a trace without any particular span name
/// (every trace must then be read).
fn plan_indexes(
    rules: &RuleSet,
    opts: &Options,
    sources: &[Source],
    pool: &Arc<rayon::ThreadPool>,
    on_note: &mut dyn FnMut(&str),
) -> Result<Option<index::select::Plan>, BadRecord> {
    if opts.no_index {
        return Ok(None);
    }
    let (names, why) = required_names(rules);
    let Some(names) = names else {
        if sources.iter().any(|s| index::path_for(&s.path).exists()) {
            on_note(&format!("the inputs' indexes are not used: {why}"));
        }
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = sources
        .iter()
        .map(|s| (s.name.clone(), s.path.clone()))
        .collect();
    index::select::plan(&names, &pairs, opts.limits, pool, on_note)
}

/// The span names some rule needs, or `None`: every trace can count for some rule (the
/// second part says why, for the summary). A replay from a trace store fetches, and one
/// through indexes reads, only traces with one of these names.
pub(crate) fn required_names(rules: &RuleSet) -> (Option<Vec<NameMatch>>, String) {
    let mut all = Vec::new();
    for r in rules.rules().iter().filter(|r| r.def.enabled) {
        match rule_names(&r.def.form) {
            Some(names) if !names.iter().any(|n| matches!(n, NameMatch::Any)) => all.extend(names),
            _ => {
                return (
                    None,
                    format!(
                        "rule {} can apply to a trace without any particular span name: every trace is read",
                        r.def.id
                    ),
                )
            }
        }
    }
    let mut shown: Vec<String> = all
        .iter()
        .map(|n| match n {
            NameMatch::Exact(name) => name.clone(),
            NameMatch::Glob(glob, _) => glob.clone(),
            NameMatch::Any => "*".into(),
        })
        .collect();
    shown.sort();
    shown.dedup();
    let why = format!(
        "operations matching the span names the rules need: {}",
        shown.join(", ")
    );
    (Some(all), why)
}

/// What a reading thread sends.
pub(crate) enum Message {
    Batch(Batch, Location, Stamp),
    /// A record being decoded on the pool: its message comes on this channel.
    Pending(Receiver<Message>),
    Bad(BadRecord),
}

/// What a batch's span times say, worked out on the decoding thread that decoded it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    /// The median end of its plausible spans: the time the batch stands for when inputs
    /// are merged (`None` when it has none).
    pub(crate) time: Option<u64>,
    /// Spans ending past the implausibility horizon.
    implausible: u64,
}

impl Stamp {
    /// The stamp of a decoded batch.
    pub(crate) fn of(batch: &Batch, horizon: u64) -> Stamp {
        let mut ends: Vec<u64> = batch
            .fragments
            .iter()
            .flat_map(|f| f.spans.iter().map(|s| s.end_unix_nano))
            .collect();
        let total = ends.len();
        ends.retain(|&e| e <= horizon);
        let implausible = (total - ends.len()) as u64;
        let time = (!ends.is_empty()).then(|| {
            let mid = ends.len() / 2;
            *ends.select_nth_unstable(mid).1
        });
        Stamp { time, implausible }
    }
}

/// Starts reading input `order` on a thread of its own, its records decoded on the pool;
/// its batches and bad records come in order on the receiver.
pub(crate) fn spawn_reader(
    ctx: &Ctx<'_>,
    order: usize,
) -> (Receiver<Message>, std::thread::JoinHandle<()>) {
    let (tx, rx) = crossbeam_channel::bounded::<Message>(2 * ctx.threads + 2);
    let source = ctx.sources[order].clone();
    let (bytes, limits, horizon) = (
        ctx.progress.bytes_read.clone(),
        ctx.opts.limits,
        ctx.horizon,
    );
    let projection = ctx.rules.projection().clone();
    let pool = ctx.pool.clone();
    let selection = ctx.selections.as_ref().map(|s| s[order].clone());
    let thread = std::thread::Builder::new()
        .name("betrace-read".into())
        .spawn(move || {
            let sink = &mut |r| {
                let m = match r {
                    Record::Pending(p) => {
                        let (done, rx) = crossbeam_channel::bounded(1);
                        pool.spawn_fifo(move || {
                            let _ = done.send(message_of(p.decode(), horizon));
                        });
                        Message::Pending(rx)
                    }
                    other => message_of(other, horizon),
                };
                tx.send(m).is_ok()
            };
            let (name, path) = (&source.name, &source.path);
            match selection {
                Some(s) => index::select::read(name, path, &s, bytes, limits, &projection, sink),
                None => input::read_deferred(name, path, bytes, limits, &projection, true, sink),
            }
        })
        .expect("spawn a reading thread");
    (rx, thread)
}

/// Receives the next message of an input, waiting for a record being decoded.
pub(crate) fn next_message(rx: &Receiver<Message>) -> Option<Message> {
    let mut m = rx.recv().ok()?;
    if let Message::Pending(p) = m {
        m = p.recv().ok()?;
    }
    Some(m)
}

/// A decoded record as the message the consuming thread reads.
fn message_of(r: Record, horizon: u64) -> Message {
    match r {
        Record::Batch(b, at) => {
            let stamp = Stamp::of(&b, horizon);
            Message::Batch(b, at, stamp)
        }
        Record::Bad(b) => Message::Bad(b),
        Record::Pending(p) => message_of(p.decode(), horizon),
    }
}
