//! The bytecode VM: judges a trace against compiled programs.
//!
//! [`View`] indexes one trace for one rule set: spans by interned name (one hash lookup
//! per span), parent links (built on first use), and each selector's matches (computed on
//! first use and shared by every rule that names the selector).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::lang::bytecode::{
    AttrId, Code, GlobId, Id, NameCode, NameId, Op, PredOp, Program, SelId, Table,
};
use crate::lang::hir::{Attr, Intrinsic};
use crate::lang::value::{self, Aggregate, Number, ValueRef};
use crate::trace::projected::{KeyId, Projection, Trace};

/// Whether a rule fires on a trace, and which spans triggered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The rule fires.
    pub fired: bool,
    /// The rule applies to the trace: an invariant's `when` part holds; a violation-form
    /// rule applies to every trace. A rule that fires applies.
    pub applies: bool,
    /// Indexes into `trace.spans` of the trigger spans, earliest start first, ties by span
    /// id; empty when the rule does not fire.
    pub triggers: Vec<usize>,
}

/// What the VM needs beside the code to read a projected trace: span names to name ids,
/// and each attribute reference to its key in the rule set's [`Projection`].
#[derive(Debug, Clone)]
pub struct Lookup {
    /// foldhash: a lookup per span judged; seeded per process.
    names: HashMap<Box<str>, NameId, foldhash::fast::RandomState>,
    keys: Table<AttrId, Option<KeyId>>,
    projection: Arc<Projection>,
}

impl Lookup {
    /// The lookup for `code` over traces projected with `projection`.
    pub fn new(code: &Code, projection: Arc<Projection>) -> Lookup {
        let names = code
            .names
            .enumerate()
            .map(|(i, n)| (n.as_str().into(), i))
            .collect();
        let keys = code.attrs.map(|a| match a {
            Attr::Any(k) | Attr::Span(k) => projection.key(k),
            Attr::Resource(_) | Attr::Intrinsic(_) => None,
        });
        Lookup {
            names,
            keys,
            projection,
        }
    }

    /// The projection traces must be decoded for.
    pub fn projection(&self) -> &Arc<Projection> {
        &self.projection
    }
}

/// One trace, indexed for one rule set's [`Code`].
pub struct View<'a> {
    code: &'a Code,
    lookup: &'a Lookup,
    trace: &'a Trace,
    /// Span indexes per interned name.
    by_name: Table<NameId, Vec<u32>>,
    /// Span indexes per glob, filled on first use.
    by_glob: Table<GlobId, Option<Vec<u32>>>,
    /// Parent index per span, filled on first use.
    parents: Option<Vec<Option<u32>>>,
    /// Matches per selector, in span order, filled on first use.
    matched: Table<SelId, Option<Vec<u32>>>,
    /// Facts about the trace as a whole, for `trace:` intrinsics: computed on first use.
    facts: OnceCell<TraceFacts>,
    stack: Vec<i64>,
    /// Numeric terms awaiting their comparison; `None` is "no value".
    nums: Vec<Option<Number>>,
    /// Set by [`Op::Applies`] when the program being run passes its `when` part.
    applied: bool,
    /// Set by [`Op::Never`] when the program's `never` part holds.
    never_held: bool,
}

impl<'a> View<'a> {
    /// Indexes a trace: one pass over its spans. The trace must be projected with
    /// `lookup`'s projection (see [`Trace::reproject`]).
    pub fn new(code: &'a Code, lookup: &'a Lookup, trace: &'a Trace) -> View<'a> {
        debug_assert!(Arc::ptr_eq(trace.projection(), &lookup.projection));
        let mut by_name = code.names.beside(Vec::new());
        for (i, span) in trace.spans.iter().enumerate() {
            if let Some(&id) = lookup.names.get(trace.name(span)) {
                by_name[id].push(i as u32);
            }
        }
        View {
            code,
            lookup,
            trace,
            by_name,
            by_glob: code.globs.beside(None),
            parents: None,
            matched: code.selectors.beside(None),
            facts: OnceCell::new(),
            stack: Vec::with_capacity(16),
            nums: Vec::with_capacity(4),
            applied: false,
            never_held: false,
        }
    }

    /// Runs one rule's program; trigger spans are filled in only when it fires.
    pub fn run(&mut self, prog: &Program) -> Verdict {
        if let Some(g) = prog.guard {
            if self.by_name[g].is_empty() {
                return Verdict {
                    fired: false,
                    applies: !prog.gated,
                    triggers: Vec::new(),
                };
            }
        }
        self.applied = !prog.gated;
        self.never_held = false;
        let fired = self.exec(&prog.ops) != 0;
        let applies = self.applied;
        let mut triggers = Vec::new();
        if fired {
            let selectors = if self.never_held {
                &prog.never_triggers
            } else {
                &prog.triggers
            };
            for &s in selectors {
                triggers.extend(self.matches(s).iter().map(|&i| i as usize));
            }
            let spans = &self.trace.spans;
            triggers.sort_by_key(|&i| (spans[i].start_unix_nano, spans[i].span_id, i));
            triggers.dedup();
        }
        Verdict {
            fired,
            applies,
            triggers,
        }
    }

    /// The span a rule's verdict on this trace is attributed to: the first trigger span
    /// when it fired, else the earliest span its trigger selectors match (the span a
    /// signal would have named), else none. Compliance evidence groups by this span's day
    /// and resource.
    pub fn subject(&mut self, prog: &Program, verdict: &Verdict) -> Option<usize> {
        if let Some(&first) = verdict.triggers.first() {
            return Some(first);
        }
        let mut best: Option<usize> = None;
        let spans = &self.trace.spans;
        for &s in &prog.triggers {
            for &i in self.matches(s).iter() {
                let i = i as usize;
                let key = |j: usize| (spans[j].start_unix_nano, spans[j].span_id, j);
                if best.is_none_or(|b| key(i) < key(b)) {
                    best = Some(i);
                }
            }
        }
        best
    }

    fn exec(&mut self, ops: &[Op]) -> i64 {
        self.stack.clear();
        self.nums.clear();
        let mut pc = 0;
        while pc < ops.len() {
            match ops[pc] {
                Op::Has(s) => {
                    let v = !self.matches(s).is_empty();
                    self.stack.push(v as i64);
                }
                Op::Count(s) => {
                    let v = self.matches(s).len() as i64;
                    self.nums.push(Some(Number::Int(v)));
                }
                Op::Distinct(s, a) => {
                    let v = self.distinct(s, a);
                    self.nums.push(Some(Number::Int(v)));
                }
                Op::Agg(f, s, a) => {
                    let v = self.aggregate(f, s, a);
                    self.nums.push(v);
                }
                Op::Num(k) => self.nums.push(Some(self.code.numbers[k])),
                Op::False => self.stack.push(0),
                Op::Cmp(op) => {
                    let b = self
                        .nums
                        .pop()
                        .expect("the compiler emits balanced programs");
                    let a = self
                        .nums
                        .pop()
                        .expect("the compiler emits balanced programs");
                    self.stack.push(value::compare_numbers(a, op, b) as i64);
                }
                Op::Before(a, b) => {
                    let v =
                        matches!((self.earliest(a), self.earliest(b)), (Some(x), Some(y)) if x < y);
                    self.stack.push(v as i64);
                }
                Op::BeforeWithin(a, b, k) => {
                    let bound = match self.code.numbers[k] {
                        Number::Int(ns) => ns.max(0) as u64,
                        Number::Float(f) => f.max(0.0) as u64,
                    };
                    let v = self.before_within(a, b, bound);
                    self.stack.push(v as i64);
                }
                Op::Never => self.never_held = self.top() != 0,
                Op::Within(a, b) => {
                    let v = self.within(a, b, false);
                    self.stack.push(v as i64);
                }
                Op::ChildOf(a, b) => {
                    let v = self.within(a, b, true);
                    self.stack.push(v as i64);
                }
                Op::Not => {
                    let v = self.pop();
                    self.stack.push((v == 0) as i64);
                }
                Op::JumpIfFalseOrPop(t) => {
                    if self.top() == 0 {
                        pc = t.index();
                        continue;
                    }
                    self.pop();
                }
                Op::JumpIfTrueOrPop(t) => {
                    if self.top() != 0 {
                        pc = t.index();
                        continue;
                    }
                    self.pop();
                }
                Op::Applies(t) => {
                    if self.top() == 0 {
                        pc = t.index();
                        continue;
                    }
                    self.pop();
                    self.applied = true;
                }
            }
            pc += 1;
        }
        self.pop()
    }

    fn pop(&mut self) -> i64 {
        self.stack
            .pop()
            .expect("the compiler emits balanced programs")
    }

    fn top(&self) -> i64 {
        *self
            .stack
            .last()
            .expect("the compiler emits balanced programs")
    }

    /// The spans matching selector `s`, in span order.
    fn matches(&mut self, s: SelId) -> &[u32] {
        if self.matched[s].is_none() {
            let sel = &self.code.selectors[s];
            let candidates: Cow<[u32]> = match sel.name {
                NameCode::Exact(n) => Cow::Borrowed(&self.by_name[n]),
                NameCode::Glob(g) => {
                    if self.by_glob[g].is_none() {
                        let re = &self.code.globs[g].1;
                        let hits = (0..self.trace.spans.len() as u32)
                            .filter(|&i| {
                                re.is_match(self.trace.name(&self.trace.spans[i as usize]))
                            })
                            .collect();
                        self.by_glob[g] = Some(hits);
                    }
                    Cow::Borrowed(self.by_glob[g].as_deref().expect("just filled"))
                }
                NameCode::Any => Cow::Owned((0..self.trace.spans.len() as u32).collect()),
            };
            let hits: Vec<u32> = if sel.pred.is_empty() {
                candidates.into_owned()
            } else {
                let mut stack = Vec::with_capacity(8);
                candidates
                    .iter()
                    .copied()
                    .filter(|&i| {
                        run_pred(
                            self.code,
                            self.lookup,
                            &sel.pred,
                            self.trace,
                            &self.facts,
                            i as usize,
                            &mut stack,
                        )
                    })
                    .collect()
            };
            self.matched[s] = Some(hits);
        }
        self.matched[s].as_deref().expect("just filled")
    }

    fn earliest(&mut self, s: SelId) -> Option<u64> {
        let trace = self.trace;
        self.matches(s)
            .iter()
            .map(|&i| trace.spans[i as usize].start_unix_nano)
            .min()
    }

    /// `A before B within D`: both match, and each `B` starts after some `A` by at most
    /// `bound`: the nearest `A` starting strictly before it decides.
    fn before_within(&mut self, a: SelId, b: SelId, bound: u64) -> bool {
        let trace = self.trace;
        let mut a_starts: Vec<u64> = self
            .matches(a)
            .iter()
            .map(|&i| trace.spans[i as usize].start_unix_nano)
            .collect();
        if a_starts.is_empty() {
            return false;
        }
        a_starts.sort_unstable();
        let b_spans = self.matches(b);
        !b_spans.is_empty()
            && b_spans.iter().all(|&i| {
                let start = trace.spans[i as usize].start_unix_nano;
                let before = a_starts.partition_point(|&x| x < start);
                before > 0 && start - a_starts[before - 1] <= bound
            })
    }

    /// `sum`/`min`/`max`/`avg` of an attribute over the matching spans.
    fn aggregate(&mut self, f: Aggregate, s: SelId, a: AttrId) -> Option<Number> {
        let (code, lookup, trace) = (self.code, self.lookup, self.trace);
        self.matches(s);
        let facts = &self.facts;
        let spans = self.matched[s].as_deref().expect("just filled");
        value::aggregate(
            f,
            spans
                .iter()
                .filter_map(|&i| attr_value(code, lookup, trace, facts, i as usize, a))
                .filter_map(Number::of),
        )
    }

    fn distinct(&mut self, s: SelId, a: AttrId) -> i64 {
        let (code, lookup, trace) = (self.code, self.lookup, self.trace);
        self.matches(s);
        let facts = &self.facts;
        let keys: HashSet<_> = self.matched[s]
            .as_deref()
            .expect("just filled")
            .iter()
            .filter_map(|&i| attr_value(code, lookup, trace, facts, i as usize, a))
            .map(|v| v.distinct_key())
            .collect();
        keys.len() as i64
    }

    /// `within` (any ancestor) or, with `direct`, `child_of` (the parent). Linear in the
    /// trace: each span's answer is found once and shared by every span below it.
    fn within(&mut self, a: SelId, b: SelId, direct: bool) -> bool {
        let n = self.trace.spans.len();
        let mut in_b = vec![false; n];
        for &i in self.matches(b) {
            in_b[i as usize] = true;
        }
        let a_spans = self.matches(a).to_vec();
        let parents = self.parents();
        if direct {
            return a_spans
                .iter()
                .all(|&i| parents[i as usize].is_some_and(|p| in_b[p as usize]));
        }
        // Whether span i has an ancestor in B: unknown, on the path being walked, or known.
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            Unknown,
            Walking,
            Known(bool),
        }
        let mut state = vec![State::Unknown; n];
        let mut path = Vec::new();
        let mut answer = |start: usize| -> bool {
            let mut cur = start;
            let result = loop {
                if let State::Known(r) = state[cur] {
                    break r;
                }
                state[cur] = State::Walking;
                path.push(cur);
                match parents[cur] {
                    None => break false,
                    Some(p) if in_b[p as usize] => break true,
                    // A parent cycle without a B span in it: nobody on it has one above.
                    Some(p) if state[p as usize] == State::Walking => break false,
                    Some(p) => cur = p as usize,
                }
            };
            for i in path.drain(..) {
                state[i] = State::Known(result);
            }
            result
        };
        a_spans.iter().all(|&i| answer(i as usize))
    }

    fn parents(&mut self) -> &[Option<u32>] {
        if self.parents.is_none() {
            let ids: HashMap<_, u32> = self
                .trace
                .spans
                .iter()
                .enumerate()
                .map(|(i, s)| (s.span_id, i as u32))
                .rev()
                .collect();
            let parents = self
                .trace
                .spans
                .iter()
                .map(|s| s.parent_span_id.and_then(|p| ids.get(&p).copied()))
                .collect();
            self.parents = Some(parents);
        }
        self.parents.as_deref().expect("just filled")
    }
}

fn run_pred(
    code: &Code,
    lookup: &Lookup,
    ops: &[PredOp],
    trace: &Trace,
    facts: &OnceCell<TraceFacts>,
    span: usize,
    stack: &mut Vec<bool>,
) -> bool {
    stack.clear();
    let get = |a: AttrId| attr_value(code, lookup, trace, facts, span, a);
    let mut pc = 0;
    while pc < ops.len() {
        let v = match ops[pc] {
            PredOp::Cmp(a, op, k) => get(a).is_some_and(|v| value::compare(v, op, &code.consts[k])),
            PredOp::In(a, l) => get(a).is_some_and(|v| value::is_in(v, &code.lists[l])),
            PredOp::Matches(a, r) => {
                get(a).is_some_and(|v| v.as_str().is_some_and(|s| code.regexes[r].is_match(s)))
            }
            PredOp::Contains(a, k) => get(a).is_some_and(|v| value::contains(v, &code.consts[k])),
            PredOp::CmpAttr(a, op, b) => {
                matches!((get(a), get(b)), (Some(x), Some(y)) if value::compare(x, op, y))
            }
            PredOp::Exists(a) => get(a).is_some(),
            PredOp::Truthy(a) => get(a).is_some_and(value::is_true),
            PredOp::Not => {
                let top = stack.pop().expect("balanced");
                !top
            }
            PredOp::JumpIfFalseOrPop(t) => {
                if !*stack.last().expect("balanced") {
                    pc = t.index();
                    continue;
                }
                stack.pop();
                pc += 1;
                continue;
            }
            PredOp::JumpIfTrueOrPop(t) => {
                if *stack.last().expect("balanced") {
                    pc = t.index();
                    continue;
                }
                stack.pop();
                pc += 1;
                continue;
            }
        };
        stack.push(v);
        pc += 1;
    }
    stack.pop().expect("balanced")
}

/// What `trace:` intrinsics read: found by one pass over the trace, on first use, instead
/// of a pass per span evaluated.
#[derive(Debug, Clone, Copy)]
pub struct TraceFacts {
    root: Option<usize>,
    duration: i64,
}

impl TraceFacts {
    fn of(trace: &Trace) -> TraceFacts {
        TraceFacts {
            root: trace.root(),
            duration: trace.duration_nanos(),
        }
    }
}

/// An attribute's value on a span, borrowed where the trace holds it.
fn attr_value<'t>(
    code: &Code,
    lookup: &Lookup,
    trace: &'t Trace,
    facts: &OnceCell<TraceFacts>,
    span: usize,
    attr: AttrId,
) -> Option<ValueRef<'t>> {
    let trace_facts = || *facts.get_or_init(|| TraceFacts::of(trace));
    let s = &trace.spans[span];
    let resource =
        |k: &str| crate::trace::lookup(&trace.resource_of(s).attributes, k).map(ValueRef::from);
    let key = lookup.keys[attr];
    match &code.attrs[attr] {
        Attr::Any(k) => key
            .and_then(|key| trace.attr(s, key))
            .or_else(|| resource(k)),
        Attr::Span(_) => key.and_then(|key| trace.attr(s, key)),
        Attr::Resource(k) => resource(k),
        Attr::Intrinsic(i) => Some(match i {
            Intrinsic::Name => ValueRef::Str(trace.name(s)),
            Intrinsic::Duration => ValueRef::Duration(s.duration_nanos()),
            Intrinsic::Status => ValueRef::Str(s.status.as_str()),
            Intrinsic::StatusMessage => ValueRef::Str(trace.status_message(s)),
            Intrinsic::Kind => ValueRef::Str(s.kind.as_str()),
            Intrinsic::RootName => ValueRef::Str(trace.name(&trace.spans[trace_facts().root?])),
            Intrinsic::RootService => ValueRef::Str(
                trace
                    .resource_of(&trace.spans[trace_facts().root?])
                    .service_name(),
            ),
            Intrinsic::TraceDuration => ValueRef::Duration(trace_facts().duration),
        }),
    }
}
