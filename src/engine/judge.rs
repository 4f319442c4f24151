//! Acting on verdicts: what the engine makes of the rules that apply to a trace.
//!
//! The rule set judges ([`RuleSet::apply`] hands each verdict to a sink, as ripgrep's
//! searcher reports to a `Sink`); this module turns those verdicts into [`Judgement`]s —
//! the rule's [`Signal`] when it fired, and the [`Subject`] span compliance evidence
//! reads.

use crate::engine::signal::{Mode, Signal};
use crate::rules::ruleset::{Applied, RuleSet};
use crate::trace::{self, projected};

/// One enabled rule that applied to a judged trace (docs/language.md, "How often a rule
/// held"): whether it fired, and the span it is attributed to.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The rule's index in [`RuleSet::rules`].
    pub rule: usize,
    /// Its signal when it fired (boxed: most judgements do not fire, and stay small).
    pub signal: Option<Box<Signal>>,
    /// The span the outcome is attributed to; only when asked for.
    pub subject: Option<Box<Subject>>,
    /// The rule says `incomplete: skip` and the trace is not complete: not judged.
    pub skipped: bool,
}

/// What compliance evidence reads of the span a judgement is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The span's start.
    pub start_unix_nano: u64,
    /// Its resource's `service.name`, or "unknown".
    pub service: String,
    /// Its resource's `service.version`, or "unknown".
    pub version: String,
}

impl Subject {
    /// The subject of span `at` of `trace`.
    fn of(trace: &projected::Trace, at: usize) -> Subject {
        let span = &trace.spans[at];
        let resource = trace.resource_of(span);
        let get = |key: &str| {
            trace::lookup(&resource.attributes, key)
                .map(|v| v.to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "unknown".into())
        };
        Subject {
            start_unix_nano: span.start_unix_nano,
            service: get("service.name"),
            version: get("service.version"),
        }
    }
}

/// Every enabled rule of `rules` that applies to a projected trace, in rule order, with
/// its signal when it fires and, when `subjects`, the span it is attributed to. A trace
/// judged early (`judged_early`) is not complete; a rule with `incomplete: skip` that
/// applies to an incomplete trace is skipped, not judged.
pub fn judge_trace(
    rules: &RuleSet,
    trace: &projected::Trace,
    mode: Mode,
    subjects: bool,
    judged_early: bool,
) -> Vec<Judgement> {
    let mut out = Vec::new();
    rules.apply(trace, subjects, judged_early, |applied, complete| {
        out.push(judgement(rules, applied, mode, complete));
    });
    out
}

/// The judgement of one rule that applied.
fn judgement(
    rules: &RuleSet,
    applied: Applied<'_>,
    mode: Mode,
    complete: &dyn Fn() -> bool,
) -> Judgement {
    let Applied {
        rule,
        trace,
        verdict,
        subject,
    } = applied;
    let Some(verdict) = verdict else {
        return Judgement {
            rule,
            signal: None,
            subject: None,
            skipped: true,
        };
    };
    let subject = subject.map(|at| Box::new(Subject::of(trace, at)));
    let signal = if verdict.fired {
        let def = &rules.rules()[rule].def;
        Signal::new(def, trace, verdict, mode, complete()).map(Box::new)
    } else {
        None
    };
    Judgement {
        rule,
        signal,
        subject,
        skipped: false,
    }
}

/// The signals a plain trace raises under `rules`: one per enabled rule that fires.
pub fn signals(rules: &RuleSet, trace: &trace::Trace, mode: Mode) -> Vec<Signal> {
    signals_projected(rules, &rules.project(trace), mode)
}

/// The signals a projected trace raises under `rules`.
pub fn signals_projected(rules: &RuleSet, trace: &projected::Trace, mode: Mode) -> Vec<Signal> {
    judge_trace(rules, trace, mode, false, false)
        .into_iter()
        .filter_map(|j| j.signal.map(|s| *s))
        .collect()
}
