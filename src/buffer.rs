//! The trace buffer (dsl.md §4): spans of one trace arrive spread over many batches; the
//! buffer holds them per trace id and hands each trace to a judge once it is complete
//! enough.
//!
//! A trace is judged `trace_idle_timeout` after its last span arrived, or `max_trace_age`
//! after its first, or early — oldest first, and counted — when `max_traces` or
//! `max_spans` would be exceeded, or at [`TraceBuffer::drain`]. After judging, its spans
//! are kept for one more idle timeout so that a late span can have the trace judged again;
//! the buffer remembers which rules already signalled, so a (rule, trace) pair signals at
//! most once.
//!
//! Time is always passed in (`now`, nanoseconds): the live engine passes the wall clock,
//! replay passes a clock taken from the data, and tests pass whatever they like. The
//! buffer is sharded by trace id, so ingest from several threads does not serialize on one
//! lock; one replay and the C ABI share this one implementation.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::trace::{Trace, TraceId};

/// How long traces are held and how much the buffer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    /// Judge a trace this long after its last span arrived (ns; default 5s).
    pub trace_idle_timeout: u64,
    /// Judge a trace this long after its first span arrived (ns; default 60s).
    pub max_trace_age: u64,
    /// Most traces held at once (default 100,000).
    pub max_traces: usize,
    /// Most spans held at once (default 5,000,000).
    pub max_spans: usize,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            trace_idle_timeout: 5_000_000_000,
            max_trace_age: 60_000_000_000,
            max_traces: 100_000,
            max_spans: 5_000_000,
        }
    }
}

/// Why a trace was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No span arrived for `trace_idle_timeout`.
    Idle,
    /// `max_trace_age` passed since the first span.
    Age,
    /// Early, to stay within `max_traces` / `max_spans`.
    Pressure,
    /// The engine is shutting down.
    Shutdown,
}

/// Rule ids that already signalled for a trace.
pub type Signalled = Vec<Arc<str>>;

/// What the buffer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Spans received.
    pub spans_in: u64,
    /// Distinct traces started.
    pub traces_in: u64,
    /// Times a trace was judged (a trace judged again after a late span counts twice).
    pub traces_judged: u64,
    /// Traces judged early under memory pressure.
    pub traces_judged_early: u64,
    /// Spans that arrived for a trace already judged.
    pub late_spans: u64,
    /// Late spans that arrived after the trace's spans were released, so could not be
    /// judged with them.
    pub late_spans_unjudged: u64,
    /// Traces held now (waiting, or kept after judging for late spans).
    pub held_traces: u64,
    /// Spans held now.
    pub held_spans: u64,
}

/// Called with each trace to judge, the rules that already signalled for it (to be
/// extended with the ones that signal now), and why.
pub type Judge<'a> = dyn FnMut(&Trace, &mut Signalled, Reason) + 'a;

struct Entry {
    trace: Trace,
    first: u64,
    last: u64,
    /// `Some(t)`: judged at `t`, kept only for late spans.
    judged_at: Option<u64>,
    signalled: Signalled,
    version: u64,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<TraceId, Entry>,
    /// (deadline, trace, version); stale when the version moved on.
    deadlines: BinaryHeap<Reverse<(u64, TraceId, u64)>>,
    /// Waiting traces by first arrival, for pressure.
    waiting: BTreeSet<(u64, TraceId)>,
    /// Judged traces by judging time, released first under pressure.
    kept: BTreeSet<(u64, TraceId)>,
    /// Released traces: which rules signalled, so late spans are recognised.
    released: HashMap<TraceId, Signalled>,
    released_order: VecDeque<TraceId>,
    next_version: u64,
}

/// The sharded buffer.
pub struct TraceBuffer {
    config: BufferConfig,
    shards: Vec<Mutex<Shard>>,
    held_traces: AtomicUsize,
    held_spans: AtomicUsize,
    spans_in: AtomicU64,
    traces_in: AtomicU64,
    traces_judged: AtomicU64,
    traces_judged_early: AtomicU64,
    late_spans: AtomicU64,
    late_spans_unjudged: AtomicU64,
}

const SHARDS: usize = 16;

impl TraceBuffer {
    /// An empty buffer.
    pub fn new(config: BufferConfig) -> TraceBuffer {
        TraceBuffer {
            config,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            held_traces: AtomicUsize::new(0),
            held_spans: AtomicUsize::new(0),
            spans_in: AtomicU64::new(0),
            traces_in: AtomicU64::new(0),
            traces_judged: AtomicU64::new(0),
            traces_judged_early: AtomicU64::new(0),
            late_spans: AtomicU64::new(0),
            late_spans_unjudged: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> BufferConfig {
        self.config
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            spans_in: self.spans_in.load(Relaxed),
            traces_in: self.traces_in.load(Relaxed),
            traces_judged: self.traces_judged.load(Relaxed),
            traces_judged_early: self.traces_judged_early.load(Relaxed),
            late_spans: self.late_spans.load(Relaxed),
            late_spans_unjudged: self.late_spans_unjudged.load(Relaxed),
            held_traces: self.held_traces.load(Relaxed) as u64,
            held_spans: self.held_spans.load(Relaxed) as u64,
        }
    }

    fn shard_of(&self, id: &TraceId) -> usize {
        // Trace ids are random; their last byte spreads traces evenly and deterministically.
        id.0[15] as usize % self.shards.len()
    }

    /// Adds spans. Each fragment holds spans of one trace (its `trace_id` set). Traces that
    /// must be judged early to stay within the limits are judged before this returns.
    pub fn ingest(&self, fragments: Vec<Trace>, now: u64, judge: &mut Judge<'_>) {
        let incoming: usize = fragments.iter().map(|f| f.spans.len()).sum();
        self.relieve(incoming, fragments.len(), judge);
        for frag in fragments {
            if frag.spans.is_empty() {
                continue;
            }
            let n = frag.spans.len();
            self.spans_in.fetch_add(n as u64, Relaxed);
            let idle = self.config.trace_idle_timeout;
            let age = self.config.max_trace_age;
            let mut shard = self.shards[self.shard_of(&frag.trace_id)].lock();
            let version = shard.bump();
            let id = frag.trace_id;
            if let Some(entry) = shard.entries.get_mut(&id) {
                merge(&mut entry.trace, frag);
                entry.last = now;
                entry.version = version;
                let first = entry.first;
                let was_judged = entry.judged_at.take();
                if let Some(t) = was_judged {
                    self.late_spans.fetch_add(n as u64, Relaxed);
                    shard.kept.remove(&(t, id));
                    shard.waiting.insert((first, id));
                }
                shard.deadlines.push(Reverse((
                    (now + idle).min(first.saturating_add(age)),
                    id,
                    version,
                )));
            } else if shard.released.contains_key(&id) {
                self.late_spans.fetch_add(n as u64, Relaxed);
                self.late_spans_unjudged.fetch_add(n as u64, Relaxed);
                continue;
            } else {
                self.traces_in.fetch_add(1, Relaxed);
                self.held_traces.fetch_add(1, Relaxed);
                shard.entries.insert(
                    id,
                    Entry {
                        trace: frag,
                        first: now,
                        last: now,
                        judged_at: None,
                        signalled: Vec::new(),
                        version,
                    },
                );
                shard.waiting.insert((now, id));
                shard.deadlines.push(Reverse((
                    (now + idle).min(now.saturating_add(age)),
                    id,
                    version,
                )));
            }
            self.held_spans.fetch_add(n, Relaxed);
        }
        self.relieve(0, 0, judge);
    }

    /// Releases kept traces, then judges waiting ones early, oldest first, until `extra_spans`
    /// more spans and `extra_traces` more traces fit.
    fn relieve(&self, extra_spans: usize, extra_traces: usize, judge: &mut Judge<'_>) {
        let over = |b: &TraceBuffer| {
            b.held_spans.load(Relaxed) + extra_spans > b.config.max_spans
                || b.held_traces.load(Relaxed) + extra_traces > b.config.max_traces
        };
        while over(self) {
            if !self.release_oldest(judge) {
                break;
            }
        }
    }

    /// Frees the oldest kept trace or, if none, judges the oldest waiting one; false when
    /// the buffer is empty.
    fn release_oldest(&self, judge: &mut Judge<'_>) -> bool {
        let oldest = |pick: fn(&Shard) -> Option<(u64, TraceId)>| {
            (0..self.shards.len())
                .filter_map(|i| pick(&self.shards[i].lock()).map(|k| (k, i)))
                .min()
        };
        if let Some(((_, id), i)) = oldest(|s| s.kept.first().copied()) {
            let mut shard = self.shards[i].lock();
            self.release(&mut shard, id);
            return true;
        }
        if let Some(((_, id), i)) = oldest(|s| s.waiting.first().copied()) {
            let mut shard = self.shards[i].lock();
            if let Some(entry) = shard.entries.get_mut(&id) {
                if entry.judged_at.is_none() {
                    judge(&entry.trace, &mut entry.signalled, Reason::Pressure);
                    self.traces_judged.fetch_add(1, Relaxed);
                    self.traces_judged_early.fetch_add(1, Relaxed);
                }
            }
            self.release(&mut shard, id);
            return true;
        }
        false
    }

    /// Drops a trace's spans, remembering which rules signalled for it.
    fn release(&self, shard: &mut Shard, id: TraceId) {
        let Some(entry) = shard.entries.remove(&id) else {
            return;
        };
        shard.waiting.remove(&(entry.first, id));
        if let Some(t) = entry.judged_at {
            shard.kept.remove(&(t, id));
        }
        self.held_traces.fetch_sub(1, Relaxed);
        self.held_spans.fetch_sub(entry.trace.spans.len(), Relaxed);
        shard.released.insert(id, entry.signalled);
        shard.released_order.push_back(id);
        // Remember as many released traces as the buffer may hold: bounded memory.
        while shard.released_order.len() > self.config.max_traces.div_ceil(self.shards.len()).max(1)
        {
            if let Some(old) = shard.released_order.pop_front() {
                shard.released.remove(&old);
            }
        }
    }

    /// Judges every trace whose idle or age deadline is at or before `now`, in deadline
    /// order (ties by trace id), and releases judged traces kept past their late-span window.
    pub fn expire(&self, now: u64, judge: &mut Judge<'_>) {
        let mut due = Vec::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let mut shard = shard.lock();
            while let Some(Reverse((deadline, id, version))) = shard.deadlines.peek().copied() {
                if deadline > now {
                    break;
                }
                shard.deadlines.pop();
                if shard.entries.get(&id).is_some_and(|e| e.version == version) {
                    due.push((deadline, id, version, i));
                }
            }
        }
        due.sort_unstable();
        let idle = self.config.trace_idle_timeout;
        for (_, id, version, i) in due {
            let mut shard = self.shards[i].lock();
            let Some(entry) = shard.entries.get_mut(&id) else {
                continue;
            };
            if entry.version != version {
                continue;
            }
            if entry.judged_at.is_some() {
                self.release(&mut shard, id);
                continue;
            }
            let reason = if now >= entry.first.saturating_add(self.config.max_trace_age)
                && now < entry.last + idle
            {
                Reason::Age
            } else {
                Reason::Idle
            };
            judge(&entry.trace, &mut entry.signalled, reason);
            self.traces_judged.fetch_add(1, Relaxed);
            entry.judged_at = Some(now);
            let first = entry.first;
            let version = shard.bump();
            let entry = shard.entries.get_mut(&id).expect("present");
            entry.version = version;
            shard.waiting.remove(&(first, id));
            shard.kept.insert((now, id));
            shard.deadlines.push(Reverse((now + idle, id, version)));
        }
    }

    /// Judges every waiting trace (oldest first) and releases everything: shutdown.
    pub fn drain(&self, judge: &mut Judge<'_>) {
        let mut all: Vec<(u64, TraceId, usize)> = Vec::new();
        for (i, shard) in self.shards.iter().enumerate() {
            all.extend(
                shard
                    .lock()
                    .waiting
                    .iter()
                    .map(|&(first, id)| (first, id, i)),
            );
        }
        all.sort_unstable();
        for (_, id, i) in all {
            let mut shard = self.shards[i].lock();
            if let Some(entry) = shard.entries.get_mut(&id) {
                if entry.judged_at.is_none() {
                    judge(&entry.trace, &mut entry.signalled, Reason::Shutdown);
                    self.traces_judged.fetch_add(1, Relaxed);
                }
            }
        }
        for shard in &self.shards {
            let mut shard = shard.lock();
            let ids: Vec<TraceId> = shard.entries.keys().copied().collect();
            for id in ids {
                self.release(&mut shard, id);
            }
            shard.deadlines.clear();
        }
    }
}

impl Shard {
    fn bump(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }
}

/// Appends a fragment's spans to a held trace, sharing equal resources.
fn merge(into: &mut Trace, frag: Trace) {
    let map: Vec<usize> = frag
        .resources
        .into_iter()
        .map(|r| match into.resources.iter().position(|e| *e == r) {
            Some(i) => i,
            None => {
                into.resources.push(r);
                into.resources.len() - 1
            }
        })
        .collect();
    into.spans.extend(frag.spans.into_iter().map(|mut s| {
        s.resource = map.get(s.resource).copied().unwrap_or(0);
        s
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Resource, Span, SpanId};
    use crate::value::Value;

    const S: u64 = 1_000_000_000;

    fn frag(trace: u8, names: &[&str]) -> Trace {
        let mut id = [0u8; 16];
        id[0] = trace;
        id[15] = trace;
        Trace {
            trace_id: TraceId(id),
            spans: names
                .iter()
                .enumerate()
                .map(|(i, n)| Span {
                    span_id: SpanId([trace, i as u8, 0, 0, 0, 0, 0, 1]),
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            resources: vec![Resource {
                attributes: vec![("service.name".into(), Value::str("svc"))],
            }],
        }
    }

    /// Records what was judged: (trace byte, span count, reason).
    #[derive(Default)]
    struct Log(Vec<(u8, usize, Reason)>);

    impl Log {
        fn judge(&mut self) -> impl FnMut(&Trace, &mut Signalled, Reason) + '_ {
            |t, signalled, reason| {
                self.0.push((t.trace_id.0[0], t.spans.len(), reason));
                // Pretend rule "r" fires whenever the trace has a span named "bad".
                if t.spans.iter().any(|s| s.name == "bad") && !signalled.iter().any(|r| &**r == "r")
                {
                    signalled.push(Arc::from("r"));
                }
            }
        }
    }

    fn config() -> BufferConfig {
        BufferConfig {
            trace_idle_timeout: 5 * S,
            max_trace_age: 60 * S,
            max_traces: 100,
            max_spans: 1000,
        }
    }

    #[test]
    fn judged_once_whole_after_the_idle_timeout() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        b.ingest(vec![frag(1, &["a", "b"])], 0, &mut log.judge());
        b.ingest(vec![frag(1, &["c"])], 3 * S, &mut log.judge());
        b.expire(7 * S, &mut log.judge());
        assert!(
            log.0.is_empty(),
            "the idle timeout restarts with every span"
        );
        b.expire(8 * S, &mut log.judge());
        assert_eq!(log.0, vec![(1, 3, Reason::Idle)]);
        b.expire(9 * S, &mut log.judge());
        assert_eq!(log.0.len(), 1, "judged once");
        assert_eq!(b.counters().traces_judged, 1);
    }

    #[test]
    fn judged_at_max_age_even_when_spans_keep_coming() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        for t in 0..=60 {
            b.ingest(vec![frag(2, &["x"])], t * S, &mut log.judge());
            b.expire(t * S, &mut log.judge());
        }
        assert_eq!(log.0, vec![(2, 61, Reason::Age)]);
    }

    #[test]
    fn pressure_judges_oldest_first_and_counts_it() {
        let b = TraceBuffer::new(BufferConfig {
            max_traces: 2,
            ..config()
        });
        let mut log = Log::default();
        b.ingest(vec![frag(1, &["a"])], 0, &mut log.judge());
        b.ingest(vec![frag(2, &["a"])], S, &mut log.judge());
        b.ingest(vec![frag(3, &["a"])], 2 * S, &mut log.judge());
        assert_eq!(log.0, vec![(1, 1, Reason::Pressure)]);
        let c = b.counters();
        assert_eq!((c.traces_judged_early, c.held_traces), (1, 2));
    }

    #[test]
    fn kept_traces_are_released_before_waiting_ones_are_judged_early() {
        let b = TraceBuffer::new(BufferConfig {
            max_traces: 2,
            ..config()
        });
        let mut log = Log::default();
        b.ingest(vec![frag(1, &["a"])], 0, &mut log.judge());
        b.expire(5 * S, &mut log.judge());
        b.ingest(vec![frag(2, &["a"])], 6 * S, &mut log.judge());
        b.ingest(vec![frag(3, &["a"])], 7 * S, &mut log.judge());
        assert_eq!(
            log.0,
            vec![(1, 1, Reason::Idle)],
            "trace 1 was already judged: releasing it costs no early judgement"
        );
        assert_eq!(b.counters().traces_judged_early, 0);
    }

    #[test]
    fn memory_stays_within_max_spans_under_a_flood_of_trace_ids() {
        let b = TraceBuffer::new(BufferConfig {
            max_spans: 500,
            max_traces: 100_000,
            ..config()
        });
        let mut log = Log::default();
        for i in 0..5_000u32 {
            let mut f = frag((i % 251) as u8, &["a", "b", "c"]);
            f.trace_id.0[1..5].copy_from_slice(&i.to_be_bytes());
            b.ingest(vec![f], i as u64, &mut log.judge());
            assert!(
                b.counters().held_spans <= 500,
                "held {} spans",
                b.counters().held_spans
            );
        }
        let c = b.counters();
        assert_eq!(c.traces_in, 5_000);
        assert!(c.traces_judged_early >= 4_800, "{c:?}");
        assert_eq!(log.0.len() as u64, c.traces_judged);
    }

    #[test]
    fn shutdown_judges_everything_held() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        b.ingest(
            vec![frag(1, &["a"]), frag(2, &["a", "b"])],
            0,
            &mut log.judge(),
        );
        b.drain(&mut log.judge());
        assert_eq!(
            log.0,
            vec![(1, 1, Reason::Shutdown), (2, 2, Reason::Shutdown)]
        );
        assert_eq!(b.counters().held_traces, 0);
        assert_eq!(b.counters().held_spans, 0);
    }

    #[test]
    fn a_late_span_rejudges_the_whole_trace_without_a_second_signal() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        let mut signals = 0;
        let mut judge = |t: &Trace, s: &mut Signalled, r: Reason| {
            let before = s.len();
            log.judge()(t, s, r);
            signals += s.len() - before;
        };
        b.ingest(vec![frag(1, &["bad"])], 0, &mut judge);
        b.expire(5 * S, &mut judge);
        b.ingest(vec![frag(1, &["late", "bad"])], 6 * S, &mut judge);
        b.expire(11 * S, &mut judge);
        assert_eq!(
            log.0,
            vec![(1, 1, Reason::Idle), (1, 3, Reason::Idle)],
            "judged again, whole"
        );
        assert_eq!(signals, 1, "the rule signalled once for the trace");
        assert_eq!(b.counters().late_spans, 2);
    }

    #[test]
    fn a_late_span_after_release_is_counted_not_judged_alone() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        b.ingest(vec![frag(1, &["a"])], 0, &mut log.judge());
        b.expire(5 * S, &mut log.judge());
        b.expire(10 * S, &mut log.judge());
        assert_eq!(
            b.counters().held_traces,
            0,
            "released after the late-span window"
        );
        b.ingest(vec![frag(1, &["late"])], 11 * S, &mut log.judge());
        b.expire(30 * S, &mut log.judge());
        assert_eq!(log.0.len(), 1);
        let c = b.counters();
        assert_eq!((c.late_spans, c.late_spans_unjudged), (1, 1));
    }

    #[test]
    fn resources_are_shared_when_fragments_merge() {
        let b = TraceBuffer::new(config());
        let mut sizes = Vec::new();
        let mut judge = |t: &Trace, _: &mut Signalled, _: Reason| {
            sizes.push((t.spans.len(), t.resources.len()))
        };
        b.ingest(vec![frag(1, &["a"])], 0, &mut judge);
        b.ingest(vec![frag(1, &["b"])], 0, &mut judge);
        b.drain(&mut judge);
        assert_eq!(sizes, vec![(2, 1)]);
    }
}
