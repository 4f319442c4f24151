//! The stream: inputs merged by time, each trace's fragments fed to an engine in time
//! order, on one judging thread per core.
//!
//! A fragment (the spans of one trace in one batch) is fed at its [`Key`]: the end of its
//! last span. Each judging thread holds what it is dealt in a reorder window of
//! [`REORDER`] of data time, so batches written a little out of order (spans of one batch
//! ending over several seconds, replicas' files interleaved) are still fed in order. A
//! fragment older than one already fed means the input is not in time order: the stream
//! stops, and [`super::spill`] judges everything again by partitions. So does holding more
//! than a thread's share of `--max-spans`/`--max-traces`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::{
    next_message, spawn_reader, Counts, Ctx, Held, Judged, Location, Message, Stamp,
    MAX_OPEN_INPUTS,
};
use crate::otlp::Batch;
use crate::trace::projected::Trace;
use crate::trace::{SpanId, TraceId};

/// How far behind the newest fragment a judging thread waits before feeding a fragment:
/// fragments may arrive this much out of order and still be judged in one pass.
pub const REORDER: u64 = 5_000_000_000;

/// A fragment's place in time: when its last span ended (no later than the implausibility
/// horizon), then its trace id and smallest span id, so that equal times order the same
/// way in every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// The end of the fragment's last span, in ns.
    pub time: u64,
    trace: TraceId,
    span: SpanId,
}

impl Key {
    /// The key of a (non-empty) fragment; times past `horizon` count as `horizon`.
    pub fn of(frag: &Trace, horizon: u64) -> Key {
        let time = frag
            .spans
            .iter()
            .map(|s| s.end_unix_nano)
            .max()
            .unwrap_or(0)
            .min(horizon);
        let span = frag
            .spans
            .iter()
            .map(|s| s.span_id)
            .min()
            .unwrap_or(SpanId([0; 8]));
        Key {
            time,
            trace: frag.trace_id,
            span,
        }
    }
}

/// A fragment waiting in the window, ordered by its key alone (boxed: the heap moves its
/// entries as it sifts, and a fragment is a few hundred bytes).
struct Waiting(Key, Box<Trace>);

impl PartialEq for Waiting {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiting {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

/// The reorder window of one judging thread.
#[derive(Default)]
pub struct Window {
    heap: BinaryHeap<Reverse<Waiting>>,
    spans: usize,
    /// The newest plausible time seen.
    newest: u64,
    /// The last key fed: nothing older may come any more.
    fed: Option<Key>,
}

impl Window {
    /// Takes a fragment; refuses (returns it) one older than what was already fed.
    pub fn push(&mut self, key: Key, frag: Trace, horizon: u64) -> Result<(), Trace> {
        if self.fed.is_some_and(|fed| key < fed) {
            return Err(frag);
        }
        if key.time < horizon {
            self.newest = self.newest.max(key.time);
        }
        self.spans += frag.spans.len();
        self.heap.push(Reverse(Waiting(key, Box::new(frag))));
        Ok(())
    }

    /// The fragments to feed now, in key order: those at least [`REORDER`] behind the
    /// newest, and then the oldest until at most `max_spans` wait.
    pub fn ready(&mut self, max_spans: usize) -> Vec<(Trace, u64)> {
        let until = self.newest.saturating_sub(REORDER);
        let mut out = Vec::new();
        while let Some(Reverse(Waiting(key, _))) = self.heap.peek() {
            if key.time > until && self.spans <= max_spans {
                break;
            }
            let Reverse(Waiting(key, frag)) = self.heap.pop().expect("peeked");
            self.spans -= frag.spans.len();
            self.fed = Some(key);
            out.push((*frag, key.time));
        }
        out
    }

    /// Everything left, in key order (the end of the input).
    pub fn drain(&mut self) -> Vec<(Trace, u64)> {
        self.ready(0)
    }

    /// Fragments waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Spans waiting.
    pub fn spans(&self) -> usize {
        self.spans
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The time of the last fragment fed.
    pub fn clock(&self) -> Option<u64> {
        self.fed.map(|k| k.time)
    }
}

/// Fragments dealt to one judging thread: from input `order` at `location`.
struct Dealt {
    order: usize,
    location: Location,
    fragments: Vec<Trace>,
}

/// Why the stream stopped, set once by the first judging thread that had to.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Stop {
    fn set(&self, reason: String) {
        let mut r = self.reason.lock();
        if r.is_none() {
            *r = Some(reason);
        }
        self.stopped.store(true, Relaxed);
    }
}

/// The judging thread a trace goes to.
fn thread_of(id: &TraceId, threads: usize) -> usize {
    let (a, b) = id.0.split_at(8);
    let h = u64::from_le_bytes(a.try_into().expect("8 bytes"))
        ^ u64::from_le_bytes(b.try_into().expect("8 bytes"));
    ((h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % threads as u64) as usize
}

/// One judging thread: its window and its engine.
fn judge_thread(ctx: &Ctx<'_>, rx: Receiver<Dealt>, stop: &Stop) -> Judged {
    let engine = ctx.engine();
    let (max_spans, max_traces) = ctx.share();
    let mut window = Window::default();
    let mut signals = Held::new(ctx.opts.signals_per_rule);
    let mut judged = Judged::default();
    for dealt in rx {
        if stop.stopped.load(Relaxed) {
            return judged;
        }
        for frag in dealt.fragments {
            let key = Key::of(&frag, ctx.horizon);
            if window.push(key, frag, ctx.horizon).is_err() {
                let fed = window.clock().unwrap_or(0);
                stop.set(format!(
                    "the input is not in time order: {} ({}) has spans ending {} before spans already judged",
                    ctx.sources[dealt.order].name,
                    match &dealt.location {
                        Location::Line(n) => format!("line {n}"),
                        Location::Offset(o) => format!("byte {o}"),
                        Location::Whole => "the input".into(),
                    },
                    seconds(fed.saturating_sub(key.time)),
                ));
                return judged;
            }
        }
        let ready = window.ready(max_spans / 2);
        if !ready.is_empty() {
            signals.extend(engine.ingest_each(ready));
            if let Some(clock) = window.clock() {
                // Only what is due before `clock`: a fragment still to come may end at
                // `clock`.
                signals.extend(engine.tick(clock.saturating_sub(1)));
            }
        }
        let held = engine.counters();
        if held.held_spans as usize + window.spans() > max_spans
            || held.held_traces as usize + window.len() > max_traces
        {
            stop.set(format!(
                "more was held at once than --max-traces {} / --max-spans {} allow ({} trace fragments, {} spans on one of {} judging threads)",
                ctx.opts.buffer.max_traces,
                ctx.opts.buffer.max_spans,
                held.held_traces as usize + window.len(),
                held.held_spans as usize + window.spans(),
                ctx.judges
            ));
            return judged;
        }
    }
    if stop.stopped.load(Relaxed) {
        return judged;
    }
    signals.extend(engine.ingest_each(window.drain()));
    signals.extend(engine.shutdown());
    judged.add(&engine, signals.into_vec());
    judged
}

/// A span of time for people: seconds with milliseconds (`275.143s`), or milliseconds with
/// microseconds below a second (`0.799ms` reads badly; `799.000ms` does not).
fn seconds(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{}.{:03}s", ns / 1_000_000_000, ns / 1_000_000 % 1000)
    } else {
        format!("{}.{:03}ms", ns / 1_000_000, ns / 1000 % 1000)
    }
}

/// An input being read by its own thread, with the next batch it has to offer.
struct Open {
    order: usize,
    rx: Receiver<Message>,
    head: Option<(Batch, Location, Stamp)>,
    thread: std::thread::JoinHandle<()>,
}

/// Streams the inputs through one judging thread per core. `Err` says why the input must
/// be spilled instead; what was judged so far is then dropped.
pub(crate) fn stream(
    ctx: &Ctx<'_>,
    counts: &mut Counts,
    on_bad: &mut dyn FnMut(&super::BadRecord),
) -> Result<(Judged, u64), String> {
    let stop = Stop::default();
    let n = ctx.judges;
    let mut opened_late = 0u64;
    let result = std::thread::scope(|scope| {
        let mut deal: Vec<Sender<Dealt>> = Vec::with_capacity(n);
        let mut judges = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = crossbeam_channel::bounded::<Dealt>(8);
            deal.push(tx);
            let stop = &stop;
            judges.push(
                std::thread::Builder::new()
                    .name(format!("betrace-judge-{i}"))
                    .spawn_scoped(scope, move || judge_thread(ctx, rx, stop))
                    .expect("spawn a judging thread"),
            );
        }
        // Inputs in the order their data starts; unreadable starts (empty or bad files)
        // first, so that their problems are reported at once.
        // Found on every core: a replay over many files reads each one's start.
        let mut pending: Vec<(u64, usize)> = ctx.pool.install(|| {
            use rayon::prelude::*;
            ctx.sources
                .par_iter()
                .enumerate()
                .map(|(i, s)| (first_time(ctx, s).unwrap_or(0), i))
                .collect()
        });
        pending.sort_unstable();
        pending.reverse(); // pop from the end
        let spawn = |order: usize| -> Open {
            let (rx, thread) = spawn_reader(ctx, order);
            Open {
                order,
                rx,
                head: None,
                thread,
            }
        };
        let mut open: Vec<Open> = Vec::new();
        let mut clock = 0u64;
        let mut chunks: Vec<Vec<Trace>> = (0..n).map(|_| Vec::new()).collect();
        while !stop.stopped.load(Relaxed) {
            // Every open input shows its next batch; finished ones close.
            let mut i = 0;
            while i < open.len() {
                while open[i].head.is_none() {
                    match next_message(&open[i].rx) {
                        Some(Message::Batch(b, at, stamp)) => open[i].head = Some((b, at, stamp)),
                        Some(Message::Bad(b)) => counts.bad_record(open[i].order, on_bad, &b),
                        Some(Message::Pending(_)) => {
                            unreachable!("a decoded record is not pending")
                        }
                        None => break,
                    }
                }
                if open[i].head.is_none() {
                    let done = open.remove(i);
                    done.thread.join().expect("a reading thread does not panic");
                    ctx.progress.inputs_done.fetch_add(1, Relaxed);
                } else {
                    i += 1;
                }
            }
            let next_head = open
                .iter()
                .filter_map(|o| Some((o.head.as_ref()?.2.time.unwrap_or(clock), o.order)))
                .min();
            // Open the inputs whose data starts before what is open has to offer.
            if let Some(&(start, order)) = pending.last() {
                let due = next_head.is_none_or(|(t, _)| start <= t);
                if due && open.len() < MAX_OPEN_INPUTS {
                    pending.pop();
                    if start < clock {
                        opened_late += 1;
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
            let (batch, location, stamp) = o.head.take().expect("it has a batch");
            if let Some(t) = stamp.time {
                clock = clock.max(t);
            }
            ctx.count_batch(counts, order, on_bad, &batch, &location, stamp);
            for frag in batch.fragments {
                if !frag.spans.is_empty() {
                    chunks[thread_of(&frag.trace_id, n)].push(frag);
                }
            }
            for (w, chunk) in chunks.iter_mut().enumerate() {
                if !chunk.is_empty() {
                    let dealt = Dealt {
                        order,
                        location: location.clone(),
                        fragments: std::mem::take(chunk),
                    };
                    if deal[w].send(dealt).is_err() {
                        break;
                    }
                }
            }
        }
        // Stop reading: dropping the receivers ends the reading threads.
        for o in open.drain(..) {
            drop(o.rx);
            let _ = o.thread.join();
        }
        drop(deal);
        let mut judged = Judged::default();
        for j in judges {
            judged.absorb(j.join().expect("a judging thread does not panic"));
        }
        judged
    });
    match stop.reason.into_inner() {
        Some(reason) => Err(reason),
        None => Ok((result, opened_late)),
    }
}

/// The time of an input's first batch with a plausible span, or `None`: from its index when
/// it has one; else read only as far as that batch, keeping no attribute.
fn first_time(ctx: &Ctx<'_>, source: &super::Source) -> Option<u64> {
    let (mut time, mut records) = (None, 0);
    let nothing = Arc::new(crate::trace::projected::Projection::new(
        Vec::<String>::new(),
        false,
    ));
    let sink = &mut |r| {
        records += 1;
        let r = match r {
            super::Record::Pending(p) => p.decode(),
            r => r,
        };
        if let super::Record::Batch(b, _) = r {
            time = Stamp::of(&b, ctx.horizon).time;
        }
        time.is_none() && records < 64
    };
    let order = ctx.sources.iter().position(|s| std::ptr::eq(s, source));
    let start = order.and_then(|o| ctx.selections.as_ref()?[o].start());
    if let Some(start) = start {
        return start;
    }
    let file = std::fs::File::open(&source.path).ok()?;
    super::input::read_from(
        &source.name,
        Box::new(file),
        ctx.opts.limits,
        &nothing,
        false,
        sink,
    );
    time
}
