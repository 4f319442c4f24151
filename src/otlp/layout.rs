//! Where each span of a batch lies, found without decoding the spans: what `betrace index`
//! records of a batch, and how a replay cuts out of it only the spans it will judge.
//!
//! A batch of 512 spans mixes hundreds of traces, so an index that could only skip whole
//! batches would save nothing. [`Layout`] lists every span of a record with its trace, its
//! name and its byte range, grouped as the record groups them (resources, scopes), in the
//! order the decoders read them. [`extract_protobuf`] and [`extract_json`] then write a
//! smaller record of the same format holding the kept spans with their resources and
//! scopes: decoding it gives exactly the fragments those spans give in the whole record.
//!
//! A layout is *sure* only when every span in it is one the decoders read without doubt
//! (its ids readable and not zero, its name a string): a record with any other span is
//! decoded whole, so that an unreadable span is reported as a plain replay reports it.

use std::borrow::Cow;

use crate::trace::TraceId;

/// A byte range `(start, end)` in a record's body.
pub type Range = (u32, u32);

/// The spans of one record, as the decoders read them: where everything lies, and each
/// span's trace and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout<'a> {
    /// Where the resources, scopes and spans lie.
    pub shape: Shape,
    /// Each span's trace and name, in the order of [`Shape::spans`].
    pub spans: Vec<(TraceId, Cow<'a, str>)>,
    /// Each block's resource `service.name`, when it has a string one.
    pub services: Vec<Option<String>>,
    /// False when some span's ids or name could not be read without doubt (or the span is
    /// one of BeTrace's own): the record must be decoded whole.
    pub sure: bool,
}

/// Where the parts of a record lie: what an index keeps of a JSON record, whose text
/// cannot be walked again cheaply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// Resource blocks (`resourceSpans` items), in order.
    pub blocks: Vec<BlockShape>,
    /// Every span's bytes, in the order the decoders read them.
    pub spans: Vec<Range>,
}

/// One `resourceSpans` item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockShape {
    /// The resource's bytes (the last one, when a writer repeated the field).
    pub resource: Option<Range>,
    /// Its scopes (`scopeSpans` then `instrumentationLibrarySpans` items, as read).
    pub scopes: Vec<ScopeShape>,
}

/// One `scopeSpans` item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeShape {
    /// The scope's bytes (the last one, when repeated).
    pub scope: Option<Range>,
    /// How many spans it holds (the next ones in [`Shape::spans`]).
    pub spans: u32,
}

impl Layout<'_> {
    /// Each span's resource `service.name`, in the order of [`Shape::spans`].
    pub fn span_services(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        self.shape
            .blocks
            .iter()
            .zip(&self.services)
            .flat_map(|(b, s)| {
                let n: u32 = b.scopes.iter().map(|s| s.spans).sum();
                std::iter::repeat_n(s.as_deref(), n as usize)
            })
    }
}

impl Shape {
    /// Whether every range lies inside a body of `len` bytes, the ranges add up to no more
    /// than the body (parts of a record do not overlap, so a cut is never larger than its
    /// record), and the scopes account for every span: what a shape read from an index
    /// file must be before it is used.
    pub fn fits(&self, len: u64) -> bool {
        let inside = |r: &Range| r.0 <= r.1 && u64::from(r.1) <= len;
        let size = |r: &Range| u64::from(r.1.saturating_sub(r.0));
        let total: u64 = self.spans.iter().map(size).sum::<u64>()
            + self
                .blocks
                .iter()
                .map(|b| {
                    b.resource.iter().map(size).sum::<u64>()
                        + b.scopes
                            .iter()
                            .flat_map(|s| &s.scope)
                            .map(size)
                            .sum::<u64>()
                })
                .sum::<u64>();
        let counted: u64 = self
            .blocks
            .iter()
            .flat_map(|b| &b.scopes)
            .map(|s| u64::from(s.spans))
            .sum();
        counted == self.spans.len() as u64
            && total <= len
            && self.spans.iter().all(inside)
            && self.blocks.iter().all(|b| {
                b.resource.iter().all(inside) && b.scopes.iter().all(|s| s.scope.iter().all(inside))
            })
    }
}

/// Where `part` lies inside `whole` (a slice of it).
pub(crate) fn range_in(whole: &[u8], part: &[u8]) -> Range {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    (start as u32, (start + part.len()) as u32)
}

/// The kept spans of a protobuf record (`keep` says, per span of [`Shape::spans`],
/// whether to keep it) as a `TracesData` of their own, each with its resource and scope.
/// `None` when no span is kept.
pub fn extract_protobuf(body: &[u8], shape: &Shape, keep: &[bool]) -> Option<Vec<u8>> {
    let piece = |r: Range| &body[r.0 as usize..r.1 as usize];
    let mut out = Vec::new();
    let mut k = 0;
    for block in &shape.blocks {
        let mut rs = Vec::new();
        for scope in &block.scopes {
            let mut ss = Vec::new();
            for _ in 0..scope.spans {
                if keep[k] {
                    field(&mut ss, 2, piece(shape.spans[k]));
                }
                k += 1;
            }
            if !ss.is_empty() {
                if let Some(r) = scope.scope {
                    field(&mut ss, 1, piece(r));
                }
                field(&mut rs, 2, &ss);
            }
        }
        if !rs.is_empty() {
            if let Some(r) = block.resource {
                field(&mut rs, 1, piece(r));
            }
            field(&mut out, 1, &rs);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Appends a length-delimited field.
fn field(out: &mut Vec<u8>, tag: u32, payload: &[u8]) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Appends a range of a record's body to a text, or fails with `E`.
pub type Piece<'a, E> = dyn FnMut(Range, &mut Vec<u8>) -> Result<(), E> + 'a;

/// The kept spans of a JSON record as a `TracesData` text of their own; `piece` appends a
/// range of the record's body to the text (from memory, or read from the file). `None`
/// when no span is kept.
pub fn extract_json<E>(
    shape: &Shape,
    keep: &[bool],
    piece: &mut Piece<'_, E>,
) -> Result<Option<Vec<u8>>, E> {
    let len = |r: Range| (r.1 - r.0) as usize;
    let kept: usize = shape
        .spans
        .iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(&r, _)| len(r) + 1)
        .sum();
    let context: usize = shape
        .blocks
        .iter()
        .map(|b| {
            b.resource.map_or(0, len)
                + b.scopes
                    .iter()
                    .map(|s| s.scope.map_or(0, len) + 32)
                    .sum::<usize>()
                + 48
        })
        .sum();
    let mut out = Vec::with_capacity(kept + context + 32);
    out.extend_from_slice(b"{\"resourceSpans\":[");
    let mut k = 0;
    let mut any_block = false;
    for block in &shape.blocks {
        let n: usize = block.scopes.iter().map(|s| s.spans as usize).sum();
        if !keep[k..k + n].iter().any(|&x| x) {
            k += n;
            continue;
        }
        if any_block {
            out.push(b',');
        }
        any_block = true;
        out.push(b'{');
        if let Some(r) = block.resource {
            out.extend_from_slice(b"\"resource\":");
            piece(r, &mut out)?;
            out.push(b',');
        }
        out.extend_from_slice(b"\"scopeSpans\":[");
        let mut any_scope = false;
        for scope in &block.scopes {
            let span_range = k..k + scope.spans as usize;
            k = span_range.end;
            if !keep[span_range.clone()].iter().any(|&x| x) {
                continue;
            }
            if any_scope {
                out.push(b',');
            }
            any_scope = true;
            out.push(b'{');
            if let Some(r) = scope.scope {
                out.extend_from_slice(b"\"scope\":");
                piece(r, &mut out)?;
                out.push(b',');
            }
            out.extend_from_slice(b"\"spans\":[");
            let mut first = true;
            for i in span_range.filter(|&i| keep[i]) {
                if !first {
                    out.push(b',');
                }
                first = false;
                piece(shape.spans[i], &mut out)?;
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    Ok(any_block.then_some(out))
}
