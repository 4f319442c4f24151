//! `betrace replay`: judge stored traces with the live engine, driven by a clock taken from
//! the data.
//!
//! One thread reads and decodes the inputs in order; the calling thread feeds the spans
//! through the same [`Engine`] the collector uses, advancing its clock to the latest span
//! end seen, so a trace split over many lines and files is assembled whole and memory stays
//! bounded by the buffer's limits however large the input. The order of signals is
//! deterministic: inputs are read in order and the buffer judges in deadline order.

pub mod input;
pub mod output;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buffer::BufferConfig;
use crate::engine::{Engine, EngineConfig, Stats};
use crate::ruleset::RuleSet;
use crate::signal::{Mode, Signal};
pub use input::{BadRecord, Location, Record};

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
    /// Spans skipped for a malformed trace or span id.
    pub invalid_spans: u64,
    /// The engine's counters at the end.
    pub stats: Stats,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    /// Whether any input was bad (exit code 2).
    pub fn had_bad_input(&self) -> bool {
        self.bad_records > 0 || self.invalid_spans > 0
    }
}

/// What the decoding thread sends: records in order, and the end of each input.
enum Message {
    Record(Record),
    InputDone,
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
        },
    );
    let mut summary = Summary {
        inputs: inputs.len(),
        ..Summary::default()
    };

    let (tx, rx) = crossbeam_channel::bounded::<Message>(64);
    let bytes = progress.bytes_read.clone();
    let decoder = std::thread::Builder::new()
        .name("betrace-decode".into())
        .spawn({
            let inputs = inputs.clone();
            move || {
                for source in &inputs {
                    input::read(source, bytes.clone(), &mut |r| {
                        let _ = tx.send(Message::Record(r));
                    });
                    let _ = tx.send(Message::InputDone);
                }
            }
        })
        .expect("spawn the decoding thread");

    let mut now = 0u64;
    let mut emit = |signals: Vec<Signal>| {
        for s in signals {
            progress.signals.fetch_add(1, Relaxed);
            on_signal(s);
        }
    };
    for message in rx {
        match message {
            Message::Record(Record::Batch(batch)) => {
                let n = batch.span_count() as u64;
                summary.spans += n;
                summary.invalid_spans += batch.invalid_spans;
                progress.spans.fetch_add(n, Relaxed);
                now = now.max(batch.max_end_unix_nano);
                emit(engine.ingest(batch.fragments, now));
                emit(engine.tick(now));
            }
            Message::InputDone => {
                progress.inputs_done.fetch_add(1, Relaxed);
            }
            Message::Record(Record::Bad(b)) => {
                summary.bad_records += 1;
                on_bad(&b);
            }
        }
    }
    decoder.join().expect("the decoding thread does not panic");
    emit(engine.shutdown());
    summary.bytes_read = progress.bytes_read.load(Relaxed);
    summary.stats = engine.stats();
    summary.elapsed = started.elapsed();
    Ok(summary)
}
