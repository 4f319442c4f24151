//! Why a rule did or did not fire on a trace, part by part, for `betrace test`.
//!
//! Every part of the condition is evaluated with the reference evaluator and shown with
//! its value, down to the innermost term, and each term names the span that decided it: a
//! filtered selector that matched nothing shows the first span that had the name but failed
//! the filter, with the attribute values the filter read; `before` shows both earliest
//! spans; `within`/`child_of` show the first span without the required ancestor or parent.

use crate::eval::reference::{
    applying_bindings, attr, bindings, describe, evaluate, expr, greedy_leftovers, has_ancestor,
    matches, num, Env,
};
use crate::lang::hir::{Attr, Binding, Expr, Form, Num, Pred, Selector};
use crate::lang::value::{format_duration, Number};
use crate::trace::Trace;

/// One line of an explanation: a part of the condition and what it evaluated to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `when`, `always`, `never` or `condition`.
    pub clause: &'static str,
    /// Nesting depth under the clause (0 = the clause's whole expression).
    pub depth: usize,
    /// The part, written back as a condition.
    pub text: String,
    /// Its value on the trace.
    pub value: bool,
    /// What decided it, such as "0 of 2 `payment` spans pass the filter; first: …".
    pub detail: String,
}

/// Evaluates each clause and every part of it, for `betrace test` to show why an example
/// failed.
///
/// A per-occurrence rule first says which spans it bound and which of them broke it, then
/// explains its parts for one binding: the earliest that broke it, else the earliest that
/// applies, else the earliest bound.
pub fn explain(form: &Form, trace: &Trace) -> Vec<Step> {
    crate::lang::stack::with_stack(|| {
        let mut steps = Vec::new();
        let mut cx = Cx {
            t: trace,
            x: None,
            var: "",
            applying: Vec::new(),
        };
        match form {
            Form::Invariant {
                bind,
                when,
                always,
                never,
            } => {
                if let Some(b) = bind {
                    let verdict = evaluate(form, trace);
                    cx.applying = applying_bindings(b, when, trace);
                    cx.var = &b.name;
                    cx.x = verdict
                        .triggers
                        .first()
                        .or(cx.applying.first())
                        .copied()
                        .or_else(|| bindings(b, trace).first().copied());
                    steps.push(binding_step(b, &cx, &verdict.triggers));
                }
                walk("when", 0, when, &cx, &mut steps);
                if let Some(a) = always {
                    walk("always", 0, a, &cx, &mut steps);
                }
                if let Some(n) = never {
                    walk("never", 0, n, &cx, &mut steps);
                }
            }
            Form::Violation(e) => walk("condition", 0, e, &cx, &mut steps),
        }
        steps
    })
}

/// What the parts of a condition are explained against.
struct Cx<'a> {
    t: &'a Trace,
    /// The binding explained, for a per-occurrence rule.
    x: Env,
    /// The bound span's name.
    var: &'a str,
    /// The bindings that apply, which `own` matches among.
    applying: Vec<usize>,
}

/// The first step of a per-occurrence rule's explanation: the spans bound, those that
/// broke the rule, and the one the steps below are about.
fn binding_step(b: &Binding, cx: &Cx, broke: &[usize]) -> Step {
    let t = cx.t;
    let all = bindings(b, t);
    let name = |i: usize| {
        format!(
            "{} (`{}`) at {}",
            t.spans[i].span_id,
            t.spans[i].name,
            offset(t, i)
        )
    };
    let mut detail = format!(
        "{} bound, {} appl{}",
        spans(all.len()),
        cx.applying.len(),
        if cx.applying.len() == 1 { "ies" } else { "y" }
    );
    if !broke.is_empty() {
        let shown: Vec<String> = broke.iter().take(5).map(|&i| name(i)).collect();
        detail.push_str(&format!(
            "; broke it: {}{}",
            shown.join(", "),
            if broke.len() > 5 {
                format!(" and {} more", broke.len() - 5)
            } else {
                String::new()
            }
        ));
    }
    if let Some(x) = cx.x {
        detail.push_str(&format!("; below, ${} = {}", b.name, name(x)));
    }
    Step {
        clause: "binding",
        depth: 0,
        // The selector as written holds its `as $name`.
        text: b.selector.text.clone(),
        value: broke.is_empty(),
        detail,
    }
}

/// A part's value for the binding explained: `own` is whether the matching gave this
/// binding a partner, and the parts above it combine that.
fn value(e: &Expr, cx: &Cx) -> bool {
    match (e, cx.x) {
        (Expr::Own(s), Some(x)) => {
            cx.applying.contains(&x) && !greedy_leftovers(s, &cx.applying, cx.t).contains(&x)
        }
        (Expr::And(items), _) => items.iter().all(|i| value(i, cx)),
        (Expr::Or(items), _) => items.iter().any(|i| value(i, cx)),
        (Expr::Not(inner), _) => !value(inner, cx),
        _ => expr(e, cx.t, cx.x),
    }
}

fn walk(clause: &'static str, depth: usize, e: &Expr, cx: &Cx, steps: &mut Vec<Step>) {
    let value = value(e, cx);
    steps.push(Step {
        clause,
        depth,
        text: describe(e, cx.var),
        value,
        detail: detail(e, cx),
    });
    match e {
        Expr::And(items) | Expr::Or(items) => {
            for i in items {
                walk(clause, depth + 1, i, cx, steps);
            }
        }
        Expr::Not(inner) => walk(clause, depth + 1, inner, cx, steps),
        _ => {}
    }
}

fn detail(e: &Expr, cx: &Cx) -> String {
    let (t, x) = (cx.t, cx.x);
    let matches = |s: &Selector, t: &Trace, i: usize| matches(s, t, i, x);
    let num = |n: &Num, t: &Trace| num(n, t, x);
    let has_ancestor = |i: usize, b: &Selector, t: &Trace| has_ancestor(i, b, t, x);
    match e {
        Expr::Own(s) => {
            let n = (0..t.spans.len()).filter(|&i| matches(s, t, i)).count();
            format!(
                "{} for this binding; {} binding{} compete{} for them",
                match n {
                    1 => "1 candidate".to_string(),
                    n => format!("{n} candidates"),
                },
                cx.applying.len(),
                if cx.applying.len() == 1 { "" } else { "s" },
                if cx.applying.len() == 1 { "s" } else { "" }
            )
        }
        Expr::Has(s) => selector_detail(s, t, x),
        Expr::Compare(a, _, b) => {
            let show = |n: Option<Number>, term: &Num| match (n, term) {
                (None, _) => "no value".to_string(),
                (Some(Number::Int(d)), Num::Duration(_)) => format_duration(d),
                (Some(x), Num::Agg(_, _, Attr::Intrinsic(_))) => format_duration(x.as_f64() as i64),
                (Some(x), _) => x.to_string(),
            };
            format!("{} vs {}", show(num(a, t), a), show(num(b, t), b))
        }
        Expr::Before(a, b, Some(bound)) => {
            let starts = |s: &Selector| -> Vec<usize> {
                (0..t.spans.len()).filter(|&i| matches(s, t, i)).collect()
            };
            let (xs, ys) = (starts(a), starts(b));
            if xs.is_empty() {
                return format!("no span matches `{}`", a.text);
            }
            if ys.is_empty() {
                return format!("no span matches `{}`", b.text);
            }
            let start = |i: usize| t.spans[i].start_unix_nano;
            // The first `B` with no `A` close enough before it, and the nearest `A`.
            let lonely = ys.iter().copied().find(|&y| {
                !xs.iter()
                    .any(|&x| start(x) < start(y) && start(y) - start(x) <= *bound as u64)
            });
            match lonely {
                None => format!(
                    "each of {} matching `{}` starts at most {} after a `{}`",
                    spans(ys.len()),
                    b.text,
                    format_duration(*bound),
                    a.text
                ),
                Some(y) => {
                    let nearest = xs
                        .iter()
                        .copied()
                        .filter(|&x| start(x) < start(y))
                        .max_by_key(|&x| start(x));
                    match nearest {
                        Some(x) => format!(
                            "span {} (`{}`) at {} starts {} after the nearest `{}` before it ({} at {}): more than {}",
                            t.spans[y].span_id,
                            t.spans[y].name,
                            offset(t, y),
                            format_duration((start(y) - start(x)).min(i64::MAX as u64) as i64),
                            a.text,
                            t.spans[x].span_id,
                            offset(t, x),
                            format_duration(*bound)
                        ),
                        None => format!(
                            "span {} (`{}`) at {} has no `{}` before it",
                            t.spans[y].span_id,
                            t.spans[y].name,
                            offset(t, y),
                            a.text
                        ),
                    }
                }
            }
        }
        Expr::Before(a, b, None) => {
            let earliest = |s: &Selector| {
                (0..t.spans.len())
                    .filter(|&i| matches(s, t, i))
                    .min_by_key(|&i| (t.spans[i].start_unix_nano, t.spans[i].span_id))
            };
            match (earliest(a), earliest(b)) {
                (Some(x), Some(y)) => format!(
                    "earliest `{}` {} starts at {}, earliest `{}` {} at {}",
                    a.text,
                    t.spans[x].span_id,
                    offset(t, x),
                    b.text,
                    t.spans[y].span_id,
                    offset(t, y)
                ),
                (None, _) => format!("no span matches `{}`", a.text),
                (_, None) => format!("no span matches `{}`", b.text),
            }
        }
        Expr::Within(a, b) | Expr::ChildOf(a, b) => {
            let direct = matches!(e, Expr::ChildOf(..));
            let parent_of = |i: usize| {
                let p = t.spans[i].parent_span_id?;
                t.spans.iter().position(|s| s.span_id == p)
            };
            let lacking = (0..t.spans.len()).filter(|&i| matches(a, t, i)).find(|&i| {
                if direct {
                    !parent_of(i).is_some_and(|p| matches(b, t, p))
                } else {
                    !has_ancestor(i, b, t)
                }
            });
            let n = (0..t.spans.len()).filter(|&i| matches(a, t, i)).count();
            match lacking {
                Some(i) => format!(
                    "span {} (`{}`) has no {} matching `{}`",
                    t.spans[i].span_id,
                    t.spans[i].name,
                    if direct { "parent" } else { "ancestor" },
                    b.text
                ),
                None => format!(
                    "{} matching `{}`, each under `{}`",
                    spans(n),
                    a.text,
                    b.text
                ),
            }
        }
        _ => String::new(),
    }
}

/// How many spans a selector matched and, when a filter rejected every span of the right
/// name, the first such span with the values its filter read.
fn selector_detail(s: &Selector, t: &Trace, x: Env) -> String {
    let matches = |s: &Selector, t: &Trace, i: usize| matches(s, t, i, x);
    let named: Vec<usize> = (0..t.spans.len())
        .filter(|&i| s.name.matches(&t.spans[i].name))
        .collect();
    let passing = named.iter().filter(|&&i| matches(s, t, i)).count();
    let Some(pred) = &s.pred else {
        return match passing {
            1 => "1 span matches".to_string(),
            n => format!("{n} spans match"),
        };
    };
    if passing > 0 || named.is_empty() {
        return format!(
            "{passing} of the {} with its name pass{} the filter",
            spans(named.len()),
            if passing == 1 { "es" } else { "" }
        );
    }
    let first = named[0];
    let mut read = Vec::new();
    attrs_of(pred, &mut read);
    read.dedup();
    let values: Vec<String> = read
        .iter()
        .map(|a| match attr(a, t, first) {
            Some(v) => format!("{a} = {v}"),
            None => format!("{a} absent"),
        })
        .collect();
    format!(
        "none of the {} with its name passes the filter; first: {} ({})",
        spans(named.len()),
        t.spans[first].span_id,
        values.join(", ")
    )
}

fn attrs_of(p: &Pred, out: &mut Vec<Attr>) {
    match p {
        Pred::Or(items) | Pred::And(items) => items.iter().for_each(|q| attrs_of(q, out)),
        Pred::Not(q) => attrs_of(q, out),
        Pred::Exists(a)
        | Pred::Truthy(a)
        | Pred::Cmp(a, ..)
        | Pred::In(a, _)
        | Pred::Matches(a, _)
        | Pred::Contains(a, _) => out.push(a.clone()),
        Pred::CmpAttr(a, _, b) => {
            out.push(a.clone());
            out.push(b.clone());
        }
        Pred::CmpBound(a, ..) | Pred::ContainsBound(a, _) => out.push(a.clone()),
    }
}

fn spans(n: usize) -> String {
    if n == 1 {
        "1 span".to_string()
    } else {
        format!("{n} spans")
    }
}

/// A span's start relative to the trace's earliest, as `+12ms`.
fn offset(t: &Trace, i: usize) -> String {
    let start = t.start_unix_nano();
    let d = t.spans[i].start_unix_nano.saturating_sub(start);
    format!(
        "+{}",
        humantime::format_duration(std::time::Duration::from_nanos(d))
    )
}
