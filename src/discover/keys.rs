//! Which attribute keys to mine: read off a sample of the input before mining, since the
//! engine keeps only the keys it is told to (`crate::trace::projected`).

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::otlp::wire::{fields, utf8, Field, WireError};
use crate::replay::input::{self, Limits, Record};
use crate::trace::projected::Projection;

use super::cond::{Lit, Tallies};

/// Most keys mined: the ones on the most sampled spans.
pub const MAX_KEYS: usize = 64;
/// Records sampled from each input at most…
const PER_INPUT: usize = 64;
/// …and spans in all.
const MAX_SPANS: usize = 50_000;
/// Distinct values counted per key in the sample.
const DISTINCT_CAP: usize = 4_096;

/// What the sample saw of one key.
#[derive(Default)]
struct Seen {
    spans: u64,
    values: HashSet<u64>,
}

impl Seen {
    fn add(&mut self, value: &[u8]) {
        self.spans += 1;
        if self.values.len() < DISTINCT_CAP {
            let mut h = fnv::FnvHasher::default();
            h.write(value);
            self.values.insert(h.finish());
        }
    }

    /// Whether agreeing on it can say anything: it is neither one value everywhere (a
    /// deployment constant) nor a new value on every span (a span's own id), once seen
    /// often enough to tell.
    fn useful(&self) -> bool {
        let distinct = self.values.len() as u64;
        self.spans < 100 || (distinct > 1 && distinct < self.spans)
    }
}

/// What the sample of the input says: the keys to mine, how many spans it read, and the
/// values seen per (span name, key) — from which conditions are chosen
/// ([`super::cond::choose`]).
#[derive(Debug, Default)]
pub struct Sample {
    /// The keys to mine, most frequent first.
    pub keys: Vec<String>,
    /// Spans sampled.
    pub spans: usize,
    /// The values seen per (span name, key).
    pub values: Tallies,
}

/// The keys on the most spans of a sample of `sources` (records from the start of each
/// input), most frequent first, at most [`MAX_KEYS`] — leaving out those with one value
/// throughout the sample or a new value on every span; how many spans were sampled; and
/// the values seen per (span name, key). Records that do not decode are left to the mining
/// pass to report.
pub fn sample(sources: &[String], limits: Limits) -> Sample {
    let mut counts: HashMap<String, Seen> = HashMap::new();
    let mut tallies = Tallies::default();
    let mut spans = 0usize;
    let none = Arc::new(Projection::new(Vec::<String>::new(), false));
    for source in sources {
        if spans >= MAX_SPANS {
            break;
        }
        let mut records = 0usize;
        input::read_deferred(
            source,
            source,
            Arc::new(AtomicU64::new(0)),
            limits,
            &none,
            true,
            &mut |r: Record| {
                if let Record::Pending(p) = r {
                    let (body, json, _, _) = p.into_parts();
                    if let Ok(body) = body {
                        spans += if json {
                            json_keys(&body, &mut counts, &mut tallies)
                        } else {
                            protobuf_keys(&body, &mut counts, &mut tallies)
                        };
                    }
                    records += 1;
                }
                records < PER_INPUT && spans < MAX_SPANS
            },
        );
    }
    let mut keys: Vec<(String, u64)> = counts
        .into_iter()
        .filter(|(_, s)| s.useful())
        .map(|(k, s)| (k, s.spans))
        .collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    keys.truncate(MAX_KEYS);
    Sample {
        keys: keys.into_iter().map(|k| k.0).collect(),
        spans,
        values: tallies,
    }
}

/// Counts the span attribute keys of an OTLP protobuf request, read in place (a value
/// told apart by its encoded bytes); returns its spans. A request that is not valid
/// protobuf, or has a key that is not UTF-8, counts nothing.
fn protobuf_keys(body: &[u8], counts: &mut HashMap<String, Seen>, tallies: &mut Tallies) -> usize {
    let mut seen: Vec<(&str, &str, &[u8])> = Vec::new();
    match request_keys(body, &mut seen) {
        Ok(n) => {
            for (name, k, v) in seen {
                match counts.get_mut(k) {
                    Some(s) => s.add(v),
                    None => counts.entry(k.to_string()).or_default().add(v),
                }
                if let Some(lit) = any_value(v) {
                    tallies.add(name, k, lit);
                }
            }
            n
        }
        Err(_) => 0,
    }
}

/// An encoded `AnyValue` as a literal a condition can compare with: a string, an integer
/// or a float; `None` for anything else or bytes that do not decode.
fn any_value(v: &[u8]) -> Option<Lit> {
    // AnyValue: 1 string_value, 2 bool_value, 3 int_value, 4 double_value.
    let mut out = None;
    for f in fields(v) {
        out = match f.ok()? {
            (1, Field::Bytes(b)) => Some(Lit::Str(std::str::from_utf8(b).ok()?.to_string())),
            (3, Field::Varint(i)) => Some(Lit::Int(i as i64)),
            (4, Field::Fixed64(x)) => Some(Lit::Float(f64::from_bits(x))),
            _ => None,
        };
    }
    out
}

/// The spans of an `ExportTraceServiceRequest` and each span attribute as (span name, key,
/// encoded value).
fn request_keys<'a>(
    body: &'a [u8],
    seen: &mut Vec<(&'a str, &'a str, &'a [u8])>,
) -> Result<usize, WireError> {
    // The messages' fields: request 1 resource_spans; ResourceSpans 2 scope_spans;
    // ScopeSpans 2 spans; Span 5 name, 9 attributes; KeyValue 1 key, 2 value.
    let mut n = 0;
    for f in fields(body) {
        let (1, rs) = f? else { continue };
        for f in fields(rs.bytes("resource_spans")?) {
            let (2, ss) = f? else { continue };
            for f in fields(ss.bytes("scope_spans")?) {
                let (2, span) = f? else { continue };
                n += 1;
                let first = seen.len();
                let mut name = "";
                for f in fields(span.bytes("span")?) {
                    let kv = match f? {
                        (5, n) => {
                            name = utf8(n.bytes("name")?, "name")?;
                            continue;
                        }
                        (9, kv) => kv,
                        _ => continue,
                    };
                    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
                    for f in fields(kv.bytes("attribute")?) {
                        match f? {
                            (1, k) => key = k.bytes("key")?,
                            (2, v) => value = v.bytes("value")?,
                            _ => {}
                        }
                    }
                    seen.push(("", utf8(key, "key")?, value));
                }
                for s in &mut seen[first..] {
                    s.0 = name;
                }
            }
        }
    }
    Ok(n)
}

/// Counts the span attribute keys of an OTLP JSON request; returns its spans.
fn json_keys(body: &[u8], counts: &mut HashMap<String, Seen>, tallies: &mut Tallies) -> usize {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    // A field's array, in the exporter's camelCase or in snake_case; empty when absent.
    fn field<'v>(v: &'v serde_json::Value, camel: &str, snake: &str) -> &'v [serde_json::Value] {
        v.get(camel)
            .or_else(|| v.get(snake))
            .and_then(|x| x.as_array())
            .map_or(&[], Vec::as_slice)
    }
    let mut n = 0;
    for rs in field(&v, "resourceSpans", "resource_spans") {
        for ss in field(rs, "scopeSpans", "scope_spans") {
            for s in field(ss, "spans", "spans") {
                n += 1;
                let name = s.get("name").and_then(|n| n.as_str()).unwrap_or_default();
                for kv in field(s, "attributes", "attributes") {
                    if let Some(k) = kv.get("key").and_then(|k| k.as_str()) {
                        let value = kv.get("value");
                        let v = value.map(|v| v.to_string()).unwrap_or_default();
                        counts.entry(k.to_string()).or_default().add(v.as_bytes());
                        if let Some(lit) = value.and_then(json_value) {
                            tallies.add(name, k, lit);
                        }
                    }
                }
            }
        }
    }
    n
}

/// An OTLP/JSON `AnyValue` as a literal a condition can compare with (`intValue` may be a
/// string or a number, `doubleValue` a number); `None` for anything else.
fn json_value(v: &serde_json::Value) -> Option<Lit> {
    let get = |camel: &str, snake: &str| v.get(camel).or_else(|| v.get(snake));
    if let Some(s) = get("stringValue", "string_value") {
        return s.as_str().map(|s| Lit::Str(s.to_string()));
    }
    if let Some(i) = get("intValue", "int_value") {
        return match i {
            serde_json::Value::String(s) => s.parse().ok().map(Lit::Int),
            n => n.as_i64().map(Lit::Int),
        };
    }
    get("doubleValue", "double_value")
        .and_then(serde_json::Value::as_f64)
        .map(Lit::Float)
}
