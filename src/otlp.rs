//! OTLP trace data in: protobuf bytes or OTLP/JSON values, to per-trace fragments the
//! buffer assembles.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, TracesData};
use prost::Message;

use crate::trace::{Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId};
use crate::value::Value;

/// OTLP input that cannot be read.
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
    /// Spans skipped because their trace or span id is not 16 or 8 bytes.
    pub invalid_spans: u64,
    /// The latest span end in the batch (ns), replay's clock.
    pub max_end_unix_nano: u64,
}

impl Batch {
    /// How many spans the batch holds.
    pub fn span_count(&self) -> usize {
        self.fragments.iter().map(|f| f.spans.len()).sum()
    }
}

/// Decodes protobuf `ExportTraceServiceRequest` (or `TracesData`: the same wire format).
pub fn decode_protobuf(bytes: &[u8]) -> Result<Batch, DecodeError> {
    Ok(from_resource_spans(
        TracesData::decode(bytes)?.resource_spans,
    ))
}

/// Decodes one OTLP/JSON `TracesData` object (`{"resourceSpans":[…]}`).
pub fn decode_json(bytes: &[u8]) -> Result<Batch, DecodeError> {
    let data: TracesData = serde_json::from_slice(bytes)?;
    Ok(from_resource_spans(data.resource_spans))
}

/// Groups OTLP resource spans by trace id.
pub fn from_resource_spans(resource_spans: Vec<ResourceSpans>) -> Batch {
    let mut batch = Batch::default();
    let mut index: HashMap<TraceId, usize> = HashMap::new();
    for rs in resource_spans {
        let resource = Resource {
            attributes: rs
                .resource
                .map(|r| attributes(r.attributes))
                .unwrap_or_default(),
        };
        // Where this resource sits in each fragment it reaches.
        let mut placed: HashMap<usize, usize> = HashMap::new();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let (Ok(tid), Ok(sid)) = (
                    <[u8; 16]>::try_from(s.trace_id.as_slice()),
                    <[u8; 8]>::try_from(s.span_id.as_slice()),
                ) else {
                    batch.invalid_spans += 1;
                    continue;
                };
                let trace_id = TraceId(tid);
                let fi = *index.entry(trace_id).or_insert_with(|| {
                    batch.fragments.push(Trace {
                        trace_id,
                        ..Default::default()
                    });
                    batch.fragments.len() - 1
                });
                let frag = &mut batch.fragments[fi];
                let ri = *placed.entry(fi).or_insert_with(|| {
                    frag.resources.push(resource.clone());
                    frag.resources.len() - 1
                });
                let parent = <[u8; 8]>::try_from(s.parent_span_id.as_slice())
                    .ok()
                    .filter(|p| *p != [0; 8])
                    .map(SpanId);
                let status = s.status.unwrap_or_default();
                batch.max_end_unix_nano = batch.max_end_unix_nano.max(s.end_time_unix_nano);
                frag.spans.push(Span {
                    span_id: SpanId(sid),
                    parent_span_id: parent,
                    name: s.name,
                    kind: SpanKind::from_otlp(s.kind),
                    status: StatusCode::from_otlp(status.code),
                    status_message: status.message,
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    attributes: attributes(s.attributes),
                    resource: ri,
                });
            }
        }
    }
    batch
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(b.max_end_unix_nano, 1732524137484000000);
    }

    #[test]
    fn protobuf_round_trip_matches_json() {
        let data: TracesData = serde_json::from_str(LINE).unwrap();
        let bytes = data.encode_to_vec();
        let a = decode_protobuf(&bytes).unwrap();
        let b = decode_json(LINE.as_bytes()).unwrap();
        assert_eq!(a.fragments, b.fragments);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_protobuf(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode_json(b"not json").is_err());
    }
}
