//! Compact traces (docs/language.md, "Compact traces"): a readable YAML form for hand-written traces, used by
//! `examples:` in rule files and by tests, loaded into the same [`Trace`] OTLP data uses.

use std::collections::HashMap;

use serde::Deserialize;

use crate::lang::value::{parse_duration, Value, ValueKey};
use crate::trace::{
    parse_hex, Attributes, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId,
};

/// Where compact traces start in time: 2024-01-01T00:00:00Z, so example signals are stable.
pub const BASE_TIME_UNIX_NANO: u64 = 1_704_067_200_000_000_000;

/// One span of a compact trace, with its children.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompactSpan {
    /// Span name (required).
    pub name: String,
    /// `service.name` of its resource; inherited by children (default "test").
    #[serde(default)]
    pub service: Option<String>,
    /// Offset from the trace start (default: just after the previous sibling ends).
    #[serde(default)]
    pub start: Option<serde_json::Value>,
    /// Duration (default 1ms).
    #[serde(default)]
    pub duration: Option<serde_json::Value>,
    /// Span kind word (default internal).
    #[serde(default)]
    pub kind: Option<String>,
    /// Status word (default unset).
    #[serde(default)]
    pub status: Option<String>,
    /// Status message.
    #[serde(default)]
    pub status_message: Option<String>,
    /// Span attributes.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Extra resource attributes; inherited by children.
    #[serde(default)]
    pub resource: serde_json::Map<String, serde_json::Value>,
    /// Child spans.
    #[serde(default)]
    pub children: Vec<CompactSpan>,
    /// The trace id, as 32 hex digits (top-level spans only).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// The span id, as 16 hex digits.
    #[serde(default)]
    pub span_id: Option<String>,
}

/// A compact trace that cannot be turned into a trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("span `{span}`: {message}")]
pub struct CompactError {
    /// The span name where it went wrong.
    pub span: String,
    /// What went wrong.
    pub message: String,
}

/// Parses YAML text holding a list of compact spans into a trace.
pub fn from_yaml(text: &str, seed: u64) -> Result<Trace, String> {
    let value = super::yaml_value::parse(text).map_err(|e| e.message)?;
    let spans: Vec<CompactSpan> = serde_json::from_value(value).map_err(|e| e.to_string())?;
    to_trace(&spans, seed).map_err(|e| e.to_string())
}

/// Builds a trace from compact spans. Ids not given are derived from `seed` and each span's
/// position, so the same example always yields the same trace.
pub fn to_trace(roots: &[CompactSpan], seed: u64) -> Result<Trace, CompactError> {
    let mut trace_id = None;
    for r in roots {
        if let Some(t) = &r.trace_id {
            trace_id = Some(TraceId(parse_hex::<16>(t).ok_or_else(|| {
                err(r, format!("trace_id `{t}` is not 32 hex digits"))
            })?));
            break;
        }
    }
    let mut default_id = [0u8; 16];
    default_id[..4].copy_from_slice(&[0xbe, 0x7a, 0xce, 0x00]);
    default_id[8..].copy_from_slice(&seed.to_be_bytes());
    let mut b = Builder {
        trace: Trace {
            trace_id: trace_id.unwrap_or(TraceId(default_id)),
            ..Default::default()
        },
        next_id: 1,
        resources: HashMap::new(),
    };
    let base = Inherited {
        service: "test".into(),
        resource: Vec::new(),
        parent: None,
    };
    let mut cursor = 0;
    for r in roots {
        cursor = b.span(r, &base, cursor)?;
    }
    Ok(b.trace)
}

struct Builder {
    trace: Trace,
    next_id: u64,
    /// Each resource's index in `trace.resources`, by its attributes: one lookup a span.
    resources: HashMap<Vec<(String, ValueKey)>, usize>,
}

#[derive(Clone)]
struct Inherited {
    service: String,
    resource: Attributes,
    parent: Option<SpanId>,
}

impl Builder {
    /// Adds `s` and its children; returns where the next sibling starts by default.
    fn span(
        &mut self,
        s: &CompactSpan,
        up: &Inherited,
        default_start: u64,
    ) -> Result<u64, CompactError> {
        let start = match &s.start {
            Some(v) => duration_of(s, "start", v)?,
            None => default_start,
        };
        let duration = match &s.duration {
            Some(v) => duration_of(s, "duration", v)?,
            None => 1_000_000,
        };
        let kind = match &s.kind {
            Some(k) => SpanKind::from_word(k).ok_or_else(|| {
                err(
                    s,
                    format!(
                        "unknown kind `{k}`; use one of {}",
                        SpanKind::WORDS.join(", ")
                    ),
                )
            })?,
            None => SpanKind::Internal,
        };
        let status = match &s.status {
            Some(w) => StatusCode::from_word(w)
                .ok_or_else(|| err(s, format!("unknown status `{w}`; use ok, error or unset")))?,
            None => StatusCode::Unset,
        };
        let span_id = match &s.span_id {
            Some(h) => SpanId(
                parse_hex::<8>(h)
                    .ok_or_else(|| err(s, format!("span_id `{h}` is not 16 hex digits")))?,
            ),
            None => SpanId(self.next_id.to_be_bytes()),
        };
        self.next_id += 1;

        let service = s.service.clone().unwrap_or_else(|| up.service.clone());
        let mut resource = up.resource.clone();
        for (k, v) in attributes(s, &s.resource)? {
            resource.retain(|(key, _)| key != &k);
            resource.push((k, v));
        }
        let mut res_attrs = vec![("service.name".to_string(), Value::str(&service))];
        res_attrs.extend(
            resource
                .iter()
                .filter(|(k, _)| k != "service.name")
                .cloned(),
        );
        let res = Resource {
            attributes: res_attrs,
        };
        let key = res
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), ValueKey::of(v)))
            .collect();
        let next = self.trace.resources.len();
        let resource_idx = *self.resources.entry(key).or_insert(next);
        if resource_idx == next {
            self.trace.resources.push(res);
        }

        let abs_start = BASE_TIME_UNIX_NANO + start;
        self.trace.spans.push(Span {
            span_id,
            parent_span_id: up.parent,
            name: s.name.clone(),
            kind,
            status,
            status_message: s.status_message.clone().unwrap_or_default(),
            start_unix_nano: abs_start,
            end_unix_nano: abs_start + duration,
            attributes: attributes(s, &s.attributes)?,
            resource: resource_idx,
        });
        let down = Inherited {
            service,
            resource,
            parent: Some(span_id),
        };
        let mut cursor = start;
        for child in &s.children {
            cursor = self.span(child, &down, cursor)?;
        }
        Ok(start + duration)
    }
}

fn err(s: &CompactSpan, message: String) -> CompactError {
    CompactError {
        span: s.name.clone(),
        message,
    }
}

fn duration_of(s: &CompactSpan, field: &str, v: &serde_json::Value) -> Result<u64, CompactError> {
    let ns = match v {
        serde_json::Value::String(text) => parse_duration(text),
        serde_json::Value::Number(n) if n.as_i64() == Some(0) => Some(0),
        _ => None,
    };
    match ns {
        Some(ns) if ns >= 0 => Ok(ns as u64),
        _ => Err(err(
            s,
            format!("`{field}` must be a duration such as 120ms, not {}", v),
        )),
    }
}

fn attributes(
    s: &CompactSpan,
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<Attributes, CompactError> {
    map.iter()
        .map(|(k, v)| {
            let key = k.clone();
            let value =
                yaml_value(v).ok_or_else(|| err(s, format!("attribute `{key}` has no value")))?;
            Ok((key, value))
        })
        .collect()
}

/// YAML scalars map to OTLP int, double, bool and string; sequences to arrays.
fn yaml_value(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Array(items) => {
            Value::Array(items.iter().filter_map(yaml_value).collect())
        }
        serde_json::Value::Object(_) => Value::Opaque,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_loads_with_its_defaults() {
        let t = from_yaml(
            r#"
- name: checkout
  service: shop
  start: 0ms
  duration: 120ms
  kind: server
  status: ok
  attributes: { cart.id: 123, ratio: 0.5, vip: true, tags: [a, b] }
  resource: { service.version: "1.4.2" }
  children:
    - name: inventory.reserve
    - name: payment.charge
      service: payments
"#,
            7,
        )
        .unwrap();
        assert_eq!(t.spans.len(), 3);
        let root = &t.spans[0];
        assert_eq!(root.kind, SpanKind::Server);
        assert_eq!(root.duration_nanos(), 120_000_000);
        assert_eq!(root.attributes[0], ("cart.id".to_string(), Value::Int(123)));
        assert_eq!(
            root.attributes[3].1,
            Value::Array(vec![Value::str("a"), Value::str("b")])
        );
        let (reserve, charge) = (&t.spans[1], &t.spans[2]);
        assert_eq!(reserve.parent_span_id, Some(root.span_id));
        assert_eq!(t.resource_of(reserve).service_name(), "shop");
        assert_eq!(reserve.status, StatusCode::Unset);
        assert_eq!(reserve.duration_nanos(), 1_000_000);
        assert_eq!(
            charge.start_unix_nano, reserve.end_unix_nano,
            "a sibling starts just after the previous one"
        );
        assert_eq!(t.resource_of(charge).service_name(), "payments");
        assert_eq!(
            lookup_res(&t, charge, "service.version"),
            Some(Value::str("1.4.2")),
            "resource attributes are inherited"
        );
        assert_eq!(
            from_yaml("- name: a", 7).unwrap().trace_id,
            t.trace_id,
            "ids derive from the seed"
        );
        assert_ne!(from_yaml("- name: a", 8).unwrap().trace_id, t.trace_id);
    }

    fn lookup_res(t: &Trace, s: &Span, k: &str) -> Option<Value> {
        crate::trace::lookup(&t.resource_of(s).attributes, k).cloned()
    }

    #[test]
    fn bad_fields_are_errors() {
        assert!(from_yaml("- name: a\n  duration: 5", 0)
            .unwrap_err()
            .contains("duration"));
        assert!(from_yaml("- name: a\n  kind: weird", 0)
            .unwrap_err()
            .contains("unknown kind"));
        assert!(from_yaml("- name: a\n  colour: red", 0)
            .unwrap_err()
            .contains("unknown field"));
    }
}
