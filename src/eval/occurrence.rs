//! What judging per occurrence (docs/language.md, "Per occurrence") needs beside the VM's
//! trace-level machinery, kept free of the VM's state so that each piece is plain:
//!
//! * [`JoinKey`] and [`Family`]: a join `k == $x.j` looks candidates up by value. The
//!   language's `==` is not an equivalence across types (`"50" == 50` and `50 == "50.0"`,
//!   but not `"50" == "50.0"`), so values are grouped by an exact key only within one
//!   family (all strings, all numbers, all booleans); a lookup across families falls back
//!   to comparing each candidate.
//! * [`Window`]: the instants a partner of a binding may start at.
//! * [`match_partners`]: the `own` matching — spans in start order, each to the binding
//!   still without a partner whose window ends first (earliest deadline first), which is
//!   a maximum matching for interval windows, in `O(n log n)`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};

use crate::lang::value::ValueRef;

/// The kinds of values a join groups exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// No value at all: nothing can equal anything.
    Empty,
    /// Strings only.
    Str,
    /// Integers and floats only.
    Num,
    /// Booleans only.
    Bool,
    /// A mix, or values (durations, arrays, opaque) no key groups exactly.
    Mixed,
}

impl Family {
    /// The family of one value; `Mixed` for those no key groups.
    pub(crate) fn of(v: ValueRef<'_>) -> Family {
        match v {
            ValueRef::Str(_) => Family::Str,
            ValueRef::Int(_) | ValueRef::Float(_) => Family::Num,
            ValueRef::Bool(_) => Family::Bool,
            _ => Family::Mixed,
        }
    }

    /// The family of a set holding values of both.
    pub(crate) fn join(self, other: Family) -> Family {
        match (self, other) {
            (Family::Empty, f) | (f, Family::Empty) => f,
            (a, b) if a == b => a,
            _ => Family::Mixed,
        }
    }
}

/// A value as an exact hash key for `==` within its [`Family`]: equal keys are equal
/// values and equal values have equal keys, for values of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinKey<'a> {
    /// A string.
    Str(&'a str),
    /// An integer, or a float with an integral value that fits in 64 bits (so that
    /// `3 == 3.0` share a key).
    Int(i64),
    /// Any other float, by its bits (`-0.0` is the integer 0; a NaN has no key).
    Float(u64),
    /// A boolean.
    Bool(bool),
}

impl<'a> JoinKey<'a> {
    /// The key of a value; `None` for a NaN (equal to nothing) and for values of the
    /// `Mixed` family.
    pub(crate) fn of(v: ValueRef<'a>) -> Option<JoinKey<'a>> {
        // 2^63: the first float above every i64.
        const TWO_63: f64 = 9_223_372_036_854_775_808.0;
        match v {
            ValueRef::Str(s) => Some(JoinKey::Str(s)),
            ValueRef::Int(i) => Some(JoinKey::Int(i)),
            ValueRef::Float(f) if f.is_nan() => None,
            ValueRef::Float(f) if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) => {
                Some(JoinKey::Int(f as i64))
            }
            ValueRef::Float(f) => Some(JoinKey::Float(f.to_bits())),
            ValueRef::Bool(b) => Some(JoinKey::Bool(b)),
            _ => None,
        }
    }
}

impl Hash for JoinKey<'_> {
    /// The payload alone, one word for a number: keys of different kinds that hash alike
    /// are still told apart by `==`, and a join's keys are almost always of one kind.
    fn hash<H: Hasher>(&self, state: &mut H) {
        match *self {
            JoinKey::Str(s) => s.hash(state),
            JoinKey::Int(i) => state.write_u64(i as u64),
            JoinKey::Float(bits) => state.write_u64(bits),
            JoinKey::Bool(b) => state.write_u8(b as u8),
        }
    }
}

/// The instants, in nanoseconds, at which a partner of a binding may start: `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// The earliest admissible start.
    pub(crate) lo: u64,
    /// The latest admissible start (the window's end, which the matching orders by).
    pub(crate) hi: u64,
}

impl Window {
    /// Whether a span starting at `start` falls inside.
    pub(crate) fn holds(self, start: u64) -> bool {
        self.lo <= start && start <= self.hi
    }

    /// Whether no instant is admissible.
    pub(crate) fn is_empty(self) -> bool {
        self.lo > self.hi
    }
}

/// One binding entering an `own` matching.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    /// Where its partner may start.
    pub(crate) window: Window,
    /// The bound span's start and id (its bytes read as a big-endian number, which orders
    /// as the bytes do), for ties between equal window ends.
    pub(crate) order: (u64, u64),
    /// The bound span's index, the last tie-break and the result.
    pub(crate) span: u32,
}

/// A claim's place in the matching's queue: the earliest window end first, then the
/// earlier bound span, then the lower span id and index.
type Deadline = Reverse<(u64, (u64, u64), u32)>;

/// Matches candidates (start instants, in start order with ties already broken) to claims,
/// all of one join group: each candidate goes to the claim still without a partner, open at
/// its start, whose window ends first (ties: the earlier bound span, then the lower span id).
/// Appends the claims left without a partner to `left`. `O((n + m) log m)`.
pub(crate) fn match_partners(candidates: &[u64], claims: &mut [Claim], left: &mut Vec<u32>) {
    if !claims.is_sorted_by_key(|c| (c.window.lo, c.span)) {
        claims.sort_by_key(|c| (c.window.lo, c.span));
    }
    let key = |c: &Claim| -> Deadline { Reverse((c.window.hi, c.order, c.span)) };
    let mut open: BinaryHeap<(Deadline, usize)> = BinaryHeap::new();
    let mut next = 0;
    for &start in candidates {
        while next < claims.len() && claims[next].window.lo <= start {
            if !claims[next].window.is_empty() {
                open.push((key(&claims[next]), next));
            } else {
                left.push(claims[next].span);
            }
            next += 1;
        }
        // Claims whose window closed before this candidate can no longer be served.
        while let Some((Reverse((hi, _, _)), i)) = open.peek().copied() {
            if hi >= start {
                break;
            }
            open.pop();
            left.push(claims[i].span);
        }
        open.pop();
    }
    left.extend(open.into_iter().map(|(_, i)| claims[i].span));
    left.extend(claims[next..].iter().map(|c| c.span));
}

/// Items grouped by their group number (a counting sort, stable): the items group after
/// group, and where each group begins, then where the last one ends. Every number must be
/// below `groups`.
pub(crate) fn bucket<T: Copy>(items: &[(u32, T)], groups: usize) -> (Vec<T>, Vec<u32>) {
    let mut bounds = vec![0u32; groups + 1];
    for &(g, _) in items {
        bounds[g as usize + 1] += 1;
    }
    for g in 0..groups {
        bounds[g + 1] += bounds[g];
    }
    let Some(&(_, filler)) = items.first() else {
        return (Vec::new(), bounds);
    };
    let mut next = bounds.clone();
    let mut out = vec![filler; items.len()];
    for &(g, item) in items {
        out[next[g as usize] as usize] = item;
        next[g as usize] += 1;
    }
    (out, bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(lo: u64, hi: u64, span: u32) -> Claim {
        Claim {
            window: Window { lo, hi },
            order: (lo, span as u64),
            span,
        }
    }

    #[test]
    fn earliest_deadline_first_serves_both() {
        // A wide window and a narrow one, one candidate each in reach.
        let mut claims = vec![claim(0, 100, 0), claim(0, 10, 1)];
        let mut left = Vec::new();
        match_partners(&[5, 50], &mut claims, &mut left);
        assert!(left.is_empty());
        // One candidate: the narrow window takes it.
        let mut claims = vec![claim(0, 100, 0), claim(0, 10, 1)];
        match_partners(&[5], &mut claims, &mut left);
        assert_eq!(left, vec![0]);
    }

    #[test]
    fn closed_and_unopened_windows_are_left_over() {
        let mut claims = vec![claim(0, 3, 0), claim(20, 30, 1), claim(5, 4, 2)];
        let mut left = Vec::new();
        match_partners(&[10], &mut claims, &mut left);
        left.sort_unstable();
        assert_eq!(left, vec![0, 1, 2]);
    }

    #[test]
    fn bucket_groups_stably() {
        let items = [(2, 'a'), (0, 'b'), (2, 'c'), (0, 'd')];
        assert_eq!(
            bucket(&items, 3),
            (vec!['b', 'd', 'a', 'c'], vec![0, 2, 2, 4])
        );
        assert_eq!(bucket::<char>(&[], 2), (vec![], vec![0, 0, 0]));
    }

    #[test]
    fn keys_are_exact_within_a_family() {
        assert_eq!(
            JoinKey::of(ValueRef::Float(3.0)),
            JoinKey::of(ValueRef::Int(3))
        );
        assert_eq!(
            JoinKey::of(ValueRef::Float(-0.0)),
            JoinKey::of(ValueRef::Int(0))
        );
        assert_ne!(
            JoinKey::of(ValueRef::Float(9_223_372_036_854_775_808.0)),
            JoinKey::of(ValueRef::Int(i64::MAX))
        );
        assert_eq!(JoinKey::of(ValueRef::Float(f64::NAN)), None);
        assert_eq!(Family::Str.join(Family::Num), Family::Mixed);
        assert_eq!(Family::Empty.join(Family::Num), Family::Num);
    }
}
