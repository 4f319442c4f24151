//! Whole-pipeline bench harness for `betrace replay`: one run each over a corpus of more
//! than a million spans, written as collector file-exporter JSON and as protobuf, with
//! decode-only throughput (read + decode + group by trace, no judging) beside it as the
//! ceiling. Prints a table; figures go in BENCHMARKS.md.
//!
//! `cargo bench --bench replay` (set BETRACE_BENCH_SPANS to change the corpus size).

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use betrace::replay::{self, input, Options, Progress, Record};
use betrace::RuleSet;
use betrace_corpus::{generate, write, Compression, Format};

fn main() {
    let want: usize = std::env::var("BETRACE_BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // The corpus averages about 20 spans a trace.
    let mut traces = want / 19;
    let corpus = loop {
        let c = generate(7, traces, 0.05);
        if c.span_count() >= want {
            break c;
        }
        traces += traces / 10 + 1;
    };
    let root = std::env::temp_dir().join(format!("betrace-bench-replay-{}", std::process::id()));
    println!(
        "corpus: {} traces, {} spans, {} injected violations",
        corpus.traces.len(),
        corpus.span_count(),
        corpus.expected.len()
    );
    println!(
        "{:<10} {:<14} {:>10} {:>9} {:>14} {:>9}",
        "input", "stage", "MB", "seconds", "spans/s", "MB/s"
    );
    for (name, format, compression) in [
        ("json", Format::Json, Compression::None),
        ("proto", Format::Proto, Compression::None),
        ("proto+zstd", Format::Proto, Compression::Zstd),
    ] {
        let dir = root.join(name);
        write(&dir, &corpus, format, compression, 500, 200).expect("write corpus");
        let mb = dir_bytes(&dir) as f64 / 1e6;

        let started = Instant::now();
        let spans = decode_only(&dir);
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(spans, corpus.span_count() as u64);
        println!(
            "{name:<10} {:<14} {mb:>10.1} {secs:>9.2} {:>14.0} {:>9.1}",
            "decode only",
            spans as f64 / secs,
            mb / secs
        );

        let (rules, _) =
            RuleSet::from_paths(&[concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules")])
                .expect("library loads");
        let opts = Options {
            inputs: vec![dir.display().to_string()],
            ..Options::default()
        };
        let started = Instant::now();
        let mut signals = 0u64;
        let summary = replay::run(
            rules,
            &opts,
            &Progress::default(),
            &mut |_| signals += 1,
            &mut |b| panic!("{b}"),
            &mut |_| {},
        )
        .expect("replay");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(
            signals,
            corpus.expected.len() as u64,
            "replay finds exactly the injected violations"
        );
        println!(
            "{name:<10} {:<14} {mb:>10.1} {secs:>9.2} {:>14.0} {:>9.1}",
            "replay",
            summary.spans as f64 / secs,
            mb / secs
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn decode_only(dir: &Path) -> u64 {
    let mut spans = 0u64;
    for f in input::expand(&[dir.display().to_string()]).expect("corpus files") {
        input::read(
            &f,
            Arc::new(AtomicU64::new(0)),
            input::Limits::default(),
            &Arc::new(betrace::trace::projected::Projection::new(
                Vec::<String>::new(),
                false,
            )),
            &mut |r| {
                match r {
                    Record::Batch(b, _) => spans += b.span_count() as u64,
                    Record::Bad(b) => panic!("{b}"),
                    Record::Pending(p) => unreachable!("not deferred: {p:?}"),
                }
                true
            },
        );
    }
    spans
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}
