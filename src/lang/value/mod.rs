//! Attribute values: owned ([`Value`]) and borrowed ([`ValueRef`]); what they mean under
//! comparison is in `compare`, duration literals in `duration`.
//!
//! Both the bytecode VM and the reference evaluator call [`compare`], so the two can only
//! disagree about *which* values they compare, never about what a comparison means.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

mod compare;
mod duration;
mod number;

pub use compare::{compare, contains, is_in, is_true};
pub use duration::{format_duration, parse_duration};
pub use number::{aggregate, compare_numbers, Aggregate, Number};

/// A value an attribute, an intrinsic or a literal can take.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (OTLP `string_value`).
    Str(Arc<str>),
    /// A 64-bit signed integer (OTLP `int_value`).
    Int(i64),
    /// A double (OTLP `double_value`).
    Float(f64),
    /// A boolean (OTLP `bool_value`).
    Bool(bool),
    /// A duration in nanoseconds: `span:duration`, `trace:duration` and literals like `250ms`.
    Duration(i64),
    /// An array (OTLP `array_value`); `contains` looks inside it.
    Array(Vec<Value>),
    /// A value no predicate can compare (OTLP bytes and key-value lists); `exists` still sees it.
    Opaque,
}

/// A value as an exact hash key, for interning: equal keys are the same value, floats by
/// their bits (so `0.0` and `-0.0` are two keys, and a NaN equals itself). Not the
/// language's equality, which [`compare`] says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValueKey {
    /// A string.
    Str(Arc<str>),
    /// An integer.
    Int(i64),
    /// A float's bits.
    Float(u64),
    /// A boolean.
    Bool(bool),
    /// A duration in nanoseconds.
    Duration(i64),
    /// An array's elements.
    Array(Vec<ValueKey>),
    /// An opaque value: all are one key.
    Opaque,
}

impl ValueKey {
    /// The key of a value.
    pub fn of(v: &Value) -> ValueKey {
        match v {
            Value::Str(s) => ValueKey::Str(s.clone()),
            Value::Int(i) => ValueKey::Int(*i),
            Value::Float(f) => ValueKey::Float(f.to_bits()),
            Value::Bool(b) => ValueKey::Bool(*b),
            Value::Duration(d) => ValueKey::Duration(*d),
            Value::Array(items) => ValueKey::Array(items.iter().map(ValueKey::of).collect()),
            Value::Opaque => ValueKey::Opaque,
        }
    }
}

/// The operators a `.where(...)` predicate compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl CmpOp {
    /// The operator with its sides swapped: `a OP b` is `b OP.flipped() a`.
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            other => other,
        }
    }

    /// The operator as written in the language.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }

    /// Parses an operator token.
    pub fn parse(s: &str) -> Option<CmpOp> {
        Some(match s {
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            _ => return None,
        })
    }

    /// Whether an ordering satisfies this operator.
    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Value {
    /// Makes a string value.
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Str(Arc::from(s.as_ref()))
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "boolean",
            Value::Duration(_) => "duration",
            Value::Array(_) => "array",
            Value::Opaque => "bytes or map",
        }
    }

    /// The value as JSON, for signal context.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Duration(d) => serde_json::Value::String(format_duration(*d)),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Opaque => serde_json::Value::Null,
        }
    }

    /// A key under which equal values hash alike, for `distinct(...)`.
    ///
    /// Integers and integral floats share a key (`1 == 1.0`), as they compare equal.
    pub fn distinct_key(&self) -> DistinctKey {
        match self {
            Value::Str(s) => DistinctKey::Str(s.clone()),
            Value::Int(i) => DistinctKey::Int(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => DistinctKey::Int(*f as i64),
            Value::Float(f) => DistinctKey::Float(f.to_bits()),
            Value::Bool(b) => DistinctKey::Bool(*b),
            Value::Duration(d) => DistinctKey::Duration(*d),
            Value::Array(_) | Value::Opaque => DistinctKey::Other(format!("{self:?}")),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Duration(d) => f.write_str(&format_duration(*d)),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Opaque => f.write_str("<opaque>"),
        }
    }
}

/// Hashable identity of a value for `distinct(...)`; see [`Value::distinct_key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DistinctKey {
    /// A string.
    Str(Arc<str>),
    /// An integer or an integral float.
    Int(i64),
    /// A non-integral float, by its bits.
    Float(u64),
    /// A boolean.
    Bool(bool),
    /// A duration in nanoseconds.
    Duration(i64),
    /// Anything else, by its debug form.
    Other(String),
}

/// A value borrowed from wherever it lives — a literal, a held span's arena, an intrinsic —
/// so that judging compares without allocating. Every comparison of the language is
/// defined on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// A string.
    Str(&'a str),
    /// A 64-bit signed integer.
    Int(i64),
    /// A double.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A duration in nanoseconds.
    Duration(i64),
    /// An array.
    Array(&'a [Value]),
    /// A value no predicate can compare.
    Opaque,
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(v: &'a Value) -> ValueRef<'a> {
        match v {
            Value::Str(s) => ValueRef::Str(s),
            Value::Int(i) => ValueRef::Int(*i),
            Value::Float(f) => ValueRef::Float(*f),
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Duration(d) => ValueRef::Duration(*d),
            Value::Array(a) => ValueRef::Array(a),
            Value::Opaque => ValueRef::Opaque,
        }
    }
}

impl fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Str(s) => f.write_str(s),
            other => write!(f, "{}", other.to_value()),
        }
    }
}

impl ValueRef<'_> {
    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ValueRef::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An owned copy.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Str(s) => Value::str(s),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Float(f) => Value::Float(f),
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Duration(d) => Value::Duration(d),
            ValueRef::Array(a) => Value::Array(a.to_vec()),
            ValueRef::Opaque => Value::Opaque,
        }
    }

    /// A key under which equal values hash alike, for `distinct(...)`; see
    /// [`Value::distinct_key`].
    pub fn distinct_key(self) -> DistinctKey {
        match self {
            ValueRef::Str(s) => DistinctKey::Str(Arc::from(s)),
            other => other.to_value().distinct_key(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert!(compare(&Value::Int(3), CmpOp::Eq, &Value::Float(3.0)));
        assert!(compare(&Value::Float(2.5), CmpOp::Lt, &Value::Int(3)));
    }

    #[test]
    fn strings_read_as_numbers_only_when_whole() {
        assert!(compare(&Value::str("503"), CmpOp::Ge, &Value::Int(500)));
        assert!(compare(&Value::Int(500), CmpOp::Lt, &Value::str("503")));
        assert!(!compare(&Value::str("abc"), CmpOp::Ge, &Value::Int(500)));
        assert!(!compare(&Value::str("abc"), CmpOp::Ne, &Value::Int(500)));
        assert!(!compare(&Value::str("503x"), CmpOp::Eq, &Value::Int(503)));
        assert!(!compare(&Value::str("nan"), CmpOp::Ne, &Value::Int(1)));
    }

    #[test]
    fn mixed_types_are_false_with_every_operator() {
        for op in [
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Gt,
            CmpOp::Ge,
            CmpOp::Lt,
            CmpOp::Le,
        ] {
            assert!(!compare(&Value::Bool(true), op, &Value::Int(1)), "{op}");
            assert!(
                !compare(&Value::Array(vec![Value::Int(1)]), op, &Value::Int(1)),
                "{op}"
            );
        }
    }

    #[test]
    fn booleans_have_equality_but_no_order() {
        assert!(compare(&Value::Bool(true), CmpOp::Eq, &Value::Bool(true)));
        assert!(compare(&Value::Bool(true), CmpOp::Ne, &Value::Bool(false)));
        assert!(!compare(&Value::Bool(true), CmpOp::Gt, &Value::Bool(false)));
    }

    #[test]
    fn strings_compare_lexically() {
        assert!(compare(&Value::str("b"), CmpOp::Gt, &Value::str("a")));
        assert!(!compare(&Value::str("a"), CmpOp::Eq, &Value::str("A")));
    }

    #[test]
    fn contains_looks_in_strings_and_arrays() {
        assert!(contains(
            &Value::str("tenant_data_v2"),
            &Value::str("tenant_data")
        ));
        let arr = Value::Array(vec![Value::str("a"), Value::Int(3)]);
        assert!(contains(&arr, &Value::Int(3)));
        assert!(contains(&arr, &Value::str("a")));
        assert!(!contains(&arr, &Value::str("b")));
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("1m"), Some(60_000_000_000));
        assert_eq!(parse_duration("1d"), Some(86_400_000_000_000));
        assert_eq!(parse_duration("abc"), None);
        assert_eq!(format_duration(250_000_000), "250ms");
        assert_eq!(format_duration(1_500_000_000), "1500ms");
        assert!(compare(
            &Value::str("45m"),
            CmpOp::Gt,
            &Value::Duration(parse_duration("30m").unwrap())
        ));
    }
}
