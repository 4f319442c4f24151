//! The bytecode VM: judges a trace against compiled programs.
//!
//! [`View`] indexes one trace for one rule set: spans by interned name (one hash lookup
//! per span), parent links (built on first use), and each selector's matches (computed on
//! first use and shared by every rule that names the selector).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::eval::occurrence::{bucket, match_partners, Claim, Family, JoinKey, Window};
use crate::lang::bytecode::{
    AttrId, BoundCode, Code, GlobId, Id, NameCode, NameId, Op, PredOp, Program, SelId, Table,
};
use crate::lang::hir::{Attr, Intrinsic, RelKind};
use crate::lang::value::{self, Aggregate, Number, ValueRef};
use crate::trace::projected::{KeyId, Projection, Span, Trace};
use crate::trace::SpanId;

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
    /// The bound span the program is running for, in a per-occurrence rule.
    binding: Option<u32>,
    /// Per bound selector: its candidates, looked up by start and join value; built on
    /// first use.
    bound_index: Table<SelId, Option<BoundIndex<'a>>>,
    /// Per index slot and bound attribute of a join: each binding's [`Source`], found on
    /// first use and read again by every term and `own` of the rule that joins alike.
    sources: Vec<Sources>,
    /// Per bound selector with a join: its entry in `sources`, found on first use (the
    /// table is empty until a rule needs it, so that trace-level rules never pay for it).
    sources_of: Table<SelId, Option<usize>>,
    /// Per bound selector: its matches for one binding (the binding, the matches).
    bound_matched: Table<SelId, Option<(u32, Vec<u32>)>>,
    /// Per selector: whether each span matches it, built on first use.
    member: Table<SelId, Option<Vec<bool>>>,
    /// Per selector: whether each span has an ancestor matching it, built on first use.
    below: Table<SelId, Option<Vec<bool>>>,
    /// Children per span, built on first use.
    children: Option<Vec<Vec<u32>>>,
    /// Per plain `since`/`until` selector: where its last search ended. Bindings are
    /// judged in start order, so the next search starts there.
    scope_at: Table<SelId, usize>,
    /// Per bound selector with a time relation, per join group (then one for every
    /// candidate): where its last window began and ended. Bindings are judged in start
    /// order, so the next window is searched from there. Empty until a rule needs it.
    window_at: Table<SelId, Vec<[u32; 2]>>,
    /// Which spans a walk of the tree has visited: those holding the current stamp.
    seen: Vec<u32>,
    stamp: u32,
}

/// Where a bound selector's candidates for one binding lie in its index.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// Nowhere: the join cannot hold (the bound value is missing or has no group, or
    /// nothing has one).
    Nothing,
    /// Every candidate; with `check_join`, the join compared span by span (values of
    /// several kinds, where `==` is not an exact key).
    All { check_join: bool },
    /// The join group of the bound value's key, by its number.
    Group(u32),
}

/// Each binding's [`Source`] in one index slot for one bound attribute, by span index.
struct Sources {
    slot: SelId,
    attr: AttrId,
    of: Vec<Option<Source>>,
}

/// A bound selector's candidates (the matches of its base), in start order (ties: span
/// id, then index), and grouped by the value of its join attribute when it has one.
#[derive(Clone)]
struct BoundIndex<'t> {
    /// The attribute the groups are keyed by.
    join: Option<AttrId>,
    all: Run,
    family: Family,
    /// Each join key's group number.
    keys: KeyMap<'t>,
    /// The candidates with a key, group after group, each group in start order.
    grouped: Run,
    /// Where each group begins in `grouped`, then where the last one ends.
    bounds: Vec<u32>,
}

impl<'t> BoundIndex<'t> {
    /// The index of candidates `all` (in start order), grouped by the key of `value`.
    fn new(
        join: Option<AttrId>,
        all: Run,
        value: impl Fn(u32) -> Option<ValueRef<'t>>,
    ) -> BoundIndex<'t> {
        let mut family = Family::Empty;
        let mut keyed = Vec::with_capacity(if join.is_some() { all.spans.len() } else { 0 });
        if join.is_some() {
            for (&i, &start) in all.spans.iter().zip(&all.starts) {
                let Some(v) = value(i) else {
                    continue;
                };
                family = family.join(Family::of(v));
                if let Some(key) = JoinKey::of(v) {
                    keyed.push((key, (i, start)));
                }
            }
        }
        let (keys, numbered) = KeyMap::number(keyed);
        let (members, bounds) = bucket(&numbered, keys.len());
        let grouped = Run {
            spans: members.iter().map(|&(i, _)| i).collect(),
            starts: members.iter().map(|&(_, start)| start).collect(),
        };
        BoundIndex {
            join,
            all,
            family,
            keys,
            grouped,
            bounds,
        }
    }

    /// How many join groups there are.
    fn groups(&self) -> usize {
        self.bounds.len() - 1
    }

    /// The candidates of join group `g`.
    fn group(&self, g: u32) -> Part<'_> {
        let g = g as usize;
        self.grouped
            .part(self.bounds[g] as usize..self.bounds[g + 1] as usize)
    }

    /// The candidates a [`Source`] names.
    fn part(&self, source: Source) -> Part<'_> {
        match source {
            Source::Nothing => Part::EMPTY,
            Source::All { .. } => self.all.part(0..self.all.spans.len()),
            Source::Group(g) => self.group(g),
        }
    }
}

/// Join keys to their group numbers: a table for integers of a narrow range (no hashing),
/// a hash map otherwise.
#[derive(Clone)]
enum KeyMap<'t> {
    /// Integer keys `min..min + groups.len()`: each one's group, or `NO_GROUP`.
    Dense {
        min: i64,
        groups: Vec<u32>,
        len: u32,
    },
    /// Any keys.
    Hashed(HashMap<JoinKey<'t>, u32, foldhash::fast::RandomState>),
}

/// A [`KeyMap::Dense`] entry no key has.
const NO_GROUP: u32 = u32::MAX;

impl<'t> KeyMap<'t> {
    /// Numbers the keys of `items` by first appearance: the map, and each item with its
    /// key's number.
    fn number<T: Copy>(items: Vec<(JoinKey<'t>, T)>) -> (KeyMap<'t>, Vec<(u32, T)>) {
        let mut map = match KeyMap::int_range(&items) {
            Some((min, width)) => KeyMap::Dense {
                min,
                groups: vec![NO_GROUP; width],
                len: 0,
            },
            None => KeyMap::Hashed(HashMap::default()),
        };
        let numbered = items
            .into_iter()
            .map(|(key, item)| (map.insert(key), item))
            .collect();
        (map, numbered)
    }

    /// The least key and the width of the range when every key is an integer and the
    /// range is at most a few times the number of keys (so the table stays small).
    fn int_range<T>(items: &[(JoinKey<'t>, T)]) -> Option<(i64, usize)> {
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for (key, _) in items {
            let JoinKey::Int(i) = *key else {
                return None;
            };
            (min, max) = (min.min(i), max.max(i));
        }
        let width = (max as i128 - min as i128 + 1).max(0);
        (width <= 4 * items.len() as i128 + 64).then_some((min, width as usize))
    }

    /// The number of `key`, numbering it next when it is new.
    fn insert(&mut self, key: JoinKey<'t>) -> u32 {
        match self {
            KeyMap::Dense { min, groups, len } => {
                let JoinKey::Int(i) = key else {
                    unreachable!("a dense map holds integers only");
                };
                let g = &mut groups[(i - *min) as usize];
                if *g == NO_GROUP {
                    (*g, *len) = (*len, *len + 1);
                }
                *g
            }
            KeyMap::Hashed(map) => {
                let next = map.len() as u32;
                *map.entry(key).or_insert(next)
            }
        }
    }

    /// The number of `key`, if it has one.
    fn get(&self, key: JoinKey<'_>) -> Option<u32> {
        match self {
            KeyMap::Dense { min, groups, .. } => {
                let JoinKey::Int(i) = key else {
                    return None;
                };
                let at = usize::try_from(i.checked_sub(*min)?).ok()?;
                groups.get(at).copied().filter(|&g| g != NO_GROUP)
            }
            KeyMap::Hashed(map) => map.get(&key).copied(),
        }
    }

    /// How many keys have a number.
    fn len(&self) -> usize {
        match self {
            KeyMap::Dense { len, .. } => *len as usize,
            KeyMap::Hashed(map) => map.len(),
        }
    }
}

/// Spans in start order, their starts beside them: a window is two binary searches over
/// contiguous numbers.
#[derive(Clone, Default)]
struct Run {
    spans: Vec<u32>,
    starts: Vec<u64>,
}

impl Run {
    /// Spans `of` (indexes into `spans`) in start order, as [`start_order`] has it.
    fn in_start_order(spans: &[Span], mut of: Vec<u32>) -> Run {
        let starts_of = |of: &[u32]| -> Vec<u64> {
            of.iter()
                .map(|&i| spans[i as usize].start_unix_nano)
                .collect()
        };
        let mut starts = starts_of(&of);
        // Strictly rising starts need no tie-break: one pass in the common case.
        if !starts.is_sorted_by(|a, b| a < b) {
            of.sort_by_key(|&i| start_order(spans, i as usize));
            starts = starts_of(&of);
        }
        Run { spans: of, starts }
    }

    /// Spans `r`.
    fn part(&self, r: std::ops::Range<usize>) -> Part<'_> {
        Part {
            spans: &self.spans[r.clone()],
            starts: &self.starts[r],
        }
    }
}

/// A stretch of a [`Run`].
#[derive(Clone, Copy)]
struct Part<'r> {
    spans: &'r [u32],
    starts: &'r [u64],
}

impl Part<'_> {
    /// No spans.
    const EMPTY: Part<'static> = Part {
        spans: &[],
        starts: &[],
    };
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
            binding: None,
            bound_index: code.selectors.beside(None),
            sources: Vec::new(),
            sources_of: Table::new(),
            bound_matched: code.selectors.beside(None),
            member: code.selectors.beside(None),
            below: code.selectors.beside(None),
            children: None,
            scope_at: code.selectors.beside(0),
            window_at: Table::new(),
            seen: Vec::new(),
            stamp: 0,
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
        if let Some(bind) = prog.bind {
            return self.run_per_occurrence(prog, bind);
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
            triggers.sort_by_key(|&i| start_order(spans, i));
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
                if best.is_none_or(|b| start_order(spans, i) < start_order(spans, b)) {
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
                    let v = if self.is_bound(s) {
                        self.bound_scan(s, true) > 0
                    } else {
                        !self.matches(s).is_empty()
                    };
                    self.stack.push(v as i64);
                }
                Op::Count(s) => {
                    let v = if self.is_bound(s) {
                        self.bound_scan(s, false)
                    } else {
                        self.matches(s).len()
                    } as i64;
                    self.nums.push(Some(Number::Int(v)));
                }
                Op::Bound(a) => {
                    let v = self
                        .binding
                        .and_then(|x| self.bound_value(a, x))
                        .and_then(Number::of);
                    self.nums.push(v);
                }
                Op::Own(_) => self.stack.push(1),
                Op::BoundWithin(s) => {
                    let v = self
                        .binding
                        .is_some_and(|x| self.has_ancestor_in(x as usize, s));
                    self.stack.push(v as i64);
                }
                Op::BoundChildOf(s) => {
                    let v = self.binding.is_some_and(|x| {
                        let parent = self.parents()[x as usize];
                        parent.is_some_and(|p| self.is_member(s, p as usize))
                    });
                    self.stack.push(v as i64);
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

    /// The spans matching selector `s`, in span order (for a bound selector: for the
    /// current binding).
    fn matches(&mut self, s: SelId) -> &[u32] {
        if self.is_bound(s) {
            let x = self.binding.unwrap_or(u32::MAX);
            if !matches!(&self.bound_matched[s], Some((b, _)) if *b == x) {
                let mut hits = Vec::new();
                self.bound_each(s, &mut |i| {
                    hits.push(i);
                    true
                });
                hits.sort_unstable();
                self.bound_matched[s] = Some((x, hits));
            }
            return &self.bound_matched[s].as_ref().expect("just filled").1;
        }
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
                            None,
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
        let spans = self.matched_now(s);
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
        let keys: HashSet<_> = self
            .matched_now(s)
            .iter()
            .filter_map(|&i| attr_value(code, lookup, trace, facts, i as usize, a))
            .map(|v| v.distinct_key())
            .collect();
        keys.len() as i64
    }

    /// `within` (any ancestor) or, with `direct`, `child_of` (the parent). Linear in the
    /// trace: each span's answer is found once and shared by every span below it.
    fn within(&mut self, a: SelId, b: SelId, direct: bool) -> bool {
        let a_spans = self.matches(a).to_vec();
        if direct {
            return a_spans.iter().all(|&i| {
                let parent = self.parents()[i as usize];
                parent.is_some_and(|p| self.is_member(b, p as usize))
            });
        }
        if self.is_bound(b) {
            // Matched anew for each binding: found for every span at once, not kept.
            let flags = self.ancestor_flags(b);
            return a_spans.iter().all(|&i| flags[i as usize]);
        }
        a_spans.iter().all(|&i| self.has_ancestor_in(i as usize, b))
    }

    /// The matches [`View::matches`] last filled for `s`.
    fn matched_now(&self, s: SelId) -> &[u32] {
        if self.is_bound(s) {
            &self.bound_matched[s].as_ref().expect("filled by matches").1
        } else {
            self.matched[s].as_deref().expect("filled by matches")
        }
    }

    /// Whether selector `s` reads the bound span.
    fn is_bound(&self, s: SelId) -> bool {
        self.code.selectors[s].bound.is_some()
    }

    /// A per-occurrence rule: the program runs once per bound span, in start order; the
    /// `own` terms are matched over the bindings that apply; the bound spans that broke the
    /// rule are its trigger spans.
    fn run_per_occurrence(&mut self, prog: &Program, bind: SelId) -> Verdict {
        // The binding selector's spans in start order, as its index holds them (shared
        // with a `since`/`until` on the same selector).
        let slot = self.index_of(bind);
        let bound = self.bound_index[slot]
            .as_ref()
            .expect("just built")
            .all
            .spans
            .clone();
        // Which spans broke the rule, by index: the triggers are then the bound spans
        // marked, already in start order.
        let mut broke = vec![false; self.trace.spans.len()];
        let mut applying = Vec::new();
        for &x in &bound {
            self.binding = Some(x);
            self.applied = false;
            self.never_held = false;
            let fired = self.exec(&prog.ops) != 0;
            if self.applied {
                applying.push(x);
                broke[x as usize] |= fired;
            }
        }
        self.binding = None;
        for &own in &prog.owns {
            for x in self.own_leftovers(own, &applying) {
                broke[x as usize] = true;
            }
        }
        let triggers: Vec<usize> = bound
            .iter()
            .map(|&x| x as usize)
            .filter(|&x| broke[x])
            .collect();
        Verdict {
            fired: !triggers.is_empty(),
            applies: !applying.is_empty(),
            triggers,
        }
    }

    /// Whether span `i` matches selector `s` (for the current binding, if it is bound).
    fn is_member(&mut self, s: SelId, i: usize) -> bool {
        let code: &'a Code = self.code;
        if let Some(b) = &code.selectors[s].bound {
            return self.binding.is_some_and(|x| {
                self.is_member(b.base, i)
                    && self.joined(b, i as u32, x)
                    && self.residual(b, i as u32, x)
                    && b.rel.is_none_or(|r| self.related(r, i as u32, x))
            });
        }
        if self.member[s].is_none() {
            let mut flags = vec![false; self.trace.spans.len()];
            for &m in self.matches(s) {
                flags[m as usize] = true;
            }
            self.member[s] = Some(flags);
        }
        self.member[s].as_ref().expect("just filled")[i]
    }

    /// Whether span `i` has an ancestor matching `s`: for a plain selector found once per
    /// trace for every span (as `within`), for a bound one by walking up.
    fn has_ancestor_in(&mut self, i: usize, s: SelId) -> bool {
        if self.is_bound(s) {
            let n = self.trace.spans.len();
            let mut cur = i;
            for _ in 0..n {
                let parent = self.parents()[cur];
                match parent {
                    Some(p) if self.is_member(s, p as usize) => return true,
                    Some(p) => cur = p as usize,
                    None => return false,
                }
            }
            return false;
        }
        if self.below[s].is_none() {
            let flags = self.ancestor_flags(s);
            self.below[s] = Some(flags);
        }
        self.below[s].as_ref().expect("just filled")[i]
    }

    /// For every span, whether it has an ancestor matching `b`: each answer found once
    /// and shared by every span below it (parent cycles answer false).
    fn ancestor_flags(&mut self, b: SelId) -> Vec<bool> {
        let n = self.trace.spans.len();
        let mut in_b = vec![false; n];
        for &i in self.matches(b) {
            in_b[i as usize] = true;
        }
        let parents = self.parents();
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            Unknown,
            Walking,
            Known(bool),
        }
        let mut state = vec![State::Unknown; n];
        let mut path = Vec::new();
        for start in 0..n {
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
        }
        state.into_iter().map(|s| s == State::Known(true)).collect()
    }

    /// The bound span's value of attribute `a`.
    fn bound_value(&self, a: AttrId, x: u32) -> Option<ValueRef<'a>> {
        attr_value(
            self.code,
            self.lookup,
            self.trace,
            &self.facts,
            x as usize,
            a,
        )
    }

    /// Whether candidate `i` passes the selector's join for binding `x`.
    fn joined(&self, b: &BoundCode, i: u32, x: u32) -> bool {
        let Some((k, j)) = b.join else {
            return true;
        };
        let facts = &self.facts;
        match (
            attr_value(self.code, self.lookup, self.trace, facts, i as usize, k),
            self.bound_value(j, x),
        ) {
            (Some(v), Some(w)) => value::compare(v, value::CmpOp::Eq, w),
            _ => false,
        }
    }

    /// Whether candidate `i` passes the selector's other filters on the bound span `x`.
    fn residual(&self, b: &BoundCode, i: u32, x: u32) -> bool {
        b.residual.is_empty()
            || run_pred(
                self.code,
                self.lookup,
                &b.residual,
                self.trace,
                &self.facts,
                i as usize,
                Some(x as usize),
                &mut Vec::with_capacity(8),
            )
    }

    /// Whether span `i` stands in relation `r` to the bound span `x` (used where spans are
    /// tested one by one; [`View::bound_each`] finds them by time instead).
    fn related(&mut self, r: crate::lang::bytecode::RelCode, i: u32, x: u32) -> bool {
        match r.kind {
            RelKind::Before | RelKind::After => self
                .window(r, x)
                .is_some_and(|w| w.holds(self.trace.spans[i as usize].start_unix_nano)),
            RelKind::ChildOf => self.parents()[i as usize] == Some(x),
            RelKind::Within => i != x && self.is_ancestor(x, i),
            RelKind::Around => i != x && self.is_ancestor(i, x),
        }
    }

    /// Whether span `a` is a proper ancestor of span `i`.
    fn is_ancestor(&mut self, a: u32, i: u32) -> bool {
        let n = self.trace.spans.len();
        let parents = self.parents();
        let mut cur = i;
        for _ in 0..n {
            match parents[cur as usize] {
                Some(p) if p == a => return true,
                Some(p) => cur = p,
                None => return false,
            }
        }
        false
    }

    /// The instants at which a span in time relation `r` to the bound span `x` may start;
    /// `None` when there are none.
    fn window(&mut self, r: crate::lang::bytecode::RelCode, x: u32) -> Option<Window> {
        let at = self.trace.spans[x as usize].start_unix_nano;
        let w = match r.kind {
            RelKind::After => {
                let mut hi = r
                    .window
                    .map_or(u64::MAX, |d| at.saturating_add(d.max(0) as u64));
                if let Some(l) = r.limit {
                    if let Some(t) = self.limit_start(l, x, true) {
                        hi = hi.min(t - 1);
                    }
                }
                Window {
                    lo: at.checked_add(1)?,
                    hi,
                }
            }
            _ => {
                let mut lo = r.window.map_or(0, |d| at.saturating_sub(d.max(0) as u64));
                if let Some(l) = r.limit {
                    if let Some(t) = self.limit_start(l, x, false) {
                        lo = lo.max(t.checked_add(1)?);
                    }
                }
                Window {
                    lo,
                    hi: at.checked_sub(1)?,
                }
            }
        };
        (!w.is_empty()).then_some(w)
    }

    /// For `until T` (`after`): the start of the earliest span of `T` starting after the
    /// bound span; for `since T`: of the latest starting before it.
    fn limit_start(&mut self, t: SelId, x: u32, after: bool) -> Option<u64> {
        let at = self.trace.spans[x as usize].start_unix_nano;
        let spans = &self.trace.spans;
        let start = |i: u32| spans[i as usize].start_unix_nano;
        if !self.is_bound(t) {
            let slot = self.index_of(t);
            let starts = &self.bound_index[slot]
                .as_ref()
                .expect("just built")
                .all
                .starts;
            // The first start not before the bound span (after: not at it either).
            let k = seek(starts, self.scope_at[slot], |s| {
                if after {
                    s <= at
                } else {
                    s < at
                }
            });
            self.scope_at[slot] = k;
            return if after {
                starts.get(k).copied()
            } else {
                k.checked_sub(1).map(|k| starts[k])
            };
        }
        // A bound scope (`until close.where(id == $o.id)`, a plain selector otherwise):
        // its candidates for this binding, searched from the bound span outward.
        let code: &'a Code = self.code;
        let b: &'a BoundCode = code.selectors[t].bound.as_ref().expect("a bound selector");
        let slot = self.index_of(t);
        let source = self.source(t, slot, b, x);
        let check_join = matches!(source, Source::All { check_join: true });
        let run = self.part_of(slot, source);
        let k = run
            .starts
            .partition_point(|&s| if after { s <= at } else { s < at });
        let passes = |i: u32| (!check_join || self.joined(b, i, x)) && self.residual(b, i, x);
        if after {
            run.spans[k..]
                .iter()
                .copied()
                .find(|&i| passes(i))
                .map(start)
        } else {
            run.spans[..k]
                .iter()
                .rev()
                .copied()
                .find(|&i| passes(i))
                .map(start)
        }
    }

    /// Builds selector `s`'s candidate index, if not yet built, and says which slot of
    /// the index table holds it: for a bound selector, the matches of its base grouped by
    /// join value, kept in the base's slot so that selectors sharing base and join share
    /// it; for a plain one, its matches in start order.
    fn index_of(&mut self, s: SelId) -> SelId {
        let code: &'a Code = self.code;
        let (base, join) = match &code.selectors[s].bound {
            Some(b) => (b.base, b.join),
            None => (s, None),
        };
        let join_key = join.map(|(k, _)| k);
        let slot = match &self.bound_index[base] {
            None => base,
            Some(ix) if ix.join == join_key => return base,
            Some(_) if self.bound_index[s].is_some() => return s,
            Some(_) => s,
        };
        let (lookup, trace): (&'a Lookup, &'a Trace) = (self.lookup, self.trace);
        let all = Run::in_start_order(&trace.spans, self.matches(base).to_vec());
        let facts = &self.facts;
        let index = BoundIndex::new(join_key, all, |i| {
            join_key.and_then(|k| attr_value(code, lookup, trace, facts, i as usize, k))
        });
        self.bound_index[slot] = Some(index);
        slot
    }

    /// How many spans match bound selector `s` for the current binding — or, with
    /// `any`, 1 as soon as one does. Counted from the index where nothing else is
    /// to be checked span by span.
    fn bound_scan(&mut self, s: SelId, any: bool) -> usize {
        if let Some(n) = self.bound_count_from_index(s) {
            return if any { n.min(1) } else { n };
        }
        let mut n = 0;
        self.bound_each(s, &mut |_| {
            n += 1;
            !any
        });
        n
    }

    /// Where bound selector `s`'s candidates for binding `x` lie in its index (slot
    /// `slot`): none, a join group, or every candidate with the join still to check. Found
    /// once per binding for every selector joining alike.
    fn source(&mut self, s: SelId, slot: SelId, b: &BoundCode, x: u32) -> Source {
        let Some((_, j)) = b.join else {
            return Source::All { check_join: false };
        };
        let at = self.sources_at(s, slot, j);
        if let Some(source) = self.sources[at].of[x as usize] {
            return source;
        }
        let source = self.look_up(slot, j, x);
        self.sources[at].of[x as usize] = Some(source);
        source
    }

    /// Where bound selector `s` keeps its bindings' sources: shared by every selector of
    /// the same index slot and bound attribute.
    fn sources_at(&mut self, s: SelId, slot: SelId, attr: AttrId) -> usize {
        if self.sources_of.is_empty() {
            self.sources_of = self.code.selectors.beside(None);
        }
        if let Some(at) = self.sources_of[s] {
            return at;
        }
        let at = match self
            .sources
            .iter()
            .position(|m| m.slot == slot && m.attr == attr)
        {
            Some(at) => at,
            None => {
                self.sources.push(Sources {
                    slot,
                    attr,
                    of: vec![None; self.trace.spans.len()],
                });
                self.sources.len() - 1
            }
        };
        self.sources_of[s] = Some(at);
        at
    }

    /// Where the candidates in slot `slot` whose join attribute equals the bound span's
    /// `j` lie.
    fn look_up(&self, slot: SelId, j: AttrId, x: u32) -> Source {
        let Some(v) = self.bound_value(j, x) else {
            return Source::Nothing;
        };
        let index = self.bound_index[slot].as_ref().expect("built before");
        match (index.family, JoinKey::of(v)) {
            (Family::Empty, _) => Source::Nothing,
            // Within one family the key is exact; across families `==` is compared.
            (family, Some(key)) if family == Family::of(v) => {
                index.keys.get(key).map_or(Source::Nothing, Source::Group)
            }
            (_, None) if Family::of(v) != Family::Mixed => Source::Nothing,
            _ => Source::All { check_join: true },
        }
    }

    /// The positions, among the candidates `source` names in slot `slot`, of those starting
    /// inside `w`, for bound selector `s`: searched from where its last window in the same
    /// group lay.
    fn window_in(
        &mut self,
        s: SelId,
        slot: SelId,
        source: Source,
        w: Window,
    ) -> std::ops::Range<usize> {
        if self.window_at.is_empty() {
            self.window_at = self.code.selectors.beside(Vec::new());
        }
        let index = self.bound_index[slot].as_ref().expect("built before");
        let cell = match source {
            Source::Nothing => return 0..0,
            Source::All { .. } => index.groups(),
            Source::Group(g) => g as usize,
        };
        let at = &mut self.window_at[s];
        if at.len() <= index.groups() {
            at.resize(index.groups() + 1, [0, 0]);
        }
        let starts = index.part(source).starts;
        let [lo, hi] = at[cell].map(|k| k as usize);
        let lo = seek(starts, lo, |t| t < w.lo);
        let hi = seek(starts, hi.max(lo), |t| t <= w.hi);
        at[cell] = [lo as u32, hi as u32];
        lo..hi
    }

    /// The candidates a [`Source`] names in slot `slot`.
    fn part_of(&self, slot: SelId, source: Source) -> Part<'_> {
        self.bound_index[slot]
            .as_ref()
            .expect("built before")
            .part(source)
    }

    /// How many spans match bound selector `s` for the current binding, when the index
    /// alone says it: no structural relation, no filter on the bound span beyond the join,
    /// values of one kind. Two binary searches, where walking the window would cost its
    /// length.
    fn bound_count_from_index(&mut self, s: SelId) -> Option<usize> {
        let x = self.binding?;
        let code: &'a Code = self.code;
        let b: &'a BoundCode = code.selectors[s].bound.as_ref()?;
        if !b.residual.is_empty()
            || b.rel
                .is_some_and(|r| !matches!(r.kind, RelKind::Before | RelKind::After))
        {
            return None;
        }
        let slot = self.index_of(s);
        let source = self.source(s, slot, b, x);
        if matches!(source, Source::All { check_join: true }) {
            return None;
        }
        let window = match b.rel {
            Some(r) => match self.window(r, x) {
                Some(w) => Some(w),
                None => return Some(0),
            },
            None => None,
        };
        Some(match window {
            Some(w) => self.window_in(s, slot, source, w).len(),
            None => self.part_of(slot, source).spans.len(),
        })
    }

    /// Calls `f` with every span matching bound selector `s` for the current binding (in
    /// start order when the relation is in time), until `f` returns false.
    fn bound_each(&mut self, s: SelId, f: &mut dyn FnMut(u32) -> bool) {
        let Some(x) = self.binding else {
            return;
        };
        let code: &'a Code = self.code;
        let b: &'a BoundCode = code.selectors[s].bound.as_ref().expect("a bound selector");
        let slot = self.index_of(s);
        let structural = b
            .rel
            .filter(|r| !matches!(r.kind, RelKind::Before | RelKind::After));
        if let Some(r) = structural {
            // Structural: the bound span's tree neighbours, each once, checked one by one.
            for i in self.near(r.kind, x) {
                if self.is_member(b.base, i as usize)
                    && self.joined(b, i, x)
                    && self.residual(b, i, x)
                    && !f(i)
                {
                    return;
                }
            }
            return;
        }
        let window = match b.rel {
            Some(r) => match self.window(r, x) {
                Some(w) => Some(w),
                None => return,
            },
            None => None,
        };
        let source = self.source(s, slot, b, x);
        let check_join = matches!(source, Source::All { check_join: true });
        let range = match window {
            Some(w) => self.window_in(s, slot, source, w),
            None => 0..self.part_of(slot, source).spans.len(),
        };
        for &i in &self.part_of(slot, source).spans[range] {
            if (!check_join || self.joined(b, i, x)) && self.residual(b, i, x) && !f(i) {
                return;
            }
        }
    }

    /// The spans in a structural relation to span `x`, each once: its children (a span
    /// that is its own parent is its own child), its descendants, or its ancestors (`x`
    /// itself excluded from both, parent cycles walked once).
    fn near(&mut self, kind: RelKind, x: u32) -> Vec<u32> {
        if self.seen.len() != self.trace.spans.len() || self.stamp == u32::MAX {
            self.seen = vec![0; self.trace.spans.len()];
            self.stamp = 0;
        }
        self.stamp += 1;
        let stamp = self.stamp;
        let mut out = Vec::new();
        match kind {
            RelKind::ChildOf => out.extend_from_slice(&self.children()[x as usize]),
            RelKind::Within => {
                self.seen[x as usize] = stamp;
                let mut stack = self.children()[x as usize].clone();
                while let Some(c) = stack.pop() {
                    if std::mem::replace(&mut self.seen[c as usize], stamp) == stamp {
                        continue;
                    }
                    out.push(c);
                    let below = &self.children.as_ref().expect("built above")[c as usize];
                    stack.extend(below.iter().copied());
                }
            }
            _ => {
                self.seen[x as usize] = stamp;
                let mut cur = x;
                while let Some(p) = self.parents()[cur as usize] {
                    if std::mem::replace(&mut self.seen[p as usize], stamp) == stamp {
                        break;
                    }
                    out.push(p);
                    cur = p;
                }
            }
        }
        out
    }

    /// Children per span.
    fn children(&mut self) -> &[Vec<u32>] {
        if self.children.is_none() {
            let n = self.trace.spans.len();
            let mut children = vec![Vec::new(); n];
            for (i, p) in self.parents().iter().enumerate() {
                if let Some(p) = p {
                    children[*p as usize].push(i as u32);
                }
            }
            self.children = Some(children);
        }
        self.children.as_deref().expect("just filled")
    }

    /// The bindings an `own` term leaves without a partner of their own (docs/language.md,
    /// "Own partners"): by join group and earliest deadline where each binding's partners
    /// are a window of one group; by trying every binding for every span otherwise.
    fn own_leftovers(&mut self, own: SelId, applying: &[u32]) -> Vec<u32> {
        let code: &'a Code = self.code;
        let Some(b) = code.selectors[own].bound.as_ref() else {
            return Vec::new();
        };
        let Some(r) = b.rel else {
            return Vec::new();
        };
        let slot = self.index_of(own);
        // Each binding's window and join group; those with neither partner nor window lose.
        let mut left = Vec::new();
        let mut claims: Vec<(u32, Claim)> = Vec::with_capacity(applying.len());
        let mut exact = b.residual.is_empty();
        for &x in applying {
            let Some(window) = self.window(r, x) else {
                left.push(x);
                continue;
            };
            let group = match self.source(own, slot, b, x) {
                Source::Nothing => {
                    left.push(x);
                    continue;
                }
                Source::All { check_join } => {
                    exact &= !check_join;
                    0
                }
                Source::Group(g) => g,
            };
            claims.push((group, self.claim(x, window)));
        }
        let index = self.bound_index[slot].as_ref().expect("built");
        if !exact || (b.join.is_some() && index.family == Family::Mixed) {
            let open = claims.into_iter().map(|(_, c)| c).collect();
            left.extend(self.own_one_by_one(b, slot, open));
        } else if b.join.is_none() {
            let mut all: Vec<Claim> = claims.into_iter().map(|(_, c)| c).collect();
            match_partners(&index.all.starts, &mut all, &mut left);
        } else {
            let (mut grouped, bounds) = bucket(&claims, index.groups());
            for (g, at) in bounds.windows(2).enumerate() {
                let claims = &mut grouped[at[0] as usize..at[1] as usize];
                match_partners(index.group(g as u32).starts, claims, &mut left);
            }
        }
        left
    }

    /// Binding `x`'s claim on a partner starting inside `window`.
    fn claim(&self, x: u32, window: Window) -> Claim {
        let s = &self.trace.spans[x as usize];
        Claim {
            window,
            order: (s.start_unix_nano, u64::from_be_bytes(s.span_id.0)),
            span: x,
        }
    }

    /// `own`'s matching where join groups are not exact (mixed value kinds) or filters
    /// read the bound span beyond one join: every candidate, in start order, tries every
    /// binding still without a partner. The bindings left without one.
    fn own_one_by_one(&self, b: &BoundCode, slot: SelId, open: Vec<Claim>) -> Vec<u32> {
        let index = self.bound_index[slot].as_ref().expect("built");
        let spans = &self.trace.spans;
        let mut served = vec![false; open.len()];
        let deadline = |c: &Claim| (c.window.hi, c.order, c.span);
        for &i in &index.all.spans {
            let start = spans[i as usize].start_unix_nano;
            let best = (0..open.len())
                .filter(|&k| !served[k] && open[k].window.holds(start))
                .filter(|&k| self.joined(b, i, open[k].span) && self.residual(b, i, open[k].span))
                .min_by_key(|&k| deadline(&open[k]));
            if let Some(k) = best {
                served[k] = true;
            }
        }
        open.iter()
            .zip(&served)
            .filter(|(_, &s)| !s)
            .map(|(c, _)| c.span)
            .collect()
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

/// Where span `i` stands in start order: earliest start first, ties by span id (as bytes),
/// then by index — the order of trigger spans and of bindings.
fn start_order(spans: &[Span], i: usize) -> (u64, SpanId, usize) {
    (spans[i].start_unix_nano, spans[i].span_id, i)
}

/// The partition point of `pred` in `starts` (true for a prefix), searched from `from`:
/// galloping forward when the point lies beyond it, so that a run of searches for rising
/// instants costs `O(log gap)` each; a binary search of the prefix when it lies before.
fn seek(starts: &[u64], from: usize, pred: impl Fn(u64) -> bool) -> usize {
    let from = from.min(starts.len());
    if from > 0 && !pred(starts[from - 1]) {
        return starts[..from].partition_point(|&s| pred(s));
    }
    let mut step = 1;
    let mut lo = from;
    while lo + step <= starts.len() && pred(starts[lo + step - 1]) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(starts.len());
    lo + starts[lo..hi].partition_point(|&s| pred(s))
}

/// Runs a predicate program on one span; `bound` is the bound span its bound values read.
#[allow(clippy::too_many_arguments)]
fn run_pred(
    code: &Code,
    lookup: &Lookup,
    ops: &[PredOp],
    trace: &Trace,
    facts: &OnceCell<TraceFacts>,
    span: usize,
    bound: Option<usize>,
    stack: &mut Vec<bool>,
) -> bool {
    stack.clear();
    let get = |a: AttrId| attr_value(code, lookup, trace, facts, span, a);
    let of_bound = |a: AttrId| bound.and_then(|x| attr_value(code, lookup, trace, facts, x, a));
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
            PredOp::CmpBound(a, op, b) => {
                matches!((get(a), of_bound(b)), (Some(x), Some(y)) if value::compare(x, op, y))
            }
            PredOp::ContainsBound(a, b) => {
                matches!((get(a), of_bound(b)), (Some(x), Some(y)) if value::contains(x, y))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(keys: &[JoinKey<'static>]) -> (KeyMap<'static>, Vec<u32>) {
        let (map, numbered) = KeyMap::number(keys.iter().map(|&k| (k, ())).collect());
        (map, numbered.into_iter().map(|(g, ())| g).collect())
    }

    #[test]
    fn narrow_integer_keys_are_numbered_by_a_table() {
        let (map, numbered) = numbers(&[JoinKey::Int(-3), JoinKey::Int(7), JoinKey::Int(-3)]);
        assert!(matches!(map, KeyMap::Dense { .. }));
        assert_eq!(numbered, vec![0, 1, 0]);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(JoinKey::Int(7)), Some(1));
        assert_eq!(map.get(JoinKey::Int(0)), None);
        assert_eq!(map.get(JoinKey::Int(i64::MIN)), None);
        assert_eq!(map.get(JoinKey::Int(i64::MAX)), None);
        assert_eq!(map.get(JoinKey::Float(2.5f64.to_bits())), None);
    }

    #[test]
    fn wide_or_other_keys_are_hashed() {
        let (map, numbered) = numbers(&[JoinKey::Int(i64::MIN), JoinKey::Int(i64::MAX)]);
        assert!(matches!(map, KeyMap::Hashed(_)));
        assert_eq!(numbered, vec![0, 1]);
        assert_eq!(map.get(JoinKey::Int(i64::MAX)), Some(1));
        let (map, numbered) = numbers(&[JoinKey::Str("a"), JoinKey::Int(1), JoinKey::Str("a")]);
        assert!(matches!(map, KeyMap::Hashed(_)));
        assert_eq!(numbered, vec![0, 1, 0]);
        assert_eq!(map.get(JoinKey::Str("a")), Some(0));
        let (map, numbered) = numbers(&[]);
        assert_eq!((map.len(), numbered), (0, vec![]));
        assert_eq!(map.get(JoinKey::Int(0)), None);
    }

    #[test]
    fn seek_finds_the_partition_point_from_anywhere() {
        let starts = [1, 3, 3, 5, 8, 13];
        for from in 0..=starts.len() + 1 {
            for at in 0..15 {
                let want = starts.partition_point(|&s| s < at);
                assert_eq!(seek(&starts, from, |s| s < at), want, "from {from} at {at}");
            }
        }
    }
}
