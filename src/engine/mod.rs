//! The engine: a rule set, the trace buffer, and at most one signal per (rule, trace).
//!
//! Live (the C ABI, driven by the wall clock) and replay (driven by span times) use this
//! same type, so replay's signals for a set of traces are the live engine's.
//!
//! * [`buffer`] assembles a trace's spans from many batches and decides when it is judged;
//! * this module judges it (every rule, one signal per rule and trace);
//! * [`signal`] is what a firing rule reports.

pub mod buffer;
pub mod signal;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::engine::buffer::{BufferConfig, Counters, Signalled, TraceBuffer};
use crate::engine::signal::{Mode, Signal};
use crate::rules::ruleset::RuleSet;
use crate::trace::projected::Trace;

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
}

/// Counters of the engine as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The buffer's counters.
    pub buffer: Counters,
    /// Signals sent, by rule id.
    pub signals_by_rule: BTreeMap<String, u64>,
    /// Traces not judged because they start outside the replay window.
    pub traces_outside_window: u64,
    /// Time spent judging, in nanoseconds.
    pub eval_nanos: u64,
}

/// Rules, buffer and counters, safe to share between threads.
pub struct Engine {
    rules: RwLock<Arc<RuleSet>>,
    buffer: TraceBuffer,
    config: EngineConfig,
    signals_by_rule: Mutex<BTreeMap<String, u64>>,
    outside_window: AtomicU64,
    eval_nanos: AtomicU64,
}

impl Engine {
    /// An engine judging with `rules`.
    pub fn new(rules: RuleSet, config: EngineConfig) -> Engine {
        Engine {
            rules: RwLock::new(Arc::new(rules)),
            buffer: TraceBuffer::new(config.buffer),
            config,
            signals_by_rule: Mutex::new(BTreeMap::new()),
            outside_window: AtomicU64::new(0),
            eval_nanos: AtomicU64::new(0),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().clone()
    }

    /// Replaces the rules; traces judged from now on use the new ones.
    pub fn set_rules(&self, rules: RuleSet) {
        *self.rules.write() = Arc::new(rules);
    }

    /// Adds spans (one fragment per trace); returns signals of traces judged early.
    pub fn ingest(&self, fragments: Vec<Trace>, now: u64) -> Vec<Signal> {
        let rules = self.rules();
        let mut out = Vec::new();
        self.buffer
            .ingest(fragments, now, &mut |t: &Trace, s: &mut Signalled| {
                self.judge(&rules, t, s, &mut out)
            });
        out
    }

    /// Judges traces whose time has come; call on every clock tick.
    pub fn tick(&self, now: u64) -> Vec<Signal> {
        let rules = self.rules();
        let mut out = Vec::new();
        self.buffer
            .expire(now, &mut |t: &Trace, s: &mut Signalled| {
                self.judge(&rules, t, s, &mut out)
            });
        out
    }

    /// Judges everything held and releases it: the signals of shutdown.
    pub fn shutdown(&self) -> Vec<Signal> {
        let rules = self.rules();
        let mut out = Vec::new();
        self.buffer
            .drain(&mut |t: &Trace, s: &mut Signalled| self.judge(&rules, t, s, &mut out));
        out
    }

    /// Counters now.
    pub fn stats(&self) -> Stats {
        Stats {
            buffer: self.buffer.counters(),
            signals_by_rule: self.signals_by_rule.lock().clone(),
            traces_outside_window: self.outside_window.load(Relaxed),
            eval_nanos: self.eval_nanos.load(Relaxed),
        }
    }

    fn judge(
        &self,
        rules: &RuleSet,
        trace: &Trace,
        signalled: &mut Signalled,
        out: &mut Vec<Signal>,
    ) {
        if let Some((from, to)) = self.config.window {
            let start = trace.start_unix_nano();
            if start < from || start > to {
                self.outside_window.fetch_add(1, Relaxed);
                return;
            }
        }
        let started = Instant::now();
        let signals = rules.signals_projected(trace, self.config.mode);
        self.eval_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        if signals.is_empty() {
            return;
        }
        let mut counts = self.signals_by_rule.lock();
        for s in signals {
            if signalled.iter().any(|r| **r == *s.rule_id) {
                continue;
            }
            signalled.push(Arc::from(s.rule_id.as_str()));
            *counts.entry(s.rule_id.clone()).or_default() += 1;
            out.push(s);
        }
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
        assert_eq!(e.stats().buffer.late_spans, 1);
        assert_eq!(e.stats().buffer.traces_judged, 2);

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
        assert_eq!(e.stats().signals_by_rule.values().sum::<u64>(), 2);
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
        let b = e.stats().buffer;
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
        assert_eq!(e.stats().traces_outside_window, 1);
    }
}
