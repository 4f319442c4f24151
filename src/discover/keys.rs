//! Which attribute keys to mine: read off a sample of the input before mining, since the
//! engine keeps only the keys it is told to (`crate::trace::projected`).

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::otlp::wire::{fields, utf8, WireError};
use crate::replay::input::{self, Limits, Record};
use crate::trace::projected::Projection;

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

/// The keys on the most spans of a sample of `sources` (records from the start of each
/// input), most frequent first, at most [`MAX_KEYS`] — leaving out those with one value
/// throughout the sample or a new value on every span; and how many spans were sampled.
/// Records that do not decode are left to the mining pass to report.
pub fn sample(sources: &[String], limits: Limits) -> (Vec<String>, usize) {
    let mut counts: HashMap<String, Seen> = HashMap::new();
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
                            json_keys(&body, &mut counts)
                        } else {
                            protobuf_keys(&body, &mut counts)
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
    (keys.into_iter().map(|k| k.0).collect(), spans)
}

/// Counts the span attribute keys of an OTLP protobuf request, read in place (a value
/// told apart by its encoded bytes); returns its spans. A request that is not valid
/// protobuf, or has a key that is not UTF-8, counts nothing.
fn protobuf_keys(body: &[u8], counts: &mut HashMap<String, Seen>) -> usize {
    let mut seen: Vec<(&str, &[u8])> = Vec::new();
    match request_keys(body, &mut seen) {
        Ok(n) => {
            for (k, v) in seen {
                match counts.get_mut(k) {
                    Some(s) => s.add(v),
                    None => counts.entry(k.to_string()).or_default().add(v),
                }
            }
            n
        }
        Err(_) => 0,
    }
}

/// The spans of an `ExportTraceServiceRequest` and each span attribute as (key, encoded
/// value).
fn request_keys<'a>(
    body: &'a [u8],
    seen: &mut Vec<(&'a str, &'a [u8])>,
) -> Result<usize, WireError> {
    // The messages' fields: request 1 resource_spans; ResourceSpans 2 scope_spans;
    // ScopeSpans 2 spans; Span 9 attributes; KeyValue 1 key, 2 value.
    let mut n = 0;
    for f in fields(body) {
        let (1, rs) = f? else { continue };
        for f in fields(rs.bytes("resource_spans")?) {
            let (2, ss) = f? else { continue };
            for f in fields(ss.bytes("scope_spans")?) {
                let (2, span) = f? else { continue };
                n += 1;
                for f in fields(span.bytes("span")?) {
                    let (9, kv) = f? else { continue };
                    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
                    for f in fields(kv.bytes("attribute")?) {
                        match f? {
                            (1, k) => key = k.bytes("key")?,
                            (2, v) => value = v.bytes("value")?,
                            _ => {}
                        }
                    }
                    seen.push((utf8(key, "key")?, value));
                }
            }
        }
    }
    Ok(n)
}

/// Counts the span attribute keys of an OTLP JSON request; returns its spans.
fn json_keys(body: &[u8], counts: &mut HashMap<String, Seen>) -> usize {
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
                for kv in field(s, "attributes", "attributes") {
                    if let Some(k) = kv.get("key").and_then(|k| k.as_str()) {
                        let v = kv.get("value").map(|v| v.to_string()).unwrap_or_default();
                        counts.entry(k.to_string()).or_default().add(v.as_bytes());
                    }
                }
            }
        }
    }
    n
}
