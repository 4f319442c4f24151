//! Reading the collector file exporter's `format: proto` files: each record is a 4-byte
//! big-endian length followed by that many bytes of `TracesData` (the same wire format as
//! an OTLP `ExportTraceServiceRequest`).

use std::path::{Path, PathBuf};

/// Why a file of length-prefixed messages could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The file could not be read.
    Io(PathBuf, std::io::Error),
    /// A length prefix promises more bytes than the file holds.
    Truncated(PathBuf, usize),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            FrameError::Truncated(p, at) => {
                write!(f, "{}: byte {at}: truncated message", p.display())
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// The files to read, in order: files as given, directories file by file, sorted.
pub fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, FrameError> {
    let mut out = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            out.push(input.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(input)
            .map_err(|e| FrameError::Io(input.clone(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Calls `each` with every message of every file, in order, holding one file in memory at
/// a time (so that a stage's peak memory is its own, not the workload's).
pub fn for_each(
    inputs: &[PathBuf],
    mut each: impl FnMut(&[u8]) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    for path in files(inputs)? {
        let bytes = std::fs::read(&path).map_err(|e| FrameError::Io(path.clone(), e))?;
        for message in split(&path, &bytes)? {
            each(message)?;
        }
    }
    Ok(())
}

/// Cuts one file's bytes into its messages.
pub fn split<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, FrameError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(prefix) = bytes.get(at..at + 4) else {
            return Err(FrameError::Truncated(path.to_path_buf(), at));
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            return Err(FrameError::Truncated(path.to_path_buf(), at));
        };
        out.push(body);
        at += 4 + len;
    }
    Ok(out)
}

/// Prost-decodes every message of `inputs` into the OTLP types: (batches, spans). The
/// decode floor, shared by `betrace-floor` (system allocator) and `betrace-bench decode`
/// (the engine's allocator).
pub fn decode_all(inputs: &[PathBuf]) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    use opentelemetry_proto::tonic::trace::v1::TracesData;
    use prost::Message;
    let (mut batches, mut spans) = (0usize, 0usize);
    for_each(inputs, |m| {
        let data = TracesData::decode(m)?;
        spans += data
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum::<usize>();
        batches += 1;
        Ok(())
    })?;
    Ok((batches, spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_messages_and_reports_truncation() {
        let mut bytes = Vec::new();
        for body in [&b"abc"[..], b"", b"de"] {
            bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
            bytes.extend_from_slice(body);
        }
        let out = split(Path::new("f"), &bytes).unwrap();
        assert_eq!(out, vec![&b"abc"[..], b"", b"de"]);

        bytes.truncate(bytes.len() - 1);
        let err = split(Path::new("f"), &bytes).unwrap_err();
        assert_eq!(err.to_string(), "f: byte 11: truncated message");
    }
}
