//! The index: `betrace index FILE…` writes `FILE.betrace-idx` beside each input, and a
//! replay reads through it only the spans of traces some rule can apply to
//! (docs/replay.md, "The index").
//!
//! An index holds, for its input file:
//!
//! * which traces each span name and each `service.name` occur in (traces are numbered in
//!   the file, and kept as a 64-bit key of their id, so that a trace spread over several
//!   files is recognised in each);
//! * for every record (a JSON line or object, a length-prefixed message), where it lies in
//!   the file and which trace each of its spans belongs to, in the order the decoders read
//!   them; for JSON, also where each span, resource and scope lies in the record's text
//!   (protobuf is walked again instead, for a fraction of a decode's cost);
//! * the records that could not be read, as a replay reports them;
//! * the input's size, modification time and a digest of its first and last 64 KiB, and
//!   the record size limit it was read with: an index that does not match its input now
//!   is stale, and is named and ignored.
//!
//! [`build`] writes one; [`select`] plans a replay with them and reads through them.

pub mod build;
mod codec;
pub mod select;

use std::fmt;
use std::fs::File;
use std::hash::Hasher;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::otlp::layout::Shape;
use crate::replay::input::Stored;
use crate::replay::Location;
use crate::trace::TraceId;

/// What an index file's name adds to its input's.
pub const SUFFIX: &str = ".betrace-idx";

/// Bytes of each end of the input that the index's digest covers.
const ENDS: u64 = 64 << 10;

/// What an index knows of the file it indexes, to tell whether it is still that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The input's size in bytes.
    pub size: u64,
    /// Its modification time, in nanoseconds since the Unix epoch (0 if unknown).
    pub mtime_ns: u64,
    /// A digest of its first and last 64 KiB.
    pub ends: u64,
    /// The record size limit it was read with (`--max-record-mib`): which records were
    /// skipped as too large depends on it.
    pub max_record: u64,
}

impl Stamp {
    /// The stamp of `path` as it is now, read with `max_record` as the record size limit.
    pub fn of(path: &Path, max_record: u64) -> io::Result<Stamp> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let size = meta.len();
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
        let mut h = fnv::FnvHasher::default();
        let mut buf = Vec::with_capacity(ENDS as usize);
        (&mut file).take(ENDS).read_to_end(&mut buf)?;
        h.write(&buf);
        if size > ENDS {
            buf.clear();
            file.seek(SeekFrom::Start(size.saturating_sub(ENDS).max(ENDS)))?;
            (&mut file).take(ENDS).read_to_end(&mut buf)?;
            h.write(&buf);
        }
        h.write_u64(size);
        Ok(Stamp {
            size,
            mtime_ns,
            ends: h.finish(),
            max_record,
        })
    }
}

/// One input file's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The input it indexes, as it was.
    pub stamp: Stamp,
    /// Each trace's key ([`trace_key`]), by its number in this file.
    pub traces: Vec<u64>,
    /// Each trace's spans in records a replay can cut (not those decoded whole), by number.
    pub trace_spans: Vec<u32>,
    /// The time the input starts at, as a replay merges inputs: the median end of the
    /// plausible spans of its first record that has one.
    pub first_time: Option<u64>,
    /// Each span name, with the numbers of the traces it occurs in (ascending).
    pub names: Vec<(String, Vec<u32>)>,
    /// Each `service.name`, with the numbers of the traces it occurs in (ascending).
    pub services: Vec<(String, Vec<u32>)>,
    /// Every record, in the order of the file.
    pub records: Vec<Entry>,
    /// Records that could not be read: before which record, where, and why.
    pub bad: Vec<(u32, Location, String)>,
}

/// One record of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Whether it is JSON (else protobuf).
    pub json: bool,
    /// Where a replay's reports place it.
    pub location: Location,
    /// Where its bytes lie in the file (unknown inside a file compressed whole).
    pub stored: Option<Stored>,
    /// Whether it must be decoded whole: some span in it could not be placed without doubt
    /// (its trace numbers are then left out).
    pub whole: bool,
    /// Its spans (those placed, for a record decoded whole).
    pub spans: u32,
    /// The trace number of each span, in the order the decoders read them (empty when
    /// decoded whole).
    pub traces: Vec<u32>,
    /// For JSON read from the file: where its parts lie in its text.
    pub shape: Option<Shape>,
}

/// The key a trace is known by in indexes: 64 bits of its id, mixed. Two traces sharing a
/// key are both read (a superset of what the rules need is always exact).
pub fn trace_key(id: &TraceId) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(&id.0);
    h.finish()
}

/// Where the index of `input` lies.
pub fn path_for(input: &str) -> PathBuf {
    PathBuf::from(format!("{input}{SUFFIX}"))
}

/// Whether a path names an index file (left out when a directory's files are replayed).
pub fn is_index(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(SUFFIX))
}

/// Why an input's index is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// There is none.
    Missing,
    /// It indexes the file as it was before a change (the reason says what changed).
    Stale(String),
    /// It is not an index, or is damaged (the reason says how).
    Damaged(String),
    /// It was written by another version of the index format.
    Version(u32),
    /// It, or its input, could not be read.
    Unreadable(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::Missing => write!(f, "has no index"),
            Unusable::Stale(why) => write!(f, "is stale ({why})"),
            Unusable::Damaged(why) => write!(f, "is damaged ({why})"),
            Unusable::Version(v) => write!(
                f,
                "was written by another version of BeTrace (index format {v}, this one reads {})",
                codec::VERSION
            ),
            Unusable::Unreadable(why) => write!(f, "cannot be read ({why})"),
        }
    }
}

/// The index of `input` if there is one and it indexes the file as it is now.
pub fn load(input: &str, max_record: u64) -> Result<Index, Unusable> {
    load_parts(input, max_record, codec::Parts::All)
}

/// [`load`], inflating only the parts asked for (the others are left empty).
fn load_parts(input: &str, max_record: u64, parts: codec::Parts) -> Result<Index, Unusable> {
    let path = path_for(input);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Unreadable(e.to_string())),
    };
    let then = codec::stamp_of(&bytes).map_err(refused)?;
    let now =
        Stamp::of(Path::new(input), max_record).map_err(|e| Unusable::Unreadable(e.to_string()))?;
    if let Some(why) = changed(&then, &now) {
        return Err(Unusable::Stale(why));
    }
    codec::decode(&bytes, parts).map_err(refused)
}

/// Why an index file's bytes were refused, as a reason to give.
fn refused(r: codec::Refused) -> Unusable {
    match r {
        codec::Refused::Version(v) => Unusable::Version(v),
        codec::Refused::Damaged(why) => Unusable::Damaged(why),
    }
}

/// What differs between an index's stamp and its input's now, if anything.
fn changed(then: &Stamp, now: &Stamp) -> Option<String> {
    if then.size != now.size {
        Some(format!(
            "the input was {} bytes when indexed and is {} now",
            then.size, now.size
        ))
    } else if then.ends != now.ends {
        Some("the input's contents changed since it was indexed".into())
    } else if then.mtime_ns != now.mtime_ns {
        Some("the input was modified since it was indexed".into())
    } else if then.max_record != now.max_record {
        Some(format!(
            "indexed with --max-record-mib {}, replayed with {}",
            then.max_record >> 20,
            now.max_record >> 20
        ))
    } else {
        None
    }
}

/// Writes `index` beside `input`, whole or not at all (a temporary file renamed into
/// place); returns the index file's size.
pub fn write(input: &str, index: &Index) -> io::Result<u64> {
    let path = path_for(input);
    let bytes = codec::encode(index);
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    Ok(bytes.len() as u64)
}

/// An index from the bytes of an index file, checked as [`load`] checks it, without
/// comparing it with its input (for tools and fuzzing).
pub fn from_bytes(bytes: &[u8]) -> Result<Index, Unusable> {
    codec::decode(bytes, codec::Parts::All).map_err(refused)
}
