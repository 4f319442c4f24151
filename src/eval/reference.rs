//! The reference evaluator: a plain tree-walking interpreter over the checked condition.
//!
//! It is kept small and obviously right — linear scans, no indexes, no caches — so that the
//! property tests can hold the bytecode VM to it. It shares only [`crate::lang::value`] (what a
//! comparison means) and [`crate::lang::hir::trigger_selectors`] (which selectors report) with the VM.

use std::collections::HashSet;

pub use crate::eval::vm::Verdict;
use crate::lang::hir::{
    trigger_selectors, Attr, Binding, Expr, Form, Intrinsic, Num, Pred, RelKind, Relation, Selector,
};
use crate::lang::value::{self, Number, Value, ValueRef};
use crate::trace::{lookup, Trace};

/// Judges one checked condition against one trace.
pub fn evaluate(form: &Form, trace: &Trace) -> Verdict {
    crate::lang::stack::with_stack(|| evaluate_form(form, trace))
}

/// The bound span a term is evaluated for: `None` outside a per-occurrence rule.
pub type Env = Option<usize>;

fn evaluate_form(form: &Form, trace: &Trace) -> Verdict {
    if let Form::Invariant {
        bind: Some(bind),
        when,
        always,
        never,
    } = form
    {
        return per_occurrence(bind, when, always.as_ref(), never.as_ref(), trace);
    }
    let (applies, fired, by_never) = match form {
        Form::Invariant {
            when,
            always,
            never,
            ..
        } => {
            let applies = expr(when, trace, None);
            let by_never = applies && never.as_ref().is_some_and(|n| expr(n, trace, None));
            let fired =
                by_never || (applies && always.as_ref().is_some_and(|a| !expr(a, trace, None)));
            (applies, fired, by_never)
        }
        Form::Violation(e) => (true, expr(e, trace, None), false),
    };
    let mut triggers = Vec::new();
    if fired {
        for sel in trigger_selectors(form, by_never) {
            for i in 0..trace.spans.len() {
                if matches(sel, trace, i, None) && !triggers.contains(&i) {
                    triggers.push(i);
                }
            }
        }
        sort_by_start(&mut triggers, trace);
    }
    Verdict {
        fired,
        applies,
        triggers,
    }
}

/// Sorts span indexes by start, ties by span id, then by index.
fn sort_by_start(spans: &mut [usize], t: &Trace) {
    spans.sort_by_key(|&i| (t.spans[i].start_unix_nano, t.spans[i].span_id, i));
}

/// A rule that binds a span: judged once per binding; it fires when some binding breaks
/// it, and reports the bindings that did.
fn per_occurrence(
    bind: &Binding,
    when: &Expr,
    always: Option<&Expr>,
    never: Option<&Expr>,
    t: &Trace,
) -> Verdict {
    let (mut applying, mut broke) = (Vec::new(), Vec::new());
    for x in bindings(bind, t) {
        if !expr(when, t, Some(x)) {
            continue;
        }
        applying.push(x);
        // `own` terms count as holding here: they are decided over every binding below.
        let never_holds = never.is_some_and(|n| expr(n, t, Some(x)));
        let always_fails = always.is_some_and(|a| !expr(a, t, Some(x)));
        if never_holds || always_fails {
            broke.push(x);
        }
    }
    let mut fired = !broke.is_empty();
    let mut owns = Vec::new();
    if let Some(a) = always {
        own_terms(a, &mut owns);
    }
    for own in owns {
        // The rule holds when every binding can be given a partner of its own: decided
        // by a maximum matching; the greedy of the spec says which bindings are left.
        let (matched, left) = own_matching(own, &applying, t);
        if matched < applying.len() {
            fired = true;
        }
        broke.extend(left);
    }
    broke.sort_unstable();
    broke.dedup();
    sort_by_start(&mut broke, t);
    Verdict {
        fired,
        applies: !applying.is_empty(),
        triggers: broke,
    }
}

/// For an `own` term over the bindings that apply: the size of a maximum matching, and the
/// bindings the spec's greedy leaves without a partner.
fn own_matching(own: &Selector, applying: &[usize], t: &Trace) -> (usize, Vec<usize>) {
    let partners: Vec<Vec<usize>> = applying
        .iter()
        .map(|&x| {
            (0..t.spans.len())
                .filter(|&s| matches(own, t, s, Some(x)))
                .collect()
        })
        .collect();
    (
        maximum_matching(&partners, t.spans.len()),
        greedy_leftovers(own, applying, t),
    )
}

/// Whether, for every `own` term of a per-occurrence rule on this trace, the spec's greedy
/// assignment leaves exactly as many bindings without a partner as a maximum matching
/// does. It does whenever each join compares values of one kind; a join mixing strings and
/// numbers is not transitive (`"50" == 50 == "50.0"`, `"50" != "50.0"`), and there the
/// greedy can fall short (docs/language.md, "Own partners").
pub fn own_greedy_is_maximum(form: &Form, t: &Trace) -> bool {
    let Form::Invariant {
        bind: Some(bind),
        when,
        always: Some(always),
        ..
    } = form
    else {
        return true;
    };
    let applying = applying_bindings(bind, when, t);
    let mut owns = Vec::new();
    own_terms(always, &mut owns);
    owns.into_iter().all(|own| {
        let (matched, left) = own_matching(own, &applying, t);
        matched + left.len() == applying.len()
    })
}

/// The spans a rule binds, in start order (ties: lower span id).
pub(crate) fn bindings(bind: &Binding, t: &Trace) -> Vec<usize> {
    let mut all: Vec<usize> = (0..t.spans.len())
        .filter(|&i| matches(&bind.selector, t, i, None))
        .collect();
    sort_by_start(&mut all, t);
    all
}

/// The bindings whose `when` holds, in start order.
pub(crate) fn applying_bindings(bind: &Binding, when: &Expr, t: &Trace) -> Vec<usize> {
    bindings(bind, t)
        .into_iter()
        .filter(|&x| expr(when, t, Some(x)))
        .collect()
}

/// The `own` terms of `always`: its top-level conjuncts of that kind.
pub(crate) fn own_terms<'a>(e: &'a Expr, out: &mut Vec<&'a Selector>) {
    match e {
        Expr::And(items) => items.iter().for_each(|i| own_terms(i, out)),
        Expr::Own(s) => out.push(s),
        _ => {}
    }
}

/// The size of a maximum matching between bindings (`partners[b]`: the spans binding `b`
/// may take) and spans, by augmenting paths (Kuhn): plain, and only for small traces.
fn maximum_matching(partners: &[Vec<usize>], spans: usize) -> usize {
    fn augment(
        b: usize,
        partners: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for &s in &partners[b] {
            if seen[s] {
                continue;
            }
            seen[s] = true;
            if owner[s].is_none_or(|o| augment(o, partners, seen, owner)) {
                owner[s] = Some(b);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; spans];
    (0..partners.len())
        .filter(|&b| augment(b, partners, &mut vec![false; spans], &mut owner))
        .count()
}

/// The bindings the matching of docs/language.md, "Own partners", leaves without a partner:
/// the spans in start order (ties: lower span id), each given to the binding still without
/// one that it can serve whose window ends first (ties: earlier start, lower span id).
pub(crate) fn greedy_leftovers(own: &Selector, applying: &[usize], t: &Trace) -> Vec<usize> {
    let mut spans: Vec<usize> = (0..t.spans.len()).collect();
    sort_by_start(&mut spans, t);
    let mut matched = vec![false; applying.len()];
    for s in spans {
        let best = (0..applying.len())
            .filter(|&b| !matched[b] && matches(own, t, s, Some(applying[b])))
            .min_by_key(|&b| {
                let x = applying[b];
                (
                    window_end(own, t, x),
                    t.spans[x].start_unix_nano,
                    t.spans[x].span_id,
                    x,
                )
            });
        if let Some(b) = best {
            matched[b] = true;
        }
    }
    (0..applying.len())
        .filter(|&b| !matched[b])
        .map(|b| applying[b])
        .collect()
}

/// The last instant (ns) a partner of binding `x` may start at, for an `own` selector.
pub(crate) fn window_end(own: &Selector, t: &Trace, x: usize) -> i128 {
    let Some(rel) = own.rel.as_deref() else {
        return i128::MAX;
    };
    let start = t.spans[x].start_unix_nano as i128;
    match rel.kind {
        RelKind::Before => start - 1,
        RelKind::After => {
            let mut end = rel.window.map_or(i128::MAX, |d| start + d as i128);
            if let Some(limit) = scope_limit(rel, t, x) {
                end = end.min(limit as i128 - 1);
            }
            end
        }
        _ => i128::MAX,
    }
}

/// The start of the span bounding a relation's scope for binding `x`: for `until T` the
/// earliest `T` starting after `x`, for `since T` the latest starting before it.
fn scope_limit(rel: &Relation, t: &Trace, x: usize) -> Option<u64> {
    let limit = rel.limit.as_ref()?;
    let at = t.spans[x].start_unix_nano;
    let starts = (0..t.spans.len())
        .filter(|&i| matches(limit, t, i, Some(x)))
        .map(|i| t.spans[i].start_unix_nano);
    match rel.kind {
        RelKind::After => starts.filter(|&s| s > at).min(),
        _ => starts.filter(|&s| s < at).max(),
    }
}

/// Whether span `i` stands in the relation to the bound span `x`.
fn related(rel: &Relation, t: &Trace, i: usize, x: Env) -> bool {
    let Some(x) = x else {
        return false;
    };
    let (s, b) = (t.spans[i].start_unix_nano, t.spans[x].start_unix_nano);
    let within = |gap: u64| rel.window.is_none_or(|d| gap <= d as u64);
    match rel.kind {
        RelKind::Before => s < b && within(b - s) && scope_limit(rel, t, x).is_none_or(|l| s > l),
        RelKind::After => s > b && within(s - b) && scope_limit(rel, t, x).is_none_or(|l| s < l),
        RelKind::Within => i != x && is_ancestor(x, i, t),
        RelKind::ChildOf => parent(i, t) == Some(x),
        RelKind::Around => i != x && is_ancestor(i, x, t),
    }
}

/// Whether span `a` is a proper ancestor of span `i` (through parent span ids).
fn is_ancestor(a: usize, i: usize, t: &Trace) -> bool {
    let mut cur = i;
    for _ in 0..t.spans.len() {
        match parent(cur, t) {
            Some(p) if p == a => return true,
            Some(p) => cur = p,
            None => return false,
        }
    }
    false
}

/// Whether a checked expression holds on a trace, for the bound span `x` if any. `own`
/// terms hold here: they are decided over all the bindings at once.
pub(crate) fn expr(e: &Expr, t: &Trace, x: Env) -> bool {
    match e {
        Expr::Or(items) => items.iter().any(|i| expr(i, t, x)),
        Expr::And(items) => items.iter().all(|i| expr(i, t, x)),
        Expr::Not(inner) => !expr(inner, t, x),
        Expr::Has(s) => (0..t.spans.len()).any(|i| matches(s, t, i, x)),
        Expr::Compare(a, op, b) => value::compare_numbers(num(a, t, x), *op, num(b, t, x)),
        Expr::Before(a, b, bound) => before(a, b, *bound, t, x),
        Expr::Within(a, b) => (0..t.spans.len())
            .filter(|&i| matches(a, t, i, x))
            .all(|i| has_ancestor(i, b, t, x)),
        Expr::ChildOf(a, b) => (0..t.spans.len())
            .filter(|&i| matches(a, t, i, x))
            .all(|i| parent(i, t).is_some_and(|p| matches(b, t, p, x))),
        Expr::Own(_) => true,
        Expr::BoundWithin(s) => x.is_some_and(|x| has_ancestor(x, s, t, Some(x))),
        Expr::BoundChildOf(s) => {
            x.is_some_and(|x| parent(x, t).is_some_and(|p| matches(s, t, p, Some(x))))
        }
    }
}

/// A numeric term's value on a trace; `None` when it has none (`min`/`max`/`avg` over no
/// numeric value, a bound value that is missing or not a number).
pub(crate) fn num(n: &Num, t: &Trace, x: Env) -> Option<Number> {
    Some(match n {
        Num::Const(c) => *c,
        Num::Duration(d) => Number::Int(*d),
        Num::Bound(a) => {
            return x
                .and_then(|x| attr(a, t, x))
                .and_then(|v| Number::of((&v).into()))
        }
        Num::Count(s) => {
            Number::Int((0..t.spans.len()).filter(|&i| matches(s, t, i, x)).count() as i64)
        }
        Num::Distinct(s, key) => {
            let keys: HashSet<_> = (0..t.spans.len())
                .filter(|&i| matches(s, t, i, x))
                .filter_map(|i| attr(key, t, i))
                .map(|v| v.distinct_key())
                .collect();
            Number::Int(keys.len() as i64)
        }
        Num::Agg(f, s, key) => {
            let values: Vec<Number> = (0..t.spans.len())
                .filter(|&i| matches(s, t, i, x))
                .filter_map(|i| attr(key, t, i))
                .filter_map(|v| Number::of(ValueRef::from(&v)))
                .collect();
            return value::aggregate(*f, values.into_iter());
        }
    })
}

/// `A before B [within D]`: both match, and every `B` starts after some `A` — by at most
/// `D` when bounded; unbounded, the earliest `A` starts before the earliest `B`.
fn before(a: &Selector, b: &Selector, bound: Option<i64>, t: &Trace, x: Env) -> bool {
    let starts = |s: &Selector| -> Vec<u64> {
        (0..t.spans.len())
            .filter(|&i| matches(s, t, i, x))
            .map(|i| t.spans[i].start_unix_nano)
            .collect()
    };
    let (a, b) = (starts(a), starts(b));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    match bound {
        None => a.iter().min() < b.iter().min(),
        Some(d) => b
            .iter()
            .all(|&y| a.iter().any(|&x| x < y && y - x <= d as u64)),
    }
}

/// The index of span `i`'s parent in this trace, if it is there.
pub(crate) fn parent(i: usize, t: &Trace) -> Option<usize> {
    let pid = t.spans[i].parent_span_id?;
    t.spans.iter().position(|s| s.span_id == pid)
}

/// Whether span `i` has an ancestor matching `b`.
pub(crate) fn has_ancestor(i: usize, b: &Selector, t: &Trace, x: Env) -> bool {
    let mut cur = i;
    // A hostile trace may have a parent cycle; no chain is longer than the trace.
    for _ in 0..t.spans.len() {
        match parent(cur, t) {
            Some(p) if matches(b, t, p, x) => return true,
            Some(p) => cur = p,
            None => return false,
        }
    }
    false
}

/// Whether span `i` matches the selector's name, every predicate and its relation to the
/// bound span `x`.
pub fn matches(s: &Selector, t: &Trace, i: usize, x: Env) -> bool {
    s.name.matches(&t.spans[i].name)
        && s.pred.as_ref().is_none_or(|p| pred(p, t, i, x))
        && s.rel.as_deref().is_none_or(|r| related(r, t, i, x))
}

fn pred(p: &Pred, t: &Trace, i: usize, x: Env) -> bool {
    let bound = |b: &Attr| x.and_then(|x| attr(b, t, x));
    match p {
        Pred::Or(items) => items.iter().any(|q| pred(q, t, i, x)),
        Pred::And(items) => items.iter().all(|q| pred(q, t, i, x)),
        Pred::Not(q) => !pred(q, t, i, x),
        Pred::Exists(a) => attr(a, t, i).is_some(),
        Pred::Truthy(a) => attr(a, t, i).is_some_and(|v| value::is_true(&v)),
        Pred::Cmp(a, op, lit) => attr(a, t, i).is_some_and(|v| value::compare(&v, *op, lit)),
        Pred::In(a, items) => attr(a, t, i).is_some_and(|v| value::is_in(&v, items)),
        Pred::Matches(a, re) => {
            attr(a, t, i).is_some_and(|v| v.as_str().is_some_and(|s| re.is_match(s)))
        }
        Pred::Contains(a, needle) => attr(a, t, i).is_some_and(|v| value::contains(&v, needle)),
        Pred::CmpAttr(a, op, b) => match (attr(a, t, i), attr(b, t, i)) {
            (Some(v), Some(w)) => value::compare(&v, *op, &w),
            _ => false,
        },
        Pred::CmpBound(a, op, b) => match (attr(a, t, i), bound(b)) {
            (Some(v), Some(w)) => value::compare(&v, *op, &w),
            _ => false,
        },
        Pred::ContainsBound(a, b) => match (attr(a, t, i), bound(b)) {
            (Some(v), Some(w)) => value::contains(&v, &w),
            _ => false,
        },
    }
}

/// An attribute's value on span `i`, if any.
pub(crate) fn attr(a: &Attr, t: &Trace, i: usize) -> Option<Value> {
    let span = &t.spans[i];
    let resource = &t.resource_of(span).attributes;
    match a {
        Attr::Any(k) => lookup(&span.attributes, k)
            .or_else(|| lookup(resource, k))
            .cloned(),
        Attr::Span(k) => lookup(&span.attributes, k).cloned(),
        Attr::Resource(k) => lookup(resource, k).cloned(),
        Attr::Intrinsic(which) => Some(match which {
            Intrinsic::Name => Value::str(&span.name),
            Intrinsic::Duration => Value::Duration(span.duration_nanos()),
            Intrinsic::Status => Value::str(span.status.as_str()),
            Intrinsic::StatusMessage => Value::str(&span.status_message),
            Intrinsic::Kind => Value::str(span.kind.as_str()),
            Intrinsic::RootName => Value::str(&t.spans[t.root()?].name),
            Intrinsic::RootService => Value::str(t.resource_of(&t.spans[t.root()?]).service_name()),
            Intrinsic::TraceDuration => Value::Duration(t.duration_nanos()),
        }),
    }
}

/// Writes a checked expression back in the language; `var` names the bound span.
pub fn describe(e: &Expr, var: &str) -> String {
    // A count's or distinct's selector text is the whole term as written.
    let num = |n: &Num| match n {
        Num::Const(x) => x.to_string(),
        Num::Duration(d) => value::format_duration(*d),
        Num::Count(s) | Num::Distinct(s, _) => s.text.clone(),
        Num::Agg(f, s, key) => format!("{}({}, {key})", f.as_str(), s.text),
        Num::Bound(key) => format!("${var}.{key}"),
    };
    let wrap = |e: &Expr| match e {
        Expr::Or(_) | Expr::And(_) => format!("({})", describe(e, var)),
        _ => describe(e, var),
    };
    match e {
        Expr::Or(items) => items.iter().map(wrap).collect::<Vec<_>>().join(" or "),
        Expr::And(items) => items.iter().map(wrap).collect::<Vec<_>>().join(" and "),
        Expr::Not(inner) => format!("not {}", wrap(inner)),
        Expr::Has(s) => s.text.clone(),
        Expr::Compare(a, op, b) => format!("{} {op} {}", num(a), num(b)),
        Expr::Before(a, b, None) => format!("{} before {}", a.text, b.text),
        Expr::Before(a, b, Some(d)) => format!(
            "{} before {} within {}",
            a.text,
            b.text,
            value::format_duration(*d)
        ),
        Expr::Within(a, b) => format!("{} within {}", a.text, b.text),
        Expr::ChildOf(a, b) => format!("{} child_of {}", a.text, b.text),
        Expr::Own(s) => format!("own {}", s.text),
        Expr::BoundWithin(s) => format!("${var} within {}", s.text),
        Expr::BoundChildOf(s) => format!("${var} child_of {}", s.text),
    }
}
