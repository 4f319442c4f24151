//! The bytecode a rule set compiles to, and its disassembly (`betrace explain`).
//!
//! A rule is a short stack program over whole-trace operations (`HAS`, `COUNT`, `BEFORE`,
//! …) that name selectors by index. Selectors live in one table for the whole rule set,
//! deduplicated, so that a selector used by ten rules is matched once per trace. Each
//! selector carries its own small predicate program, run once per candidate span.

use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use regex::Regex;

use crate::lang::hir::{Attr, RelKind};
use crate::lang::value::{Aggregate, CmpOp, Number, Value};

/// An index into one table of the code. Each table has its own id type, so that an index
/// into one cannot be used on another: a [`Table`] is indexed by its own id only.
pub trait Id: Copy {
    /// The id of the entry at `index`.
    fn at(index: usize) -> Self;
    /// The entry's position in its table.
    fn index(self) -> usize;
}

/// Declares an id type: a `u32` (instructions stay small), shown as its number.
macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u32);

        impl Id for $name {
            #[inline]
            fn at(index: usize) -> Self {
                // A rule set has far fewer than 2^32 of anything: its text would not fit.
                debug_assert!(u32::try_from(index).is_ok());
                $name(index as u32)
            }

            #[inline]
            fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            /// The number, with the formatter's width and fill (`{:04}`).
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

ids! {
    /// Index into [`Code::selectors`].
    SelId;
    /// Index into [`Code::attrs`].
    AttrId;
    /// Index into [`Code::names`] (an interned span name).
    NameId;
    /// Index into [`Code::globs`].
    GlobId;
    /// Index into [`Code::consts`].
    ConstId;
    /// Index into [`Code::numbers`].
    NumId;
    /// Index into [`Code::lists`].
    ListId;
    /// Index into [`Code::regexes`].
    RegexId;
    /// A jump's target: the index of an instruction in the program that holds the jump
    /// (a rule's [`Program::ops`], or a selector's [`SelectorCode::pred`]).
    Jump;
}

/// A table of the code, indexed by its id type `I` only.
#[derive(Clone, PartialEq)]
pub struct Table<I, T> {
    items: Vec<T>,
    id: PhantomData<fn() -> I>,
}

impl<I: Id, T> Table<I, T> {
    /// An empty table.
    pub fn new() -> Self {
        Table {
            items: Vec::new(),
            id: PhantomData,
        }
    }

    /// How many entries the table has.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The id the next entry pushed will have.
    pub fn next_id(&self) -> I {
        I::at(self.items.len())
    }

    /// Adds an entry; its id.
    pub fn push(&mut self, item: T) -> I {
        let id = self.next_id();
        self.items.push(item);
        id
    }

    /// The entry `id` names, if the table has it.
    pub fn get(&self, id: I) -> Option<&T> {
        self.items.get(id.index())
    }

    /// The entries in id order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The entries with their ids.
    pub fn enumerate(&self) -> impl Iterator<Item = (I, &T)> {
        self.items.iter().enumerate().map(|(i, t)| (I::at(i), t))
    }

    /// A table of `fill`s, one per entry of this one: what is kept beside this table, by
    /// the same ids (the VM's matches per selector, say).
    pub fn beside<U: Clone>(&self, fill: U) -> Table<I, U> {
        Table {
            items: vec![fill; self.items.len()],
            id: PhantomData,
        }
    }

    /// A table of `f` of each entry, by the same ids.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Table<I, U> {
        Table {
            items: self.items.iter().map(f).collect(),
            id: PhantomData,
        }
    }
}

impl<I: Id, T> Default for Table<I, T> {
    fn default() -> Self {
        Table::new()
    }
}

impl<I, T: fmt::Debug> fmt::Debug for Table<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.items).finish()
    }
}

impl<I: Id, T> Index<I> for Table<I, T> {
    type Output = T;

    #[inline]
    fn index(&self, id: I) -> &T {
        &self.items[id.index()]
    }
}

impl<I: Id, T> IndexMut<I> for Table<I, T> {
    #[inline]
    fn index_mut(&mut self, id: I) -> &mut T {
        &mut self.items[id.index()]
    }
}

impl<'a, I: Id, T> IntoIterator for &'a Table<I, T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// A whole-trace instruction. The stack holds `i64`s; booleans are 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Push 1 if any span matches the selector.
    Has(SelId),
    /// Push how many spans match (onto the number stack).
    Count(SelId),
    /// Push how many distinct values the attribute takes over the matching spans (numbers).
    Distinct(SelId, AttrId),
    /// Push an aggregate of the attribute over the matching spans (numbers; may be no value).
    Agg(Aggregate, SelId, AttrId),
    /// Push `numbers[k]` (numbers).
    Num(NumId),
    /// Push false.
    False,
    /// Pop b, pop a from the number stack, push `a OP b` (false when either has no value).
    Cmp(CmpOp),
    /// Push 1 if both match and the first's earliest start is before the second's.
    Before(SelId, SelId),
    /// Push 1 if both match and every span matching the second starts after a span
    /// matching the first by at most `numbers[k]` nanoseconds.
    BeforeWithin(SelId, SelId, NumId),
    /// Push 1 if every span matching the first has an ancestor matching the second.
    Within(SelId, SelId),
    /// Push 1 if every span matching the first has a parent matching the second.
    ChildOf(SelId, SelId),
    /// Replace the top with its negation.
    Not,
    /// If the top is false, jump (keeping it); else pop it.
    JumpIfFalseOrPop(Jump),
    /// If the top is true, jump (keeping it); else pop it.
    JumpIfTrueOrPop(Jump),
    /// The end of an invariant's `when` part: if the top is false the rule does not apply
    /// (jump, keeping it); else pop it and note that the rule applies to the trace — what
    /// compliance evidence counts.
    Applies(Jump),
    /// The end of an invariant's `never` part: note whether it holds (the top, kept), so
    /// that its spans are the trigger spans when the rule fires.
    Never,
    /// Push the bound span's value of the attribute, as a number (numbers; may be no value).
    Bound(AttrId),
    /// `own S …` (the program's `owns[k]`): push true; the partners are matched over all
    /// the bindings once each has been judged.
    Own(u32),
    /// Push 1 if the bound span has an ancestor matching the selector.
    BoundWithin(SelId),
    /// Push 1 if the bound span's parent is in the trace and matches the selector.
    BoundChildOf(SelId),
}

/// A per-span instruction of a selector's predicate program.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PredOp {
    /// Push `attr OP consts[k]` (false when the attribute is absent).
    Cmp(AttrId, CmpOp, ConstId),
    /// Push `attr in lists[l]`.
    In(AttrId, ListId),
    /// Push whether `attr` is a string the regex matches.
    Matches(AttrId, RegexId),
    /// Push `attr contains consts[k]`.
    Contains(AttrId, ConstId),
    /// Push `a OP b` for two attributes of the same span.
    CmpAttr(AttrId, CmpOp, AttrId),
    /// Push `a OP b` for the span's attribute `a` and the bound span's `b`.
    CmpBound(AttrId, CmpOp, AttrId),
    /// Push `a contains b` for the span's attribute `a` and the bound span's `b`.
    ContainsBound(AttrId, AttrId),
    /// Push whether the attribute is present.
    Exists(AttrId),
    /// Push whether the attribute is the boolean `true`.
    Truthy(AttrId),
    /// Negate the top.
    Not,
    /// If the top is false, jump (keeping it); else pop it.
    JumpIfFalseOrPop(Jump),
    /// If the top is true, jump (keeping it); else pop it.
    JumpIfTrueOrPop(Jump),
}

/// How a compiled selector finds its candidate spans by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameCode {
    /// The spans with this interned name.
    Exact(NameId),
    /// The spans whose name matches glob `globs[i]`.
    Glob(GlobId),
    /// Every span.
    Any,
}

/// A compiled selector.
#[derive(Debug, Clone)]
pub struct SelectorCode {
    /// Candidate spans by name.
    pub name: NameCode,
    /// The predicate program; empty means every candidate matches.
    pub pred: Vec<PredOp>,
    /// The selector as first written, for disassembly.
    pub text: String,
    /// What it reads of the bound span, when it does (a relation filter, a bound value):
    /// its matches are then found per binding.
    pub bound: Option<BoundCode>,
}

/// The part of a selector that depends on the bound span, split so that the rest is
/// matched once per trace and each binding looks its candidates up (docs/language.md,
/// "Cost").
#[derive(Debug, Clone, PartialEq)]
pub struct BoundCode {
    /// The selector without what reads the bound span: its name and the top-level filters
    /// that do not. Its matches are the candidates.
    pub base: SelId,
    /// `k == $x.j`, a top-level filter: candidates are grouped by `k`'s value and each
    /// binding looks its `j` up (k, j).
    pub join: Option<(AttrId, AttrId)>,
    /// The other filters that read the bound span, run per candidate and binding; `pred`
    /// of the selector holds the whole predicate.
    pub residual: Vec<PredOp>,
    /// The relation to the bound span.
    pub rel: Option<RelCode>,
}

/// A relation filter, compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelCode {
    /// Which relation.
    pub kind: RelKind,
    /// `within D`, in nanoseconds.
    pub window: Option<i64>,
    /// The `since`/`until` selector.
    pub limit: Option<SelId>,
}

/// One rule's program.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// The instructions; the result is the single value left on the stack.
    pub ops: Vec<Op>,
    /// A span name that must be present for the rule to fire; when the trace has none,
    /// the rule is skipped without running.
    pub guard: Option<NameId>,
    /// Selectors whose matches are the trigger spans (docs/language.md, "What a rule
    /// reports") — of `when`, or of the whole condition in the violation form.
    pub triggers: Vec<SelId>,
    /// The trigger selectors when an invariant fired because its `never` part held.
    pub never_triggers: Vec<SelId>,
    /// An invariant: the rule applies only to traces where its `when` part holds
    /// ([`Op::Applies`]). A violation-form rule applies to every trace it judges.
    pub gated: bool,
    /// The binding selector of a per-occurrence rule: the program runs once per span it
    /// matches, and the trigger spans are the bound spans that broke the rule.
    pub bind: Option<SelId>,
    /// The selectors of the rule's `own` terms, matched over all its bindings.
    pub owns: Vec<SelId>,
}

/// Tables shared by every rule of a rule set.
#[derive(Debug, Clone, Default)]
pub struct Code {
    /// Interned span names used by exact selectors.
    pub names: Table<NameId, String>,
    /// Glob patterns: the text and the anchored regex.
    pub globs: Table<GlobId, (String, Regex)>,
    /// Selectors, deduplicated.
    pub selectors: Table<SelId, SelectorCode>,
    /// Attribute references.
    pub attrs: Table<AttrId, Attr>,
    /// Literal constants of predicates.
    pub consts: Table<ConstId, Value>,
    /// Numeric constants of comparisons, and time bounds (nanoseconds).
    pub numbers: Table<NumId, Number>,
    /// Literal lists for `in`.
    pub lists: Table<ListId, Vec<Value>>,
    /// Regexes for `matches`.
    pub regexes: Table<RegexId, Regex>,
}

impl Code {
    /// A readable listing of one rule's program and the selectors it uses.
    pub fn disassemble(&self, prog: &Program) -> String {
        let mut out = String::new();
        let guard = prog
            .guard
            .map(|n| format!("skip unless the trace has a span named {:?}", self.names[n]));
        let _ = writeln!(
            out,
            "program ({} ops){}",
            prog.ops.len(),
            guard.map(|g| format!(", {g}")).unwrap_or_default()
        );
        let sel = |s: &SelId| format!("s{s}");
        if let Some(b) = prog.bind {
            let _ = writeln!(
                out,
                "  runs once per span of {} (the binding); the bound spans that break it trigger",
                sel(&b)
            );
        }
        for (pc, op) in prog.ops.iter().enumerate() {
            let text = match op {
                Op::Has(s) => format!("HAS       {}", sel(s)),
                Op::Count(s) => format!("COUNT     {}", sel(s)),
                Op::Distinct(s, a) => {
                    format!("DISTINCT  {} by {}", sel(s), self.attrs[*a])
                }
                Op::Agg(f, s, a) => format!(
                    "{:<9} {} of {}",
                    f.as_str().to_uppercase(),
                    sel(s),
                    self.attrs[*a]
                ),
                Op::Num(k) => format!("NUM       {}", self.numbers[*k]),
                Op::False => "FALSE".to_string(),
                Op::Cmp(c) => format!("CMP       {c}"),
                Op::Before(a, b) => format!("BEFORE    {} {}", sel(a), sel(b)),
                Op::BeforeWithin(a, b, k) => format!(
                    "BEFORE    {} {} within {}",
                    sel(a),
                    sel(b),
                    crate::lang::value::format_duration(match self.numbers[*k] {
                        Number::Int(ns) => ns,
                        Number::Float(f) => f as i64,
                    })
                ),
                Op::Within(a, b) => format!("WITHIN    {} {}", sel(a), sel(b)),
                Op::ChildOf(a, b) => format!("CHILD_OF  {} {}", sel(a), sel(b)),
                Op::Not => "NOT".to_string(),
                Op::JumpIfFalseOrPop(t) => format!("JMPF      {t:04}"),
                Op::JumpIfTrueOrPop(t) => format!("JMPT      {t:04}"),
                Op::Applies(t) => format!("APPLIES   {t:04}  (else the rule does not apply)"),
                Op::Never => "NEVER     (the never part held: its spans trigger)".to_string(),
                Op::Bound(a) => format!("BOUND     $.{}", self.attrs[*a]),
                Op::Own(k) => format!(
                    "OWN       {}  (matched over all bindings)",
                    prog.owns.get(*k as usize).map(sel).unwrap_or_default()
                ),
                Op::BoundWithin(s) => format!("$WITHIN   {}", sel(s)),
                Op::BoundChildOf(s) => format!("$CHILD_OF {}", sel(s)),
            };
            let _ = writeln!(out, "  {pc:04}  {text}");
        }
        let mut used: Vec<SelId> = prog
            .ops
            .iter()
            .flat_map(|op| match op {
                Op::Has(s)
                | Op::Count(s)
                | Op::Distinct(s, _)
                | Op::Agg(_, s, _)
                | Op::BoundWithin(s)
                | Op::BoundChildOf(s) => vec![*s],
                Op::Before(a, b)
                | Op::BeforeWithin(a, b, _)
                | Op::Within(a, b)
                | Op::ChildOf(a, b) => vec![*a, *b],
                _ => vec![],
            })
            .chain(prog.bind)
            .chain(prog.owns.iter().copied())
            .collect();
        // A bound selector's candidates and scope are selectors too.
        let mut i = 0;
        while i < used.len() {
            if let Some(b) = &self.selectors[used[i]].bound {
                used.push(b.base);
                used.extend(b.rel.and_then(|r| r.limit));
            }
            i += 1;
        }
        used.sort_unstable();
        used.dedup();
        let _ = writeln!(out, "selectors");
        for s in used {
            let code = &self.selectors[s];
            let name = match code.name {
                NameCode::Exact(n) => format!("name == {:?}", self.names[n]),
                NameCode::Glob(g) => format!("name glob {:?}", self.globs[g].0),
                NameCode::Any => "any name".to_string(),
            };
            let trig = match (prog.triggers.contains(&s), prog.never_triggers.contains(&s)) {
                (true, true) => "  (trigger)",
                (true, false)
                    if prog.never_triggers.is_empty() || prog.triggers == prog.never_triggers =>
                {
                    "  (trigger)"
                }
                (true, false) => "  (trigger when `always` fails)",
                (false, true) => "  (trigger when `never` holds)",
                (false, false) => "",
            };
            let _ = writeln!(out, "  s{s}: {}  — {name}{trig}", code.text);
            if let Some(b) = &code.bound {
                let mut parts = vec![format!("candidates s{}", b.base)];
                if let Some((k, j)) = b.join {
                    parts.push(format!(
                        "looked up by {} == $.{}",
                        self.attrs[k], self.attrs[j]
                    ));
                }
                if let Some(r) = b.rel {
                    let mut text = format!("{:?} the bound span", r.kind).to_lowercase();
                    if let Some(d) = r.window {
                        text.push_str(&format!(
                            " within {}",
                            crate::lang::value::format_duration(d)
                        ));
                    }
                    if let Some(l) = r.limit {
                        let word = if r.kind == RelKind::After {
                            "until"
                        } else {
                            "since"
                        };
                        text.push_str(&format!(" {word} s{l}"));
                    }
                    parts.push(text);
                }
                let _ = writeln!(out, "        per binding: {}", parts.join(", "));
            }
            for (pc, op) in code.pred.iter().enumerate() {
                let text = match op {
                    PredOp::Cmp(a, c, k) => format!(
                        "CMP       {} {c} {}",
                        self.attrs[*a],
                        show(&self.consts[*k])
                    ),
                    PredOp::In(a, l) => {
                        let items: Vec<String> = self.lists[*l].iter().map(show).collect();
                        format!("IN        {} [{}]", self.attrs[*a], items.join(", "))
                    }
                    PredOp::Matches(a, r) => format!(
                        "MATCHES   {} /{}/",
                        self.attrs[*a],
                        self.regexes[*r].as_str()
                    ),
                    PredOp::Contains(a, k) => {
                        format!("CONTAINS  {} {}", self.attrs[*a], show(&self.consts[*k]))
                    }
                    PredOp::CmpAttr(a, c, b) => {
                        format!("CMPATTR   {} {c} {}", self.attrs[*a], self.attrs[*b])
                    }
                    PredOp::CmpBound(a, c, b) => {
                        format!("CMPBOUND  {} {c} $.{}", self.attrs[*a], self.attrs[*b])
                    }
                    PredOp::ContainsBound(a, b) => {
                        format!("CONTAINS  {} $.{}", self.attrs[*a], self.attrs[*b])
                    }
                    PredOp::Exists(a) => format!("EXISTS    {}", self.attrs[*a]),
                    PredOp::Truthy(a) => format!("TRUE      {}", self.attrs[*a]),
                    PredOp::Not => "NOT".to_string(),
                    PredOp::JumpIfFalseOrPop(t) => format!("JMPF      {t:04}"),
                    PredOp::JumpIfTrueOrPop(t) => format!("JMPT      {t:04}"),
                };
                let _ = writeln!(out, "        {pc:04}  {text}");
            }
        }
        out
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("{:?}", s.as_ref()),
        other => format!("{other} ({})", other.type_name()),
    }
}
