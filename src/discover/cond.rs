//! The values the two value families read (docs/discover.md, "Templates"):
//!
//! * **conditions on frequent values** (`A.where(k == v)`, `A.where(k > c)`), chosen before
//!   mining from the key sample ([`super::keys`]): a string or integer value on at least 2%
//!   of the sampled spans of a name, or a numeric cut point at the 50th and 90th percentile
//!   of the sampled values, rounded to two significant digits — never an extreme. Mining
//!   then counts each chosen condition exactly over every trace.
//! * **value samples** for the bounds across spans (`sum(B, k) <= $a.k`): a bounded sample
//!   of traces (the 64 with the lowest hash of their trace id: the same whatever the order
//!   or threads) of each name's least, greatest and summed value of a key, from which the
//!   chance that a bound holds when values are shuffled across traces is read.

use std::collections::HashMap;

use crate::lang::value::{compare, CmpOp, Number, ValueRef};
use crate::trace::projected::{KeyId, Projection};

use super::candidate::attr;

/// A value an attribute was sampled with, as a condition can compare with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Lit {
    /// As a value the language's comparison reads.
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Lit::Str(s) => ValueRef::Str(s),
            Lit::Int(i) => ValueRef::Int(*i),
            Lit::Float(f) => ValueRef::Float(*f),
        }
    }

    /// The number it stands for in a numeric comparison (a string that reads whole as one
    /// included, as the language reads it); `None` for anything else, NaN included.
    fn number(&self) -> Option<f64> {
        Number::of(self.as_ref()).map(Number::as_f64)
    }

    /// As a literal of the language: `None` for what a condition should not be written
    /// with (a long string, one with quotes, backslashes or control characters, a float).
    fn literal(&self) -> Option<String> {
        match self {
            Lit::Str(s)
                if !s.is_empty()
                    && s.len() <= MAX_LITERAL
                    && !s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) =>
            {
                Some(format!("\"{s}\""))
            }
            Lit::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

/// Longest string value a condition is written with.
const MAX_LITERAL: usize = 64;
/// Distinct values tallied per (name, key) in the sample; beyond it the key is no category.
const MAX_DISTINCT: usize = 64;
/// Numeric values kept per (name, key) in the sample, for its percentiles.
const MAX_NUMBERS: usize = 4_096;
/// (name, key) pairs tallied in the sample.
const MAX_TALLIES: usize = 16_384;
/// Least sampled spans of a (name, key) for a condition on it.
const MIN_SAMPLED: u64 = 20;
/// Most distinct values of a key that is a category (an equality condition per frequent
/// value); more, and it is an id or a measure.
const MAX_CATEGORIES: usize = 20;
/// Least share of the sampled spans a value is on to be a frequent value: 1 in 50.
const MIN_SHARE: u64 = 50;
/// Frequent values per (name, key) made conditions, at most.
const VALUES_PER_KEY: usize = 3;
/// The percentiles a numeric cut point is read at.
const CUT_PERCENTILES: [u32; 2] = [50, 90];
/// Least distinct numeric values of a key cut at percentiles.
const MIN_DISTINCT_NUMBERS: usize = 10;
/// Conditions per span name, at most…
pub const MAX_CONDITIONS_PER_NAME: usize = 16;
/// …and in all.
pub const MAX_CONDITIONS: usize = 1_024;

/// What the sample saw of one key on one span name.
#[derive(Debug, Default)]
struct Tally {
    spans: u64,
    /// Strings and integers, with the spans holding each (at most [`MAX_DISTINCT`]).
    values: Vec<(Lit, u64)>,
    /// More distinct values than were tallied.
    many: bool,
    /// Spans with a numeric value (a number, or a string that reads as one).
    numeric: u64,
    /// The first numeric values.
    numbers: Vec<f64>,
}

impl Tally {
    fn add(&mut self, lit: Lit) {
        self.spans += 1;
        if let Some(n) = lit.number() {
            self.numeric += 1;
            if self.numbers.len() < MAX_NUMBERS {
                self.numbers.push(n);
            }
        }
        if matches!(lit, Lit::Float(_)) {
            return;
        }
        if let Some((_, n)) = self.values.iter_mut().find(|(v, _)| *v == lit) {
            *n += 1;
        } else if self.values.len() < MAX_DISTINCT {
            self.values.push((lit, 1));
        } else {
            self.many = true;
        }
    }
}

/// The values the key sample saw, per (span name, key): bounded.
#[derive(Debug, Default)]
pub struct Tallies {
    /// Per name, per key.
    by: HashMap<String, HashMap<String, Tally>>,
    /// (name, key) pairs tallied.
    len: usize,
}

impl Tallies {
    /// Counts one attribute value of a span named `name`.
    pub fn add(&mut self, name: &str, key: &str, lit: Lit) {
        if let Some(t) = self.by.get_mut(name).and_then(|k| k.get_mut(key)) {
            t.add(lit);
        } else if self.len < MAX_TALLIES {
            self.len += 1;
            let mut t = Tally::default();
            t.add(lit);
            self.by
                .entry(name.to_string())
                .or_default()
                .insert(key.to_string(), t);
        }
    }
}

/// What a condition tests of a span's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// The value equals this one (as the language's `==` reads it).
    Eq(Lit),
    /// The value is a number above this cut point.
    Above(Lit),
}

/// A condition on the spans of one name: `name.where(key OP value)`.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The span name.
    pub name: String,
    /// The attribute key.
    pub key: String,
    /// What it tests.
    pub test: Test,
    /// The filter as written in a condition: `amount > 1000`, `status == "500"`.
    pub text: String,
    /// The value as written (`1000`, `"500"`): for rule ids and names.
    pub value: String,
    /// How it was chosen, for the candidate's `bound`.
    pub why: String,
}

impl Condition {
    /// Whether a span's value of the key passes it, as the language's comparison says.
    pub fn holds(&self, v: ValueRef<'_>) -> bool {
        match (&self.test, v) {
            // Two strings compare as strings (most values mined): no need for the general
            // comparison.
            (Test::Eq(Lit::Str(l)), ValueRef::Str(s)) => return l == s,
            (Test::Eq(Lit::Str(_)), ValueRef::Bool(_) | ValueRef::Array(_) | ValueRef::Opaque) => {
                return false
            }
            _ => {}
        }
        match &self.test {
            Test::Eq(l) => compare(v, CmpOp::Eq, l.as_ref()),
            Test::Above(l) => compare(v, CmpOp::Gt, l.as_ref()),
        }
    }

    /// A cut point's value (for ordering cut points of one key); `None` for an equality.
    pub fn cut(&self) -> Option<f64> {
        match &self.test {
            Test::Above(l) => l.number(),
            Test::Eq(_) => None,
        }
    }
}

/// The conditions mining counts, with their keys resolved in the mining projection.
#[derive(Debug, Default)]
pub struct Setup {
    /// The conditions, in a fixed order: a condition's index is its id.
    pub conditions: Vec<Condition>,
    /// Each condition's key id.
    pub key_ids: Vec<KeyId>,
    /// Per span name, its conditions' indexes.
    pub by_name: HashMap<String, Vec<u32>>,
}

impl Setup {
    /// The conditions whose keys the projection reads (the others cannot be counted).
    pub fn new(conditions: Vec<Condition>, projection: &Projection) -> Setup {
        let mut s = Setup::default();
        for c in conditions {
            let Some(k) = projection.key(&c.key) else {
                continue;
            };
            s.by_name
                .entry(c.name.clone())
                .or_default()
                .push(s.conditions.len() as u32);
            s.key_ids.push(k);
            s.conditions.push(c);
        }
        s
    }
}

/// The conditions to mine: for each (name, key) of the mined keys sampled on enough spans,
/// its frequent values (a category: at most [`MAX_CATEGORIES`] distinct strings or
/// integers, each value on at least 2% of the sampled spans, the [`VALUES_PER_KEY`] most
/// frequent) and, for a numeric measure, cut points at the 50th and 90th percentile of
/// the sampled values rounded to two significant digits (a cut no sampled value is above,
/// or that every one is above, says nothing and is left out).
pub fn choose(tallies: &Tallies, keys: &[String]) -> Vec<Condition> {
    let mut pairs: Vec<((&String, &String), &Tally)> = tallies
        .by
        .iter()
        .flat_map(|(name, keys)| keys.iter().map(move |(key, t)| ((name, key), t)))
        .filter(|((name, key), t)| {
            t.spans >= MIN_SAMPLED && keys.contains(key) && !name.is_empty() && !name.contains('\n')
        })
        .collect();
    pairs.sort_by(|x, y| x.0.cmp(&y.0));
    let mut out: Vec<Condition> = Vec::new();
    let mut per_name: HashMap<&str, usize> = HashMap::new();
    for ((name, key), t) in pairs {
        let mut mine = frequent_values(name, key, t);
        if mine.is_empty() {
            mine = cut_points(name, key, t);
        }
        let n = per_name.entry(name).or_default();
        let room = MAX_CONDITIONS_PER_NAME
            .saturating_sub(*n)
            .min(MAX_CONDITIONS.saturating_sub(out.len()));
        mine.truncate(room);
        *n += mine.len();
        out.extend(mine);
    }
    out
}

/// Equality conditions on a category's frequent values.
fn frequent_values(name: &str, key: &str, t: &Tally) -> Vec<Condition> {
    if t.many || t.values.len() < 2 || t.values.len() > MAX_CATEGORIES {
        return Vec::new();
    }
    let mut vals: Vec<&(Lit, u64)> = t
        .values
        .iter()
        .filter(|(_, n)| n * MIN_SHARE >= t.spans && *n >= 3)
        .collect();
    vals.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.literal().cmp(&b.0.literal()))
    });
    vals.into_iter()
        .filter_map(|(lit, n)| {
            let value = lit.literal()?;
            Some(Condition {
                name: name.to_string(),
                key: key.to_string(),
                text: format!("{} == {value}", attr(key)),
                why: format!(
                    "a frequent value: on {n} of {} sampled {name} spans with {key}",
                    t.spans
                ),
                value,
                test: Test::Eq(lit.clone()),
            })
        })
        .take(VALUES_PER_KEY)
        .collect()
}

/// `> c` conditions at percentiles of a numeric measure.
fn cut_points(name: &str, key: &str, t: &Tally) -> Vec<Condition> {
    // A measure: (nearly) every value numeric, and many of them.
    if t.numeric * 10 < t.spans * 9 {
        return Vec::new();
    }
    let mut nums: Vec<f64> = t
        .numbers
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    nums.sort_by(f64::total_cmp);
    let mut distinct = nums.clone();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT_NUMBERS {
        return Vec::new();
    }
    let (lo, hi) = (nums[0], nums[nums.len() - 1]);
    let mut out: Vec<Condition> = Vec::new();
    for p in CUT_PERCENTILES {
        let at = ((u64::from(p) * nums.len() as u64).div_ceil(100) as usize).clamp(1, nums.len());
        let Some(lit) = round2(nums[at - 1]) else {
            continue;
        };
        let Some(c) = lit.number() else { continue };
        if c < lo || c >= hi || out.iter().any(|o| o.cut() == Some(c)) {
            continue;
        }
        let value = match &lit {
            Lit::Int(i) => i.to_string(),
            Lit::Float(f) => float_text(*f),
            Lit::Str(_) => continue,
        };
        out.push(Condition {
            name: name.to_string(),
            key: key.to_string(),
            text: format!("{} > {value}", attr(key)),
            why: format!(
                "cut point: the {p}th percentile of {} sampled values of {key} on {name}, {}, to two significant digits",
                nums.len(),
                nums[at - 1]
            ),
            value,
            test: Test::Above(lit),
        });
    }
    out
}

/// A number to two significant digits, as the literal a condition is written with: an
/// integer when it is whole, else a float whose text reads back as itself; `None` beyond
/// what reads plainly (magnitudes from 1e-6 to 1e15).
fn round2(x: f64) -> Option<Lit> {
    if x == 0.0 {
        return Some(Lit::Int(0));
    }
    if !x.is_finite() || x.abs() < 1e-6 || x.abs() >= 1e15 {
        return None;
    }
    let e = x.abs().log10().floor() as i32;
    if e >= 1 {
        let scale = 10f64.powi(e - 1);
        return Some(Lit::Int(((x / scale).round() * scale) as i64));
    }
    let decimals = (1 - e) as usize;
    let text = format!("{x:.decimals$}");
    let v: f64 = text.parse().ok()?;
    if v.fract() == 0.0 {
        return Some(Lit::Int(v as i64));
    }
    Some(Lit::Float(v))
}

/// A float literal's text: Rust's shortest form, which never uses an exponent.
fn float_text(f: f64) -> String {
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// Traces' values of one key on one name, sampled: per trace, the least value (NaN when
/// some span of the name lacks a numeric one: a bound on it cannot hold), the greatest and
/// the sum — the [`NumSample::K`] traces with the lowest hash, so that the sample is the
/// same whatever the order the traces come in or the threads that mine them.
#[derive(Debug, Clone, Default)]
pub struct NumSample {
    items: Vec<(u64, [f64; 3])>,
    /// The place of the item with the highest hash, once full.
    worst: usize,
}

/// The least, greatest and summed values of a trace.
pub const MIN: usize = 0;
/// …
pub const MAX: usize = 1;
/// …
pub const SUM: usize = 2;

impl NumSample {
    /// Traces kept.
    pub const K: usize = 64;

    /// Offers one trace's values (by its hash).
    pub fn add(&mut self, hash: u64, v: [f64; 3]) {
        if self.items.len() < Self::K {
            self.items.push((hash, v));
            if self.items.len() == Self::K {
                self.find_worst();
            }
        } else if hash < self.items[self.worst].0 {
            self.items[self.worst] = (hash, v);
            self.find_worst();
        }
    }

    fn find_worst(&mut self) {
        self.worst = (0..self.items.len())
            .max_by_key(|&i| self.items[i].0)
            .unwrap_or(0);
    }

    /// Adds another sample's traces.
    pub fn merge(&mut self, other: &NumSample) {
        for &(h, v) in &other.items {
            self.add(h, v);
        }
    }

    /// Traces sampled.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no trace was sampled.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The chance that `x >= y` for `x` the least value of a trace of `self` and `y` the
    /// value `of` ([`MAX`] or [`SUM`]) of another trace of `other`, over every pair of the
    /// two samples: how often the bound holds when values are shuffled across traces.
    /// `None` when either is empty.
    pub fn chance_at_least(&self, other: &NumSample, of: usize) -> Option<f64> {
        if self.is_empty() || other.is_empty() {
            return None;
        }
        let mut ys: Vec<f64> = other.items.iter().map(|(_, v)| v[of]).collect();
        ys.retain(|y| !y.is_nan());
        ys.sort_by(f64::total_cmp);
        let held: usize = self
            .items
            .iter()
            .map(|(_, v)| v[MIN])
            .filter(|x| !x.is_nan())
            .map(|x| ys.partition_point(|&y| y <= x))
            .sum();
        Some(held as f64 / (self.items.len() * other.items.len()) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_two_significant_digits() {
        assert_eq!(round2(1234.0), Some(Lit::Int(1200)));
        assert_eq!(round2(-1250.0), Some(Lit::Int(-1300)));
        assert_eq!(round2(0.02371), Some(Lit::Float(0.024)));
        assert_eq!(round2(7.26), Some(Lit::Float(7.3)));
        assert_eq!(round2(0.999), Some(Lit::Int(1)));
        assert_eq!(round2(f64::NAN), None);
        assert_eq!(round2(f64::INFINITY), None);
        assert_eq!(round2(1e300), None);
        assert_eq!(float_text(7.3), "7.3");
    }

    #[test]
    fn cut_points_come_from_percentiles_not_extremes() {
        let mut t = Tally::default();
        for i in 1..=1000 {
            t.add(Lit::Int(i));
        }
        t.add(Lit::Int(1_000_000));
        let c = cut_points("a", "amount", &t);
        let cuts: Vec<f64> = c.iter().filter_map(Condition::cut).collect();
        assert_eq!(cuts, vec![500.0, 900.0]);
        assert_eq!(c[0].text, "amount > 500");
    }

    #[test]
    fn frequent_values_of_a_category() {
        let mut t = Tally::default();
        for i in 0..100 {
            t.add(Lit::Str(if i % 10 == 0 { "500" } else { "200" }.into()));
        }
        t.add(Lit::Str("418".into()));
        let c = frequent_values("http", "status", &t);
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["status == \"200\"", "status == \"500\""]);
        assert!(c[1].holds(ValueRef::Str("500")));
        assert!(c[1].holds(ValueRef::Int(500)));
        assert!(!c[1].holds(ValueRef::Str("501")));
    }

    #[test]
    fn the_sample_is_the_same_in_any_order() {
        let (mut a, mut b) = (NumSample::default(), NumSample::default());
        for i in 0..500u64 {
            a.add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), [i as f64; 3]);
        }
        for i in (0..500u64).rev() {
            b.add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), [i as f64; 3]);
        }
        let mut x: Vec<u64> = a.items.iter().map(|i| i.0).collect();
        let mut y: Vec<u64> = b.items.iter().map(|i| i.0).collect();
        x.sort_unstable();
        y.sort_unstable();
        assert_eq!(x, y);
        let c = a.chance_at_least(&b, SUM).expect("sampled");
        assert!((0.4..0.6).contains(&c), "{c}");
    }
}
