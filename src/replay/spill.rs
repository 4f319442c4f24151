//! Spilling: input that is not in time order, judged by partitions of trace ids.
//!
//! Everything is read again and each batch's fragments are written, by trace id, into one
//! of [`FANOUT`] partition files in the spill directory — OTLP protobuf, length-prefixed,
//! as the collector's file exporter writes it, with only what the rules read. Then each
//! partition is read back on one of the judging threads, its fragments sorted by
//! [`Key`] and fed to an engine of its own: the signals are those of a stream in time
//! order ([`super::order`]). A partition holding more than a judging thread's share of
//! `--max-spans`/`--max-traces` is split again (at most [`MAX_LEVEL`] times; past that,
//! one trace alone is that large and is judged as it is).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use prost::Message as _;

use super::input::Counting;
use super::order::Key;
use super::{
    next_message, spawn_reader, BadRecord, Counts, Ctx, Held, Judged, Location, Message, Spilled,
};
use crate::trace::projected::Trace;
use crate::trace::TraceId;

/// Partition files a spill writes (and a partition too large is split into).
pub const FANOUT: usize = 64;

/// Most times a partition is split again.
pub const MAX_LEVEL: u32 = 3;

/// The spill directories made and not yet removed, for [`remove_live`].
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes every spill directory still there: what the `betrace` command does when it is
/// interrupted (SIGINT, SIGTERM), where no destructor runs — a spill, a spooled input or the
/// traces `betrace discover` keeps can be most of the input's size.
pub fn remove_live() {
    for dir in LIVE.lock().drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The spill directory: made on first use inside the one asked for (or the system's
/// temporary directory), removed with everything in it when dropped.
pub(crate) struct Dir {
    base: Option<PathBuf>,
    made: OnceLock<Result<PathBuf, String>>,
}

impl Dir {
    /// A spill directory to be made inside `base` when first needed.
    pub(crate) fn new(base: Option<PathBuf>) -> Dir {
        Dir {
            base,
            made: OnceLock::new(),
        }
    }

    /// The directory, made now if it is not yet.
    fn path(&self) -> Result<&Path, BadRecord> {
        let made = self.made.get_or_init(|| {
            let base = self.base.clone().unwrap_or_else(std::env::temp_dir);
            let nanos = crate::engine::signal::now_unix_nano();
            let dir = base.join(format!(
                "betrace-spill-{}-{:x}",
                std::process::id(),
                nanos & 0xffff_ffff
            ));
            // Known before it exists: an interruption between the two still removes it.
            LIVE.lock().push(dir.clone());
            match std::fs::create_dir_all(&dir) {
                Ok(()) => Ok(dir),
                Err(e) => {
                    LIVE.lock().retain(|d| *d != dir);
                    Err(format!("{}: {e}", base.display()))
                }
            }
        });
        made.as_deref().map_err(|e| BadRecord {
            source: "--spill-dir".into(),
            location: Location::Whole,
            message: format!("cannot make a spill directory: {e}"),
        })
    }

    /// A new file `name` in the directory, and its path.
    pub(crate) fn create(&self, name: &str) -> Result<(File, String), BadRecord> {
        let path = self.path()?.join(name);
        let file = File::create(&path).map_err(|e| BadRecord {
            source: "--spill-dir".into(),
            location: Location::Whole,
            message: format!("cannot write {}: {e}", path.display()),
        })?;
        Ok((file, path.display().to_string()))
    }

    /// Copies an input that cannot be read twice (standard input, a pipe) into the
    /// directory; returns the copy's path.
    pub(crate) fn spool(
        &self,
        name: &str,
        order: usize,
        bytes: &Arc<AtomicU64>,
    ) -> Result<String, BadRecord> {
        let path = self.path()?.join(format!("input-{order}"));
        let bad = |e: std::io::Error| BadRecord {
            source: name.into(),
            location: Location::Whole,
            message: format!("spooling to {}: {e}", path.display()),
        };
        let raw: Box<dyn Read> = if name == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(File::open(name).map_err(bad)?)
        };
        let mut counted = Counting {
            inner: raw,
            count: bytes.clone(),
        };
        let mut out = BufWriter::new(File::create(&path).map_err(bad)?);
        std::io::copy(&mut counted, &mut out).map_err(bad)?;
        out.flush().map_err(bad)?;
        Ok(path.display().to_string())
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if let Some(Ok(dir)) = self.made.get() {
            let _ = std::fs::remove_dir_all(dir);
            LIVE.lock().retain(|d| d != dir);
        }
    }
}

/// The partition (of `FANOUT`) a trace goes to at `level`: a different mix per level, so
/// that a partition split again spreads.
fn partition_of(id: &TraceId, level: u32) -> usize {
    const MIX: [u64; 4] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x27D4_EB2F_1656_67C5,
    ];
    let (a, b) = id.0.split_at(8);
    let h = u64::from_le_bytes(a.try_into().expect("8 bytes"))
        ^ u64::from_le_bytes(b.try_into().expect("8 bytes")).rotate_left(level * 17);
    ((h.wrapping_mul(MIX[level as usize % 4]) >> 40) % FANOUT as u64) as usize
}

/// Partition files being written.
struct Parts {
    files: Vec<(PathBuf, BufWriter<File>, u64)>,
    level: u32,
    bytes: u64,
}

impl Parts {
    fn create(dir: &Path, prefix: &str, level: u32) -> std::io::Result<Parts> {
        let mut files = Vec::with_capacity(FANOUT);
        for i in 0..FANOUT {
            let path = dir.join(format!("{prefix}-{i}.otlp"));
            let f = File::create(&path)?;
            files.push((path, BufWriter::with_capacity(1 << 16, f), 0));
        }
        Ok(Parts {
            files,
            level,
            bytes: 0,
        })
    }

    /// Writes fragments to their partitions, each as a message of its own: a message read
    /// back is one fragment per trace, so two fragments of a trace in one message would
    /// come back as one (and be judged as if they had arrived together).
    fn write(&mut self, fragments: Vec<Trace>) -> std::io::Result<()> {
        for f in fragments {
            if f.spans.is_empty() {
                continue;
            }
            let i = partition_of(&f.trace_id, self.level);
            let group = [f];
            let body = crate::otlp::encode::fragments(&group).encode_to_vec();
            let spans = group[0].spans.len();
            let Ok(len) = u32::try_from(body.len()) else {
                return Err(std::io::Error::other(
                    "one trace's spans in one record take more than 4 GiB",
                ));
            };
            let (_, w, n) = &mut self.files[i];
            w.write_all(&len.to_be_bytes())?;
            w.write_all(&body)?;
            *n += spans as u64;
            self.bytes += 4 + body.len() as u64;
        }
        Ok(())
    }

    /// Closes the files: (path, spans) of each that holds any.
    fn finish(self) -> std::io::Result<Vec<(PathBuf, u64)>> {
        let mut out = Vec::new();
        for (path, mut w, n) in self.files {
            w.flush()?;
            drop(w);
            if n > 0 {
                out.push((path, n));
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(out)
    }
}

/// Reads every input again into partition files, then judges each partition whole.
pub(crate) fn judge(
    ctx: &Ctx<'_>,
    dir: &Dir,
    reason: String,
    counts: &mut Counts,
    on_bad: &mut dyn FnMut(&BadRecord),
) -> Result<(Judged, Spilled), BadRecord> {
    let root = dir.path()?.to_path_buf();
    let io = |e: std::io::Error| BadRecord {
        source: "--spill-dir".into(),
        location: Location::Whole,
        message: format!("writing partitions in {}: {e}", root.display()),
    };
    let mut parts = Parts::create(&root, "part-0", 0).map_err(io)?;
    let projection = ctx.rules.projection().clone();
    for order in 0..ctx.sources.len() {
        let (rx, reader) = spawn_reader(ctx, order);
        while let Some(m) = next_message(&rx) {
            match m {
                Message::Batch(batch, location, stamp) => {
                    ctx.count_batch(counts, order, on_bad, &batch, &location, stamp);
                    parts.write(batch.fragments).map_err(io)?;
                }
                Message::Bad(b) => counts.bad_record(order, on_bad, &b),
                Message::Pending(_) => unreachable!("a decoded record is not pending"),
            }
        }
        reader.join().expect("a reading thread does not panic");
        ctx.progress.inputs_done.fetch_add(1, Relaxed);
    }
    let spans = parts.files.iter().map(|f| f.2).sum();
    let written = parts.bytes;
    let (max_spans, max_traces) = ctx.share();
    let work = Work {
        queue: Mutex::new(
            parts
                .finish()
                .map_err(io)?
                .into_iter()
                .map(|(p, n)| (p, n, 0))
                .collect(),
        ),
        root: &root,
        projection: &projection,
        limit: max_spans.min(max_traces) as u64,
        judged: AtomicU64::new(0),
        split_bytes: AtomicU64::new(0),
    };
    let results: Vec<Result<Judged, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..ctx.judges)
            .map(|i| {
                let work = &work;
                std::thread::Builder::new()
                    .name(format!("betrace-judge-{i}"))
                    .spawn_scoped(scope, move || work.run(ctx))
                    .expect("spawn a judging thread")
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a judging thread does not panic"))
            .collect()
    });
    let mut judged = Judged::default();
    for part in results {
        judged.absorb(part.map_err(|message| BadRecord {
            source: "--spill-dir".into(),
            location: Location::Whole,
            message,
        })?);
    }
    Ok((
        judged,
        Spilled {
            reason,
            spans,
            partitions: work.judged.load(Relaxed),
            bytes: written + work.split_bytes.load(Relaxed),
        },
    ))
}

/// The partitions left to judge, shared by the judging threads.
struct Work<'a> {
    /// (file, spans, times split) of each partition not yet taken.
    queue: Mutex<Vec<(PathBuf, u64, u32)>>,
    root: &'a Path,
    projection: &'a Arc<crate::trace::projected::Projection>,
    /// Most spans a partition judged whole may hold.
    limit: u64,
    /// Partitions judged.
    judged: AtomicU64,
    /// Bytes written when splitting partitions again.
    split_bytes: AtomicU64,
}

impl Work<'_> {
    /// Takes partitions until none is left: each is split again when too large (and of
    /// more than one trace, and not split too often yet), else judged whole.
    fn run(&self, ctx: &Ctx<'_>) -> Result<Judged, String> {
        let mut judged = Judged::default();
        loop {
            let Some((path, spans, level)) = self.queue.lock().pop() else {
                return Ok(judged);
            };
            let frags = read_partition(&path, self.projection)?;
            let _ = std::fs::remove_file(&path);
            if spans > self.limit && level < MAX_LEVEL && distinct_traces(&frags) > 1 {
                let files = self
                    .split(&path, frags, level + 1)
                    .map_err(|e| format!("writing partitions in {}: {e}", self.root.display()))?;
                let again = files.into_iter().map(|(p, n)| (p, n, level + 1));
                self.queue.lock().extend(again);
            } else {
                self.judged.fetch_add(1, Relaxed);
                judge_partition(ctx, frags, &mut judged);
            }
        }
    }

    /// Writes a partition's fragments into partitions of the next level.
    fn split(
        &self,
        path: &Path,
        frags: Vec<Trace>,
        level: u32,
    ) -> std::io::Result<Vec<(PathBuf, u64)>> {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("part");
        let mut parts = Parts::create(self.root, &format!("{stem}-s"), level)?;
        parts.write(frags)?;
        self.split_bytes.fetch_add(parts.bytes, Relaxed);
        parts.finish()
    }
}

/// A partition file's fragments, as written. The file is BeTrace's own: one it cannot open
/// or read back whole is an error, never spans quietly left out.
fn read_partition(
    path: &Path,
    projection: &Arc<crate::trace::projected::Projection>,
) -> Result<Vec<Trace>, String> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let (mut frags, mut bad) = (Vec::new(), None);
    super::input::read_from(
        &name,
        Box::new(file),
        super::Limits {
            max_record_bytes: usize::MAX >> 1,
        },
        projection,
        false,
        &mut |r| match r {
            super::Record::Batch(b, _) => {
                frags.extend(b.fragments);
                true
            }
            super::Record::Bad(b) => {
                bad = Some(b.to_string());
                false
            }
            super::Record::Pending(_) => unreachable!("read without deferring"),
        },
    );
    match bad {
        Some(why) => Err(format!("reading a partition back: {why}")),
        None => Ok(frags),
    }
}

fn distinct_traces(frags: &[Trace]) -> usize {
    let mut ids: Vec<TraceId> = frags.iter().map(|f| f.trace_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// Judges one partition's fragments in time order on an engine of its own.
fn judge_partition(ctx: &Ctx<'_>, frags: Vec<Trace>, judged: &mut Judged) {
    let mut keyed: Vec<(Key, Trace)> = frags
        .into_iter()
        .filter(|f| !f.spans.is_empty())
        .map(|f| (Key::of(&f, ctx.horizon), f))
        .collect();
    keyed.sort_by_key(|k| k.0);
    let engine = ctx.engine();
    let mut signals = Held::new(ctx.opts.signals_per_rule);
    let mut it = keyed.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<(Trace, u64)> = it.by_ref().take(4096).map(|(k, f)| (f, k.time)).collect();
        let clock = chunk.last().map_or(0, |c| c.1);
        signals.extend(engine.ingest_each(chunk));
        // Only what is due before `clock`: the next fragment may end at `clock` too.
        signals.extend(engine.tick(clock.saturating_sub(1)));
    }
    signals.extend(engine.shutdown());
    judged.add(&engine, signals.into_vec());
}
