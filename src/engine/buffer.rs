//! The trace buffer (docs/language.md, "When a trace is judged"): spans of one trace arrive spread over many batches; the
//! buffer holds them per trace id and hands each trace to a judge once it is complete
//! enough.
//!
//! A trace is judged `trace_idle_timeout` after its last span arrived, or `max_trace_age`
//! after its first, or early — oldest first, counted, and logged (at most every ten
//! seconds) — when `max_traces`, `max_spans` or `max_bytes` would be exceeded, or at
//! [`TraceBuffer::drain`]. After judging, its spans
//! are kept for one more idle timeout so that a late span can have the trace judged again;
//! the buffer remembers which rules already signalled, so a (rule, trace) pair signals at
//! most once.
//!
//! Time is always passed in (`now`, nanoseconds): the live engine passes the wall clock,
//! replay passes a clock taken from the data, and tests pass whatever they like. The
//! buffer is sharded by trace id, so ingest from several threads does not serialize on one
//! lock, and rules run with no shard locked (a trace being judged is locked on its own, so
//! spans of other traces keep arriving); one replay and the C ABI share this one
//! implementation.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::mem::size_of;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::engine::counters::Counters;
use crate::engine::ratelimit::LogLimit;
use crate::trace::projected::Trace;
use crate::trace::{SpanId, TraceId};

/// How long traces are held and how much the buffer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    /// Judge a trace this long after its last span arrived (ns; default 5s).
    pub trace_idle_timeout: u64,
    /// Judge a trace this long after its first span arrived (ns; default 60s).
    pub max_trace_age: u64,
    /// Most traces held at once (default 1,000,000).
    pub max_traces: usize,
    /// Most spans held at once (default 5,000,000).
    pub max_spans: usize,
    /// Most bytes the held traces may take (default 512 MiB): their spans, attributes,
    /// text and share of resources as allocated, and what holding each costs besides
    /// ([`TraceBuffer::counters`]' `held_bytes`, an estimate from the allocations' sizes).
    pub max_bytes: usize,
}

/// The default of [`BufferConfig::max_traces`] (and of replay's `--max-traces`): room for
/// twice the traces of 26,600 a second held for the default idle timeout and kept as long
/// again for late spans (docs/deploy.md, "Sizing").
pub const DEFAULT_MAX_TRACES: usize = 1_000_000;
/// The default of [`BufferConfig::max_spans`] (and of replay's `--max-spans`).
pub const DEFAULT_MAX_SPANS: usize = 5_000_000;
/// The default of [`BufferConfig::max_bytes`]: 512 MiB (the components' `memory_limit_mib`),
/// reached before the two counts by traces of about three spans or more.
pub const DEFAULT_MAX_BYTES: usize = 512 << 20;

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            trace_idle_timeout: 5_000_000_000,
            max_trace_age: 60_000_000_000,
            max_traces: DEFAULT_MAX_TRACES,
            max_spans: DEFAULT_MAX_SPANS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What a held trace was already counted for, so that judging it again after a late span
/// counts and signals each rule once; and whether it was judged early (then it is not
/// complete).
#[derive(Debug, Clone, Default)]
pub struct Counted {
    /// Per rule that applied to the trace or skipped it.
    pub rules: Vec<CountedRule>,
    /// The trace was judged early, under `max_traces`/`max_spans`/`max_bytes`.
    pub judged_early: bool,
    /// An observer ([`crate::engine::Engine::with_observer`]) has seen it complete.
    pub observed: bool,
}

/// One rule that applied to a held trace, or skipped it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountedRule {
    /// The rule ([`crate::rules::ruleset::Rule::uid`]: the same across reloads).
    pub rule: u64,
    /// The evidence group the trace was attributed to (replay's evidence only).
    pub group: u32,
    /// The UTC day it was attributed to (replay's evidence only).
    pub day: u64,
    /// Counted as applied.
    pub applied: bool,
    /// Counted as skipped (`incomplete: skip` on an incomplete trace).
    pub skipped: bool,
    /// Whether it signalled.
    pub signalled: bool,
}

/// Called with each trace to judge and what it was already counted for (to be extended
/// with what counts now).
pub type Judge<'a> = dyn FnMut(&Trace, &mut Counted) + 'a;

struct Entry {
    /// The spans and what signalled, behind a lock of their own: a trace is judged with
    /// only this lock held, never its shard's, and two judgings of one trace (a late span
    /// arriving while it is judged) take turns, so a rule signals once a trace.
    held: Arc<Mutex<Held>>,
    /// Span ids held, so that a re-sent span counts once.
    seen: SeenSpans,
    first: u64,
    last: u64,
    /// `Some(t)`: judged at `t`, kept only for late spans.
    judged_at: Option<u64>,
    version: u64,
    /// Spans held (the trace's, without locking it).
    spans: usize,
    /// Bytes counted in `held_bytes` for this trace, but for what judging it added
    /// (`Held::counted_bytes`).
    bytes: usize,
    /// Of `bytes`, the trace's own blocks ([`Trace::heap_bytes`]) and its span-id index:
    /// what is counted again as the trace grows.
    own: usize,
}

/// A held trace and the rules that already signalled for it.
struct Held {
    trace: Trace,
    counted: Counted,
    /// Bytes of `counted` counted in `held_bytes` (judging adds a record per rule).
    counted_bytes: usize,
    /// Released from the buffer: what judging adds is no longer held.
    released: bool,
}

impl Held {
    /// Judges the trace; what judging added to it is counted in `held_bytes` while the
    /// trace is held.
    fn judge(&mut self, judge: &mut Judge<'_>, held_bytes: &AtomicUsize) {
        judge(&self.trace, &mut self.counted);
        let bytes = self.counted.rules.capacity() * size_of::<CountedRule>();
        if !self.released && bytes > self.counted_bytes {
            held_bytes.fetch_add(bytes - self.counted_bytes, Relaxed);
            self.counted_bytes = bytes;
        }
    }
}

/// What holding a trace costs beside its own blocks: its slot in its shard's map (at the
/// map's two-thirds load on average), its `Held` behind an `Arc<Mutex<…>>`, and its key in
/// `waiting` or `kept` (B-tree nodes about half full).
const TRACE_OVERHEAD: usize = (size_of::<(TraceId, Entry)>() + 1) * 3 / 2
    + 2 * size_of::<usize>()
    + size_of::<Mutex<Held>>()
    + 2 * size_of::<(u64, TraceId)>();

/// One entry of a shard's deadlines, pushed per fragment added (and at judging); it stays
/// until its deadline passes, which for a trace shorter than its idle timeout is while the
/// trace is held.
const DEADLINE_BYTES: usize = size_of::<Reverse<(u64, TraceId, u64)>>();

/// The limits that can make the buffer judge traces early, as bits of `early_limits`.
const LIMIT_TRACES: u32 = 1;
const LIMIT_SPANS: u32 = 2;
const LIMIT_BYTES: u32 = 4;

#[derive(Default)]
struct Shard {
    /// foldhash: seeded per process, so crafted trace ids cannot collide on purpose.
    entries: HashMap<TraceId, Entry, foldhash::fast::RandomState>,
    /// (deadline, trace, version); stale when the version moved on.
    deadlines: BinaryHeap<Reverse<(u64, TraceId, u64)>>,
    /// Waiting traces by first arrival, for pressure.
    waiting: BTreeSet<(u64, TraceId)>,
    /// Judged traces by judging time, released first under pressure.
    kept: BTreeSet<(u64, TraceId)>,
    /// Released traces, so late spans are recognised exactly.
    released: HashSet<TraceId, foldhash::fast::RandomState>,
    released_order: VecDeque<TraceId>,
    /// Traces forgotten from `released`, remembered approximately.
    forgotten: Forgotten,
    next_version: u64,
}

/// What becomes of a fragment's trace.
enum Status {
    /// Held, with `held` spans in `bytes`: `new_spans` of the fragment are not held yet.
    Held {
        new_spans: usize,
        held: usize,
        bytes: usize,
    },
    /// Already judged and released: the fragment is late and cannot be judged.
    Released,
    /// A trace not seen before.
    New,
}

/// The sharded buffer.
pub struct TraceBuffer {
    config: BufferConfig,
    shards: Vec<Mutex<Shard>>,
    held_traces: AtomicUsize,
    held_spans: AtomicUsize,
    spans_in: AtomicU64,
    spans_accepted: AtomicU64,
    duplicate_spans: AtomicU64,
    traces_in: AtomicU64,
    traces_judged: AtomicU64,
    traces_judged_early: AtomicU64,
    late_spans: AtomicU64,
    late_spans_unjudged: AtomicU64,
    traces_oversized: AtomicU64,
    oversized_logged: LogLimit,
    held_bytes: AtomicUsize,
    traces_judged_early_memory: AtomicU64,
    /// Traces judged early under pressure since the last log line, and the limits that
    /// made it (`LIMIT_*` bits): logged at most once per interval.
    early_logged: LogLimit,
    early_unlogged: AtomicU64,
    early_limits: AtomicU32,
    /// [`TraceBuffer::extend_idle`]: traces whose latest span arrived before
    /// `grace_until` wait `grace` longer than the idle timeout.
    grace_until: AtomicU64,
    grace: AtomicU64,
}

const SHARDS: usize = 16;

impl TraceBuffer {
    /// An empty buffer.
    pub fn new(config: BufferConfig) -> TraceBuffer {
        // Eight times the exact memory, within 4,096..262,144 ids a shard: at most 2 MiB a
        // generation a shard (64 MiB in all; 12.8 MiB with the default max_traces),
        // allocated only once traces are forgotten.
        let forgotten_capacity =
            (config.max_traces.saturating_mul(8) / SHARDS).clamp(4096, 1 << 18);
        TraceBuffer {
            config,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        forgotten: Forgotten::new(forgotten_capacity),
                        ..Shard::default()
                    })
                })
                .collect(),
            held_traces: AtomicUsize::new(0),
            held_spans: AtomicUsize::new(0),
            spans_in: AtomicU64::new(0),
            spans_accepted: AtomicU64::new(0),
            duplicate_spans: AtomicU64::new(0),
            traces_in: AtomicU64::new(0),
            traces_judged: AtomicU64::new(0),
            traces_judged_early: AtomicU64::new(0),
            late_spans: AtomicU64::new(0),
            late_spans_unjudged: AtomicU64::new(0),
            traces_oversized: AtomicU64::new(0),
            oversized_logged: LogLimit::default(),
            held_bytes: AtomicUsize::new(0),
            traces_judged_early_memory: AtomicU64::new(0),
            early_logged: LogLimit::default(),
            early_unlogged: AtomicU64::new(0),
            early_limits: AtomicU32::new(0),
            grace_until: AtomicU64::new(0),
            grace: AtomicU64::new(0),
        }
    }

    /// From now on, a trace whose latest span arrived before `until` is judged `extra`
    /// after the idle timeout (`max_trace_age` still bounds it). After a restart, a sender
    /// retries the requests it queued during the outage in no particular order, each after
    /// its own backoff, so the spans of one trace can come back further apart than the idle
    /// timeout; a host that knows how long it stood gives that time here
    /// (`crate::embed::journal`). A later call replaces the earlier one.
    pub fn extend_idle(&self, until: u64, extra: u64) {
        self.grace.store(extra, Relaxed);
        self.grace_until.store(until, Relaxed);
    }

    /// When a waiting trace whose first span arrived at `first` and latest at `last` is
    /// due: its idle timeout after `last` (lengthened by [`TraceBuffer::extend_idle`]'s
    /// grace when `last` falls within it), or `max_trace_age` after `first`, whichever
    /// comes first.
    fn deadline(&self, first: u64, last: u64) -> u64 {
        let mut idle = self.config.trace_idle_timeout;
        if last < self.grace_until.load(Relaxed) {
            idle = idle.saturating_add(self.grace.load(Relaxed));
        }
        last.saturating_add(idle)
            .min(first.saturating_add(self.config.max_trace_age))
    }

    /// The counters now (the buffer's fields; the others are left 0).
    pub fn counters(&self) -> Counters {
        Counters {
            spans_in: self.spans_in.load(Relaxed),
            spans_accepted: self.spans_accepted.load(Relaxed),
            duplicate_spans: self.duplicate_spans.load(Relaxed),
            traces_in: self.traces_in.load(Relaxed),
            traces_judged: self.traces_judged.load(Relaxed),
            traces_judged_early: self.traces_judged_early.load(Relaxed),
            late_spans: self.late_spans.load(Relaxed),
            late_spans_unjudged: self.late_spans_unjudged.load(Relaxed),
            held_traces: self.held_traces.load(Relaxed) as u64,
            held_spans: self.held_spans.load(Relaxed) as u64,
            traces_oversized: self.traces_oversized.load(Relaxed),
            held_bytes: self.held_bytes.load(Relaxed) as u64,
            traces_judged_early_memory: self.traces_judged_early_memory.load(Relaxed),
            ..Counters::default()
        }
    }

    fn shard_of(&self, id: &TraceId) -> usize {
        // Trace ids are random; their last byte spreads traces evenly and deterministically.
        id.0[15] as usize % self.shards.len()
    }

    /// Adds spans. Each fragment holds spans of one trace (its `trace_id` set). A span
    /// already held (same span id) counts once. Traces that must be judged early to stay
    /// within the limits are judged before this returns — only when the limits would
    /// really be exceeded. A trace that alone would hold more than `max_spans` or
    /// `max_bytes` is judged at once on what it has (`TraceBuffer::oversized`) instead of
    /// pushing every other trace out.
    pub fn ingest(&self, fragments: Vec<Trace>, now: u64, judge: &mut Judge<'_>) {
        for frag in fragments {
            self.ingest_one(frag, now, judge);
        }
    }

    /// Adds one fragment arriving at `now`, as [`TraceBuffer::ingest`] does.
    ///
    /// A trace whose deadline passed before `now` is judged *before* the fragment is added,
    /// even when no [`TraceBuffer::expire`] ran in between: whether a span belongs to a
    /// trace's judgement depends only on that trace's own arrivals, never on how often the
    /// clock ticked or on other traces. Replay relies on it (docs/replay.md, "Order").
    pub fn ingest_one(&self, mut frag: Trace, now: u64, judge: &mut Judge<'_>) {
        if frag.spans.is_empty() {
            return;
        }
        self.spans_in.fetch_add(frag.spans.len() as u64, Relaxed);
        let dups = dedup_fragment(&mut frag);
        self.duplicate_spans.fetch_add(dups as u64, Relaxed);
        let i = self.shard_of(&frag.trace_id);
        let (status, due) = {
            let mut shard = self.shards[i].lock();
            let due = self.settle(&mut shard, frag.trace_id, now);
            (shard.status(&frag), due)
        };
        if let Some(held) = due {
            held.lock().judge(judge, &self.held_bytes);
            self.traces_judged.fetch_add(1, Relaxed);
        }
        let (spans, traces, held, bytes) = match status {
            Status::Held {
                new_spans,
                held,
                bytes,
            } => (new_spans, 0, held, bytes),
            Status::Released => (0, 0, 0, 0),
            Status::New => (frag.spans.len(), 1, 0, TRACE_OVERHEAD),
        };
        // What the fragment adds: its blocks (a held trace's grow by about as much) and
        // the deadline it pushes.
        let extra_bytes = frag.heap_bytes() + DEADLINE_BYTES;
        if spans > 0 && held.saturating_add(spans) > self.config.max_spans {
            self.oversized(i, frag, now, "max_spans", judge);
            return;
        }
        if spans > 0 && bytes.saturating_add(extra_bytes) > self.config.max_bytes {
            self.oversized(i, frag, now, "memory_limit_mib", judge);
            return;
        }
        if spans > 0 {
            self.relieve(spans, traces, extra_bytes, now, judge);
        }
        {
            let mut shard = self.shards[i].lock();
            self.add(&mut shard, frag, now);
        }
        // The estimate of what the fragment adds is close, not exact (a vector doubling):
        // the bound holds after every fragment all the same.
        if self.held_bytes.load(Relaxed) > self.config.max_bytes {
            self.relieve(0, 0, 0, now, judge);
        }
    }

    /// Brings one held trace up to `now` before a fragment of it is added: a waiting
    /// trace whose deadline passed before `now` is marked judged (returned, to be judged with no
    /// shard locked), a judged one whose late-span window has passed is released.
    fn settle(&self, shard: &mut Shard, id: TraceId, now: u64) -> Option<Arc<Mutex<Held>>> {
        let idle = self.config.trace_idle_timeout;
        let entry = shard.entries.get(&id)?;
        // Strictly before `now`: a span arriving at the very deadline still belongs to the
        // trace, as it does when it comes before the tick of that instant.
        if let Some(t) = entry.judged_at {
            if t.saturating_add(idle) < now {
                self.release(shard, id);
            }
            return None;
        }
        let deadline = self.deadline(entry.first, entry.last);
        if deadline >= now {
            return None;
        }
        let (held, at) = self.mark_judged(shard, id, deadline);
        // Its late-span window may have passed since too.
        if at.saturating_add(idle) < now {
            self.release(shard, id);
        }
        Some(held)
    }

    /// Marks a waiting trace judged at its `deadline` (never before its last arrival) and
    /// keeps it one idle timeout more for late spans; returns it, to be judged, and the time
    /// it was marked at. The time
    /// it is marked at is the trace's own, not the clock's: the late-span window of a trace
    /// does not depend on when the clock happened to tick.
    fn mark_judged(
        &self,
        shard: &mut Shard,
        id: TraceId,
        deadline: u64,
    ) -> (Arc<Mutex<Held>>, u64) {
        let version = shard.bump();
        let entry = shard.entries.get_mut(&id).expect("held");
        let at = deadline.max(entry.last);
        let (first, held) = (entry.first, entry.held.clone());
        entry.judged_at = Some(at);
        entry.version = version;
        entry.bytes += DEADLINE_BYTES;
        self.held_bytes.fetch_add(DEADLINE_BYTES, Relaxed);
        shard.waiting.remove(&(first, id));
        shard.kept.insert((at, id));
        let idle = self.config.trace_idle_timeout;
        shard
            .deadlines
            .push(Reverse((at.saturating_add(idle), id, version)));
        (held, at)
    }

    /// A trace that alone holds more than `max_spans` (or `max_bytes`: `limit` names the
    /// one) with this fragment: it is added, released and judged early on everything it
    /// has, counted, and logged (at most once per
    /// [`crate::engine::ratelimit::LOG_INTERVAL`]); its later spans are late. Memory
    /// exceeds the limit by at most this one fragment, for the time of the judging.
    fn oversized(
        &self,
        i: usize,
        frag: Trace,
        now: u64,
        limit: &'static str,
        judge: &mut Judge<'_>,
    ) {
        let id = frag.trace_id;
        let entry = {
            let mut shard = self.shards[i].lock();
            self.add(&mut shard, frag, now);
            self.release(&mut shard, id)
        };
        let Some(entry) = entry else { return };
        let total = self.traces_oversized.fetch_add(1, Relaxed) + 1;
        if limit == "memory_limit_mib" {
            self.traces_judged_early_memory.fetch_add(1, Relaxed);
        }
        if self.oversized_logged.due(now) {
            tracing::warn!(
                target: "betrace",
                trace_id = %id,
                spans = entry.spans,
                bytes = entry.bytes,
                limit,
                max_spans = self.config.max_spans,
                max_bytes = self.config.max_bytes,
                total,
                "a trace larger than {limit} alone was judged early on the spans it had; its later spans are counted as late and not judged"
            );
        }
        self.judge_early(&entry, judge);
    }

    /// Judges a released trace before its time, marked and counted as judged early.
    fn judge_early(&self, entry: &Entry, judge: &mut Judge<'_>) {
        let mut held = entry.held.lock();
        held.counted.judged_early = true;
        held.judge(judge, &self.held_bytes);
        drop(held);
        self.traces_judged.fetch_add(1, Relaxed);
        self.traces_judged_early.fetch_add(1, Relaxed);
    }

    /// Adds one deduplicated fragment to its shard.
    fn add(&self, shard: &mut Shard, mut frag: Trace, now: u64) {
        let id = frag.trace_id;
        match shard.status(&frag) {
            Status::Released => {
                let n = frag.spans.len() as u64;
                self.late_spans.fetch_add(n, Relaxed);
                self.late_spans_unjudged.fetch_add(n, Relaxed);
            }
            Status::Held { new_spans, .. } => {
                let version = shard.bump();
                let entry = shard.entries.get_mut(&id).expect("held");
                let mut held = entry.held.lock();
                // A feed whose spans all came in already (two pipelines fed the same spans)
                // still carried the trace.
                held.trace.feeds |= frag.feeds;
                let dups = frag.spans.len() - new_spans;
                if dups > 0 {
                    let seen = &entry.seen;
                    let trace = &held.trace;
                    frag.retain_spans(|s| !seen.contains(trace, &s.span_id));
                    self.duplicate_spans.fetch_add(dups as u64, Relaxed);
                }
                if frag.spans.is_empty() {
                    return;
                }
                let n = frag.spans.len();
                let resources = held.trace.resource_count();
                held.trace.append(frag);
                entry.seen.update(&held.trace);
                let own = held.trace.heap_bytes() + entry.seen.heap_bytes();
                let added = own + held.trace.resource_share_bytes(resources) + DEADLINE_BYTES;
                drop(held);
                entry.bytes = entry.bytes + added - entry.own;
                self.held_bytes.fetch_add(added, Relaxed);
                self.held_bytes.fetch_sub(entry.own, Relaxed);
                entry.own = own;
                entry.spans += n;
                entry.last = now;
                entry.version = version;
                let first = entry.first;
                if let Some(t) = entry.judged_at.take() {
                    self.late_spans.fetch_add(n as u64, Relaxed);
                    shard.kept.remove(&(t, id));
                    shard.waiting.insert((first, id));
                }
                let deadline = self.deadline(first, now);
                shard.deadlines.push(Reverse((deadline, id, version)));
                self.spans_accepted.fetch_add(n as u64, Relaxed);
                self.held_spans.fetch_add(n, Relaxed);
            }
            Status::New => {
                let n = frag.spans.len();
                let version = shard.bump();
                self.traces_in.fetch_add(1, Relaxed);
                self.held_traces.fetch_add(1, Relaxed);
                self.spans_accepted.fetch_add(n as u64, Relaxed);
                self.held_spans.fetch_add(n, Relaxed);
                let mut seen = SeenSpans::default();
                seen.update(&frag);
                let own = frag.heap_bytes() + seen.heap_bytes();
                let bytes = TRACE_OVERHEAD + own + frag.resource_share_bytes(0) + DEADLINE_BYTES;
                self.held_bytes.fetch_add(bytes, Relaxed);
                shard.entries.insert(
                    id,
                    Entry {
                        held: Arc::new(Mutex::new(Held {
                            trace: frag,
                            counted: Counted::default(),
                            counted_bytes: 0,
                            released: false,
                        })),
                        seen,
                        first: now,
                        last: now,
                        judged_at: None,
                        version,
                        spans: n,
                        bytes,
                        own,
                    },
                );
                shard.waiting.insert((now, id));
                let deadline = self.deadline(now, now);
                shard.deadlines.push(Reverse((deadline, id, version)));
            }
        }
    }

    /// Releases kept traces, then judges waiting ones early, oldest first, until `extra_spans`
    /// more spans, `extra_traces` more traces and `extra_bytes` more bytes fit. Each shard is
    /// locked once to find a batch of the oldest candidates, and once per trace released;
    /// rules run with no shard locked. Traces judged early are logged (`warn_early`).
    fn relieve(
        &self,
        extra_spans: usize,
        extra_traces: usize,
        extra_bytes: usize,
        now: u64,
        judge: &mut Judge<'_>,
    ) {
        let over = |b: &TraceBuffer| b.over(extra_spans, extra_traces, extra_bytes) != 0;
        while over(self) {
            let (kept, batch) = match self.oldest(|s| &s.kept) {
                batch if !batch.is_empty() => (true, batch),
                _ => (false, self.oldest(|s| &s.waiting)),
            };
            if batch.is_empty() {
                break;
            }
            for (key, i) in batch {
                if !over(self) {
                    break;
                }
                let released = {
                    let mut shard = self.shards[i].lock();
                    // Still where it was found? (A late span may have moved it meanwhile.)
                    let set = if kept { &shard.kept } else { &shard.waiting };
                    if !set.contains(&key) {
                        continue;
                    }
                    self.release(&mut shard, key.1)
                };
                if let (false, Some(entry)) = (kept, released) {
                    // The limits still exceeded without it made it go.
                    let limits = self.over(
                        extra_spans + entry.spans,
                        extra_traces + 1,
                        extra_bytes + entry.bytes,
                    );
                    if limits & LIMIT_BYTES != 0 {
                        self.traces_judged_early_memory.fetch_add(1, Relaxed);
                    }
                    self.early_unlogged.fetch_add(1, Relaxed);
                    self.early_limits.fetch_or(limits, Relaxed);
                    self.judge_early(&entry, judge);
                }
            }
        }
        self.warn_early(now);
    }

    /// The limits (`LIMIT_*` bits) that `extra_spans`, `extra_traces` and `extra_bytes` more
    /// would exceed.
    fn over(&self, extra_spans: usize, extra_traces: usize, extra_bytes: usize) -> u32 {
        let exceeds = |held: usize, extra: usize, max: usize| held.saturating_add(extra) > max;
        let mut limits = 0;
        if exceeds(
            self.held_traces.load(Relaxed),
            extra_traces,
            self.config.max_traces,
        ) {
            limits |= LIMIT_TRACES;
        }
        if exceeds(
            self.held_spans.load(Relaxed),
            extra_spans,
            self.config.max_spans,
        ) {
            limits |= LIMIT_SPANS;
        }
        if exceeds(
            self.held_bytes.load(Relaxed),
            extra_bytes,
            self.config.max_bytes,
        ) {
            limits |= LIMIT_BYTES;
        }
        limits
    }

    /// Logs the traces judged early since the last line, at most once per
    /// [`crate::engine::ratelimit::LOG_INTERVAL`]: how many, which limits made it, and what
    /// to raise — so that rules with `incomplete: skip` skipping those traces are noticed.
    fn warn_early(&self, now: u64) {
        if self.early_unlogged.load(Relaxed) == 0 || !self.early_logged.due(now) {
            return;
        }
        let traces = self.early_unlogged.swap(0, Relaxed);
        let bits = self.early_limits.swap(0, Relaxed);
        let names: Vec<&str> = [
            (LIMIT_TRACES, "max_traces"),
            (LIMIT_SPANS, "max_spans"),
            (LIMIT_BYTES, "memory_limit_mib"),
        ]
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|&(_, name)| name)
        .collect();
        let limit = names.join(", ");
        let total = self.traces_judged_early.load(Relaxed);
        tracing::warn!(
            target: "betrace",
            limit = %limit,
            traces,
            total,
            held_traces = self.held_traces.load(Relaxed),
            held_spans = self.held_spans.load(Relaxed),
            held_bytes = self.held_bytes.load(Relaxed),
            max_traces = self.config.max_traces,
            max_spans = self.config.max_spans,
            max_bytes = self.config.max_bytes,
            "traces judged early to stay within {limit} ({traces} since the last such line, {total} in all): judged before they were complete, their signals say complete: false and rules with `incomplete: skip` skipped them; raise {limit} (with the pod's memory limit), or add collectors (docs/deploy.md, \"Sizing\")"
        );
    }

    /// The oldest keys of one set across all shards, oldest first: from each shard its
    /// oldest [`OLDEST_BATCH`], cut where a shard that had more would continue, so that every
    /// key returned is older than every key left out.
    fn oldest(&self, set: fn(&Shard) -> &BTreeSet<(u64, TraceId)>) -> Vec<((u64, TraceId), usize)> {
        let mut all = Vec::new();
        let mut horizon: Option<(u64, TraceId)> = None;
        for (i, shard) in self.shards.iter().enumerate() {
            let shard = shard.lock();
            let keys = set(&shard);
            all.extend(keys.iter().take(OLDEST_BATCH).map(|&k| (k, i)));
            if keys.len() > OLDEST_BATCH {
                let last = all[all.len() - 1].0;
                horizon = Some(horizon.map_or(last, |h| h.min(last)));
            }
        }
        all.sort_unstable();
        if let Some(h) = horizon {
            all.retain(|&(k, _)| k <= h);
        }
        all
    }

    /// Drops a trace from its shard, remembering that it was released; returns it.
    fn release(&self, shard: &mut Shard, id: TraceId) -> Option<Entry> {
        let entry = shard.entries.remove(&id)?;
        shard.waiting.remove(&(entry.first, id));
        if let Some(t) = entry.judged_at {
            shard.kept.remove(&(t, id));
        }
        self.held_traces.fetch_sub(1, Relaxed);
        self.held_spans.fetch_sub(entry.spans, Relaxed);
        {
            let mut held = entry.held.lock();
            held.released = true;
            self.held_bytes
                .fetch_sub(entry.bytes + held.counted_bytes, Relaxed);
        }
        self.remember_released(shard, id);
        Some(entry)
    }

    /// Remembers a trace as released: its later spans are late.
    fn remember_released(&self, shard: &mut Shard, id: TraceId) {
        if !shard.released.insert(id) {
            return;
        }
        shard.released_order.push_back(id);
        // Remember released traces exactly up to as many as the buffer may hold, then
        // approximately (bounded memory): a span of a forgotten trace is late, not new.
        let exact = self.config.max_traces.div_ceil(self.shards.len()).max(1);
        while shard.released_order.len() > exact {
            if let Some(old) = shard.released_order.pop_front() {
                shard.released.remove(&old);
                shard.forgotten.insert(&old);
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
        let mut judging = Vec::new();
        for (deadline, id, version, i) in due {
            let mut shard = self.shards[i].lock();
            let Some(entry) = shard.entries.get(&id) else {
                continue;
            };
            if entry.version != version {
                continue;
            }
            if entry.judged_at.is_some() {
                self.release(&mut shard, id);
                continue;
            }
            judging.push(self.mark_judged(&mut shard, id, deadline).0);
        }
        for held in judging {
            held.lock().judge(judge, &self.held_bytes);
            self.traces_judged.fetch_add(1, Relaxed);
        }
    }

    /// Judges every waiting trace (oldest first) and releases everything: shutdown.
    pub fn drain(&self, judge: &mut Judge<'_>) {
        let mut waiting = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock();
            let ids: Vec<TraceId> = shard.entries.keys().copied().collect();
            for id in ids {
                if let Some(entry) = self.release(&mut shard, id) {
                    if entry.judged_at.is_none() {
                        waiting.push((entry.first, id, entry.held));
                    }
                }
            }
            shard.deadlines.clear();
        }
        waiting.sort_unstable_by_key(|&(first, id, _)| (first, id));
        for (_, _, held) in waiting {
            held.lock().judge(judge, &self.held_bytes);
            self.traces_judged.fetch_add(1, Relaxed);
        }
    }

    /// Adds a fragment kept in storage across a restart, as it arrived at `now`, judging
    /// nothing: the buffer is being brought back to where it stood before the restart, and
    /// what fell due meanwhile is judged by the next tick or arrival, at its own deadline
    /// (`crate::embed::journal`). The limits are not applied here: the buffer held these
    /// spans within them before.
    pub fn restore(&self, mut frag: Trace, now: u64) {
        if frag.spans.is_empty() {
            return;
        }
        self.spans_in.fetch_add(frag.spans.len() as u64, Relaxed);
        let dups = dedup_fragment(&mut frag);
        self.duplicate_spans.fetch_add(dups as u64, Relaxed);
        let i = self.shard_of(&frag.trace_id);
        let mut shard = self.shards[i].lock();
        self.add(&mut shard, frag, now);
    }

    /// Drops a trace judged before a restart without judging it again, and remembers it
    /// as released (whether it was held or not), so that its later spans count as late.
    pub fn forget(&self, id: TraceId) {
        let i = self.shard_of(&id);
        let mut shard = self.shards[i].lock();
        if self.release(&mut shard, id).is_none() {
            self.remember_released(&mut shard, id);
        }
    }

    /// Whether a trace is held and not judged yet.
    pub fn is_waiting(&self, id: &TraceId) -> bool {
        let shard = self.shards[self.shard_of(id)].lock();
        shard.entries.get(id).is_some_and(|e| e.judged_at.is_none())
    }
}

/// How many of a shard's oldest traces one look under pressure collects.
const OLDEST_BATCH: usize = 32;

impl Shard {
    fn bump(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }

    /// What becomes of `frag` (already free of duplicates within itself) if added now.
    fn status(&self, frag: &Trace) -> Status {
        if let Some(entry) = self.entries.get(&frag.trace_id) {
            let held = entry.held.lock();
            let new_spans = frag
                .spans
                .iter()
                .filter(|s| !entry.seen.contains(&held.trace, &s.span_id))
                .count();
            Status::Held {
                new_spans,
                held: entry.spans,
                bytes: entry.bytes,
            }
        } else if self.released.contains(&frag.trace_id) || self.forgotten.contains(&frag.trace_id)
        {
            Status::Released
        } else {
            Status::New
        }
    }
}

/// The span ids of a held trace, for recognising a re-sent span. A small trace (most of
/// them) is scanned: no memory beside its spans. From [`SeenSpans::INDEXED_FROM`] spans
/// on, a hash set keeps a lookup constant-time.
#[derive(Default)]
struct SeenSpans(Option<SpanSet>);

/// Span ids, hashed with foldhash (seeded per process, so crafted ids cannot collide on
/// purpose): a lookup per span received, where SipHash cost a few percent of ingest.
type SpanSet = HashSet<SpanId, foldhash::fast::RandomState>;

impl SeenSpans {
    const INDEXED_FROM: usize = 48;

    fn contains(&self, trace: &Trace, id: &SpanId) -> bool {
        match &self.0 {
            Some(set) => set.contains(id),
            None => trace.spans.iter().any(|s| s.span_id == *id),
        }
    }

    /// The bytes the index takes (none for a small trace): its table, a span id and a
    /// control byte a slot.
    fn heap_bytes(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |set| set.capacity() * (size_of::<SpanId>() + 1))
    }

    /// Catches up with the trace's spans after they grew.
    fn update(&mut self, trace: &Trace) {
        match &mut self.0 {
            Some(set) => {
                let from = set.len().min(trace.spans.len());
                set.extend(trace.spans[from..].iter().map(|s| s.span_id));
            }
            None if trace.spans.len() >= Self::INDEXED_FROM => {
                self.0 = Some(trace.spans.iter().map(|s| s.span_id).collect());
            }
            None => {}
        }
    }
}

/// Removes spans that repeat a span id earlier in the same fragment; returns how many.
fn dedup_fragment(frag: &mut Trace) -> usize {
    let before = frag.spans.len();
    if before <= 1 {
        return 0;
    }
    // Most fragments are a few spans of one trace: comparing each id with the earlier ones
    // costs less than building a set.
    let unique = before <= 16
        && frag
            .spans
            .iter()
            .enumerate()
            .all(|(i, s)| frag.spans[..i].iter().all(|t| t.span_id != s.span_id));
    if !unique {
        let mut seen = SpanSet::with_capacity_and_hasher(before, Default::default());
        frag.retain_spans(|s| seen.insert(s.span_id));
    }
    before - frag.spans.len()
}

/// Trace ids forgotten from the exact memory of released traces, kept as two generations
/// of a Bloom filter. At 64 bits and 44 hashes per id, a new trace is mistaken for a
/// forgotten one (and its spans counted as late instead of judged) with a probability of
/// about one in 10^13 per trace: at 3,500 new traces a second, less than once a year. (At
/// 32 bits an id it was one in 4·10^6, and a 30-minute soak at 70,000 spans/s lost three
/// traces that way.) A lookup for a new trace stops at its first zero bit, two probes on
/// average. Memory is fixed, allocated on first use.
struct Forgotten {
    capacity: usize,
    current: Vec<u64>,
    previous: Vec<u64>,
    count: usize,
}

impl Default for Forgotten {
    fn default() -> Self {
        Forgotten::new(4096)
    }
}

const BLOOM_BITS_PER_ID: usize = 64;
const BLOOM_HASHES: u64 = 44;

impl Forgotten {
    fn new(capacity: usize) -> Forgotten {
        Forgotten {
            capacity,
            current: Vec::new(),
            previous: Vec::new(),
            count: 0,
        }
    }

    fn bits(&self) -> u64 {
        (self.capacity * BLOOM_BITS_PER_ID) as u64
    }

    /// The filter's bit positions for `id` (double hashing over a fixed-key SipHash, so
    /// that crafted ids cannot pick their positions and runs are deterministic).
    fn positions(&self, id: &TraceId) -> impl Iterator<Item = u64> {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        let a = h.finish();
        let b = a.rotate_left(32) | 1;
        let bits = self.bits();
        (0..BLOOM_HASHES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) % bits)
    }

    fn insert(&mut self, id: &TraceId) {
        if self.count >= self.capacity || self.current.is_empty() {
            let fresh = vec![0u64; (self.bits() as usize).div_ceil(64)];
            self.previous = std::mem::replace(&mut self.current, fresh);
            self.count = 0;
        }
        let positions: Vec<u64> = self.positions(id).collect();
        for p in positions {
            self.current[(p / 64) as usize] |= 1 << (p % 64);
        }
        self.count += 1;
    }

    fn contains(&self, id: &TraceId) -> bool {
        let in_set = |set: &[u64]| {
            !set.is_empty()
                && self
                    .positions(id)
                    .all(|p| set[(p / 64) as usize] & (1 << (p % 64)) != 0)
        };
        in_set(&self.current) || in_set(&self.previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::value::Value;
    use crate::trace::{Resource, Span, SpanId};

    const S: u64 = 1_000_000_000;

    fn frag(trace: u8, names: &[&str]) -> Trace {
        frag_from(trace, 0, names)
    }

    /// A fragment whose span ids count up from `first`.
    fn frag_from(trace: u8, first: u8, names: &[&str]) -> Trace {
        let mut id = [0u8; 16];
        id[0] = trace;
        id[15] = trace;
        let full = crate::trace::Trace {
            trace_id: TraceId(id),
            spans: names
                .iter()
                .enumerate()
                .map(|(i, n)| Span {
                    span_id: SpanId([trace, first + i as u8, 0, 0, 0, 0, 0, 1]),
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            resources: vec![Resource {
                attributes: vec![("service.name".into(), Value::str("svc"))],
            }],
        };
        static NONE: std::sync::LazyLock<Arc<crate::trace::projected::Projection>> =
            std::sync::LazyLock::new(|| {
                Arc::new(crate::trace::projected::Projection::new(
                    Vec::<String>::new(),
                    false,
                ))
            });
        Trace::project(&full, &NONE)
    }

    /// Records what was judged: (trace byte, span count, reason).
    #[derive(Default)]
    struct Log(Vec<(u8, usize)>);

    impl Log {
        fn judge(&mut self) -> impl FnMut(&Trace, &mut Counted) + '_ {
            |t, counted| {
                self.0.push((t.trace_id.0[0], t.spans.len()));
                // Pretend rule "r" fires whenever the trace has a span named "bad".
                if t.spans.iter().any(|s| t.name(s) == "bad")
                    && !counted.rules.iter().any(|r| r.rule == 7)
                {
                    counted.rules.push(CountedRule {
                        rule: 7,
                        signalled: true,
                        ..CountedRule::default()
                    });
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
            max_bytes: usize::MAX,
        }
    }

    #[test]
    fn judged_once_whole_after_the_idle_timeout() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        b.ingest(vec![frag(1, &["a", "b"])], 0, &mut log.judge());
        b.ingest(vec![frag_from(1, 2, &["c"])], 3 * S, &mut log.judge());
        b.expire(7 * S, &mut log.judge());
        assert!(
            log.0.is_empty(),
            "the idle timeout restarts with every span"
        );
        b.expire(8 * S, &mut log.judge());
        assert_eq!(log.0, vec![(1, 3)]);
        b.expire(9 * S, &mut log.judge());
        assert_eq!(log.0.len(), 1, "judged once");
        assert_eq!(b.counters().traces_judged, 1);
    }

    #[test]
    fn an_extended_idle_timeout_holds_traces_whose_latest_span_came_before_its_end() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        // A restart that stood 10 s, resumed at 100 s: a grace of 10 s until 110 s.
        b.extend_idle(110 * S, 10 * S);
        b.restore(frag(1, &["a"]), 100 * S);
        b.ingest(vec![frag(2, &["b"])], 103 * S, &mut log.judge());
        b.expire(113 * S, &mut log.judge());
        assert!(log.0.is_empty(), "5 s idle + 10 s grace: none judged yet");
        // Trace 1's queued span comes back 14 s after the restart: it still joins.
        b.ingest(vec![frag_from(1, 2, &["c"])], 114 * S, &mut log.judge());
        assert!(log.0.is_empty(), "trace 1 was still waiting: {:?}", log.0);
        b.expire(115 * S, &mut log.judge());
        b.expire(118 * S, &mut log.judge());
        assert_eq!(log.0, vec![(2, 1)], "trace 2 at 103 + 5 + 10 s");
        // Past 110 s, spans wait the idle timeout only.
        b.ingest(vec![frag(3, &["d"])], 115 * S, &mut log.judge());
        b.expire(119 * S, &mut log.judge());
        assert_eq!(log.0, vec![(2, 1), (1, 2)], "trace 1 at 114 + 5 s");
        b.expire(120 * S, &mut log.judge());
        assert_eq!(log.0, vec![(2, 1), (1, 2), (3, 1)], "trace 3 at 115 + 5 s");
        // max_trace_age still bounds a trace in the grace.
        b.extend_idle(300 * S, 100 * S);
        b.ingest(vec![frag(4, &["e"])], 200 * S, &mut log.judge());
        b.expire(259 * S, &mut log.judge());
        assert_eq!(log.0.len(), 3);
        b.expire(260 * S, &mut log.judge());
        assert_eq!(log.0.last(), Some(&(4, 1)), "at 200 + 60 s");
    }

    #[test]
    fn judged_at_max_age_even_when_spans_keep_coming() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        for t in 0..=60 {
            b.ingest(vec![frag_from(2, t as u8, &["x"])], t * S, &mut log.judge());
            b.expire(t * S, &mut log.judge());
        }
        assert_eq!(log.0, vec![(2, 61)]);
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
        assert_eq!(log.0, vec![(1, 1)]);
        let c = b.counters();
        assert_eq!((c.traces_judged_early, c.held_traces), (1, 2));
    }

    /// A one-span fragment of trace `n` (any of 65,536; the shard is `n % 16`).
    fn frag_n(n: u16) -> Trace {
        let mut t = frag(0, &["a"]);
        let mut id = [0u8; 16];
        id[..2].copy_from_slice(&n.to_be_bytes());
        id[15] = n as u8;
        t.trace_id = TraceId(id);
        t
    }

    #[test]
    fn pressure_judges_oldest_first_across_shards_beyond_one_batch() {
        // The 100 oldest traces all sit in shard 0, more than one look at a shard collects;
        // one big fragment then needs 150 released at once: exactly the oldest, in order.
        let b = TraceBuffer::new(BufferConfig {
            max_spans: 400,
            max_traces: 100_000,
            ..config()
        });
        let mut judged = Vec::new();
        let mut judge = |t: &Trace, _: &mut Counted| {
            judged.push(u16::from_be_bytes([t.trace_id.0[0], t.trace_id.0[1]]))
        };
        let mut order = Vec::new();
        for k in 0..100u16 {
            order.push(k * 16);
        }
        order.extend((0..1600u16).filter(|n| n % 16 != 0).take(300));
        for (t, &n) in order.iter().enumerate() {
            b.ingest(vec![frag_n(n)], t as u64, &mut judge);
        }
        let mut big = frag(0, &["a"; 150]);
        big.trace_id = frag_n(2000).trace_id;
        b.ingest(vec![big], 1000, &mut judge);
        assert_eq!(judged, order[..150]);
        assert_eq!(b.counters().traces_judged_early, 150);
    }

    #[test]
    fn rules_run_with_no_shard_locked() {
        let b = TraceBuffer::new(BufferConfig {
            max_traces: 40,
            ..config()
        });
        let mut judged = 0;
        let mut judge = |_: &Trace, _: &mut Counted| {
            for shard in &b.shards {
                assert!(
                    shard.try_lock().is_some(),
                    "a shard is locked while judging"
                );
            }
            judged += 1;
        };
        // Early judging under pressure, judging at the deadline, and shutdown.
        for n in 0..50u16 {
            b.ingest(vec![frag_n(n)], u64::from(n), &mut judge);
        }
        b.expire(5 * S + 20, &mut judge);
        b.ingest(vec![frag_n(60)], 6 * S, &mut judge);
        b.drain(&mut judge);
        assert_eq!(judged, 51);
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
            vec![(1, 1)],
            "trace 1 was already judged: releasing it costs no early judgement"
        );
        assert_eq!(b.counters().traces_judged_early, 0);
    }

    /// `held_bytes` recounted from the entries: what each was counted for, and what judging
    /// added to it.
    fn recount(b: &TraceBuffer) -> usize {
        b.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock();
                shard
                    .entries
                    .values()
                    .map(|e| e.bytes + e.held.lock().counted_bytes)
                    .sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn held_bytes_follow_every_trace_in_and_out() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        let check = |b: &TraceBuffer, what: &str| {
            assert_eq!(b.counters().held_bytes as usize, recount(b), "{what}");
        };
        b.ingest(
            vec![frag(1, &["a", "bad"]), frag(2, &["a"])],
            0,
            &mut log.judge(),
        );
        check(&b, "two new traces");
        let two = b.counters().held_bytes;
        assert!(two as usize >= 2 * TRACE_OVERHEAD, "{two}");
        b.ingest(vec![frag_from(1, 2, &["b"; 40])], S, &mut log.judge());
        check(&b, "a trace grown");
        let grown = b.counters().held_bytes;
        // 64 bytes a span (the vector had room for two more), the text, a deadline.
        assert!(
            grown > two + 38 * 64,
            "40 spans more count: {two} then {grown}"
        );
        // Past SeenSpans::INDEXED_FROM: the span-id index counts too.
        b.ingest(vec![frag_from(1, 42, &["c"; 10])], S, &mut log.judge());
        check(&b, "an indexed trace");
        let f = frag(2, &["a"]);
        b.ingest(vec![f.clone(), f], 2 * S, &mut log.judge());
        check(&b, "duplicates");
        b.expire(7 * S, &mut log.judge());
        check(&b, "judged and kept: the rule's record counts");
        b.ingest(vec![frag_from(1, 60, &["late"])], 8 * S, &mut log.judge());
        check(&b, "a late span");
        b.expire(100 * S, &mut log.judge());
        check(&b, "judged again");
        b.expire(101 * S, &mut log.judge());
        check(&b, "released");
        assert_eq!(b.counters().held_traces, 0);
        assert_eq!(
            b.counters().held_bytes,
            0,
            "released traces leave nothing counted"
        );
        b.ingest(
            vec![frag(3, &["a"]), frag(4, &["bad"])],
            200 * S,
            &mut log.judge(),
        );
        b.drain(&mut log.judge());
        assert_eq!(b.counters().held_bytes, 0, "drained");
    }

    #[test]
    fn memory_stays_within_max_bytes_judging_the_oldest_early() {
        const MAX: usize = 64 << 10;
        let b = TraceBuffer::new(BufferConfig {
            max_bytes: MAX,
            max_traces: 100_000,
            max_spans: 100_000,
            ..config()
        });
        let mut judged = Vec::new();
        let mut judge = |t: &Trace, c: &mut Counted| {
            judged.push((
                u32::from_be_bytes(t.trace_id.0[1..5].try_into().unwrap()),
                c.judged_early,
            ))
        };
        for i in 0..2_000u32 {
            let mut f = frag((i % 251) as u8, &["a", "b", "c"]);
            f.trace_id.0[1..5].copy_from_slice(&i.to_be_bytes());
            b.ingest(vec![f], u64::from(i), &mut judge);
            let held = b.counters().held_bytes as usize;
            assert!(held <= MAX, "held {held} bytes after trace {i}");
        }
        let c = b.counters();
        assert!(
            c.held_traces > 20,
            "the bound is bytes, not a handful of traces: {c:?}"
        );
        assert_eq!(c.traces_judged_early_memory, c.traces_judged_early, "{c:?}");
        assert_eq!(c.traces_judged_early, 2_000 - c.held_traces, "{c:?}");
        let order: Vec<u32> = judged.iter().map(|&(i, _)| i).collect();
        assert_eq!(
            order,
            (0..order.len() as u32).collect::<Vec<_>>(),
            "oldest first"
        );
        assert!(judged.iter().all(|&(_, early)| early), "marked early");
        assert_eq!(c.held_bytes as usize, recount(&b));
    }

    #[test]
    fn a_trace_larger_than_max_bytes_is_judged_on_its_own() {
        let b = TraceBuffer::new(BufferConfig {
            max_bytes: 8 << 10,
            ..config()
        });
        let mut log = Log::default();
        for t in 1..=5 {
            b.ingest(vec![frag(t, &["x"; 5])], 0, &mut log.judge());
        }
        b.ingest(vec![frag_from(200, 0, &["y"; 255])], 1, &mut log.judge());
        assert_eq!(log.0, vec![(200, 255)], "judged alone, whole");
        let c = b.counters();
        assert_eq!((c.traces_oversized, c.traces_judged_early), (1, 1));
        assert_eq!(c.traces_judged_early_memory, 1);
        assert_eq!(c.held_traces, 5, "the small traces stay");
        assert_eq!(c.held_bytes as usize, recount(&b));
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
    fn a_trace_larger_than_max_spans_is_judged_on_its_own_and_leaves_the_others() {
        let b = TraceBuffer::new(BufferConfig {
            max_spans: 100,
            ..config()
        });
        let mut log = Log::default();
        for t in 1..=10 {
            b.ingest(vec![frag(t, &["x"; 5])], 0, &mut log.judge());
        }
        b.ingest(vec![frag_from(200, 0, &["y"; 30])], 1, &mut log.judge());
        assert!(log.0.is_empty(), "80 spans fit: nothing judged yet");
        b.ingest(vec![frag_from(200, 30, &["y"; 80])], 2, &mut log.judge());
        assert_eq!(
            log.0,
            vec![(200, 110)],
            "110 spans of one trace cannot fit: it is judged on them, alone"
        );
        let c = b.counters();
        assert_eq!((c.traces_oversized, c.traces_judged_early), (1, 1));
        assert_eq!(
            (c.held_traces, c.held_spans),
            (10, 50),
            "the small traces stay"
        );
        b.ingest(vec![frag_from(200, 110, &["y"; 40])], 3, &mut log.judge());
        let c = b.counters();
        assert_eq!(c.late_spans_unjudged, 40, "later spans of it are late");
        assert_eq!(c.traces_oversized, 1);
        assert_eq!(
            c.spans_in,
            c.spans_accepted + c.duplicate_spans + c.late_spans_unjudged
        );
    }

    #[test]
    fn one_batch_larger_than_max_spans_is_judged_whole() {
        let b = TraceBuffer::new(BufferConfig {
            max_spans: 10,
            ..config()
        });
        let mut log = Log::default();
        b.ingest(vec![frag(3, &["x"; 25])], 0, &mut log.judge());
        assert_eq!(log.0, vec![(3, 25)]);
        let c = b.counters();
        assert_eq!((c.traces_oversized, c.held_spans, c.held_traces), (1, 0, 0));
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
        assert_eq!(log.0, vec![(1, 1), (2, 2)]);
        assert_eq!(b.counters().held_traces, 0);
        assert_eq!(b.counters().held_spans, 0);
    }

    #[test]
    fn a_late_span_rejudges_the_whole_trace_without_a_second_signal() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        let mut signals = 0;
        let mut judge = |t: &Trace, s: &mut Counted| {
            let before = s.rules.len();
            log.judge()(t, s);
            signals += s.rules.len() - before;
        };
        b.ingest(vec![frag(1, &["bad"])], 0, &mut judge);
        b.expire(5 * S, &mut judge);
        b.ingest(vec![frag_from(1, 1, &["late", "bad"])], 6 * S, &mut judge);
        b.expire(11 * S, &mut judge);
        assert_eq!(log.0, vec![(1, 1), (1, 3)], "judged again, whole");
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
        b.ingest(vec![frag_from(1, 1, &["late"])], 11 * S, &mut log.judge());
        b.expire(30 * S, &mut log.judge());
        assert_eq!(log.0.len(), 1);
        let c = b.counters();
        assert_eq!((c.late_spans, c.late_spans_unjudged), (1, 1));
    }

    #[test]
    fn resources_are_shared_when_fragments_merge() {
        let b = TraceBuffer::new(config());
        let mut sizes = Vec::new();
        let mut judge =
            |t: &Trace, _: &mut Counted| sizes.push((t.spans.len(), t.resource_count()));
        b.ingest(vec![frag(1, &["a"])], 0, &mut judge);
        b.ingest(vec![frag_from(1, 1, &["b"])], 0, &mut judge);
        b.drain(&mut judge);
        assert_eq!(sizes, vec![(2, 1)]);
    }

    #[test]
    fn exactly_max_traces_concurrent_traces_are_not_judged_early() {
        let b = TraceBuffer::new(BufferConfig {
            max_traces: 3,
            ..config()
        });
        let mut log = Log::default();
        b.ingest(
            vec![frag(1, &["a"]), frag(2, &["a"]), frag(3, &["a"])],
            0,
            &mut log.judge(),
        );
        // A batch with more spans of the same three traces needs no room for new traces.
        b.ingest(
            vec![
                frag_from(1, 1, &["b"]),
                frag_from(2, 1, &["b"]),
                frag_from(3, 1, &["b"]),
            ],
            S,
            &mut log.judge(),
        );
        assert!(log.0.is_empty(), "judged early: {:?}", log.0);
        assert_eq!(b.counters().traces_judged_early, 0);
        b.ingest(vec![frag(4, &["a"])], 2 * S, &mut log.judge());
        assert_eq!(log.0, vec![(1, 2)], "a fourth trace does need room");
    }

    #[test]
    fn a_re_sent_span_counts_once() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        let f = frag(1, &["approval.received"]);
        b.ingest(vec![f.clone(), f.clone()], 0, &mut log.judge());
        b.ingest(vec![f.clone()], S, &mut log.judge());
        let mut twice = frag(2, &["x"]);
        twice.spans.push(twice.spans[0]);
        b.ingest(vec![twice], S, &mut log.judge());
        b.expire(6 * S, &mut log.judge());
        assert_eq!(log.0, vec![(1, 1), (2, 1)]);
        // Re-sent after judging, while the trace is kept (judged at its deadline, 5 s, and
        // kept one idle timeout more): still a duplicate, not late.
        b.ingest(vec![f], 9 * S, &mut log.judge());
        b.expire(20 * S, &mut log.judge());
        assert_eq!(log.0.len(), 2, "a duplicate does not rejudge");
        let c = b.counters();
        assert_eq!((c.spans_in, c.duplicate_spans, c.late_spans), (6, 4, 0));
        assert_eq!(
            c.spans_in,
            c.spans_accepted + c.duplicate_spans + c.late_spans_unjudged
        );
    }

    #[test]
    fn forgotten_traces_stay_late_when_the_exact_memory_overflows() {
        // Tiny limits: every trace is judged early and released, and the exact memory of
        // released traces holds one per shard. Later spans of all of them must be late,
        // never a second trace with a second signal.
        let b = TraceBuffer::new(BufferConfig {
            max_traces: 1,
            max_spans: 10,
            ..config()
        });
        let mut log = Log::default();
        for t in 0..200u8 {
            b.ingest(vec![frag(t, &["bad"])], t as u64, &mut log.judge());
        }
        for t in 0..200u8 {
            b.ingest(
                vec![frag_from(t, 1, &["bad"])],
                1000 + t as u64,
                &mut log.judge(),
            );
        }
        b.drain(&mut log.judge());
        let c = b.counters();
        assert_eq!(c.traces_in, 200, "{c:?}");
        assert_eq!(log.0.len(), 200, "each trace judged once");
        // The last trace is still held when its second span comes: that one is judged whole.
        assert_eq!((c.late_spans, c.late_spans_unjudged), (199, 199), "{c:?}");
        assert_eq!(
            c.spans_in,
            c.spans_accepted + c.duplicate_spans + c.late_spans_unjudged
        );
    }

    #[test]
    fn absurd_times_saturate_instead_of_wrapping() {
        let b = TraceBuffer::new(config());
        let mut log = Log::default();
        b.ingest(vec![frag(1, &["a"])], u64::MAX - S, &mut log.judge());
        b.ingest(vec![frag(2, &["a"])], 0, &mut log.judge());
        b.expire(S, &mut log.judge());
        assert!(
            log.0.is_empty(),
            "a wrapped deadline judged on arrival: {:?}",
            log.0
        );
        b.expire(u64::MAX, &mut log.judge());
        assert_eq!(log.0.len(), 2);
    }
}
