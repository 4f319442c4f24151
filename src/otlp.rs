//! OTLP trace data in: protobuf bytes or OTLP/JSON text, to per-trace fragments the buffer
//! assembles.
//!
//! Decoding is per span: one span that cannot be read (a non-hex id, `"intValue": 7.5`, a
//! string that is not UTF-8) is skipped and counted, and every other span of the batch is
//! kept. What real exporters write is accepted: enum names for `kind` and status codes,
//! `"NaN"`/`"Infinity"` doubles, 64-bit integers as strings or numbers, and the pre-1.0
//! `instrumentationLibrarySpans` key (protobuf field 1000) beside `scopeSpans`.

use std::borrow::Cow;
use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::Span as PbSpan;
use prost::Message;
use serde::de::{self, Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::diagnostic::clip;
use crate::trace::{parse_hex, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId};
use crate::value::Value;

/// OTLP input that cannot be read at all (not one span of it).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid protobuf `TracesData` / `ExportTraceServiceRequest`.
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Not valid OTLP/JSON.
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Spans of one batch, grouped by trace, plus what had to be skipped.
#[derive(Debug, Default)]
pub struct Batch {
    /// One trace fragment per trace id, in order of first appearance.
    pub fragments: Vec<Trace>,
    /// Spans skipped because they could not be read (a bad id, a bad value, bad UTF-8).
    pub invalid_spans: u64,
    /// Why the first skipped span was skipped, for the report.
    pub first_invalid: Option<String>,
}

impl Batch {
    /// How many spans the batch holds.
    pub fn span_count(&self) -> usize {
        self.fragments.iter().map(|f| f.spans.len()).sum()
    }

    /// Counts one skipped span, keeping the first reason.
    fn invalid(&mut self, why: impl FnOnce() -> String) {
        self.invalid_spans += 1;
        if self.first_invalid.is_none() {
            self.first_invalid = Some(why());
        }
    }
}

/// Collects spans into per-trace fragments, placing each resource once per fragment.
#[derive(Default)]
struct Builder {
    batch: Batch,
    index: HashMap<TraceId, usize>,
    /// (resource number in the batch, fragment) → resource index in that fragment.
    placed: HashMap<(usize, usize), usize>,
    resources: Vec<Resource>,
}

impl Builder {
    fn resource(&mut self, attributes: Vec<(String, Value)>) -> usize {
        self.resources.push(Resource { attributes });
        self.resources.len() - 1
    }

    fn span(&mut self, resource: usize, trace_id: TraceId, mut span: Span) {
        let fi = *self.index.entry(trace_id).or_insert_with(|| {
            self.batch.fragments.push(Trace {
                trace_id,
                ..Default::default()
            });
            self.batch.fragments.len() - 1
        });
        let frag = &mut self.batch.fragments[fi];
        let resources = &self.resources;
        span.resource = *self.placed.entry((resource, fi)).or_insert_with(|| {
            frag.resources.push(resources[resource].clone());
            frag.resources.len() - 1
        });
        frag.spans.push(span);
    }
}

// ------------------------------------------------------------------------------ protobuf

/// `TracesData` / `ExportTraceServiceRequest` with spans and resources left as bytes, so
/// that each is decoded on its own.
#[derive(Clone, PartialEq, Message)]
struct LazyTraces {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<LazyResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct LazyResourceSpans {
    #[prost(bytes = "vec", optional, tag = "1")]
    resource: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<LazyScopeSpans>,
    /// `instrumentation_library_spans`, before OTLP 1.0 renamed it: the same layout.
    #[prost(message, repeated, tag = "1000")]
    instrumentation_library_spans: Vec<LazyScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct LazyScopeSpans {
    #[prost(bytes = "vec", repeated, tag = "2")]
    spans: Vec<Vec<u8>>,
}

/// Decodes protobuf `ExportTraceServiceRequest` (or `TracesData`: the same wire format).
/// Fails only when the message structure itself is broken; a span that cannot be read is
/// skipped and counted.
pub fn decode_protobuf(bytes: &[u8]) -> Result<Batch, DecodeError> {
    let data = LazyTraces::decode(bytes)?;
    let mut b = Builder::default();
    for (ri, rs) in data.resource_spans.into_iter().enumerate() {
        let resource = match rs.resource.as_deref().map(PbResource::decode).transpose() {
            Ok(r) => r.map(|r| attributes(r.attributes)).unwrap_or_default(),
            Err(e) => {
                let n: usize = rs
                    .scope_spans
                    .iter()
                    .chain(&rs.instrumentation_library_spans)
                    .map(|s| s.spans.len())
                    .sum();
                for _ in 0..n {
                    b.batch
                        .invalid(|| format!("resource {}: unreadable resource: {e}", ri + 1));
                }
                continue;
            }
        };
        let r = b.resource(resource);
        for raw in rs
            .scope_spans
            .iter()
            .chain(&rs.instrumentation_library_spans)
            .flat_map(|s| &s.spans)
        {
            match PbSpan::decode(raw.as_slice()) {
                Ok(s) => {
                    let (Ok(tid), Ok(sid)) = (
                        <[u8; 16]>::try_from(s.trace_id.as_slice()),
                        <[u8; 8]>::try_from(s.span_id.as_slice()),
                    ) else {
                        b.batch.invalid(|| {
                            format!(
                                "span `{}`: trace id of {} bytes or span id of {} bytes (need 16 and 8)",
                                clip(&s.name),
                                s.trace_id.len(),
                                s.span_id.len()
                            )
                        });
                        continue;
                    };
                    let status = s.status.unwrap_or_default();
                    let parent = <[u8; 8]>::try_from(s.parent_span_id.as_slice())
                        .ok()
                        .filter(|p| *p != [0; 8])
                        .map(SpanId);
                    b.span(
                        r,
                        TraceId(tid),
                        Span {
                            span_id: SpanId(sid),
                            parent_span_id: parent,
                            name: s.name,
                            kind: SpanKind::from_otlp(s.kind),
                            status: StatusCode::from_otlp(status.code),
                            status_message: status.message,
                            start_unix_nano: s.start_time_unix_nano,
                            end_unix_nano: s.end_time_unix_nano,
                            attributes: attributes(s.attributes),
                            resource: 0,
                        },
                    );
                }
                Err(e) => b.batch.invalid(|| format!("unreadable span: {e}")),
            }
        }
    }
    Ok(b.batch)
}

fn attributes(kvs: Vec<KeyValue>) -> Vec<(String, Value)> {
    kvs.into_iter()
        .filter_map(|kv| Some((kv.key, value(kv.value?)?)))
        .collect()
}

/// An OTLP value as a language value; an empty value is no value.
pub fn value(v: AnyValue) -> Option<Value> {
    Some(match v.value? {
        any_value::Value::StringValue(s) => Value::str(s),
        any_value::Value::BoolValue(b) => Value::Bool(b),
        any_value::Value::IntValue(i) => Value::Int(i),
        any_value::Value::DoubleValue(d) => Value::Float(d),
        any_value::Value::ArrayValue(a) => {
            Value::Array(a.values.into_iter().filter_map(value).collect())
        }
        any_value::Value::KvlistValue(_) | any_value::Value::BytesValue(_) => Value::Opaque,
        _ => Value::Opaque,
    })
}

// ------------------------------------------------------------------------------ OTLP/JSON

#[derive(Deserialize)]
struct JsonTraces<'a> {
    #[serde(default, borrow, rename = "resourceSpans")]
    resource_spans: Vec<JsonResourceSpans<'a>>,
}

#[derive(Deserialize)]
struct JsonResourceSpans<'a> {
    #[serde(default, borrow)]
    resource: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "scopeSpans")]
    scope_spans: Vec<JsonScopeSpans<'a>>,
    #[serde(default, borrow, rename = "instrumentationLibrarySpans")]
    instrumentation_library_spans: Vec<JsonScopeSpans<'a>>,
}

#[derive(Deserialize)]
struct JsonScopeSpans<'a> {
    #[serde(default, borrow)]
    spans: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonResource {
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
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
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "span_kind")]
    kind: i32,
    #[serde(default, deserialize_with = "uint64")]
    start_time_unix_nano: u64,
    #[serde(default, deserialize_with = "uint64")]
    end_time_unix_nano: u64,
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
    #[serde(default)]
    status: Option<JsonStatus>,
}

#[derive(Deserialize)]
struct JsonStatus {
    #[serde(default, deserialize_with = "status_code")]
    code: i32,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct JsonKeyValue {
    key: String,
    #[serde(default)]
    value: Option<JsonAnyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonAnyValue {
    #[serde(default)]
    string_value: Option<String>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default, deserialize_with = "some_int64")]
    int_value: Option<i64>,
    #[serde(default, deserialize_with = "some_double")]
    double_value: Option<f64>,
    #[serde(default)]
    array_value: Option<JsonArray>,
    #[serde(default)]
    kvlist_value: Option<IgnoredAny>,
    #[serde(default)]
    bytes_value: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct JsonArray {
    #[serde(default)]
    values: Vec<JsonAnyValue>,
}

impl JsonAnyValue {
    fn into_value(self) -> Option<Value> {
        if let Some(s) = self.string_value {
            return Some(Value::str(s));
        }
        if let Some(b) = self.bool_value {
            return Some(Value::Bool(b));
        }
        if let Some(i) = self.int_value {
            return Some(Value::Int(i));
        }
        if let Some(d) = self.double_value {
            return Some(Value::Float(d));
        }
        if let Some(a) = self.array_value {
            return Some(Value::Array(
                a.values
                    .into_iter()
                    .filter_map(JsonAnyValue::into_value)
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
        .filter_map(|kv| Some((kv.key, kv.value?.into_value()?)))
        .collect()
}

/// A number or a string holding one (proto3 JSON writes 64-bit integers as strings).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString<'a> {
    Number(serde_json::Number),
    String(#[serde(borrow)] Cow<'a, str>),
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

/// Decodes one OTLP/JSON `TracesData` object (`{"resourceSpans":[…]}`). Fails when the text
/// is not JSON of that shape; a span that cannot be read is skipped and counted.
pub fn decode_json(bytes: &[u8]) -> Result<Batch, DecodeError> {
    let data: JsonTraces = serde_json::from_slice(bytes)?;
    let mut b = Builder::default();
    for (ri, rs) in data.resource_spans.into_iter().enumerate() {
        let spans = rs
            .scope_spans
            .iter()
            .chain(&rs.instrumentation_library_spans)
            .flat_map(|s| &s.spans);
        let resource = match rs
            .resource
            .map(|r| serde_json::from_str::<JsonResource>(r.get()))
            .transpose()
        {
            Ok(r) => r.map(|r| json_attributes(r.attributes)).unwrap_or_default(),
            Err(e) => {
                for _ in spans {
                    b.batch
                        .invalid(|| format!("resource {}: unreadable resource: {e}", ri + 1));
                }
                continue;
            }
        };
        let r = b.resource(resource);
        for raw in spans {
            match serde_json::from_str::<JsonSpan>(raw.get()) {
                Ok(s) => {
                    let (Some(tid), Some(sid)) =
                        (parse_hex::<16>(&s.trace_id), parse_hex::<8>(&s.span_id))
                    else {
                        b.batch.invalid(|| bad_ids(&s));
                        continue;
                    };
                    let parent = if s.parent_span_id.is_empty() {
                        None
                    } else {
                        match parse_hex::<8>(&s.parent_span_id) {
                            Some(p) if p == [0; 8] => None,
                            Some(p) => Some(SpanId(p)),
                            None => {
                                b.batch.invalid(|| {
                                    format!(
                                        "span `{}`: parentSpanId \"{}\" is not 16 hex digits",
                                        clip(&s.name),
                                        clip(&s.parent_span_id)
                                    )
                                });
                                continue;
                            }
                        }
                    };
                    let status = s.status.unwrap_or(JsonStatus {
                        code: 0,
                        message: String::new(),
                    });
                    b.span(
                        r,
                        TraceId(tid),
                        Span {
                            span_id: SpanId(sid),
                            parent_span_id: parent,
                            name: s.name,
                            kind: SpanKind::from_otlp(s.kind),
                            status: StatusCode::from_otlp(status.code),
                            status_message: status.message,
                            start_unix_nano: s.start_time_unix_nano,
                            end_unix_nano: s.end_time_unix_nano,
                            attributes: json_attributes(s.attributes),
                            resource: 0,
                        },
                    );
                }
                Err(e) => b.batch.invalid(|| format!("unreadable span: {e}")),
            }
        }
    }
    Ok(b.batch)
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
    s.len() % 4 == 0
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::TracesData;

    const LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeSpans":[{"scope":{"name":"x"},"spans":[
      {"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60718","parentSpanId":"","name":"payment.charge","kind":2,"startTimeUnixNano":"1732524137384000000","endTimeUnixNano":"1732524137484000000",
       "attributes":[{"key":"amount","value":{"doubleValue":59.99}},{"key":"attempt","value":{"intValue":"2"}},{"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"}]}}}],"status":{"code":2,"message":"declined"}},
      {"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60719","parentSpanId":"a1b2c3d4e5f60718","name":"child","startTimeUnixNano":"1732524137385000000","endTimeUnixNano":"1732524137386000000"},
      {"traceId":"","spanId":"a1b2c3d4e5f60720","name":"broken"}]}]}]}"#;

    #[test]
    fn otlp_json_as_the_collector_writes_it() {
        let b = decode_json(LINE.as_bytes()).unwrap();
        assert_eq!(b.fragments.len(), 1);
        assert_eq!(b.invalid_spans, 1);
        let t = &b.fragments[0];
        assert_eq!(t.trace_id.to_string(), "5f9c2a1b3e4d67895f9c2a1b3e4d6789");
        let s = &t.spans[0];
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.status, StatusCode::Error);
        assert_eq!(s.status_message, "declined");
        assert_eq!(s.attributes[1], ("attempt".to_string(), Value::Int(2)));
        assert_eq!(s.parent_span_id, None);
        assert_eq!(t.spans[1].parent_span_id, Some(s.span_id));
        assert_eq!(t.resource_of(s).service_name(), "checkout");
    }

    #[test]
    fn protobuf_round_trip_matches_json() {
        let data: TracesData = serde_json::from_str(&LINE.replace(
            r#"{"traceId":"","spanId":"a1b2c3d4e5f60720","name":"broken"}"#,
            r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60720","name":"third"}"#,
        ))
        .unwrap();
        let bytes = data.encode_to_vec();
        let a = decode_protobuf(&bytes).unwrap();
        let b = decode_json(&serde_json::to_vec(&data).unwrap()).unwrap();
        assert_eq!(a.fragments, b.fragments);
        assert_eq!(a.span_count(), 3);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_protobuf(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode_json(b"not json").is_err());
    }

    /// One bad span among good ones, as JSON: (the bad span's JSON, what the report says).
    const BAD_SPANS: &[(&str, &str)] = &[
        (
            r#"{"traceId":"zz9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"bad"}"#,
            "not 32 hex digits",
        ),
        (
            r#"{"traceId":"X5wqGz5NZ4lfnCobPk1niQ==","spanId":"a1b2c3d4e5f60799","name":"bad"}"#,
            "looks like base64",
        ),
        (
            r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"bad","attributes":[{"key":"n","value":{"intValue":7.5}}]}"#,
            "7.5 is not a 64-bit integer",
        ),
        (
            r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"bad","kind":"SPAN_KIND_NOPE"}"#,
            "is not a known value",
        ),
        (
            r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"bad","startTimeUnixNano":"-3"}"#,
            "unsigned 64-bit",
        ),
        (
            r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","parentSpanId":"xyz","name":"bad"}"#,
            "parentSpanId",
        ),
    ];

    fn with_span(extra: &str) -> String {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60718","name":"good.one"}},{extra},{{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60719","name":"good.two"}}]}}]}}]}}"#
        )
    }

    #[test]
    fn one_bad_json_span_drops_only_itself() {
        for (span, why) in BAD_SPANS {
            let b = decode_json(with_span(span).as_bytes()).unwrap();
            assert_eq!(b.span_count(), 2, "{span}");
            assert_eq!(b.invalid_spans, 1, "{span}");
            let reason = b.first_invalid.unwrap();
            assert!(reason.contains(why), "{reason} lacks {why}");
        }
    }

    #[test]
    fn what_real_exporters_write_is_read() {
        let span = r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"ok","kind":"SPAN_KIND_SERVER","startTimeUnixNano":17,"status":{"code":"STATUS_CODE_ERROR"},"attributes":[{"key":"ratio","value":{"doubleValue":"NaN"}},{"key":"big","value":{"intValue":9007199254740993}},{"key":"inf","value":{"doubleValue":"-Infinity"}}],"events":[{"name":"e"}],"links":[],"droppedAttributesCount":0}"#;
        let b = decode_json(with_span(span).as_bytes()).unwrap();
        assert_eq!((b.span_count(), b.invalid_spans), (3, 0));
        let s = &b.fragments[0].spans[1];
        assert_eq!((s.kind, s.status), (SpanKind::Server, StatusCode::Error));
        assert_eq!(s.start_unix_nano, 17);
        assert!(matches!(s.attributes[0].1, Value::Float(f) if f.is_nan()));
        assert_eq!(s.attributes[1].1, Value::Int(9007199254740993));
    }

    #[test]
    fn the_pre_1_0_instrumentation_library_spans_key_is_read() {
        let json = with_span(r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"x"}"#)
            .replace("scopeSpans", "instrumentationLibrarySpans");
        let b = decode_json(json.as_bytes()).unwrap();
        assert_eq!(b.span_count(), 3);
        // Protobuf field 1000, the same layout as scope_spans.
        let data: TracesData = serde_json::from_str(&with_span(
            r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"x"}"#,
        ))
        .unwrap();
        let mut bytes = Vec::new();
        for rs in &data.resource_spans {
            let mut inner = Vec::new();
            for ss in &rs.scope_spans {
                prost::encoding::message::encode(1000, ss, &mut inner);
            }
            prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut bytes);
            prost::encoding::encode_varint(inner.len() as u64, &mut bytes);
            bytes.extend(inner);
        }
        assert_eq!(decode_protobuf(&bytes).unwrap().span_count(), 3);
    }

    #[test]
    fn a_span_with_a_non_utf8_name_drops_only_itself_in_protobuf() {
        let data: TracesData = serde_json::from_str(&with_span(
            r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"BADNAME"}"#,
        ))
        .unwrap();
        let mut bytes = data.encode_to_vec();
        let at = bytes.windows(7).position(|w| w == b"BADNAME").unwrap();
        bytes[at] = 0xff;
        let b = decode_protobuf(&bytes).unwrap();
        assert_eq!((b.span_count(), b.invalid_spans), (2, 1));
        assert!(b.first_invalid.unwrap().contains("unreadable span"));
    }

    #[test]
    fn huge_values_are_clipped_in_messages() {
        let long = "a".repeat(1_000_000);
        assert!(clip(&long).len() < 100);
        let span = format!(r#"{{"traceId":"{long}","spanId":"a1b2c3d4e5f60799","name":"x"}}"#);
        let b = decode_json(with_span(&span).as_bytes()).unwrap();
        assert!(b.first_invalid.unwrap().len() < 300);
    }
}
