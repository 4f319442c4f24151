//! A projected trace as bytes, and back: how `betrace discover` keeps the complete traces it
//! mines in its spill directory, so that judging its candidates reads them back instead of
//! decoding the input a second time (docs/discover.md, "How it works").
//!
//! A record is the trace's id, its resources (whole, as the engine keeps them), then its
//! spans: ids, kind, status, times, resource, name, status message and kept attributes
//! keyed by the writer's [`KeyId`]s. The reader keys them for its own projection through a
//! map from the writer's ids, and drops the ones it does not read. Integers are varints or
//! fixed-width little-endian; strings are a varint length and UTF-8 bytes.
//!
//! The bytes are written and read by one process: a record that does not read back (a disk
//! that lost data) is an error, never a trace that is not the one written.

use std::sync::Arc;

use prost::encoding::{decode_varint, encode_varint};

use super::projected::{KeyId, SpanIn, Trace};
use super::{Resource, SpanId, SpanKind, StatusCode, TraceId};
use crate::lang::value::{Value, ValueRef};

/// Bytes that are not a trace this module wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a kept trace does not read back: {0}")]
pub struct Corrupt(&'static str);

/// Arrays nest at most this deep (as the OTLP decoder allows).
const MAX_DEPTH: u32 = 32;

const STR: u8 = 0;
const INT: u8 = 1;
const FLOAT: u8 = 2;
const BOOL: u8 = 3;
const DURATION: u8 = 4;
const ARRAY: u8 = 5;
const OPAQUE: u8 = 6;

/// Appends `t` to `out`.
pub fn write(t: &Trace, out: &mut Vec<u8>) {
    out.reserve(64 + 96 * t.spans.len());
    out.extend_from_slice(&t.trace_id.0);
    encode_varint(t.resources().len() as u64, out);
    for r in t.resources() {
        encode_varint(r.attributes.len() as u64, out);
        for (k, v) in &r.attributes {
            write_str(k, out);
            write_value(ValueRef::from(v), out);
        }
    }
    encode_varint(t.spans.len() as u64, out);
    for s in &t.spans {
        out.extend_from_slice(&s.span_id.0);
        match s.parent_span_id {
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.0);
            }
            None => out.push(0),
        }
        out.push(s.kind as u8);
        out.push(s.status as u8);
        out.extend_from_slice(&s.start_unix_nano.to_le_bytes());
        out.extend_from_slice(&s.end_unix_nano.to_le_bytes());
        // 0: no resource; else its index plus one.
        varint_to(
            u64::from(s.resource_index()).wrapping_add(1) & 0xffff_ffff,
            out,
        );
        write_str(t.name(s), out);
        write_str(t.status_message(s), out);
        // The count goes before the attributes, written once they are.
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut n = 0u32;
        for (k, v) in t.attr_ids(s) {
            varint_to(u64::from(k.0), out);
            write_value(v, out);
            n += 1;
        }
        out[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }
}

/// Reads a trace written by [`write`], keyed for `projection`: the writer's key `k` is
/// `keys[k]` here (`None`, or beyond `keys`: dropped).
pub fn read(
    mut buf: &[u8],
    projection: &Arc<super::projected::Projection>,
    keys: &[Option<KeyId>],
) -> Result<Trace, Corrupt> {
    let b = &mut buf;
    let mut t = Trace::new(TraceId(fixed(b)?), projection.clone());
    for _ in 0..count(b)? {
        let mut attributes = Vec::new();
        for _ in 0..count(b)? {
            let k = read_str(b)?.to_string();
            let v = read_value(b, 0)?;
            attributes.push((k, owned(v)));
        }
        t.add_resource(Arc::new(Resource { attributes }));
    }
    let resources = t.resources().len() as u64;
    let mut kept: Vec<(KeyId, Read<'_>)> = Vec::new();
    for _ in 0..count(b)? {
        let span_id = SpanId(fixed(b)?);
        let parent_span_id = match byte(b)? {
            0 => None,
            1 => Some(SpanId(fixed(b)?)),
            _ => return Err(Corrupt("a parent flag")),
        };
        let kind = SpanKind::from_otlp(i32::from(byte(b)?));
        let status = StatusCode::from_otlp(i32::from(byte(b)?));
        let start_unix_nano = u64::from_le_bytes(fixed(b)?);
        let end_unix_nano = u64::from_le_bytes(fixed(b)?);
        let resource = match varint(b)? {
            0 => u32::MAX,
            r if r <= resources => (r - 1) as u32,
            _ => return Err(Corrupt("a resource index")),
        };
        let name = read_str(b)?;
        let status_message = read_str(b)?;
        kept.clear();
        let n = u32::from_le_bytes(fixed(b)?);
        if u64::from(n) > b.len() as u64 {
            return Err(Corrupt("a count"));
        }
        for _ in 0..n {
            let k = varint(b)?;
            let v = read_value(b, 0)?;
            if let Some(&Some(id)) = keys.get(k as usize) {
                kept.push((id, v));
            }
        }
        t.push(
            resource,
            SpanIn {
                span_id,
                parent_span_id,
                name,
                kind,
                status,
                status_message,
                start_unix_nano,
                end_unix_nano,
            },
            kept.iter().map(|(k, v)| (*k, v.as_ref())),
        );
    }
    if !b.is_empty() {
        return Err(Corrupt("bytes after the last span"));
    }
    Ok(t)
}

/// A varint, most often one byte.
#[inline]
fn varint_to(v: u64, out: &mut Vec<u8>) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        encode_varint(v, out);
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    varint_to(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn write_value(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Str(s) => {
            out.push(STR);
            write_str(s, out);
        }
        ValueRef::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        ValueRef::Bool(x) => out.extend_from_slice(&[BOOL, u8::from(x)]),
        ValueRef::Duration(d) => {
            out.push(DURATION);
            out.extend_from_slice(&d.to_le_bytes());
        }
        ValueRef::Array(items) => {
            out.push(ARRAY);
            encode_varint(items.len() as u64, out);
            for i in items {
                write_value(ValueRef::from(i), out);
            }
        }
        ValueRef::Opaque => out.push(OPAQUE),
    }
}

/// A value read back: borrowed from the record, or (an array) owned.
#[derive(Debug, Clone)]
enum Read<'a> {
    Ref(ValueRef<'a>),
    Array(Vec<Value>),
}

fn owned(v: Read<'_>) -> Value {
    match v {
        Read::Ref(r) => r.to_value(),
        Read::Array(items) => Value::Array(items),
    }
}

fn read_value<'a>(b: &mut &'a [u8], depth: u32) -> Result<Read<'a>, Corrupt> {
    Ok(Read::Ref(match byte(b)? {
        STR => ValueRef::Str(read_str(b)?),
        INT => ValueRef::Int(i64::from_le_bytes(fixed(b)?)),
        FLOAT => ValueRef::Float(f64::from_bits(u64::from_le_bytes(fixed(b)?))),
        BOOL => ValueRef::Bool(byte(b)? != 0),
        DURATION => ValueRef::Duration(i64::from_le_bytes(fixed(b)?)),
        ARRAY if depth < MAX_DEPTH => {
            let mut items = Vec::new();
            for _ in 0..count(b)? {
                items.push(owned(read_value(b, depth + 1)?));
            }
            return Ok(Read::Array(items));
        }
        OPAQUE => ValueRef::Opaque,
        _ => return Err(Corrupt("a value")),
    }))
}

impl<'a> Read<'a> {
    /// The value as the trace builder takes it (an array borrowed from `self`).
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Read::Ref(r) => *r,
            Read::Array(items) => ValueRef::Array(items),
        }
    }
}

fn byte(b: &mut &[u8]) -> Result<u8, Corrupt> {
    let (&x, rest) = b.split_first().ok_or(Corrupt("a short record"))?;
    *b = rest;
    Ok(x)
}

fn fixed<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], Corrupt> {
    if b.len() < N {
        return Err(Corrupt("a short record"));
    }
    let (x, rest) = b.split_at(N);
    *b = rest;
    Ok(x.try_into().expect("N bytes"))
}

fn varint(b: &mut &[u8]) -> Result<u64, Corrupt> {
    decode_varint(b).map_err(|_| Corrupt("a number"))
}

/// A count of items that follow, each at least one byte: never more than the bytes left.
fn count(b: &mut &[u8]) -> Result<u64, Corrupt> {
    let n = varint(b)?;
    if n > b.len() as u64 {
        return Err(Corrupt("a count"));
    }
    Ok(n)
}

fn read_str<'a>(b: &mut &'a [u8]) -> Result<&'a str, Corrupt> {
    let n = varint(b)?;
    if n > b.len() as u64 {
        return Err(Corrupt("a string"));
    }
    let (s, rest) = b.split_at(n as usize);
    *b = rest;
    std::str::from_utf8(s).map_err(|_| Corrupt("a string"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::projected::{self, Projection};
    use crate::trace::{self, Span};

    /// A trace with every kind of value, two resources, a span with none, a root and
    /// children with every kind and status.
    fn sample() -> trace::Trace {
        let array = Value::Array(vec![
            Value::Int(1),
            Value::str("two"),
            Value::Array(vec![Value::Bool(true), Value::Opaque]),
        ]);
        let attrs = [
            ("s".to_string(), Value::str("héllo")),
            ("i".to_string(), Value::Int(-7)),
            ("f".to_string(), Value::Float(f64::NAN)),
            ("b".to_string(), Value::Bool(false)),
            ("d".to_string(), Value::Duration(i64::MIN)),
            ("a".to_string(), array.clone()),
            ("o".to_string(), Value::Opaque),
            ("empty".to_string(), Value::str("")),
        ];
        let mut t = trace::Trace {
            trace_id: TraceId([9; 16]),
            ..Default::default()
        };
        t.resources = vec![
            Resource {
                attributes: vec![
                    ("service.name".into(), Value::str("checkout")),
                    ("list".into(), array),
                ],
            },
            Resource::default(),
        ];
        for i in 0..8u8 {
            t.spans.push(Span {
                span_id: SpanId([i + 1; 8]),
                parent_span_id: (i > 0).then_some(SpanId([1; 8])),
                name: format!("op.{i}"),
                kind: SpanKind::from_otlp(i32::from(i % 6)),
                status: StatusCode::from_otlp(i32::from(i % 3)),
                status_message: if i == 3 { "boom".into() } else { String::new() },
                start_unix_nano: u64::from(i) * 1_000,
                end_unix_nano: if i == 7 {
                    u64::MAX
                } else {
                    u64::from(i) * 1_000 + 5
                },
                attributes: attrs[..usize::from(i)].to_vec(),
                resource: usize::from(i % 3),
            });
        }
        t
    }

    fn keys_of(from: &Projection, to: &Projection) -> Vec<Option<KeyId>> {
        (0..from.len())
            .map(|k| to.key(from.key_name(KeyId(k as u32))))
            .collect()
    }

    #[test]
    fn a_trace_reads_back_as_it_was_written() {
        let p = Arc::new(Projection::new(
            ["s", "i", "f", "b", "d", "a", "o", "empty"],
            true,
        ));
        let t = projected::Trace::project(&sample(), &p);
        let mut bytes = Vec::new();
        write(&t, &mut bytes);
        let back = read(&bytes, &p, &keys_of(&p, &p)).unwrap();
        // NaN is not equal to itself: compared by bits.
        assert_eq!(format!("{back:?}"), format!("{t:?}"));
        assert_eq!(back.resources().len(), t.resources().len());
        for (a, b) in back.spans.iter().zip(&t.spans) {
            assert_eq!(back.resource_of(a), t.resource_of(b));
            assert_eq!(back.status_message(a), t.status_message(b));
        }
        assert!(back.is_complete());
    }

    #[test]
    fn a_narrower_projection_reads_only_its_keys() {
        let wide = Arc::new(Projection::new(["s", "i", "a", "o"], false));
        let narrow = Arc::new(Projection::new(["a", "nothing", "s"], false));
        let t = projected::Trace::project(&sample(), &wide);
        let mut bytes = Vec::new();
        write(&t, &mut bytes);
        let back = read(&bytes, &narrow, &keys_of(&wide, &narrow)).unwrap();
        assert_eq!(back, t.reproject(&narrow));
        assert_ne!(back, t);
    }

    #[test]
    fn damaged_bytes_are_an_error_never_a_panic_or_another_trace() {
        let p = Arc::new(Projection::new(["s", "i", "f", "a"], false));
        let t = projected::Trace::project(&sample(), &p);
        let mut bytes = Vec::new();
        write(&t, &mut bytes);
        let keys = keys_of(&p, &p);
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut], &p, &keys).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read(&longer, &p, &keys).is_err());
        // Any byte changed: an error, or a trace (a changed time or id still reads).
        for at in 0..bytes.len() {
            for x in [0u8, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] = x;
                let _ = read(&b, &p, &keys);
            }
        }
        // Arrays nested past the bound are refused, not recursed into (a resource's
        // attribute `k`, nested 200,000 deep, would overflow the stack).
        let mut deep = vec![0u8; 16];
        deep.extend([1, 1, 1, b'k']);
        deep.extend(std::iter::repeat_n([ARRAY, 1], 200_000).flatten());
        assert_eq!(read(&deep, &p, &keys).unwrap_err(), Corrupt("a value"));
    }
}
