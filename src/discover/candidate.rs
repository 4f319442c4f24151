//! Candidates: the templates (docs/discover.md) instantiated from what was mined, as rules
//! in BeTrace's own language, with what each one claims — so that a candidate implied by
//! another can be pruned.

use std::collections::{BTreeMap, HashSet};

use crate::lang::value::format_duration;
use crate::trace::projected::{KeyId, Projection};

use super::mine::{Miner, NameId};
use super::stats::round_up;

/// The families of templates (interfaces: `discover` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `when { A } always { B }`.
    Existence,
    /// `when { B } always { A before B }`.
    Precedence,
    /// `when { A as $a } always { B after $a [until A] }`.
    Response,
    /// A response or precedence within a time bound.
    TimeBound,
    /// `B within A`, `B child_of A`.
    Structure,
    /// `own B after|before $a`.
    Partner,
    /// `B.where(k == $a.k)`.
    Agreement,
    /// `distinct(A, k) == 1` when `A` repeats.
    Idempotency,
    /// `count(A) <= K`.
    Count,
    /// `sum(B, k) <= $a.k`, `max(B, k) <= $a.k`: a bound on values across spans.
    ValueBound,
    /// `when { A.where(k == v) } always { B }`: a pair restricted to a frequent value.
    Conditional,
}

impl Family {
    /// The word the output uses.
    pub fn word(self) -> &'static str {
        match self {
            Family::Existence => "existence",
            Family::Precedence => "precedence",
            Family::Response => "response",
            Family::TimeBound => "time_bound",
            Family::Structure => "structure",
            Family::Partner => "partner",
            Family::Agreement => "agreement",
            Family::Idempotency => "idempotency",
            Family::Count => "count",
            Family::ValueBound => "value_bound",
            Family::Conditional => "conditional",
        }
    }
}

/// What a candidate says, in terms its implications can be read from. Names and keys are
/// the texts; durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claim {
    /// Every trace with `a` has a `b`.
    Exists(String, String),
    /// Every trace with `b` has an `a` starting before its first `b`.
    Before(String, String),
    /// …and every `b` has an `a` at most `d` before it.
    BeforeWithin(String, String, u64),
    /// Each `a` has a `b` after it.
    Response(String, String),
    /// …before the next `a`.
    ResponseUntil(String, String),
    /// …within `d`.
    AfterWithin(String, String, u64),
    /// Each `a` has a `b` after it of its own.
    OwnAfter(String, String),
    /// Each `a` has a `b` before it of its own.
    OwnBefore(String, String),
    /// Every `b`'s parent is an `a`.
    ChildOf(String, String),
    /// Every `b` descends from an `a`.
    Within(String, String),
    /// Each `a` has a `b` with the same value of `k`.
    Agree(String, String, String),
    /// …starting after it.
    AgreeAfter(String, String, String),
    /// When `a` repeats, its values of `k` are one.
    Same(String, String),
    /// At most `n` spans `a` a trace.
    Count(String, u64),
    /// With `b` in the trace, the sum of `b`'s values of `k` is at most each `a`'s.
    SumAtMost(String, String, String),
    /// …each `b`'s value; and whether `b`'s values were never negative (the sum's bound
    /// then implies it).
    MaxAtMost(String, String, String, bool),
    /// Every trace with an `a` whose `k` equals the value (as written) has a `b`.
    WhenEq(String, String, String, String),
    /// Every trace with an `a` whose `k` is above the cut point (as written) has a `b`.
    WhenAbove(String, String, String, String),
}

impl Claim {
    /// The claims this one implies directly.
    pub fn implies(&self) -> Vec<Claim> {
        use Claim::*;
        match self {
            Before(a, b) => vec![Exists(b.clone(), a.clone())],
            BeforeWithin(a, b, _) => vec![Before(a.clone(), b.clone())],
            Response(a, b) => vec![Exists(a.clone(), b.clone())],
            ResponseUntil(a, b) | AfterWithin(a, b, _) | OwnAfter(a, b) => {
                vec![Response(a.clone(), b.clone())]
            }
            OwnBefore(a, b) => vec![Before(b.clone(), a.clone())],
            ChildOf(b, a) => vec![Within(b.clone(), a.clone())],
            Within(b, a) => vec![Exists(b.clone(), a.clone())],
            Agree(a, b, _) => vec![Exists(a.clone(), b.clone())],
            AgreeAfter(a, b, k) => vec![
                Agree(a.clone(), b.clone(), k.clone()),
                Response(a.clone(), b.clone()),
            ],
            Exists(..) | Same(..) | Count(..) => vec![],
            // Implications between these read their counts and values: [`super::prune_values`].
            SumAtMost(..) | MaxAtMost(..) | WhenEq(..) | WhenAbove(..) => vec![],
        }
    }

    /// Every claim this one implies, through any chain.
    pub fn closure(&self) -> HashSet<Claim> {
        let mut seen = HashSet::new();
        let mut todo = self.implies();
        while let Some(c) = todo.pop() {
            if seen.insert(c.clone()) {
                todo.extend(c.implies());
            }
        }
        seen
    }
}

/// One candidate rule, before and after it is judged.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its rule id.
    pub id: String,
    /// Its family.
    pub family: Family,
    /// What it claims.
    pub claim: Claim,
    /// The rule's condition.
    pub condition: String,
    /// A human name.
    pub name: String,
    /// The span names it reads (examples keep these spans).
    pub names: Vec<String>,
    /// The attribute keys it reads.
    pub keys: Vec<String>,
    /// How often its consequent holds in any trace: lift is confidence over this.
    pub chance: f64,
    /// How its bound was chosen, when it has one.
    pub note: Option<String>,
    /// Traces it applied to and held in, as mined (before it is judged).
    pub mined: (u64, u64),
}

/// What a mined percentile becomes: the summary says so.
pub const BOUND_RULE: &str = "time and count bounds: the 99th percentile of what was seen (read at the upper edge of its histogram bucket, at most 19% above) with a margin of half again, rounded up (times to 1, 2 or 5 times a power of ten)";

/// A time bound from delays seen: the 99th percentile and half again, rounded up; none
/// beyond what a duration holds (292 years).
fn time_bound(h: &super::stats::Histogram) -> Option<u64> {
    let p99 = h.quantile(0.99);
    let d = round_up(p99.saturating_add(p99 / 2)).max(1);
    (d <= i64::MAX as u64).then_some(d)
}

/// The candidates worth judging: every template instance whose mined support and
/// confidence reach the thresholds.
pub fn generate(
    m: &Miner,
    projection: &Projection,
    min_support: u64,
    min_confidence: f64,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    let traces = m.traces.max(1) as f64;
    // A name the language cannot write (a line break: quoted strings hold none) is never
    // in a candidate.
    let frequent = |n: NameId| m.name_stats(n).traces >= min_support && writable(m.name(n));
    // The entry point of (nearly) every trace: everything happens in a trace with it and
    // after it, which the span tree alone says.
    let everywhere = |n: NameId| m.name_stats(n).root as f64 >= 0.99 * traces;
    let ok = |support: u64, held: u64| {
        support >= min_support && held as f64 >= min_confidence * support as f64
    };
    let mut pairs: Vec<_> = m
        .pairs()
        .filter(|((a, b), _)| frequent(*a) && frequent(*b) && !everywhere(*a) && !everywhere(*b))
        .collect();
    pairs.sort_by(|x, y| (m.name(x.0 .0), m.name(x.0 .1)).cmp(&(m.name(y.0 .0), m.name(y.0 .1))));
    for (&(ai, bi), p) in pairs {
        let (a, b) = (m.name(ai).to_string(), m.name(bi).to_string());
        let (na, nb) = (m.name_stats(ai), m.name_stats(bi));
        let (pa, pb) = (na.traces as f64 / traces, nb.traces as f64 / traces);
        let (sa, sb) = (sel(&a), sel(&b));
        let mut push = |family,
                        claim,
                        condition: String,
                        name: String,
                        chance: f64,
                        note: Option<String>,
                        mined: (u64, u64),
                        keys: Vec<String>| {
            out.push(Candidate {
                id: String::new(),
                family,
                claim,
                condition,
                name,
                names: vec![a.clone(), b.clone()],
                keys,
                chance,
                note,
                mined,
            });
        };
        if ok(na.traces, p.co) {
            push(
                Family::Existence,
                Claim::Exists(a.clone(), b.clone()),
                format!("when {{ {sa} }} always {{ {sb} }}"),
                format!("a trace with {a} has {}", an(&b)),
                pb,
                None,
                (na.traces, p.co),
                vec![],
            );
        }
        if ok(nb.traces, p.before) {
            push(
                Family::Precedence,
                Claim::Before(a.clone(), b.clone()),
                format!("when {{ {sb} }} always {{ {sa} before {sb} }}"),
                format!("{a} comes before {b}"),
                pa,
                None,
                (nb.traces, p.before),
                vec![],
            );
            if let Some((h, d)) = p
                .before_delay
                .as_ref()
                .and_then(|h| Some((h, time_bound(h)?)))
            {
                push(
                    Family::TimeBound,
                    Claim::BeforeWithin(a.clone(), b.clone(), d),
                    format!(
                        "when {{ {sb} }} always {{ {sa} before {sb} within {} }}",
                        format_duration(d as i64)
                    ),
                    format!(
                        "each {b} comes at most {} after {}",
                        format_duration(d as i64),
                        an(&a)
                    ),
                    pa,
                    Some(format!(
                        "99th percentile of {} delays {}",
                        h.count(),
                        format_duration(h.quantile(0.99) as i64)
                    )),
                    (nb.traces, p.before),
                    vec![],
                );
            }
        }
        if ok(na.traces, p.response) {
            push(
                Family::Response,
                Claim::Response(a.clone(), b.clone()),
                format!("when {{ {sa} as $a }} always {{ {sb} after $a }}"),
                format!("each {a} is followed by {}", an(&b)),
                pb,
                None,
                (na.traces, p.response),
                vec![],
            );
            if na.multi >= min_support && ok(na.traces, p.response_until) {
                push(
                    Family::Response,
                    Claim::ResponseUntil(a.clone(), b.clone()),
                    format!("when {{ {sa} as $a }} always {{ {sb} after $a until {sa} }}"),
                    format!("each {a} is followed by {} before the next {a}", an(&b)),
                    pb,
                    None,
                    (na.traces, p.response_until),
                    vec![],
                );
            }
            if na.multi >= min_support && ok(na.traces, p.own_after) {
                push(
                    Family::Partner,
                    Claim::OwnAfter(a.clone(), b.clone()),
                    format!("when {{ {sa} as $a }} always {{ own {sb} after $a }}"),
                    format!("each {a} is followed by {} of its own", an(&b)),
                    pb,
                    None,
                    (na.traces, p.own_after),
                    vec![],
                );
            }
            if let Some((h, d)) = p
                .after_delay
                .as_ref()
                .and_then(|h| Some((h, time_bound(h)?)))
            {
                push(
                    Family::TimeBound,
                    Claim::AfterWithin(a.clone(), b.clone(), d),
                    format!(
                        "when {{ {sa} as $a }} always {{ {sb} after $a within {} }}",
                        format_duration(d as i64)
                    ),
                    format!(
                        "each {a} is followed by {} within {}",
                        an(&b),
                        format_duration(d as i64)
                    ),
                    pb,
                    Some(format!(
                        "99th percentile of {} delays {}",
                        h.count(),
                        format_duration(h.quantile(0.99) as i64)
                    )),
                    (na.traces, p.response),
                    vec![],
                );
            }
        }
        if na.multi >= min_support && ok(na.traces, p.own_before) {
            push(
                Family::Partner,
                Claim::OwnBefore(a.clone(), b.clone()),
                format!("when {{ {sa} as $a }} always {{ own {sb} before $a }}"),
                format!("each {a} has {} of its own before it", an(&b)),
                pb,
                None,
                (na.traces, p.own_before),
                vec![],
            );
        }
        if ok(nb.traces, p.child_of) {
            push(
                Family::Structure,
                Claim::ChildOf(b.clone(), a.clone()),
                format!("when {{ {sb} }} always {{ {sb} child_of {sa} }}"),
                format!("every {b} is a child of {}", an(&a)),
                pa,
                None,
                (nb.traces, p.child_of),
                vec![],
            );
        }
        // Everything descends from the root: `within` the root is the tree, not a finding.
        let always_root = na.root == na.traces;
        if ok(nb.traces, p.within) && !always_root {
            push(
                Family::Structure,
                Claim::Within(b.clone(), a.clone()),
                format!("when {{ {sb} }} always {{ {sb} within {sa} }}"),
                format!("every {b} runs inside {}", an(&a)),
                pa,
                None,
                (nb.traces, p.within),
                vec![],
            );
        }
    }
    // Values.
    let mut agreements: Vec<_> = m.agreements().collect();
    agreements.sort_by(|x, y| {
        (m.name(x.0 .0), m.name(x.0 .1), x.0 .2).cmp(&(m.name(y.0 .0), m.name(y.0 .1), y.0 .2))
    });
    for (&(ai, bi, k), &held) in agreements {
        let na = m.name_stats(ai);
        let (Some(ka), Some(kb)) = (m.key_stats(ai, k), m.key_stats(bi, k)) else {
            continue;
        };
        if !frequent(ai)
            || !ka.values.varies()
            || !ok(na.traces, held)
            || !writable(projection.key_name(k))
        {
            continue;
        }
        let (a, b, key) = (
            m.name(ai).to_string(),
            m.name(bi).to_string(),
            projection.key_name(k).to_string(),
        );
        let (sa, sb, sk) = (sel(&a), sel(&b), attr(&key));
        // The chance that a `b` agrees anyway: two random values collide, or the key is
        // one value per trace (an id of the whole trace).
        let chance = kb.values.collision().max(m.one_per_trace(k));
        out.push(Candidate {
            id: String::new(),
            family: Family::Agreement,
            claim: Claim::Agree(a.clone(), b.clone(), key.clone()),
            condition: format!("when {{ {sa} as $a }} always {{ {sb}.where({sk} == $a.{sk}) }}"),
            name: format!("each {a} has {} with the same {key}", an(&b)),
            names: vec![a.clone(), b.clone()],
            keys: vec![key.clone()],
            chance,
            note: None,
            mined: (na.traces, held),
        });
        let response = m.pair_stats(ai, bi).map_or(0, |p| p.response);
        if ok(na.traces, response) {
            out.push(Candidate {
                id: String::new(),
                family: Family::Agreement,
                claim: Claim::AgreeAfter(a.clone(), b.clone(), key.clone()),
                condition: format!(
                    "when {{ {sa} as $a }} always {{ {sb}.where({sk} == $a.{sk}) after $a }}"
                ),
                name: format!("each {a} is followed by {} with the same {key}", an(&b)),
                names: vec![a, b],
                keys: vec![key],
                chance,
                note: None,
                mined: (na.traces, held.min(response)),
            });
        }
    }
    let mut keys: Vec<_> = m.keys().collect();
    keys.sort_by(|x, y| (m.name(x.0 .0), x.0 .1).cmp(&(m.name(y.0 .0), y.0 .1)));
    for (&(ai, k), ks) in keys {
        let na = m.name_stats(ai);
        if na.multi < min_support
            || !ks.values.varies()
            || !ok(na.multi, ks.same)
            || !writable(m.name(ai))
            || !writable(projection.key_name(k))
        {
            continue;
        }
        let (a, key) = (m.name(ai).to_string(), projection.key_name(k).to_string());
        let (sa, sk) = (sel(&a), attr(&key));
        out.push(Candidate {
            id: String::new(),
            family: Family::Idempotency,
            claim: Claim::Same(a.clone(), key.clone()),
            condition: format!(
                "when {{ count({sa}) >= 2 }} always {{ distinct({sa}, {sk}) == 1 }}"
            ),
            name: format!("a repeated {a} keeps one {key}"),
            names: vec![a],
            keys: vec![key],
            chance: ks.values.collision(),
            note: None,
            mined: (na.multi, ks.same),
        });
    }
    let mut names: Vec<_> = m.names().filter(|(n, _)| frequent(*n)).collect();
    names.sort_by(|x, y| m.name(x.0).cmp(m.name(y.0)));
    for (ai, na) in names {
        // A name at most once a trace says nothing; a count in the dozens is no limit.
        let p99 = na.counts.quantile(0.99);
        if p99 > 10 || na.counts.max() <= 1 {
            continue;
        }
        let k = (3 * p99).div_ceil(2).max(p99 + 1);
        let a = m.name(ai).to_string();
        let sa = sel(&a);
        out.push(Candidate {
            id: String::new(),
            family: Family::Count,
            claim: Claim::Count(a.clone(), k),
            condition: format!("when {{ {sa} }} always {{ count({sa}) <= {k} }}"),
            name: format!("at most {k} {a} a trace"),
            names: vec![a],
            keys: vec![],
            chance: 1.0,
            note: Some(format!(
                "99th percentile of the count per trace {p99}, largest seen {}",
                na.counts.max()
            )),
            mined: (na.traces, na.traces),
        });
    }
    value_bounds(m, projection, min_support, min_confidence, &mut out);
    conditionals(m, min_support, min_confidence, &mut out);
    name_ids(&mut out);
    out
}

/// What value candidates need of the generator's checks.
struct Gate<'m> {
    m: &'m Miner,
    min_support: u64,
    min_confidence: f64,
}

impl Gate<'_> {
    /// A name that can be in a pair: on enough traces, writable, not the root of (nearly)
    /// every trace.
    fn pairable(&self, n: NameId) -> bool {
        let s = self.m.name_stats(n);
        s.traces >= self.min_support
            && writable(self.m.name(n))
            && (s.root as f64) < 0.99 * self.m.traces.max(1) as f64
    }

    /// Support and confidence reach the thresholds.
    fn ok(&self, support: u64, held: u64) -> bool {
        support >= self.min_support && held as f64 >= self.min_confidence * support as f64
    }
}

/// Least value a chance is taken as: a bound that never held when values were shuffled
/// still rests on a sample of 64 × 64 pairs.
const LEAST_CHANCE: f64 = 1.0 / 4096.0;

/// Value bounds across spans: for names `a`, `b` in the same traces, each carrying numbers
/// of one key, `sum(b, k) <= $a.k` (and `max(b, k) <= $a.k` when `b` repeats), where the
/// mined traces (both names present, `b` with a number) held it. The chance it holds
/// anyway is read off the two names' samples, shuffled across traces.
fn value_bounds(
    m: &Miner,
    projection: &Projection,
    min_support: u64,
    min_confidence: f64,
    out: &mut Vec<Candidate>,
) {
    let gate = Gate {
        m,
        min_support,
        min_confidence,
    };
    let mut all: Vec<_> = m
        .bounds()
        .filter(|((a, b, _), _)| gate.pairable(*a) && gate.pairable(*b))
        .collect();
    all.sort_by(|x, y| {
        (m.name(x.0 .0), m.name(x.0 .1), x.0 .2).cmp(&(m.name(y.0 .0), m.name(y.0 .1), y.0 .2))
    });
    for ((ai, bi, k), held) in all {
        let Some(co) = m.pair_stats(ai, bi).map(|p| p.co) else {
            continue;
        };
        let (Some(ka), Some(kb)) = (m.key_stats(ai, k), m.key_stats(bi, k)) else {
            continue;
        };
        let key = projection.key_name(k);
        if !writable(key) {
            continue;
        }
        let (a, b) = (m.name(ai).to_string(), m.name(bi).to_string());
        let (sa, sb, sk) = (sel(&a), sel(&b), attr(key));
        let repeats = m.name_stats(bi).multi > 0;
        for (of, count) in [(super::cond::SUM, held[0]), (super::cond::MAX, held[1])] {
            if !gate.ok(co, count) || (of == super::cond::MAX && !repeats) {
                continue;
            }
            // A key that is one value throughout a trace bounds itself: the bound is then
            // an equality, which holds anyway.
            let chance = ka
                .numbers
                .chance_at_least(&kb.numbers, of)
                .unwrap_or(1.0)
                .max(m.one_per_trace(k))
                .max(LEAST_CHANCE);
            let (f, claim, what) = if of == super::cond::SUM {
                (
                    "sum",
                    Claim::SumAtMost(a.clone(), b.clone(), key.into()),
                    "the sum of",
                )
            } else {
                (
                    "max",
                    Claim::MaxAtMost(a.clone(), b.clone(), key.into(), kb.negative == 0),
                    "every",
                )
            };
            out.push(Candidate {
                id: String::new(),
                family: Family::ValueBound,
                claim,
                condition: format!(
                    "when {{ {sa} as $a and {sb} }} always {{ {f}({sb}, {sk}) <= $a.{sk} }}"
                ),
                name: format!("{what} {b}'s {key} is at most each {a}'s"),
                names: vec![a.clone(), b.clone()],
                keys: vec![key.to_string()],
                chance,
                note: Some(format!(
                    "chance {:.4}: held in that share of the pairs of {} × {} sampled traces with their values shuffled across traces, or the key is one value throughout that share of traces",
                    chance,
                    ka.numbers.len(),
                    kb.numbers.len()
                )),
                mined: (co, count),
            });
        }
    }
}

/// Pairs restricted to a frequent value: `when { a.where(c) } always { b }` where the
/// traces with an `a` passing `c` have a `b` (support and confidence at the thresholds)
/// but the traces with an `a` do not, and clearly less often: the Wilson lower bound of the
/// conditional confidence is above the unconditional one — which is the chance, so that
/// lift says how much the condition adds.
fn conditionals(m: &Miner, min_support: u64, min_confidence: f64, out: &mut Vec<Candidate>) {
    let gate = Gate {
        m,
        min_support,
        min_confidence,
    };
    let setup = m.setup();
    let mut all: Vec<_> = m
        .conditional()
        .filter(|((_, b), _)| gate.pairable(*b))
        .collect();
    all.sort_by(|x, y| (x.0 .0, m.name(x.0 .1)).cmp(&(y.0 .0, m.name(y.0 .1))));
    for ((c, bi), held) in all {
        let cond = &setup.conditions[c as usize];
        let Some(ai) = m.id_of(&cond.name) else {
            continue;
        };
        let applies = m.cond_applies(c);
        let na = m.name_stats(ai).traces;
        let co = m.pair_stats(ai, bi).map_or(0, |p| p.co);
        if !gate.pairable(ai) || !gate.ok(applies, held) || gate.ok(na, co) || !writable(&cond.key)
        {
            continue;
        }
        let unconditional = co as f64 / na.max(1) as f64;
        if super::stats::wilson_lower(held, applies) <= unconditional {
            continue;
        }
        let (a, b) = (cond.name.clone(), m.name(bi).to_string());
        let (sa, sb) = (sel(&a), sel(&b));
        let claim = match cond.test {
            super::cond::Test::Eq(_) => {
                Claim::WhenEq(a.clone(), cond.key.clone(), cond.value.clone(), b.clone())
            }
            super::cond::Test::Above(_) => {
                Claim::WhenAbove(a.clone(), cond.key.clone(), cond.value.clone(), b.clone())
            }
        };
        out.push(Candidate {
            id: String::new(),
            family: Family::Conditional,
            claim,
            condition: format!("when {{ {sa}.where({}) }} always {{ {sb} }}", cond.text),
            name: format!("a trace with {} where {} has {}", an(&a), cond.text, an(&b)),
            names: vec![a, b],
            keys: vec![cond.key.clone()],
            chance: unconditional.max(LEAST_CHANCE),
            note: Some(format!(
                "{}; without the condition held in {co} of {na} traces ({unconditional:.4})",
                cond.why
            )),
            mined: (applies, held),
        });
    }
}

/// Whether a name or key can be written in a condition.
fn writable(s: &str) -> bool {
    !s.contains('\n')
}

/// A name with its article, for a candidate's human name ("an audit.log").
fn an(name: &str) -> String {
    let vowel = name
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    format!("{} {name}", if vowel { "an" } else { "a" })
}

/// Gives each candidate a rule id: its template and names, made unique.
fn name_ids(cands: &mut [Candidate]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in cands.iter_mut() {
        let variant = match &c.claim {
            Claim::Exists(..) => "exists",
            Claim::Before(..) => "before",
            Claim::BeforeWithin(..) => "before-within",
            Claim::Response(..) => "response",
            Claim::ResponseUntil(..) => "response-until",
            Claim::AfterWithin(..) => "after-within",
            Claim::OwnAfter(..) => "own-after",
            Claim::OwnBefore(..) => "own-before",
            Claim::ChildOf(..) => "child-of",
            Claim::Within(..) => "within",
            Claim::Agree(..) => "agree",
            Claim::AgreeAfter(..) => "agree-after",
            Claim::Same(..) => "same",
            Claim::Count(..) => "count",
            Claim::SumAtMost(..) => "sum-at-most",
            Claim::MaxAtMost(..) => "max-at-most",
            Claim::WhenEq(..) => "when-eq",
            Claim::WhenAbove(..) => "when-above",
        };
        let mut id = format!("discovered.{variant}");
        let value = match &c.claim {
            Claim::WhenEq(_, _, v, _) | Claim::WhenAbove(_, _, v, _) => Some(v),
            _ => None,
        };
        for n in c.names.iter().chain(&c.keys).chain(value) {
            id.push('-');
            id.push_str(&slug(n));
        }
        let n = seen.entry(id.clone()).or_insert(0);
        *n += 1;
        c.id = if *n == 1 { id } else { format!("{id}-{n}") };
    }
}

/// A name as a piece of a rule id: letters, digits, `_`, `.`; anything else `_`.
fn slug(s: &str) -> String {
    s.chars()
        .take(60)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The words of the language: a name or key made of them is quoted.
const KEYWORDS: &[&str] = &[
    "when", "always", "never", "and", "or", "not", "in", "matches", "contains", "exists", "count",
    "distinct", "before", "after", "within", "child_of", "trace", "has", "where", "unique", "sum",
    "min", "max", "avg", "as", "own", "since", "until", "around", "true", "false", "span",
    "resource",
];

/// Whether `s` is dotted identifiers (`[A-Za-z_][A-Za-z0-9_-]*`), none of them a keyword.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|seg| {
            let mut cs = seg.chars();
            cs.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !KEYWORDS.contains(&seg)
        })
}

/// A span name as a selector matching exactly it: bare when it can be, else quoted with
/// `"`, `\` and `*` escaped (a bare `*` would be a glob).
pub fn sel(name: &str) -> String {
    if plain(name) {
        return name.to_string();
    }
    quote(name)
}

/// An attribute key as a reference: bare when it can be, else quoted.
pub fn attr(key: &str) -> String {
    if plain(key) {
        return key.to_string();
    }
    quote(key)
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' | '*' => {
                q.push('\\');
                q.push(c);
            }
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Key ids of a projection by text (for reading a candidate's keys off a trace).
pub fn key_ids(projection: &Projection, keys: &[String]) -> Vec<KeyId> {
    keys.iter().filter_map(|k| projection.key(k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_when_they_must_be() {
        assert_eq!(sel("payment.charge"), "payment.charge");
        assert_eq!(sel("GET /api/*"), "\"GET /api/\\*\"");
        assert_eq!(sel("count"), "\"count\"");
        assert_eq!(sel("a.where"), "\"a.where\"");
        assert_eq!(attr("order_id"), "order_id");
        assert_eq!(attr("span.x"), "\"span.x\"");
        assert_eq!(
            attr("http.response.status_code"),
            "http.response.status_code"
        );
    }

    #[test]
    fn implication_closes_over_chains() {
        let c = Claim::AgreeAfter("a".into(), "b".into(), "k".into()).closure();
        assert!(c.contains(&Claim::Exists("a".into(), "b".into())));
        assert!(c.contains(&Claim::Response("a".into(), "b".into())));
        let c = Claim::ChildOf("b".into(), "a".into()).closure();
        assert!(c.contains(&Claim::Exists("b".into(), "a".into())));
    }
}
