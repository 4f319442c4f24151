//! Numeric terms' values (docs/language.md, "Values across spans"): counts, literals and
//! the aggregates `sum`, `min`, `max`, `avg`, compared with `== != > >= < <=`.
//!
//! A term may have **no value** (`min`, `max`, `avg` over no numeric value): a comparison
//! with such a side is false, whatever the operator. Durations are nanoseconds; the checker
//! has already made sure a duration is only compared with a duration.

use std::cmp::Ordering;

use super::compare::{cmp_num, num_of_str, Num};
use super::{CmpOp, ValueRef};

/// A numeric term's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// Exact.
    Int(i64),
    /// Inexact: a float was involved, or an integer sum overflowed.
    Float(f64),
}

impl Number {
    /// The number a value stands for in an aggregate: an int, a float, a duration (its
    /// nanoseconds), or a string that reads whole as a number; `None` for anything else.
    pub fn of(v: ValueRef<'_>) -> Option<Number> {
        match v {
            ValueRef::Int(i) => Some(Number::Int(i)),
            ValueRef::Float(f) if !f.is_nan() => Some(Number::Float(f)),
            ValueRef::Duration(d) => Some(Number::Int(d)),
            ValueRef::Str(s) => num_of_str(s).map(Number::from_num),
            _ => None,
        }
    }

    fn from_num(n: Num) -> Number {
        match n {
            Num::Int(i) => Number::Int(i),
            Num::Float(f) => Number::Float(f),
        }
    }

    fn num(self) -> Num {
        match self {
            Number::Int(i) => Num::Int(i),
            Number::Float(f) => Num::Float(f),
        }
    }

    /// As a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// `a OP b`; false when either side has no value (or is NaN).
pub fn compare_numbers(a: Option<Number>, op: CmpOp, b: Option<Number>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => cmp_num(a.num(), b.num()).is_some_and(|o| op.holds(o)),
        _ => false,
    }
}

/// An aggregate over a selector's spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// The sum; 0 over nothing. Integers sum exactly; a sum beyond 64 bits is a float
    /// beyond every integer.
    Sum,
    /// The least value; none over nothing.
    Min,
    /// The greatest value; none over nothing.
    Max,
    /// The mean, a float; none over nothing.
    Avg,
}

impl Aggregate {
    /// The function's name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Avg => "avg",
        }
    }
}

/// Folds values into an aggregate.
pub fn aggregate(f: Aggregate, values: impl Iterator<Item = Number>) -> Option<Number> {
    match f {
        Aggregate::Sum => {
            // Integers add up in 128 bits (no i64 values can overflow that): the sum is
            // exact whatever the order, and an integer when it fits in 64 bits.
            let mut int: Option<i128> = Some(0);
            let mut float = 0.0f64;
            for v in values {
                match (int, v) {
                    (Some(acc), Number::Int(i)) => int = Some(acc + i128::from(i)),
                    (Some(acc), Number::Float(x)) => {
                        float = acc as f64 + x;
                        int = None;
                    }
                    (None, v) => float += v.as_f64(),
                }
            }
            Some(match int {
                Some(s) => {
                    i64::try_from(s).map_or_else(|_| Number::Float(beyond_i64(s)), Number::Int)
                }
                None => Number::Float(float),
            })
        }
        Aggregate::Min | Aggregate::Max => {
            let want = if f == Aggregate::Min {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            values.fold(None, |best: Option<Number>, v| match best {
                Some(b) if cmp_num(v.num(), b.num()) != Some(want) => Some(b),
                _ => Some(v),
            })
        }
        Aggregate::Avg => {
            let (mut sum, mut n) = (0.0f64, 0u64);
            for v in values {
                sum += v.as_f64();
                n += 1;
            }
            (n > 0).then(|| Number::Float(sum / n as f64))
        }
    }
}

/// An integer sum beyond 64 bits as a float that stays beyond every i64: rounding alone
/// would turn `i64::MIN - 1` into -2^63, which is `i64::MIN`.
fn beyond_i64(s: i128) -> f64 {
    let f = s as f64;
    if s < 0 && f == i64::MIN as f64 {
        f.next_down()
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(v: &[i64]) -> impl Iterator<Item = Number> + '_ {
        v.iter().map(|&i| Number::Int(i))
    }

    #[test]
    fn sums_are_exact_until_they_overflow() {
        assert_eq!(aggregate(Aggregate::Sum, ints(&[])), Some(Number::Int(0)));
        assert_eq!(
            aggregate(Aggregate::Sum, ints(&[2, 3])),
            Some(Number::Int(5))
        );
        assert_eq!(
            aggregate(Aggregate::Sum, ints(&[i64::MAX, 1])),
            Some(Number::Float(i64::MAX as f64 + 1.0))
        );
        assert_eq!(
            aggregate(
                Aggregate::Sum,
                [Number::Int(1), Number::Float(0.5)].into_iter()
            ),
            Some(Number::Float(1.5))
        );
    }

    #[test]
    fn an_overflowed_sum_is_above_every_integer() {
        let over = aggregate(Aggregate::Sum, ints(&[i64::MAX, 1]));
        let max = Some(Number::Int(i64::MAX));
        assert!(!compare_numbers(over, CmpOp::Eq, max));
        assert!(compare_numbers(over, CmpOp::Gt, max));
        let under = aggregate(Aggregate::Sum, ints(&[i64::MIN, -1]));
        assert!(compare_numbers(
            under,
            CmpOp::Lt,
            Some(Number::Int(i64::MIN))
        ));
    }

    #[test]
    fn min_max_avg_have_no_value_over_nothing() {
        for f in [Aggregate::Min, Aggregate::Max, Aggregate::Avg] {
            assert_eq!(aggregate(f, ints(&[])), None);
            assert!(!compare_numbers(
                aggregate(f, ints(&[])),
                CmpOp::Ne,
                Some(Number::Int(1))
            ));
        }
        assert_eq!(
            aggregate(Aggregate::Min, ints(&[3, -1, 2])),
            Some(Number::Int(-1))
        );
        assert_eq!(
            aggregate(Aggregate::Max, ints(&[3, -1, 2])),
            Some(Number::Int(3))
        );
        assert_eq!(
            aggregate(Aggregate::Avg, ints(&[1, 2])),
            Some(Number::Float(1.5))
        );
    }

    #[test]
    fn strings_count_when_they_read_as_numbers() {
        assert_eq!(Number::of(ValueRef::Str("503")), Some(Number::Int(503)));
        assert_eq!(Number::of(ValueRef::Str("2.5")), Some(Number::Float(2.5)));
        assert_eq!(Number::of(ValueRef::Str("abc")), None);
        assert_eq!(Number::of(ValueRef::Bool(true)), None);
    }
}
