//! The small statistics discovery keeps: bounded histograms for percentiles, bounded value
//! sketches for how often a value repeats, and the scores a candidate is ranked by.

use std::collections::HashMap;

/// foldhash: a lookup per value of every span mined.
type Map = HashMap<u64, u64, foldhash::fast::RandomState>;

/// A log-scale histogram of non-negative integers (nanoseconds, counts): 4 buckets per
/// doubling, so a percentile read from it is at most 19% above the true value, in a fixed
/// kilobyte however many values it saw. Percentiles are read at the bucket's upper edge,
/// never below what was seen.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Box<[u32; BUCKETS]>,
    count: u64,
    max: u64,
}

const PER_DOUBLING: u32 = 4;
const BUCKETS: usize = 64 * PER_DOUBLING as usize;

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: Box::new([0; BUCKETS]),
            count: 0,
            max: 0,
        }
    }
}

impl Histogram {
    /// Counts one value.
    pub fn add(&mut self, v: u64) {
        let b = &mut self.buckets[bucket_of(v)];
        *b = b.saturating_add(1);
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value counted.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// The value at or below which a fraction `q` of the values lie (the upper edge of
    /// its bucket, capped at the largest value seen); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let want = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= want {
                return upper_edge(i).min(self.max);
            }
        }
        self.max
    }
}

/// The bucket of a value: exact below 4, then 4 per doubling.
fn bucket_of(v: u64) -> usize {
    if v < u64::from(PER_DOUBLING) {
        return v as usize;
    }
    let log = 63 - v.leading_zeros();
    let shift = log - 2;
    let mantissa = (v >> shift) as u32 & (PER_DOUBLING - 1);
    ((log - 1) * PER_DOUBLING + mantissa) as usize
}

/// The largest value of bucket `i`.
fn upper_edge(i: usize) -> u64 {
    if i < PER_DOUBLING as usize {
        return i as u64;
    }
    let log = i as u32 / PER_DOUBLING + 1;
    let mantissa = u64::from(i as u32 % PER_DOUBLING);
    let shift = log - 2;
    let low = u128::from(u64::from(PER_DOUBLING) + mantissa) << shift;
    let edge = low + (1u128 << shift) - 1;
    edge.min(u128::from(u64::MAX)) as u64
}

/// How often the values of one attribute repeat, in bounded memory and time: exact counts
/// of the first [`Sketch::CAP`] distinct values among the first [`Sketch::SAMPLE`] values,
/// the rest counted together. Enough to tell a constant (one value everywhere: agreeing
/// on it says nothing) from a key, and to estimate how likely two random spans agree by
/// chance.
#[derive(Debug, Clone, Default)]
pub struct Sketch {
    counts: Map,
    other: u64,
    total: u64,
    /// The first value seen, and whether another was: over every value, not only the
    /// sample, so that a key that varies only now and then still varies.
    first: Option<u64>,
    varied: bool,
}

impl Sketch {
    /// Distinct values counted exactly.
    pub const CAP: usize = 256;
    /// Values counted: the estimates need no more.
    pub const SAMPLE: u64 = 2_000;

    /// Counts a value (by its hash).
    pub fn add(&mut self, hash: u64) {
        match self.first {
            None => self.first = Some(hash),
            Some(f) => self.varied |= f != hash,
        }
        if self.total >= Self::SAMPLE {
            return;
        }
        self.total += 1;
        if let Some(n) = self.counts.get_mut(&hash) {
            *n += 1;
        } else if self.counts.len() < Self::CAP {
            self.counts.insert(hash, 1);
        } else {
            self.other += 1;
        }
    }

    /// Adds another sketch (its values in full: at most [`Sketch::SAMPLE`] each).
    pub fn merge(&mut self, other: &Sketch) {
        self.varied |= other.varied;
        match (self.first, other.first) {
            (None, f) => self.first = f,
            (Some(a), Some(b)) => self.varied |= a != b,
            (Some(_), None) => {}
        }
        for (h, n) in &other.counts {
            if let Some(m) = self.counts.get_mut(h) {
                *m += n;
            } else if self.counts.len() < Self::CAP {
                self.counts.insert(*h, *n);
            } else {
                self.other += n;
            }
        }
        self.other += other.other;
        self.total += other.total;
    }

    /// Whether more than one value was seen (among all, not only the sample).
    pub fn varies(&self) -> bool {
        self.varied
    }

    /// The chance that two values drawn at random are equal (the values beyond the cap
    /// counted as if each were distinct).
    pub fn collision(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        let t = self.total as f64;
        // Summed in one order whatever the map's: the same input gives the same lift.
        let mut counts: Vec<u64> = self.counts.values().copied().collect();
        counts.sort_unstable();
        counts
            .iter()
            .map(|&n| (n as f64 / t).powi(2))
            .sum::<f64>()
            .max(1.0 / t)
    }
}

/// The lower bound of the Wilson score interval (95%) of a proportion `held` of `n`: what a
/// confidence is at least, given how many traces it rests on (20 of 20 gives 0.84, 9,990
/// of 10,000 gives 0.998).
pub fn wilson_lower(held: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    const Z: f64 = 1.959_963_984_540_054;
    let n = n as f64;
    let p = held as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let spread = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// The smallest "round" duration at or above `ns`: 1, 2 or 5 times a power of ten
/// nanoseconds, as a person would write a bound.
pub fn round_up(ns: u64) -> u64 {
    let mut unit = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let v = unit.saturating_mul(m);
            if v >= ns {
                return v;
            }
        }
        if unit > u64::MAX / 10 {
            return u64::MAX;
        }
        unit *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_never_below_the_value_and_close_above_it() {
        for v in [0u64, 1, 7, 8, 9, 100, 12_345, 1 << 40, u64::MAX / 3] {
            let mut h = Histogram::default();
            h.add(v);
            let q = h.quantile(0.99);
            assert!(q >= v, "{v}: {q}");
            assert!(q as f64 <= v as f64 * 1.26 + 1.0, "{v}: {q}");
        }
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.add(v * 1000);
        }
        let p99 = h.quantile(0.99);
        assert!((990_000..=1_000_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
    }

    #[test]
    fn buckets_are_in_order() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS);
            assert!(upper_edge(b) >= v);
            last = b;
        }
    }

    #[test]
    fn wilson_matches_known_values() {
        assert!((wilson_lower(20, 20) - 0.8389).abs() < 1e-3);
        assert!((wilson_lower(9990, 10_000) - 0.99816).abs() < 1e-4);
        assert_eq!(wilson_lower(0, 0), 0.0);
        assert!(wilson_lower(0, 10) < 1e-12);
    }

    #[test]
    fn round_up_gives_one_two_five() {
        assert_eq!(round_up(0), 1);
        assert_eq!(round_up(3), 5);
        assert_eq!(round_up(1_200_000), 2_000_000);
        assert_eq!(round_up(5_000_000), 5_000_000);
        assert_eq!(round_up(5_000_001), 10_000_000);
        assert_eq!(round_up(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_sketch_tells_a_constant_from_a_key() {
        let mut constant = Sketch::default();
        let mut key = Sketch::default();
        for i in 0..1000u64 {
            constant.add(7);
            key.add(i);
        }
        assert!(!constant.varies() && key.varies());
        assert!((constant.collision() - 1.0).abs() < 1e-9);
        assert!(key.collision() < 0.01);
    }
}
