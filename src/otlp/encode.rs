//! Signals out, the OTLP way: as log records (docs/language.md, "What a rule reports"), which every logs backend
//! already stores and links to the trace, and as violation spans in the violating trace
//! (docs/language.md, "What a rule reports").

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

use crate::engine::signal::Signal;
use crate::lang::value::Value;
use crate::trace::projected::Trace as ProjectedTrace;
use crate::trace::Resource;

/// The event name and violation span name.
pub const EVENT_NAME: &str = "betrace.violation";

/// A signal and when it was detected.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    /// The signal.
    pub signal: Signal,
    /// Detection time (the engine's clock when the trace was judged), ns.
    pub detected_unix_nano: u64,
}

/// The instrumentation scope of every log record and violation span BeTrace emits; the
/// decoders recognise BeTrace's own spans by it.
pub const SCOPE_NAME: &str = "betrace";

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.into(),
        version: crate::VERSION.into(),
        ..Default::default()
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    }
}

/// A language value as an OTLP value.
pub fn any(v: &Value) -> AnyValue {
    let value = match v {
        Value::Str(s) => any_value::Value::StringValue(s.to_string()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Float(f) => any_value::Value::DoubleValue(*f),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Duration(d) => any_value::Value::IntValue(*d),
        Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        }),
        // Empty bytes: what the decoder reads back as opaque (bytes and key-value lists
        // are kept as such). An empty value would read back as no attribute at all.
        Value::Opaque => any_value::Value::BytesValue(Vec::new()),
    };
    AnyValue { value: Some(value) }
}

fn otlp_resource(r: &Resource) -> OtlpResource {
    OtlpResource {
        attributes: r.attributes.iter().map(|(k, v)| kv(k, any(v))).collect(),
        ..Default::default()
    }
}

/// The attributes a violation carries, on its log record and its span.
pub fn attributes(s: &Signal) -> Vec<KeyValue> {
    let mut out = vec![
        kv("betrace.rule.id", string(&s.rule_id)),
        kv("betrace.rule.name", string(&s.rule_name)),
        kv("betrace.rule.severity", string(s.severity.as_str())),
        kv("betrace.signal.type", string(&s.signal_type)),
        kv(
            "betrace.violation.span_ids",
            AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: s
                        .span_ids
                        .iter()
                        .map(|id| string(&id.to_string()))
                        .collect(),
                })),
            },
        ),
        kv("betrace.mode", string(s.mode.as_str())),
        kv(
            "betrace.trace.complete",
            AnyValue {
                value: Some(any_value::Value::BoolValue(s.complete)),
            },
        ),
    ];
    if s.span_ids_total > s.span_ids.len() {
        out.push(kv(
            "betrace.violation.span_ids_total",
            AnyValue {
                value: Some(any_value::Value::IntValue(s.span_ids_total as i64)),
            },
        ));
    }
    if let Some(c) = &s.compliance {
        out.push(kv("betrace.compliance.framework", string(&c.framework)));
        out.push(kv("betrace.compliance.control", string(&c.control)));
    }
    for (k, v) in &s.context {
        out.push(kv(&format!("betrace.context.{k}"), any(v)));
    }
    out
}

/// One log record per signal, grouped by the first trigger span's resource.
pub fn logs_request(signals: &[Detected]) -> ExportLogsServiceRequest {
    let groups = by_resource(signals, |d| {
        let s = &d.signal;
        LogRecord {
            time_unix_nano: s.time_unix_nano,
            observed_time_unix_nano: d.detected_unix_nano,
            severity_number: s.severity.otlp_number(),
            severity_text: s.severity.as_str().to_string(),
            body: Some(string(&s.message)),
            attributes: attributes(s),
            trace_id: s.trace_id.0.to_vec(),
            span_id: s.span_id.0.to_vec(),
            event_name: EVENT_NAME.to_string(),
            ..Default::default()
        }
    });
    ExportLogsServiceRequest {
        resource_logs: groups
            .into_iter()
            .map(|(r, log_records)| ResourceLogs {
                resource: Some(otlp_resource(r)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// One `betrace.violation` span per signal, a child of the first trigger span, in the
/// violating trace.
pub fn violation_spans(signals: &[Detected]) -> ExportTraceServiceRequest {
    let groups = by_resource(signals, |d| {
        let s = &d.signal;
        Span {
            trace_id: s.trace_id.0.to_vec(),
            span_id: violation_span_id(s).to_vec(),
            parent_span_id: s.span_id.0.to_vec(),
            name: EVENT_NAME.to_string(),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: s.time_unix_nano,
            end_time_unix_nano: d.detected_unix_nano.max(s.time_unix_nano),
            attributes: attributes(s),
            status: Some(Status {
                code: status::StatusCode::Error as i32,
                message: s.message.clone(),
            }),
            ..Default::default()
        }
    });
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(r, spans)| ResourceSpans {
                resource: Some(otlp_resource(r)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Builds one item per signal, grouped by the first trigger span's resource, in order of
/// first appearance: OTLP nests records and spans under their resource.
fn by_resource<T>(signals: &[Detected], item: impl Fn(&Detected) -> T) -> Vec<(&Resource, Vec<T>)> {
    let mut groups: Vec<(&Resource, Vec<T>)> = Vec::new();
    for d in signals {
        let it = item(d);
        match groups.iter_mut().find(|(r, _)| **r == d.signal.resource) {
            Some((_, items)) => items.push(it),
            None => groups.push((&d.signal.resource, vec![it])),
        }
    }
    groups
}

/// A new span id, stable for a (trace, rule, first trigger span): a violation span sent
/// twice (say, by two collectors replaying the same data) is the same span.
fn violation_span_id(s: &Signal) -> [u8; 8] {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(&s.trace_id.0);
    h.write(&s.span_id.0);
    h.write(s.rule_id.as_bytes());
    (h.finish() | 1).to_be_bytes()
}

/// Trace fragments as one OTLP request, with what their spans kept (the projection's
/// attributes, the status message when kept) and their resources whole: what replay
/// writes when it spills spans to disk (`crate::replay::spill`). Decoding the request
/// with the same projection gives the same fragments back, one per trace.
pub fn fragments(frags: &[ProjectedTrace]) -> ExportTraceServiceRequest {
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    for frag in frags {
        // Spans grouped by resource, in order of first appearance.
        let mut groups: Vec<(&Resource, Vec<Span>)> = Vec::new();
        for s in &frag.spans {
            let resource = frag.resource_of(s);
            let span = Span {
                trace_id: frag.trace_id.0.to_vec(),
                span_id: s.span_id.0.to_vec(),
                parent_span_id: s.parent_span_id.map_or_else(Vec::new, |p| p.0.to_vec()),
                name: frag.name(s).to_string(),
                kind: s.kind as i32,
                start_time_unix_nano: s.start_unix_nano,
                end_time_unix_nano: s.end_unix_nano,
                attributes: frag
                    .attrs(s)
                    .map(|(k, v)| kv(k, any(&v.to_value())))
                    .collect(),
                status: Some(Status {
                    code: s.status as i32,
                    message: frag.status_message(s).to_string(),
                }),
                ..Default::default()
            };
            match groups.iter_mut().find(|(r, _)| std::ptr::eq(*r, resource)) {
                Some((_, spans)) => spans.push(span),
                None => groups.push((resource, vec![span])),
            }
        }
        resource_spans.extend(groups.into_iter().map(|(r, spans)| ResourceSpans {
            resource: Some(otlp_resource(r)),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }));
    }
    ExportTraceServiceRequest { resource_spans }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::signal::Mode;
    use crate::RuleSet;

    #[test]
    fn an_opaque_value_reads_back_as_one() {
        // A spill writes held traces out and reads them back: an attribute whose value
        // no rule can compare (bytes, a key-value list) must still exist after it.
        let trace =
            crate::rules::compact::from_yaml("- name: x\n  attributes: { k: 1 }", 3).unwrap();
        let mut trace = trace;
        trace.spans[0].attributes = vec![("k".into(), Value::Opaque)];
        trace.resources[trace.spans[0].resource]
            .attributes
            .push(("r".into(), Value::Opaque));
        use prost::Message;
        let projection =
            std::sync::Arc::new(crate::trace::projected::Projection::new(["k"], false));
        let projected = ProjectedTrace::project(&trace, &projection);
        let bytes = fragments(&[projected]).encode_to_vec();
        let batch = crate::otlp::protobuf::decode(&bytes, &projection).unwrap();
        let back = &batch.fragments[0];
        let span = &back.spans[0];
        assert_eq!(
            back.attr_named(span, "k"),
            Some(crate::lang::value::ValueRef::Opaque)
        );
        assert_eq!(
            crate::trace::lookup(&back.resource_of(span).attributes, "r"),
            Some(&Value::Opaque)
        );
    }

    fn detected() -> Vec<Detected> {
        let text = "rules:\n  - id: r\n    name: R\n    severity: critical\n    compliance: { framework: SOC2, control: CC7.2 }\n    condition: x\n    signal:\n      message: \"bad {k}\"\n      context: [k]\n";
        let (rules, _) = RuleSet::from_text("r.yaml", text).unwrap();
        let trace = crate::rules::compact::from_yaml(
            "- name: x\n  service: shop\n  attributes: { k: 7 }",
            3,
        )
        .unwrap();
        crate::engine::judge::signals(&rules, &trace, Mode::Live)
            .into_iter()
            .map(|signal| Detected {
                signal,
                detected_unix_nano: u64::MAX / 2,
            })
            .collect()
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> &'a any_value::Value {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .unwrap_or_else(|| panic!("no {key}"))
    }

    #[test]
    fn log_records_carry_the_spec_fields() {
        let d = detected();
        let req = logs_request(&d);
        let rl = &req.resource_logs[0];
        let svc = &rl.resource.as_ref().unwrap().attributes[0];
        assert_eq!(
            (svc.key.as_str(), svc.value.as_ref().unwrap().value.as_ref()),
            (
                "service.name",
                Some(&any_value::Value::StringValue("shop".into()))
            )
        );
        let scope = rl.scope_logs[0].scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("betrace", crate::VERSION)
        );
        let r = &rl.scope_logs[0].log_records[0];
        let s = &d[0].signal;
        assert_eq!(r.time_unix_nano, s.time_unix_nano);
        assert_eq!(r.observed_time_unix_nano, u64::MAX / 2);
        assert_eq!(
            (r.severity_number, r.severity_text.as_str()),
            (21, "critical")
        );
        assert_eq!(
            r.body.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("bad 7".into()))
        );
        assert_eq!(r.event_name, "betrace.violation");
        assert_eq!(r.trace_id, s.trace_id.0.to_vec());
        assert_eq!(r.span_id, s.span_id.0.to_vec());
        assert_eq!(
            attr(&r.attributes, "betrace.rule.id"),
            &any_value::Value::StringValue("r".into())
        );
        assert_eq!(
            attr(&r.attributes, "betrace.rule.name"),
            &any_value::Value::StringValue("R".into())
        );
        assert_eq!(
            attr(&r.attributes, "betrace.rule.severity"),
            &any_value::Value::StringValue("critical".into())
        );
        assert_eq!(
            attr(&r.attributes, "betrace.signal.type"),
            &any_value::Value::StringValue("R".into())
        );
        assert_eq!(
            attr(&r.attributes, "betrace.mode"),
            &any_value::Value::StringValue("live".into())
        );
        assert_eq!(
            attr(&r.attributes, "betrace.compliance.framework"),
            &any_value::Value::StringValue("SOC2".into())
        );
        assert_eq!(
            attr(&r.attributes, "betrace.compliance.control"),
            &any_value::Value::StringValue("CC7.2".into())
        );
        assert_eq!(
            attr(&r.attributes, "betrace.context.k"),
            &any_value::Value::IntValue(7)
        );
        let any_value::Value::ArrayValue(ids) = attr(&r.attributes, "betrace.violation.span_ids")
        else {
            panic!()
        };
        assert_eq!(
            ids.values[0].value,
            Some(any_value::Value::StringValue(s.span_id.to_string()))
        );
        assert!(
            r.attributes.iter().all(|kv| kv.key != "event.name"),
            "the event name is a field, not an attribute"
        );
    }

    #[test]
    fn severities_map_to_otlp_numbers() {
        use crate::rules::Severity::*;
        assert_eq!(
            [Critical, High, Medium, Low, Info].map(|s| s.otlp_number()),
            [21, 17, 13, 10, 9]
        );
    }

    #[test]
    fn violation_spans_are_children_of_the_first_trigger_span() {
        let d = detected();
        let req = violation_spans(&d);
        let sp = &req.resource_spans[0].scope_spans[0].spans[0];
        let s = &d[0].signal;
        assert_eq!(sp.name, "betrace.violation");
        assert_eq!(sp.trace_id, s.trace_id.0.to_vec());
        assert_eq!(sp.parent_span_id, s.span_id.0.to_vec());
        assert_ne!(sp.span_id, s.span_id.0.to_vec());
        assert_eq!(sp.span_id.len(), 8);
        assert_eq!(sp.start_time_unix_nano, s.time_unix_nano);
        assert_eq!(sp.end_time_unix_nano, u64::MAX / 2);
        assert_eq!(sp.kind, span::SpanKind::Internal as i32);
        let st = sp.status.as_ref().unwrap();
        assert_eq!(
            (st.code, st.message.as_str()),
            (status::StatusCode::Error as i32, "bad 7")
        );
        assert_eq!(sp.attributes, attributes(s));
        assert_eq!(
            req.resource_spans[0].resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
    }

    #[test]
    fn violation_span_ids_are_stable() {
        // Computed before the hand-written FNV-1a gave way to `fnv::FnvHasher`: a
        // violation span's id must not change between releases.
        let mut s = detected().remove(0).signal;
        s.trace_id = crate::trace::TraceId([0x11; 16]);
        s.span_id = crate::trace::SpanId([0x22; 8]);
        s.rule_id = "payment-rule".into();
        assert_eq!(
            violation_span_id(&s),
            [0xb2, 0x1a, 0x2f, 0x26, 0xc2, 0xee, 0x3f, 0xdb]
        );
    }
}
