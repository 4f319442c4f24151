//! Warnings about rules that load but probably do not say what their author meant.

use crate::diagnostic::{Code, Diagnostic};
use crate::lang::syntax::ast;

/// The warning of docs/language.md, "Conditions: the two forms": a violation-form condition that is a plain conjunction of
/// positive `has` checks fires on every trace that has them all.
pub(super) fn conjunction_of_has(e: &ast::Expr, text: &str) -> Option<Diagnostic> {
    let ast::Expr::And(items, loc) = e else {
        return None;
    };
    if !items.iter().all(|i| matches!(i, ast::Expr::Has(_))) {
        return None;
    }
    let first = &text[items[0].loc()];
    let rest: Vec<&str> = items[1..].iter().map(|i| &text[i.loc()]).collect();
    Some(
        Diagnostic::warning(Code::FiresOnPresence,
            loc.clone(),
            "this condition fires on every trace that has all of these spans",
            "a conjunction of `has` checks",
        )
        .with_help(format!(
            "a violation-form rule fires when its condition is true; to say \"if the first happens, the rest must too\", write\n    when {{ {first} }} always {{ {} }}",
            rest.join(" and ")
        )),
    )
}

/// The `after` trap (docs/language.md, "The `after` trap"): a rule that binds no span and
/// whose `always` holds `X after W` or `W before X`, `W` a selector of its `when`, compares
/// only the earliest `W` with the earliest `X`.
pub(super) fn after_trap(when: &ast::Expr, always: &ast::Expr, text: &str) -> Option<Diagnostic> {
    let mut whens = Vec::new();
    top_selectors(when, &mut whens);
    let mut terms = Vec::new();
    top_terms(always, &mut terms);
    terms.into_iter().find_map(|t| {
        // A time bound (`X after W within D`) is checked for every `X`: no trap.
        let ast::Expr::Relation {
            lhs,
            op,
            rhs,
            loc,
            bound: None,
        } = t
        else {
            return None;
        };
        let (x, w) = match op {
            ast::RelOp::After => (lhs, rhs),
            ast::RelOp::Before => (rhs, lhs),
            _ => return None,
        };
        let w_text = &text[w.loc.clone()];
        if !whens.iter().any(|s| same_selector(&text[s.loc.clone()], w_text)) {
            return None;
        }
        let x_text = &text[x.loc.clone()];
        Some(
            Diagnostic::warning(
                Code::AfterTrap,
                loc.clone(),
                format!("this checks only the earliest `{w_text}`, not each one"),
                "a trace-level order",
            )
            .with_help(format!(
                "a second `{w_text}` with nothing after it passes, and a `{x_text}` before the first breaks it; to say \"each `{w_text}` is followed by a `{x_text}`\", write\n    when {{ {w_text} as $w }} always {{ {x_text} after $w }}"
            )),
        )
    })
}

/// Whether two selectors are written alike, up to spacing and a `trace.has(…)` around.
fn same_selector(a: &str, b: &str) -> bool {
    let bare = |s: &str| -> String {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        match s.strip_prefix("trace.has(") {
            // `trace.has(S)` and `trace.has(S).where(p)`: S with its filters.
            Some(rest) => match rest.find(')') {
                Some(i) if rest[..i].matches('(').count() == 0 => {
                    format!("{}{}", &rest[..i], &rest[i + 1..])
                }
                _ => s.clone(),
            },
            None => s,
        }
    };
    bare(a) == bare(b)
}

/// The selectors standing as terms at the top level of `e` (joined by `and`).
fn top_selectors<'a>(e: &'a ast::Expr, out: &mut Vec<&'a ast::Selector>) {
    match e {
        ast::Expr::And(items, _) => items.iter().for_each(|i| top_selectors(i, out)),
        ast::Expr::Has(s) => out.push(s),
        _ => {}
    }
}

/// The terms at the top level of `e` (joined by `and`).
fn top_terms<'a>(e: &'a ast::Expr, out: &mut Vec<&'a ast::Expr>) {
    match e {
        ast::Expr::And(items, _) => items.iter().for_each(|i| top_terms(i, out)),
        other => out.push(other),
    }
}
