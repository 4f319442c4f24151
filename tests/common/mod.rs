//! Helpers shared by the integration tests that run the `betrace` binary.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value as Json;

/// A test's scratch directory, removed when it goes out of scope — also when the test
/// fails — so that test runs do not fill the machine's temporary directory (a corpus or a
/// deep chain of tens of MB per test, per run).
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory named for the process and `name`.
pub fn tmp(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("betrace-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Runs `betrace replay` with extra args; returns (exit code, stdout, stderr).
pub fn replay(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_betrace"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("replay")
        .args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn jsonl(s: &str) -> Vec<Json> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// (trace id, rule id) pairs of signals, sorted.
pub fn pairs(signals: &[Json]) -> Vec<(String, String)> {
    let mut v: Vec<_> = signals
        .iter()
        .map(|s| {
            (
                s["trace_id"].as_str().unwrap().to_string(),
                s["rule_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn expected(corpus: &betrace_corpus::Corpus) -> Vec<(String, String)> {
    let mut v: Vec<_> = corpus
        .expected
        .iter()
        .map(|(t, r)| (t.clone(), r.to_string()))
        .collect();
    v.sort();
    v
}

/// A small deterministic generator (xorshift), so every permutation can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// One record per line, JSON or length-prefixed protobuf.
pub fn write_records(path: &Path, records: &[Vec<u8>], format: betrace_corpus::Format) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for r in records {
        match format {
            betrace_corpus::Format::Json => {
                out.write_all(r).unwrap();
                out.write_all(b"\n").unwrap();
            }
            betrace_corpus::Format::Proto => {
                out.write_all(&(r.len() as u32).to_be_bytes()).unwrap();
                out.write_all(r).unwrap();
            }
        }
    }
    out.flush().unwrap();
}
