//! Reading what a collector's `file` exporter writes, whatever its `format` and
//! `compression`, detected from the content:
//!
//! * JSON lines: one OTLP/JSON `TracesData` per line (a pretty-printed object spanning
//!   several lines is read too);
//! * length-prefixed messages: a 4-byte big-endian length before each message, each message
//!   protobuf or JSON, and zstd-compressed when it starts with the zstd magic;
//! * any of the above compressed whole with gzip or zstd.
//!
//! Bad records are reported with their file and line or byte offset, and reading goes on.
//! A record larger than [`Limits::max_record_bytes`] (after decompression) is skipped and
//! reported, never held whole.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::otlp::{self, Batch};
use crate::rules::{Walk, WalkNote};
use crate::trace::projected::Projection;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Where a bad record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A line (1-based) of a JSON-lines input.
    Line(u64),
    /// A byte offset into the (decompressed) input of length-prefixed messages.
    Offset(u64),
    /// The input as a whole.
    Whole,
}

/// A record that could not be read, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The input's name as given.
    pub source: String,
    /// Where in it.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Location::Line(n) => write!(f, "{}:{n}: {}", self.source, self.message),
            Location::Offset(o) => write!(f, "{}: byte {o}: {}", self.source, self.message),
            Location::Whole => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// What reading an input yields, in order.
#[derive(Debug)]
pub enum Record {
    /// Decoded spans, and where they were read.
    Batch(Batch, Location),
    /// A record read but not decoded yet (when reading with `defer`): decode it anywhere,
    /// on another thread, with [`Pending::decode`].
    Pending(Pending),
    /// A record skipped.
    Bad(BadRecord),
}

/// A record's bytes, to be decoded.
#[derive(Debug)]
pub struct Pending {
    body: Body,
    json: bool,
    location: Location,
    source: Arc<str>,
    projection: Arc<Projection>,
    /// Where the record's bytes lie in the file, when they can be read there again.
    stored: Option<Stored>,
}

/// A record's bytes: read, or to be read where the record is decoded (a replay through an
/// index reads and cuts the spans it needs on the decoding threads).
enum Body {
    Read(Vec<u8>),
    Later(Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Read(b) => write!(f, "{} bytes", b.len()),
            Body::Later(_) => write!(f, "bytes read later"),
        }
    }
}

/// Where a record's bytes lie in its file: `len` bytes at `offset`, its body as they are
/// or, with `zstd`, once inflated. Known when the file is not compressed whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Where the bytes start.
    pub offset: u64,
    /// How many there are.
    pub len: u64,
    /// Whether they are one zstd frame, inflating to the body.
    pub zstd: bool,
}

impl Pending {
    /// A record to decode, its bytes read by `body` where it is decoded (JSON when
    /// `json`); `location` of `source` places it in reports.
    pub(crate) fn later(
        body: Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>,
        json: bool,
        location: Location,
        source: Arc<str>,
        projection: Arc<Projection>,
    ) -> Pending {
        Pending {
            body: Body::Later(body),
            json,
            location,
            source,
            projection,
            stored: None,
        }
    }

    /// The record's bytes (inflated; an error when reading them later failed), whether
    /// they are JSON, where it was read, and where its bytes lie in the file.
    pub(crate) fn into_parts(self) -> (Result<Vec<u8>, String>, bool, Location, Option<Stored>) {
        let body = match self.body {
            Body::Read(b) => Ok(b),
            Body::Later(read) => read(),
        };
        (body, self.json, self.location, self.stored)
    }

    /// Decodes the record: a batch, or a bad record saying why not.
    pub fn decode(self) -> Record {
        let (source, projection) = (self.source.clone(), self.projection.clone());
        let (body, json, location, _) = self.into_parts();
        let result = match body {
            Ok(body) if json => otlp::decode_json(&body, &projection).map_err(|e| e.to_string()),
            Ok(body) => otlp::decode_protobuf(&body, &projection).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(batch) => Record::Batch(batch, location),
            Err(message) => Record::Bad(BadRecord {
                source: source.to_string(),
                location,
                message,
            }),
        }
    }
}

/// Expands inputs: files as given (pipes too, such as `<(zstdcat x.zst)`), directories to
/// every regular file below them (sorted, hidden files skipped), `-` for standard input.
/// Each directory and each file is visited once, however many links lead to it: a file
/// reached twice is read once, and a link loop is reported on standard error (or through
/// `tracing` when the embedder listens) and not followed.
pub fn expand(inputs: &[String]) -> Result<Vec<String>, BadRecord> {
    let (out, notes) = expand_noting(inputs)?;
    for note in &notes {
        crate::rules::warn_walk_note(note);
    }
    Ok(out)
}

/// [`expand`], returning what the walk left out (link loops, unresolvable links) instead
/// of reporting it.
pub fn expand_noting(inputs: &[String]) -> Result<(Vec<String>, Vec<WalkNote>), BadRecord> {
    let mut walk = Walk::new();
    let mut out = Vec::new();
    for input in inputs {
        if input == "-" {
            out.push(input.clone());
            continue;
        }
        let path = Path::new(input);
        if path.is_dir() {
            let mut files = walk
                .files(path, None, &|p: &Path| !super::index::is_index(p))
                .map_err(|e| BadRecord {
                    source: input.clone(),
                    location: Location::Whole,
                    message: e.to_string(),
                })?;
            files.sort();
            out.extend(files.into_iter().map(|p| p.display().to_string()));
        } else if path.exists() {
            // An index beside its input (`traces/*` names both) is not traces.
            if super::index::is_index(path) {
                continue;
            }
            if walk.first_visit_file(path) {
                out.push(input.clone());
            }
        } else {
            return Err(BadRecord {
                source: input.clone(),
                location: Location::Whole,
                message: "no such file or directory".into(),
            });
        }
    }
    Ok((out, walk.take_notes()))
}

/// Counts the raw bytes read from an input, for progress.
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

/// Limits on what one record may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest record (a JSON line or object, or a length-prefixed message, after
    /// decompression) that is read; larger ones are skipped and reported.
    pub max_record_bytes: usize,
}

impl Default for Limits {
    /// 64 MiB: above the collector's OTLP receivers' request limits (gRPC 4 MiB, HTTP
    /// 20 MiB by default), so whatever a collector accepted and wrote is read.
    fn default() -> Self {
        Limits {
            max_record_bytes: 64 << 20,
        }
    }
}

/// Receives an input's records in order; returns false to stop reading the input.
pub type Sink<'a> = dyn FnMut(Record) -> bool + 'a;

/// Whether an input can be read twice: a regular file (not standard input or a pipe, whose
/// first read would consume it).
pub fn rereadable(source: &str) -> bool {
    source != "-" && std::fs::metadata(source).is_ok_and(|m| m.is_file())
}

/// Reads one input, calling `sink` with each record in order until it returns false;
/// `bytes_read` counts the raw bytes consumed. An I/O error opening or reading the input is
/// reported as a bad record.
pub fn read(
    source: &str,
    bytes_read: Arc<AtomicU64>,
    limits: Limits,
    projection: &Arc<Projection>,
    sink: &mut Sink<'_>,
) {
    read_deferred(source, source, bytes_read, limits, projection, false, sink)
}

/// [`read`], but the file read (`path`, `-` for standard input) may be another than the
/// one reports name (`name`: a spooled copy of a pipe is reported as the pipe), and with
/// `defer` each record comes as [`Record::Pending`], for the caller to decode where it
/// likes (replay decodes on every core).
pub fn read_deferred(
    name: &str,
    path: &str,
    bytes_read: Arc<AtomicU64>,
    limits: Limits,
    projection: &Arc<Projection>,
    defer: bool,
    sink: &mut Sink<'_>,
) {
    let raw: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else {
        match File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                sink(Record::Bad(BadRecord {
                    source: name.into(),
                    location: Location::Whole,
                    message: e.to_string(),
                }));
                return;
            }
        }
    };
    read_from(
        name,
        Box::new(Counting {
            inner: raw,
            count: bytes_read,
        }),
        limits,
        projection,
        defer,
        sink,
    );
}

/// Reads an input already open (`source` names it in reports), as [`read`] does; spans
/// keep what `projection` reads.
pub fn read_from(
    source: &str,
    raw: Box<dyn Read + Send>,
    limits: Limits,
    projection: &Arc<Projection>,
    defer: bool,
    sink: &mut Sink<'_>,
) {
    let buffered = BufReader::with_capacity(1 << 18, raw);
    let mut reader = Reader {
        source,
        shared_source: Arc::from(source),
        limits,
        projection,
        defer,
        sink,
        open: true,
        seekable: false,
    };
    if let Err(e) = reader.detected(Box::new(buffered), 0) {
        reader.emit(Record::Bad(BadRecord {
            source: source.into(),
            location: Location::Whole,
            message: format!("read error: {e}"),
        }));
    }
}

/// One input being read.
struct Reader<'a, 'b> {
    source: &'a str,
    shared_source: Arc<str>,
    limits: Limits,
    projection: &'a Arc<Projection>,
    /// Emit records undecoded.
    defer: bool,
    sink: &'a mut Sink<'b>,
    /// False once the sink asked to stop.
    open: bool,
    /// Whether offsets in the stream being read are offsets in the file (it is not
    /// compressed whole).
    seekable: bool,
}

impl Reader<'_, '_> {
    /// Decodes a record's bytes here, or hands them on undecoded.
    fn record(&mut self, body: Vec<u8>, json: bool, location: Location, stored: Option<Stored>) {
        let pending = Pending {
            body: Body::Read(body),
            json,
            location,
            source: self.shared_source.clone(),
            projection: self.projection.clone(),
            stored: stored.filter(|_| self.seekable),
        };
        let record = if self.defer {
            Record::Pending(pending)
        } else {
            pending.decode()
        };
        self.emit(record);
    }

    fn emit(&mut self, record: Record) {
        if self.open {
            self.open = (self.sink)(record);
        }
    }

    fn bad(&mut self, location: Location, message: String) {
        self.emit(Record::Bad(BadRecord {
            source: self.source.into(),
            location,
            message,
        }));
    }

    fn detected(&mut self, mut reader: Box<dyn BufRead + Send>, depth: u8) -> io::Result<()> {
        let head = peek(&mut reader, 4)?;
        if head.starts_with(&GZIP_MAGIC) && depth < 2 {
            let inner =
                BufReader::with_capacity(1 << 18, flate2::read::MultiGzDecoder::new(reader));
            return self.detected(Box::new(inner), depth + 1);
        }
        if head.starts_with(&ZSTD_MAGIC) && depth < 2 {
            let inner = BufReader::with_capacity(
                1 << 18,
                zstd::stream::read::Decoder::with_buffer(reader)?,
            );
            return self.detected(Box::new(inner), depth + 1);
        }
        // Text (JSON lines, even when its first line is garbage) has no control bytes but
        // white space; a length prefix has one (a NUL below 16 MiB) in its first 4 bytes.
        let text = |b: &u8| *b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r');
        self.seekable = depth == 0;
        if head.is_empty() {
            Ok(())
        } else if head.iter().all(text) {
            self.json_lines(reader)
        } else {
            self.length_prefixed(reader)
        }
    }

    /// JSON lines, or pretty-printed objects over several lines. Each record is decoded
    /// once, when its braces close, so reading is linear in the input. A line that ends
    /// inside a string, or a record interrupted by a line starting a new object at column
    /// 0, was truncated: it is reported and the next line stands alone.
    fn json_lines(&mut self, mut reader: Box<dyn BufRead + Send>) -> io::Result<()> {
        let max = self.limits.max_record_bytes;
        let mut line = Vec::new();
        let mut record = Vec::new();
        let mut scan = Braces::default();
        let (mut line_no, mut record_start) = (0u64, 0u64);
        // Byte offsets in the stream: of the line being read, of the record's first byte.
        let (mut pos, mut record_pos) = (0u64, 0u64);
        while self.open {
            line.clear();
            let line_pos = pos;
            let room = max.saturating_sub(record.len());
            let (read, cut) = read_line_capped(&mut reader, &mut line, room)?;
            if read == 0 {
                break;
            }
            pos += read as u64;
            line_no += 1;
            let mut body_pos = line_pos;
            if line_no == 1 && line.starts_with(&BOM) {
                line.drain(..BOM.len());
                body_pos += BOM.len() as u64;
            }
            if cut {
                self.bad(
                    Location::Line(if record.is_empty() {
                        line_no
                    } else {
                        record_start
                    }),
                    format!("record larger than {} skipped (--max-record-mib)", mib(max)),
                );
                record.clear();
                scan = Braces::default();
                continue;
            }
            if !record.is_empty() && line.first() == Some(&b'{') {
                self.bad(
                    Location::Line(record_start),
                    "truncated JSON: the record ends before its braces close".into(),
                );
                record.clear();
                scan = Braces::default();
            }
            if record.is_empty() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                record_start = line_no;
                record_pos = body_pos;
            }
            scan.feed(&line);
            if record.is_empty() && scan.depth <= 0 && !scan.in_string {
                // One line, one record (what the file exporter writes): hand the line on
                // as it is, without copying it.
                let capacity = line.capacity();
                let body = std::mem::replace(&mut line, Vec::with_capacity(capacity));
                let stored = Stored {
                    offset: record_pos,
                    len: body.len() as u64,
                    zstd: false,
                };
                self.record(body, true, Location::Line(record_start), Some(stored));
                scan = Braces::default();
                continue;
            }
            record.extend_from_slice(&line);
            if scan.depth > 0 && !scan.in_string {
                continue; // a pretty-printed object goes on
            }
            if scan.in_string {
                self.bad(
                    Location::Line(record_start),
                    "truncated JSON: the line ends inside a string".into(),
                );
                record.clear();
            } else {
                let capacity = record.capacity();
                let body = std::mem::replace(&mut record, Vec::with_capacity(capacity));
                let stored = Stored {
                    offset: record_pos,
                    len: body.len() as u64,
                    zstd: false,
                };
                self.record(body, true, Location::Line(record_start), Some(stored));
            }
            scan = Braces::default();
        }
        if !record.is_empty() && self.open {
            self.bad(
                Location::Line(record_start),
                "truncated JSON at end of input".into(),
            );
        }
        Ok(())
    }

    fn length_prefixed(&mut self, mut reader: Box<dyn BufRead + Send>) -> io::Result<()> {
        let max = self.limits.max_record_bytes;
        let mut offset = 0u64;
        let mut msg = Vec::new();
        while self.open {
            let mut len = [0u8; 4];
            let got = read_full(&mut reader, &mut len)?;
            if got == 0 {
                return Ok(());
            }
            if got < 4 {
                self.bad(
                    Location::Offset(offset),
                    format!("truncated length prefix ({got} of 4 bytes)"),
                );
                return Ok(());
            }
            let n = u32::from_be_bytes(len) as usize;
            if n > max {
                // Skip it without holding it; a prefix past the end is a corrupt stream.
                let skipped = io::copy(&mut (&mut reader).take(n as u64), &mut io::sink())?;
                if skipped < n as u64 {
                    self.bad(
                        Location::Offset(offset),
                        format!("length prefix {n} runs past the end of the input ({skipped} bytes follow): not a file-exporter stream, or corrupt"),
                    );
                    return Ok(());
                }
                self.bad(
                    Location::Offset(offset),
                    format!(
                        "message of {n} bytes larger than {} skipped (--max-record-mib)",
                        mib(max)
                    ),
                );
                offset += 4 + n as u64;
                continue;
            }
            // Read what is there, growing as it comes past the first MiB: a prefix claiming
            // 60 MiB in front of 8 bytes allocates at most one MiB. (Sized up front, an
            // ordinary message is read without reallocating as it grows.)
            msg.clear();
            msg.reserve_exact(n.min(1 << 20));
            let got = (&mut reader).take(n as u64).read_to_end(&mut msg)?;
            if got < n {
                self.bad(
                    Location::Offset(offset),
                    format!("truncated message: {got} of {n} bytes"),
                );
                return Ok(());
            }
            let stored = Stored {
                offset: offset + 4,
                len: n as u64,
                zstd: msg.starts_with(&ZSTD_MAGIC),
            };
            let body = if stored.zstd {
                inflate_capped(&msg, max)
            } else {
                Ok(std::mem::take(&mut msg))
            };
            match body {
                Ok(body) => {
                    let is_json = looks_like_json(&body);
                    self.record(body, is_json, Location::Offset(offset), Some(stored));
                }
                Err(message) => self.bad(Location::Offset(offset), message),
            }
            offset += 4 + n as u64;
        }
        Ok(())
    }
}

const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// Whether a length-prefixed message is OTLP/JSON rather than protobuf: its first byte
/// other than whitespace is `{`. A protobuf `TracesData` starts with 0x0a — a newline —
/// and, when its first `ResourceSpans` is 123 bytes long, with `{` next: such a message
/// reads as JSON only if it is not a well-formed protobuf message.
fn looks_like_json(body: &[u8]) -> bool {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    body.first() != Some(&b'\n') || !crate::otlp::wire::well_formed(body)
}

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes.div_ceil(1 << 20))
}

/// Inflates one zstd message, refusing to produce more than `max` bytes (a bomb).
pub(crate) fn inflate_capped(packed: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let decoder = zstd::stream::read::Decoder::new(packed)
        .map_err(|e| format!("invalid zstd message: {e}"))?;
    let mut out = Vec::new();
    decoder
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("invalid zstd message: {e}"))?;
    if out.len() > max {
        return Err(format!(
            "zstd message inflating past {} skipped (--max-record-mib)",
            mib(max)
        ));
    }
    Ok(out)
}

/// Tracks brace depth over JSON text, outside strings.
#[derive(Default)]
struct Braces {
    depth: i64,
    in_string: bool,
    escaped: bool,
}

impl Braces {
    fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                // Most of OTLP/JSON is inside strings: jump to the next quote or backslash.
                // (A raw newline inside a string is left for the caller: truncated.)
                match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                    None => return,
                    Some(at) => {
                        i += at;
                        if bytes[i] == b'\\' {
                            self.escaped = true;
                        } else {
                            self.in_string = false;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            match bytes[i] {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => self.depth -= 1,
                _ => {}
            }
            i += 1;
        }
    }
}

/// Reads one line (through its `\n`) into `line`, keeping at most `room` bytes; the rest of
/// a longer line is consumed and dropped. Returns (bytes consumed, whether it was cut).
fn read_line_capped(
    reader: &mut Box<dyn BufRead + Send>,
    line: &mut Vec<u8>,
    room: usize,
) -> io::Result<(usize, bool)> {
    let (mut read, mut cut) = (0usize, false);
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((read, cut));
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let keep = take.min(room.saturating_sub(line.len()));
        if keep < take {
            cut = true;
        }
        if !cut {
            line.extend_from_slice(&buf[..keep]);
        }
        reader.consume(take);
        read += take;
        if done {
            return Ok((read, cut));
        }
    }
}

/// The first `n` bytes (fewer at end of input), without consuming them.
fn peek(reader: &mut Box<dyn BufRead + Send>, n: usize) -> io::Result<Vec<u8>> {
    let buf = reader.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

/// Reads until `buf` is full or the input ends; returns how much was read.
/// Reads until `buf` is full or the input ends; how many bytes it read (fewer than
/// `buf.len()` only at the end).
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protobuf_message_that_starts_like_json_is_protobuf() {
        // TracesData { resource_spans: [ResourceSpans { resource: Resource { attributes:
        // [KeyValue { key: "kkk…" }] } }] }, its ResourceSpans 123 bytes long: 0x0a (a
        // newline), then 123, which is `{`.
        let mut kv = vec![0x0a, 117];
        kv.extend([b'k'; 117]);
        let mut resource = vec![0x0a, kv.len() as u8];
        resource.extend(&kv);
        let mut spans = vec![0x0a, resource.len() as u8];
        spans.extend(&resource);
        assert_eq!(spans.len(), 123);
        let mut message = vec![0x0a, 123];
        message.extend(&spans);
        assert!(message.starts_with(b"\n{"));
        assert!(!looks_like_json(&message));
        // JSON stays JSON, after any whitespace, a newline first too.
        for json in [
            &b"{\"resourceSpans\":[]}"[..],
            b"  {\"resourceSpans\":[]}",
            b"\n{\"resourceSpans\":[]}\n",
            b"\n{}",
        ] {
            assert!(looks_like_json(json), "{}", String::from_utf8_lossy(json));
        }
        assert!(!looks_like_json(&[0x0a, 0x02, 0x0a, 0x00]));
    }

    #[cfg(unix)]
    #[test]
    fn expand_visits_each_directory_and_file_once_and_notes_loops() {
        use std::os::unix::fs::symlink;
        let d = std::env::temp_dir().join(format!("betrace-expand-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        for f in ["a/1.json", "a/b/2.json", "a/b/c/3.json"] {
            std::fs::write(d.join(f), "{}").unwrap();
        }
        // Two links to an ancestor: followed, the walk doubles at every level.
        symlink(d.join("a"), d.join("a/b/c/up1")).unwrap();
        symlink(d.join("a"), d.join("a/b/c/up2")).unwrap();
        // One link to the top: followed, the same files again.
        symlink(&d, d.join("a/top")).unwrap();
        symlink(d.join("a/1.json"), d.join("a/b/same.json")).unwrap();
        let top = d.display().to_string();
        let file = format!("{top}/a/1.json");
        let (files, notes) = expand_noting(&[top, file]).unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        let mut unique = files.clone();
        unique.dedup();
        assert_eq!(unique.len(), 3);
        let loops = notes
            .iter()
            .filter(|n| matches!(n, WalkNote::Loop(_)))
            .count();
        assert_eq!(loops, 3, "{notes:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
