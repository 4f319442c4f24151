//! Traces, in two forms, one per reader.
//!
//! * [`Trace`] (this module) is the plain form: every span with all its attributes, each
//!   value owned. Rule examples (compact YAML, [`crate::rules::compact`]) are read into
//!   it, and the reference evaluator ([`crate::eval::reference`]) and `explain` read it.
//! * [`projected::Trace`] is what the engine holds and the VM judges: only what the loaded
//!   rules read, in a few allocations per trace. OTLP from the collector and replay's
//!   files are decoded straight into it; [`projected::Trace::project`] turns a plain trace
//!   into it.
//!
//! Both hold data only: the VM builds its own index over a projected trace
//! (`eval::vm::View`).

pub mod projected;

use std::fmt;

pub use crate::lang::span::{SpanKind, StatusCode};
use crate::lang::value::Value;

/// A 16-byte trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Reads lowercase or uppercase hex into exactly `N` bytes.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Attributes as key/value pairs in arrival order; lookups are linear, which beats hashing
/// for the handful of attributes a span carries.
pub type Attributes = Vec<(String, Value)>;

/// Finds an attribute by key.
pub fn lookup<'a>(attrs: &'a Attributes, key: &str) -> Option<&'a Value> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The resource a span came from (service, host, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resource {
    /// Resource attributes, `service.name` among them.
    pub attributes: Attributes,
}

impl Resource {
    /// The resource's `service.name`, or "" when it has none.
    pub fn service_name(&self) -> &str {
        lookup(&self.attributes, "service.name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// One span of a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Span {
    /// The span's id.
    pub span_id: SpanId,
    /// Its parent's id, `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// The span name.
    pub name: String,
    /// The span kind.
    pub kind: SpanKind,
    /// The status code.
    pub status: StatusCode,
    /// The status message.
    pub status_message: String,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    /// Span attributes.
    pub attributes: Attributes,
    /// Index into [`Trace::resources`].
    pub resource: usize,
}

impl Span {
    /// End minus start, in nanoseconds (0 when the end is before the start).
    pub fn duration_nanos(&self) -> i64 {
        self.end_unix_nano
            .saturating_sub(self.start_unix_nano)
            .min(i64::MAX as u64) as i64
    }
}

/// A whole trace in plain form: its spans and the resources they point at. What examples
/// and the reference evaluator read; the engine holds a [`projected::Trace`] instead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// The trace id.
    pub trace_id: TraceId,
    /// Spans, in arrival order.
    pub spans: Vec<Span>,
    /// Resources, shared between spans by index.
    pub resources: Vec<Resource>,
}

impl Trace {
    /// The resource of span `i`.
    pub fn resource_of(&self, span: &Span) -> &Resource {
        static EMPTY: Resource = Resource {
            attributes: Vec::new(),
        };
        self.resources.get(span.resource).unwrap_or(&EMPTY)
    }

    /// The root span: one without a parent (the earliest if several), else the earliest span.
    pub fn root(&self) -> Option<usize> {
        root_of(self.spans.len(), |i| {
            let s = &self.spans[i];
            (s.parent_span_id.is_none(), s.start_unix_nano, s.span_id)
        })
    }

    /// Whether the trace's spans form one whole tree (docs/language.md, "Complete
    /// traces"; [`is_one_tree`]).
    pub fn is_complete(&self) -> bool {
        is_one_tree(self.spans.len(), |i| {
            (self.spans[i].span_id, self.spans[i].parent_span_id)
        })
    }

    /// `trace:duration`: the latest end minus the earliest start.
    pub fn duration_nanos(&self) -> i64 {
        extent(
            self.spans
                .iter()
                .map(|s| (s.start_unix_nano, s.end_unix_nano)),
        )
        .1
    }

    /// The earliest span start, used by replay's `--from`/`--to`.
    pub fn start_unix_nano(&self) -> u64 {
        extent(
            self.spans
                .iter()
                .map(|s| (s.start_unix_nano, s.end_unix_nano)),
        )
        .0
    }
}

/// Whether `n` spans form one whole tree: exactly one root (a span without a parent span
/// id), and every other span reaches it by parent links — each parent span id names a span
/// of the trace, and no chain of parents runs in a circle (a span that is its own parent,
/// two spans parenting each other). `link(i)` is span `i`'s (id, parent id). Linear time,
/// no recursion: each span is walked up from once, and the chain stops at a span already
/// known to reach the root.
pub fn is_one_tree(n: usize, link: impl Fn(usize) -> (SpanId, Option<SpanId>)) -> bool {
    if (0..n).filter(|&i| link(i).1.is_none()).count() != 1 {
        return false;
    }
    // The index of the span a parent id names. Small traces search; big ones hash.
    let by_id: Option<std::collections::HashMap<SpanId, usize, foldhash::fast::RandomState>> =
        (n > 32).then(|| {
            let mut m = std::collections::HashMap::with_capacity_and_hasher(n, Default::default());
            for i in 0..n {
                m.entry(link(i).0).or_insert(i);
            }
            m
        });
    let index_of = |id: SpanId| match &by_id {
        Some(m) => m.get(&id).copied(),
        None => (0..n).find(|&i| link(i).0 == id),
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unknown,
        OnPath,
        ReachesRoot,
    }
    let mut mark = vec![Mark::Unknown; n];
    let mut path = Vec::new();
    for start in 0..n {
        let mut at = start;
        loop {
            match mark[at] {
                Mark::ReachesRoot => break,
                // Back on the chain being walked: a circle that reaches no root.
                Mark::OnPath => return false,
                Mark::Unknown => {}
            }
            let Some(parent) = link(at).1 else {
                mark[at] = Mark::ReachesRoot;
                break;
            };
            mark[at] = Mark::OnPath;
            path.push(at);
            match index_of(parent) {
                Some(p) => at = p,
                None => return false,
            }
        }
        for i in path.drain(..) {
            mark[i] = Mark::ReachesRoot;
        }
    }
    true
}

/// The root among `n` spans, each given as (has no parent, start, span id): a parentless
/// span (the earliest if several, ties by id), else the earliest span. One rule for the
/// plain and the projected trace.
pub fn root_of(n: usize, span: impl Fn(usize) -> (bool, u64, SpanId)) -> Option<usize> {
    let earliest = |it: &mut dyn Iterator<Item = usize>| {
        it.min_by_key(|&i| {
            let (_, start, id) = span(i);
            (start, id)
        })
    };
    earliest(&mut (0..n).filter(|&i| span(i).0)).or_else(|| earliest(&mut (0..n)))
}

/// The earliest start, and the latest end minus it (`trace:duration`; 0 when empty), of
/// spans given as (start, end).
pub fn extent(times: impl Iterator<Item = (u64, u64)>) -> (u64, i64) {
    let (mut start, mut end, mut any) = (u64::MAX, 0u64, false);
    for (s, e) in times {
        (start, end, any) = (start.min(s), end.max(e), true);
    }
    if !any {
        return (0, 0);
    }
    (start, end.saturating_sub(start).min(i64::MAX as u64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let id = TraceId(parse_hex::<16>("5f9c2a1b3e4d67895f9c2a1b3e4d6789").unwrap());
        assert_eq!(id.to_string(), "5f9c2a1b3e4d67895f9c2a1b3e4d6789");
        assert!(parse_hex::<8>("zz").is_none());
        assert!(parse_hex::<8>("a1b2c3d4e5f6071").is_none());
    }

    #[test]
    fn root_is_the_parentless_span_else_the_earliest() {
        let mut t = Trace::default();
        t.spans.push(Span {
            span_id: SpanId([2; 8]),
            parent_span_id: Some(SpanId([9; 8])),
            start_unix_nano: 5,
            ..Default::default()
        });
        t.spans.push(Span {
            span_id: SpanId([1; 8]),
            parent_span_id: Some(SpanId([9; 8])),
            start_unix_nano: 7,
            ..Default::default()
        });
        assert_eq!(t.root(), Some(0));
        t.spans.push(Span {
            span_id: SpanId([3; 8]),
            parent_span_id: None,
            start_unix_nano: 9,
            ..Default::default()
        });
        assert_eq!(t.root(), Some(2));
    }

    /// A trace of spans with ids 1..=n, `parents[i]` the parent of span i+1 (0: a root).
    pub(crate) fn linked(parents: &[u8]) -> Trace {
        let mut t = Trace::default();
        for (i, &p) in parents.iter().enumerate() {
            t.spans.push(Span {
                span_id: SpanId([i as u8 + 1; 8]),
                parent_span_id: (p != 0).then_some(SpanId([p; 8])),
                ..Default::default()
            });
        }
        t
    }

    /// The traces `is_complete` must tell apart, as parent lists, with the answer.
    pub(crate) const SHAPES: &[(&[u8], bool, &str)] = &[
        (&[0, 1, 2, 2], true, "one tree"),
        (
            &[0, 1, 3, 2],
            false,
            "two spans parenting each other beside the root",
        ),
        (
            &[0, 1, 3],
            false,
            "a span that is its own parent beside the root",
        ),
        (&[2, 1], false, "no root, a circle"),
        (&[1], false, "one span, its own parent"),
        (&[0, 0], false, "two roots"),
        (&[0, 9], false, "a parent that is not in the trace"),
        (&[0], true, "a root alone"),
    ];

    #[test]
    fn complete_means_every_span_reaches_the_one_root() {
        for (parents, want, what) in SHAPES {
            assert_eq!(linked(parents).is_complete(), *want, "{what}");
        }
        // Big traces take the hashed path: a long chain, then a circle hung beside it.
        let mut chain: Vec<u8> = vec![0];
        chain.extend(1..=60u8);
        assert!(linked(&chain).is_complete());
        chain.extend([63, 62]);
        assert!(!linked(&chain).is_complete());
    }
}
