//! Mining: each complete trace read once into counters — per span name, per ordered pair
//! of names that occur together, per (name, attribute key) — never the trace itself, so
//! memory depends on how many names and keys there are, not on how many traces.
//!
//! What is counted per trace is whether each template *holds* on it (docs/discover.md,
//! "Templates"): the counts only choose which candidates to verify; the counts a candidate
//! reports come from judging it with the engine ([`super::verify`]).

use std::collections::HashMap as StdMap;
use std::hash::Hasher;

use crate::lang::value::ValueRef;
use crate::trace::projected::{KeyId, Trace};

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
}

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
    pairs: HashMap<(NameId, NameId), PairStats>,
    keys: HashMap<(NameId, KeyId), KeyStats>,
    agree: HashMap<(NameId, NameId, KeyId), u64>,
    /// Per key: traces where spans of two names or more carry it, and of those, the ones
    /// where it has one value throughout (an id of the whole trace: agreeing on it says
    /// nothing about two names).
    shared: HashMap<KeyId, (u64, u64)>,
}

/// One attribute value of a trace: its key, the group of its span, its hash.
type Value = (KeyId, usize, u64);

/// One trace, arranged for mining: its spans grouped by name, each group in start order.
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
        self.pairs.iter()
    }

    /// The counts of the pair `(a, b)`, if they ever occurred together.
    pub fn pair_stats(&self, a: NameId, b: NameId) -> Option<&PairStats> {
        self.pairs.get(&(a, b))
    }

    /// Every (name, key) with its counts.
    pub fn keys(&self) -> impl Iterator<Item = (&(NameId, KeyId), &KeyStats)> {
        self.keys.iter()
    }

    /// The counts of a (name, key), if it was ever seen.
    pub fn key_stats(&self, name: NameId, key: KeyId) -> Option<&KeyStats> {
        self.keys.get(&(name, key))
    }

    /// How often `key` has one value throughout a trace where two names or more carry it
    /// (0 when it never was carried so).
    pub fn one_per_trace(&self, key: KeyId) -> f64 {
        match self.shared.get(&key) {
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
        id
    }

    /// Mines one complete trace.
    pub fn observe(&mut self, t: &Trace) {
        if t.spans.is_empty() {
            return;
        }
        self.traces += 1;
        let a = self.arrange(t);
        for (name, range) in &a.groups {
            let s = &mut self.per_name[*name as usize];
            s.traces += 1;
            s.multi += u64::from(range.len() > 1);
            s.counts.add(range.len() as u64);
        }
        if let Some(r) = t.root() {
            self.per_name[a.groups[a.group_of[r]].0 as usize].root += 1;
        }
        let (parents, ancestors) = tree(t, &a);
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
                    self.pair(&a, ga, gb, &parents, &ancestors);
                }
            }
        }
        self.values(t, &a);
    }

    fn arrange(&mut self, t: &Trace) -> Arranged {
        let ids: Vec<NameId> = t.spans.iter().map(|s| self.intern(t.name(s))).collect();
        let mut order: Vec<usize> = (0..t.spans.len()).collect();
        order.sort_unstable_by_key(|&i| (ids[i], t.spans[i].start_unix_nano, t.spans[i].span_id));
        let starts = order.iter().map(|&i| t.spans[i].start_unix_nano).collect();
        let mut groups: Vec<(NameId, std::ops::Range<usize>)> = Vec::new();
        let mut group_of = vec![0; t.spans.len()];
        for (k, &i) in order.iter().enumerate() {
            match groups.last_mut() {
                Some((name, range)) if *name == ids[i] => range.end = k + 1,
                _ => groups.push((ids[i], k..k + 1)),
            }
            group_of[i] = groups.len() - 1;
        }
        Arranged {
            groups,
            order,
            starts,
            group_of,
        }
    }

    fn pair(
        &mut self,
        a: &Arranged,
        ga: usize,
        gb: usize,
        parents: &[Parents],
        ancestors: &[Option<Vec<usize>>],
    ) {
        let key = (a.groups[ga].0, a.groups[gb].0);
        if !self.pairs.contains_key(&key) && self.pairs.len() >= MAX_PAIRS {
            self.pairs_dropped += 1;
            return;
        }
        let sa = &a.starts[a.groups[ga].1.clone()];
        let sb = &a.starts[a.groups[gb].1.clone()];
        let p = self.pairs.entry(key).or_default();
        p.co += 1;
        p.before += u64::from(sa[0] < sb[0]);
        let response = sb[sb.len() - 1] > sa[sa.len() - 1];
        if response {
            p.response += 1;
            p.response_until += u64::from(answered_before_next(sa, sb));
            p.own_after += u64::from(own_after(sa, sb));
        }
        p.own_before += u64::from(sa[0] > sb[0] && own_before(sa, sb));
        p.child_of += u64::from(matches!(parents[gb], Parents::One(g) if g == ga));
        p.within += u64::from(ancestors[gb].as_ref().is_some_and(|s| s.contains(&ga)));
        let after = p.after_delay.get_or_insert_with(Box::default);
        for &x in sa {
            let at = sb.partition_point(|&y| y <= x);
            if let Some(&y) = sb.get(at) {
                after.add(y - x);
            }
        }
        let before = p.before_delay.get_or_insert_with(Box::default);
        for &y in sb {
            let at = sa.partition_point(|&x| x < y);
            if at > 0 {
                before.add(y - sa[at - 1]);
            }
        }
    }

    /// Attribute values: presence, sameness within a name, agreement across names.
    fn values(&mut self, t: &Trace, a: &Arranged) {
        // Sorted, so that each key's groups lie together.
        let mut vals: Vec<Value> = Vec::new();
        for &i in &a.order {
            for (key, v) in t.attr_ids(&t.spans[i]) {
                if let Some(h) = hash_value(v) {
                    vals.push((key, a.group_of[i], h));
                }
            }
        }
        vals.sort_unstable();
        let mut at = 0;
        while at < vals.len() {
            let key = vals[at].0;
            let end = at + vals[at..].partition_point(|v| v.0 == key);
            self.key_values(a, key, &vals[at..end]);
            at = end;
        }
    }

    /// One key's values in one trace, sorted by group then hash.
    fn key_values(&mut self, a: &Arranged, key: KeyId, vals: &[Value]) {
        // Per group carrying the key: its values (sorted) and whether every span has one.
        let mut carriers: Vec<(usize, &[Value], bool)> = Vec::new();
        let mut at = 0;
        while at < vals.len() {
            let g = vals[at].1;
            let end = at + vals[at..].partition_point(|v| v.1 == g);
            let all = end - at == a.groups[g].1.len();
            carriers.push((g, &vals[at..end], all));
            at = end;
        }
        for &(g, vs, all) in &carriers {
            let name = a.groups[g].0;
            let s = self.keys.entry((name, key)).or_default();
            s.present += u64::from(all);
            for v in vs {
                s.values.add(v.2);
            }
            if a.groups[g].1.len() > 1 && vs.iter().all(|v| v.2 == vs[0].2) {
                s.same += 1;
            }
        }
        if carriers.len() > 1 {
            let one = vals.iter().all(|v| v.2 == vals[0].2);
            let e = self.shared.entry(key).or_default();
            e.0 += 1;
            e.1 += u64::from(one);
            // A key that is one value throughout nearly every trace (an order id on
            // every span) can give no agreement worth reporting (its lift stays under
            // the least): stop counting its agreements once that is clear.
            if e.0 >= 1_000 && e.1 * 100 >= e.0 * 99 {
                return;
            }
        }
        for &(ga, va, all) in &carriers {
            if !all {
                continue;
            }
            for &(gb, vb, _) in &carriers {
                if ga == gb
                    || !va
                        .iter()
                        .all(|x| vb.binary_search_by_key(&x.2, |y| y.2).is_ok())
                {
                    continue;
                }
                let k = (a.groups[ga].0, a.groups[gb].0, key);
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

    /// Adds another miner's counts (its names matched to ours by text).
    pub fn merge(&mut self, other: Miner) {
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
        for ((x, y), p) in other.pairs {
            let key = (map[x as usize], map[y as usize]);
            if !self.pairs.contains_key(&key) && self.pairs.len() >= MAX_PAIRS {
                self.pairs_dropped += 1;
                continue;
            }
            let m = self.pairs.entry(key).or_default();
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
        }
        for ((n, k), s) in other.keys {
            let m = self.keys.entry((map[n as usize], k)).or_default();
            m.present += s.present;
            m.same += s.same;
            m.values.merge(&s.values);
        }
        for (k, (n, one)) in other.shared {
            let e = self.shared.entry(k).or_default();
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

/// Per group: the group of its spans' parents, and the groups every one of its spans
/// descends from (by a walk from the root keeping the groups on the path).
fn tree(t: &Trace, a: &Arranged) -> (Vec<Parents>, Vec<Option<Vec<usize>>>) {
    let n = t.spans.len();
    let parent = super::cut::parents(t);
    // Children, as ranges of one array.
    let mut first = vec![0usize; n + 1];
    for p in parent.iter().flatten() {
        first[*p + 1] += 1;
    }
    for i in 0..n {
        first[i + 1] += first[i];
    }
    let mut fill = first.clone();
    let mut children = vec![0usize; first[n]];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[fill[*p]] = i;
            fill[*p] += 1;
        }
    }
    let groups = a.groups.len();
    let mut parents = vec![Parents::Unseen; groups];
    let mut ancestors: Vec<Option<Vec<usize>>> = vec![None; groups];
    let mut on_path = vec![0u32; groups];
    let mut path: Vec<usize> = Vec::new();
    let Some(root) = t.root() else {
        return (parents, ancestors);
    };
    // (span, next child to visit)
    let mut stack: Vec<(usize, usize)> = vec![(root, first[root])];
    enter(root, None, a, &mut parents, &mut ancestors, &on_path, &path);
    on_path[a.group_of[root]] += 1;
    path.push(a.group_of[root]);
    let mut visited = 1usize;
    while let Some((s, next)) = stack.last_mut() {
        if *next < first[*s + 1] && visited <= n {
            let c = children[*next];
            *next += 1;
            let pg = a.group_of[*s];
            enter(
                c,
                Some(pg),
                a,
                &mut parents,
                &mut ancestors,
                &on_path,
                &path,
            );
            on_path[a.group_of[c]] += 1;
            path.push(a.group_of[c]);
            stack.push((c, first[c]));
            visited += 1;
        } else {
            on_path[a.group_of[*s]] -= 1;
            path.pop();
            stack.pop();
        }
    }
    (parents, ancestors)
}

/// Meets span `s` (its parent's group `pg`) with the groups on the path to it counted in
/// `on_path` and listed in `path`.
fn enter(
    s: usize,
    pg: Option<usize>,
    a: &Arranged,
    parents: &mut [Parents],
    ancestors: &mut [Option<Vec<usize>>],
    on_path: &[u32],
    path: &[usize],
) {
    let g = a.group_of[s];
    parents[g] = match (&parents[g], pg) {
        (Parents::Unseen, Some(p)) => Parents::One(p),
        (Parents::One(q), Some(p)) if *q == p => Parents::One(p),
        _ => Parents::Mixed,
    };
    match &mut ancestors[g] {
        Some(set) => set.retain(|&x| on_path[x] > 0),
        None => {
            let mut set: Vec<usize> = path.iter().copied().filter(|&x| x != g).collect();
            set.sort_unstable();
            set.dedup();
            ancestors[g] = Some(set);
        }
    }
}

/// A value's hash for telling values apart; integral floats hash as integers (`5 == 5.0`).
/// Arrays and opaque values are not mined.
fn hash_value(v: ValueRef<'_>) -> Option<u64> {
    let mut h = fnv::FnvHasher::default();
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
