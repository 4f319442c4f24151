//! The engine: a rule set, the trace buffer, and at most one signal per (rule, trace).
//!
//! Live (the C ABI, driven by the wall clock) and replay (driven by span times) use this
//! same type, so replay's signals for a set of traces are the live engine's.
//!
//! * [`buffer`] assembles a trace's spans from many batches and decides when it is judged;
//! * [`judge`] acts on the rule set's verdicts: signals, and the spans evidence reads;
//! * this module judges each trace once (every rule, one signal per rule and trace);
//! * [`signal`] is what a firing rule reports;
//! * [`evidence`] is how often each rule held, by day, service and version (replay).

pub mod buffer;
pub mod counters;
pub mod evidence;
pub mod judge;
pub(crate) mod ratelimit;
pub mod signal;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::engine::buffer::{BufferConfig, Counted, CountedRule, TraceBuffer};
pub use crate::engine::counters::Counters;
use crate::engine::evidence::{Evidence, Group};
use crate::engine::judge::{judge_trace, Judgement, Subject};
use crate::engine::signal::{Mode, Signal};
pub use crate::rules::ruleset::RuleCounts;
use crate::rules::ruleset::RuleSet;
use crate::trace::projected::Trace;
use crate::trace::TraceId;

/// The engine's version, as reported in signals' instrumentation scope.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How an engine judges.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineConfig {
    /// When traces are judged, and how much is held.
    pub buffer: BufferConfig,
    /// Written into every signal.
    pub mode: Mode,
    /// Replay's `--from`/`--to`: judge only traces whose first span starts in
    /// `[from, to]` (ns); others are counted and skipped.
    pub window: Option<(u64, u64)>,
    /// Keep compliance evidence by day, service and version ([`Engine::evidence`]):
    /// replay's summary and report. The per-rule totals are always counted.
    pub evidence: bool,
}

/// Counters of the engine as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The counters: the buffer's and the engine's (a live session adds its own).
    pub counters: Counters,
    /// Traces each rule applied to, was violated on (its signals) and skipped, by rule id
    /// (rules that applied to nothing yet are absent).
    pub rules: BTreeMap<String, RuleCounts>,
}

impl Stats {
    /// Adds another engine's counts (replay's engines, one per partition of trace ids).
    pub fn add(&mut self, other: &Stats) {
        self.counters.add(&other.counters);
        for (id, c) in &other.rules {
            let e = self.rules.entry(id.clone()).or_default();
            e.applied += c.applied;
            e.violated += c.violated;
            e.skipped += c.skipped;
        }
    }
}

/// Sees each trace the first time it is judged complete (docs/language.md, "Complete
/// traces"), with the judgements of the rules that applied: `betrace discover` mines
/// traces through it, and reads which candidates held where.
pub type Observer = dyn FnMut(&Trace, &[Judgement]) + Send;

/// Rules, buffer and counters, safe to share between threads.
pub struct Engine {
    rules: RwLock<Arc<RuleSet>>,
    buffer: TraceBuffer,
    config: EngineConfig,
    /// Rule sets replaced by a reload whose counts are not yet folded into `counted`:
    /// a judging thread may still hold one.
    retired: Mutex<Vec<Arc<RuleSet>>>,
    /// Counts of rule sets no one judges with any more.
    counted: Mutex<BTreeMap<String, RuleCounts>>,
    evidence: Option<Mutex<Evidence>>,
    outside_window: AtomicU64,
    eval_nanos: AtomicU64,
    /// Signals so far: the per-rule `violated` counts summed, kept apart so that
    /// [`Engine::counters`] builds no per-rule map.
    signals: AtomicU64,
    observer: Option<Mutex<Box<Observer>>>,
    /// Whether judged trace ids are written down for [`Engine::take_judged`].
    journaling: AtomicBool,
    judged: Mutex<Vec<TraceId>>,
}

impl Engine {
    /// An engine judging with `rules`.
    pub fn new(rules: RuleSet, config: EngineConfig) -> Engine {
        Engine {
            rules: RwLock::new(Arc::new(rules)),
            buffer: TraceBuffer::new(config.buffer),
            evidence: config.evidence.then(|| Mutex::new(Evidence::default())),
            config,
            retired: Mutex::new(Vec::new()),
            counted: Mutex::new(BTreeMap::new()),
            outside_window: AtomicU64::new(0),
            eval_nanos: AtomicU64::new(0),
            signals: AtomicU64::new(0),
            observer: None,
            journaling: AtomicBool::new(false),
            judged: Mutex::new(Vec::new()),
        }
    }

    /// The engine, calling `observer` with each trace the first time it is judged
    /// complete (and not early), before its signals are counted.
    pub fn with_observer(mut self, observer: Box<Observer>) -> Engine {
        self.observer = Some(Mutex::new(observer));
        self
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().clone()
    }

    /// Replaces the rules; traces judged from now on use the new ones. What the old ones
    /// counted keeps counting in [`Engine::stats`].
    pub fn set_rules(&self, rules: RuleSet) {
        let old = std::mem::replace(&mut *self.rules.write(), Arc::new(rules));
        self.retired.lock().push(old);
        self.fold_retired();
    }

    /// Folds the counts of retired rule sets that no judge holds any more into `counted`
    /// and drops them: a collector reloading for months keeps one rule set, not all.
    fn fold_retired(&self) {
        let mut counted = self.counted.lock();
        self.retired.lock().retain(|old| {
            if Arc::strong_count(old) > 1 {
                return true;
            }
            old.counts_into(&mut counted);
            false
        });
    }

    /// Adds spans (one fragment per trace); returns signals of traces judged early.
    pub fn ingest(&self, fragments: Vec<Trace>, now: u64) -> Vec<Signal> {
        let rules = self.rules();
        let mut out = Vec::new();
        self.buffer
            .ingest(fragments, now, &mut |t: &Trace, s: &mut Counted| {
                self.judge(&rules, t, s, &mut out)
            });
        out
    }

    /// Adds fragments, each with the time it arrived (non-decreasing); returns signals of
    /// traces judged meanwhile. Replay feeds each fragment at its own time, so that a
    /// trace's judgement depends on its own spans only ([`TraceBuffer::ingest_one`]).
    pub fn ingest_each(&self, fragments: impl IntoIterator<Item = (Trace, u64)>) -> Vec<Signal> {
        let rules = self.rules();
        let mut out = Vec::new();
        for (frag, now) in fragments {
            self.buffer
                .ingest_one(frag, now, &mut |t: &Trace, s: &mut Counted| {
                    self.judge(&rules, t, s, &mut out)
                });
        }
        out
    }

    /// Judges traces whose time has come; call on every clock tick.
    pub fn tick(&self, now: u64) -> Vec<Signal> {
        let rules = self.rules();
        let mut out = Vec::new();
        self.buffer.expire(now, &mut |t: &Trace, s: &mut Counted| {
            self.judge(&rules, t, s, &mut out)
        });
        out
    }

    /// Judges everything held and releases it: the signals of shutdown.
    pub fn shutdown(&self) -> Vec<Signal> {
        let rules = self.rules();
        let mut out = Vec::new();
        self.buffer
            .drain(&mut |t: &Trace, s: &mut Counted| self.judge(&rules, t, s, &mut out));
        out
    }

    /// The counters now, without the per-rule counts (cheap: a collector reads them for
    /// every instrument of every scrape).
    pub fn counters(&self) -> Counters {
        Counters {
            signals: self.signals.load(Relaxed),
            eval_nanos: self.eval_nanos.load(Relaxed),
            traces_outside_window: self.outside_window.load(Relaxed),
            ..self.buffer.counters()
        }
    }

    /// Counters and per-rule counts now.
    pub fn stats(&self) -> Stats {
        self.fold_retired();
        let rules = {
            let mut rules = self.counted.lock().clone();
            for old in self.retired.lock().iter() {
                old.counts_into(&mut rules);
            }
            self.rules().counts_into(&mut rules);
            rules
        };
        Stats {
            counters: self.counters(),
            rules,
        }
    }

    /// The evidence kept so far (with [`EngineConfig::evidence`]).
    pub fn evidence(&self) -> Option<Evidence> {
        self.evidence.as_ref().map(|e| e.lock().clone())
    }

    /// From now on writes down the id of every trace judged, for [`Engine::take_judged`]:
    /// a host keeping what the engine holds in storage learns which traces it no longer
    /// needs to keep (`crate::embed::journal`).
    pub fn keep_judged(&self) {
        self.journaling.store(true, Relaxed);
    }

    /// The ids of the traces judged since the last call (with [`Engine::keep_judged`]), in
    /// the order they were judged; a trace judged again after a late span appears again.
    pub fn take_judged(&self) -> Vec<TraceId> {
        std::mem::take(&mut *self.judged.lock())
    }

    /// Adds fragments kept in storage across a restart, as they arrived at `now`, judging
    /// nothing ([`TraceBuffer::restore`]).
    pub fn restore(&self, fragments: Vec<Trace>, now: u64) {
        for frag in fragments {
            self.buffer.restore(frag, now);
        }
    }

    /// Lengthens the idle timeout of traces whose latest span arrives before `until` by
    /// `extra` ([`TraceBuffer::extend_idle`]).
    pub fn extend_idle(&self, until: u64, extra: u64) {
        self.buffer.extend_idle(until, extra);
    }

    /// Drops a trace judged before a restart without judging it again
    /// ([`TraceBuffer::forget`]).
    pub fn forget(&self, id: TraceId) {
        self.buffer.forget(id);
    }

    /// Whether a trace is held and not judged yet.
    pub fn is_waiting(&self, id: &TraceId) -> bool {
        self.buffer.is_waiting(id)
    }

    fn judge(&self, rules: &RuleSet, trace: &Trace, counted: &mut Counted, out: &mut Vec<Signal>) {
        if self.journaling.load(Relaxed) {
            self.judged.lock().push(trace.trace_id);
        }
        if let Some((from, to)) = self.config.window {
            let start = trace.start_unix_nano();
            if start < from || start > to {
                self.outside_window.fetch_add(1, Relaxed);
                return;
            }
        }
        let started = Instant::now();
        let judged = judge_trace(
            rules,
            trace,
            self.config.mode,
            self.evidence.is_some(),
            counted.judged_early,
        );
        self.eval_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        if let Some(observer) = &self.observer {
            if !counted.observed && !counted.judged_early && trace.is_complete() {
                counted.observed = true;
                (observer.lock())(trace, &judged);
            }
        }
        if judged.is_empty() {
            return;
        }
        let mut evidence = self.evidence.as_ref().map(|e| e.lock());
        // Judgements come in rule order, and a trace's first judgement pushes them so:
        // look where the last one was found first (thousands of rules judged on a trace —
        // `betrace discover`'s candidates — stay linear, not quadratic).
        let first = counted.rules.is_empty();
        let mut cursor = 0;
        for j in judged {
            let rule = &rules.rules()[j.rule];
            let found = if first {
                None
            } else if counted
                .rules
                .get(cursor)
                .is_some_and(|c| c.rule == rule.uid)
            {
                Some(cursor)
            } else {
                counted.rules.iter().position(|c| c.rule == rule.uid)
            };
            let at = match found {
                Some(at) => at,
                None => {
                    counted.rules.push(CountedRule {
                        rule: rule.uid,
                        ..CountedRule::default()
                    });
                    counted.rules.len() - 1
                }
            };
            cursor = at + 1;
            let c = &mut counted.rules[at];
            let mut news = RuleCounts::default();
            if j.skipped {
                if !c.skipped {
                    c.skipped = true;
                    news.skipped = 1;
                }
            } else if !c.applied {
                c.applied = true;
                news.applied = 1;
                if let (Some(e), Some(subject)) = (&mut evidence, &j.subject) {
                    c.group = e.group(group_of(subject));
                    c.day = evidence::day_of(subject.start_unix_nano);
                    e.applied(&rule.def.id, c.group, c.day);
                }
            }
            let signal = j.signal.filter(|_| !c.signalled);
            if let Some(signal) = &signal {
                c.signalled = true;
                news.violated = 1;
                self.signals.fetch_add(1, Relaxed);
                if let Some(e) = &mut evidence {
                    let time = j
                        .subject
                        .as_ref()
                        .map_or(signal.time_unix_nano, |s| s.start_unix_nano);
                    e.violated(&rule.def.id, c.group, c.day, signal.trace_id, time);
                }
            }
            if news != RuleCounts::default() {
                rules.count(j.rule, news);
            }
            if let Some(signal) = signal {
                out.push(*signal);
            }
        }
    }
}

/// The evidence group of the span a judgement is attributed to.
fn group_of(s: &Subject) -> Group {
    Group {
        service: s.service.clone(),
        version: s.version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Span, SpanId, TraceId};

    const S: u64 = 1_000_000_000;
    const RULES: &str = "rules:
  - id: pay
    name: Pay needs reserve
    condition: when { payment.charge } always { inventory.reserve }
  - id: refund
    name: No refund without charge
    condition: when { payment.refund } always { payment.charge }
";

    fn frag(names: &[&str], first_id: u8) -> Trace {
        let rules = RuleSet::from_text("r.yaml", RULES).unwrap().0;
        rules.project(&crate::trace::Trace {
            trace_id: TraceId([7; 16]),
            spans: names
                .iter()
                .enumerate()
                .map(|(i, n)| Span {
                    span_id: SpanId([first_id + i as u8; 8]),
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            resources: vec![Default::default()],
        })
    }

    fn engine() -> Engine {
        Engine::new(
            RuleSet::from_text("r.yaml", RULES).unwrap().0,
            EngineConfig::default(),
        )
    }

    #[test]
    fn a_late_span_never_duplicates_a_signal_but_a_newly_firing_rule_signals() {
        let e = engine();
        assert!(e.ingest(vec![frag(&["payment.charge"], 1)], 0).is_empty());
        let first = e.tick(5 * S);
        assert_eq!(
            first.iter().map(|s| s.rule_id.as_str()).collect::<Vec<_>>(),
            ["pay"]
        );
        // A late refund: the trace is judged again, whole. `pay` still fires but was sent
        // already; `refund` holds (the trace has a charge). Nothing new goes out.
        e.ingest(vec![frag(&["payment.refund"], 10)], 6 * S);
        assert!(
            e.tick(11 * S).is_empty(),
            "no duplicate for `pay`; `refund` holds (there is a charge)"
        );
        assert_eq!(e.stats().counters.late_spans, 1);
        assert_eq!(e.stats().counters.traces_judged, 2);

        let e = engine();
        e.ingest(vec![frag(&["payment.refund"], 1)], 0);
        assert_eq!(e.tick(5 * S).len(), 1, "refund without charge");
        e.ingest(vec![frag(&["payment.charge"], 10)], 6 * S);
        let again = e.tick(11 * S);
        assert_eq!(
            again.iter().map(|s| s.rule_id.as_str()).collect::<Vec<_>>(),
            ["pay"],
            "only the rule that newly fires"
        );
        assert_eq!(e.stats().counters.signals, 2);
    }

    #[test]
    fn rule_counts_survive_a_reload_and_count_each_trace_once() {
        let e = engine();
        e.ingest(vec![frag(&["payment.charge"], 1)], 0);
        e.tick(5 * S);
        let held_by_a_judge = e.rules();
        e.set_rules(RuleSet::from_text("r.yaml", RULES).unwrap().0);
        // The old rule set still counts for a judge that holds it.
        held_by_a_judge.count(
            0,
            RuleCounts {
                applied: 1,
                ..RuleCounts::default()
            },
        );
        let mut f = frag(&["payment.charge", "inventory.reserve"], 1);
        f.trace_id.0[0] = 8;
        e.ingest(vec![f], 6 * S);
        // A late span of the first trace: judged again, counted once.
        e.ingest(vec![frag(&["payment.refund"], 20)], 6 * S);
        e.tick(20 * S);
        let want = |applied, violated| RuleCounts {
            applied,
            violated,
            skipped: 0,
        };
        assert_eq!(e.stats().rules["pay"], want(3, 1));
        assert_eq!(e.stats().rules["refund"], want(1, 0));
        drop(held_by_a_judge);
        assert_eq!(
            e.stats().rules["pay"],
            want(3, 1),
            "folded, not lost or doubled"
        );
        let stats = e.stats();
        assert_eq!(
            stats.counters.signals,
            stats.rules.values().map(|c| c.violated).sum::<u64>(),
            "the signals counter is the per-rule violations summed"
        );
    }

    #[test]
    fn a_skipped_trace_is_counted_and_judged_again_when_a_late_span_completes_it() {
        const SKIP: &str = "rules:
  - id: pay
    name: Pay needs reserve
    incomplete: skip
    condition: when { payment.charge } always { inventory.reserve }
";
        let rules = || RuleSet::from_text("r.yaml", SKIP).unwrap().0;
        let span = |id: u8, parent: Option<u8>, name: &str| Span {
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            name: name.into(),
            ..Default::default()
        };
        let frag = |spans: Vec<Span>| {
            rules().project(&crate::trace::Trace {
                trace_id: TraceId([3; 16]),
                spans,
                resources: vec![Default::default()],
            })
        };
        let e = Engine::new(rules(), EngineConfig::default());
        // The charge names a parent that has not arrived: incomplete, skipped, no signal.
        e.ingest(vec![frag(vec![span(2, Some(1), "payment.charge")])], 0);
        assert!(e.tick(5 * S).is_empty());
        let c = e.stats().rules["pay"];
        assert_eq!((c.applied, c.violated, c.skipped), (0, 0, 1));
        // The root arrives late: the trace is complete, judged again, and fires.
        e.ingest(vec![frag(vec![span(1, None, "checkout")])], 6 * S);
        let signals = e.tick(11 * S);
        assert_eq!(signals.len(), 1);
        assert!(signals[0].complete);
        let c = e.stats().rules["pay"];
        assert_eq!((c.applied, c.violated, c.skipped), (1, 1, 1));

        // Judged early under max_traces: not complete, whatever its shape.
        let e = Engine::new(
            rules(),
            EngineConfig {
                buffer: BufferConfig {
                    max_traces: 1,
                    ..BufferConfig::default()
                },
                ..EngineConfig::default()
            },
        );
        e.ingest(vec![frag(vec![span(1, None, "payment.charge")])], 0);
        let mut other = frag(vec![span(5, None, "x")]);
        other.trace_id = TraceId([4; 16]);
        assert!(e.ingest(vec![other], 0).is_empty(), "judged early: skipped");
        assert_eq!(e.stats().rules["pay"].skipped, 1);
        assert_eq!(e.stats().counters.traces_judged_early, 1);
    }

    #[test]
    fn concurrent_ingest_from_threads_loses_nothing() {
        let e = engine();
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let e = &e;
                scope.spawn(move || {
                    for i in 0..250u8 {
                        let mut f = frag(&["payment.charge"], 1);
                        f.trace_id.0[0] = t;
                        f.trace_id.0[15] = i;
                        e.ingest(vec![f], 0);
                    }
                });
            }
        });
        let signals = e.shutdown();
        assert_eq!(signals.len(), 1000);
        let b = e.stats().counters;
        assert_eq!(
            (b.spans_in, b.traces_in, b.traces_judged, b.held_spans),
            (1000, 1000, 1000, 0)
        );
    }

    #[test]
    fn the_replay_window_skips_traces_outside_it() {
        let e = Engine::new(
            RuleSet::from_text("r.yaml", RULES).unwrap().0,
            EngineConfig {
                window: Some((10, 20)),
                ..EngineConfig::default()
            },
        );
        let mut f = frag(&["payment.charge"], 1);
        f.spans[0].start_unix_nano = 5;
        e.ingest(vec![f], 0);
        assert!(e.shutdown().is_empty());
        assert_eq!(e.stats().counters.traces_outside_window, 1);
    }
}
