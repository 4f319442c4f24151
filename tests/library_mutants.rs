//! The playbook library's examples must guard its rules: for every rule, weaken the
//! condition one way at a time — drop an ordering (`A before B` → `A`, or → `B`), drop a
//! time bound, drop a `.where` filter, drop one conjunct of a filter (a result check, a
//! join on a bound value), negate a comparison; and in the per-occurrence forms drop `own`,
//! drop a relation filter, turn `after $x` into `before $x` (and back), drop `until`/`since`,
//! drop a filter's time bound — and some example of that rule must then fail. A mutant that
//! every example still passes is a rule whose examples do not say what it means.

use betrace::eval::reference;
use betrace::lang::check::check_text;
use betrace::lang::syntax::ast::{
    self, Condition, Expr, Numeric, Predicate, PredicateOp, Selector,
};
use betrace::lang::syntax::parse;
use betrace::rules::Expect;
use betrace::RuleSet;

/// One weakened condition and what was done.
struct Mutant {
    text: String,
    what: String,
}

fn replace(text: &str, at: &ast::Loc, with: &str) -> String {
    format!("{}{}{}", &text[..at.start], with, &text[at.end..])
}

/// Every mutant of a condition.
fn mutants(text: &str) -> Vec<Mutant> {
    let Ok(cond) = parse(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let exprs: Vec<&Expr> = match &cond {
        Condition::Invariant {
            when,
            always,
            never,
            ..
        } => std::iter::once(when)
            .chain(always.iter())
            .chain(never.iter())
            .collect(),
        Condition::Violation(e) => vec![e],
    };
    for e in exprs {
        walk_expr(text, e, &mut out);
    }
    out.retain(|m| m.text != text);
    out
}

fn walk_expr(text: &str, e: &Expr, out: &mut Vec<Mutant>) {
    match e {
        Expr::Or(items, _) | Expr::And(items, _) => {
            items.iter().for_each(|i| walk_expr(text, i, out))
        }
        Expr::Not(inner, _) => walk_expr(text, inner, out),
        Expr::Has(s) => walk_selector(text, s, out),
        Expr::Own(s, loc) => {
            out.push(Mutant {
                text: replace(text, loc, &text[s.loc.clone()]),
                what: "drop `own`".into(),
            });
            walk_selector(text, s, out);
        }
        Expr::BoundRel { sel, .. } => walk_selector(text, sel, out),
        Expr::Compare {
            lhs, op, rhs, loc, ..
        } => {
            for n in [lhs, rhs] {
                if let Numeric::Count(s) | Numeric::Distinct(s, _) | Numeric::Agg(_, s, _, _) = n {
                    walk_selector(text, s, out);
                }
            }
            // The operator sits between the two sides.
            let (l, r) = (numeric_loc(lhs), numeric_loc(rhs));
            if let (Some(l), Some(r)) = (l, r) {
                if l.end <= r.start && loc.start <= l.start {
                    let between = l.end..r.start;
                    out.push(Mutant {
                        text: replace(text, &between, &format!(" {} ", negated(op.as_str()))),
                        what: format!("negate `{op}`"),
                    });
                }
            }
        }
        Expr::Relation {
            lhs,
            op,
            rhs,
            bound,
            loc,
        } => {
            walk_selector(text, lhs, out);
            walk_selector(text, rhs, out);
            if matches!(op, ast::RelOp::Before | ast::RelOp::After) {
                let (a, b) = (&text[lhs.loc.clone()], &text[rhs.loc.clone()]);
                out.push(Mutant {
                    text: replace(text, loc, a),
                    what: format!("drop the ordering, keep `{a}`"),
                });
                out.push(Mutant {
                    text: replace(text, loc, b),
                    what: format!("drop the ordering, keep `{b}`"),
                });
                if bound.is_some() {
                    let plain = format!(
                        "{a} {} {b}",
                        if *op == ast::RelOp::Before {
                            "before"
                        } else {
                            "after"
                        }
                    );
                    out.push(Mutant {
                        text: replace(text, loc, &plain),
                        what: "drop the time bound".into(),
                    });
                }
            }
        }
    }
}

fn numeric_loc(n: &Numeric) -> Option<ast::Loc> {
    match n {
        Numeric::Int(_, l)
        | Numeric::Float(_, l)
        | Numeric::Duration(_, l)
        | Numeric::Agg(_, _, _, l) => Some(l.clone()),
        Numeric::Count(s) | Numeric::Distinct(s, _) => Some(s.loc.clone()),
        Numeric::Bound(b) => Some(b.loc.clone()),
    }
}

fn walk_selector(text: &str, s: &Selector, out: &mut Vec<Mutant>) {
    if let Some(f) = &s.filter {
        let written = &text[f.loc.clone()];
        out.push(Mutant {
            text: replace(
                text,
                &(s.name_loc.start..f.loc.end),
                text[s.name_loc.start..f.loc.start].trim_end(),
            ),
            what: format!("drop the relation `{written}`"),
        });
        let flipped = match f.op {
            ast::FilterOp::Before => Some("after"),
            ast::FilterOp::After => Some("before"),
            _ => None,
        };
        if let Some(to) = flipped {
            // The scope turns with the relation (`since` ↔ `until`).
            let mut turned = written.replacen(f.op.as_str(), to, 1);
            if let Some(l) = &f.limit {
                let (from, into) = if l.until {
                    ("until", "since")
                } else {
                    ("since", "until")
                };
                turned = turned.replacen(from, into, 1);
            }
            out.push(Mutant {
                text: replace(text, &f.loc, &turned),
                what: format!("turn `{}` into `{to}`", f.op.as_str()),
            });
        }
        if let Some(l) = &f.limit {
            let scope = l.kw_loc.start..l.sel.loc.end;
            out.push(Mutant {
                text: replace(text, &scope, ""),
                what: format!("drop `{}`", &text[scope.clone()]),
            });
            walk_selector(text, &l.sel, out);
        }
        if let Some(ast::Bound::Duration(_, at)) = &f.window {
            // From `within` to the end of the duration.
            if let Some(kw) = text[f.loc.start..at.start].rfind("within") {
                let span = f.loc.start + kw..at.end;
                out.push(Mutant {
                    text: replace(text, &span, ""),
                    what: format!("drop `{}`", &text[span.clone()]),
                });
            }
        }
    }
    for w in &s.wheres {
        let p = w.loc();
        // The filter's text: from `.where(` before the predicate to its `)`.
        let Some(open) = text[..p.start].rfind(".where") else {
            continue;
        };
        let Some(close) = text[p.end..].find(')').map(|i| p.end + i + 1) else {
            continue;
        };
        out.push(Mutant {
            text: replace(text, &(open..close), ""),
            what: format!("drop `{}`", &text[open..close]),
        });
        walk_predicate(text, w, out);
    }
}

fn walk_predicate(text: &str, p: &Predicate, out: &mut Vec<Mutant>) {
    match p {
        Predicate::And(items, _) => {
            for (i, item) in items.iter().enumerate() {
                let rest: Vec<&str> = items
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, q)| &text[q.loc()])
                    .collect();
                let loc = p.loc();
                out.push(Mutant {
                    text: replace(text, &loc, &format!("({})", rest.join(" and "))),
                    what: format!("drop the check `{}`", &text[item.loc()]),
                });
                walk_predicate(text, item, out);
            }
        }
        Predicate::Or(items, _) => items.iter().for_each(|i| walk_predicate(text, i, out)),
        Predicate::Not(inner, _) => walk_predicate(text, inner, out),
        Predicate::Compare {
            op, op_loc, loc, ..
        } => {
            let negation = match op {
                PredicateOp::Cmp(c) => Some(negated(c.as_str())),
                PredicateOp::In | PredicateOp::Matches | PredicateOp::Contains => None,
            };
            out.push(match negation {
                Some(n) => Mutant {
                    text: replace(text, op_loc, n),
                    what: format!("negate `{}`", &text[loc.clone()]),
                },
                None => Mutant {
                    text: replace(text, loc, &format!("not ({})", &text[loc.clone()])),
                    what: format!("negate `{}`", &text[loc.clone()]),
                },
            });
        }
        Predicate::Exists(_, loc) => out.push(Mutant {
            text: replace(text, loc, &format!("not {}", &text[loc.clone()])),
            what: format!("negate `{}`", &text[loc.clone()]),
        }),
        Predicate::Truthy(a) => out.push(Mutant {
            text: replace(text, &a.loc, &format!("not {}", &text[a.loc.clone()])),
            what: format!("negate `{}`", &text[a.loc.clone()]),
        }),
    }
}

fn negated(op: &str) -> &'static str {
    match op {
        "==" => "!=",
        "!=" => "==",
        ">" => "<=",
        ">=" => "<",
        "<" => ">=",
        _ => ">",
    }
}

/// Mutants no example can tell apart, with why: (rule, mutation).
const EQUIVALENT: &[(&str, &str, &str)] = &[
    (
        "retention-expired-records-deleted",
        "drop `.where(expired_records > 0)`",
        "a sweep that found nothing needs no deletion either way; the filter scopes which traces count as applied",
    ),
    (
        "high-value-actions-require-mfa",
        "drop `.where(amount > 10000)`",
        "`always` asks MFA only before a large transfer; the filter in `when` scopes which traces count as applied",
    ),
    (
        "high-value-actions-require-mfa",
        "drop `.where(field in [email, password, phone])`",
        "`always` asks MFA only before a credential change; the filter in `when` scopes which traces count as applied",
    ),
    (
        "tenant-queries-filter-by-tenant",
        "drop `.where(table contains \"tenant_data\")`",
        "`never` repeats the filter; the one in `when` scopes which traces count as applied",
    ),
    (
        "llm-failure-falls-back",
        "drop `.where(span:status != error)`",
        "the last failed call needs a fallback or a call that did not fail after it, and that answer comes after every earlier failure too: a later failed call never answers a failure that the last one's answer does not; only the trigger spans differ",
    ),
    (
        "sensitive-data-over-tls",
        "drop `.where(sensitive == true)`",
        "`never` repeats the filter; the one in `when` scopes which traces count as applied",
    ),
];

#[test]
fn every_mutant_of_the_library_fails_an_example() {
    let (rules, _) = RuleSet::from_paths(&["examples/rules"]).expect("the library loads");
    let (mut killed, mut survivors, mut invalid, mut equivalents) = (0, Vec::new(), 0, 0);
    for rule in rules.rules() {
        let def = &rule.def;
        for m in mutants(&def.condition) {
            let Ok(checked) = check_text(&m.text) else {
                invalid += 1;
                continue;
            };
            let caught = def.examples.iter().any(|ex| {
                let v = reference::evaluate(&checked.form, &ex.trace);
                let complete = rules.project(&ex.trace).is_complete();
                let skipped = def.skips(|| complete);
                let fired = v.fired && !skipped;
                fired != (ex.expect == Expect::Violation)
            });
            let equivalent = EQUIVALENT
                .iter()
                .any(|(id, what, _)| *id == def.id && m.what == *what);
            if caught {
                killed += 1;
            } else if equivalent {
                equivalents += 1;
            } else {
                survivors.push(format!("{}: {} — {}", def.id, m.what, m.text.trim()));
            }
        }
    }
    eprintln!(
        "library mutants: {killed} killed, {} survived, {equivalents} equivalent (listed), {invalid} did not load",
        survivors.len()
    );
    assert_eq!(
        equivalents,
        EQUIVALENT.len(),
        "each listed equivalent mutant still exists"
    );
    assert!(killed > 150, "the mutants are generated ({killed})");
    assert!(
        survivors.is_empty(),
        "{} mutants pass every example of their rule:\n{}",
        survivors.len(),
        survivors.join("\n")
    );
}
