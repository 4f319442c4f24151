//! `betrace discover`: candidate rules mined from stored traces (docs/discover.md).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use betrace::discover::{self, render, Found, Options, Summary};
use betrace::engine::buffer::{BufferConfig, DEFAULT_MAX_SPANS, DEFAULT_MAX_TRACES};
use betrace::engine::signal::{now_unix_nano, parse_time, rfc3339};
use betrace::replay::jaeger::JaegerOptions;
use betrace::replay::{self, Limits, Progress};

use super::replay::{
    dir_size, duration, end_of, jaeger_url, progress_bar, store_progress, HOUR, MILLISECOND, MONTH,
};
use super::{load_rules, paths, say, OK, USAGE};
use betrace::diagnostic::terminal::escape;

/// Find the invariants nobody wrote down: mine stored traces for candidate rules in
/// BeTrace's own language, each with its evidence, ready to paste, test and replay.
///
/// INPUT is read as `betrace replay` reads it: collector `file` exporter output (JSON
/// lines or protobuf, plain or compressed), files and lines in any order, directories, `-`
/// for standard input. With --jaeger instead of INPUT, the traces come from a Jaeger v2
/// store (its api_v3 query API over HTTP): every trace whose first span starts between
/// --from and --to is fetched once into the spill directory, then mined as a file is; a
/// store that fails stops the run (exit code 2). Only complete traces (one root, every span
/// reaching it) are mined.
///
/// Templates (docs/discover.md): existence (`when { A } always { B }`), precedence
/// (`A before B`), response (`B after $a`, `… until A`), time bounds (`… within D`: the
/// 99th percentile and half again, rounded up), structure (`child_of`, `within`), partners (`own`),
/// attribute agreement (`B.where(k == $a.k)`), idempotency (`distinct(A, k) == 1`) and
/// counts (`count(A) <= K`).
///
/// Every candidate is then judged by the engine over the same input, as a rule with
/// `incomplete: skip`: its support (complete traces it applied to), violations and
/// exceptions are what `betrace replay` of it gives. Near-invariants come first (broken in
/// only a few traces, which they name: the traces to look at), then the rest, each by the
/// Wilson lower bound of its confidence; candidates are pruned when below the thresholds,
/// implied by another, already in --rules, or failing the holdout.
///
/// Output: a rule file `betrace check` accepts (`enabled: false`, tagged `discovered`, the
/// scores in the description, examples cut from real traces that `betrace test` passes),
/// `--format jsonl` or `--format table`; `--report FILE.html` for a team to review. A
/// summary goes to stderr. Exit code: 0, also when
/// nothing is found; 2 on bad input.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  betrace discover examples/traces\n  betrace discover --format table --top 20 /var/otel/traces/\n  betrace discover --rules rules/ --holdout 0.3 --output candidates.yaml traces/\n  betrace discover --jaeger http://jaeger-query:16686 --from 2024-11-01 --to 2024-11-25 --format table\n  betrace test candidates.yaml && betrace replay --rules candidates.yaml --format summary traces/"
)]
pub struct Args {
    /// Rules already written (files, directories, globs; repeat the flag): candidates they
    /// state are not reported.
    #[arg(long, action = clap::ArgAction::Append, value_name = "KNOWN")]
    pub rules: Vec<String>,
    /// Least complete traces a candidate must apply to. [default: 1% of the traces mined,
    /// at least 5]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub min_support: Option<u64>,
    /// Least confidence (the share of the traces it applied to that held it), from 0.5 to
    /// 1. [default: 0.95]
    #[arg(long, value_parser = confidence, value_name = "C")]
    pub min_confidence: Option<f64>,
    /// Mine on the earlier part of the traces (by start time) and check every candidate on
    /// the last FRACTION (0.05 to 0.5): one whose confidence clearly does not hold there is
    /// dropped.
    #[arg(long, value_parser = holdout, value_name = "FRACTION")]
    pub holdout: Option<f64>,
    /// Most candidates reported, best first (0: all).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Write the candidates here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<String>,
    /// Also write the candidates, their exceptions and examples as one self-contained HTML
    /// page here, for a team to review together.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<String>,
    /// Mine only traces whose first span starts at or after this time (RFC 3339 or a date).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// …at or before this time (RFC 3339, or a date meaning the whole of that day).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// A trace is complete this long (in span time) after its last span, as live.
    #[arg(long, default_value = "5s", value_parser = duration::<MILLISECOND, MONTH>, value_name = "DURATION")]
    pub trace_idle_timeout: u64,
    /// …at the latest this long after its first span.
    #[arg(long, default_value = "60s", value_parser = duration::<MILLISECOND, MONTH>, value_name = "DURATION")]
    pub max_trace_age: u64,
    /// Most traces held in memory at once; beyond it, the input is spilled to disk.
    #[arg(long, default_value_t = DEFAULT_MAX_TRACES as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000), value_name = "N")]
    pub max_traces: u64,
    /// Most spans held in memory at once; beyond it, the input is spilled to disk.
    #[arg(long, default_value_t = DEFAULT_MAX_SPANS as u64, value_parser = clap::value_parser!(u64).range(1..=10_000_000_000), value_name = "N")]
    pub max_spans: u64,
    /// Threads decoding and mining (0: one per core).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024), value_name = "N")]
    pub threads: u16,
    /// Where to spool standard input, spill input that is not in time order, and keep the
    /// traces mined for judging (about three quarters of the input's size, protobuf; a full
    /// disk only makes judging read the input again); removed at the end.
    /// [default: the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<std::path::PathBuf>,
    /// Read every input whole, even those with an index.
    #[arg(long)]
    pub no_index: bool,
    /// Mine the traces of this Jaeger v2 query service (api_v3 over HTTP) instead of files;
    /// needs --from and --to.
    #[arg(long, value_name = "URL", value_parser = jaeger_url, conflicts_with = "inputs")]
    pub jaeger: Option<String>,
    /// With --jaeger: only this service (repeat the flag for several; default: all).
    #[arg(long, value_name = "SERVICE", action = clap::ArgAction::Append)]
    pub service: Vec<String>,
    /// With --jaeger: traces asked for per query (`query.num_traces`). A slice of time
    /// that returns this many is split and asked again, so any value lists everything;
    /// larger means fewer queries. Halved when the store refuses it. [default: 1000]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub jaeger_limit: Option<u32>,
    /// With --jaeger: longest one request may take (1ms to 1h). [default: 60s]
    #[arg(long, value_parser = duration::<MILLISECOND, HOUR>, value_name = "DURATION")]
    pub jaeger_timeout: Option<u64>,
    /// Trace files, directories, or - for standard input.
    #[arg(required_unless_present = "jaeger", value_name = "INPUT")]
    pub inputs: Vec<String>,
}

/// How the candidates are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// A rule file (`betrace check` accepts it as it stands).
    Yaml,
    /// One JSON object per candidate.
    Jsonl,
    /// A table for a terminal.
    Table,
}

fn confidence(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if (0.5..=1.0).contains(&c) => Ok(c),
        _ => Err("a confidence from 0.5 to 1 (such as 0.95)".into()),
    }
}

fn holdout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.05..=0.5).contains(&f) => Ok(f),
        _ => Err("a fraction from 0.05 to 0.5 (such as 0.3)".into()),
    }
}

/// Runs discovery and returns the exit code.
pub fn run(args: &Args) -> u8 {
    let from = match args
        .from
        .as_deref()
        .map(|s| parse_time(s).ok_or(s))
        .transpose()
    {
        Ok(t) => t,
        Err(s) => {
            return usage(&format!(
                "--from `{}` is not an RFC 3339 time or a date",
                escape(s)
            ))
        }
    };
    let to = match args.to.as_deref().map(|s| end_of(s).ok_or(s)).transpose() {
        Ok(t) => t,
        Err(s) => {
            return usage(&format!(
                "--to `{}` is not an RFC 3339 time or a date",
                escape(s)
            ))
        }
    };
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return usage("--from is after --to: no trace can be in that window");
        }
    }
    if args.jaeger.is_none()
        && (!args.service.is_empty()
            || args.jaeger_limit.is_some()
            || args.jaeger_timeout.is_some())
    {
        return usage(
            "--service, --jaeger-limit and --jaeger-timeout go with --jaeger: files are read whole",
        );
    }
    if args.jaeger.is_some() && (from.is_none() || to.is_none()) {
        return usage("--jaeger needs --from and --to: a trace store is queried by time (e.g. --from 2024-11-01 --to 2024-11-25)");
    }
    let known = if args.rules.is_empty() {
        None
    } else {
        match load_rules(&args.rules) {
            Ok((r, _)) => Some(r),
            Err(_) => return USAGE,
        }
    };
    // No output may name a file the run reads (fail now, not after a long run).
    let outputs: Vec<(&str, &str)> = (args.output.iter().map(|p| ("--output", p.as_str())))
        .chain(args.report.iter().map(|p| ("--report", p.as_str())))
        .collect();
    let rule_files: Vec<&str> = known
        .iter()
        .flat_map(|k| k.files().iter().map(|f| f.name.as_str()))
        .collect();
    if let Err(message) = paths::check_outputs(&outputs, &args.inputs, &rule_files) {
        return usage(&message);
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                return usage(&format!(
                    "--output {}: {}",
                    escape(path),
                    escape(&e.to_string())
                ))
            }
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let buffer = BufferConfig {
        trace_idle_timeout: args.trace_idle_timeout,
        max_trace_age: args.max_trace_age,
        max_traces: usize::try_from(args.max_traces).unwrap_or(usize::MAX),
        max_spans: usize::try_from(args.max_spans).unwrap_or(usize::MAX),
        max_bytes: usize::MAX,
    };
    let jaeger = args.jaeger.as_ref().map(|url| JaegerOptions {
        url: url.clone(),
        from: from.unwrap_or(0),
        to: to.unwrap_or(u64::MAX),
        services: args.service.clone(),
        limit: args.jaeger_limit.unwrap_or(1000) as usize,
        timeout: Duration::from_nanos(args.jaeger_timeout.unwrap_or(60_000_000_000)),
        max_response_bytes: Limits::default().max_record_bytes as u64,
        lookahead: args.max_trace_age,
        buffer,
        evidence: false,
    });
    let opts = Options {
        read: replay::Options {
            inputs: args.inputs.clone(),
            buffer,
            from,
            to,
            limits: Limits::default(),
            threads: usize::from(args.threads),
            spill_dir: args.spill_dir.clone(),
            no_index: args.no_index,
            ..replay::Options::default()
        },
        known,
        min_support: args.min_support,
        min_confidence: args.min_confidence,
        holdout: args.holdout,
        top: args.top,
        jaeger,
    };
    let passes = if args.holdout.is_some() { 4 } else { 2 };
    let total: u64 = args
        .inputs
        .iter()
        .filter(|i| *i != "-")
        .map(|i| dir_size(std::path::Path::new(i)))
        .sum();
    let progress = Arc::new(Progress::default());
    let bar = match &args.jaeger {
        Some(url) => store_progress(url, progress.clone()),
        None => progress_bar(total * passes, progress.clone()),
    };
    let mut bad = 0u64;
    let on_bad = &mut |b: &replay::BadRecord| {
        bad += 1;
        if bad <= 100 {
            bar.suspend(|| say(&format!("error: {}", escape(&b.to_string()))));
        } else if bad == 101 {
            bar.suspend(|| say("error: more bad records; only the first 100 are shown"));
        }
    };
    let on_note = &mut |note: &str| bar.suspend(|| say(&format!("note: {}", escape(note))));
    let result = discover::run(&opts, &progress, on_bad, on_note);
    bar.finish_and_clear();
    let (found, summary) = match result {
        Ok(r) => r,
        Err(b) => return usage(&escape(&b.to_string())),
    };
    let text = match args.format {
        Format::Yaml => render::yaml(&found, &header(&summary, &source(args))),
        Format::Jsonl => render::jsonl(&found),
        Format::Table => render::table(&found),
    };
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    say(&summary_text(&found, &summary));
    // A closed standard output (`| head`) is no error; any other failed write is (a full
    // disk must not leave a cut rule file behind an exit code of 0).
    match (&args.output, written) {
        (_, Ok(())) => {}
        (None, Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        (path, Err(e)) => {
            let to = path.as_deref().map_or("standard output".into(), escape);
            return usage(&format!("writing {to}: {}", escape(&e.to_string())));
        }
    }
    if let Some(path) = &args.report {
        let page = super::candidates::render(
            &found,
            &summary,
            &super::candidates::Run {
                source: &source(args),
                generated: &rfc3339(now_unix_nano()),
            },
        );
        if let Err(e) = std::fs::write(path, page) {
            return usage(&format!(
                "writing the report {}: {}",
                escape(path),
                escape(&e.to_string())
            ));
        }
    }
    if summary.read.had_bad_input() {
        USAGE
    } else {
        OK
    }
}

fn usage(message: &str) -> u8 {
    say(&format!("error: {message}"));
    USAGE
}

/// What was mined, in words: the inputs, or the store and its window.
fn source(args: &Args) -> String {
    match &args.jaeger {
        Some(url) => format!(
            "Jaeger at {url} ({} to {})",
            args.from.as_deref().unwrap_or_default(),
            args.to.as_deref().unwrap_or_default()
        ),
        None => args.inputs.join(", "),
    }
}

/// The comment at the top of the YAML output.
fn header(s: &Summary, source: &str) -> String {
    format!(
        "Candidate rules found by `betrace discover` in {} on {}.\nMined {} complete traces; thresholds: support >= {}, confidence >= {}.\nEvery rule is disabled: read it, run `betrace test` on this file, replay it, then enable\nthe ones that say what your system must do (docs/discover.md).",
        source,
        rfc3339(now_unix_nano()),
        s.traces_mined,
        s.min_support,
        s.min_confidence
    )
}

/// The summary on stderr.
fn summary_text(found: &[Found], s: &Summary) -> String {
    let mut t = String::new();
    if let Some(f) = &s.fetched {
        t += &format!(
            "discover: Jaeger at {}: {} traces fetched in {} queries ({} time slices split because they came back full, {} traces a query), {} returned again by another query and kept once\n",
            escape(&f.url),
            f.traces,
            f.queries,
            f.splits,
            f.limit,
            f.repeats
        );
    }
    t += &format!(
        "discover: {} spans read, {} complete traces mined{}\n",
        s.read.spans,
        s.traces_mined,
        s.holdout_from
            .map(|h| format!(
                " (traces starting before {} mined; the rest held out)",
                rfc3339(h)
            ))
            .unwrap_or_default()
    );
    t += &format!(
        "  thresholds: support >= {}{}, confidence >= {}\n",
        s.min_support,
        if s.support_scaled {
            " (1% of the traces, at least 5; --min-support to set)"
        } else {
            ""
        },
        s.min_confidence
    );
    t += &format!(
        "  keys mined: {}\n",
        if s.keys.is_empty() {
            "none".into()
        } else {
            escape(&s.keys.join(", ")).into_owned()
        }
    );
    t += &format!("  {}\n", discover::candidate::BOUND_RULE);
    t += &format!(
        "  candidates: {} generated, {} below the thresholds once judged, {} agreements on a key one value per trace anyway, {} implied by another, {} already in --rules, {} failed the holdout, {} beyond --top{}\n",
        s.generated,
        s.below_thresholds,
        s.one_per_trace,
        s.implied,
        s.known,
        s.failed_holdout,
        s.beyond_top,
        if s.not_judged > 0 {
            format!(", {} not judged (most judged: {})", s.not_judged, discover::MAX_JUDGED)
        } else {
            String::new()
        }
    );
    t += &format!(
        "  values: {} conditions on frequent values mined; {} value bounds that hold nearly as often with values shuffled across traces (lift under {}), {} conditionals no clearly better than without their condition (lift under {})\n",
        s.conditions,
        s.by_chance,
        discover::MIN_VALUE_LIFT,
        s.not_better,
        discover::MIN_CONDITIONAL_LIFT
    );
    if s.capped.0 > 0 || s.capped.1 > 0 {
        t += &format!(
            "  bounds: {} traces had more than {} names (pairs mined among the first), {} pairs, agreements, value bounds or conditionals not tracked (at most {})\n",
            s.capped.0,
            discover::mine::MAX_NAMES_PER_TRACE,
            s.capped.1,
            discover::mine::MAX_PAIRS
        );
    }
    if found.is_empty() {
        t += "  nothing found: no template held in enough traces (try --min-support or --min-confidence)\n";
    } else {
        let fams: Vec<String> = discover::by_family(found)
            .into_iter()
            .map(|(f, n)| format!("{n} {f}"))
            .collect();
        let near = found.iter().filter(|f| f.is_near()).count();
        t += &format!(
            "  found {} ({}); {} near-invariants (broken in a few traces: ranked first)\n",
            found.len(),
            fams.join(", "),
            near
        );
    }
    if let Some(sp) = &s.read.spilled {
        t += &format!(
            "  input not in time order: spilled {} spans ({})\n",
            sp.spans, sp.reason
        );
    }
    match &s.replayed {
        None => t += "  judged from the traces kept while mining (in the spill directory)\n",
        Some(why) => t += &format!("  judged by reading the input again: {why}\n"),
    }
    let steps: Vec<String> = s
        .steps
        .iter()
        .map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64()))
        .collect();
    t += &format!(
        "  took {:.1} s ({})",
        s.elapsed.as_secs_f64(),
        steps.join(", ")
    );
    t
}
