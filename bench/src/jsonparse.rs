//! Which JSON parser for replay's OTLP/JSON lines: the same serde types — the OTLP/JSON
//! shape the collector's file exporter writes, strings borrowed where they can be — read by
//! serde_json (what the engine uses), sonic-rs and simd-json, line by line, with nothing
//! else done. The stage that wins by enough to matter would replace serde_json in
//! `otlp::json`.

use std::borrow::Cow;

use serde::Deserialize;

/// `TracesData`, down to every attribute value.
#[derive(Deserialize)]
struct Traces<'a> {
    #[serde(default, borrow, rename = "resourceSpans")]
    resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Deserialize)]
struct ResourceSpans<'a> {
    #[serde(default, borrow)]
    resource: Option<Resource<'a>>,
    #[serde(default, borrow, rename = "scopeSpans")]
    scope_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Deserialize)]
struct ScopeSpans<'a> {
    #[serde(default, borrow)]
    spans: Vec<Span<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Span<'a> {
    #[serde(default, borrow)]
    trace_id: Cow<'a, str>,
    #[serde(default, borrow)]
    span_id: Cow<'a, str>,
    #[serde(default, borrow)]
    parent_span_id: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    kind: u8,
    #[serde(default, borrow)]
    start_time_unix_nano: Cow<'a, str>,
    #[serde(default, borrow)]
    end_time_unix_nano: Cow<'a, str>,
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default, borrow)]
    status: Status<'a>,
}

#[derive(Deserialize, Default)]
struct Status<'a> {
    #[serde(default, borrow)]
    message: Cow<'a, str>,
    #[serde(default)]
    code: u8,
}

#[derive(Deserialize)]
struct KeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    value: AnyValue<'a>,
}

/// An attribute's value: every kind W1 holds (64-bit integers as strings, as OTLP/JSON
/// writes them).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue<'a> {
    #[serde(default, borrow)]
    string_value: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    int_value: Option<Cow<'a, str>>,
    #[serde(default)]
    double_value: Option<f64>,
    #[serde(default)]
    bool_value: Option<bool>,
}

/// What a line holds, touching every field read: (spans, attribute values, bytes of ids,
/// names and times) — the same for every parser, or one of them misread.
fn tally(t: &Traces<'_>) -> (usize, usize, usize) {
    let (mut spans, mut values, mut bytes) = (0, 0, 0);
    for r in &t.resource_spans {
        values += r.resource.as_ref().map_or(0, |r| r.attributes.len());
        for s in r.scope_spans.iter().flat_map(|s| &s.spans) {
            spans += 1;
            values += s.attributes.len();
            bytes += s.status.message.len() + usize::from(s.status.code);
            bytes += s.trace_id.len() + s.span_id.len() + s.parent_span_id.len() + s.name.len();
            bytes +=
                s.start_time_unix_nano.len() + s.end_time_unix_nano.len() + usize::from(s.kind);
            bytes += s.attributes.iter().map(|a| a.key.len()).sum::<usize>();
            for v in s.attributes.iter().map(|a| &a.value) {
                bytes += v.string_value.as_ref().map_or(0, |s| s.len());
                bytes += v.int_value.as_ref().map_or(0, |s| s.len());
                bytes += usize::from(v.double_value.is_some_and(|f| f > 0.0));
                bytes += usize::from(v.bool_value.unwrap_or(false));
            }
        }
    }
    (spans, values, bytes)
}

/// Parses every line of `bytes` with `parser`; returns (lines, spans, attribute values,
/// bytes of the fields read).
pub fn parse(parser: &str, bytes: &[u8]) -> Result<[usize; 4], Box<dyn std::error::Error>> {
    let mut total = [0usize; 4];
    let mut scratch = Vec::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let (spans, values, read) = match parser {
            "serde_json" => tally(&serde_json::from_slice::<Traces<'_>>(line)?),
            "sonic-rs" => tally(&sonic_rs::from_slice::<Traces<'_>>(line)?),
            "simd-json" => {
                // simd-json parses in place: it needs a mutable copy of the line.
                scratch.clear();
                scratch.extend_from_slice(line);
                tally(&simd_json::serde::from_slice::<Traces<'_>>(&mut scratch)?)
            }
            other => return Err(format!("unknown parser {other}").into()),
        };
        total[0] += 1;
        total[1] += spans;
        total[2] += values;
        total[3] += read;
    }
    Ok(total)
}
