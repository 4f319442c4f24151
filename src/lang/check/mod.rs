//! The checking pass: from the syntax tree to a [`hir::Form`], or every problem found.
//!
//! It resolves intrinsics, refuses reserved words used as names, checks the types the
//! compiler can see (a duration against a string, `matches` with a non-string, an invalid
//! regex, …), compiles each regex and name pattern once (`patterns`), and warns about the
//! `has(A) and has(B)` idiom (`lints`).

mod lints;
mod patterns;

use lints::{after_trap, conjunction_of_has};
use patterns::{bare_pattern, compile_regex, quoted_pattern};

use crate::diagnostic::{Code, Diagnostic};
use crate::lang::hir::{self, Attr, Form, Intrinsic, IntrinsicType, Num, Pred, RelKind};
use crate::lang::span::{SpanKind, StatusCode};
use crate::lang::syntax::ast::{
    self, AttrKind, FilterOp, Literal, Loc, NamePattern, Operand, Predicate, PredicateOp, RelOp,
};
use crate::lang::value::{CmpOp, Number, Value};

/// The reserved words of docs/language.md, "Comparison rules".
pub const RESERVED: [&str; 29] = [
    "and", "or", "not", "in", "matches", "contains", "exists", "when", "always", "never", "count",
    "distinct", "before", "after", "within", "child_of", "true", "false", "trace", "unique", "sum",
    "min", "max", "avg", "as", "own", "since", "until", "around",
];

/// The checked condition and its warnings.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The condition, ready for the compiler and the reference evaluator.
    pub form: Form,
    /// Warnings (`level == Warning`) to show the author.
    pub warnings: Vec<Diagnostic>,
}

/// Parses and checks a condition; on failure, every problem found (at least one).
pub fn check_text(text: &str) -> Result<Checked, Vec<Diagnostic>> {
    let ast = crate::lang::syntax::parse(text).map_err(|e| vec![e])?;
    check(&ast, text)
}

/// Checks a parsed condition against the text it was parsed from.
pub fn check(cond: &ast::Condition, text: &str) -> Result<Checked, Vec<Diagnostic>> {
    let mut cx = Checker {
        text,
        errors: Vec::new(),
        clause: Clause::Violation,
        top: true,
        bind: None,
        bound: None,
        in_binding: false,
        in_own: false,
        pred_top: true,
    };
    let form = match cond {
        ast::Condition::Invariant {
            when,
            always,
            never,
            loc,
        } => {
            cx.bind = find_binding(when).map(|s| {
                let var = s.binding.as_ref().expect("found by its binding");
                (var.name.clone(), s.loc.clone())
            });
            if always.is_none() && never.is_none() {
                cx.errors.push(
                    Diagnostic::error(
                        Code::WhenWithoutBlock,
                        loc.clone(),
                        "`when` needs an `always { … }` or a `never { … }` block",
                        "this rule says what it applies to, but not what must hold",
                    )
                    .with_help(
                        "add `always { B }` (B must happen) or `never { C }` (C must not happen)",
                    ),
                );
            }
            let when = cx.clause(Clause::When, when);
            let always = always.as_ref().map(|e| cx.clause(Clause::Always, e));
            let never = never.as_ref().map(|e| cx.clause(Clause::Never, e));
            let bind = match (&cx.bind, cx.bound.take()) {
                (Some((name, _)), Some(selector)) => Some(hir::Binding {
                    name: name.clone(),
                    selector,
                }),
                _ => None,
            };
            Form::Invariant {
                bind,
                when,
                always,
                never,
            }
        }
        ast::Condition::Violation(e) => Form::Violation(cx.clause(Clause::Violation, e)),
    };
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    let mut warnings = Vec::new();
    match cond {
        ast::Condition::Violation(e) => warnings.extend(conjunction_of_has(e, text)),
        ast::Condition::Invariant {
            when,
            always: Some(always),
            ..
        } if cx.bind.is_none() => warnings.extend(after_trap(when, always, text)),
        _ => {}
    }
    Ok(Checked { form, warnings })
}

/// The selector that binds a span: the first `S as $x` among the top-level terms of `when`
/// (those joined by `and`, through parentheses).
fn find_binding(when: &ast::Expr) -> Option<&ast::Selector> {
    match when {
        ast::Expr::And(items, _) => items.iter().find_map(find_binding),
        ast::Expr::Has(s) if s.binding.is_some() => Some(s),
        _ => None,
    }
}

/// The block a term stands in, for the placement rules of bindings and `own`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clause {
    When,
    Always,
    Never,
    Violation,
}

struct Checker<'t> {
    text: &'t str,
    errors: Vec<Diagnostic>,
    /// The block being checked.
    clause: Clause,
    /// Whether the term being checked stands at the top level of its block: joined to the
    /// rest by `and` only, not under `not` or `or`.
    top: bool,
    /// The bound span's name and its binding selector's range, if the rule binds one.
    bind: Option<(String, Loc)>,
    /// The binding selector, checked.
    bound: Option<hir::Selector>,
    /// Checking the binding selector itself (which may not read `$x`).
    in_binding: bool,
    /// Checking the selector of an `own` term (whose joins must be `==`).
    in_own: bool,
    /// The predicate being checked is a top-level conjunct of its selector's filters.
    pred_top: bool,
}

impl Checker<'_> {
    fn clause(&mut self, clause: Clause, e: &ast::Expr) -> hir::Expr {
        self.clause = clause;
        self.top = true;
        self.expr(e)
    }

    /// Checks `e` as not standing at the top level (under `not`/`or`).
    fn nested(&mut self, e: &ast::Expr) -> hir::Expr {
        let top = std::mem::replace(&mut self.top, false);
        let out = self.expr(e);
        self.top = top;
        out
    }

    fn expr(&mut self, e: &ast::Expr) -> hir::Expr {
        match e {
            ast::Expr::Or(items, _) => {
                hir::Expr::Or(items.iter().map(|i| self.nested(i)).collect())
            }
            ast::Expr::And(items, _) => {
                hir::Expr::And(items.iter().map(|i| self.expr(i)).collect())
            }
            ast::Expr::Not(inner, _) => hir::Expr::Not(Box::new(self.nested(inner))),
            ast::Expr::Has(s) => {
                let is_binding = self.is_the_binding(s);
                if is_binding {
                    self.in_binding = true;
                }
                let sel = self.selector(s, Site::Term);
                if is_binding {
                    self.in_binding = false;
                    self.bound = Some(sel.clone());
                }
                hir::Expr::Has(sel)
            }
            ast::Expr::Own(s, loc) => {
                let filter_ok = s
                    .filter
                    .as_ref()
                    .is_some_and(|f| matches!(f.op, FilterOp::Before | FilterOp::After));
                if self.clause != Clause::Always || !self.top {
                    self.errors.push(
                        Diagnostic::error(
                            Code::OwnPlacement,
                            loc.clone(),
                            "`own` stands only at the top level of `always`",
                            "not under `not` or `or`, not in `when` or `never`",
                        )
                        .with_help("`when { A as $a } always { own B after $a }` gives every `A` a `B` of its own"),
                    );
                } else if !filter_ok {
                    self.errors.push(
                        Diagnostic::error(
                            Code::OwnPlacement,
                            s.loc.clone(),
                            "`own` needs a `before $x` or `after $x` filter",
                            "no partner relation",
                        )
                        .with_help("write `own B after $a` or `own B before $a`"),
                    );
                }
                self.in_own = true;
                let sel = self.selector(s, Site::Term);
                self.in_own = false;
                hir::Expr::Own(sel)
            }
            ast::Expr::BoundRel { var, op, sel, .. } => {
                self.var(var);
                let s = self.selector(sel, Site::Plain);
                match op {
                    RelOp::Within => hir::Expr::BoundWithin(s),
                    _ => hir::Expr::BoundChildOf(s),
                }
            }
            ast::Expr::Compare {
                lhs, op, rhs, loc, ..
            } => {
                let op = *op;
                let (a, a_is_duration) = self.numeric(lhs);
                let (b, b_is_duration) = self.numeric(rhs);
                if a_is_duration != b_is_duration {
                    let (duration, number) = if a_is_duration {
                        (lhs, rhs)
                    } else {
                        (rhs, lhs)
                    };
                    self.errors.push(
                        Diagnostic::error(Code::DurationVsNumber,
                            numeric_loc(number).unwrap_or_else(|| loc.clone()),
                            "a duration compared with a plain number",
                            format!("a number, against the duration {}", describe(duration)),
                        )
                        .with_help("durations compare only with durations: write `30s` or `250ms`, or aggregate `span:duration`"),
                    );
                }
                hir::Expr::Compare(a, op, b)
            }
            ast::Expr::Relation {
                lhs,
                op,
                rhs,
                bound,
                ..
            } => {
                let (a, b) = (
                    self.selector(lhs, Site::Side),
                    self.selector(rhs, Site::Side),
                );
                let bound = self.bound(*op, bound.as_ref());
                match op {
                    RelOp::Before => hir::Expr::Before(a, b, bound),
                    RelOp::After => hir::Expr::Before(b, a, bound),
                    RelOp::Within => hir::Expr::Within(a, b),
                    RelOp::ChildOf => hir::Expr::ChildOf(a, b),
                }
            }
        }
    }

    /// The time bound of `A before B within D`, in nanoseconds.
    fn bound(&mut self, op: RelOp, bound: Option<&ast::Bound>) -> Option<i64> {
        let bound = bound?;
        let (value, at) = match bound {
            ast::Bound::Duration(d, l) => (Some(*d), l),
            ast::Bound::Other(l) => (None, l),
        };
        if matches!(op, RelOp::Within | RelOp::ChildOf) {
            self.errors.push(
                Diagnostic::error(Code::BoundPlacement, at.clone(), "a time bound follows only `before` or `after`", "a second `within`")
                    .with_help("`A before B within 200ms` bounds how far apart they start; `A within B` is structure"),
            );
            return None;
        }
        match value {
            Some(d) if d > 0 => Some(d),
            Some(0) => {
                self.errors.push(Diagnostic::error(
                    Code::ZeroBound,
                    at.clone(),
                    "a time bound of zero can never hold",
                    "zero",
                ).with_help("`A before B within D` needs B to start after A, by at most D: give D a length"));
                None
            }
            Some(_) => {
                self.errors.push(Diagnostic::error(
                    Code::NegativeBound,
                    at.clone(),
                    "a time bound cannot be negative",
                    "negative",
                ));
                None
            }
            None => {
                self.errors.push(
                    Diagnostic::error(Code::BoundNotDuration, at.clone(), "`within` after `before`/`after` takes a duration", "not a duration")
                        .with_help("write the bound as a duration: `A before B within 200ms` (ns us ms s m h d)"),
                );
                None
            }
        }
    }

    /// Whether `s` is the rule's binding selector.
    fn is_the_binding(&self, s: &ast::Selector) -> bool {
        s.binding.is_some() && self.bind.as_ref().is_some_and(|(_, at)| *at == s.loc)
    }

    /// A use of `$name`: it must be the rule's bound span, outside its own binding selector.
    fn var(&mut self, v: &ast::Var) {
        match &self.bind {
            Some((name, _)) if *name == v.name => {
                if self.in_binding {
                    self.errors.push(
                        Diagnostic::error(
                            Code::BoundInOwnBinding,
                            v.loc.clone(),
                            format!("`${}` is used in the selector that binds it", v.name),
                            "the span being bound",
                        )
                        .with_help("say it in another `when` term, or in `always`/`never`"),
                    );
                }
            }
            bound => {
                let help = match bound {
                    Some((name, _)) => format!("the rule binds `${name}`"),
                    None => format!(
                        "bind a span in `when`: `when {{ S as ${} }} always {{ … }}`",
                        v.name
                    ),
                };
                self.errors.push(
                    Diagnostic::error(
                        Code::UnboundName,
                        v.loc.clone(),
                        format!("`${}` is not bound", v.name),
                        "no `as` binds it",
                    )
                    .with_help(help),
                );
            }
        }
    }

    /// A bound value `$a.key`: the key it reads.
    fn bound_value(&mut self, b: &ast::BoundValue) -> Attr {
        self.var(&b.var);
        self.attr(&b.attr)
    }

    /// A numeric term, and whether it is a duration.
    fn numeric(&mut self, n: &ast::Numeric) -> (Num, bool) {
        match n {
            ast::Numeric::Bound(b) => {
                let attr = self.bound_value(b);
                let is_duration = match &attr {
                    Attr::Intrinsic(i) => match i.ty() {
                        IntrinsicType::Duration => true,
                        _ => {
                            self.errors.push(Diagnostic::error(
                                Code::NeverNumeric,
                                b.attr.loc.clone(),
                                format!("`{}` is never a number", i.name()),
                                "not numeric",
                            ));
                            false
                        }
                    },
                    _ => false,
                };
                (Num::Bound(attr), is_duration)
            }
            ast::Numeric::Int(i, _) => (Num::Const(Number::Int(*i)), false),
            ast::Numeric::Float(f, _) => (Num::Const(Number::Float(*f)), false),
            ast::Numeric::Duration(d, _) => (Num::Duration(*d), true),
            ast::Numeric::Distinct(s, key) => {
                let sel = self.selector(s, Site::Numeric);
                match self.agg_key("distinct", key) {
                    Some(key) => (Num::Distinct(sel, key), false),
                    None => (Num::Const(Number::Int(0)), false),
                }
            }
            ast::Numeric::Agg(f, s, key, _) => {
                let sel = self.selector(s, Site::Numeric);
                let Some(attr) = self.agg_key(f.as_str(), key) else {
                    return (Num::Const(Number::Int(0)), false);
                };
                let is_duration = match &attr {
                    Attr::Intrinsic(i) => match i.ty() {
                        IntrinsicType::Duration => true,
                        _ => {
                            let at = match key {
                                ast::AggKey::Attr(a) => a.loc.clone(),
                                ast::AggKey::List(l) => l.clone(),
                            };
                            self.errors.push(
                                Diagnostic::error(Code::NeverNumeric, at, format!("`{}` is never a number", i.name()), "not numeric")
                                    .with_help("aggregate a numeric attribute (`amount`, `span.tokens`) or `span:duration` / `trace:duration`"),
                            );
                            false
                        }
                    },
                    _ => false,
                };
                (Num::Agg(*f, sel, attr), is_duration)
            }
            ast::Numeric::Count(s) => {
                // `trace.count(S).where(k == unique)` is `distinct(S, k)`.
                let mut keys = Vec::new();
                let mut rest = s.clone();
                rest.wheres.retain(|w| match w {
                    Predicate::Compare {
                        lhs,
                        op,
                        rhs: Operand::Unique(_),
                        loc,
                        ..
                    } if *op == PredicateOp::Cmp(CmpOp::Eq) => {
                        keys.push((lhs.clone(), loc.clone()));
                        false
                    }
                    _ => true,
                });
                if keys.len() > 1 {
                    self.errors.push(Diagnostic::error(
                        Code::TwoUnique,
                        keys[1].1.clone(),
                        "only one `== unique` per count",
                        "second `== unique`",
                    ));
                }
                let sel = self.selector(&rest, Site::Numeric);
                match keys.into_iter().next() {
                    Some((key, _)) => (Num::Distinct(sel, self.attr(&key)), false),
                    None => (Num::Count(sel), false),
                }
            }
        }
    }

    /// The key of `distinct` or an aggregate: one attribute, not a list.
    fn agg_key(&mut self, what: &str, key: &ast::AggKey) -> Option<Attr> {
        match key {
            ast::AggKey::Attr(a) => Some(self.attr(a)),
            ast::AggKey::List(l) => {
                self.errors.push(
                    Diagnostic::error(
                        Code::AggregateList,
                        l.clone(),
                        format!("`{what}` takes one attribute, not a list"),
                        "a list",
                    )
                    .with_help(format!("write one key: `{what}(S, amount)`")),
                );
                None
            }
        }
    }

    fn selector(&mut self, s: &ast::Selector, site: Site) -> hir::Selector {
        // The rule's own binding is found before checking (`find_binding`); any other is
        // a second binding, or one where none may stand.
        if let Some(var) = s.binding.as_ref().filter(|_| !self.is_the_binding(s)) {
            if site == Site::Term && self.clause == Clause::When && self.top {
                self.errors.push(
                    Diagnostic::error(
                        Code::TwoBindings,
                        var.loc.clone(),
                        "a rule binds at most one span",
                        "a second binding",
                    )
                    .with_help(
                        "speak of other spans through the bound one: `B.where(k == $a.k) after $a`",
                    ),
                );
            } else {
                self.errors.push(
                    Diagnostic::error(
                        Code::BindingPlacement,
                        var.loc.clone(),
                        "`as` binds a span only at the top level of `when`",
                        "not here",
                    )
                    .with_help("write `when { S as $x } always { … }`: not under `not` or `or`, not inside `count(…)`, an aggregate, `always` or `never`"),
                );
            }
        }
        let rel = s.filter.as_ref().map(|f| self.filter(f, site));
        let name = match &s.name {
            NamePattern::Bare(n) => {
                let first = n.split('.').next().unwrap_or(n);
                if RESERVED.contains(&first) {
                    self.errors.push(
                        Diagnostic::error(
                            Code::ReservedSpanName,
                            s.name_loc.clone(),
                            format!("`{first}` is a reserved word"),
                            "reserved word used as a span name",
                        )
                        .with_help(format!("quote the span name: \"{n}\"")),
                    );
                }
                bare_pattern(n)
            }
            NamePattern::Quoted(raw) => quoted_pattern(raw),
        };
        let mut preds: Vec<Pred> = s
            .wheres
            .iter()
            .map(|w| {
                self.pred_top = true;
                self.pred(w)
            })
            .collect();
        let pred = match preds.len() {
            0 => None,
            1 => preds.pop(),
            _ => Some(Pred::And(preds)),
        };
        hir::Selector {
            name,
            pred,
            text: self.text[s.loc.clone()].to_string(),
            rel,
        }
    }

    /// A relation filter (`after $x within 5s until T`), checked for where it stands.
    fn filter(&mut self, f: &ast::RelFilter, site: Site) -> Box<hir::Relation> {
        self.var(&f.var);
        match site {
            Site::Side => self.errors.push(
                Diagnostic::error(
                    Code::FilterAsSide,
                    f.loc.clone(),
                    "a relation filter cannot be a side of `before`, `after`, `within` or `child_of`",
                    "a set of spans per binding",
                )
                .with_help("relate each side to the bound span (`A after $x and B after $x`), or count: `count(A after $x) >= 1`"),
            ),
            Site::Plain => self.errors.push(
                Diagnostic::error(
                    Code::FilterPlacement,
                    f.loc.clone(),
                    "a relation filter cannot stand here",
                    "a plain selector is expected",
                )
                .with_help("a relation filter stands alone as a term, or in `count`, `distinct` and the aggregates"),
            ),
            Site::Term | Site::Numeric => {}
        }
        let kind = match f.op {
            FilterOp::Before => RelKind::Before,
            FilterOp::After => RelKind::After,
            FilterOp::Within => RelKind::Within,
            FilterOp::ChildOf => RelKind::ChildOf,
            FilterOp::Around => RelKind::Around,
        };
        let timed = matches!(kind, RelKind::Before | RelKind::After);
        let window = match &f.window {
            Some(b) if !timed => {
                let at = match b {
                    ast::Bound::Duration(_, l) | ast::Bound::Other(l) => l.clone(),
                };
                self.errors.push(
                    Diagnostic::error(
                        Code::ScopeMismatch,
                        at,
                        format!("`{}` takes no time bound", f.op.as_str()),
                        "a time bound",
                    )
                    .with_help("`within D` bounds `before $x` and `after $x` only"),
                );
                None
            }
            Some(b) => self.bound(RelOp::Before, Some(b)),
            None => None,
        };
        let limit = f.limit.as_ref().map(|l| {
            let fits = match kind {
                RelKind::Before => !l.until,
                RelKind::After => l.until,
                _ => false,
            };
            if !fits {
                let (word, wants) = if l.until {
                    ("until", "`until T` goes with `after $x`")
                } else {
                    ("since", "`since T` goes with `before $x`")
                };
                self.errors.push(
                    Diagnostic::error(
                        Code::ScopeMismatch,
                        l.kw_loc.clone(),
                        format!("`{word}` cannot follow `{} $x`", f.op.as_str()),
                        "wrong scope",
                    )
                    .with_help(wants),
                );
            }
            let in_own = std::mem::replace(&mut self.in_own, false);
            let sel = self.selector(&l.sel, Site::Plain);
            self.in_own = in_own;
            sel
        });
        Box::new(hir::Relation {
            kind,
            window,
            limit,
        })
    }

    /// A predicate nested under `or`/`not`: not a top-level conjunct of its filters.
    fn nested_pred(&mut self, p: &Predicate) -> Pred {
        let top = std::mem::replace(&mut self.pred_top, false);
        let out = self.pred(p);
        self.pred_top = top;
        out
    }

    fn pred(&mut self, p: &Predicate) -> Pred {
        match p {
            Predicate::Or(items, _) => {
                Pred::Or(items.iter().map(|i| self.nested_pred(i)).collect())
            }
            Predicate::And(items, _) => Pred::And(items.iter().map(|i| self.pred(i)).collect()),
            Predicate::Not(inner, _) => Pred::Not(Box::new(self.nested_pred(inner))),
            Predicate::Exists(a, _) => Pred::Exists(self.attr(a)),
            Predicate::Truthy(a) => {
                let attr = self.attr(a);
                if let Attr::Intrinsic(i) = attr {
                    self.errors.push(Diagnostic::error(
                        Code::NotBoolean,
                        a.loc.clone(),
                        format!("`{}` is not a boolean", i.name()),
                        "compare it with a value",
                    ));
                }
                Pred::Truthy(attr)
            }
            Predicate::Compare {
                lhs,
                op,
                rhs,
                op_loc,
                ..
            } => self.compare(lhs, *op, rhs, op_loc),
        }
    }

    fn compare(
        &mut self,
        lhs: &ast::AttrRef,
        op: PredicateOp,
        rhs: &Operand,
        op_loc: &Loc,
    ) -> Pred {
        let attr = self.attr(lhs);
        let ty = match &attr {
            Attr::Intrinsic(i) => Some(i.ty()),
            _ => None,
        };
        match (op, rhs) {
            (_, Operand::Bound(b)) => {
                let other = self.bound_value(b);
                if self.in_own && (op != PredicateOp::Cmp(CmpOp::Eq) || !self.pred_top) {
                    self.errors.push(
                        Diagnostic::error(
                            Code::OwnJoinNotEq,
                            op_loc.clone(),
                            "inside `own`, a bound value is only joined with `==`",
                            "not a join",
                        )
                        .with_help("write the join as a top-level `k == $x.k` of the filter (not under `or` or `not`)"),
                    );
                }
                self.same_type(&attr, &other, &b.loc);
                match op {
                    PredicateOp::Cmp(cmp) => {
                        self.order_allowed(&attr, ty, cmp, op_loc, "use == or !=");
                        Pred::CmpBound(attr, cmp, other)
                    }
                    PredicateOp::Contains => Pred::ContainsBound(attr, other),
                    PredicateOp::In => {
                        self.errors.push(
                            Diagnostic::error(
                                Code::InWithoutList,
                                b.loc.clone(),
                                "`in` takes a list",
                                "not a list",
                            )
                            .with_help("compare with the bound value directly: `k == $a.k`"),
                        );
                        Pred::Exists(attr)
                    }
                    PredicateOp::Matches => {
                        self.errors.push(
                            Diagnostic::error(
                                Code::BoundValueMisuse,
                                b.loc.clone(),
                                "`matches` takes a regex in double quotes, not a bound value",
                                "not a regex",
                            )
                            .with_help("compare with it (`k == $a.k`) or test a substring (`k contains $a.k`)"),
                        );
                        Pred::Exists(attr)
                    }
                }
            }
            (_, Operand::Unique(l)) => {
                self.errors.push(
                    Diagnostic::error(
                        Code::UniqueOutsideCount,
                        l.clone(),
                        "`unique` only counts distinct values",
                        "not inside trace.count(...)",
                    )
                    .with_help("write `trace.count(S).where(key == unique)` or `distinct(S, key)`"),
                );
                Pred::Exists(attr)
            }
            (PredicateOp::In, Operand::List(items, _)) => {
                let values = items
                    .iter()
                    .map(|(lit, l)| self.literal_for(&attr, ty, CmpOp::Eq, lit, l))
                    .collect();
                Pred::In(attr, values)
            }
            (PredicateOp::In, other) => {
                self.errors.push(
                    Diagnostic::error(
                        Code::InWithoutList,
                        operand_loc(other),
                        "`in` takes a list",
                        "not a list",
                    )
                    .with_help("write `k in [a, b, c]`"),
                );
                Pred::Exists(attr)
            }
            (_, Operand::List(_, l)) => {
                self.errors.push(
                    Diagnostic::error(
                        Code::ListNotAllowed,
                        l.clone(),
                        format!("`{op}` does not take a list"),
                        "a list here",
                    )
                    .with_help("use `in` to compare with a list"),
                );
                Pred::Exists(attr)
            }
            (PredicateOp::Matches, Operand::Literal(Literal::Str(re), l)) => {
                if ty.is_some_and(|t| t != IntrinsicType::String) {
                    self.errors.push(Diagnostic::error(
                        Code::MatchesNotString,
                        lhs.loc.clone(),
                        format!("`matches` needs a string, and `{attr}` is not one"),
                        "not a string",
                    ));
                }
                match compile_regex(re) {
                    Ok(r) => Pred::Matches(attr, r),
                    Err(msg) => {
                        self.errors.push(Diagnostic::error(
                            Code::InvalidRegex,
                            l.clone(),
                            "invalid regex",
                            msg,
                        ));
                        Pred::Exists(attr)
                    }
                }
            }
            (PredicateOp::Matches, other) => {
                self.errors.push(
                    Diagnostic::error(
                        Code::MatchesNeedsRegex,
                        operand_loc(other),
                        "`matches` takes a regex in double quotes",
                        "not a string",
                    )
                    .with_help("write `k matches \"/api/v1/.*\"`"),
                );
                Pred::Exists(attr)
            }
            (PredicateOp::Contains, Operand::Literal(lit, l)) => {
                if ty == Some(IntrinsicType::Duration) {
                    self.errors.push(Diagnostic::error(
                        Code::ContainsOnDuration,
                        lhs.loc.clone(),
                        format!("`{attr}` is a duration; `contains` needs a string or an array"),
                        "a duration",
                    ));
                }
                let v = literal_value(lit);
                if let Value::Duration(_) = v {
                    self.errors.push(Diagnostic::error(
                        Code::ContainsDuration,
                        l.clone(),
                        "`contains` does not take a duration",
                        "a duration",
                    ));
                }
                Pred::Contains(attr, v)
            }
            (PredicateOp::Contains, other) => {
                self.errors.push(Diagnostic::error(
                    Code::ContainsNeedsValue,
                    operand_loc(other),
                    "`contains` takes a value",
                    "not a value",
                ));
                Pred::Exists(attr)
            }
            (PredicateOp::Cmp(cmp), Operand::Attr(other)) => {
                let other_attr = self.attr(other);
                self.same_type(&attr, &other_attr, &other.loc);
                Pred::CmpAttr(attr, cmp, other_attr)
            }
            (PredicateOp::Cmp(cmp), Operand::Literal(lit, l)) => {
                self.order_allowed(&attr, ty, cmp, op_loc, "use == or !=, or `in`");
                let v = self.literal_for(&attr, ty, cmp, lit, l);
                Pred::Cmp(attr, cmp, v)
            }
        }
    }

    /// Refuses comparing two intrinsics of different types (`span:duration` with
    /// `span:name`), the second written at `at`.
    fn same_type(&mut self, a: &Attr, b: &Attr, at: &Loc) {
        if let (Attr::Intrinsic(a), Attr::Intrinsic(b)) = (a, b) {
            if a.ty() != b.ty() {
                self.errors.push(Diagnostic::error(
                    Code::DifferentTypes,
                    at.clone(),
                    format!("`{}` and `{}` have different types", a.name(), b.name()),
                    "cannot compare",
                ));
            }
        }
    }

    /// Refuses an order (`<`, `>=`, …) on an intrinsic that has none (`span:status`,
    /// `span:kind`).
    fn order_allowed(
        &mut self,
        attr: &Attr,
        ty: Option<IntrinsicType>,
        cmp: CmpOp,
        op_loc: &Loc,
        help: &str,
    ) {
        if matches!(ty, Some(IntrinsicType::Status | IntrinsicType::Kind))
            && !matches!(cmp, CmpOp::Eq | CmpOp::Ne)
        {
            self.errors.push(Diagnostic::error(
                Code::NoOrder,
                op_loc.clone(),
                format!("`{attr}` has no order"),
                help.to_string(),
            ));
        }
    }

    /// Checks a literal against what the attribute can hold, and turns it into a value.
    fn literal_for(
        &mut self,
        attr: &Attr,
        ty: Option<IntrinsicType>,
        op: CmpOp,
        lit: &Literal,
        l: &Loc,
    ) -> Value {
        let v = literal_value(lit);
        let ordered = !matches!(op, CmpOp::Eq | CmpOp::Ne);
        match (ty, &v) {
            (Some(IntrinsicType::Duration), Value::Duration(_)) => {}
            (Some(IntrinsicType::Duration), other) => self.errors.push(
                Diagnostic::error(
                    Code::DurationComparedWith,
                    l.clone(),
                    format!(
                        "`{attr}` is a duration, compared here with {} {}",
                        article(other.type_name()),
                        other.type_name()
                    ),
                    "not a duration",
                )
                .with_help("write a duration such as 250ms, 2s or 1m"),
            ),
            (Some(IntrinsicType::String), Value::Duration(_) | Value::Bool(_)) => {
                self.errors.push(Diagnostic::error(
                    Code::StringComparedWith,
                    l.clone(),
                    format!(
                        "`{attr}` is a string, compared here with a {}",
                        v.type_name()
                    ),
                    "not a string",
                ))
            }
            (Some(IntrinsicType::Status), value) if !matches!(value, Value::Str(s) if StatusCode::from_word(s).is_some()) => {
                self.errors.push(
                    Diagnostic::error(
                        Code::UnknownStatus,
                        l.clone(),
                        format!("`{value}` is not a span status"),
                        "unknown status",
                    )
                    .with_help("use ok, error or unset"),
                )
            }
            (Some(IntrinsicType::Kind), value) if !matches!(value, Value::Str(s) if SpanKind::from_word(s).is_some()) => {
                self.errors.push(
                    Diagnostic::error(
                        Code::UnknownKind,
                        l.clone(),
                        format!("`{value}` is not a span kind"),
                        "unknown kind",
                    )
                    .with_help(format!("use one of {}", SpanKind::WORDS.join(", "))),
                )
            }
            (None, Value::Bool(_)) if ordered => self.errors.push(
                Diagnostic::error(
                    Code::BooleanOrder,
                    l.clone(),
                    "booleans have no order",
                    "a boolean",
                )
                .with_help("use == or !="),
            ),
            _ => {}
        }
        v
    }

    fn attr(&mut self, a: &ast::AttrRef) -> Attr {
        match &a.kind {
            AttrKind::Any(k) => {
                let first = k.split('.').next().unwrap_or(k);
                let quoted = self.text[a.loc.clone()].starts_with('"');
                if !quoted && RESERVED.contains(&first) {
                    self.errors.push(
                        Diagnostic::error(
                            Code::ReservedAttribute,
                            a.loc.clone(),
                            format!("`{first}` is a reserved word"),
                            "reserved word used as an attribute",
                        )
                        .with_help(format!("quote the attribute: \"{k}\"")),
                    );
                }
                Attr::Any(k.clone())
            }
            AttrKind::Span(k) => Attr::Span(k.clone()),
            AttrKind::Resource(k) => Attr::Resource(k.clone()),
            AttrKind::Intrinsic(name) => match Intrinsic::from_name(name) {
                Some(i) => Attr::Intrinsic(i),
                None => {
                    let known: Vec<&str> = Intrinsic::ALL.iter().map(|i| i.name()).collect();
                    self.errors.push(
                        Diagnostic::error(
                            Code::UnknownIntrinsic,
                            a.loc.clone(),
                            format!("unknown intrinsic `{name}`"),
                            "not an intrinsic",
                        )
                        .with_help(format!("the intrinsics are {}", known.join(", "))),
                    );
                    Attr::Any(name.clone())
                }
            },
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Where a constant side of a comparison is written; `None` for terms over spans.
fn numeric_loc(n: &ast::Numeric) -> Option<Loc> {
    match n {
        ast::Numeric::Int(_, l) | ast::Numeric::Float(_, l) | ast::Numeric::Duration(_, l) => {
            Some(l.clone())
        }
        ast::Numeric::Agg(_, _, _, l) => Some(l.clone()),
        ast::Numeric::Count(s) | ast::Numeric::Distinct(s, _) => Some(s.loc.clone()),
        ast::Numeric::Bound(b) => Some(b.loc.clone()),
    }
}

/// A numeric term as a reader would name it in a message.
fn describe(n: &ast::Numeric) -> String {
    match n {
        ast::Numeric::Duration(d, _) => format!("`{}`", crate::lang::value::format_duration(*d)),
        ast::Numeric::Agg(f, _, _, _) => format!("`{}(…)` of a duration", f.as_str()),
        _ => "here".into(),
    }
}

fn operand_loc(o: &Operand) -> Loc {
    match o {
        Operand::Literal(_, l) | Operand::List(_, l) | Operand::Unique(l) => l.clone(),
        Operand::Attr(a) => a.loc.clone(),
        Operand::Bound(b) => b.loc.clone(),
    }
}

/// Where a selector stands, for what may follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    /// A term of its own (`S`, `trace.has(S)`, `own S …`): a relation filter may follow.
    Term,
    /// Inside `count`, `distinct` or an aggregate: a relation filter may follow.
    Numeric,
    /// A side of a trace-level relation: no relation filter.
    Side,
    /// A `since`/`until` scope, or `S` in `$x within S`: a plain selector.
    Plain,
}

/// A literal's value: bare words are strings.
pub fn literal_value(lit: &Literal) -> Value {
    match lit {
        Literal::Int(i) => Value::Int(*i),
        Literal::Float(f) => Value::Float(*f),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Str(s) | Literal::Word(s) => Value::str(s),
        Literal::Duration(d) => Value::Duration(*d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::hir::NameMatch;

    fn errors(text: &str) -> Vec<String> {
        match check_text(text) {
            Ok(_) => vec![],
            Err(ps) => ps.into_iter().map(|p| p.message).collect(),
        }
    }

    #[test]
    fn reports_every_error_at_once() {
        let errs =
            errors("when { count.x } always { y.where(span:foo > 1 and span:duration > \"a\") }");
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn compiler_visible_type_errors() {
        assert_eq!(errors("x.where(span:duration > \"abc\")").len(), 1);
        assert_eq!(errors("x.where(span:duration > 5)").len(), 1);
        assert_eq!(errors("x.where(k matches 5)").len(), 1);
        assert_eq!(errors("x.where(k matches \"(\")").len(), 1);
        assert_eq!(errors("x.where(span:status == broken)").len(), 1);
        assert_eq!(errors("x.where(k > true)").len(), 1);
        assert_eq!(errors("x.where(k == [a, b])").len(), 1);
        assert_eq!(errors("x.where(k == unique)").len(), 1);
        assert!(errors("x.where(span:duration > 250ms and span:status == error and span:kind in [server, client])").is_empty());
    }

    #[test]
    fn time_bounds_that_cannot_hold_are_refused() {
        for text in [
            "a before b within 0ns",
            "a before b within 0s",
            "b after a within -1ms",
        ] {
            let errs = errors(text);
            assert_eq!(errs.len(), 1, "{text}: {errs:?}");
        }
        let Err(e) = check_text("a before b within 0ns") else {
            panic!()
        };
        assert_eq!(e[0].primary.range, 18..21);
        assert!(errors("a before b within 1ns").is_empty());
    }

    #[test]
    fn invariant_needs_always_or_never() {
        assert_eq!(errors("when { a }").len(), 1);
    }

    #[test]
    fn count_where_unique_is_distinct() {
        let c = check_text("trace.count(payment.charge).where(payment_intent_id == unique) > 1")
            .unwrap();
        let Form::Violation(hir::Expr::Compare(Num::Distinct(_, key), ..)) = c.form else {
            panic!("{:?}", c.form)
        };
        assert_eq!(key, Attr::Any("payment_intent_id".into()));
    }

    #[test]
    fn after_is_before_swapped() {
        let c = check_text("b after a").unwrap();
        let Form::Violation(hir::Expr::Before(first, second, None)) = c.form else {
            panic!()
        };
        assert_eq!(first.text, "a");
        assert_eq!(second.text, "b");
    }

    #[test]
    fn quoted_names_escape_stars() {
        assert!(quoted_pattern(r"HTTP \*").matches("HTTP *"));
        assert!(!quoted_pattern(r"HTTP \*").matches("HTTP GET"));
        assert!(quoted_pattern("HTTP *").matches("HTTP GET"));
        assert!(bare_pattern("payment.*").matches("payment.charge"));
        assert!(!bare_pattern("payment.*").matches("payments"));
        assert_eq!(
            quoted_pattern("GET /api/users/{id}"),
            NameMatch::Exact("GET /api/users/{id}".into())
        );
    }

    #[test]
    fn warns_on_conjunction_of_has() {
        let c = check_text("trace.has(a) and trace.has(b)").unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0]
            .help()
            .next()
            .unwrap()
            .contains("when { trace.has(a) } always { trace.has(b) }"));
        assert!(check_text("trace.has(a) and not trace.has(b)")
            .unwrap()
            .warnings
            .is_empty());
    }
}
