//! The index file's bytes: a fixed header, then three zstd-compressed parts of varints —
//! the traces' keys, the tables of names and services, the records — so that planning a
//! replay inflates only the first two, and reading an input only the first and the last.
//!
//! Everything read back is checked — lengths against what remains, counts against what
//! they count, ranges against the record — so that a damaged index is refused with a
//! reason, never trusted and never a panic. The header holds a digest of itself and of
//! every part: a flipped bit anywhere is found before anything is inflated.

use std::hash::Hasher;

use super::{Entry, Index, Stamp};
use crate::otlp::layout::{BlockShape, Range, ScopeShape, Shape};
use crate::replay::input::Stored;
use crate::replay::Location;

/// The first bytes of every index file.
pub(crate) const MAGIC: &[u8; 8] = b"BETRACEi";

/// The index format's version: an index of another version is ignored (and named).
pub(crate) const VERSION: u32 = 1;

/// Bytes of the header: magic, version, flags, the stamp's four u64s, each part's
/// compressed and inflated lengths, the digest.
pub(crate) const HEADER: usize = 8 + 4 + 4 + 4 * 8 + PARTS * 16 + 8;

/// The parts: traces, tables, records.
const PARTS: usize = 3;

/// The most a body may inflate to: far above what any input's index needs (an index is a
/// few percent of its input), and a bound on what a damaged header can make us allocate.
const MAX_BODY: u64 = 4 << 30;

/// Why an index file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Written by another version of BeTrace's index format.
    Version(u32),
    /// Not an index, or damaged.
    Damaged(String),
}

/// FNV-1a over the header (all but the digest itself, its last 8 bytes) and the
/// compressed parts: a damaged header is refused as a damaged part is.
fn digest(header: &[u8], packed: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(&header[..HEADER - 8]);
    h.write(packed);
    h.finish()
}

/// Which parts of an index to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parts {
    /// Everything.
    All,
    /// The traces and the tables of names and services (planning a replay).
    Tables,
    /// The traces and the records (reading an input).
    Records,
}

/// The index as the bytes of its file.
pub(crate) fn encode(index: &Index) -> Vec<u8> {
    let mut traces = Vec::with_capacity(8 * index.traces.len() + 8);
    varint(&mut traces, index.traces.len() as u64);
    for key in &index.traces {
        traces.extend_from_slice(&key.to_le_bytes());
    }
    for &n in &index.trace_spans {
        varint(&mut traces, u64::from(n));
    }
    match index.first_time {
        None => traces.push(0),
        Some(t) => {
            traces.push(1);
            traces.extend_from_slice(&t.to_le_bytes());
        }
    }
    let mut tables = Vec::new();
    for table in [&index.names, &index.services] {
        varint(&mut tables, table.len() as u64);
        for (name, list) in table {
            bytes(&mut tables, name.as_bytes());
            varint(&mut tables, list.len() as u64);
            let mut prev = 0u64;
            for &t in list {
                varint(&mut tables, u64::from(t) - prev);
                prev = u64::from(t);
            }
        }
    }
    let mut records = Vec::new();
    let w = &mut records;
    varint(w, index.bad.len() as u64);
    for (before, location, message) in &index.bad {
        varint(w, u64::from(*before));
        put_location(w, location);
        bytes(w, message.as_bytes());
    }
    varint(w, index.records.len() as u64);
    for e in &index.records {
        put_entry(w, e);
    }
    let s = &index.stamp;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for v in [s.size, s.mtime_ns, s.ends, s.max_record] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut packed = Vec::new();
    for part in [&traces, &tables, &records] {
        let p = zstd::bulk::compress(part, 3).expect("zstd compresses a buffer in memory");
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        packed.extend_from_slice(&p);
    }
    let d = digest(&out, &packed);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&packed);
    out
}

fn put_entry(w: &mut Vec<u8>, e: &Entry) {
    let flags = u8::from(e.json)
        | u8::from(e.whole) << 1
        | u8::from(e.stored.is_some()) << 2
        | u8::from(e.stored.is_some_and(|s| s.zstd)) << 3
        | u8::from(e.shape.is_some()) << 4;
    w.push(flags);
    put_location(w, &e.location);
    if let Some(s) = e.stored {
        varint(w, s.offset);
        varint(w, s.len);
    }
    varint(w, u64::from(e.spans));
    varint(w, e.traces.len() as u64);
    let mut prev = 0i64;
    for &t in &e.traces {
        varint(w, zigzag(i64::from(t) - prev));
        prev = i64::from(t);
    }
    if let Some(shape) = &e.shape {
        put_shape(w, shape);
    }
}

fn put_shape(w: &mut Vec<u8>, shape: &Shape) {
    varint(w, shape.blocks.len() as u64);
    for b in &shape.blocks {
        put_range(w, b.resource);
        varint(w, b.scopes.len() as u64);
        for s in &b.scopes {
            put_range(w, s.scope);
            varint(w, u64::from(s.spans));
        }
    }
    varint(w, shape.spans.len() as u64);
    let mut prev = 0i64;
    for &(start, end) in &shape.spans {
        varint(w, zigzag(i64::from(start) - prev));
        varint(w, u64::from(end - start));
        prev = i64::from(end);
    }
}

fn put_range(w: &mut Vec<u8>, r: Option<Range>) {
    match r {
        None => varint(w, 0),
        Some((start, end)) => {
            varint(w, u64::from(start) + 1);
            varint(w, u64::from(end - start));
        }
    }
}

fn put_location(w: &mut Vec<u8>, l: &Location) {
    match l {
        Location::Line(n) => {
            w.push(0);
            varint(w, *n);
        }
        Location::Offset(o) => {
            w.push(1);
            varint(w, *o);
        }
        Location::Whole => w.push(2),
    }
}

fn bytes(w: &mut Vec<u8>, b: &[u8]) {
    varint(w, b.len() as u64);
    w.extend_from_slice(b);
}

fn varint(w: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, w);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The stamp an index file's header records, or why the file is not an index.
pub(crate) fn stamp_of(header: &[u8]) -> Result<Stamp, Refused> {
    if header.len() < 16 || &header[..8] != MAGIC {
        return Err(Refused::Damaged("not a BeTrace index".into()));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(Refused::Version(version));
    }
    if header.len() < HEADER {
        return Err(Refused::Damaged("it ends inside its header".into()));
    }
    Ok(Stamp {
        size: word(header, 0),
        mtime_ns: word(header, 1),
        ends: word(header, 2),
        max_record: word(header, 3),
    })
}

/// The `i`th u64 after the header's magic, version and flags.
fn word(header: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(header[16 + 8 * i..24 + 8 * i].try_into().expect("8 bytes"))
}

/// An index from its file's bytes, with the parts asked for (the others left empty).
pub(crate) fn decode(file: &[u8], parts: Parts) -> Result<Index, Refused> {
    let stamp = stamp_of(file)?;
    let damaged = |why: &str| Refused::Damaged(why.to_string());
    let sizes: Vec<(u64, u64)> = (0..PARTS)
        .map(|p| (word(file, 4 + 2 * p), word(file, 5 + 2 * p)))
        .collect();
    let packed = &file[HEADER..];
    let total = sizes.iter().try_fold(0u64, |t, (p, _)| t.checked_add(*p));
    if total != Some(packed.len() as u64) {
        return Err(damaged("its length is not the one written (truncated?)"));
    }
    if digest(&file[..HEADER], packed) != word(file, 4 + 2 * PARTS) {
        return Err(damaged("its digest does not match its contents"));
    }
    let mut at = 0usize;
    let mut bodies = Vec::with_capacity(PARTS);
    for (i, &(packed_len, raw_len)) in sizes.iter().enumerate() {
        let part = &packed[at..at + packed_len as usize];
        at += packed_len as usize;
        let wanted = match parts {
            Parts::All => true,
            Parts::Tables => i < 2,
            Parts::Records => i != 1,
        };
        if !wanted {
            bodies.push(Vec::new());
            continue;
        }
        // No part is larger than a few bytes per byte of input (a span is tens of bytes
        // of input, and its part of an index a few).
        let bound = MAX_BODY
            .min(packed_len.saturating_mul(1024) + (1 << 20))
            .min(stamp.size.saturating_mul(4) + (1 << 20));
        if raw_len > bound {
            return Err(damaged("it claims an absurd size"));
        }
        let body = zstd::bulk::decompress(part, raw_len as usize)
            .map_err(|e| Refused::Damaged(format!("a part does not inflate: {e}")))?;
        if body.len() as u64 != raw_len {
            return Err(damaged("a part inflates to another size than written"));
        }
        bodies.push(body);
    }
    let whole = |r: &Reader| {
        if r.buf.is_empty() {
            Ok(())
        } else {
            Err(Bad("bytes follow the end of a part".into()))
        }
    };
    let read = || -> Result<Index, Bad> {
        let mut r = Reader { buf: &bodies[0] };
        let (traces, trace_spans, first_time) = r.traces()?;
        whole(&r)?;
        let (mut names, mut services) = (Vec::new(), Vec::new());
        if parts != Parts::Records {
            let mut r = Reader { buf: &bodies[1] };
            names = r.table(traces.len())?;
            services = r.table(traces.len())?;
            whole(&r)?;
        }
        let (mut records, mut bad) = (Vec::new(), Vec::new());
        if parts != Parts::Tables {
            let mut r = Reader { buf: &bodies[2] };
            (bad, records) = r.records(traces.len(), &stamp)?;
            whole(&r)?;
        }
        Ok(Index {
            stamp,
            first_time,
            traces,
            trace_spans,
            names,
            services,
            records,
            bad,
        })
    };
    read().map_err(|e| Refused::Damaged(e.0))
}

/// Room to reserve for `n` items a file says follow: no more than a few thousand ahead
/// of reading them, so that a count in a crafted file cannot reserve memory by itself.
fn cap(n: usize) -> usize {
    n.min(4096)
}

/// A read that ran into damage.
struct Bad(String);

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, Bad> {
        prost::encoding::decode_varint(&mut self.buf).map_err(|_| Bad("a bad number".into()))
    }

    /// A count of items each at least `min` bytes long: no more than the bytes left allow.
    fn count(&mut self, min: usize) -> Result<usize, Bad> {
        let n = self.varint()?;
        if n > (self.buf.len() / min.max(1)) as u64 {
            return Err(Bad("a count larger than the bytes that follow".into()));
        }
        Ok(n as usize)
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        u32::try_from(self.varint()?).map_err(|_| Bad("a number out of range".into()))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Bad> {
        if n > self.buf.len() {
            return Err(Bad("it ends early".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, Bad> {
        let n = self.count(1)?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| Bad("a name that is not UTF-8".into()))
    }

    fn byte(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    #[allow(clippy::type_complexity)]
    fn traces(&mut self) -> Result<(Vec<u64>, Vec<u32>, Option<u64>), Bad> {
        if self.buf.is_empty() {
            return Err(Bad("a part is empty".into()));
        }
        let n = self.count(9)?;
        let mut traces = Vec::with_capacity(cap(n));
        for _ in 0..n {
            traces.push(u64::from_le_bytes(self.take(8)?.try_into().expect("8")));
        }
        let mut spans = Vec::with_capacity(cap(n));
        for _ in 0..n {
            spans.push(self.u32()?);
        }
        let first_time = match self.byte()? {
            0 => None,
            1 => Some(u64::from_le_bytes(self.take(8)?.try_into().expect("8"))),
            _ => return Err(Bad("an unknown kind of time".into())),
        };
        Ok((traces, spans, first_time))
    }

    fn table(&mut self, traces: usize) -> Result<Vec<(String, Vec<u32>)>, Bad> {
        let n = self.count(2)?;
        let mut table = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let name = self.string()?;
            let m = self.count(1)?;
            let mut list = Vec::with_capacity(cap(m));
            let mut prev = 0u64;
            for i in 0..m {
                let d = self.varint()?;
                if i > 0 && d == 0 {
                    return Err(Bad("a trace listed twice".into()));
                }
                prev = prev.checked_add(d).ok_or(Bad("an overflow".into()))?;
                if prev >= traces as u64 {
                    return Err(Bad("a trace that is not in its table".into()));
                }
                list.push(prev as u32);
            }
            table.push((name, list));
        }
        Ok(table)
    }

    #[allow(clippy::type_complexity)]
    fn records(
        &mut self,
        traces: usize,
        stamp: &Stamp,
    ) -> Result<(Vec<(u32, Location, String)>, Vec<Entry>), Bad> {
        let n = self.count(3)?;
        let mut bad = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let before = self.u32()?;
            let location = self.location()?;
            bad.push((before, location, self.string()?));
        }
        let n = self.count(3)?;
        let mut records: Vec<Entry> = Vec::with_capacity(cap(n));
        let mut end = 0u64;
        for _ in 0..n {
            let e = self.entry(traces, stamp)?;
            // Records follow one another in their file: what a replay reads at offsets
            // adds up to the input at most.
            if let Some(s) = e.stored {
                if s.offset < end {
                    return Err(Bad("records that overlap".into()));
                }
                end = s.offset + s.len;
            }
            records.push(e);
        }
        if bad.iter().any(|b| b.0 as usize > records.len()) {
            return Err(Bad("a bad record placed after the last record".into()));
        }
        Ok((bad, records))
    }

    fn location(&mut self) -> Result<Location, Bad> {
        Ok(match self.byte()? {
            0 => Location::Line(self.varint()?),
            1 => Location::Offset(self.varint()?),
            2 => Location::Whole,
            _ => return Err(Bad("an unknown kind of location".into())),
        })
    }

    fn entry(&mut self, traces: usize, stamp: &Stamp) -> Result<Entry, Bad> {
        let flags = self.byte()?;
        if flags >> 5 != 0 {
            return Err(Bad("unknown record flags".into()));
        }
        let location = self.location()?;
        let stored = if flags & 4 != 0 {
            let s = Stored {
                offset: self.varint()?,
                len: self.varint()?,
                zstd: flags & 8 != 0,
            };
            // A record lies inside its input and is no larger than a record is read: what
            // a replay reads at an offset is bounded by the input, never by the index.
            if s.offset
                .checked_add(s.len)
                .is_none_or(|end| end > stamp.size)
                || s.len > stamp.max_record
            {
                return Err(Bad("a record that lies outside its input".into()));
            }
            Some(s)
        } else {
            None
        };
        let spans = self.u32()?;
        let n = self.count(1)?;
        let mut list = Vec::with_capacity(cap(n));
        let mut prev = 0i64;
        for _ in 0..n {
            prev = prev
                .checked_add(unzigzag(self.varint()?))
                .ok_or(Bad("an overflow".into()))?;
            if prev < 0 || prev >= traces as i64 {
                return Err(Bad("a span of a trace that is not in its table".into()));
            }
            list.push(prev as u32);
        }
        let whole = flags & 2 != 0;
        if !whole && list.len() != spans as usize {
            return Err(Bad("a record whose spans are not all placed".into()));
        }
        let shape = if flags & 16 != 0 {
            let shape = self.shape()?;
            let fits = stored.is_some_and(|s| shape.fits(s.len) && !s.zstd);
            if !fits || shape.spans.len() != list.len() {
                return Err(Bad("a record whose ranges do not fit it".into()));
            }
            Some(shape)
        } else {
            None
        };
        Ok(Entry {
            json: flags & 1 != 0,
            location,
            stored,
            whole,
            spans,
            traces: list,
            shape,
        })
    }

    fn shape(&mut self) -> Result<Shape, Bad> {
        let n = self.count(2)?;
        let mut blocks = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let resource = self.range()?;
            let m = self.count(2)?;
            let mut scopes = Vec::with_capacity(cap(m));
            for _ in 0..m {
                let scope = self.range()?;
                scopes.push(ScopeShape {
                    scope,
                    spans: self.u32()?,
                });
            }
            blocks.push(BlockShape { resource, scopes });
        }
        let n = self.count(2)?;
        let mut spans = Vec::with_capacity(cap(n));
        let mut prev = 0i64;
        for _ in 0..n {
            let start = prev
                .checked_add(unzigzag(self.varint()?))
                .ok_or(Bad("an overflow".into()))?;
            let len = i64::from(self.u32()?);
            let start = u32::try_from(start).map_err(|_| Bad("a range out of bounds".into()))?;
            let end = u32::try_from(i64::from(start) + len)
                .map_err(|_| Bad("a range out of bounds".into()))?;
            spans.push((start, end));
            prev = i64::from(end);
        }
        Ok(Shape { blocks, spans })
    }

    fn range(&mut self) -> Result<Option<Range>, Bad> {
        let start = self.varint()?;
        if start == 0 {
            return Ok(None);
        }
        let start = u32::try_from(start - 1).map_err(|_| Bad("a range out of bounds".into()))?;
        let end = u64::from(start)
            .checked_add(self.varint()?)
            .and_then(|e| u32::try_from(e).ok())
            .ok_or_else(|| Bad("a range out of bounds".into()))?;
        Ok(Some((start, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::layout::{BlockShape, ScopeShape, Shape};

    fn sample() -> Index {
        Index {
            stamp: Stamp {
                size: 1000,
                mtime_ns: 7,
                ends: 99,
                max_record: 64 << 20,
            },
            traces: vec![11, 22, 33],
            trace_spans: vec![1, 0, 2],
            first_time: Some(1_700_000_000_000_000_000),
            names: vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])],
            services: vec![("shop".into(), vec![0, 1, 2])],
            records: vec![
                Entry {
                    json: true,
                    location: Location::Line(1),
                    stored: Some(Stored {
                        offset: 0,
                        len: 500,
                        zstd: false,
                    }),
                    whole: false,
                    spans: 3,
                    traces: vec![2, 0, 2],
                    shape: Some(Shape {
                        blocks: vec![BlockShape {
                            resource: Some((20, 60)),
                            scopes: vec![ScopeShape {
                                scope: None,
                                spans: 3,
                            }],
                        }],
                        spans: vec![(100, 200), (201, 300), (301, 499)],
                    }),
                },
                Entry {
                    json: false,
                    location: Location::Offset(500),
                    stored: Some(Stored {
                        offset: 504,
                        len: 400,
                        zstd: true,
                    }),
                    whole: true,
                    spans: 2,
                    traces: vec![],
                    shape: None,
                },
            ],
            bad: vec![(1, Location::Offset(480), "truncated".into())],
        }
    }

    #[test]
    fn an_index_reads_back_as_written() {
        let index = sample();
        assert_eq!(decode(&encode(&index), Parts::All), Ok(index.clone()));
        let tables = decode(&encode(&index), Parts::Tables).unwrap();
        assert_eq!(
            (tables.names, tables.records.len()),
            (index.names.clone(), 0)
        );
        let records = decode(&encode(&index), Parts::Records).unwrap();
        assert_eq!((records.records, records.names.len()), (index.records, 0));
    }

    #[test]
    fn any_damage_is_refused_never_a_panic() {
        let bytes = encode(&sample());
        for at in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut damaged = bytes.clone();
                damaged[at] ^= bit;
                assert!(
                    decode(&damaged, Parts::All).is_err(),
                    "byte {at} bit {bit:#x} went unnoticed"
                );
            }
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], Parts::All).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn a_body_that_lies_is_refused_even_with_a_good_digest() {
        // A writer that was wrong (not damage): counts beyond what follows, ranges past
        // the record, traces not in the table.
        let mut index = sample();
        index.records[0].traces = vec![2, 0, 9];
        assert!(decode(&encode(&index), Parts::All).is_err());
        let mut index = sample();
        index.records[0].shape.as_mut().unwrap().spans[2] = (301, 900);
        assert!(decode(&encode(&index), Parts::All).is_err());
        let mut index = sample();
        index.names[0].1 = vec![0, 5];
        assert!(decode(&encode(&index), Parts::All).is_err());
        let mut index = sample();
        index.bad[0].0 = 3;
        assert!(decode(&encode(&index), Parts::All).is_err());
        // A record past the end of its input: a replay would read what the index says.
        let mut index = sample();
        index.records[1].stored.as_mut().unwrap().len = 900;
        assert!(decode(&encode(&index), Parts::All).is_err());
    }
}
