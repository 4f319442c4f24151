//! OTLP protobuf (`ExportTraceServiceRequest` / `TracesData`) straight into projected
//! trace fragments, walking the wire format in place.
//!
//! The message structure (resource spans, scope spans) must be sound or the batch is
//! refused. Below that, each resource and each span is read on its own: one that cannot be
//! read is skipped and counted. Of a span, only what the projection keeps is decoded —
//! attributes no rule reads are stepped over without a look at their values. The pre-1.0
//! `instrumentation_library_spans` (field 1000) is read like `scope_spans`.

use std::sync::Arc;

use super::layout::{range_in, BlockShape, Layout, ScopeShape};
use super::wire::{fields, utf8, WireError};
use super::{is_own, Batch, Builder, DecodeError, Kept};
use crate::diagnostic::clip;
use crate::lang::value::{Value, ValueRef};
use crate::trace::projected::{KeyId, Projection, SpanIn};
use crate::trace::{Resource, SpanId, SpanKind, StatusCode, TraceId};
use std::borrow::Cow;

/// Decodes protobuf `ExportTraceServiceRequest` (or `TracesData`: the same wire format)
/// into fragments keeping what `projection` reads. Fails only when the message structure
/// itself is broken; a span that cannot be read is skipped and counted.
pub fn decode(bytes: &[u8], projection: &Arc<Projection>) -> Result<Batch, DecodeError> {
    let mut b = Builder::new(projection);
    // Each span with whether its scope is BeTrace's own.
    let mut spans: Vec<(&[u8], bool)> = Vec::new();
    let mut scratch = Scratch::default();
    let mut ri = 0;
    for f in fields(bytes) {
        let (tag, f) = f?;
        if tag != 1 {
            continue;
        }
        ri += 1;
        spans.clear();
        let mut resource: Option<&[u8]> = None;
        for f in fields(f.bytes("TracesData.resource_spans")?) {
            match f? {
                (1, f) => resource = Some(f.bytes("ResourceSpans.resource")?),
                (2 | 1000, f) => {
                    let mut own = false;
                    let first = spans.len();
                    for f in fields(f.bytes("ResourceSpans.scope_spans")?) {
                        match f? {
                            (1, f) => own = scope_is_betrace(f.bytes("ScopeSpans.scope")?)?,
                            (2, f) => spans.push((f.bytes("ScopeSpans.spans")?, false)),
                            _ => {}
                        }
                    }
                    for s in &mut spans[first..] {
                        s.1 = own;
                    }
                }
                _ => {}
            }
        }
        let resource = match resource.map(decode_resource).transpose() {
            Ok(r) => Arc::new(r.unwrap_or_default()),
            Err(e) => {
                for _ in &spans {
                    b.batch
                        .invalid(|| format!("resource {ri}: unreadable resource: {e}"));
                }
                continue;
            }
        };
        b.resource(resource);
        for &(raw, own) in &spans {
            if let Err(why) = span(&mut b, raw, own, projection, &mut scratch) {
                b.batch.invalid(|| why);
            }
        }
    }
    Ok(b.batch)
}

/// Where each span of a protobuf record lies ([`super::layout`]). Walks the same fields
/// [`decode`] walks and fails where it fails (the message structure, a scope that is not a
/// scope), so that such a record is decoded whole.
pub fn layout(bytes: &[u8]) -> Result<Layout<'_>, WireError> {
    walk(bytes, true)
}

/// [`layout`] for a record already indexed, to cut spans out of it: of each span only its
/// trace id (the first, where [`decode`] takes the last: a span with two reads as another
/// trace, and the record is then decoded whole), no name, no service — a fraction of the
/// cost.
pub fn layout_ids(bytes: &[u8]) -> Result<Layout<'_>, WireError> {
    walk(bytes, false)
}

fn walk(bytes: &[u8], checked: bool) -> Result<Layout<'_>, WireError> {
    let mut out = Layout {
        sure: true,
        ..Layout::default()
    };
    for f in fields(bytes) {
        let (tag, f) = f?;
        if tag != 1 {
            continue;
        }
        let mut block = BlockShape::default();
        let mut resource: Option<&[u8]> = None;
        for f in fields(f.bytes("TracesData.resource_spans")?) {
            match f? {
                (1, f) => resource = Some(f.bytes("ResourceSpans.resource")?),
                (2 | 1000, f) => {
                    let mut own = false;
                    let mut scope = ScopeShape::default();
                    let mut raw = Vec::new();
                    for f in fields(f.bytes("ResourceSpans.scope_spans")?) {
                        match f? {
                            (1, f) => {
                                let s = f.bytes("ScopeSpans.scope")?;
                                own = scope_is_betrace(s)?;
                                scope.scope = Some(range_in(bytes, s));
                            }
                            (2, f) => raw.push(f.bytes("ScopeSpans.spans")?),
                            _ => {}
                        }
                    }
                    for span in raw {
                        let sure = if checked {
                            sure_span(span, own)
                        } else {
                            first_trace_id(span).map(|t| (t, ""))
                        };
                        match sure {
                            Some((trace, name)) => {
                                out.spans.push((trace, Cow::Borrowed(name)));
                                out.shape.spans.push(range_in(bytes, span));
                                scope.spans += 1;
                            }
                            None => out.sure = false,
                        }
                    }
                    block.scopes.push(scope);
                }
                _ => {}
            }
        }
        let mut service = None;
        if let Some(r) = resource.filter(|_| checked) {
            match decode_resource(r) {
                Ok(r) => {
                    service = r.attributes.into_iter().rev().find_map(|(k, v)| match v {
                        Value::Str(s) if k == "service.name" => Some(s.to_string()),
                        _ => None,
                    })
                }
                // A resource the decoder cannot read costs its spans: decoded whole.
                Err(_) => out.sure = false,
            }
        }
        block.resource = resource.map(|r| range_in(bytes, r));
        out.services.push(service);
        out.shape.blocks.push(block);
    }
    Ok(out)
}

/// A span's first trace id field, when it is one.
fn first_trace_id(raw: &[u8]) -> Option<TraceId> {
    for f in fields(raw) {
        if let (1, f) = f.ok()? {
            return <[u8; 16]>::try_from(f.bytes("").ok()?).ok().map(TraceId);
        }
    }
    None
}

/// A span's trace and name when the fields [`span`] reads before its attributes read
/// without doubt (ids of 16 and 8 bytes, not zero; a UTF-8 name) and it is not BeTrace's own.
fn sure_span(raw: &[u8], own_scope: bool) -> Option<(TraceId, &str)> {
    let (mut trace_id, mut span_id, mut name): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    for f in fields(raw) {
        match f.ok()? {
            (1, f) => trace_id = f.bytes("").ok()?,
            (2, f) => span_id = f.bytes("").ok()?,
            (4, f) => _ = f.bytes("").ok()?,
            (5, f) => name = f.bytes("").ok()?,
            (6, f) => _ = f.varint("").ok()?,
            (7 | 8, f) => _ = f.fixed64("").ok()?,
            (15, f) => {
                for f in fields(f.bytes("").ok()?) {
                    match f.ok()? {
                        (2, f) => _ = f.bytes("").ok()?,
                        (3, f) => _ = f.varint("").ok()?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if is_own(own_scope, name) {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    let tid = <[u8; 16]>::try_from(trace_id).ok()?;
    let sid = <[u8; 8]>::try_from(span_id).ok()?;
    if tid == [0; 16] || sid == [0; 8] {
        return None;
    }
    Some((TraceId(tid), name))
}

/// Whether an `InstrumentationScope` is BeTrace's own (its name, field 1).
fn scope_is_betrace(scope: &[u8]) -> Result<bool, WireError> {
    for f in fields(scope) {
        if let (1, f) = f? {
            return Ok(
                f.bytes("InstrumentationScope.name")? == super::encode::SCOPE_NAME.as_bytes()
            );
        }
    }
    Ok(false)
}

/// Reusable buffers for one span's kept attributes.
#[derive(Default)]
struct Scratch<'a> {
    kept: Vec<(KeyId, Kept<'a>)>,
    arrays: Vec<Value>,
}

fn span<'a>(
    b: &mut Builder,
    raw: &'a [u8],
    own_scope: bool,
    projection: &Projection,
    scratch: &mut Scratch<'a>,
) -> Result<(), String> {
    let mut trace_id: &[u8] = &[];
    let mut span_id: &[u8] = &[];
    let mut parent: &[u8] = &[];
    let mut name: &[u8] = &[];
    let mut kind = 0u64;
    let (mut start, mut end) = (0u64, 0u64);
    let mut status_code = 0u64;
    let mut status_message: &[u8] = &[];
    scratch.kept.clear();
    scratch.arrays.clear();
    let unreadable = |e: WireError| format!("unreadable span: {e}");
    for f in fields(raw) {
        let (tag, f) = f.map_err(unreadable)?;
        match tag {
            1 => trace_id = f.bytes("Span.trace_id").map_err(unreadable)?,
            2 => span_id = f.bytes("Span.span_id").map_err(unreadable)?,
            4 => parent = f.bytes("Span.parent_span_id").map_err(unreadable)?,
            5 => name = f.bytes("Span.name").map_err(unreadable)?,
            6 => kind = f.varint("Span.kind").map_err(unreadable)?,
            7 => start = f.fixed64("Span.start_time_unix_nano").map_err(unreadable)?,
            8 => end = f.fixed64("Span.end_time_unix_nano").map_err(unreadable)?,
            9 => {
                let kv = f.bytes("Span.attributes").map_err(unreadable)?;
                attribute(kv, projection, scratch).map_err(unreadable)?;
            }
            15 => {
                for f in fields(f.bytes("Span.status").map_err(unreadable)?) {
                    match f.map_err(unreadable)? {
                        (2, f) => status_message = f.bytes("Status.message").map_err(unreadable)?,
                        (3, f) => status_code = f.varint("Status.code").map_err(unreadable)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if is_own(own_scope, name) {
        b.batch.own_spans += 1;
        return Ok(());
    }
    let name = utf8(name, "Span.name").map_err(unreadable)?;
    let status_message = if projection.status_message() {
        utf8(status_message, "Status.message").map_err(unreadable)?
    } else {
        ""
    };
    let (Ok(tid), Ok(sid)) = (<[u8; 16]>::try_from(trace_id), <[u8; 8]>::try_from(span_id)) else {
        return Err(format!(
            "span `{}`: trace id of {} bytes or span id of {} bytes (need 16 and 8)",
            clip(name),
            trace_id.len(),
            span_id.len()
        ));
    };
    super::refuse_zero_ids(name, &tid, &sid)?;
    let parent = <[u8; 8]>::try_from(parent)
        .ok()
        .filter(|p| *p != [0; 8])
        .map(SpanId);
    b.span(
        TraceId(tid),
        SpanIn {
            span_id: SpanId(sid),
            parent_span_id: parent,
            name,
            kind: SpanKind::from_otlp(kind as i32),
            status: StatusCode::from_otlp(status_code as i32),
            status_message,
            start_unix_nano: start,
            end_unix_nano: end,
        },
        &scratch.kept,
        &scratch.arrays,
    );
    Ok(())
}

/// Reads one `KeyValue` of a span; keeps it in `scratch` when the projection reads its key.
fn attribute<'a>(
    kv: &'a [u8],
    projection: &Projection,
    scratch: &mut Scratch<'a>,
) -> Result<(), WireError> {
    if projection.is_empty() {
        return Ok(());
    }
    let mut key: &[u8] = &[];
    let mut value: Option<&[u8]> = None;
    for f in fields(kv) {
        match f? {
            (1, f) => key = f.bytes("KeyValue.key")?,
            (2, f) => value = Some(f.bytes("KeyValue.value")?),
            _ => {}
        }
    }
    // A key that is not UTF-8 is no key a rule can name (and matches none).
    let Some(id) = projection.key_bytes(key) else {
        return Ok(());
    };
    let Some(value) = value else {
        return Ok(());
    };
    let kept = match any_value(value, 0)? {
        None => return Ok(()),
        Some(AnyValue::Str(s)) => Kept::Ref(ValueRef::Str(utf8(s, "AnyValue.string_value")?)),
        Some(AnyValue::Int(i)) => Kept::Ref(ValueRef::Int(i)),
        Some(AnyValue::Float(f)) => Kept::Ref(ValueRef::Float(f)),
        Some(AnyValue::Bool(x)) => Kept::Ref(ValueRef::Bool(x)),
        Some(AnyValue::Owned(v)) => {
            scratch.arrays.push(v);
            Kept::Owned(scratch.arrays.len() - 1)
        }
    };
    scratch.kept.push((id, kept));
    Ok(())
}

enum AnyValue<'a> {
    Str(&'a [u8]),
    Int(i64),
    Float(f64),
    Bool(bool),
    Owned(Value),
}

/// Arrays nest at most this deep (prost's own limit is 100 messages).
const MAX_ARRAY_DEPTH: u32 = 32;

/// One `AnyValue`: the last of its oneof fields wins; an empty one is no value.
fn any_value(buf: &[u8], depth: u32) -> Result<Option<AnyValue<'_>>, WireError> {
    let mut out = None;
    for f in fields(buf) {
        out = Some(match f? {
            (1, f) => AnyValue::Str(f.bytes("AnyValue.string_value")?),
            (2, f) => AnyValue::Bool(f.varint("AnyValue.bool_value")? != 0),
            (3, f) => AnyValue::Int(f.varint("AnyValue.int_value")? as i64),
            (4, f) => AnyValue::Float(f64::from_bits(f.fixed64("AnyValue.double_value")?)),
            (5, f) => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(WireError("AnyValue.array_value: nested too deep".into()));
                }
                let mut items = Vec::new();
                for f in fields(f.bytes("AnyValue.array_value")?) {
                    if let (1, f) = f? {
                        if let Some(v) = any_value(f.bytes("ArrayValue.values")?, depth + 1)? {
                            items.push(owned(v)?);
                        }
                    }
                }
                AnyValue::Owned(Value::Array(items))
            }
            (6, f) => {
                f.bytes("AnyValue.kvlist_value")?;
                AnyValue::Owned(Value::Opaque)
            }
            (7, f) => {
                f.bytes("AnyValue.bytes_value")?;
                AnyValue::Owned(Value::Opaque)
            }
            _ => continue,
        });
    }
    Ok(out)
}

fn owned(v: AnyValue) -> Result<Value, WireError> {
    Ok(match v {
        AnyValue::Str(s) => Value::str(utf8(s, "AnyValue.string_value")?),
        AnyValue::Int(i) => Value::Int(i),
        AnyValue::Float(f) => Value::Float(f),
        AnyValue::Bool(b) => Value::Bool(b),
        AnyValue::Owned(v) => v,
    })
}

/// A whole resource: every attribute (a signal carries its trigger span's resource).
fn decode_resource(buf: &[u8]) -> Result<Resource, WireError> {
    let mut attributes = Vec::new();
    for f in fields(buf) {
        if let (1, f) = f? {
            let mut key = None;
            let mut value = None;
            for f in fields(f.bytes("Resource.attributes")?) {
                match f? {
                    (1, f) => key = Some(f.str("KeyValue.key")?),
                    (2, f) => value = any_value(f.bytes("KeyValue.value")?, 0)?,
                    _ => {}
                }
            }
            if let Some(v) = value {
                attributes.push((key.unwrap_or_default().to_string(), owned(v)?));
            }
        }
    }
    Ok(Resource { attributes })
}
