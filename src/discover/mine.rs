//! Mining: each complete trace read once into counters — per span name, per ordered pair
//! of names that occur together, per (name, attribute key) — never the trace itself, so
//! memory depends on how many names and keys there are, not on how many traces.
//!
//! What is counted per trace is whether each template *holds* on it (docs/discover.md,
//! "Templates"): the counts only choose which candidates to verify; the counts a candidate
//! reports come from judging it with the engine ([`super::verify`]).

use std::collections::HashMap as StdMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::lang::value::{Number, ValueRef};
use crate::trace::projected::{KeyId, Trace};

use super::cond::{NumSample, Setup};
use super::stats::{Histogram, Sketch};

/// foldhash: several lookups per pair of names of every trace mined.
type HashMap<K, V> = StdMap<K, V, foldhash::fast::RandomState>;

/// Most distinct span names of one trace whose pairs are mined (the first in text order;
/// the rest of the trace's names still count on their own); a trace with more is counted
/// in [`Miner::capped`].
pub const MAX_NAMES_PER_TRACE: usize = 256;
/// Most pairs of names tracked; pairs first met beyond it are counted in
/// [`Miner::pairs_dropped`], not tracked.
pub const MAX_PAIRS: usize = 1 << 18;
/// Most (name, name, key) agreements tracked, as for pairs.
pub const MAX_AGREEMENTS: usize = 1 << 20;
/// Most (condition, name) pairs tracked, as for pairs.
pub const MAX_CONDITIONAL: usize = 1 << 18;

/// A span name, as a number local to one miner.
pub type NameId = u32;

/// Counts of one span name.
#[derive(Debug, Clone, Default)]
pub struct NameStats {
    /// Complete traces it occurs in.
    pub traces: u64,
    /// …at least twice.
    pub multi: u64,
    /// …as the trace's root.
    pub root: u64,
    /// How many times it occurs per trace (in the traces it occurs in).
    pub counts: Histogram,
}

/// Counts of an ordered pair of span names `(a, b)`, over the traces holding both.
#[derive(Debug, Clone, Default)]
pub struct PairStats {
    /// Traces holding both.
    pub co: u64,
    /// …where the earliest `a` starts before the earliest `b` (each `b` has an `a` before).
    pub before: u64,
    /// …where each `a` has a `b` starting after it.
    pub response: u64,
    /// …where each `a` has a `b` after it and before the next `a`.
    pub response_until: u64,
    /// …where each `a` has a `b` after it of its own.
    pub own_after: u64,
    /// …where each `a` has a `b` before it of its own.
    pub own_before: u64,
    /// …where every `b`'s parent is an `a`.
    pub child_of: u64,
    /// …where every `b` descends from an `a`.
    pub within: u64,
    /// Per `a`, how long until the first `b` after it.
    pub after_delay: Option<Box<Histogram>>,
    /// Per `b`, how long since the latest `a` before it.
    pub before_delay: Option<Box<Histogram>>,
    /// Per key both carry numbers of: traces where `b`'s values are bounded by each of
    /// `a`'s ([`BoundCounts`]).
    pub bounds: Vec<(KeyId, BoundCounts)>,
}

impl PairStats {
    /// The bound counts of a key, made when first met.
    fn bound_entry(&mut self, key: KeyId) -> &mut BoundCounts {
        let at = match self.bounds.iter().position(|b| b.0 == key) {
            Some(at) => at,
            None => {
                self.bounds.push((key, [0, 0]));
                self.bounds.len() - 1
            }
        };
        &mut self.bounds[at].1
    }
}

/// Counts of one attribute key on one span name.
#[derive(Debug, Clone, Default)]
pub struct KeyStats {
    /// Traces where every span of the name carries the key.
    pub present: u64,
    /// Traces where the name occurs at least twice and all its values of the key are one.
    pub same: u64,
    /// The values seen (one per span).
    pub values: Sketch,
    /// Per trace, the least, greatest and summed numeric value: a sample of traces.
    pub numbers: NumSample,
    /// Traces where some numeric value is below zero.
    pub negative: u64,
}

/// Traces where a value bound across spans held: `[sum, max]` of the other name's values
/// at most each value of the first name's (counted only where the other name has a
/// numeric value).
pub type BoundCounts = [u64; 2];

/// Everything mined so far; one per judging thread, merged at the end.
#[derive(Debug, Default)]
pub struct Miner {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, NameId>,
    /// Complete traces mined.
    pub traces: u64,
    /// Traces with more than [`MAX_NAMES_PER_TRACE`] names (pairs mined among the first).
    pub capped: u64,
    /// Pairs (and agreements) not tracked: beyond [`MAX_PAIRS`] or [`MAX_AGREEMENTS`].
    pub pairs_dropped: u64,
    per_name: Vec<NameStats>,
    /// Each pair's place in `pair_list`.
    pair_at: HashMap<(NameId, NameId), u32>,
    /// The same for names numbered below `cache_dim`, as a table (`a * cache_dim + b`;
    /// [`NONE`] when not known yet): a lookup per pair of names of every trace mined.
    pair_cache: Vec<u32>,
    cache_dim: usize,
    pair_list: Vec<((NameId, NameId), PairStats)>,
    /// Per name, per key id, the place of its counts in `key_list` ([`NONE`] when none).
    key_at: Vec<Vec<u32>>,
    key_list: Vec<((NameId, KeyId), KeyStats)>,
    agree: HashMap<(NameId, NameId, KeyId), u64>,
    /// Per key id: traces where spans of two names or more carry it, and of those, the
    /// ones where it has one value throughout (an id of the whole trace: agreeing on it
    /// says nothing about two names).
    shared: Vec<(u64, u64)>,
    /// The conditions on frequent values counted.
    setup: Arc<Setup>,
    /// Per name, its conditions' indexes in `setup`, and a mask of their keys (bit `k % 64`).
    cond_of: Vec<(Vec<u32>, u64)>,
    /// Per condition, the traces where a span of its name passes it.
    cond_applies: Vec<u64>,
    /// Per (condition, name): of those, the traces holding a span of the name — in a
    /// table per condition for names numbered below [`CACHED_NAMES`], in a map beyond.
    cond_held: HashMap<(u32, NameId), u64>,
    cond_dense: Vec<Vec<u64>>,
    /// Per key id: traces where two names or more carry numbers of it, and of those, the
    /// ones where more than [`WIDE`] names do.
    wide: Vec<(u64, u64)>,
    /// Per key id: whether its bounds are no longer counted ([`Miner::bounded`]), nor its
    /// numbers read.
    unbounded: Vec<bool>,
    /// Working space for one trace, kept so that mining a trace allocates little.
    scratch: Scratch,
}

/// More names than this carrying numbers of a key in a trace make it wide there
/// ([`Miner::bounded`]).
pub const WIDE: usize = 8;

/// No place yet.
const NONE: u32 = u32::MAX;

/// Most names whose pairs' places are kept in a table (its 4 MiB) rather than only looked
/// up in a map.
const CACHED_NAMES: usize = 1024;

/// What mining one trace works in; its buffers are reused from trace to trace.
#[derive(Debug, Default)]
struct Scratch {
    /// Per span, its name's id.
    ids: Vec<NameId>,
    arranged: Arranged,
    tree: Tree,
    /// Each attribute value: its key id, its span's group, its hash (spans in group order).
    raw: Vec<(u32, u32, u64)>,
    /// Per key id, where its values start in `vals` (one more entry: the end).
    starts: Vec<u32>,
    /// Where the next value of each key goes, while `vals` is filled.
    fill: Vec<u32>,
    /// The values, by key, then group, then hash: (group, hash).
    vals: Vec<(u32, u64)>,
    /// One key's groups that carry it: (group, its values in `vals`, whether every span
    /// of the group has one).
    carriers: Vec<(u32, std::ops::Range<usize>, bool)>,
    /// Each carrier's distinct values: (hash, carrier), sorted.
    index: Vec<(u64, u32)>,
    /// Per carrier, the run of `index` holding its first value (empty when no other
    /// carrier holds it).
    runs: Vec<(usize, usize)>,
    /// Each numeric value: its key id, its span's group, the number.
    nums: Vec<(u32, u32, f64)>,
    /// Per (key, group) carrying numbers: the numbers' count, least, greatest, sum.
    aggs: Vec<Agg>,
    /// The conditions passed in this trace: (condition, group).
    active: Vec<(u32, u32)>,
    /// Per condition, the last trace (its number) it passed in.
    stamp: Vec<u64>,
}

/// One group's numeric values of one key in one trace.
#[derive(Debug, Clone, Copy)]
struct Agg {
    key: u32,
    group: u32,
    count: usize,
    min: f64,
    max: f64,
    sum: f64,
}

/// One trace, arranged for mining: its spans grouped by name, each group in start order.
#[derive(Debug, Default)]
struct Arranged {
    /// Per group: its name, and where its spans lie in `order`.
    groups: Vec<(NameId, std::ops::Range<usize>)>,
    /// Span indexes, by group then start.
    order: Vec<usize>,
    /// Their starts, beside them.
    starts: Vec<u64>,
    /// Per span, its group.
    group_of: Vec<usize>,
}

/// How a group's spans hang in the tree.
#[derive(Debug, Clone)]
enum Parents {
    /// Not met yet.
    Unseen,
    /// Every span met so far has a parent of this group.
    One(usize),
    /// Two groups, or a span without a parent.
    Mixed,
}

impl Miner {
    /// A miner that also counts the conditions of `setup`.
    pub fn new(setup: Arc<Setup>) -> Miner {
        let n = setup.conditions.len();
        Miner {
            cond_applies: vec![0; n],
            cond_dense: vec![Vec::new(); n],
            scratch: Scratch {
                stamp: vec![0; n],
                ..Scratch::default()
            },
            setup,
            ..Miner::default()
        }
    }

    /// The id of a name, if it was met.
    pub fn id_of(&self, name: &str) -> Option<NameId> {
        self.ids.get(name).copied()
    }

    /// The conditions counted.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Traces where a span passes condition `c` (its index in [`Miner::setup`]).
    pub fn cond_applies(&self, c: u32) -> u64 {
        self.cond_applies.get(c as usize).copied().unwrap_or(0)
    }

    /// Every (condition, name) with the traces where the condition passed and the name
    /// occurs.
    pub fn conditional(&self) -> impl Iterator<Item = ((u32, NameId), u64)> + '_ {
        let dense = self.cond_dense.iter().enumerate().flat_map(|(c, row)| {
            row.iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(move |(b, n)| ((c as u32, b as NameId), *n))
        });
        dense.chain(self.cond_held.iter().map(|(k, n)| (*k, *n)))
    }

    /// Adds `n` traces where condition `c` passed and name `b` occurs.
    fn add_conditional(&mut self, c: u32, b: NameId, n: u64) {
        if (b as usize) < CACHED_NAMES {
            let row = &mut self.cond_dense[c as usize];
            if row.len() <= b as usize {
                row.resize(b as usize + 1, 0);
            }
            row[b as usize] += n;
        } else {
            *self.cond_held.entry((c, b)).or_default() += n;
        }
    }

    /// Counts one trace where condition `c` passed and name `b` occurs.
    fn count_conditional(&mut self, c: u32, b: NameId) {
        if (b as usize) < CACHED_NAMES {
            let row = &mut self.cond_dense[c as usize];
            if row.len() <= b as usize {
                row.resize(self.names.len().clamp(b as usize + 1, CACHED_NAMES), 0);
            }
            row[b as usize] += 1;
            return;
        }
        let full = self.cond_held.len() >= MAX_CONDITIONAL;
        match self.cond_held.get_mut(&(c, b)) {
            Some(n) => *n += 1,
            None if !full => {
                self.cond_held.insert((c, b), 1);
            }
            None => self.pairs_dropped += 1,
        }
    }

    /// Every value bound (name, name, key) with its counts.
    pub fn bounds(&self) -> impl Iterator<Item = ((NameId, NameId, KeyId), &BoundCounts)> {
        self.pair_list
            .iter()
            .flat_map(|((a, b), p)| p.bounds.iter().map(move |(k, n)| ((*a, *b, *k), n)))
    }

    /// The name of a name id.
    pub fn name(&self, id: NameId) -> &str {
        &self.names[id as usize]
    }

    /// Counts of a name.
    pub fn name_stats(&self, id: NameId) -> &NameStats {
        &self.per_name[id as usize]
    }

    /// Every name with its counts.
    pub fn names(&self) -> impl Iterator<Item = (NameId, &NameStats)> {
        self.per_name
            .iter()
            .enumerate()
            .map(|(i, s)| (i as NameId, s))
    }

    /// Every pair with its counts.
    pub fn pairs(&self) -> impl Iterator<Item = (&(NameId, NameId), &PairStats)> {
        self.pair_list.iter().map(|(k, p)| (k, p))
    }

    /// The counts of the pair `(a, b)`, if they ever occurred together.
    pub fn pair_stats(&self, a: NameId, b: NameId) -> Option<&PairStats> {
        self.pair_at
            .get(&(a, b))
            .map(|&at| &self.pair_list[at as usize].1)
    }

    /// Every (name, key) with its counts.
    pub fn keys(&self) -> impl Iterator<Item = (&(NameId, KeyId), &KeyStats)> {
        self.key_list.iter().map(|(k, s)| (k, s))
    }

    /// The counts of a (name, key), if it was ever seen.
    pub fn key_stats(&self, name: NameId, key: KeyId) -> Option<&KeyStats> {
        let at = *self.key_at.get(name as usize)?.get(key.0 as usize)?;
        (at != NONE).then(|| &self.key_list[at as usize].1)
    }

    /// How often `key` has one value throughout a trace where two names or more carry it
    /// (0 when it never was carried so).
    pub fn one_per_trace(&self, key: KeyId) -> f64 {
        match self.shared.get(key.0 as usize) {
            Some(&(n, one)) if n > 0 => one as f64 / n as f64,
            _ => 0.0,
        }
    }

    /// Every agreement `(a, b, key)` with the traces where each `a`'s value of `key` is
    /// the value of some `b`.
    pub fn agreements(&self) -> impl Iterator<Item = (&(NameId, NameId, KeyId), &u64)> {
        self.agree.iter()
    }

    fn intern(&mut self, name: &str) -> NameId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as NameId;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        self.per_name.push(NameStats::default());
        let conds = self.setup.by_name.get(name).cloned().unwrap_or_default();
        let mask = conds
            .iter()
            .fold(0u64, |m, &c| m | key_bit(self.setup.key_ids[c as usize]));
        self.cond_of.push((conds, mask));
        id
    }

    /// The counts of a pair, made when first met; `None` (counted) beyond [`MAX_PAIRS`].
    fn pair_entry(&mut self, key: (NameId, NameId)) -> Option<&mut PairStats> {
        let cell = self.pair_cell(key);
        if let Some(&at) = cell.and_then(|c| self.pair_cache.get(c)) {
            if at != NONE {
                return Some(&mut self.pair_list[at as usize].1);
            }
        }
        let at = match self.pair_at.get(&key) {
            Some(&at) => at,
            None if self.pair_list.len() >= MAX_PAIRS => {
                self.pairs_dropped += 1;
                return None;
            }
            None => {
                let at = self.pair_list.len() as u32;
                self.pair_at.insert(key, at);
                self.pair_list.push((key, PairStats::default()));
                at
            }
        };
        if let Some(c) = cell {
            self.pair_cache[c] = at;
        }
        Some(&mut self.pair_list[at as usize].1)
    }

    /// Where a pair's place is cached in `pair_cache` (none when a name is beyond it),
    /// the cache grown to hold every name so far up to [`CACHED_NAMES`].
    fn pair_cell(&mut self, (a, b): (NameId, NameId)) -> Option<usize> {
        let names = self.names.len();
        if names > self.cache_dim && self.cache_dim < CACHED_NAMES {
            let dim = names.next_power_of_two().clamp(64, CACHED_NAMES);
            self.pair_cache = vec![NONE; dim * dim];
            self.cache_dim = dim;
            for (at, &((x, y), _)) in self.pair_list.iter().enumerate() {
                if (x as usize) < dim && (y as usize) < dim {
                    self.pair_cache[x as usize * dim + y as usize] = at as u32;
                }
            }
        }
        let (a, b, dim) = (a as usize, b as usize, self.cache_dim);
        (a < dim && b < dim).then_some(a * dim + b)
    }

    /// The counts of a (name, key), made when first met.
    fn key_entry(&mut self, name: NameId, key: KeyId) -> &mut KeyStats {
        if self.key_at.len() <= name as usize {
            self.key_at.resize(name as usize + 1, Vec::new());
        }
        let row = &mut self.key_at[name as usize];
        if row.len() <= key.0 as usize {
            row.resize(key.0 as usize + 1, NONE);
        }
        if row[key.0 as usize] == NONE {
            row[key.0 as usize] = self.key_list.len() as u32;
            self.key_list.push(((name, key), KeyStats::default()));
        }
        &mut self.key_list[row[key.0 as usize] as usize].1
    }

    /// The traces where `key` is carried by two names or more, and where it is one value.
    fn shared_entry(&mut self, key: KeyId) -> &mut (u64, u64) {
        if self.shared.len() <= key.0 as usize {
            self.shared.resize(key.0 as usize + 1, (0, 0));
        }
        &mut self.shared[key.0 as usize]
    }

    /// Mines one complete trace.
    pub fn observe(&mut self, t: &Trace) {
        if t.spans.is_empty() {
            return;
        }
        self.traces += 1;
        let mut s = std::mem::take(&mut self.scratch);
        self.arrange(t, &mut s);
        let a = &s.arranged;
        for (name, range) in &a.groups {
            let n = &mut self.per_name[*name as usize];
            n.traces += 1;
            n.multi += u64::from(range.len() > 1);
            n.counts.add(range.len() as u64);
        }
        if let Some(r) = t.root() {
            self.per_name[a.groups[a.group_of[r]].0 as usize].root += 1;
        }
        let mut tree = std::mem::take(&mut s.tree);
        tree.walk(t, a);
        // The groups paired: all, or the first names in text order (whatever the order
        // of the spans or of the miner's ids).
        let mut paired: Vec<usize> = (0..a.groups.len()).collect();
        if paired.len() > MAX_NAMES_PER_TRACE {
            self.capped += 1;
            paired.sort_by(|&x, &y| self.name(a.groups[x].0).cmp(self.name(a.groups[y].0)));
            paired.truncate(MAX_NAMES_PER_TRACE);
        }
        for &ga in &paired {
            for &gb in &paired {
                if ga != gb {
                    self.pair(a, ga, gb, &tree);
                }
            }
        }
        s.tree = tree;
        self.values(t, &mut s);
        self.value_bounds(t, &mut s);
        self.conditions(&s, &paired);
        self.scratch = s;
    }

    /// Groups the spans of `t` by name, each group in start order, into `s.arranged`.
    fn arrange(&mut self, t: &Trace, s: &mut Scratch) {
        s.ids.clear();
        for span in &t.spans {
            let id = self.intern(t.name(span));
            s.ids.push(id);
        }
        let ids = &s.ids;
        let a = &mut s.arranged;
        a.order.clear();
        a.order.extend(0..t.spans.len());
        a.order
            .sort_unstable_by_key(|&i| (ids[i], t.spans[i].start_unix_nano, t.spans[i].span_id));
        a.starts.clear();
        a.starts
            .extend(a.order.iter().map(|&i| t.spans[i].start_unix_nano));
        a.groups.clear();
        a.group_of.clear();
        a.group_of.resize(t.spans.len(), 0);
        for (k, &i) in a.order.iter().enumerate() {
            match a.groups.last_mut() {
                Some((name, range)) if *name == ids[i] => range.end = k + 1,
                _ => a.groups.push((ids[i], k..k + 1)),
            }
            a.group_of[i] = a.groups.len() - 1;
        }
    }

    fn pair(&mut self, a: &Arranged, ga: usize, gb: usize, tree: &Tree) {
        let Some(p) = self.pair_entry((a.groups[ga].0, a.groups[gb].0)) else {
            return;
        };
        let sa = &a.starts[a.groups[ga].1.clone()];
        let sb = &a.starts[a.groups[gb].1.clone()];
        p.co += 1;
        p.child_of += u64::from(matches!(tree.parents[gb], Parents::One(g) if g == ga));
        p.within += u64::from(tree.within(gb, ga));
        let after = p.after_delay.get_or_insert_with(Box::default);
        let before = p.before_delay.get_or_insert_with(Box::default);
        if let (&[x], &[y]) = (sa, sb) {
            // One of each (most pairs): what the general case below gives for them.
            if x < y {
                p.before += 1;
                p.response += 1;
                p.response_until += 1;
                p.own_after += 1;
                after.add(y - x);
                before.add(y - x);
            } else if x > y {
                p.own_before += 1;
            }
            return;
        }
        p.before += u64::from(sa[0] < sb[0]);
        let response = sb[sb.len() - 1] > sa[sa.len() - 1];
        if response {
            p.response += 1;
            p.response_until += u64::from(answered_before_next(sa, sb));
            p.own_after += u64::from(own_after(sa, sb));
        }
        p.own_before += u64::from(sa[0] > sb[0] && own_before(sa, sb));
        for &x in sa {
            let at = sb.partition_point(|&y| y <= x);
            if let Some(&y) = sb.get(at) {
                after.add(y - x);
            }
        }
        for &y in sb {
            let at = sa.partition_point(|&x| x < y);
            if at > 0 {
                before.add(y - sa[at - 1]);
            }
        }
    }

    /// Attribute values: presence, sameness within a name, agreement across names.
    fn values(&mut self, t: &Trace, s: &mut Scratch) {
        // Each value, spans in group order; counted per key.
        s.raw.clear();
        s.starts.clear();
        s.nums.clear();
        s.active.clear();
        for &i in &s.arranged.order {
            let g = s.arranged.group_of[i] as u32;
            let name = s.arranged.groups[g as usize].0;
            let (conds, mask) = self
                .cond_of
                .get(name as usize)
                .map_or((&[][..], 0), |(c, m)| (c.as_slice(), *m));
            for (key, v) in t.attr_ids(&t.spans[i]) {
                if !self.unbounded.get(key.0 as usize).copied().unwrap_or(false) {
                    if let Some(x) = number(v) {
                        s.nums.push((key.0, g, x));
                    }
                }
                if mask & key_bit(key) != 0 {
                    for &c in conds {
                        let at = c as usize;
                        if self.setup.key_ids[at] == key
                            && s.stamp[at] != self.traces
                            && self.setup.conditions[at].holds(v)
                        {
                            s.stamp[at] = self.traces;
                            s.active.push((c, g));
                        }
                    }
                }
                if let Some(h) = hash_value(v) {
                    let k = key.0 as usize;
                    if s.starts.len() <= k + 1 {
                        s.starts.resize(k + 2, 0);
                    }
                    s.starts[k + 1] += 1;
                    s.raw.push((key.0, g, h));
                }
            }
        }
        if s.raw.is_empty() {
            return;
        }
        // By key (a counting sort keeps the group order within each key), then by hash
        // within each group.
        let keys = s.starts.len() - 1;
        for k in 0..keys {
            s.starts[k + 1] += s.starts[k];
        }
        s.fill.clear();
        s.fill.extend_from_slice(&s.starts[..keys]);
        s.vals.clear();
        s.vals.resize(s.raw.len(), (0, 0));
        for &(k, g, h) in &s.raw {
            let at = &mut s.fill[k as usize];
            s.vals[*at as usize] = (g, h);
            *at += 1;
        }
        for k in 0..keys {
            let range = s.starts[k] as usize..s.starts[k + 1] as usize;
            if range.is_empty() {
                continue;
            }
            let vals = &mut s.vals[range.clone()];
            let mut at = 0;
            while at < vals.len() {
                let end = at + run(&vals[at..]);
                if end - at > 1 {
                    vals[at..end].sort_unstable_by_key(|v| v.1);
                }
                at = end;
            }
            self.key_values(
                &s.arranged,
                KeyId(k as u32),
                &s.vals[range],
                &mut s.carriers,
                &mut s.index,
                &mut s.runs,
            );
        }
    }

    /// One key's values in one trace, by group then hash: (group, hash).
    fn key_values(
        &mut self,
        a: &Arranged,
        key: KeyId,
        vals: &[(u32, u64)],
        carriers: &mut Vec<(u32, std::ops::Range<usize>, bool)>,
        index: &mut Vec<(u64, u32)>,
        runs: &mut Vec<(usize, usize)>,
    ) {
        // Per group carrying the key: its values (sorted) and whether every span has one.
        carriers.clear();
        let mut at = 0;
        while at < vals.len() {
            let g = vals[at].0;
            let end = at + run(&vals[at..]);
            let all = end - at == a.groups[g as usize].1.len();
            carriers.push((g, at..end, all));
            at = end;
        }
        for (g, range, all) in carriers.iter() {
            let vs = &vals[range.clone()];
            let group = &a.groups[*g as usize];
            let s = self.key_entry(group.0, key);
            s.present += u64::from(*all);
            for v in vs {
                s.values.add(v.1);
            }
            // Sorted: one value when the first is the last.
            if group.1.len() > 1 && vs[0].1 == vs[vs.len() - 1].1 {
                s.same += 1;
            }
        }
        if carriers.len() > 1 {
            let one = vals.iter().all(|v| v.1 == vals[0].1);
            let e = self.shared_entry(key);
            e.0 += 1;
            e.1 += u64::from(one);
            // A key that is one value throughout nearly every trace (an order id on
            // every span) can give no agreement worth reporting (its lift stays under
            // the least): stop counting its agreements once that is clear.
            if e.0 >= 1_000 && e.1 * 100 >= e.0 * 99 {
                return;
            }
        }
        if carriers.len() < 2 {
            return;
        }
        // Each group's distinct values, with the groups holding them: the groups that
        // may agree with a group are those holding its first value.
        index.clear();
        for (c, (_, range, _)) in carriers.iter().enumerate() {
            let vs = &vals[range.clone()];
            for (j, v) in vs.iter().enumerate() {
                if j == 0 || vs[j - 1].1 != v.1 {
                    index.push((v.1, c as u32));
                }
            }
        }
        // Few values (most keys of most traces): when no two groups share one, nothing
        // agrees, and the index need not be sorted.
        if index.len() <= 32
            && index
                .iter()
                .enumerate()
                .all(|(i, x)| index[i + 1..].iter().all(|y| y.0 != x.0))
        {
            return;
        }
        index.sort_unstable();
        // Per group, the run of `index` holding its first value, when another group holds
        // it too.
        runs.clear();
        runs.resize(carriers.len(), (0, 0));
        let mut shared = false;
        let mut at = 0;
        while at < index.len() {
            let h = index[at].0;
            let end = at
                + index[at..]
                    .iter()
                    .position(|e| e.0 != h)
                    .unwrap_or(index.len() - at);
            if end - at > 1 {
                shared = true;
                for &(_, c) in &index[at..end] {
                    if vals[carriers[c as usize].1.start].1 == h {
                        runs[c as usize] = (at, end);
                    }
                }
            }
            at = end;
        }
        if !shared {
            return;
        }
        for (ca, (ga, ra, all)) in carriers.iter().enumerate() {
            if !all {
                continue;
            }
            let va = &vals[ra.clone()];
            let (from, to) = runs[ca];
            for &(_, cb) in &index[from..to] {
                let (gb, rb, _) = &carriers[cb as usize];
                if cb as usize == ca || (va.len() > 1 && !within(va, &vals[rb.clone()])) {
                    continue;
                }
                let k = (a.groups[*ga as usize].0, a.groups[*gb as usize].0, key);
                let full = self.agree.len() >= MAX_AGREEMENTS;
                match self.agree.get_mut(&k) {
                    Some(n) => *n += 1,
                    None if !full => {
                        self.agree.insert(k, 1);
                    }
                    None => self.pairs_dropped += 1,
                }
            }
        }
    }

    /// Numeric values: per (name, key) a sample of each trace's least, greatest and summed
    /// value, and per (name, name, key) whether the second name's values are bounded by
    /// each of the first's ([`BoundCounts`]).
    fn value_bounds(&mut self, t: &Trace, s: &mut Scratch) {
        if s.nums.is_empty() {
            return;
        }
        s.nums.sort_unstable_by_key(|x| (x.0, x.1));
        s.aggs.clear();
        for &(key, group, x) in &s.nums {
            match s.aggs.last_mut() {
                Some(a) if a.key == key && a.group == group => {
                    a.count += 1;
                    a.min = a.min.min(x);
                    a.max = a.max.max(x);
                    a.sum += x;
                }
                _ => s.aggs.push(Agg {
                    key,
                    group,
                    count: 1,
                    min: x,
                    max: x,
                    sum: x,
                }),
            }
        }
        let hash = foldhash::fast::FixedState::with_seed(7).hash_one(t.trace_id);
        let groups = &s.arranged.groups;
        let mut at = 0;
        while at < s.aggs.len() {
            let key = s.aggs[at].key;
            let end = at
                + s.aggs[at..]
                    .iter()
                    .position(|a| a.key != key)
                    .unwrap_or(s.aggs.len() - at);
            let run = &s.aggs[at..end];
            for a in run {
                let all = a.count == groups[a.group as usize].1.len();
                let k = self.key_entry(groups[a.group as usize].0, KeyId(key));
                k.numbers
                    .add(hash, [if all { a.min } else { f64::NAN }, a.max, a.sum]);
                k.negative += u64::from(a.min < 0.0);
            }
            // A key on more names than are paired is left out (as pairs beyond them are),
            // and so is one that is one value throughout most traces (an id of the whole
            // trace: a bound on it is an equality, its lift under the least) once that is
            // clear.
            if run.len() >= 2 && run.len() <= MAX_NAMES_PER_TRACE && self.bounded(key, run.len()) {
                self.bounds_of(groups, run, KeyId(key));
            }
            at = end;
        }
    }

    /// Whether bounds of a key carried by `names` names of this trace are counted: not once
    /// it is clear (after 1,000 traces carrying it on two names or more) that it is one
    /// value throughout most traces (an id of the whole trace: a bound on it is an
    /// equality, its lift under the least) or on more than [`WIDE`] names in most (an
    /// attribute of every span — a thread, a port, a host — is no measure, and its pairs
    /// would cost the square of the names).
    fn bounded(&mut self, key: u32, names: usize) -> bool {
        let one = self.shared.get(key as usize).copied().unwrap_or_default();
        if self.wide.len() <= key as usize {
            self.wide.resize(key as usize + 1, (0, 0));
        }
        let w = &mut self.wide[key as usize];
        w.0 += 1;
        w.1 += u64::from(names > WIDE);
        let clear = |(n, k): (u64, u64)| n >= 1_000 && k * 2 >= n;
        let counted = !clear(one) && !clear(*w);
        if !counted {
            if self.unbounded.len() <= key as usize {
                self.unbounded.resize(key as usize + 1, false);
            }
            self.unbounded[key as usize] = true;
        }
        counted
    }

    /// Counts, for every two groups carrying numbers of one key, whether the second's sum
    /// and greatest value are at most the first's least (every span of the first with a
    /// number).
    fn bounds_of(&mut self, groups: &[(NameId, std::ops::Range<usize>)], run: &[Agg], key: KeyId) {
        for a in run {
            if a.count != groups[a.group as usize].1.len() {
                continue;
            }
            for b in run {
                if a.group == b.group {
                    continue;
                }
                let held = [u64::from(b.sum <= a.min), u64::from(b.max <= a.min)];
                if held == [0, 0] {
                    continue;
                }
                let pair = (groups[a.group as usize].0, groups[b.group as usize].0);
                if let Some(p) = self.pair_entry(pair) {
                    let n = p.bound_entry(key);
                    n[0] += held[0];
                    n[1] += held[1];
                }
            }
        }
    }

    /// The conditions passed in this trace: each counted, and with it every other name of
    /// the trace (paired).
    fn conditions(&mut self, s: &Scratch, paired: &[usize]) {
        for &(c, ga) in &s.active {
            self.cond_applies[c as usize] += 1;
            for &gb in paired {
                if gb == ga as usize {
                    continue;
                }
                self.count_conditional(c, s.arranged.groups[gb].0);
            }
        }
    }

    /// Adds another miner's counts (its names matched to ours by text).
    pub fn merge(&mut self, other: Miner) {
        let conditional: Vec<((u32, NameId), u64)> = other.conditional().collect();
        let map: Vec<NameId> = other.names.iter().map(|n| self.intern(n)).collect();
        self.traces += other.traces;
        self.capped += other.capped;
        self.pairs_dropped += other.pairs_dropped;
        for (i, s) in other.per_name.into_iter().enumerate() {
            let mine = &mut self.per_name[map[i] as usize];
            mine.traces += s.traces;
            mine.multi += s.multi;
            mine.root += s.root;
            mine.counts.merge(&s.counts);
        }
        for ((x, y), p) in other.pair_list {
            let Some(m) = self.pair_entry((map[x as usize], map[y as usize])) else {
                continue;
            };
            m.co += p.co;
            m.before += p.before;
            m.response += p.response;
            m.response_until += p.response_until;
            m.own_after += p.own_after;
            m.own_before += p.own_before;
            m.child_of += p.child_of;
            m.within += p.within;
            merge_histogram(&mut m.after_delay, p.after_delay);
            merge_histogram(&mut m.before_delay, p.before_delay);
            for (k, n) in p.bounds {
                let e = m.bound_entry(k);
                e[0] += n[0];
                e[1] += n[1];
            }
        }
        for ((n, k), s) in other.key_list {
            let m = self.key_entry(map[n as usize], k);
            m.present += s.present;
            m.same += s.same;
            m.values.merge(&s.values);
            m.numbers.merge(&s.numbers);
            m.negative += s.negative;
        }
        if self.cond_applies.len() < other.cond_applies.len() {
            self.cond_applies.resize(other.cond_applies.len(), 0);
        }
        for (c, n) in other.cond_applies.iter().enumerate() {
            self.cond_applies[c] += n;
        }
        if self.cond_dense.len() < other.cond_dense.len() {
            self.cond_dense.resize(other.cond_dense.len(), Vec::new());
        }
        for ((c, y), n) in conditional {
            self.add_conditional(c, map[y as usize], n);
        }
        for (k, (n, one)) in other.shared.into_iter().enumerate() {
            let e = self.shared_entry(KeyId(k as u32));
            e.0 += n;
            e.1 += one;
        }
        for ((x, y, k), n) in other.agree {
            *self
                .agree
                .entry((map[x as usize], map[y as usize], k))
                .or_default() += n;
        }
    }
}

/// A key's bit in a mask of keys (keys beyond 64 share bits: a mask says where to look).
fn key_bit(k: KeyId) -> u64 {
    1 << (k.0 % 64)
}

/// The number a value stands for in a sum or a comparison with one (an integer, a float
/// other than NaN, a string that reads whole as a number); `None` for anything else.
fn number(v: ValueRef<'_>) -> Option<f64> {
    match v {
        ValueRef::Duration(_) => None,
        // Only these can start a number (most strings are ids and names: not parsed).
        ValueRef::Str(s) if !s.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c)) => {
            None
        }
        v => Number::of(v).map(Number::as_f64),
    }
}

/// How many values from the first are of its group.
fn run(vals: &[(u32, u64)]) -> usize {
    let g = vals[0].0;
    vals.iter().position(|v| v.0 != g).unwrap_or(vals.len())
}

/// Whether every value of `va` is one of `vb` (both sorted by hash).
fn within(va: &[(u32, u64)], vb: &[(u32, u64)]) -> bool {
    let mut j = 0;
    va.iter().all(|x| {
        while j < vb.len() && vb[j].1 < x.1 {
            j += 1;
        }
        j < vb.len() && vb[j].1 == x.1
    })
}

fn merge_histogram(into: &mut Option<Box<Histogram>>, from: Option<Box<Histogram>>) {
    match (into.as_mut(), from) {
        (Some(i), Some(f)) => i.merge(&f),
        (None, Some(f)) => *into = Some(f),
        _ => {}
    }
}

/// Each `a` (starts `sa`, sorted) has a `b` after it and before the next later `a`.
fn answered_before_next(sa: &[u64], sb: &[u64]) -> bool {
    sa.iter().all(|&x| {
        let next = sa[sa.partition_point(|&y| y <= x)..].first();
        let b = sb[sb.partition_point(|&y| y <= x)..].first();
        matches!((b, next), (Some(b), Some(n)) if b < n) || matches!((b, next), (Some(_), None))
    })
}

/// Each `a` can have a `b` after it of its own: the `b`s after a point always outnumber
/// the `a`s at or after it (Hall's condition; the sets are nested).
fn own_after(sa: &[u64], sb: &[u64]) -> bool {
    sa.iter().all(|&x| {
        let a_from = sa.len() - sa.partition_point(|&y| y < x);
        let b_after = sb.len() - sb.partition_point(|&y| y <= x);
        b_after >= a_from
    })
}

/// Each `a` can have a `b` before it of its own.
fn own_before(sa: &[u64], sb: &[u64]) -> bool {
    sa.iter().all(|&x| {
        let a_to = sa.partition_point(|&y| y <= x);
        let b_before = sb.partition_point(|&y| y < x);
        b_before >= a_to
    })
}

/// A trace's tree as mining reads it, per group: the group of its spans' parents, and the
/// groups every one of its spans descends from (by a walk from the root keeping the
/// groups on the path). Its buffers are reused from trace to trace.
#[derive(Debug, Default)]
struct Tree {
    /// Per group, how its spans hang.
    parents: Vec<Parents>,
    /// Per group, the groups all its spans descend from (sorted), once `met`.
    ancestors: Vec<Vec<usize>>,
    /// Per group, whether a span of it was met in the walk.
    met: Vec<bool>,
    /// Per span, its parent (an index).
    parent: Vec<Option<usize>>,
    /// Span ids with their indexes, sorted: for finding parents.
    by_id: Vec<(crate::trace::SpanId, usize)>,
    /// Children, as ranges of one array: span `i`'s are `children[first[i]..first[i + 1]]`.
    first: Vec<usize>,
    fill: Vec<usize>,
    children: Vec<usize>,
    /// Per group, its spans on the path being walked.
    on_path: Vec<u32>,
    /// The groups on that path.
    path: Vec<usize>,
    /// (span, next child to visit).
    stack: Vec<(usize, usize)>,
}

impl Tree {
    /// Walks `t` (arranged as `a`).
    fn walk(&mut self, t: &Trace, a: &Arranged) {
        let n = t.spans.len();
        super::cut::parents_into(t, &mut self.by_id, &mut self.parent);
        self.first.clear();
        self.first.resize(n + 1, 0);
        for p in self.parent.iter().flatten() {
            self.first[*p + 1] += 1;
        }
        for i in 0..n {
            self.first[i + 1] += self.first[i];
        }
        self.fill.clear();
        self.fill.extend_from_slice(&self.first);
        self.children.clear();
        self.children.resize(self.first[n], 0);
        for (i, p) in self.parent.iter().enumerate() {
            if let Some(p) = p {
                self.children[self.fill[*p]] = i;
                self.fill[*p] += 1;
            }
        }
        let groups = a.groups.len();
        self.parents.clear();
        self.parents.resize(groups, Parents::Unseen);
        if self.ancestors.len() < groups {
            self.ancestors.resize(groups, Vec::new());
        }
        self.met.clear();
        self.met.resize(groups, false);
        self.on_path.clear();
        self.on_path.resize(groups, 0);
        self.path.clear();
        self.stack.clear();
        let Some(root) = t.root() else {
            return;
        };
        self.stack.push((root, self.first[root]));
        self.enter(root, None, a);
        let mut visited = 1usize;
        while let Some(&(s, next)) = self.stack.last() {
            if next < self.first[s + 1] && visited <= n {
                let c = self.children[next];
                self.stack.last_mut().expect("not empty").1 += 1;
                self.enter(c, Some(a.group_of[s]), a);
                self.stack.push((c, self.first[c]));
                visited += 1;
            } else {
                self.on_path[a.group_of[s]] -= 1;
                self.path.pop();
                self.stack.pop();
            }
        }
    }

    /// Meets span `s` (its parent's group `pg`) and puts it on the path.
    fn enter(&mut self, s: usize, pg: Option<usize>, a: &Arranged) {
        let g = a.group_of[s];
        self.parents[g] = match (&self.parents[g], pg) {
            (Parents::Unseen, Some(p)) => Parents::One(p),
            (Parents::One(q), Some(p)) if *q == p => Parents::One(p),
            _ => Parents::Mixed,
        };
        let set = &mut self.ancestors[g];
        if self.met[g] {
            let on_path = &self.on_path;
            set.retain(|&x| on_path[x] > 0);
        } else {
            self.met[g] = true;
            set.clear();
            set.extend(self.path.iter().copied().filter(|&x| x != g));
            set.sort_unstable();
            set.dedup();
        }
        self.on_path[g] += 1;
        self.path.push(g);
    }

    /// Whether every span of group `g` descends from a span of group `of`.
    fn within(&self, g: usize, of: usize) -> bool {
        self.met[g] && self.ancestors[g].contains(&of)
    }
}

/// A value's hash for telling values apart; integral floats hash as integers (`5 == 5.0`).
/// Arrays and opaque values are not mined. foldhash with a fixed seed: a hash of every
/// value mined, the same in every miner.
fn hash_value(v: ValueRef<'_>) -> Option<u64> {
    let mut h = foldhash::fast::FixedState::with_seed(0).build_hasher();
    match v {
        ValueRef::Str(s) => {
            h.write_u8(0);
            h.write(s.as_bytes());
        }
        ValueRef::Int(i) => {
            h.write_u8(1);
            h.write_i64(i);
        }
        ValueRef::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
            h.write_u8(1);
            h.write_i64(f as i64);
        }
        ValueRef::Float(f) => {
            h.write_u8(2);
            h.write_u64(f.to_bits());
        }
        ValueRef::Bool(b) => {
            h.write_u8(3);
            h.write_u8(u8::from(b));
        }
        ValueRef::Duration(d) => {
            h.write_u8(4);
            h.write_i64(d);
        }
        ValueRef::Array(_) | ValueRef::Opaque => return None,
    }
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_before_the_next() {
        assert!(answered_before_next(&[0, 10], &[5, 15]));
        assert!(!answered_before_next(&[0, 10], &[15]));
        // An equal start does not bound: the next `a` is the next later one.
        assert!(answered_before_next(&[0, 0, 10], &[5, 15]));
        assert!(!answered_before_next(&[0, 10], &[10, 20]));
    }

    #[test]
    fn own_partners_by_hall() {
        assert!(own_after(&[0, 5], &[6, 7]));
        assert!(own_after(&[0, 5], &[1, 7]));
        assert!(!own_after(&[0, 5], &[7]));
        assert!(!own_after(&[5, 5], &[6, 5]));
        assert!(own_before(&[10, 20], &[0, 15]));
        assert!(!own_before(&[10, 20], &[0, 25]));
        assert!(!own_before(&[10, 10], &[0, 10]));
    }
}
