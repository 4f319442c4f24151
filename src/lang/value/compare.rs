//! The comparison rules of the language (docs/language.md, "Comparison rules"): what
//! `==`, `<`, `in`, `contains` and a bare attribute mean for two values of any kinds.

use std::cmp::Ordering;

use super::{parse_duration, CmpOp, Value, ValueRef};

/// A number read from a string or a numeric value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

fn num_of(v: ValueRef) -> Option<Num> {
    match v {
        ValueRef::Int(i) => Some(Num::Int(i)),
        ValueRef::Float(f) => Some(Num::Float(f)),
        _ => None,
    }
}

/// Reads a whole string as a number (`"503"` → 503); `None` when it is not one.
pub(super) fn num_of_str(s: &str) -> Option<Num> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Num::Int(i));
    }
    // `f64::from_str` accepts "inf" and "NaN"; a user writing "nan" means a word.
    if s.bytes().any(|b| b.is_ascii_digit())
        && !s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        if let Ok(f) = s.parse::<f64>() {
            return Some(Num::Float(f));
        }
    }
    None
}

/// Orders two numbers exactly; `None` when either is NaN.
pub(super) fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).map(Ordering::reverse),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
    }
}

/// Orders an integer against a float exactly, with no rounding of either: `i as f64`
/// rounds every integer beyond 2^53 (`i64::MAX as f64` is 2^63, so an overflowed sum
/// would equal `i64::MAX`). `None` when the float is NaN.
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    // 2^63: the first float above every i64; -2^63 is i64::MIN itself.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    // In [-2^63, 2^63): the integral part converts to i64 exactly.
    let whole = f.trunc();
    match i.cmp(&(whole as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - whole)),
        unequal => Some(unequal),
    }
}

/// Orders two values when the language says they are comparable; `None` when the
/// comparison is false whatever the operator (mixed types, NaN, arrays).
fn order(lhs: ValueRef, rhs: ValueRef) -> Option<Ordering> {
    match (lhs, rhs) {
        (ValueRef::Str(a), ValueRef::Str(b)) => Some(a.cmp(b)),
        (ValueRef::Bool(a), ValueRef::Bool(b)) => Some(a.cmp(&b)),
        (ValueRef::Duration(a), ValueRef::Duration(b)) => Some(a.cmp(&b)),
        (ValueRef::Duration(a), ValueRef::Str(s)) => parse_duration(s).map(|b| a.cmp(&b)),
        (ValueRef::Str(s), ValueRef::Duration(b)) => parse_duration(s).map(|a| a.cmp(&b)),
        (ValueRef::Str(s), other) => cmp_num(num_of_str(s)?, num_of(other)?),
        (other, ValueRef::Str(s)) => cmp_num(num_of(other)?, num_of_str(s)?),
        (a, b) => cmp_num(num_of(a)?, num_of(b)?),
    }
}

/// `lhs OP rhs` with the rules of docs/language.md, "Comparison rules": numbers compare as numbers, strings
/// lexically, a string against a number is read as a number when the whole string is one,
/// and every other mix — including booleans ordered with `<` — is false.
pub fn compare<'a, 'b>(
    lhs: impl Into<ValueRef<'a>>,
    op: CmpOp,
    rhs: impl Into<ValueRef<'b>>,
) -> bool {
    let (lhs, rhs) = (lhs.into(), rhs.into());
    match order(lhs, rhs) {
        Some(ord) => {
            if matches!((lhs, rhs), (ValueRef::Bool(_), ValueRef::Bool(_)))
                && !matches!(op, CmpOp::Eq | CmpOp::Ne)
            {
                return false;
            }
            op.holds(ord)
        }
        None => false,
    }
}

/// `lhs in [items]`: `lhs == item` for some item.
pub fn is_in<'a>(lhs: impl Into<ValueRef<'a>>, items: &[Value]) -> bool {
    let lhs = lhs.into();
    items.iter().any(|item| compare(lhs, CmpOp::Eq, item))
}

/// `lhs contains needle`: a substring of a string, or an element of an array.
pub fn contains<'a, 'b>(lhs: impl Into<ValueRef<'a>>, needle: impl Into<ValueRef<'b>>) -> bool {
    match (lhs.into(), needle.into()) {
        (ValueRef::Str(hay), ValueRef::Str(n)) => hay.contains(n),
        (ValueRef::Array(items), n) => items.iter().any(|item| compare(item, CmpOp::Eq, n)),
        _ => false,
    }
}

/// `k` alone: the attribute is the boolean `true`.
pub fn is_true<'a>(v: impl Into<ValueRef<'a>>) -> bool {
    matches!(v.into(), ValueRef::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_floats_compare_exactly() {
        let two_63 = 9_223_372_036_854_775_808.0;
        assert_eq!(
            cmp_num(Num::Int(i64::MAX), Num::Float(two_63)),
            Some(Ordering::Less)
        );
        assert_eq!(
            cmp_num(Num::Float(two_63), Num::Int(i64::MAX)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            cmp_num(Num::Int(i64::MIN), Num::Float(-two_63)),
            Some(Ordering::Equal)
        );
        // 2^53 + 1 is not a float: the nearest, 2^53, is below it.
        let big = (1i64 << 53) + 1;
        assert_eq!(
            cmp_num(Num::Int(big), Num::Float((1i64 << 53) as f64)),
            Some(Ordering::Greater)
        );
        assert_eq!(cmp_num(Num::Int(2), Num::Float(2.5)), Some(Ordering::Less));
        assert_eq!(
            cmp_num(Num::Int(-2), Num::Float(-2.5)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            cmp_num(Num::Int(0), Num::Float(-0.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            cmp_num(Num::Int(3), Num::Float(f64::INFINITY)),
            Some(Ordering::Less)
        );
        assert_eq!(
            cmp_num(Num::Int(3), Num::Float(f64::NEG_INFINITY)),
            Some(Ordering::Greater)
        );
        assert_eq!(cmp_num(Num::Int(3), Num::Float(f64::NAN)), None);
        let (max, over) = (ValueRef::Int(i64::MAX), ValueRef::Float(two_63));
        assert!(!compare(max, CmpOp::Eq, over));
        assert!(compare(max, CmpOp::Lt, over));
    }
}
