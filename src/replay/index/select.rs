//! A replay through indexes: which traces some rule can apply to, and reading only their
//! spans.
//!
//! A trace can count for a rule only if it has a span whose name the rule requires
//! ([`crate::lang::hir::required_names`]). The indexes say which traces have such a span
//! in any input; every span of those traces is read, from every input, and each trace is
//! judged whole — exactly as without the index. The rest is never decoded. An input whose
//! index is missing, stale or damaged is indexed in memory for the run, so that a trace
//! spread over an indexed and an unindexed file is still recognised.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::{build, trace_key, Entry, Index, Unusable};
use crate::lang::hir::NameMatch;
use crate::otlp::layout::{extract_json, extract_protobuf, Layout, Shape};
use crate::otlp::{json, protobuf};
use crate::replay::input::{self, inflate_capped, BadRecord, Limits, Pending, Record, Sink};
use crate::trace::projected::Projection;

/// What the indexes did for a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexUse {
    /// Inputs read through their index file.
    pub inputs: u64,
    /// Inputs indexed in memory for the run (their index file missing, stale or damaged).
    pub built: u64,
    /// Traces some rule can apply to, read whole (counted once per input they are in).
    pub traces_read: u64,
    /// Traces no rule can apply to, never decoded (counted once per input).
    pub traces_skipped: u64,
    /// Spans never decoded: no rule can apply to their trace.
    pub spans_skipped: u64,
}

/// Which of an input's traces a replay reads. An index read from a file is read again when
/// its input is read, so that a replay over many files holds the indexes of the inputs
/// open at once, not of all; one built for the run is kept.
#[derive(Debug)]
pub struct Selection {
    built: Option<Arc<Reading>>,
    /// Read the input whole: it could not be indexed (it cannot be read, or not all of it).
    whole: bool,
    /// The time the input starts at, from its index.
    first_time: Option<u64>,
    max_record: u64,
    /// Per trace number: read it.
    keep: Vec<bool>,
}

/// Where a planned input's index is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// In its file, read again with the input.
    File,
    /// In memory: built for the run.
    Built,
    /// Nowhere: the input is read whole.
    Whole,
}

/// The index of an input that could not be indexed: no trace, nothing to cut.
fn unread() -> Index {
    Index {
        stamp: super::Stamp {
            size: 0,
            mtime_ns: 0,
            ends: 0,
            max_record: 0,
        },
        traces: Vec::new(),
        trace_spans: Vec::new(),
        first_time: None,
        names: Vec::new(),
        services: Vec::new(),
        records: Vec::new(),
        bad: Vec::new(),
    }
}

impl Selection {
    /// The time the input starts at, from its index: `None` when the input is read whole
    /// (its start is found as without an index).
    pub(crate) fn start(&self) -> Option<Option<u64>> {
        (!self.whole).then_some(self.first_time)
    }
}

/// An input's index, and which of its traces are read, while the input is read.
#[derive(Debug)]
struct Reading {
    index: Index,
    keep: Vec<bool>,
}

/// How a replay reads its inputs through their indexes.
#[derive(Debug)]
pub struct Plan {
    /// Per input, in order.
    pub selections: Vec<Arc<Selection>>,
    /// What the indexes did.
    pub used: IndexUse,
}

/// Plans a replay of `inputs` (`(name, path)` pairs: a spooled pipe is read from a copy
/// and has no index) for rules that need one of `names`. `None` when no input has an
/// index file: the replay reads as it always did. `on_note` hears which indexes are not
/// used and why.
pub fn plan(
    names: &[NameMatch],
    inputs: &[(String, String)],
    limits: Limits,
    pool: &Arc<rayon::ThreadPool>,
    on_note: &mut dyn FnMut(&str),
) -> Result<Option<Plan>, BadRecord> {
    let max = limits.max_record_bytes as u64;
    let loaded: Vec<Result<Index, Unusable>> = inputs
        .iter()
        .map(|(name, path)| {
            if name == path {
                super::load_parts(path, max, super::codec::Parts::Tables)
            } else {
                Err(Unusable::Missing)
            }
        })
        .collect();
    if !loaded.iter().any(Result::is_ok) {
        // No index to read through: indexing every input in memory would cost more than it
        // saves. Say why the index files there are not used.
        for ((name, _), why) in inputs.iter().zip(&loaded) {
            if let Some(why) = why.as_ref().err().filter(|w| **w != Unusable::Missing) {
                on_note(&format!(
                    "{} {why}: ignored (`betrace index {name}` writes it again)",
                    super::path_for(name).display()
                ));
            }
        }
        return Ok(None);
    }
    let mut used = IndexUse::default();
    let mut indexes = Vec::with_capacity(inputs.len());
    for ((name, path), loaded) in inputs.iter().zip(loaded) {
        let index = match loaded {
            Ok(mut index) => {
                used.inputs += 1;
                // Its records are read with its input (below).
                let spans = std::mem::take(&mut index.trace_spans);
                (index, spans, Held::File)
            }
            Err(why) => {
                on_note(&format!(
                    "{} {why}: it is indexed in memory for this run (`betrace index {name}` writes one)",
                    if why == Unusable::Missing {
                        name.clone()
                    } else {
                        super::path_for(name).display().to_string()
                    }
                ));
                used.built += 1;
                let scratch = Arc::new(AtomicU64::new(0));
                // Its bad records are reported when it is read.
                match build::build(name, path, limits, pool, scratch, &mut |_| {}) {
                    Ok((index, _)) => {
                        let spans = index.trace_spans.clone();
                        (index, spans, Held::Built)
                    }
                    // It cannot be read (or not all of it): read it whole, as without an
                    // index, so that what cannot be read is reported as it would be.
                    Err(_) => (unread(), Vec::new(), Held::Whole),
                }
            }
        };
        indexes.push(index);
    }
    let mut wanted = HashSet::new();
    for (index, _, _) in &indexes {
        for (name, traces) in &index.names {
            if names.iter().any(|n| n.matches(name)) {
                wanted.extend(traces.iter().map(|&t| index.traces[t as usize]));
            }
        }
    }
    let selections = indexes
        .into_iter()
        .map(|(mut index, spans, held)| {
            let keep: Vec<bool> = index.traces.iter().map(|k| wanted.contains(k)).collect();
            let read = keep.iter().filter(|&&k| k).count() as u64;
            used.traces_read += read;
            used.traces_skipped += keep.len() as u64 - read;
            used.spans_skipped += spans
                .iter()
                .zip(&keep)
                .filter(|(_, &k)| !k)
                .map(|(&n, _)| u64::from(n))
                .sum::<u64>();
            index.names = Vec::new();
            index.services = Vec::new();
            Arc::new(Selection {
                whole: held == Held::Whole,
                first_time: index.first_time,
                built: (held == Held::Built).then(|| {
                    Arc::new(Reading {
                        index,
                        keep: keep.clone(),
                    })
                }),
                max_record: max,
                keep,
            })
        })
        .collect();
    Ok(Some(Plan { selections, used }))
}

/// Reads input `path` (`name` in reports) through its selection, as [`input::read_deferred`]
/// reads it whole: the same records, bad ones included, in the same order, each holding
/// only the spans of traces the selection reads. A record holding none is not read at all
/// when the file can be read at an offset; inside a file compressed whole, it is read and
/// dropped undecoded.
#[allow(clippy::too_many_arguments)]
pub fn read(
    name: &str,
    path: &str,
    selection: &Arc<Selection>,
    bytes_read: Arc<AtomicU64>,
    limits: Limits,
    projection: &Arc<Projection>,
    sink: &mut Sink<'_>,
) {
    if selection.whole {
        return input::read_deferred(name, path, bytes_read, limits, projection, true, sink);
    }
    let reading = match &selection.built {
        Some(r) => r.clone(),
        None => match super::load_parts(path, selection.max_record, super::codec::Parts::Records) {
            Ok(index) if index.traces.len() == selection.keep.len() => Arc::new(Reading {
                index,
                keep: selection.keep.clone(),
            }),
            // Changed since the plan: read whole (every span of every trace, a superset of
            // what the rules need, so the verdicts stay the same).
            _ => {
                return input::read_deferred(name, path, bytes_read, limits, projection, true, sink)
            }
        },
    };
    let selection = &reading;
    let seekable = selection.index.records.iter().all(|e| e.stored.is_some());
    if !seekable {
        return read_through(name, path, selection, bytes_read, limits, projection, sink);
    }
    let file = match File::open(path) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            sink(Record::Bad(BadRecord {
                source: name.into(),
                location: input::Location::Whole,
                message: e.to_string(),
            }));
            return;
        }
    };
    let source: Arc<str> = Arc::from(name);
    let index = &selection.index;
    let mut bad = index.bad.iter().peekable();
    for (k, entry) in index.records.iter().enumerate() {
        while let Some((_, location, message)) = bad.next_if(|b| b.0 as usize <= k) {
            let b = BadRecord {
                source: name.into(),
                location: location.clone(),
                message: message.clone(),
            };
            if !sink(Record::Bad(b)) {
                return;
            }
        }
        let Some(keep) = selection.keep_of(entry) else {
            continue;
        };
        let read = {
            let (selection, file, bytes) = (selection.clone(), file.clone(), bytes_read.clone());
            Box::new(move || {
                let entry = &selection.index.records[k];
                cut_stored(&selection, entry, &file, keep, &bytes, limits)
            })
        };
        let p = Pending::later(
            read,
            entry.json,
            entry.location.clone(),
            source.clone(),
            projection.clone(),
        );
        if !sink(Record::Pending(p)) {
            return;
        }
    }
    for (_, location, message) in bad {
        let b = BadRecord {
            source: name.into(),
            location: location.clone(),
            message: message.clone(),
        };
        if !sink(Record::Bad(b)) {
            return;
        }
    }
}

impl Reading {
    /// Which spans of a record to read: `Some(vec![])` for a record read whole, `None` for
    /// one with nothing to read.
    fn keep_of(&self, entry: &Entry) -> Option<Vec<bool>> {
        if entry.whole {
            return Some(Vec::new());
        }
        let keep: Vec<bool> = entry
            .traces
            .iter()
            .map(|&t| self.keep[t as usize])
            .collect();
        keep.iter().any(|&k| k).then_some(keep)
    }
}

/// The bytes of a record in a file read at offsets: the kept spans cut out (all of it
/// when `keep` is empty, or when the record no longer looks as its index says).
fn cut_stored(
    selection: &Reading,
    entry: &Entry,
    file: &File,
    keep: Vec<bool>,
    bytes_read: &AtomicU64,
    limits: Limits,
) -> Result<Vec<u8>, String> {
    let stored = entry.stored.expect("a seekable input's records are stored");
    let read_at = |offset: u64, len: u64, out: &mut Vec<u8>| -> Result<(), String> {
        let at = out.len();
        out.resize(at + len as usize, 0);
        file.read_exact_at(&mut out[at..], offset)
            .map_err(|e| format!("read error: {e}"))?;
        bytes_read.fetch_add(len, Relaxed);
        Ok(())
    };
    if let (Some(shape), false) = (&entry.shape, keep.is_empty()) {
        // JSON: only the kept spans' text, their resources' and scopes', read in windows
        // (pieces less than a page apart are read together). A piece that is not an object
        // is not where the index says (a damaged index that passed its digest, or an input
        // changed in place): the record is then read whole.
        let windows = windows(shape, &keep);
        let mut bytes = Vec::with_capacity(windows.iter().map(|w| (w.1 - w.0) as usize).sum());
        let mut starts = Vec::with_capacity(windows.len());
        for &(start, end) in &windows {
            starts.push((start, bytes.len()));
            read_at(
                stored.offset + u64::from(start),
                u64::from(end - start),
                &mut bytes,
            )?;
        }
        let mut piece = |r: (u32, u32), out: &mut Vec<u8>| {
            let w = starts
                .partition_point(|&(start, _)| start <= r.0)
                .checked_sub(1);
            let (start, at) = starts[w.ok_or(())?];
            let from = at + (r.0 - start) as usize;
            let text = bytes.get(from..from + (r.1 - r.0) as usize).ok_or(())?;
            if text.first() == Some(&b'{') && text.last() == Some(&b'}') {
                out.extend_from_slice(text);
                Ok(())
            } else {
                Err(())
            }
        };
        if let Ok(Some(text)) = extract_json(shape, &keep, &mut piece) {
            return Ok(text);
        }
    }
    if keep.is_empty() {
        let mut raw = Vec::new();
        read_at(stored.offset, stored.len, &mut raw)?;
        return if stored.zstd {
            inflate_capped(&raw, limits.max_record_bytes)
        } else {
            Ok(raw)
        };
    }
    // The record's bytes are only cut from: read into this thread's buffers, reused from
    // record to record (fresh pages for each would cost more than the cutting).
    SCRATCH.with_borrow_mut(|scratch| {
        let Scratch {
            raw,
            body,
            inflater,
        } = scratch;
        raw.clear();
        read_at(stored.offset, stored.len, raw)?;
        let body = if stored.zstd {
            inflate_into(inflater, raw, body, limits.max_record_bytes)?;
            &*body
        } else {
            &*raw
        };
        Ok(cut(selection, entry, body, &keep))
    })
}

/// Buffers a decoding thread reuses while it cuts records.
#[derive(Default)]
struct Scratch {
    raw: Vec<u8>,
    body: Vec<u8>,
    inflater: Option<zstd::zstd_safe::DCtx<'static>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Inflates one zstd message (one or more frames) into `out` with a reused context; when
/// that fails, as a replay without an index does, with its messages.
fn inflate_into(
    inflater: &mut Option<zstd::zstd_safe::DCtx<'static>>,
    packed: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), String> {
    use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer, ResetDirective};
    out.clear();
    let d = inflater.get_or_insert_with(DCtx::create);
    let mut done = d.reset(ResetDirective::SessionOnly).is_ok();
    let mut input = InBuffer::around(packed);
    while done && out.len() <= max {
        if out.capacity() - out.len() < (64 << 10) {
            out.reserve(out.len().max(256 << 10));
        }
        let (pos, filled) = (input.pos(), out.len());
        let mut o = OutBuffer::around_pos(out, filled);
        match d.decompress_stream(&mut o, &mut input) {
            // A frame ended and nothing follows it: the message is whole.
            Ok(0) if input.pos() == packed.len() => return Ok(()),
            Ok(_) if input.pos() > pos || out.len() > filled => {}
            _ => done = false,
        }
    }
    *out = inflate_capped(packed, max)?;
    Ok(())
}

/// The ranges of a JSON record a cut reads — its kept spans, and the resources and scopes
/// they belong to — merged into windows wherever less than a page lies between two.
fn windows(shape: &Shape, keep: &[bool]) -> Vec<(u32, u32)> {
    let mut ranges = Vec::new();
    let mut k = 0;
    for block in &shape.blocks {
        let first = ranges.len();
        for scope in &block.scopes {
            let n = scope.spans as usize;
            let kept: Vec<(u32, u32)> = (k..k + n)
                .filter(|&i| keep[i])
                .map(|i| shape.spans[i])
                .collect();
            k += n;
            if !kept.is_empty() {
                ranges.extend(scope.scope);
                ranges.extend(kept);
            }
        }
        if ranges.len() > first {
            ranges.extend(block.resource);
        }
    }
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(4096) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The kept spans of a record's body, walked again; the whole body when it does not hold
/// the spans the index says it does.
fn cut(selection: &Reading, entry: &Entry, body: &[u8], keep: &[bool]) -> Vec<u8> {
    // Ranges are 32-bit: a larger record (a --max-record-mib above 4 GiB) is read whole.
    if body.len() > u32::MAX as usize {
        return body.to_vec();
    }
    let layout = if entry.json {
        json::layout(body).ok()
    } else {
        protobuf::layout_ids(body).ok()
    };
    let Some(layout) = layout.filter(|l| matches(selection, entry, l)) else {
        return body.to_vec();
    };
    let cut = if entry.json {
        let mut piece = |r: (u32, u32), out: &mut Vec<u8>| {
            out.extend_from_slice(&body[r.0 as usize..r.1 as usize]);
            Ok::<(), ()>(())
        };
        extract_json(&layout.shape, keep, &mut piece).ok().flatten()
    } else {
        extract_protobuf(body, &layout.shape, keep)
    };
    cut.unwrap_or_else(|| body.to_vec())
}

/// Whether a record walked again holds the spans its index entry places, trace by trace.
fn matches(selection: &Reading, entry: &Entry, layout: &Layout) -> bool {
    layout.sure
        && layout.spans.len() == entry.traces.len()
        && layout
            .spans
            .iter()
            .zip(&entry.traces)
            .all(|((id, _), &t)| trace_key(id) == selection.index.traces[t as usize])
}

/// Reads an input compressed whole through its selection: every record is read in order
/// (it cannot be found at an offset), and only those holding kept spans are decoded.
fn read_through(
    name: &str,
    path: &str,
    selection: &Arc<Reading>,
    bytes_read: Arc<AtomicU64>,
    limits: Limits,
    projection: &Arc<Projection>,
    sink: &mut Sink<'_>,
) {
    let mut k = 0usize;
    let source: Arc<str> = Arc::from(name);
    let mut through = |r: Record| match r {
        Record::Pending(p) => {
            let entry = selection.index.records.get(k);
            k += 1;
            let Some(entry) = entry else {
                return sink(Record::Pending(p)); // not in the index: read whole
            };
            let Some(keep) = selection.keep_of(entry) else {
                return true;
            };
            let (selection, k, location) = (selection.clone(), k - 1, entry.location.clone());
            let read = Box::new(move || {
                let (body, ..) = p.into_parts();
                let body = body?;
                let entry = &selection.index.records[k];
                Ok(if keep.is_empty() {
                    body
                } else {
                    cut(&selection, entry, &body, &keep)
                })
            });
            let p = Pending::later(
                read,
                entry.json,
                location,
                source.clone(),
                projection.clone(),
            );
            sink(Record::Pending(p))
        }
        other => sink(other),
    };
    input::read_deferred(
        name,
        path,
        bytes_read,
        limits,
        projection,
        true,
        &mut through,
    );
}
