//! `betrace-corpus`: write a deterministic trace corpus as collector file-exporter output.

use std::path::PathBuf;

use betrace_corpus::{generate, write, write_expected, Compression, Format};
use clap::{Parser, ValueEnum};

/// Write a deterministic corpus of traces from the BeTrace seeds' domains, with known
/// injected violations, as the collector's `file` exporter writes it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of traces.
    #[arg(long, default_value_t = 1000)]
    traces: usize,
    /// Share of traces that carry one injected violation.
    #[arg(long, default_value_t = 0.05)]
    rate: f64,
    /// The exporter's `format`.
    #[arg(long, value_enum, default_value = "json")]
    format: Fmt,
    /// The exporter's `compression`.
    #[arg(long, value_enum, default_value = "none")]
    compression: Comp,
    /// Spans per exported batch (one line or message each).
    #[arg(long, default_value_t = 200)]
    spans_per_batch: usize,
    /// Batches per file before rotating.
    #[arg(long, default_value_t = 500)]
    batches_per_file: usize,
    /// Where to write the trace files.
    #[arg(long)]
    out: PathBuf,
    /// Where to write the expected violations (JSON lines); not inside --out.
    #[arg(long)]
    expected: Option<PathBuf>,
    /// Share of traces (0 to 1) that also carry a span named `refund.review`, which no
    /// other trace has: a rule on it is as selective as this (the index benchmarks use
    /// 0.01). Chosen by trace number, so the rest of the corpus is the same bytes.
    #[arg(long, default_value_t = 0.0)]
    rare: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Fmt {
    Json,
    Proto,
}

#[derive(Clone, Copy, ValueEnum)]
enum Comp {
    None,
    Zstd,
}

/// Gives a `rare` share of traces, evenly spread, one more span: `refund.review`, a child
/// of the trace's last span, inside its time.
fn add_rare(corpus: &mut betrace_corpus::Corpus, rare: f64) {
    let every = if rare > 0.0 {
        (1.0 / rare.min(1.0)).round() as usize
    } else {
        return;
    };
    for t in corpus.traces.iter_mut().step_by(every.max(1)) {
        let Some((service, last)) = t.spans.last().cloned() else {
            continue;
        };
        let mut span = last.clone();
        span.name = "refund.review".into();
        span.parent_span_id = last.span_id.clone();
        span.span_id = last.span_id.iter().map(|b| b ^ 0x5a).collect();
        span.attributes.clear();
        t.spans.push((service, span));
    }
}

fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let mut corpus = generate(a.seed, a.traces, a.rate);
    add_rare(&mut corpus, a.rare);
    let format = match a.format {
        Fmt::Json => Format::Json,
        Fmt::Proto => Format::Proto,
    };
    let compression = match a.compression {
        Comp::None => Compression::None,
        Comp::Zstd => Compression::Zstd,
    };
    let files = write(
        &a.out,
        &corpus,
        format,
        compression,
        a.spans_per_batch,
        a.batches_per_file,
    )?;
    if let Some(path) = &a.expected {
        write_expected(path, &corpus)?;
    }
    let mut sizes: Vec<usize> = corpus.traces.iter().map(|t| t.spans.len()).collect();
    sizes.sort_unstable();
    let attrs = corpus
        .traces
        .iter()
        .flat_map(|t| t.spans.iter().map(|(_, s)| s.attributes.len()));
    let (min_attrs, max_attrs) = attrs.fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
    eprintln!(
        "wrote {} traces, {} spans, {} injected violations in {} file(s) under {}; \
         spans per trace {}..={} (median {}), attributes per span {}..={}",
        corpus.traces.len(),
        corpus.span_count(),
        corpus.expected.len(),
        files.len(),
        a.out.display(),
        sizes.first().copied().unwrap_or(0),
        sizes.last().copied().unwrap_or(0),
        sizes.get(sizes.len() / 2).copied().unwrap_or(0),
        min_attrs,
        max_attrs,
    );
    Ok(())
}
