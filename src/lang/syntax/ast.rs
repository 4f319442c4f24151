//! The syntax tree of a condition, as written: nothing is checked or resolved yet.
//!
//! Every node carries the byte range it came from in the condition text, so that the
//! checker can point at it.

use std::ops::Range;

/// A byte range inside the condition text.
pub type Loc = Range<usize>;

/// A parsed condition: one of the two forms of docs/language.md, "Conditions: the two forms".
// One per rule, built once at load: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `when { A } always { B } never { C }`.
    Invariant {
        /// `A`: where the rule applies.
        when: Expr,
        /// `B`: what must hold, if given.
        always: Option<Expr>,
        /// `C`: what must not hold, if given.
        never: Option<Expr>,
        /// The `when` keyword, for messages about the form as a whole.
        loc: Loc,
    },
    /// Any other boolean expression: the rule fires when it is true.
    Violation(Expr),
}

/// A boolean term.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a or b or …`
    Or(Vec<Expr>, Loc),
    /// `a and b and …`
    And(Vec<Expr>, Loc),
    /// `not a`
    Not(Box<Expr>, Loc),
    /// `S` or `trace.has(S)`.
    Has(Selector),
    /// `count(S) > 2`, `distinct(S, k) == 1`, …
    Compare {
        /// Left side.
        lhs: Numeric,
        /// The operator.
        op: CmpOp,
        /// Right side.
        rhs: Numeric,
        /// The whole comparison.
        loc: Loc,
        /// The operator alone.
        op_loc: Loc,
    },
    /// `own S after $x …`: every binding gets a partner of its own (the selector carries
    /// the relation filter).
    Own(Selector, Loc),
    /// `$x within S`, `$x child_of S`: the bound span itself in the tree.
    BoundRel {
        /// The bound span's name, without `$`, and where it is written.
        var: Var,
        /// `within` or `child_of`.
        op: RelOp,
        /// `S`.
        sel: Selector,
        /// The whole term.
        loc: Loc,
    },
    /// `A before B`, `A after B`, `A within B`, `A child_of B`, and `A before B within D`.
    Relation {
        /// Left selector.
        lhs: Selector,
        /// The keyword.
        op: RelOp,
        /// Right selector.
        rhs: Selector,
        /// What follows `within` after `before`/`after`, if anything: the checker wants a
        /// duration.
        bound: Option<Bound>,
        /// The whole relation.
        loc: Loc,
    },
}

impl Expr {
    /// Where this term stands in the condition text.
    pub fn loc(&self) -> Loc {
        match self {
            Expr::Or(_, l) | Expr::And(_, l) | Expr::Not(_, l) => l.clone(),
            Expr::Has(s) => s.loc.clone(),
            Expr::Own(_, l) => l.clone(),
            Expr::Compare { loc, .. } | Expr::Relation { loc, .. } | Expr::BoundRel { loc, .. } => {
                loc.clone()
            }
        }
    }
}

/// The relations between two selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    /// `before`
    Before,
    /// `after`
    After,
    /// `within`
    Within,
    /// `child_of`
    ChildOf,
}

/// What follows `within` in `A before B within …`, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// A duration, in nanoseconds.
    Duration(i64, Loc),
    /// Anything else (a number, a selector): an error the checker locates.
    Other(Loc),
}

/// A numeric term of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Numeric {
    /// `count(S)` / `trace.count(S)`, with any `.where` that followed the closing parenthesis
    /// already folded into the selector.
    Count(Selector),
    /// `distinct(S, key)`.
    Distinct(Selector, AggKey),
    /// `sum(S, key)`, `min`, `max`, `avg`.
    Agg(AggFn, Selector, AggKey, Loc),
    /// An integer literal.
    Int(i64, Loc),
    /// A float literal.
    Float(f64, Loc),
    /// A duration literal, in nanoseconds.
    Duration(i64, Loc),
    /// `$a.amount`: the bound span's value.
    Bound(BoundValue),
}

pub use crate::lang::value::Aggregate as AggFn;

/// A bound span's name as written (`$a`): the name without `$`, and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Var {
    /// The name, without `$`.
    pub name: String,
    /// Where `$name` is written.
    pub loc: Loc,
}

/// `$a.KEY`: an attribute or intrinsic of the bound span.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundValue {
    /// Which bound span.
    pub var: Var,
    /// Which of its values.
    pub attr: AttrRef,
    /// The whole reference.
    pub loc: Loc,
}

/// The relations a selector can be filtered by, to a bound span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `S before $x`: starts before it.
    Before,
    /// `S after $x`: starts after it.
    After,
    /// `S within $x`: a descendant of it.
    Within,
    /// `S child_of $x`: a child of it.
    ChildOf,
    /// `S around $x`: an ancestor of it.
    Around,
}

impl FilterOp {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Before => "before",
            FilterOp::After => "after",
            FilterOp::Within => "within",
            FilterOp::ChildOf => "child_of",
            FilterOp::Around => "around",
        }
    }
}

/// `since T` / `until T` after a relation filter.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeLimit {
    /// `true` for `until`, `false` for `since`.
    pub until: bool,
    /// `T`.
    pub sel: Selector,
    /// The keyword.
    pub kw_loc: Loc,
}

/// `before $x within D since T` and the like, after a selector.
#[derive(Debug, Clone, PartialEq)]
pub struct RelFilter {
    /// The relation.
    pub op: FilterOp,
    /// The bound span it relates to.
    pub var: Var,
    /// `within D`, as written.
    pub window: Option<Bound>,
    /// `since T` / `until T`.
    pub limit: Option<Box<ScopeLimit>>,
    /// The whole filter.
    pub loc: Loc,
}
pub use crate::lang::value::CmpOp;

/// The key of an aggregate or of `distinct`: an attribute reference, or a list (an error
/// the checker locates).
#[derive(Debug, Clone, PartialEq)]
pub enum AggKey {
    /// `amount`, `span.amount`, `span:duration`, …
    Attr(AttrRef),
    /// `[a, b]`.
    List(Loc),
}

/// A span selector: a name pattern and its `.where(...)` filters.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// The name pattern.
    pub name: NamePattern,
    /// The filters, all of which apply to the same span.
    pub wheres: Vec<Predicate>,
    /// The whole selector, `.where`s included.
    pub loc: Loc,
    /// The name pattern alone.
    pub name_loc: Loc,
    /// A relation filter to a bound span (`S after $x`), if any.
    pub filter: Option<Box<RelFilter>>,
    /// `as $name`, if the selector binds a span.
    pub binding: Option<Var>,
}

/// How a selector picks spans by name, before checking.
#[derive(Debug, Clone, PartialEq)]
pub enum NamePattern {
    /// A dotted name, possibly with `*` in it: `payment.charge`, `payment.*`, `*`.
    Bare(String),
    /// A quoted name with its escapes still in: `"GET /api/{id}"`, `"HTTP *"`.
    Quoted(String),
}

/// A predicate inside `.where(...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `p or q`
    Or(Vec<Predicate>, Loc),
    /// `p and q`
    And(Vec<Predicate>, Loc),
    /// `not p`
    Not(Box<Predicate>, Loc),
    /// `exists(k)`
    Exists(AttrRef, Loc),
    /// `k` alone.
    Truthy(AttrRef),
    /// `k OP operand`.
    Compare {
        /// The attribute compared.
        lhs: AttrRef,
        /// The operator, read once by the parser.
        op: PredicateOp,
        /// What it is compared with.
        rhs: Operand,
        /// The whole comparison.
        loc: Loc,
        /// The operator alone.
        op_loc: Loc,
    },
}

impl Predicate {
    /// Where this predicate stands in the condition text.
    pub fn loc(&self) -> Loc {
        match self {
            Predicate::Or(_, l)
            | Predicate::And(_, l)
            | Predicate::Not(_, l)
            | Predicate::Exists(_, l) => l.clone(),
            Predicate::Truthy(a) => a.loc.clone(),
            Predicate::Compare { loc, .. } => loc.clone(),
        }
    }
}

/// The operator of a predicate `k OP operand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredicateOp {
    /// `==`, `!=`, `>`, `>=`, `<`, `<=`.
    Cmp(CmpOp),
    /// `in`
    In,
    /// `matches`
    Matches,
    /// `contains`
    Contains,
}

impl PredicateOp {
    /// Reads an operator token of the grammar's `pred_op`; `None` for anything else.
    pub fn parse(s: &str) -> Option<PredicateOp> {
        Some(match s {
            "in" => PredicateOp::In,
            "matches" => PredicateOp::Matches,
            "contains" => PredicateOp::Contains,
            other => PredicateOp::Cmp(CmpOp::parse(other)?),
        })
    }

    /// The operator as written in the language.
    pub fn as_str(self) -> &'static str {
        match self {
            PredicateOp::Cmp(op) => op.as_str(),
            PredicateOp::In => "in",
            PredicateOp::Matches => "matches",
            PredicateOp::Contains => "contains",
        }
    }
}

impl std::fmt::Display for PredicateOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right-hand side of a predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A single literal.
    Literal(Literal, Loc),
    /// `[a, "b", 3]`.
    List(Vec<(Literal, Loc)>, Loc),
    /// An attribute reference with an explicit scope or an intrinsic.
    Attr(AttrRef),
    /// `unique`, only meaningful in `trace.count(S).where(k == unique)`.
    Unique(Loc),
    /// `$a.key`: the bound span's value.
    Bound(BoundValue),
}

/// A literal value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A double-quoted string, escapes resolved.
    Str(String),
    /// A bare word, meaning the string of that name (`processor == stripe`).
    Word(String),
    /// A duration in nanoseconds.
    Duration(i64),
}

/// An attribute reference as written.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrRef {
    /// Which attribute.
    pub kind: AttrKind,
    /// Where it is written.
    pub loc: Loc,
}

/// The scopes an attribute reference can have.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrKind {
    /// `amount`, `"key with spaces"`: the span's attribute, else the resource's.
    Any(String),
    /// `span.foo`.
    Span(String),
    /// `resource.foo`.
    Resource(String),
    /// `span:duration`, `trace:rootName`, … (not yet known to exist).
    Intrinsic(String),
}
