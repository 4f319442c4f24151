//! A checked condition: names resolved, types checked, regexes compiled, `after` turned
//! into `before` and `count(S).where(k == unique)` into `distinct(S, k)`.
//!
//! Both the compiler (`compile.rs`) and the reference evaluator (`reference.rs`) start
//! from here, so the checker's decisions are made once.

use std::fmt;

use regex::Regex;

use crate::lang::value::{CmpOp, Value};

/// The two forms a checked condition can take.
// One per rule, built once at load: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Form {
    /// `when { when } always { always } never { never }`: fires when `when` holds and
    /// `always` does not, or `never` does.
    Invariant {
        /// The bound span (`as $name`), when the rule is judged per occurrence: its
        /// selector also stands, as a `Has`, among `when`'s terms.
        bind: Option<Binding>,
        /// Where the rule applies.
        when: Expr,
        /// What must hold.
        always: Option<Expr>,
        /// What must not hold.
        never: Option<Expr>,
    },
    /// Fires when the expression holds.
    Violation(Expr),
}

/// `S as $name` in `when`: the rule is judged once per span `S` matches.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The name, without `$`, for messages.
    pub name: String,
    /// The spans bound, one binding each.
    pub selector: Selector,
}

/// A checked boolean term.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Any of the terms.
    Or(Vec<Expr>),
    /// All of the terms.
    And(Vec<Expr>),
    /// The term is false.
    Not(Box<Expr>),
    /// Some span matches.
    Has(Selector),
    /// Two numbers compare so.
    Compare(Num, CmpOp, Num),
    /// Both match, and every span matching the second starts after the start of some span
    /// matching the first — by at most the bound (nanoseconds) when there is one. Without
    /// a bound: the earliest start of the first is strictly before that of the second.
    Before(Selector, Selector, Option<i64>),
    /// Every span matching the first has an ancestor matching the second.
    Within(Selector, Selector),
    /// Every span matching the first has a direct parent matching the second.
    ChildOf(Selector, Selector),
    /// `own S before|after $x …`: the binding gets a span of `S` (in that relation, which
    /// the selector carries) that no other binding gets. Decided over all the bindings of
    /// the trace at once; a top-level conjunct of `always` only.
    Own(Selector),
    /// `$x within S`: the bound span has an ancestor matching `S`.
    BoundWithin(Selector),
    /// `$x child_of S`: the bound span's parent is in the trace and matches `S`.
    BoundChildOf(Selector),
}

/// A checked numeric term.
#[derive(Debug, Clone)]
pub enum Num {
    /// How many spans match.
    Count(Selector),
    /// How many distinct values the attribute takes over the matching spans.
    Distinct(Selector, Attr),
    /// An aggregate of a numeric attribute (or `span:duration`, `trace:duration`) over the
    /// matching spans.
    Agg(AggFn, Selector, Attr),
    /// A number: an integer or a float.
    Const(Number),
    /// A duration, in nanoseconds.
    Duration(i64),
    /// `$a.key`: the bound span's value, as a number (no value when it has none).
    Bound(Attr),
}

pub use crate::lang::value::{Aggregate as AggFn, Number};

/// A checked span selector.
#[derive(Debug, Clone)]
pub struct Selector {
    /// How it matches span names.
    pub name: NameMatch,
    /// The conjunction of its `.where`s, if any.
    pub pred: Option<Pred>,
    /// The selector as written, for `explain` and `test` output.
    pub text: String,
    /// A relation to the bound span, if any (`S after $x within 5s`).
    pub rel: Option<Box<Relation>>,
}

impl Selector {
    /// Whether the spans it matches depend on the bound span: a relation filter, or a
    /// predicate that reads a bound value.
    pub fn is_bound(&self) -> bool {
        self.rel.is_some() || self.pred.as_ref().is_some_and(Pred::reads_bound)
    }
}

/// A relation filter: the spans of a selector in this relation to the bound span `x`.
#[derive(Debug, Clone)]
pub struct Relation {
    /// Which relation.
    pub kind: RelKind,
    /// `within D` after `before`/`after`, in nanoseconds.
    pub window: Option<i64>,
    /// `since T` (with `before`) or `until T` (with `after`).
    pub limit: Option<Selector>,
}

/// The relations of a filter to the bound span `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelKind {
    /// `s.start < x.start`.
    Before,
    /// `s.start > x.start`.
    After,
    /// `s` descends from `x`.
    Within,
    /// `s`'s parent is `x`.
    ChildOf,
    /// `s` is an ancestor of `x`.
    Around,
}

/// How a selector matches span names.
#[derive(Debug, Clone)]
pub enum NameMatch {
    /// Exactly this name.
    Exact(String),
    /// A glob (`payment.*`), kept as its text and as an anchored regex.
    Glob(String, Regex),
    /// Every span (`*`).
    Any,
}

impl NameMatch {
    /// Whether a span name matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Exact(n) => n == name,
            NameMatch::Glob(_, re) => re.is_match(name),
            NameMatch::Any => true,
        }
    }
}

impl PartialEq for NameMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (NameMatch::Exact(a), NameMatch::Exact(b)) => a == b,
            (NameMatch::Glob(a, _), NameMatch::Glob(b, _)) => a == b,
            (NameMatch::Any, NameMatch::Any) => true,
            _ => false,
        }
    }
}

/// A checked predicate over one span.
#[derive(Debug, Clone)]
pub enum Pred {
    /// Any holds.
    Or(Vec<Pred>),
    /// All hold.
    And(Vec<Pred>),
    /// Does not hold.
    Not(Box<Pred>),
    /// The attribute is present.
    Exists(Attr),
    /// The attribute is the boolean `true`.
    Truthy(Attr),
    /// `attr OP literal`.
    Cmp(Attr, CmpOp, Value),
    /// `attr in [literals]`.
    In(Attr, Vec<Value>),
    /// `attr matches "re"` (the regex is anchored at both ends).
    Matches(Attr, Regex),
    /// `attr contains literal`.
    Contains(Attr, Value),
    /// `attr OP other_attr`, both of the same span.
    CmpAttr(Attr, CmpOp, Attr),
    /// `attr OP $x.other`: the span's attribute against the bound span's.
    CmpBound(Attr, CmpOp, Attr),
    /// `attr contains $x.other`.
    ContainsBound(Attr, Attr),
}

impl Pred {
    /// Whether it reads a bound value anywhere.
    pub fn reads_bound(&self) -> bool {
        match self {
            Pred::Or(items) | Pred::And(items) => items.iter().any(Pred::reads_bound),
            Pred::Not(inner) => inner.reads_bound(),
            Pred::CmpBound(..) | Pred::ContainsBound(..) => true,
            _ => false,
        }
    }
}

/// A resolved attribute reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attr {
    /// The span's attribute, else the resource's.
    Any(String),
    /// The span's attribute only.
    Span(String),
    /// The resource's attribute only.
    Resource(String),
    /// An intrinsic.
    Intrinsic(Intrinsic),
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Any(k) => write!(f, "{k}"),
            Attr::Span(k) => write!(f, "span.{k}"),
            Attr::Resource(k) => write!(f, "resource.{k}"),
            Attr::Intrinsic(i) => f.write_str(i.name()),
        }
    }
}

/// The intrinsics of docs/language.md, "Comparison rules", spelled as in TraceQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    /// `span:name`
    Name,
    /// `span:duration`
    Duration,
    /// `span:status`
    Status,
    /// `span:statusMessage`
    StatusMessage,
    /// `span:kind`
    Kind,
    /// `trace:rootName`
    RootName,
    /// `trace:rootService`
    RootService,
    /// `trace:duration`
    TraceDuration,
}

/// What an intrinsic's values are, for the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrinsicType {
    /// Free text.
    String,
    /// A duration.
    Duration,
    /// One of `ok`, `error`, `unset`.
    Status,
    /// One of the span kinds.
    Kind,
}

impl Intrinsic {
    /// Every intrinsic, for lookups and messages.
    pub const ALL: [Intrinsic; 8] = [
        Intrinsic::Name,
        Intrinsic::Duration,
        Intrinsic::Status,
        Intrinsic::StatusMessage,
        Intrinsic::Kind,
        Intrinsic::RootName,
        Intrinsic::RootService,
        Intrinsic::TraceDuration,
    ];

    /// The intrinsic as written.
    pub fn name(self) -> &'static str {
        match self {
            Intrinsic::Name => "span:name",
            Intrinsic::Duration => "span:duration",
            Intrinsic::Status => "span:status",
            Intrinsic::StatusMessage => "span:statusMessage",
            Intrinsic::Kind => "span:kind",
            Intrinsic::RootName => "trace:rootName",
            Intrinsic::RootService => "trace:rootService",
            Intrinsic::TraceDuration => "trace:duration",
        }
    }

    /// Looks an intrinsic up by its written name.
    pub fn from_name(name: &str) -> Option<Intrinsic> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The type of its values.
    pub fn ty(self) -> IntrinsicType {
        match self {
            Intrinsic::Duration | Intrinsic::TraceDuration => IntrinsicType::Duration,
            Intrinsic::Status => IntrinsicType::Status,
            Intrinsic::Kind => IntrinsicType::Kind,
            _ => IntrinsicType::String,
        }
    }
}

/// The selectors whose matching spans become trigger spans (docs/language.md, "What a
/// rule reports"), those under an even number of `not`s: of `never` when an invariant fired
/// because its `never` part held (`by_never`), else of `when` (an invariant whose `always`
/// failed) or of the whole condition (violation form).
pub fn trigger_selectors(form: &Form, by_never: bool) -> Vec<&Selector> {
    let mut out = Vec::new();
    match (form, by_never) {
        // A per-occurrence rule reports the bound spans that broke it (the evaluators).
        (Form::Invariant { bind: Some(_), .. }, _) => {}
        (Form::Invariant { never: Some(n), .. }, true) => collect_positive(n, false, &mut out),
        (Form::Invariant { when, .. }, _) => collect_positive(when, false, &mut out),
        (Form::Violation(e), _) => collect_positive(e, false, &mut out),
    }
    out
}

fn collect_positive<'a>(e: &'a Expr, negated: bool, out: &mut Vec<&'a Selector>) {
    match e {
        Expr::Or(items) | Expr::And(items) => {
            items.iter().for_each(|i| collect_positive(i, negated, out))
        }
        Expr::Not(inner) => collect_positive(inner, !negated, out),
        _ if negated => {}
        Expr::Has(s) => out.push(s),
        Expr::Compare(a, _, b) => {
            for n in [a, b] {
                if let Num::Count(s) | Num::Distinct(s, _) | Num::Agg(_, s, _) = n {
                    out.push(s);
                }
            }
        }
        Expr::Before(a, b, _) | Expr::Within(a, b) | Expr::ChildOf(a, b) => {
            out.push(a);
            out.push(b);
        }
        // Only in per-occurrence rules, which report their bound spans.
        Expr::Own(_) | Expr::BoundWithin(_) | Expr::BoundChildOf(_) => {}
    }
}

/// Span names a trace must have for the rule to apply (or, without `when`, to fire): a
/// trace with no span matching any of them cannot count for the rule. `None` when the
/// condition can hold on a trace without any particular span (`not`, `within`, a count
/// compared with zero, …). Replay from a trace store fetches only traces with these names.
pub fn required_names(form: &Form) -> Option<Vec<NameMatch>> {
    match form {
        Form::Invariant { when, .. } => needs(when),
        Form::Violation(e) => needs(e),
    }
}

/// Names of which a span must exist when `e` holds, or `None` if there are none.
fn needs(e: &Expr) -> Option<Vec<NameMatch>> {
    match e {
        Expr::Has(s) | Expr::Before(s, _, _) => Some(vec![s.name.clone()]),
        // Every item holds: the narrowest item's names are enough.
        Expr::And(items) => items.iter().filter_map(needs).min_by_key(|names| {
            (
                names.iter().any(|n| matches!(n, NameMatch::Any)),
                names.len(),
            )
        }),
        // Some item holds: each must need something.
        Expr::Or(items) => {
            let mut all = Vec::new();
            for i in items {
                all.extend(needs(i)?);
            }
            Some(all)
        }
        // `count(S) > n` with n ≥ 0, `count(S) >= n` with n ≥ 1, and the mirrored forms.
        Expr::Compare(a, op, b) => {
            let positive = |s: &Selector, op: CmpOp, n: i64| {
                match op {
                    CmpOp::Gt => n >= 0,
                    CmpOp::Ge | CmpOp::Eq => n >= 1,
                    CmpOp::Ne => n == 0,
                    _ => false,
                }
                .then(|| vec![s.name.clone()])
            };
            match (a, b) {
                (Num::Count(s) | Num::Distinct(s, _), Num::Const(Number::Int(n))) => {
                    positive(s, *op, *n)
                }
                (Num::Const(Number::Int(n)), Num::Count(s) | Num::Distinct(s, _)) => {
                    positive(s, op.flipped(), *n)
                }
                // An aggregate with a value needs a span with the key; `sum` is 0 without.
                (Num::Agg(f, s, _), _) | (_, Num::Agg(f, s, _)) if *f != AggFn::Sum => {
                    Some(vec![s.name.clone()])
                }
                _ => None,
            }
        }
        Expr::Not(_)
        | Expr::Within(..)
        | Expr::ChildOf(..)
        | Expr::Own(_)
        | Expr::BoundWithin(_)
        | Expr::BoundChildOf(_) => None,
    }
}
