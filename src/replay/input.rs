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

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::otlp::{self, Batch};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// A length prefix above this is not a message: the file is corrupt or not OTLP.
const MAX_MESSAGE: usize = 1 << 30;
/// A JSON record spanning more lines than this is given up on.
const MAX_JSON_LINES: usize = 1_000_000;

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
    /// Decoded spans.
    Batch(Batch),
    /// A record skipped.
    Bad(BadRecord),
}

/// Expands inputs: files as given, directories to every regular file below them (sorted,
/// hidden files skipped), `-` for standard input.
pub fn expand(inputs: &[String]) -> Result<Vec<String>, BadRecord> {
    let mut out = Vec::new();
    for input in inputs {
        if input == "-" {
            out.push(input.clone());
            continue;
        }
        let path = Path::new(input);
        if path.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files).map_err(|e| BadRecord {
                source: input.clone(),
                location: Location::Whole,
                message: e.to_string(),
            })?;
            files.sort();
            out.extend(files.into_iter().map(|p| p.display().to_string()));
        } else if path.is_file() {
            out.push(input.clone());
        } else {
            return Err(BadRecord {
                source: input.clone(),
                location: Location::Whole,
                message: "no such file or directory".into(),
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Counts the raw bytes read from an input, for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

/// Reads one input, calling `sink` with each record in order; `bytes_read` counts the raw
/// bytes consumed. An I/O error opening or reading the input is reported as a bad record.
pub fn read(source: &str, bytes_read: Arc<AtomicU64>, sink: &mut dyn FnMut(Record)) {
    let raw: Box<dyn Read + Send> = if source == "-" {
        Box::new(io::stdin())
    } else {
        match File::open(source) {
            Ok(f) => Box::new(f),
            Err(e) => {
                return sink(Record::Bad(BadRecord {
                    source: source.into(),
                    location: Location::Whole,
                    message: e.to_string(),
                }))
            }
        }
    };
    let reader = BufReader::with_capacity(
        1 << 18,
        Counting {
            inner: raw,
            count: bytes_read,
        },
    );
    if let Err(e) = read_detected(source, Box::new(reader), sink, 0) {
        sink(Record::Bad(BadRecord {
            source: source.into(),
            location: Location::Whole,
            message: format!("read error: {e}"),
        }));
    }
}

fn read_detected(
    source: &str,
    mut reader: Box<dyn BufRead + Send>,
    sink: &mut dyn FnMut(Record),
    depth: u8,
) -> io::Result<()> {
    let head = peek(&mut reader, 4)?;
    if head.starts_with(&GZIP_MAGIC) && depth < 2 {
        let inner = BufReader::with_capacity(1 << 18, flate2::read::MultiGzDecoder::new(reader));
        return read_detected(source, Box::new(inner), sink, depth + 1);
    }
    if head.starts_with(&ZSTD_MAGIC) && depth < 2 {
        let inner =
            BufReader::with_capacity(1 << 18, zstd::stream::read::Decoder::with_buffer(reader)?);
        return read_detected(source, Box::new(inner), sink, depth + 1);
    }
    // Text (JSON lines, even when its first line is garbage) starts with a printable byte;
    // a length prefix starts with a small one (messages are far below 512 MiB).
    match head.first() {
        None => Ok(()),
        Some(&b) if b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r') => {
            read_json_lines(source, reader, sink)
        }
        Some(_) => read_length_prefixed(source, reader, sink),
    }
}

/// The first `n` bytes (fewer at end of input), without consuming them.
fn peek(reader: &mut Box<dyn BufRead + Send>, n: usize) -> io::Result<Vec<u8>> {
    let buf = reader.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

fn read_json_lines(
    source: &str,
    mut reader: Box<dyn BufRead + Send>,
    sink: &mut dyn FnMut(Record),
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut record = Vec::new();
    let (mut line_no, mut record_start, mut record_lines) = (0u64, 0u64, 0usize);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        if record.is_empty() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            record_start = line_no;
        }
        record.extend_from_slice(&line);
        record_lines += 1;
        match otlp::decode_json(&record) {
            Ok(batch) => sink(Record::Batch(batch)),
            // A pretty-printed object continues on the next lines.
            Err(otlp::DecodeError::Json(e)) if e.is_eof() && record_lines < MAX_JSON_LINES => {
                continue
            }
            Err(e) => sink(Record::Bad(BadRecord {
                source: source.into(),
                location: Location::Line(record_start),
                message: e.to_string(),
            })),
        }
        record.clear();
        record_lines = 0;
    }
    if !record.is_empty() {
        sink(Record::Bad(BadRecord {
            source: source.into(),
            location: Location::Line(record_start),
            message: "truncated JSON at end of input".into(),
        }));
    }
    Ok(())
}

fn read_length_prefixed(
    source: &str,
    mut reader: Box<dyn BufRead + Send>,
    sink: &mut dyn FnMut(Record),
) -> io::Result<()> {
    let mut offset = 0u64;
    let mut msg = Vec::new();
    loop {
        let mut len = [0u8; 4];
        let got = read_full(&mut reader, &mut len)?;
        if got == 0 {
            return Ok(());
        }
        let bad = |at: u64, message: String| {
            Record::Bad(BadRecord {
                source: source.into(),
                location: Location::Offset(at),
                message,
            })
        };
        if got < 4 {
            sink(bad(
                offset,
                format!("truncated length prefix ({got} of 4 bytes)"),
            ));
            return Ok(());
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_MESSAGE {
            sink(bad(offset, format!("length prefix {n} is not plausible: not a file-exporter protobuf stream, or corrupt; the rest of this input is skipped")));
            return Ok(());
        }
        msg.resize(n, 0);
        let got = read_full(&mut reader, &mut msg)?;
        if got < n {
            sink(bad(
                offset,
                format!("truncated message: {got} of {n} bytes"),
            ));
            return Ok(());
        }
        let decoded = if msg.starts_with(&ZSTD_MAGIC) {
            zstd::stream::decode_all(msg.as_slice())
                .map_err(|e| format!("invalid zstd message: {e}"))
        } else {
            Ok(std::mem::take(&mut msg))
        };
        let record = decoded.and_then(|body| {
            let is_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            let result = if is_json {
                otlp::decode_json(&body)
            } else {
                otlp::decode_protobuf(&body)
            };
            result.map_err(|e| e.to_string())
        });
        match record {
            Ok(batch) => sink(Record::Batch(batch)),
            Err(message) => sink(bad(offset, message)),
        }
        offset += 4 + n as u64;
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(reader: &mut Box<dyn BufRead + Send>, buf: &mut [u8]) -> io::Result<usize> {
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
