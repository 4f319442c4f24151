//! A projected trace as bytes, and back: how `betrace discover` keeps the complete traces it
//! mines in its spill directory, so that judging its candidates reads them back instead of
//! decoding the input a second time (docs/discover.md, "How it works").
//!
//! The bytes are the trace's own arenas, nearly as they are held: its id, its resources
//! (whole), its text arena in one piece, then each span as a fixed record followed by its
//! kept attributes, strings as places in the text. Writing copies the arena once; reading
//! checks the text once and every place in it, and keys the attributes for the reader's
//! projection through a map from the writer's [`KeyId`]s, dropping the ones it does not
//! read. Numbers are little-endian; a string outside the arena is a length and its bytes.
//!
//! The bytes are written and read by one process: a record that does not read back (a disk
//! that lost data) is an error, never a panic or a trace that is not the one written.

use std::sync::Arc;

use super::{Attr, KeyId, Projection, Span, Text, Trace, Val};
use crate::lang::value::{Value, ValueRef};
use crate::trace::{Resource, SpanId, SpanKind, StatusCode, TraceId};

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
/// A kept attribute's string, as its place in the text arena.
const TEXT: u8 = 7;

/// Appends `t` to `out`.
pub fn write(t: &Trace, out: &mut Vec<u8>) {
    out.reserve(64 + t.text.len() + 64 * t.spans.len() + 16 * t.attrs.len());
    out.extend_from_slice(&t.trace_id.0);
    u32_to(t.resources.len(), out);
    for r in &t.resources {
        u32_to(r.attributes.len(), out);
        for (k, v) in &r.attributes {
            write_str(k, out);
            write_value(ValueRef::from(v), out);
        }
    }
    write_str(&t.text, out);
    u32_to(t.overflow.len(), out);
    for s in &t.overflow {
        write_str(s, out);
    }
    u32_to(t.spans.len(), out);
    for s in &t.spans {
        out.extend_from_slice(&s.span_id.0);
        out.push(u8::from(s.parent_span_id.is_some()));
        out.extend_from_slice(&s.parent_span_id.unwrap_or_default().0);
        out.extend_from_slice(&[s.kind as u8, s.status as u8]);
        out.extend_from_slice(&s.start_unix_nano.to_le_bytes());
        out.extend_from_slice(&s.end_unix_nano.to_le_bytes());
        text_to(s.name, out);
        text_to(s.status_message, out);
        out.extend_from_slice(&s.resource.to_le_bytes());
        out.extend_from_slice(&s.attrs_len.to_le_bytes());
        let attrs = &t.attrs[s.attrs_at as usize..(s.attrs_at + s.attrs_len) as usize];
        for a in attrs {
            out.extend_from_slice(&a.key.0.to_le_bytes());
            match &a.value {
                Val::Str(x) => {
                    out.push(TEXT);
                    text_to(*x, out);
                }
                Val::Int(i) => write_value(ValueRef::Int(*i), out),
                Val::Float(f) => write_value(ValueRef::Float(*f), out),
                Val::Bool(b) => write_value(ValueRef::Bool(*b), out),
                Val::Other(v) => write_value(ValueRef::from(&**v), out),
            }
        }
    }
}

/// Reads a trace written by [`write`], keyed for `projection`: the writer's key `k` is
/// `keys[k]` here (`None`, or beyond `keys`: dropped).
pub fn read(
    mut buf: &[u8],
    projection: &Arc<Projection>,
    keys: &[Option<KeyId>],
) -> Result<Trace, Corrupt> {
    let b = &mut buf;
    let mut t = Trace::new(TraceId(fixed(b)?), projection.clone());
    for _ in 0..count(b)? {
        let mut attributes = Vec::new();
        for _ in 0..count(b)? {
            let k = read_str(b)?.to_string();
            let v = read_value(b, 0)?;
            attributes.push((k, v.into_value()));
        }
        t.add_resource(Arc::new(Resource { attributes }));
    }
    t.text = read_str(b)?.to_string();
    for _ in 0..count(b)? {
        let s: Box<str> = read_str(b)?.into();
        t.boxed += s.len();
        t.overflow.push(s);
    }
    let spans = count(b)?;
    t.spans.reserve(spans as usize);
    for _ in 0..spans {
        let span_id = SpanId(fixed(b)?);
        let has_parent = byte(b)?;
        let parent = SpanId(fixed(b)?);
        let parent_span_id = match has_parent {
            0 => None,
            1 => Some(parent),
            _ => return Err(Corrupt("a parent flag")),
        };
        let [kind, status] = fixed(b)?;
        let start_unix_nano = u64::from_le_bytes(fixed(b)?);
        let end_unix_nano = u64::from_le_bytes(fixed(b)?);
        let name = t.checked(read_text(b)?)?;
        let status_message = t.checked(read_text(b)?)?;
        let resource = u32::from_le_bytes(fixed(b)?);
        if resource != u32::MAX && resource as usize >= t.resources.len() {
            return Err(Corrupt("a resource index"));
        }
        let attrs_at = t.attrs.len() as u32;
        for _ in 0..u32::from_le_bytes(fixed(b)?) {
            let k = u32::from_le_bytes(fixed(b)?);
            let value = match b.first() {
                Some(&TEXT) => {
                    *b = &b[1..];
                    Val::Str(t.checked(read_text(b)?)?)
                }
                _ => match read_value(b, 0)? {
                    Read::Ref(ValueRef::Str(s)) => Val::Str(t.intern(s)),
                    Read::Ref(ValueRef::Int(i)) => Val::Int(i),
                    Read::Ref(ValueRef::Float(f)) => Val::Float(f),
                    Read::Ref(ValueRef::Bool(x)) => Val::Bool(x),
                    other => {
                        let v = other.into_value();
                        t.boxed += std::mem::size_of::<Value>() + super::value_heap_bytes(&v);
                        Val::Other(Box::new(v))
                    }
                },
            };
            if let Some(&Some(key)) = keys.get(k as usize) {
                t.attrs.push(Attr { key, value });
            }
        }
        t.spans.push(Span {
            span_id,
            parent_span_id,
            kind: SpanKind::from_otlp(i32::from(kind)),
            status: StatusCode::from_otlp(i32::from(status)),
            start_unix_nano,
            end_unix_nano,
            name,
            status_message,
            attrs_at,
            attrs_len: t.attrs.len() as u32 - attrs_at,
            resource,
        });
    }
    if !b.is_empty() {
        return Err(Corrupt("bytes after the last span"));
    }
    if !projection.status_message() {
        for s in &mut t.spans {
            s.status_message = Text::default();
        }
    }
    Ok(t)
}

impl Trace {
    /// `x` if it is a string of this trace: in the arena on character boundaries, or an
    /// overflow string.
    fn checked(&self, x: Text) -> Result<Text, Corrupt> {
        let fits = if x.len == u32::MAX {
            (x.at as usize) < self.overflow.len()
        } else {
            let (at, end) = (x.at as usize, x.at as usize + x.len as usize);
            end <= self.text.len()
                && self.text.is_char_boundary(at)
                && self.text.is_char_boundary(end)
        };
        if fits {
            Ok(x)
        } else {
            Err(Corrupt("a string's place"))
        }
    }
}

fn u32_to(n: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn text_to(x: Text, out: &mut Vec<u8>) {
    out.extend_from_slice(&x.at.to_le_bytes());
    out.extend_from_slice(&x.len.to_le_bytes());
}

fn read_text(b: &mut &[u8]) -> Result<Text, Corrupt> {
    Ok(Text {
        at: u32::from_le_bytes(fixed(b)?),
        len: u32::from_le_bytes(fixed(b)?),
    })
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
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
            u32_to(items.len(), out);
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

impl Read<'_> {
    fn into_value(self) -> Value {
        match self {
            Read::Ref(r) => r.to_value(),
            Read::Array(items) => Value::Array(items),
        }
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
            let n = count(b)?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(b, depth + 1)?.into_value());
            }
            return Ok(Read::Array(items));
        }
        OPAQUE => ValueRef::Opaque,
        _ => return Err(Corrupt("a value")),
    }))
}

fn byte(b: &mut &[u8]) -> Result<u8, Corrupt> {
    let (&x, rest) = b.split_first().ok_or(Corrupt("a short record"))?;
    *b = rest;
    Ok(x)
}

fn fixed<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], Corrupt> {
    let Some((x, rest)) = b.split_first_chunk::<N>() else {
        return Err(Corrupt("a short record"));
    };
    *b = rest;
    Ok(*x)
}

/// A count of items that follow, each at least one byte: never more than the bytes left.
fn count(b: &mut &[u8]) -> Result<u32, Corrupt> {
    let n = u32::from_le_bytes(fixed(b)?);
    if n as usize > b.len() {
        return Err(Corrupt("a count"));
    }
    Ok(n)
}

fn read_str<'a>(b: &mut &'a [u8]) -> Result<&'a str, Corrupt> {
    let n = u64::from_le_bytes(fixed(b)?);
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
    use crate::trace::projected;
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
        deep.extend(1u32.to_le_bytes());
        deep.extend(1u32.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
        deep.push(b'k');
        deep.extend(std::iter::repeat_n([ARRAY, 1, 0, 0, 0], 200_000).flatten());
        assert_eq!(read(&deep, &p, &keys).unwrap_err(), Corrupt("a value"));
    }
}
