//! OTLP/JSON (`{"resourceSpans":[…]}`), as the collector's file exporter writes it, into
//! projected trace fragments.
//!
//! One pass reads the whole batch, with simd-json (it finds the JSON's structure with SIMD
//! instructions: 0.75× serde_json's CPU on the file exporter's lines, BENCHMARKS.md "JSON
//! parsers"). serde_json is the reference: when simd-json refuses a batch, serde_json reads
//! it, and when a span in it cannot be read, the batch is read again with each span on its
//! own (serde_json over the span's raw text), so that the bad span is skipped and counted
//! alone, with serde_json's message. A batch simd-json reads is one serde_json reads the
//! same way (a property test checks it on hostile input). Strings are borrowed from the
//! input where they have no escapes, and only attributes the projection reads are kept.

use std::borrow::Cow;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::layout::{range_in, BlockShape, Layout, ScopeShape};
use super::{Batch, Builder, DecodeError, Kept};
use crate::diagnostic::clip;
use crate::lang::value::{Value, ValueRef};
use crate::trace::projected::{KeyId, Projection, SpanIn};
use crate::trace::{parse_hex, Resource, SpanId, SpanKind, StatusCode, TraceId};

/// `TracesData` with spans of type `S` and resources of type `R`: decoded in the same pass
/// ([`JsonSpan`], [`JsonResource`]: the fast path) or kept as raw text to decode one by one
/// (`&RawValue`, when the fast path fails).
#[derive(Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>, R: Deserialize<'de>"))]
struct JsonTraces<S, R> {
    #[serde(default, rename = "resourceSpans")]
    resource_spans: Vec<JsonResourceSpans<S, R>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>, R: Deserialize<'de>"))]
struct JsonResourceSpans<S, R> {
    #[serde(default)]
    resource: Option<R>,
    #[serde(default = "Vec::new", rename = "scopeSpans")]
    scope_spans: Vec<JsonScopeSpans<S>>,
    #[serde(default = "Vec::new", rename = "instrumentationLibrarySpans")]
    instrumentation_library_spans: Vec<JsonScopeSpans<S>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
struct JsonScopeSpans<S> {
    #[serde(default)]
    scope: Option<JsonScope>,
    #[serde(default = "Vec::new")]
    spans: Vec<S>,
}

/// Of a scope, only whether it is BeTrace's own.
#[derive(Deserialize, Default)]
struct JsonScope {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    #[serde(default, borrow)]
    trace_id: Cow<'a, str>,
    #[serde(default, borrow)]
    span_id: Cow<'a, str>,
    #[serde(default, borrow)]
    parent_span_id: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, deserialize_with = "span_kind")]
    kind: i32,
    #[serde(default, deserialize_with = "uint64")]
    start_time_unix_nano: u64,
    #[serde(default, deserialize_with = "uint64")]
    end_time_unix_nano: u64,
    #[serde(default, borrow)]
    attributes: Vec<JsonKeyValue<'a>>,
    #[serde(default, borrow)]
    status: Option<JsonStatus<'a>>,
}

#[derive(Deserialize, Default)]
struct JsonStatus<'a> {
    #[serde(default, deserialize_with = "status_code")]
    code: i32,
    #[serde(default, borrow)]
    message: Cow<'a, str>,
}

#[derive(Deserialize)]
struct JsonKeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<JsonAnyValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonAnyValue<'a> {
    #[serde(default, borrow)]
    string_value: Option<Cow<'a, str>>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default, deserialize_with = "some_int64")]
    int_value: Option<i64>,
    #[serde(default, deserialize_with = "some_double")]
    double_value: Option<f64>,
    #[serde(default, borrow)]
    array_value: Option<JsonArray<'a>>,
    #[serde(default)]
    kvlist_value: Option<IgnoredAny>,
    #[serde(default)]
    bytes_value: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct JsonArray<'a> {
    #[serde(default, borrow)]
    values: Vec<JsonAnyValue<'a>>,
}

#[derive(Deserialize)]
struct JsonResource<'a> {
    #[serde(default, borrow)]
    attributes: Vec<JsonKeyValue<'a>>,
}

impl JsonAnyValue<'_> {
    /// A string, boolean, integer or double value, borrowed (in that order when an
    /// exporter wrote several); `None` for arrays, opaque and empty values.
    fn scalar(&self) -> Option<ValueRef<'_>> {
        if let Some(s) = &self.string_value {
            return Some(ValueRef::Str(s));
        }
        if let Some(b) = self.bool_value {
            return Some(ValueRef::Bool(b));
        }
        if let Some(i) = self.int_value {
            return Some(ValueRef::Int(i));
        }
        self.double_value.map(ValueRef::Float)
    }

    /// An owned copy of the value; `None` for an empty one.
    fn clone_value(&self) -> Option<Value> {
        if let Some(v) = self.scalar() {
            return Some(v.to_value());
        }
        if let Some(a) = &self.array_value {
            return Some(Value::Array(
                a.values
                    .iter()
                    .filter_map(JsonAnyValue::clone_value)
                    .collect(),
            ));
        }
        if self.kvlist_value.is_some() || self.bytes_value.is_some() {
            return Some(Value::Opaque);
        }
        None
    }
}

fn json_attributes(kvs: Vec<JsonKeyValue>) -> Vec<(String, Value)> {
    kvs.into_iter()
        .filter_map(|kv| Some((kv.key.into_owned(), kv.value?.clone_value()?)))
        .collect()
}

/// A number or a string holding one (proto3 JSON writes 64-bit integers as strings).
/// Read by a visitor, not `#[serde(untagged)]`, which buffers every value and builds an
/// error for each variant that does not fit: this is read twice for every span.
enum NumberOrString<'a> {
    Number(serde_json::Number),
    String(Cow<'a, str>),
}

impl<'de> Deserialize<'de> for NumberOrString<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = NumberOrString<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a string holding one")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(NumberOrString::Number(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NumberOrString::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                serde_json::Number::from_f64(v)
                    .map(NumberOrString::Number)
                    .ok_or_else(|| E::custom(format!("{v} is not a number")))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(NumberOrString::String(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NumberOrString::String(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(Visit)
    }
}

fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => n
            .as_u64()
            .ok_or_else(|| de::Error::custom(format!("{n} is not an unsigned 64-bit integer"))),
        NumberOrString::String(s) => s.parse().map_err(|_| {
            de::Error::custom(format!(
                "\"{}\" is not an unsigned 64-bit integer",
                clip(&s)
            ))
        }),
    }
}

fn some_int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("intValue {n} is not a 64-bit integer"))),
        NumberOrString::String(s) => s.parse().map(Some).map_err(|_| {
            de::Error::custom(format!("intValue \"{}\" is not a 64-bit integer", clip(&s)))
        }),
    }
}

fn some_double<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("doubleValue {n} is not a number"))),
        NumberOrString::String(s) => match &*s {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            other => other.parse().map(Some).map_err(|_| {
                de::Error::custom(format!("doubleValue \"{}\" is not a number", clip(other)))
            }),
        },
    }
}

/// An enum as its number or its proto name (both are valid OTLP/JSON).
fn enum_value<'de, D: Deserializer<'de>>(
    d: D,
    what: &str,
    names: &[&str],
    prefix: &str,
) -> Result<i32, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| de::Error::custom(format!("{what} {n} is not an enum number"))),
        NumberOrString::String(s) => names
            .iter()
            .position(|n| s.strip_prefix(prefix) == Some(n))
            .map(|i| i as i32)
            .or_else(|| s.parse().ok())
            .ok_or_else(|| {
                de::Error::custom(format!("{what} \"{}\" is not a known value", clip(&s)))
            }),
    }
}

fn span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(
        d,
        "kind",
        &[
            "UNSPECIFIED",
            "INTERNAL",
            "SERVER",
            "CLIENT",
            "PRODUCER",
            "CONSUMER",
        ],
        "SPAN_KIND_",
    )
}

fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(d, "status code", &["UNSET", "OK", "ERROR"], "STATUS_CODE_")
}

/// Decodes one OTLP/JSON `TracesData` object (`{"resourceSpans":[…]}`) into fragments
/// keeping what `projection` reads. Fails when the text is not JSON of that shape; a span
/// that cannot be read is skipped and counted.
///
/// One pass decodes the whole batch; only when that fails (a span serde cannot read) is
/// the batch read again with each span on its own, so that the bad one is skipped alone.
pub fn decode(bytes: &[u8], projection: &Arc<Projection>) -> Result<Batch, DecodeError> {
    // simd-json parses in place: a copy of the batch, which its spans borrow from.
    let mut copy = bytes.to_vec();
    if let Some(data) = simd(&mut copy) {
        let whole = Ok::<_, std::convert::Infallible>;
        return Ok(assemble(data, projection, whole, |b, s, own| {
            span(b, s, own, projection)
        }));
    }
    decode_serde(bytes, projection)
}

/// Nesting simd-json accepts, as deep as serde_json's own limit: deeper input goes to
/// serde_json, which refuses it as it always did (and no recursion runs deeper).
const MAX_DEPTH: usize = 128;

/// The fast path: the whole batch in one simd-json pass; `None` when it refuses it.
fn simd(copy: &mut [u8]) -> Option<JsonTraces<JsonSpan<'_>, JsonResource<'_>>> {
    let mut buffers = simd_json::Buffers::with_max_depth(copy.len(), MAX_DEPTH);
    simd_json::serde::from_slice_with_buffers(copy, &mut buffers).ok()
}

/// The reference path, serde_json: the whole batch in one pass, or span by span when a span
/// cannot be read.
fn decode_serde(bytes: &[u8], projection: &Arc<Projection>) -> Result<Batch, DecodeError> {
    if let Ok(data) = serde_json::from_slice::<JsonTraces<JsonSpan, &RawValue>>(bytes) {
        return Ok(assemble(data, projection, raw_resource, |b, s, own| {
            span(b, s, own, projection)
        }));
    }
    let data: JsonTraces<&RawValue, &RawValue> = serde_json::from_slice(bytes)?;
    Ok(assemble(data, projection, raw_resource, |b, raw, own| {
        let s: JsonSpan =
            serde_json::from_str(raw.get()).map_err(|e| format!("unreadable span: {e}"))?;
        span(b, s, own, projection)
    }))
}

/// A resource kept as raw text, read on its own: a bad one costs its spans, not the batch.
fn raw_resource<'a>(raw: &'a RawValue) -> Result<JsonResource<'a>, serde_json::Error> {
    serde_json::from_str(raw.get())
}

fn assemble<'a, S, R, E: std::fmt::Display>(
    data: JsonTraces<S, R>,
    projection: &Arc<Projection>,
    resource_of: impl Fn(R) -> Result<JsonResource<'a>, E>,
    mut each: impl FnMut(&mut Builder, S, bool) -> Result<(), String>,
) -> Batch {
    let mut b = Builder::new(projection);
    for (ri, rs) in data.resource_spans.into_iter().enumerate() {
        let spans = rs
            .scope_spans
            .into_iter()
            .chain(rs.instrumentation_library_spans)
            .flat_map(|s| {
                let own = s
                    .scope
                    .is_some_and(|sc| sc.name == super::encode::SCOPE_NAME);
                s.spans.into_iter().map(move |sp| (sp, own))
            });
        let resource = match rs.resource.map(&resource_of).transpose() {
            Ok(r) => r.map(|r| json_attributes(r.attributes)).unwrap_or_default(),
            Err(e) => {
                for _ in spans {
                    b.batch
                        .invalid(|| format!("resource {}: unreadable resource: {e}", ri + 1));
                }
                continue;
            }
        };
        b.resource(Arc::new(Resource {
            attributes: resource,
        }));
        for (s, own) in spans {
            if let Err(why) = each(&mut b, s, own) {
                b.batch.invalid(|| why);
            }
        }
    }
    b.batch
}

fn span(b: &mut Builder, s: JsonSpan, own: bool, projection: &Projection) -> Result<(), String> {
    if super::is_own(own, s.name.as_bytes()) {
        b.batch.own_spans += 1;
        return Ok(());
    }
    let (Some(tid), Some(sid)) = (parse_hex::<16>(&s.trace_id), parse_hex::<8>(&s.span_id)) else {
        return Err(bad_ids(&s));
    };
    super::refuse_zero_ids(&s.name, &tid, &sid)?;
    let parent = if s.parent_span_id.is_empty() {
        None
    } else {
        match parse_hex::<8>(&s.parent_span_id) {
            Some(p) if p == [0; 8] => None,
            Some(p) => Some(SpanId(p)),
            None => {
                return Err(format!(
                    "span `{}`: parentSpanId \"{}\" is not 16 hex digits",
                    clip(&s.name),
                    clip(&s.parent_span_id)
                ))
            }
        }
    };
    let status = s.status.unwrap_or_default();
    let mut owned: Vec<Value> = Vec::new();
    let mut kept: Vec<(KeyId, Kept)> = Vec::new();
    if !projection.is_empty() {
        for kv in &s.attributes {
            let (Some(id), Some(v)) = (projection.key(&kv.key), &kv.value) else {
                continue;
            };
            let k = match v.scalar() {
                Some(r) => Kept::Ref(r),
                None => match v.clone_value() {
                    Some(o) => {
                        owned.push(o);
                        Kept::Owned(owned.len() - 1)
                    }
                    None => continue,
                },
            };
            kept.push((id, k));
        }
    }
    b.span(
        TraceId(tid),
        SpanIn {
            span_id: SpanId(sid),
            parent_span_id: parent,
            name: &s.name,
            kind: SpanKind::from_otlp(s.kind),
            status: StatusCode::from_otlp(status.code),
            status_message: &status.message,
            start_unix_nano: s.start_time_unix_nano,
            end_unix_nano: s.end_time_unix_nano,
        },
        &kept,
        &owned,
    );
    Ok(())
}

/// Why a span's ids are not usable, with a hint for base64 ids (OTLP/JSON ids are hex).
fn bad_ids(s: &JsonSpan) -> String {
    let (what, id, digits) = if parse_hex::<16>(&s.trace_id).is_none() {
        ("traceId", &s.trace_id, 32)
    } else {
        ("spanId", &s.span_id, 16)
    };
    let mut m = format!(
        "span `{}`: {what} \"{}\" is not {digits} hex digits",
        clip(&s.name),
        clip(id)
    );
    if !id.is_empty() && id.len() != digits && looks_base64(id) {
        m.push_str(" (it looks like base64: OTLP/JSON writes trace and span ids as hex)");
    }
    m
}

fn looks_base64(s: &str) -> bool {
    s.len().is_multiple_of(4)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// `TracesData` with resources, scopes and spans kept as raw text: the shape the decoders
/// accept, read only to find where things lie ([`layout`]).
#[derive(Deserialize)]
struct RawTraces<'a> {
    #[serde(default, rename = "resourceSpans", borrow)]
    resource_spans: Vec<RawResourceSpans<'a>>,
}

#[derive(Deserialize)]
struct RawResourceSpans<'a> {
    #[serde(default, borrow)]
    resource: Option<&'a RawValue>,
    #[serde(default = "Vec::new", rename = "scopeSpans", borrow)]
    scope_spans: Vec<RawScopeSpans<'a>>,
    #[serde(default = "Vec::new", rename = "instrumentationLibrarySpans", borrow)]
    instrumentation_library_spans: Vec<RawScopeSpans<'a>>,
}

#[derive(Deserialize)]
struct RawScopeSpans<'a> {
    #[serde(default, borrow)]
    scope: Option<&'a RawValue>,
    #[serde(default = "Vec::new", borrow)]
    spans: Vec<&'a RawValue>,
}

/// Of a span, what the index keeps: its ids and name.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdsAndName<'a> {
    #[serde(default, borrow)]
    trace_id: Cow<'a, str>,
    #[serde(default, borrow)]
    span_id: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
}

/// Where each span of an OTLP/JSON record lies ([`super::layout`]), read with serde_json
/// over raw text: fails exactly when [`decode`] fails on the record's structure (a scope
/// that is not a scope included), so that such a record is decoded whole.
pub fn layout(bytes: &[u8]) -> Result<Layout<'_>, DecodeError> {
    let data: RawTraces = serde_json::from_slice(bytes)?;
    let mut out = Layout {
        sure: true,
        ..Layout::default()
    };
    for rs in data.resource_spans {
        let service = match rs.resource.map(raw_resource).transpose() {
            Ok(r) => r.and_then(|r| service_name(&r.attributes)),
            // A resource the decoder cannot read costs its spans: decoded whole.
            Err(_) => {
                out.sure = false;
                None
            }
        };
        out.services.push(service);
        let mut block = BlockShape {
            resource: rs.resource.map(|r| range_in(bytes, r.get().as_bytes())),
            scopes: Vec::new(),
        };
        for ss in rs
            .scope_spans
            .into_iter()
            .chain(rs.instrumentation_library_spans)
        {
            let own = match ss.scope {
                Some(raw) => {
                    serde_json::from_str::<JsonScope>(raw.get())?.name == super::encode::SCOPE_NAME
                }
                None => false,
            };
            let mut scope = ScopeShape {
                scope: ss.scope.map(|r| range_in(bytes, r.get().as_bytes())),
                spans: 0,
            };
            for raw in ss.spans {
                match sure_span(raw, own) {
                    Some(span) => {
                        out.spans.push(span);
                        out.shape.spans.push(range_in(bytes, raw.get().as_bytes()));
                        scope.spans += 1;
                    }
                    None => out.sure = false,
                }
            }
            block.scopes.push(scope);
        }
        out.shape.blocks.push(block);
    }
    Ok(out)
}

/// The trace id of a span's text, when it reads without doubt (as [`layout`] reads it).
pub fn span_trace_id(text: &[u8]) -> Option<TraceId> {
    // What the collector writes first, read without a parser.
    if let Some(rest) = text.strip_prefix(b"{\"traceId\":\"") {
        let hex = rest.get(..32).and_then(|h| std::str::from_utf8(h).ok());
        if rest.get(32) == Some(&b'"') {
            if let Some(t) = hex.and_then(parse_hex::<16>) {
                return Some(TraceId(t));
            }
        }
    }
    let raw: &RawValue = serde_json::from_slice(text).ok()?;
    sure_span(raw, false).map(|(t, _)| t)
}

/// A span's trace and name when its ids read without doubt and it is not BeTrace's own.
fn sure_span(raw: &RawValue, own_scope: bool) -> Option<(TraceId, Cow<'_, str>)> {
    // serde reads a struct from an array too, by position: the decoder's fields are not
    // these, so a span that is not an object is left to the decoder.
    if !raw.get().starts_with('{') {
        return None;
    }
    let s: IdsAndName = serde_json::from_str(raw.get()).ok()?;
    let tid = parse_hex::<16>(&s.trace_id)?;
    let sid = parse_hex::<8>(&s.span_id)?;
    if tid == [0; 16] || sid == [0; 8] || super::is_own(own_scope, s.name.as_bytes()) {
        return None;
    }
    Some((TraceId(tid), s.name))
}

/// A resource's `service.name`, when a string.
fn service_name(attributes: &[JsonKeyValue]) -> Option<String> {
    attributes
        .iter()
        .rev()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref()?.string_value.as_ref())
        .map(|s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A batch with every kind of value, escapes, enum names, a resource and two traces.
    const LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop \u00e9"}}]},"scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","parentSpanId":"","name":"pay\"ment\\charge \ud83d\ude00","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000000000100,"attributes":[{"key":"amount","value":{"doubleValue":12.5}},{"key":"n","value":{"intValue":"-42"}},{"key":"m","value":{"intValue":7}},{"key":"ok","value":{"boolValue":true}},{"key":"inf","value":{"doubleValue":"Infinity"}},{"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"1"},{"arrayValue":{"values":[]}}]}}},{"key":"kv","value":{"kvlistValue":{"values":[]}}},{"key":"b","value":{"bytesValue":"AAE="}},{"key":"other","value":{"stringValue":"x\ty"}}],"status":{"code":"STATUS_CODE_ERROR","message":"no\nfunds"}},{"traceId":"1102030405060708090a0b0c0d0e0f10","spanId":"1102030405060708","parentSpanId":"0102030405060708","name":"b","kind":2,"startTimeUnixNano":"5","endTimeUnixNano":"6","attributes":[],"status":{}}]}]}]}"#;

    fn projection() -> Arc<Projection> {
        let keys = ["amount", "n", "m", "ok", "inf", "tags", "kv", "b"];
        Arc::new(Projection::new(keys.iter().map(|k| k.to_string()), true))
    }

    /// The fast path alone: `None` when simd-json refuses the batch.
    fn fast(bytes: &[u8], projection: &Arc<Projection>) -> Option<Batch> {
        let mut copy = bytes.to_vec();
        let whole = Ok::<_, std::convert::Infallible>;
        simd(&mut copy).map(|d| {
            assemble(d, projection, whole, |b, s, own| {
                span(b, s, own, projection)
            })
        })
    }

    #[test]
    fn the_fast_path_reads_a_batch_as_serde_json_does() {
        let p = projection();
        let fast = fast(LINE.as_bytes(), &p).expect("simd-json reads the batch");
        let reference = decode_serde(LINE.as_bytes(), &p).expect("serde_json reads it");
        assert_eq!(fast.span_count(), 2);
        assert_eq!(fast.invalid_spans, 0);
        assert_eq!(format!("{fast:?}"), format!("{reference:?}"));
    }

    #[test]
    fn what_the_fast_path_refuses_serde_json_decides() {
        let p = projection();
        // Trailing text after the object, too deep nesting, a lone surrogate, a raw
        // control character in a string: each decoded exactly as serde_json decodes it.
        let deep = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","attributes":[{{"key":"tags","value":{}1{}}}]}}]}}]}}]}}"#,
            r#"{"arrayValue":{"values":["#.repeat(20_000),
            "]}}".repeat(20_000)
        );
        let cases = [
            format!("{LINE} trailing"),
            deep,
            LINE.replace(r"\ud83d\ude00", r"\ud800"),
            LINE.replace(r"x\ty", "x\ty"),
        ];
        for case in &cases {
            let got = decode(case.as_bytes(), &p);
            let want = decode_serde(case.as_bytes(), &p);
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{}", clip(case));
        }
    }

    /// Bytes and snippets that stress a JSON parser's corners.
    const PALETTE: &[&str] = &[
        "\"",
        "\\",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "0",
        "-",
        "e",
        ".",
        "\u{0}",
        "\u{1f}",
        "\u{7f}",
        "u",
        " ",
        "\n",
        r"\ud800",
        r"\u0000",
        r"\udc00\ud800",
        "1e999",
        "-0",
        "1.0",
        "18446744073709551616",
        "-9223372036854775809",
        "\"NaN\"",
        "null",
        "true",
        "[]",
        "{}",
        "é",
        "\"intValue\"",
        "\"stringValue\":",
        "\"kind\":",
        "0x10",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The fast path never accepts what serde_json would read differently: whenever
        /// simd-json reads a damaged batch, serde_json reads the same spans from it.
        #[test]
        fn simd_json_agrees_with_serde_json_on_damaged_batches(
            edits in proptest::collection::vec((0usize..LINE.len(), 0usize..PALETTE.len(), any::<bool>()), 1..4),
            invalid_byte in any::<bool>(),
        ) {
            let mut bytes = LINE.as_bytes().to_vec();
            for (at, what, delete) in edits {
                let at = at.min(bytes.len());
                if delete && at < bytes.len() {
                    bytes.remove(at);
                } else {
                    bytes.splice(at..at, PALETTE[what].bytes());
                }
            }
            if invalid_byte {
                let at = bytes.len() / 2;
                bytes.insert(at, 0xff);
            }
            let p = projection();
            let whole = decode(&bytes, &p);
            if let Some(f) = fast(&bytes, &p) {
                let reference = decode_serde(&bytes, &p);
                prop_assert!(reference.is_ok(), "simd-json read what serde_json refuses: {}", String::from_utf8_lossy(&bytes));
                prop_assert_eq!(format!("{:?}", f), format!("{:?}", reference.unwrap()));
            }
            prop_assert_eq!(format!("{:?}", whole), format!("{:?}", decode_serde(&bytes, &p)));
        }
    }
}
