//! `betrace replay`: judge stored traces with the live engine, driven by a clock taken from
//! the data.
//!
//! # What replay assumes about order
//!
//! Each input is read in its own order, which is the order its collector wrote (the order
//! spans arrived there). Several inputs — files of several collector replicas covering the
//! same hours, or one replica's rotated files — are read *together*, merged by span time:
//! an input is opened when the data clock reaches the time of its first batch, and the
//! next batch is always taken from the open input that is furthest behind. The data clock
//! is therefore a low watermark over all inputs, and a trace whose spans are spread over
//! replicas is assembled whole however the files are named or listed.
//!
//! The clock is the median span end of each batch read (never moving back). A span ending
//! more than a day after the wall clock cannot be real: it is counted as an implausible
//! time and never moves the clock. A span ending more than `trace_idle_timeout` behind the
//! clock when it is read is counted as behind the clock: it may belong to a trace already
//! judged, and is then a late span (counted; judged again with its trace while the trace is
//! still held). Nothing is dropped silently: the summary says how many of each.
//!
//! One thread per open input reads and decodes it; the calling thread merges, feeds the
//! spans through the same [`Engine`] the collector uses and judges. The order of signals
//! is deterministic: the merge depends only on the data and the order inputs are given.

pub mod input;
#[cfg(feature = "jaeger")]
pub mod jaeger;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::buffer::BufferConfig;
use crate::engine::evidence::Evidence;
use crate::engine::signal::{now_unix_nano, Mode, Signal};
use crate::engine::{Engine, EngineConfig, Stats};
use crate::otlp::Batch;
use crate::rules::ruleset::RuleSet;
use crate::trace::projected::Projection;
pub use input::{BadRecord, Limits, Location, Record};

/// What to replay, and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Files, directories or `-`.
    pub inputs: Vec<String>,
    /// The buffer's timeouts and limits, in data time (as live).
    pub buffer: BufferConfig,
    /// Judge only traces whose first span starts at or after this (ns).
    pub from: Option<u64>,
    /// …and at or before this (ns).
    pub to: Option<u64>,
    /// What one record may cost.
    pub limits: Limits,
    /// Threads decoding records (0: one per core). Judging stays on one thread, in data
    /// order, so the signals do not depend on it.
    pub threads: usize,
    /// Keep compliance evidence by day, service and version ([`Summary::evidence`]).
    pub evidence: bool,
}

/// Progress counters, readable from another thread while a replay runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Raw bytes read from the inputs.
    pub bytes_read: Arc<AtomicU64>,
    /// Spans decoded.
    pub spans: AtomicU64,
    /// Signals found.
    pub signals: AtomicU64,
    /// Inputs finished.
    pub inputs_done: AtomicU64,
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
    /// Spans whose end time is implausibly far in the future; they never move the clock.
    pub implausible_times: u64,
    /// Spans read more than `trace_idle_timeout` behind the data clock.
    pub spans_behind_clock: u64,
    /// Inputs opened after the clock had passed their first batch, because more inputs
    /// overlapped in time than are read at once.
    pub inputs_opened_late: u64,
    /// The engine's counters at the end.
    pub stats: Stats,
    /// Compliance evidence, when asked for.
    pub evidence: Option<Evidence>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    /// Fills in what the end of a replay knows: bytes read, the engine's counters and
    /// evidence, the wall time since `started`.
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
const FUTURE_SLACK: u64 = 86_400_000_000_000;

/// What a reading thread sends.
enum Message {
    Batch(Timed),
    /// A record being decoded on the pool: its message comes on this channel.
    Pending(Receiver<Message>),
    Bad(BadRecord),
}

/// A batch with the time it stands for: the median end of its plausible spans.
struct Timed {
    batch: Batch,
    location: Location,
    time: Option<u64>,
    implausible: u64,
}

impl Timed {
    fn new(batch: Batch, location: Location, horizon: u64) -> Timed {
        let mut ends: Vec<u64> = batch
            .fragments
            .iter()
            .flat_map(|f| f.spans.iter().map(|s| s.end_unix_nano))
            .collect();
        let total = ends.len();
        ends.retain(|&e| e <= horizon);
        let implausible = (total - ends.len()) as u64;
        let time = if ends.is_empty() {
            None
        } else {
            let mid = ends.len() / 2;
            Some(*ends.select_nth_unstable(mid).1)
        };
        Timed {
            batch,
            location,
            time,
            implausible,
        }
    }
}

/// An input being read by its own thread, with the next batch it has to offer.
struct Open {
    order: usize,
    rx: Receiver<Message>,
    head: Option<Timed>,
    thread: std::thread::JoinHandle<()>,
}

/// Replays `opts.inputs` with `rules`. Signals go to `on_signal` as they are found, bad
/// records to `on_bad`. Fails only when an input does not exist.
pub fn run(
    rules: RuleSet,
    opts: &Options,
    progress: &Progress,
    on_signal: &mut dyn FnMut(Signal),
    on_bad: &mut dyn FnMut(&BadRecord),
) -> Result<Summary, BadRecord> {
    let started = Instant::now();
    let inputs = input::expand(&opts.inputs)?;
    let window = match (opts.from, opts.to) {
        (None, None) => None,
        (from, to) => Some((from.unwrap_or(0), to.unwrap_or(u64::MAX))),
    };
    let engine = Engine::new(
        rules,
        EngineConfig {
            buffer: opts.buffer,
            mode: Mode::Replay,
            window,
            evidence: opts.evidence,
        },
    );
    let mut summary = Summary {
        inputs: inputs.len(),
        ..Summary::default()
    };
    let horizon = now_unix_nano().saturating_add(FUTURE_SLACK);

    // Inputs in the order their data starts; unreadable starts (stdin, empty or bad files)
    // first, so their problems are reported at once.
    let mut pending: Vec<(u64, usize)> = inputs
        .iter()
        .enumerate()
        .map(|(i, source)| (first_time(source, opts.limits, horizon).unwrap_or(0), i))
        .collect();
    pending.sort_unstable();
    pending.reverse(); // pop from the end
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("betrace-decode-{i}"))
            .build()
            .expect("start the decoding threads"),
    );
    let spawn = |order: usize| -> Open {
        // Enough records in flight to keep every decoding thread busy.
        let (tx, rx) = crossbeam_channel::bounded::<Message>(2 * threads + 2);
        let source = inputs[order].clone();
        let (bytes, limits) = (progress.bytes_read.clone(), opts.limits);
        let projection = engine.rules().projection().clone();
        let pool = pool.clone();
        let thread = std::thread::Builder::new()
            .name("betrace-read".into())
            .spawn(move || read_into(&source, bytes, limits, &projection, horizon, &pool, &tx))
            .expect("spawn a reading thread");
        Open {
            order,
            rx,
            head: None,
            thread,
        }
    };

    let mut open: Vec<Open> = Vec::new();
    let mut clock = 0u64;
    let mut emit = |signals: Vec<Signal>| {
        for s in signals {
            progress.signals.fetch_add(1, Relaxed);
            on_signal(s);
        }
    };
    loop {
        // Every open input shows its next batch; finished ones close.
        let mut i = 0;
        while i < open.len() {
            if open[i].head.is_none() {
                loop {
                    let mut m = open[i].rx.recv();
                    if let Ok(Message::Pending(rx)) = m {
                        m = rx.recv();
                    }
                    match m {
                        Ok(Message::Batch(t)) => {
                            open[i].head = Some(t);
                            break;
                        }
                        Ok(Message::Bad(b)) => {
                            summary.bad_records += 1;
                            on_bad(&b);
                        }
                        Ok(Message::Pending(_)) => unreachable!("a decoded record is not pending"),
                        Err(_) => break,
                    }
                }
            }
            if open[i].head.is_none() {
                let done = open.remove(i);
                done.thread.join().expect("a reading thread does not panic");
                progress.inputs_done.fetch_add(1, Relaxed);
            } else {
                i += 1;
            }
        }
        let next_head = open
            .iter()
            .filter_map(|o| Some((o.head.as_ref()?.time.unwrap_or(clock), o.order)))
            .min();
        // Open the inputs whose data starts before what is open has to offer.
        if let Some(&(start, order)) = pending.last() {
            let due = next_head.is_none_or(|(t, _)| start <= t);
            if due && open.len() < MAX_OPEN_INPUTS {
                pending.pop();
                if start < clock {
                    summary.inputs_opened_late += 1;
                }
                open.push(spawn(order));
                continue;
            }
        }
        let Some((_, order)) = next_head else {
            break;
        };
        let o = open
            .iter_mut()
            .find(|o| o.order == order)
            .expect("the input with the next batch is open");
        let timed = o.head.take().expect("it has a batch");
        if let Some(t) = timed.time {
            clock = clock.max(t);
        }
        let batch = timed.batch;
        if let Some(why) = &batch.first_invalid {
            on_bad(&BadRecord {
                source: inputs[order].clone(),
                location: timed.location,
                message: format!(
                    "{} unreadable span{} skipped, the rest of the batch kept; first: {why}",
                    batch.invalid_spans,
                    if batch.invalid_spans == 1 { "" } else { "s" }
                ),
            });
        }
        let n = batch.span_count() as u64;
        summary.spans += n;
        summary.invalid_spans += batch.invalid_spans;
        summary.implausible_times += timed.implausible;
        let behind = clock.saturating_sub(opts.buffer.trace_idle_timeout);
        summary.spans_behind_clock += batch
            .fragments
            .iter()
            .flat_map(|f| &f.spans)
            .filter(|s| s.end_unix_nano < behind)
            .count() as u64;
        progress.spans.fetch_add(n, Relaxed);
        emit(engine.ingest(batch.fragments, clock));
        emit(engine.tick(clock));
    }
    emit(engine.shutdown());
    summary.close(&engine, progress, started);
    Ok(summary)
}

/// Reads one input on its own thread, sending its batches (timed) and bad records.
fn read_into(
    source: &str,
    bytes: Arc<AtomicU64>,
    limits: Limits,
    projection: &Arc<Projection>,
    horizon: u64,
    pool: &rayon::ThreadPool,
    tx: &Sender<Message>,
) {
    input::read_deferred(source, bytes, limits, projection, true, &mut |r| {
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
    });
}

/// A decoded record as the message the merging thread reads.
fn message_of(r: Record, horizon: u64) -> Message {
    match r {
        Record::Batch(b, at) => Message::Batch(Timed::new(b, at, horizon)),
        Record::Bad(b) => Message::Bad(b),
        Record::Pending(p) => message_of(p.decode(), horizon),
    }
}

/// The time of an input's first batch with a plausible span; `None` for standard input, a
/// pipe, or an input without one. Reads only as far as that batch.
fn first_time(source: &str, limits: Limits, horizon: u64) -> Option<u64> {
    if !input::rereadable(source) {
        return None;
    }
    let (mut time, mut records) = (None, 0);
    // Only times are read here: no attribute is kept.
    let nothing = Arc::new(Projection::new(Vec::<String>::new(), false));
    input::read(source, Arc::default(), limits, &nothing, &mut |r| {
        records += 1;
        if let Message::Batch(t) = message_of(r, horizon) {
            time = t.time;
        }
        time.is_none() && records < 64
    });
    time
}
