//! The complete traces the mining pass saw, kept in the spill directory ([`packed`]) so
//! that judging the candidates reads them back instead of decoding the input again: on the
//! bench workload, judging costs half what a second pass over OTLP did (docs/discover.md,
//! "How it works"; BENCHMARKS.md, "discover").
//!
//! Each mining engine's observer writes its own file. A stream that stops to spill judges
//! every trace again from its partitions: what was kept of the stream is removed
//! ([`Kept::reset`]). A write that fails (a full disk) leaves the kept traces unusable, and
//! judging then replays the input as before; so does any reason the kept traces might not
//! be what a replay judges ([`super::run`] says which).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::replay::input::read_full;
use crate::replay::spill::Dir;
use crate::trace::projected::packed;
use crate::trace::projected::Trace;

/// The files the traces are kept in.
pub(crate) struct Kept {
    dir: Arc<Dir>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    files: Vec<String>,
    made: usize,
    /// Why the files cannot be used, once one write failed.
    failed: Option<String>,
}

impl Kept {
    /// Nothing kept yet; files go into `dir`.
    pub(crate) fn new(dir: Arc<Dir>) -> Kept {
        Kept {
            dir,
            state: Mutex::new(State::default()),
        }
    }

    /// A writer to a new file of its own (one per mining engine).
    pub(crate) fn writer(self: &Arc<Self>) -> Writer {
        let made = {
            let mut s = self.state.lock();
            s.made += 1;
            s.made
        };
        let out = match self.dir.create(&format!("mined-{made}.traces")) {
            Ok((file, path)) => {
                self.state.lock().files.push(path);
                Some(BufWriter::with_capacity(1 << 20, file))
            }
            Err(e) => {
                self.fail(e.message);
                None
            }
        };
        Writer {
            out,
            buf: Vec::new(),
            kept: self.clone(),
        }
    }

    /// Forgets (and removes) what was kept so far: every trace is mined again.
    pub(crate) fn reset(&self) {
        let mut s = self.state.lock();
        for f in s.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
    }

    /// The files written, or why they cannot be used.
    pub(crate) fn files(&self) -> Result<Vec<String>, String> {
        let s = self.state.lock();
        match &s.failed {
            Some(why) => Err(why.clone()),
            None => Ok(s.files.clone()),
        }
    }

    fn fail(&self, why: String) {
        self.state.lock().failed.get_or_insert(why);
    }
}

/// Writes one engine's kept traces; flushed when dropped.
pub(crate) struct Writer {
    out: Option<BufWriter<File>>,
    buf: Vec<u8>,
    kept: Arc<Kept>,
}

impl Writer {
    /// Keeps a trace: its length (4 bytes, little-endian), then its bytes.
    pub(crate) fn add(&mut self, t: &Trace) {
        let Some(out) = &mut self.out else {
            return;
        };
        self.buf.clear();
        packed::write(t, &mut self.buf);
        let wrote = match u32::try_from(self.buf.len()) {
            Ok(n) => out
                .write_all(&n.to_le_bytes())
                .and_then(|()| out.write_all(&self.buf))
                .map_err(|e| e.to_string()),
            Err(_) => Err("a trace of more than 4 GiB".to_string()),
        };
        if let Err(e) = wrote {
            self.kept.fail(format!("keeping the mined traces: {e}"));
            self.out = None;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                self.kept.fail(format!("keeping the mined traces: {e}"));
            }
        }
    }
}

/// Reads a kept file's records in order: each one's bytes.
pub(crate) struct Records {
    input: BufReader<File>,
    buf: Vec<u8>,
}

impl Records {
    /// Opens a kept file.
    pub(crate) fn open(path: &str) -> std::io::Result<Records> {
        Ok(Records {
            input: BufReader::with_capacity(1 << 20, File::open(path)?),
            buf: Vec::new(),
        })
    }

    /// The next record's bytes; `None` at the end of the file.
    pub(crate) fn next_record(&mut self) -> std::io::Result<Option<&[u8]>> {
        let mut len = [0u8; 4];
        match read_full(&mut self.input, &mut len)? {
            0 => return Ok(None),
            4 => {}
            _ => return Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.input.read_exact(&mut self.buf)?;
        Ok(Some(&self.buf))
    }
}
