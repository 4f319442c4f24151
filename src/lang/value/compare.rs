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

pub(super) fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Int(x), Num::Float(y)) => (x as f64).partial_cmp(&y),
        (Num::Float(x), Num::Int(y)) => x.partial_cmp(&(y as f64)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
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
