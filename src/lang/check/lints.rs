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
