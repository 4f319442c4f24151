//! `betrace index INPUT…`: write an index beside each trace file, for replays that read
//! only what rules can judge.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use betrace::diagnostic::terminal::escape;
use betrace::replay::index::{self, build::build};
use betrace::replay::input::{self, Limits};

use super::{out, say, OK, USAGE};

/// Write an index beside each trace file: FILE.betrace-idx.
///
/// An index says which traces each span name and each service.name occur in, and where
/// each trace's spans lie, down to the spans inside each batch. `betrace replay` then uses
/// a fresh index by itself: it decodes only the spans of traces some rule can apply to
/// (a rule that needs a span named `charge` reads only traces that have one, whole) and
/// gives the same signals and evidence as without it. An index is a few percent of its
/// file's size, and is written faster than a replay reads the file.
///
/// An index records its file's size, modification time and a digest of its first and last
/// 64 KiB: when the file changes (a collector still writing it, a copy over it), replay
/// names the index as stale, ignores it and indexes the file in memory for that run. A file
/// whose index is fresh is left as it is (say so with --force to write it again), so
/// indexing files as they rotate is one line run every few minutes — from cron, or a
/// sidecar's loop — over the files not modified for a minute:
/// `find /var/otel -type f ! -name '*.betrace-idx' -mmin +1 -exec betrace index {} +`.
///
/// INPUT is a file or a directory (every file below it, index files left out). Standard
/// input cannot be indexed: an index lies beside its file. Exit code: 0; 2 when an input
/// is missing, cannot be read or has bad records (each is reported, and its index still
/// written), or an index cannot be written.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  betrace index /var/otel/traces/\n  betrace replay --rules rules/ /var/otel/traces/     # uses the indexes by itself"
)]
pub struct Args {
    /// The largest record read (a JSON line or object, or a message, after decompression),
    /// in MiB; a replay uses the index only with the same value.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096), value_name = "MIB")]
    pub max_record_mib: u32,
    /// Threads walking records (1 to 1024), or 0 for one per core.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024), value_name = "N")]
    pub threads: u16,
    /// Write the index again even where a fresh one exists.
    #[arg(long)]
    pub force: bool,
    /// Trace files or directories.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
}

/// Indexes every input and returns the exit code.
pub fn run(args: &Args) -> u8 {
    if args.inputs.iter().any(|i| i == "-") {
        say("error: standard input cannot be indexed: an index lies beside its file");
        return USAGE;
    }
    let files = match input::expand(&args.inputs) {
        Ok(f) => f,
        Err(bad) => {
            say(&format!("error: {}", escape(&bad.to_string())));
            return USAGE;
        }
    };
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => usize::from(n),
    };
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("betrace-index-{i}"))
            .build()
            .expect("start the walking threads"),
    );
    let limits = Limits {
        max_record_bytes: (args.max_record_mib as usize) << 20,
    };
    let mut code = OK;
    for file in &files {
        if !input::rereadable(file) {
            say(&format!(
                "error: {}: not a regular file (a pipe cannot be indexed)",
                escape(file)
            ));
            code = USAGE;
            continue;
        }
        if let Some(kept) = (!args.force)
            .then(|| index::load(file, limits.max_record_bytes as u64).ok())
            .flatten()
        {
            out(&format!(
                "{}: fresh, kept ({} bad records found when it was written)",
                escape(&index::path_for(file).display().to_string()),
                kept.bad.len()
            ));
            if !kept.bad.is_empty() {
                code = USAGE;
            }
            continue;
        }
        let started = std::time::Instant::now();
        let mut bad_records = 0u64;
        let bytes = Arc::new(AtomicU64::new(0));
        let built = build(file, file, limits, &pool, bytes, &mut |bad| {
            bad_records += 1;
            if bad_records <= 100 {
                say(&format!("error: {}", escape(&bad.to_string())));
            }
        });
        let (ix, built) = match built {
            Ok(b) => b,
            Err(bad) => {
                say(&format!("error: {}", escape(&bad.to_string())));
                code = USAGE;
                continue;
            }
        };
        if built.bad_records > 0 {
            code = USAGE;
        }
        match index::write(file, &ix) {
            Ok(size) => out(&format!(
                "{}: {} spans in {} traces, {} span names, {} records ({} read whole by replay), {} bad; index {} bytes ({}) in {:.2}s",
                escape(&index::path_for(file).display().to_string()),
                built.spans,
                built.traces,
                built.names,
                built.records,
                built.whole,
                built.bad_records,
                size,
                match ix.stamp.size {
                    0 => "the input is empty".to_string(),
                    n => format!("{:.2}% of the input", 100.0 * size as f64 / n as f64),
                },
                started.elapsed().as_secs_f64()
            )),
            Err(e) => {
                say(&format!(
                    "error: {}: cannot write the index: {e}",
                    escape(&index::path_for(file).display().to_string())
                ));
                code = USAGE;
            }
        }
    }
    code
}
