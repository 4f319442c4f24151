//! A trace as the engine holds it: only what the loaded rules can read, in a few
//! allocations per trace instead of a dozen per span.
//!
//! A rule set knows every attribute key its conditions, messages and context read — its
//! [`Projection`]. Decoding keeps, of each span, its ids, times, name, kind, status, the
//! status message when a rule reads `span:statusMessage`, and the attributes whose key is in
//! the projection, keyed by a small [`KeyId`]; everything else is skipped without being
//! copied. Names and string values live in one text arena per trace, spans and attributes
//! in one vector each, so that dropping a judged trace frees a handful of blocks.
//! Resources are kept whole (a signal carries its trigger span's resource) and shared by
//! every span and trace fragment of a batch.
//!
//! The plain [`crate::trace::Trace`] stays what examples, the reference evaluator and
//! `explain` read; [`Trace::project`] turns one into this form, and the property tests check
//! that the VM judges the projected form exactly as the reference judges the plain one.
//!
//! A rule reload (docs/language.md, "When a trace is judged"): spans received after the
//! reload carry what the new rules read. A trace held across the reload is re-keyed to the
//! newer projection when its next fragment arrives or when it is judged: attributes that
//! only the new rules read are there for the spans received after the reload.

pub mod packed;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::lang::value::{Value, ValueRef};
use crate::trace::{self, Resource, SpanId, SpanKind, StatusCode, TraceId};

/// An attribute key a rule set reads, as an index into its [`Projection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

/// What a rule set can read of a span: attribute keys, and whether the status message.
#[derive(Debug)]
pub struct Projection {
    keys: Vec<Box<str>>,
    /// foldhash: a lookup per attribute of every span decoded; seeded per process.
    /// By the key's bytes, so that a decoder looks a key up without checking it is UTF-8
    /// first (one that is not matches no key).
    index: HashMap<Box<[u8]>, KeyId, foldhash::fast::RandomState>,
    status_message: bool,
    generation: u64,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

impl Projection {
    /// A projection keeping these attribute keys (duplicates are merged) and, when
    /// `status_message`, the status message.
    pub fn new<I, S>(keys: I, status_message: bool) -> Projection
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut p = Projection {
            keys: Vec::new(),
            index: HashMap::default(),
            status_message,
            generation: GENERATION.fetch_add(1, Relaxed),
        };
        for k in keys {
            let k = k.as_ref();
            if !p.index.contains_key(k.as_bytes()) {
                let id = KeyId(p.keys.len() as u32);
                p.keys.push(k.into());
                p.index.insert(k.as_bytes().into(), id);
            }
        }
        p
    }

    /// The id of a key, if rules read it.
    #[inline]
    pub fn key(&self, key: &str) -> Option<KeyId> {
        if self.keys.is_empty() {
            return None;
        }
        self.key_bytes(key.as_bytes())
    }

    /// The id of a key given as bytes, if rules read it (bytes that are not UTF-8 match
    /// none).
    #[inline]
    pub fn key_bytes(&self, key: &[u8]) -> Option<KeyId> {
        if self.keys.is_empty() {
            return None;
        }
        self.index.get(key).copied()
    }

    /// The text of a key.
    pub fn key_name(&self, id: KeyId) -> &str {
        &self.keys[id.0 as usize]
    }

    /// How many keys rules read.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether rules read no attribute at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a rule reads `span:statusMessage`.
    pub fn status_message(&self) -> bool {
        self.status_message
    }

    /// Whether `self` was made after `other` (a reload's projection is newer).
    pub fn is_newer_than(&self, other: &Projection) -> bool {
        self.generation > other.generation
    }
}

/// Most bytes of one trace's text arena (its offsets are 32-bit, and `len == u32::MAX`
/// marks a string kept beside it); a longer text goes to `Trace::overflow`, one allocation
/// a string. Tiny in tests, so that they reach the overflow.
#[cfg(not(test))]
const MAX_TEXT: usize = u32::MAX as usize - 1;
#[cfg(test)]
const MAX_TEXT: usize = 64;

/// A string in a trace's text arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Text {
    at: u32,
    len: u32,
}

/// A kept attribute value; strings point into the trace's arena.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(Text),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Arrays and opaque values: rare, kept as they are.
    Other(Box<Value>),
}

#[derive(Debug, Clone, PartialEq)]
struct Attr {
    key: KeyId,
    value: Val,
}

/// One span: 64 bytes, plus its kept attributes and its text in the trace's arenas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// The span's id.
    pub span_id: SpanId,
    /// Its parent's id, `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// The span kind.
    pub kind: SpanKind,
    /// The status code.
    pub status: StatusCode,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    name: Text,
    status_message: Text,
    attrs_at: u32,
    attrs_len: u32,
    resource: u32,
}

impl Span {
    /// The index of its resource in [`Trace::resources`] (`u32::MAX`: none).
    pub fn resource_index(&self) -> u32 {
        self.resource
    }

    /// End minus start, in nanoseconds (0 when the end is before the start).
    pub fn duration_nanos(&self) -> i64 {
        self.end_unix_nano
            .saturating_sub(self.start_unix_nano)
            .min(i64::MAX as u64) as i64
    }
}

/// A whole trace (or a fragment of one) in projected form: what the engine holds and the
/// VM judges. Examples and the reference evaluator read the plain [`crate::trace::Trace`].
#[derive(Debug, Clone)]
pub struct Trace {
    /// The trace id.
    pub trace_id: TraceId,
    /// Spans, in arrival order.
    pub spans: Vec<Span>,
    /// The host's inputs that brought spans of this trace, one bit each (feed `n` is bit
    /// `n`): a processor listed in several pipelines shares one engine, and a trace's
    /// violation span goes down every pipeline that carried part of it.
    pub feeds: u64,
    attrs: Vec<Attr>,
    resources: Vec<Arc<Resource>>,
    text: String,
    /// Strings that did not fit the arena's 32-bit offsets (a hostile 4 GiB of text).
    overflow: Vec<Box<str>>,
    /// Bytes allocated beside the arenas, one block each: strings in `overflow` and
    /// `Val::Other` values ([`Trace::heap_bytes`] counts them without a walk).
    boxed: usize,
    projection: Arc<Projection>,
}

impl PartialEq for Trace {
    /// The same trace: ids, times, names, kept attributes and resources alike, whatever
    /// the arenas' layout.
    fn eq(&self, other: &Trace) -> bool {
        self.trace_id == other.trace_id
            && self.spans.len() == other.spans.len()
            && self.spans.iter().zip(&other.spans).all(|(a, b)| {
                (a.span_id, a.parent_span_id, a.kind, a.status)
                    == (b.span_id, b.parent_span_id, b.kind, b.status)
                    && (a.start_unix_nano, a.end_unix_nano) == (b.start_unix_nano, b.end_unix_nano)
                    && self.name(a) == other.name(b)
                    && self.status_message(a) == other.status_message(b)
                    && self.attrs(a).eq(other.attrs(b))
                    && self.resource_of(a) == other.resource_of(b)
            })
    }
}

/// A span as a decoder sees it, with borrowed strings; [`Trace::push`] keeps what the
/// projection asks for.
#[derive(Debug, Clone, Copy)]
pub struct SpanIn<'a> {
    /// The span's id.
    pub span_id: SpanId,
    /// Its parent's id.
    pub parent_span_id: Option<SpanId>,
    /// The span name.
    pub name: &'a str,
    /// The span kind.
    pub kind: SpanKind,
    /// The status code.
    pub status: StatusCode,
    /// The status message.
    pub status_message: &'a str,
    /// Start (ns).
    pub start_unix_nano: u64,
    /// End (ns).
    pub end_unix_nano: u64,
}

/// How many of a trace's latest resources a fragment's resources are matched against.
const SHARED_RESOURCES: usize = 64;

/// An empty resource, for spans whose resource is missing.
static NO_RESOURCE: Resource = Resource {
    attributes: Vec::new(),
};

impl Trace {
    /// An empty trace (a fragment to fill) decoded for `projection`.
    pub fn new(trace_id: TraceId, projection: Arc<Projection>) -> Trace {
        Trace {
            trace_id,
            spans: Vec::new(),
            feeds: 0,
            attrs: Vec::new(),
            resources: Vec::new(),
            text: String::new(),
            overflow: Vec::new(),
            boxed: 0,
            projection,
        }
    }

    /// The projection this trace was decoded for.
    pub fn projection(&self) -> &Arc<Projection> {
        &self.projection
    }

    /// Projects a plain trace: keeps what `projection` reads.
    pub fn project(full: &trace::Trace, projection: &Arc<Projection>) -> Trace {
        let mut t = Trace::new(full.trace_id, projection.clone());
        let resources: Vec<u32> = full
            .resources
            .iter()
            .map(|r| t.add_resource(Arc::new(r.clone())))
            .collect();
        for s in &full.spans {
            let resource = resources.get(s.resource).copied().unwrap_or(u32::MAX);
            t.push(
                resource,
                SpanIn {
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                    name: &s.name,
                    kind: s.kind,
                    status: s.status,
                    status_message: &s.status_message,
                    start_unix_nano: s.start_unix_nano,
                    end_unix_nano: s.end_unix_nano,
                },
                s.attributes
                    .iter()
                    .filter_map(|(k, v)| Some((projection.key(k)?, ValueRef::from(v)))),
            );
        }
        t
    }

    /// Adds a resource for spans to point at; returns its index.
    pub fn add_resource(&mut self, resource: Arc<Resource>) -> u32 {
        self.resources.push(resource);
        (self.resources.len() - 1) as u32
    }

    /// Appends a span with its kept attributes (keys of this trace's projection).
    pub fn push<'v>(
        &mut self,
        resource: u32,
        span: SpanIn<'_>,
        attrs: impl IntoIterator<Item = (KeyId, ValueRef<'v>)>,
    ) {
        let name = self.intern(span.name);
        let status_message = if self.projection.status_message {
            self.intern(span.status_message)
        } else {
            Text::default()
        };
        let attrs_at = self.attrs.len();
        for (key, value) in attrs {
            let value = self.keep(value);
            self.attrs.push(Attr { key, value });
        }
        self.spans.push(Span {
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            kind: span.kind,
            status: span.status,
            start_unix_nano: span.start_unix_nano,
            end_unix_nano: span.end_unix_nano,
            name,
            status_message,
            attrs_at: attrs_at as u32,
            attrs_len: (self.attrs.len() - attrs_at) as u32,
            resource,
        });
    }

    fn keep(&mut self, v: ValueRef<'_>) -> Val {
        match v {
            ValueRef::Str(s) => Val::Str(self.intern(s)),
            ValueRef::Int(i) => Val::Int(i),
            ValueRef::Float(f) => Val::Float(f),
            ValueRef::Bool(b) => Val::Bool(b),
            other => {
                let value = other.to_value();
                self.boxed += std::mem::size_of::<Value>() + value_heap_bytes(&value);
                Val::Other(Box::new(value))
            }
        }
    }

    fn intern(&mut self, s: &str) -> Text {
        if s.is_empty() {
            return Text::default();
        }
        if self.text.len() + s.len() <= MAX_TEXT {
            let (at, len) = (self.text.len() as u32, s.len() as u32);
            self.text.push_str(s);
            Text { at, len }
        } else {
            self.overflow.push(s.into());
            self.boxed += s.len();
            Text {
                at: (self.overflow.len() - 1) as u32,
                len: u32::MAX,
            }
        }
    }

    fn text(&self, t: Text) -> &str {
        if t.len == u32::MAX {
            return &self.overflow[t.at as usize];
        }
        &self.text[t.at as usize..(t.at + t.len) as usize]
    }

    /// A span's name.
    #[inline]
    pub fn name(&self, span: &Span) -> &str {
        self.text(span.name)
    }

    /// A span's status message ("" unless a rule reads it).
    pub fn status_message(&self, span: &Span) -> &str {
        self.text(span.status_message)
    }

    /// A span's resource.
    pub fn resource_of(&self, span: &Span) -> &Resource {
        self.resources
            .get(span.resource as usize)
            .map_or(&NO_RESOURCE, |r| r)
    }

    /// How many distinct resources the trace's spans come from.
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// The resources the trace's spans come from ([`Span::resource_index`]).
    pub fn resources(&self) -> &[Arc<Resource>] {
        &self.resources
    }

    /// A kept span attribute by key id.
    #[inline]
    pub fn attr(&self, span: &Span, key: KeyId) -> Option<ValueRef<'_>> {
        let attrs = &self.attrs[span.attrs_at as usize..(span.attrs_at + span.attrs_len) as usize];
        attrs
            .iter()
            .find(|a| a.key == key)
            .map(|a| self.value(&a.value))
    }

    /// A kept span attribute by key text (`None` when rules do not read the key).
    pub fn attr_named(&self, span: &Span, key: &str) -> Option<ValueRef<'_>> {
        self.attr(span, self.projection.key(key)?)
    }

    /// A span attribute, else its resource's, by key text.
    pub fn attr_or_resource(&self, span: &Span, key: &str) -> Option<ValueRef<'_>> {
        self.attr_named(span, key)
            .or_else(|| trace::lookup(&self.resource_of(span).attributes, key).map(Into::into))
    }

    fn value<'a>(&'a self, v: &'a Val) -> ValueRef<'a> {
        match v {
            Val::Str(t) => ValueRef::Str(self.text(*t)),
            Val::Int(i) => ValueRef::Int(*i),
            Val::Float(f) => ValueRef::Float(*f),
            Val::Bool(b) => ValueRef::Bool(*b),
            Val::Other(v) => ValueRef::from(&**v),
        }
    }

    /// The kept attributes of a span, as (key id, value).
    pub fn attr_ids(&self, span: &Span) -> impl Iterator<Item = (KeyId, ValueRef<'_>)> {
        self.attrs[span.attrs_at as usize..(span.attrs_at + span.attrs_len) as usize]
            .iter()
            .map(|a| (a.key, self.value(&a.value)))
    }

    /// The kept attributes of a span, as (key, value).
    pub fn attrs(&self, span: &Span) -> impl Iterator<Item = (&str, ValueRef<'_>)> {
        self.attrs[span.attrs_at as usize..(span.attrs_at + span.attrs_len) as usize]
            .iter()
            .map(|a| (self.projection.key_name(a.key), self.value(&a.value)))
    }

    /// Whether the trace's spans form one whole tree (docs/language.md, "Complete
    /// traces"; [`trace::is_one_tree`]): exactly one root, and every other span reaches it
    /// by parent links. (Judged early under memory pressure, a trace is not complete
    /// either; the engine knows that, not the trace.)
    pub fn is_complete(&self) -> bool {
        trace::is_one_tree(self.spans.len(), |i| {
            (self.spans[i].span_id, self.spans[i].parent_span_id)
        })
    }

    /// The root span: one without a parent (the earliest if several), else the earliest span.
    pub fn root(&self) -> Option<usize> {
        trace::root_of(self.spans.len(), |i| {
            let s = &self.spans[i];
            (s.parent_span_id.is_none(), s.start_unix_nano, s.span_id)
        })
    }

    /// `trace:duration`: the latest end minus the earliest start.
    pub fn duration_nanos(&self) -> i64 {
        trace::extent(
            self.spans
                .iter()
                .map(|s| (s.start_unix_nano, s.end_unix_nano)),
        )
        .1
    }

    /// The earliest span start, used by replay's `--from`/`--to`.
    pub fn start_unix_nano(&self) -> u64 {
        trace::extent(
            self.spans
                .iter()
                .map(|s| (s.start_unix_nano, s.end_unix_nano)),
        )
        .0
    }

    /// Keeps only the spans `keep` says yes to (their attributes and text stay in the
    /// arenas until the trace is dropped: duplicates are rare).
    pub fn retain_spans(&mut self, keep: impl FnMut(&Span) -> bool) {
        self.spans.retain(keep);
    }

    /// The same trace keyed for another projection: attributes it does not read are
    /// dropped, ones only it reads are absent.
    pub fn reproject(&self, to: &Arc<Projection>) -> Trace {
        let mut t = Trace::new(self.trace_id, to.clone());
        t.feeds = self.feeds;
        t.resources = self.resources.clone();
        for s in &self.spans {
            t.push_from(self, s, s.resource);
        }
        t
    }

    /// Appends span `s` of `src` (keyed for any projection) with resource `resource`.
    fn push_from(&mut self, src: &Trace, s: &Span, resource: u32) {
        let span = SpanIn {
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            name: src.name(s),
            kind: s.kind,
            status: s.status,
            status_message: src.status_message(s),
            start_unix_nano: s.start_unix_nano,
            end_unix_nano: s.end_unix_nano,
        };
        let to = self.projection.clone();
        let attrs: Vec<(KeyId, ValueRef)> = src
            .attrs(s)
            .filter_map(|(k, v)| Some((to.key(k)?, v)))
            .collect();
        self.push(resource, span, attrs);
    }

    /// Appends a fragment of the same trace, sharing equal resources. When the two were
    /// decoded for different projections (a reload between them), both are keyed for the
    /// newer one first.
    pub fn append(&mut self, mut frag: Trace) {
        self.feeds |= frag.feeds;
        if !Arc::ptr_eq(&self.projection, &frag.projection) {
            if frag.projection.is_newer_than(&self.projection) {
                *self = self.reproject(&frag.projection);
            } else {
                frag = frag.reproject(&self.projection);
            }
        }
        let map: Vec<u32> = frag
            .resources
            .iter()
            .map(|r| self.share_resource(r))
            .collect();
        let resource = |s: &Span| map.get(s.resource as usize).copied().unwrap_or(u32::MAX);
        if !frag.overflow.is_empty() || self.text.len() + frag.text.len() > MAX_TEXT {
            // Past the arena's reach (4 GiB of text in one trace): span by span, each
            // string where it fits.
            for s in &frag.spans {
                self.push_from(&frag, s, resource(s));
            }
            return;
        }
        self.boxed += frag.boxed;
        let (attrs_base, text_base) = (self.attrs.len() as u32, self.text.len() as u32);
        let rebase = |t: Text| match t.len {
            0 => t,
            len => Text {
                at: t.at + text_base,
                len,
            },
        };
        self.text.push_str(&frag.text);
        self.attrs.extend(frag.attrs.drain(..).map(|a| Attr {
            key: a.key,
            value: match a.value {
                Val::Str(t) => Val::Str(rebase(t)),
                other => other,
            },
        }));
        self.spans.extend(frag.spans.iter().map(|s| Span {
            name: rebase(s.name),
            status_message: rebase(s.status_message),
            attrs_at: s.attrs_at + attrs_base,
            resource: resource(s),
            ..*s
        }));
    }

    /// The index of a resource equal to `r`, added if none is: the search covers the last
    /// [`SHARED_RESOURCES`] only, so that a trace spread over thousands of distinct
    /// resources costs a bounded search a fragment (an unshared copy is only memory).
    fn share_resource(&mut self, r: &Arc<Resource>) -> u32 {
        let from = self.resources.len().saturating_sub(SHARED_RESOURCES);
        match self.resources[from..]
            .iter()
            .position(|e| Arc::ptr_eq(e, r) || **e == **r)
        {
            Some(i) => (from + i) as u32,
            None => self.add_resource(r.clone()),
        }
    }

    /// The bytes this trace's own blocks take: its vectors and arenas by capacity (what was
    /// allocated, not what is used), and the values and strings kept beside them. Without
    /// the resources it points at, which are shared ([`Trace::resource_share_bytes`]).
    /// Constant time: the trace buffer counts it on every fragment it adds.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.spans.capacity() * size_of::<Span>()
            + self.attrs.capacity() * size_of::<Attr>()
            + self.text.capacity()
            + self.resources.capacity() * size_of::<Arc<Resource>>()
            + self.overflow.capacity() * size_of::<Box<str>>()
            + self.boxed
    }

    /// This trace's share of the resources from its `from`-th on: each resource's bytes
    /// divided by how many hold it now. A batch's resource is one block shared by every
    /// trace fragment of the batch, so counting it whole in each would count it many times
    /// over; divided among its holders as they are added, the shares sum to about its size.
    pub fn resource_share_bytes(&self, from: usize) -> usize {
        self.resources
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|r| resource_bytes(r) / Arc::strong_count(r).max(1))
            .sum()
    }
}

/// The bytes one resource takes in its `Arc`, attributes and all.
fn resource_bytes(r: &Resource) -> usize {
    use std::mem::size_of;
    2 * size_of::<usize>()
        + size_of::<Resource>()
        + r.attributes.capacity() * size_of::<(String, Value)>()
        + r.attributes
            .iter()
            .map(|(k, v)| k.capacity() + value_heap_bytes(v))
            .sum::<usize>()
}

/// The bytes a value owns outside itself (a string's text, an array's elements).
fn value_heap_bytes(v: &Value) -> usize {
    match v {
        // An Arc<str>: two counts and the text.
        Value::Str(s) => 2 * std::mem::size_of::<usize>() + s.len(),
        Value::Array(items) => {
            items.capacity() * std::mem::size_of::<Value>()
                + items.iter().map(value_heap_bytes).sum::<usize>()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Span as PlainSpan;

    fn plain(names: &[&str], service: &str) -> trace::Trace {
        trace::Trace {
            trace_id: TraceId([1; 16]),
            spans: names
                .iter()
                .enumerate()
                .map(|(i, n)| PlainSpan {
                    span_id: SpanId([i as u8 + 1; 8]),
                    name: n.to_string(),
                    attributes: vec![("k".into(), Value::str(format!("value of {n}")))],
                    ..Default::default()
                })
                .collect(),
            resources: vec![Resource {
                attributes: vec![("service.name".into(), Value::str(service))],
            }],
        }
    }

    fn names(t: &Trace) -> Vec<String> {
        t.spans.iter().map(|s| t.name(s).to_string()).collect()
    }

    #[test]
    fn text_past_the_arena_is_kept_beside_it_when_pushed_and_appended() {
        // MAX_TEXT is 64 bytes in tests: these names and values overflow it.
        let keys = Arc::new(Projection::new(["k"], false));
        let long = "n".repeat(40);
        let mut t = Trace::project(&plain(&["a", &long, "b"], "svc"), &keys);
        assert!(!t.overflow.is_empty(), "the test reaches the overflow");
        assert_eq!(names(&t), ["a", long.as_str(), "b"]);
        let frag = Trace::project(&plain(&["c", "d"], "svc"), &keys);
        t.append(frag);
        assert_eq!(names(&t), ["a", long.as_str(), "b", "c", "d"]);
        for s in &t.spans {
            let want = format!("value of {}", t.name(s));
            assert_eq!(t.attr_named(s, "k"), Some(ValueRef::Str(&want)));
        }
        assert_eq!(t.resource_count(), 1, "equal resources are shared");
    }

    #[test]
    fn a_fragment_that_fits_is_appended_by_offsets() {
        let keys = Arc::new(Projection::new(["k"], false));
        let mut t = Trace::project(&plain(&["a"], "svc"), &keys);
        t.append(Trace::project(&plain(&["b"], "other"), &keys));
        assert!(t.overflow.is_empty());
        assert_eq!(names(&t), ["a", "b"]);
        assert_eq!(
            t.attr_named(&t.spans[1], "k"),
            Some(ValueRef::Str("value of b"))
        );
        assert_eq!(t.resource_of(&t.spans[1]).service_name(), "other");
        assert_eq!(t.resource_count(), 2);
    }

    #[test]
    fn a_fragment_keyed_for_newer_rules_rekeys_the_held_trace() {
        let old = Arc::new(Projection::new(["k"], false));
        let new = Arc::new(Projection::new(["j"], false));
        let mut t = Trace::project(&plain(&["a"], "svc"), &old);
        let mut p = plain(&["b"], "svc");
        p.spans[0].attributes.push(("j".into(), Value::Int(7)));
        t.append(Trace::project(&p, &new));
        assert!(Arc::ptr_eq(t.projection(), &new));
        assert_eq!(
            t.attr_named(&t.spans[0], "k"),
            None,
            "only the old rules read k"
        );
        assert_eq!(t.attr_named(&t.spans[1], "j"), Some(ValueRef::Int(7)));
    }

    #[test]
    fn complete_means_every_span_reaches_the_one_root() {
        let keys = Arc::new(Projection::new(["k"], false));
        for (parents, want, what) in crate::trace::tests::SHAPES {
            let t = Trace::project(&crate::trace::tests::linked(parents), &keys);
            assert_eq!(t.is_complete(), *want, "{what}");
        }
    }
}
