//! `betrace-bench`: the in-process stages of `make bench`, each run as its own process so
//! that its CPU time and peak memory can be measured from outside (by `bench/peers.py`),
//! and the `tail_sampling` configuration the collector peer runs with.

mod frames;
mod jsonparse;
mod ottl;

use std::path::PathBuf;
use std::process::ExitCode;

use betrace::embed::session::{Live, Outputs};
use betrace::engine::buffer::BufferConfig;
use betrace::RuleSet;
use clap::{Parser, Subcommand};

/// The in-process stages of the peer benchmarks, over W1's protobuf files.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    stage: Stage,
}

#[derive(Subcommand)]
enum Stage {
    /// Decode every message with prost, nothing else — with the engine's allocator
    /// (`betrace-floor` is the same with the system allocator: the historical floor).
    Decode {
        /// File-exporter `format: proto` files or directories of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// The physical floor: walk the protobuf wire format of every batch, visiting every
    /// field (nested messages included), allocating nothing.
    WireWalk {
        /// File-exporter `format: proto` files or directories of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// The engine in process: decode, assemble and judge every trace against the rules,
    /// taking the signals out as OTLP log records after each batch, as the collector does.
    Engine {
        /// Rule files or directories (repeat the flag for more).
        #[arg(long, required = true)]
        rules: Vec<String>,
        /// The clock: batches arrive this many per second (simulated, not slept).
        #[arg(long, default_value_t = 50.0)]
        batches_per_second: f64,
        /// Hold every trace until the end (timeouts of 100 h, limits out of reach) and
        /// report the memory held: RSS after loading the rules, peak RSS, spans held.
        #[arg(long)]
        hold: bool,
        /// File-exporter `format: proto` files or directories of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Parses every line of OTLP/JSON files (`format: json`) into the same serde types with
    /// one JSON parser — serde_json, sonic-rs or simd-json — and nothing else: which parser
    /// replay should use.
    JsonParse {
        /// `serde_json`, `sonic-rs` or `simd-json`.
        #[arg(long)]
        parser: String,
        /// File-exporter `format: json` files or directories of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Rewrites W1's trace ids so that every trace has exactly `--spans-per-trace` spans
    /// (the last one fewer): spans taken trace by trace, cut into runs of that many, each
    /// run one trace. Batches, resources and span contents are unchanged, so that only the
    /// trace size differs from W1 — for the growth table's trace-size axis.
    Reshape {
        /// Spans in each trace written.
        #[arg(long)]
        spans_per_trace: usize,
        /// The directory to write (`part-NNNNN.pb`, 200 batches each).
        #[arg(long)]
        out: PathBuf,
        /// File-exporter `format: proto` files or directories of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Writes the `tail_sampling` policies that express the rules in OTTL where OTTL can,
    /// as a collector configuration fragment, and lists the rules it cannot express.
    TailSampling {
        /// Rule files or directories (repeat the flag for more).
        #[arg(long, required = true)]
        rules: Vec<String>,
        /// Where to write the configuration fragment.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Args::parse().stage) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("betrace-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn run(stage: Stage) -> Result<(), Error> {
    match stage {
        Stage::Decode { inputs } => decode(&inputs),
        Stage::WireWalk { inputs } => wire_walk(&inputs),
        Stage::Engine {
            rules,
            batches_per_second,
            hold,
            inputs,
        } => engine(&rules, batches_per_second, hold, &inputs),
        Stage::JsonParse { parser, inputs } => {
            let mut total = [0usize; 4];
            for path in frames::files(&inputs)? {
                let bytes = std::fs::read(&path)?;
                let t = jsonparse::parse(&parser, &bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                for (a, b) in total.iter_mut().zip(t) {
                    *a += b;
                }
            }
            println!(
                "{}",
                serde_json::json!({"parser": parser, "lines": total[0], "spans": total[1], "values": total[2], "bytes": total[3]})
            );
            Ok(())
        }
        Stage::Reshape {
            spans_per_trace,
            out,
            inputs,
        } => reshape(spans_per_trace, &out, &inputs),
        Stage::TailSampling { rules, out } => tail_sampling(&rules, &out),
    }
}

fn decode(inputs: &[PathBuf]) -> Result<(), Error> {
    let (batches, spans) = frames::decode_all(inputs)?;
    println!(
        "{}",
        serde_json::json!({"batches": batches, "spans": spans})
    );
    Ok(())
}

fn wire_walk(inputs: &[PathBuf]) -> Result<(), Error> {
    let (mut batches, mut fields) = (0usize, 0u64);
    frames::for_each(inputs, |m| {
        fields += betrace::otlp::wire::walk(m);
        batches += 1;
        Ok(())
    })?;
    println!(
        "{}",
        serde_json::json!({"batches": batches, "fields": fields})
    );
    Ok(())
}

/// A line of `/proc/self/status` in kB (`VmRSS`, `VmHWM`); 0 where there is none.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn engine(
    rules: &[String],
    batches_per_second: f64,
    hold: bool,
    inputs: &[PathBuf],
) -> Result<(), Error> {
    let sources = betrace::rules::read_sources(rules)?;
    let config = if hold {
        const HOURS_100: u64 = 100 * 3600 * 1_000_000_000;
        BufferConfig {
            trace_idle_timeout: HOURS_100,
            max_trace_age: HOURS_100,
            max_traces: usize::MAX,
            max_spans: usize::MAX,
            max_bytes: usize::MAX,
        }
    } else {
        BufferConfig::default()
    };
    let live = Live::new(sources, config, Outputs::default())?;
    let rss_after_rules_kb = status_kb("VmRSS:");
    let step = (1e9 / batches_per_second.max(1e-3)) as u64;
    let mut now = 1_000_000_000u64;
    let (mut batches, mut signals) = (0usize, 0usize);
    frames::for_each(inputs, |m| {
        live.ingest(m, 0, now)?;
        live.tick(now);
        signals += live.take_logs().1;
        now += step;
        batches += 1;
        Ok(())
    })?;
    let (held_spans, held_bytes) = {
        let c = live.counters();
        (c.held_spans, c.held_bytes)
    };
    let peak_kb = status_kb("VmHWM:");
    live.shutdown(now);
    signals += live.take_logs().1;
    let stats = live.stats();
    let mut report = serde_json::json!({
        "batches": batches,
        "spans": stats.counters.spans_in,
        "signals": signals,
        "decode_errors": stats.counters.decode_errors,
        "held_spans": held_spans,
        "traces": stats.counters.traces_in,
        "rss_after_rules_kb": rss_after_rules_kb,
        "peak_rss_kb_before_shutdown": peak_kb,
    });
    if hold && held_spans > 0 {
        // Only when everything was held does the peak measure what a held span costs.
        let grown = (peak_kb.saturating_sub(rss_after_rules_kb) * 1024) as f64;
        report["bytes_per_held_span"] = (grown / held_spans as f64).into();
        // The engine's own estimate (what memory_limit_mib bounds) against the growth.
        report["held_bytes"] = held_bytes.into();
        report["held_bytes_of_rss_growth"] = (held_bytes as f64 / grown).into();
    }
    println!("{report}");
    Ok(())
}

fn reshape(spans_per_trace: usize, out: &PathBuf, inputs: &[PathBuf]) -> Result<(), Error> {
    use opentelemetry_proto::tonic::trace::v1::TracesData;
    use prost::Message;
    use std::collections::HashMap;
    if spans_per_trace == 0 {
        return Err("--spans-per-trace must be at least 1".into());
    }
    let spans_of = |data: &TracesData| -> Vec<Vec<u8>> {
        let spans = data.resource_spans.iter().flat_map(|r| &r.scope_spans);
        spans
            .flat_map(|s| &s.spans)
            .map(|s| s.trace_id.clone())
            .collect()
    };
    // Pass 1: each trace's span count, in order of first appearance.
    let mut order: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut counts: Vec<usize> = Vec::new();
    frames::for_each(inputs, |m| {
        for id in spans_of(&TracesData::decode(m)?) {
            let i = *order.entry(id).or_insert_with(|| {
                counts.push(0);
                counts.len() - 1
            });
            counts[i] += 1;
        }
        Ok(())
    })?;
    // Where each trace's spans start when all spans are laid out trace by trace.
    let mut base = Vec::with_capacity(counts.len());
    let mut at = 0usize;
    for c in &counts {
        base.push(at);
        at += c;
    }
    // Pass 2: the k-th span of a trace goes to run (base + k) / spans_per_trace.
    std::fs::create_dir_all(out)?;
    let mut seen = vec![0usize; counts.len()];
    let (mut batch, mut file, mut bytes, mut traces) = (0usize, 0usize, Vec::new(), 0usize);
    let new_id = |run: usize| -> Vec<u8> {
        // SplitMix64 of the run number: ids spread like random ones (shards, hashes).
        let mut z = (run as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let mut id = z.to_be_bytes().to_vec();
        id.extend_from_slice(&(run as u64 + 1).to_be_bytes());
        id
    };
    frames::for_each(inputs, |m| {
        let mut data = TracesData::decode(m)?;
        for rs in &mut data.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    let i = order[&span.trace_id];
                    let run = (base[i] + seen[i]) / spans_per_trace;
                    seen[i] += 1;
                    traces = traces.max(run + 1);
                    span.trace_id = new_id(run);
                }
            }
        }
        let body = data.encode_to_vec();
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        batch += 1;
        if batch % 200 == 0 {
            std::fs::write(
                out.join(format!("part-{file:05}.pb")),
                std::mem::take(&mut bytes),
            )?;
            file += 1;
        }
        Ok(())
    })?;
    if !bytes.is_empty() {
        std::fs::write(out.join(format!("part-{file:05}.pb")), bytes)?;
    }
    println!(
        "{}",
        serde_json::json!({"batches": batch, "spans": at, "traces": traces})
    );
    Ok(())
}

fn tail_sampling(rules: &[String], out: &PathBuf) -> Result<(), Error> {
    let (set, _) = RuleSet::from_paths(rules)?;
    let t = ottl::translate(&set);
    let mut yaml = format!(
        "# Generated by `betrace-bench tail-sampling` from {}: {} of {} rules expressed.\n",
        rules.join(", "),
        t.expressed.len(),
        t.expressed.len() + t.unexpressed.len()
    );
    yaml.push_str("# Not expressible with tail_sampling and OTTL:\n");
    for (id, why) in &t.unexpressed {
        yaml.push_str(&format!("#   {id}: {why}\n"));
    }
    // JSON is YAML: the collector reads this file as one more --config.
    let root = serde_json::json!({"processors": {"tail_sampling": {"policies": t.policies}}});
    yaml.push_str(&serde_json::to_string_pretty(&root)?);
    yaml.push('\n');
    std::fs::write(out, yaml)?;
    println!(
        "{}",
        serde_json::json!({
            "expressed": t.expressed,
            "unexpressed": t.unexpressed.iter().map(|(id, why)| serde_json::json!({"id": id, "why": why})).collect::<Vec<_>>(),
        })
    );
    Ok(())
}
