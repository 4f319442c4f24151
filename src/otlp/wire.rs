//! The protobuf wire format read in place: the fields of a message as borrowed slices and
//! numbers, with prost's own key and varint decoding — nothing allocated, nothing copied.
//!
//! The span decoder walks OTLP with it so that attributes no rule reads are skipped
//! without being decoded, and the benchmarks' *wire-walk* floor visits every field of a
//! batch with it.

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};

/// Bytes that are not a valid protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> WireError {
        WireError(e.to_string())
    }
}

/// One field's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// A varint (ints, bools, enums).
    Varint(u64),
    /// A 64-bit fixed-width value (`fixed64`, `double`).
    Fixed64(u64),
    /// A 32-bit fixed-width value (`fixed32`, `float`).
    Fixed32(u32),
    /// A length-delimited payload (strings, bytes, messages, packed repeats).
    Bytes(&'a [u8]),
}

impl<'a> Field<'a> {
    /// The payload of a length-delimited field, or an error naming the field.
    pub fn bytes(self, what: &str) -> Result<&'a [u8], WireError> {
        match self {
            Field::Bytes(b) => Ok(b),
            _ => Err(WireError(format!("{what}: invalid wire type"))),
        }
    }

    /// A varint field's value.
    pub fn varint(self, what: &str) -> Result<u64, WireError> {
        match self {
            Field::Varint(v) => Ok(v),
            _ => Err(WireError(format!("{what}: invalid wire type"))),
        }
    }

    /// A fixed64 field's value.
    pub fn fixed64(self, what: &str) -> Result<u64, WireError> {
        match self {
            Field::Fixed64(v) => Ok(v),
            _ => Err(WireError(format!("{what}: invalid wire type"))),
        }
    }

    /// A string field, checked to be UTF-8.
    pub fn str(self, what: &str) -> Result<&'a str, WireError> {
        utf8(self.bytes(what)?, what)
    }
}

/// A string payload, checked to be UTF-8 (`what` names the field in the error).
pub fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| {
        WireError(format!(
            "{what}: invalid string value: data is not UTF-8 encoded"
        ))
    })
}

/// The fields of one message, in wire order: `(tag, payload)`.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

/// Whether `buf` reads to its end as protobuf fields, and so does the payload of each of its
/// length-delimited fields numbered 1 (in OTLP, the messages they hold): what tells a
/// protobuf message from text that happens to start like one.
pub fn well_formed(buf: &[u8]) -> bool {
    fields(buf).all(|f| match f {
        Ok((1, Field::Bytes(inner))) => fields(inner).all(|f| f.is_ok()),
        Ok(_) => true,
        Err(_) => false,
    })
}

/// Iterator over a message's fields; stops at the first error.
pub struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<Option<(u32, Field<'a>)>, WireError> {
        loop {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let (tag, wire) = match self.buf[0] {
                // A one-byte key (tags below 16: all of OTLP's) read in place; any other
                // key, and every error, is prost's.
                k if k < 0x80 && k >> 3 != 0 && k & 7 < 6 => {
                    self.buf = &self.buf[1..];
                    (u32::from(k >> 3), WireType::try_from(u64::from(k & 7))?)
                }
                _ => decode_key(&mut self.buf)?,
            };
            let field = match wire {
                WireType::Varint => Field::Varint(varint(&mut self.buf)?),
                WireType::SixtyFourBit => {
                    if self.buf.remaining() < 8 {
                        return Err(WireError("buffer underflow".into()));
                    }
                    Field::Fixed64(self.buf.get_u64_le())
                }
                WireType::ThirtyTwoBit => {
                    if self.buf.remaining() < 4 {
                        return Err(WireError("buffer underflow".into()));
                    }
                    Field::Fixed32(self.buf.get_u32_le())
                }
                WireType::LengthDelimited => {
                    let len = varint(&mut self.buf)?;
                    if len > self.buf.len() as u64 {
                        return Err(WireError("buffer underflow".into()));
                    }
                    let (payload, rest) = self.buf.split_at(len as usize);
                    self.buf = rest;
                    Field::Bytes(payload)
                }
                // Groups are deprecated and never in OTLP: skipped whole.
                WireType::StartGroup | WireType::EndGroup => {
                    skip_field(wire, tag, &mut self.buf, DecodeContext::default())?;
                    continue;
                }
            };
            return Ok(Some((tag, field)));
        }
    }
}

/// A varint, read in place when it is one byte (most lengths and numbers in OTLP); any
/// other, and every error, is prost's.
#[inline]
fn varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    match buf.first() {
        Some(&b) if b < 0x80 => {
            *buf = &buf[1..];
            Ok(u64::from(b))
        }
        _ => Ok(decode_varint(buf)?),
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Field<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.field() {
            Ok(f) => f.map(Ok),
            Err(e) => {
                self.buf = &[];
                Some(Err(e))
            }
        }
    }
}

/// OTLP trace messages, for [`walk`]: which fields hold which nested message.
#[derive(Clone, Copy)]
enum Otlp {
    TracesData,
    ResourceSpans,
    Resource,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Otlp {
    /// The message field `tag` holds, `None` for a scalar, string or bytes field.
    fn child(self, tag: u32) -> Option<Otlp> {
        use Otlp::*;
        Some(match (self, tag) {
            (TracesData, 1) => ResourceSpans,
            (ResourceSpans, 1) => Resource,
            (ResourceSpans, 2 | 1000) => ScopeSpans,
            (Resource, 1) | (Scope, 3) | (Event, 3) | (Link, 5) | (KeyValueList, 1) => KeyValue,
            (ScopeSpans, 1) => Scope,
            (ScopeSpans, 2) => Span,
            (Span, 9) => KeyValue,
            (Span, 11) => Event,
            (Span, 13) => Link,
            (Span, 15) => Status,
            (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KeyValueList,
            _ => return None,
        })
    }
}

/// Visits every field of an OTLP `TracesData` / `ExportTraceServiceRequest`, descending into
/// the fields the OTLP schema says are messages, and returns how many fields it saw: the
/// physical floor of reading a batch (the benchmarks' *wire-walk* stage). Nothing is
/// decoded beyond the wire format, nothing allocated; nesting is bounded. 0 for bytes that
/// are not such a message.
pub fn walk(buf: &[u8]) -> u64 {
    fn go(buf: &[u8], message: Otlp, depth: u32) -> Option<u64> {
        let mut n = 0u64;
        for f in fields(buf) {
            let (tag, f) = f.ok()?;
            n += 1;
            if let (Field::Bytes(b), Some(child)) = (f, message.child(tag)) {
                if depth < 32 {
                    n += go(b, child, depth + 1)?;
                }
            }
        }
        Some(n)
    }
    go(buf, Otlp::TracesData, 0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::encoding::{encode_key, encode_varint};

    #[test]
    fn fields_come_in_wire_order_and_truncation_is_an_error() {
        let mut buf = Vec::new();
        encode_key(1, WireType::Varint, &mut buf);
        encode_varint(300, &mut buf);
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(3, &mut buf);
        buf.extend(b"abc");
        encode_key(3, WireType::SixtyFourBit, &mut buf);
        buf.extend(7u64.to_le_bytes());
        let got: Vec<_> = fields(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            [
                (1, Field::Varint(300)),
                (2, Field::Bytes(b"abc")),
                (3, Field::Fixed64(7))
            ]
        );
        for cut in 1..buf.len() {
            let r: Result<Vec<_>, _> = fields(&buf[..cut]).collect();
            assert!(r.is_err() || r.unwrap().len() < 3, "cut at {cut}");
        }
    }

    #[test]
    fn the_walk_follows_the_otlp_schema_and_refuses_garbage() {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, TracesData};
        use prost::Message;
        let span = |attributes| Span {
            name: "x".into(),
            attributes,
            ..Default::default()
        };
        let data = |span| TracesData {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        // resource_spans, scope_spans, spans, name.
        assert_eq!(walk(&data(span(vec![])).encode_to_vec()), 4);
        // + attributes, key, value, string_value: the string is not walked into.
        let kv = KeyValue {
            key: "k".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("\x08\x01".into())),
            }),
            ..Default::default()
        };
        let bytes = data(span(vec![kv])).encode_to_vec();
        assert_eq!(walk(&bytes), 8);
        assert_eq!(walk(&bytes[..bytes.len() - 1]), 0, "truncated");
    }
}
