//! OTLP in and out. In: protobuf bytes or OTLP/JSON text, to per-trace fragments the buffer
//! assembles, each keeping only what the loaded rules read ([`crate::trace::projected`]).
//! Out: signals as OTLP ([`encode`]).
//!
//! Decoding is per span: one span that cannot be read (a non-hex id, `"intValue": 7.5`, a
//! string that is not UTF-8) is skipped and counted, and every other span of the batch is
//! kept. What real exporters write is accepted: enum names for `kind` and status codes,
//! `"NaN"`/`"Infinity"` doubles, 64-bit integers as strings or numbers, and the pre-1.0
//! `instrumentationLibrarySpans` key (protobuf field 1000) beside `scopeSpans`.
//!
//! * [`wire`] reads the protobuf wire format in place;
//! * [`protobuf`] decodes `ExportTraceServiceRequest` / `TracesData` with it;
//! * [`json`] decodes the OTLP/JSON the collector's file exporter writes;
//! * [`encode`] writes signals out: as OTLP log records, and as violation spans.

use std::collections::HashMap;
use std::sync::Arc;

use crate::lang::value::{Value, ValueRef};
use crate::trace::projected::{KeyId, Projection, SpanIn, Trace};
use crate::trace::{Resource, TraceId};

pub mod encode;
pub mod json;
pub mod layout;
pub mod protobuf;
pub mod wire;

pub use json::decode as decode_json;
pub use protobuf::decode as decode_protobuf;

/// OTLP input that cannot be read at all (not one span of it).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid protobuf `TracesData` / `ExportTraceServiceRequest`.
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(#[from] wire::WireError),
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
    /// `betrace.violation` spans BeTrace itself emitted (scope `betrace`), come back down
    /// a pipeline: left out, so that they never trigger a judgement.
    pub own_spans: u64,
}

/// Whether a span is one of BeTrace's own violation spans: its scope is
/// [`encode::SCOPE_NAME`] (`in_own_scope`) and its name [`encode::EVENT_NAME`].
fn is_own(in_own_scope: bool, name: &[u8]) -> bool {
    in_own_scope && name == encode::EVENT_NAME.as_bytes()
}

/// An all-zero trace or span id is invalid in OTLP (the collector's pdata writes an empty
/// id as none, and other producers as zeros): the span is skipped and counted.
fn refuse_zero_ids(name: &str, trace: &[u8; 16], span: &[u8; 8]) -> Result<(), String> {
    if *trace == [0; 16] || *span == [0; 8] {
        return Err(format!(
            "span `{}`: an all-zero trace or span id (invalid in OTLP)",
            crate::diagnostic::clip(name)
        ));
    }
    Ok(())
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

/// Collects spans into per-trace fragments; each fragment shares the batch's resources.
struct Builder {
    batch: Batch,
    projection: Arc<Projection>,
    /// foldhash: a lookup per span; seeded per process, so crafted ids cannot collide.
    index: HashMap<TraceId, usize, foldhash::fast::RandomState>,
    /// The resource of the spans being read, and its number in the batch.
    resource: Arc<Resource>,
    serial: u32,
    /// Per fragment: the resource last placed in it (its serial, its index there).
    placed: Vec<Option<(u32, u32)>>,
}

impl Builder {
    fn new(projection: &Arc<Projection>) -> Builder {
        Builder {
            batch: Batch::default(),
            projection: projection.clone(),
            index: HashMap::default(),
            resource: Arc::default(),
            serial: 0,
            placed: Vec::new(),
        }
    }

    /// The resource of the spans that follow.
    fn resource(&mut self, resource: Arc<Resource>) {
        self.resource = resource;
        self.serial += 1;
    }

    /// Adds a span with its kept attributes (`owned` holds the values `Kept::Owned`
    /// points at). Each fragment places the current resource once.
    fn span(
        &mut self,
        trace_id: TraceId,
        span: SpanIn<'_>,
        kept: &[(KeyId, Kept<'_>)],
        owned: &[Value],
    ) {
        let fi = *self.index.entry(trace_id).or_insert_with(|| {
            self.batch
                .fragments
                .push(Trace::new(trace_id, self.projection.clone()));
            self.placed.push(None);
            self.batch.fragments.len() - 1
        });
        let frag = &mut self.batch.fragments[fi];
        // Resources come one after another and never again: the fragment's last one is
        // the current one, or the current one is new to it.
        let r = match self.placed[fi] {
            Some((serial, r)) if serial == self.serial => r,
            _ => {
                let r = frag.add_resource(self.resource.clone());
                self.placed[fi] = Some((self.serial, r));
                r
            }
        };
        let attrs = kept.iter().map(|(k, v)| {
            let v = match v {
                Kept::Ref(r) => *r,
                Kept::Owned(i) => ValueRef::from(&owned[*i]),
            };
            (*k, v)
        });
        frag.push(r, span, attrs);
    }
}

/// A kept attribute value while a span is decoded: borrowed from the input, or an index
/// into the span's owned values (arrays and opaque values, rare).
#[derive(Debug, Clone, Copy)]
enum Kept<'a> {
    Ref(ValueRef<'a>),
    Owned(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::clip;
    use crate::lang::value::Value;
    use crate::trace::{SpanKind, StatusCode};
    use opentelemetry_proto::tonic::trace::v1::TracesData;
    use prost::Message;

    /// Keeps every key these tests read, and the status message.
    fn keys() -> Arc<Projection> {
        Arc::new(Projection::new(
            ["amount", "attempt", "tags", "ratio", "big", "inf"],
            true,
        ))
    }

    fn decode_json(b: &[u8]) -> Result<Batch, DecodeError> {
        super::decode_json(b, &keys())
    }

    fn decode_protobuf(b: &[u8]) -> Result<Batch, DecodeError> {
        super::decode_protobuf(b, &keys())
    }

    fn attr(t: &Trace, span: usize, key: &str) -> Option<Value> {
        t.attr_named(&t.spans[span], key).map(ValueRef::to_value)
    }

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
        assert_eq!(t.status_message(s), "declined");
        assert_eq!(attr(t, 0, "attempt"), Some(Value::Int(2)));
        assert_eq!(attr(t, 0, "amount"), Some(Value::Float(59.99)));
        assert_eq!(
            attr(t, 0, "tags"),
            Some(Value::Array(vec![Value::str("a")]))
        );
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
        let t = &b.fragments[0];
        let s = &t.spans[1];
        assert_eq!((s.kind, s.status), (SpanKind::Server, StatusCode::Error));
        assert_eq!(s.start_unix_nano, 17);
        assert!(matches!(attr(t, 1, "ratio"), Some(Value::Float(f)) if f.is_nan()));
        assert_eq!(attr(t, 1, "big"), Some(Value::Int(9007199254740993)));
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

    /// A batch in OTLP/JSON with a span of `name` in scope `scope`, between two good spans.
    fn in_scope(scope: &str, name: &str) -> String {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60718","name":"good.one"}}]}},{{"scope":{{"name":"{scope}"}},"spans":[{{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60799","name":"{name}"}}]}},{{"spans":[{{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60719","name":"good.two"}}]}}]}}]}}"#
        )
    }

    fn both_ways(json: &str) -> [Batch; 2] {
        let data: TracesData = serde_json::from_str(json).unwrap();
        [
            decode_json(json.as_bytes()).unwrap(),
            decode_protobuf(&data.encode_to_vec()).unwrap(),
        ]
    }

    #[test]
    fn betrace_s_own_violation_spans_are_left_out_and_counted() {
        for b in both_ways(&in_scope("betrace", "betrace.violation")) {
            assert_eq!((b.span_count(), b.own_spans, b.invalid_spans), (2, 1, 0));
        }
        // Only both together: a user's span of that name, or another span in a scope
        // named betrace, is judged like any span.
        for json in [
            in_scope("shop", "betrace.violation"),
            in_scope("betrace", "x"),
        ] {
            for b in both_ways(&json) {
                assert_eq!((b.span_count(), b.own_spans), (3, 0), "{json}");
            }
        }
    }

    #[test]
    fn all_zero_ids_are_invalid_spans() {
        let zero_trace = r#"{"traceId":"00000000000000000000000000000000","spanId":"a1b2c3d4e5f60799","name":"zero"}"#;
        let zero_span = r#"{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"0000000000000000","name":"zero"}"#;
        for span in [zero_trace, zero_span] {
            for b in both_ways(&with_span(span)) {
                assert_eq!((b.span_count(), b.invalid_spans), (2, 1), "{span}");
                assert!(b.first_invalid.unwrap().contains("all-zero"));
            }
        }
    }

    #[test]
    fn huge_values_are_clipped_in_messages() {
        let long = "a".repeat(1_000_000);
        assert!(clip(&long).len() < 100);
        let span = format!(r#"{{"traceId":"{long}","spanId":"a1b2c3d4e5f60799","name":"x"}}"#);
        let b = decode_json(with_span(&span).as_bytes()).unwrap();
        assert!(b.first_invalid.unwrap().len() < 300);
    }

    #[test]
    fn a_trace_spread_over_thousands_of_resources_is_assembled_in_linear_time() {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        // Every span has a resource of its own (a hostile batch): placing resources and
        // appending fragments must not compare each with every other (20,000² here).
        let batch = |first: usize| TracesData {
            resource_spans: (first..first + 20_000)
                .map(|i| ResourceSpans {
                    resource: Some(PbResource {
                        attributes: vec![KeyValue {
                            key: "host.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!("h{i}"))),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            trace_id: vec![1; 16],
                            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                            name: "s".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        let mut a = decode_protobuf(&batch(0).encode_to_vec()).unwrap();
        let b = decode_protobuf(&batch(20_000).encode_to_vec()).unwrap();
        assert_eq!(a.fragments.len(), 1);
        let mut t = a.fragments.pop().unwrap();
        assert_eq!(t.resource_count(), 20_000);
        t.append(b.fragments.into_iter().next().unwrap());
        assert_eq!(t.spans.len(), 40_000);
        let last = &t.spans[39_999];
        assert_eq!(
            crate::trace::lookup(&t.resource_of(last).attributes, "host.name"),
            Some(&Value::str("h39999"))
        );
    }
}
