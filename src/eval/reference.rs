//! The reference evaluator: a plain tree-walking interpreter over the checked condition.
//!
//! It is kept small and obviously right — linear scans, no indexes, no caches — so that the
//! property tests can hold the bytecode VM to it. It shares only [`crate::lang::value`] (what a
//! comparison means) and [`crate::lang::hir::trigger_selectors`] (which selectors report) with the VM.

use std::collections::HashSet;

pub use crate::eval::vm::Verdict;
use crate::lang::hir::{trigger_selectors, Attr, Expr, Form, Intrinsic, Num, Pred, Selector};
use crate::lang::value::{self, Number, Value, ValueRef};
use crate::trace::{lookup, Trace};

/// Judges one checked condition against one trace.
pub fn evaluate(form: &Form, trace: &Trace) -> Verdict {
    crate::lang::stack::with_stack(|| evaluate_form(form, trace))
}

fn evaluate_form(form: &Form, trace: &Trace) -> Verdict {
    let (applies, fired, by_never) = match form {
        Form::Invariant {
            when,
            always,
            never,
        } => {
            let applies = expr(when, trace);
            let by_never = applies && never.as_ref().is_some_and(|n| expr(n, trace));
            let fired = by_never || (applies && always.as_ref().is_some_and(|a| !expr(a, trace)));
            (applies, fired, by_never)
        }
        Form::Violation(e) => (true, expr(e, trace), false),
    };
    let mut triggers = Vec::new();
    if fired {
        for sel in trigger_selectors(form, by_never) {
            for i in 0..trace.spans.len() {
                if matches(sel, trace, i) && !triggers.contains(&i) {
                    triggers.push(i);
                }
            }
        }
        triggers.sort_by_key(|&i| (trace.spans[i].start_unix_nano, trace.spans[i].span_id));
    }
    Verdict {
        fired,
        applies,
        triggers,
    }
}

/// Whether a checked expression holds on a trace.
pub(crate) fn expr(e: &Expr, t: &Trace) -> bool {
    match e {
        Expr::Or(items) => items.iter().any(|i| expr(i, t)),
        Expr::And(items) => items.iter().all(|i| expr(i, t)),
        Expr::Not(inner) => !expr(inner, t),
        Expr::Has(s) => (0..t.spans.len()).any(|i| matches(s, t, i)),
        Expr::Compare(a, op, b) => value::compare_numbers(num(a, t), *op, num(b, t)),
        Expr::Before(a, b, bound) => before(a, b, *bound, t),
        Expr::Within(a, b) => (0..t.spans.len())
            .filter(|&i| matches(a, t, i))
            .all(|i| has_ancestor(i, b, t)),
        Expr::ChildOf(a, b) => (0..t.spans.len())
            .filter(|&i| matches(a, t, i))
            .all(|i| parent(i, t).is_some_and(|p| matches(b, t, p))),
    }
}

/// A numeric term's value on a trace; `None` when it has none (`min`/`max`/`avg` over no
/// numeric value).
pub(crate) fn num(n: &Num, t: &Trace) -> Option<Number> {
    Some(match n {
        Num::Const(x) => *x,
        Num::Duration(d) => Number::Int(*d),
        Num::Count(s) => {
            Number::Int((0..t.spans.len()).filter(|&i| matches(s, t, i)).count() as i64)
        }
        Num::Distinct(s, key) => {
            let keys: HashSet<_> = (0..t.spans.len())
                .filter(|&i| matches(s, t, i))
                .filter_map(|i| attr(key, t, i))
                .map(|v| v.distinct_key())
                .collect();
            Number::Int(keys.len() as i64)
        }
        Num::Agg(f, s, key) => {
            let values: Vec<Number> = (0..t.spans.len())
                .filter(|&i| matches(s, t, i))
                .filter_map(|i| attr(key, t, i))
                .filter_map(|v| Number::of(ValueRef::from(&v)))
                .collect();
            return value::aggregate(*f, values.into_iter());
        }
    })
}

/// `A before B [within D]`: both match, and every `B` starts after some `A` — by at most
/// `D` when bounded; unbounded, the earliest `A` starts before the earliest `B`.
fn before(a: &Selector, b: &Selector, bound: Option<i64>, t: &Trace) -> bool {
    let starts = |s: &Selector| -> Vec<u64> {
        (0..t.spans.len())
            .filter(|&i| matches(s, t, i))
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
fn parent(i: usize, t: &Trace) -> Option<usize> {
    let pid = t.spans[i].parent_span_id?;
    t.spans.iter().position(|s| s.span_id == pid)
}

/// Whether span `i` has an ancestor matching `b`.
pub(crate) fn has_ancestor(i: usize, b: &Selector, t: &Trace) -> bool {
    let mut cur = i;
    // A hostile trace may have a parent cycle; no chain is longer than the trace.
    for _ in 0..t.spans.len() {
        match parent(cur, t) {
            Some(p) if matches(b, t, p) => return true,
            Some(p) => cur = p,
            None => return false,
        }
    }
    false
}

/// Whether span `i` matches the selector's name and every predicate.
pub fn matches(s: &Selector, t: &Trace, i: usize) -> bool {
    s.name.matches(&t.spans[i].name) && s.pred.as_ref().is_none_or(|p| pred(p, t, i))
}

fn pred(p: &Pred, t: &Trace, i: usize) -> bool {
    match p {
        Pred::Or(items) => items.iter().any(|q| pred(q, t, i)),
        Pred::And(items) => items.iter().all(|q| pred(q, t, i)),
        Pred::Not(q) => !pred(q, t, i),
        Pred::Exists(a) => attr(a, t, i).is_some(),
        Pred::Truthy(a) => attr(a, t, i).is_some_and(|v| value::is_true(&v)),
        Pred::Cmp(a, op, lit) => attr(a, t, i).is_some_and(|v| value::compare(&v, *op, lit)),
        Pred::In(a, items) => attr(a, t, i).is_some_and(|v| value::is_in(&v, items)),
        Pred::Matches(a, re) => {
            attr(a, t, i).is_some_and(|v| v.as_str().is_some_and(|s| re.is_match(s)))
        }
        Pred::Contains(a, needle) => attr(a, t, i).is_some_and(|v| value::contains(&v, needle)),
        Pred::CmpAttr(a, op, b) => match (attr(a, t, i), attr(b, t, i)) {
            (Some(x), Some(y)) => value::compare(&x, *op, &y),
            _ => false,
        },
    }
}

/// The value an attribute reference has on span `i`, if any.
/// An attribute's value on span `i`.
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

/// Writes a checked expression back in the language.
pub fn describe(e: &Expr) -> String {
    // A count's or distinct's selector text is the whole term as written.
    let num = |n: &Num| match n {
        Num::Const(x) => x.to_string(),
        Num::Duration(d) => value::format_duration(*d),
        Num::Count(s) | Num::Distinct(s, _) => s.text.clone(),
        Num::Agg(f, s, key) => format!("{}({}, {key})", f.as_str(), s.text),
    };
    let wrap = |e: &Expr| match e {
        Expr::Or(_) | Expr::And(_) => format!("({})", describe(e)),
        _ => describe(e),
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
    }
}
