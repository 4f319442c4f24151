//! `betrace replay`: judge stored traces and report every signal.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::output::{Format, Output};
use crate::cli::paths;
use crate::cli::report;
use betrace::engine::buffer::{BufferConfig, DEFAULT_MAX_SPANS, DEFAULT_MAX_TRACES};
use betrace::engine::signal::{parse_time, Signal};
use betrace::replay::jaeger::{self, Fetched, JaegerOptions};
use betrace::replay::{self, Limits, Options, Progress, Summary};
use betrace::RuleSet;

use super::{load_rules, say, FAILED, OK, USAGE};
use betrace::diagnostic::terminal::escape;

/// Judge historical traces — the files a collector's `file` exporter already writes — with
/// the same engine the collector runs, and report every signal (mode "replay").
///
/// INPUT is a file, a directory (every file below it, in name order) or `-` for standard
/// input. Every `file` exporter output is read, detected from the content: JSON lines or
/// length-prefixed protobuf, plain, per-message zstd, or compressed whole with zstd or
/// gzip. Spans of one trace may be spread over many lines and files: traces are assembled
/// whole before they are judged, with the live engine's timeouts applied to span times.
///
/// Lines, files and arguments may come in any order (several replicas' files, `cat *.jsonl`,
/// standard input): the signals and counts are the same for every order, and the same as
/// the live engine's for that traffic in time order. Time-ordered input is judged in one
/// pass; other input is spilled to disk by trace id (--spill-dir) and judged by partitions,
/// and the summary says so. A span received twice (same trace and span id) counts once.
///
/// A malformed line or message is reported with its file and line (or byte offset) and
/// skipped; a span that cannot be read is skipped and counted, and the rest of its batch
/// is kept; the run goes on. Exit code: 0; 1 with --fail-on-violation when any signal was
/// found; 2 when any input was bad or missing, the store failed, or the rules do not load.
///
/// With --jaeger instead of INPUT, the traces come from a Jaeger v2 store (its api_v3 query
/// API): only the services' operations that the rules' span names can match are queried,
/// every trace once, whole; slices of time that come back full are split until none is.
///
/// Evidence: --format summary prints, per rule, the traces it applied to (an invariant: its
/// `when` part held; a rule without `when`: every trace judged), the traces that violated
/// it and the compliance rate, then by day, service and service.version. --report writes
/// the same as one self-contained HTML page, with a chart of violations per day.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  betrace replay --rules examples/rules examples/traces\n  betrace replay --rules rules/ --from 2024-11-01 --to 2024-11-25 --format table /var/otel/traces/\n  zstdcat traces.zst | betrace replay --rules rules.yaml --format csv --output signals.csv -\n  betrace replay --rules rules/ --jaeger http://jaeger-query:16686 --from 2024-10-01 --to 2024-11-25 --format summary --report evidence.html"
)]
pub struct Args {
    /// Rule file, directory or glob; repeat the flag for several.
    #[arg(long, required = true, action = clap::ArgAction::Append, value_name = "RULES")]
    pub rules: Vec<String>,
    /// Judge only traces whose first span starts at or after this time (RFC 3339, or a date
    /// meaning its midnight UTC).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Judge only traces whose first span starts at or before this time (RFC 3339, or a date,
    /// meaning the whole of that day).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Write signals here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<String>,
    /// Exit with 1 when any signal is found (for CI gates).
    #[arg(long)]
    pub fail_on_violation: bool,
    /// A trace is judged this long (in span time) after its last span, as live
    /// (1ms to 30d).
    #[arg(long, default_value = "5s", value_parser = duration::<MILLISECOND, MONTH>, value_name = "DURATION")]
    pub trace_idle_timeout: u64,
    /// A trace is judged at the latest this long (in span time) after its first span, as
    /// live (1ms to 30d).
    #[arg(long, default_value = "60s", value_parser = duration::<MILLISECOND, MONTH>, value_name = "DURATION")]
    pub max_trace_age: u64,
    /// Most traces held in memory at once (1 to 1,000,000,000); beyond it, replay spills
    /// to disk (it never judges a trace early).
    #[arg(long, default_value_t = DEFAULT_MAX_TRACES as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000), value_name = "N")]
    pub max_traces: u64,
    /// Most spans held in memory at once (1 to 10,000,000,000); beyond it, replay spills
    /// to disk.
    #[arg(long, default_value_t = DEFAULT_MAX_SPANS as u64, value_parser = clap::value_parser!(u64).range(1..=10_000_000_000), value_name = "N")]
    pub max_spans: u64,
    /// The largest record read (a JSON line or object, or a message, after decompression),
    /// in MiB; larger ones are skipped and reported.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096), value_name = "MIB")]
    pub max_record_mib: u32,
    /// Threads decoding and judging (1 to 1024), or 0 for one per core. Traces are dealt
    /// to judging threads by trace id and each is judged in time order, so the signals are
    /// the same whatever the number.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024), value_name = "N")]
    pub threads: u16,
    /// Where to spool standard input and pipes, and to spill input that is not in time
    /// order (partitions by trace id, judged one by one). A directory of its own is made
    /// inside and removed at the end. [default: the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<std::path::PathBuf>,
    /// Read every input whole, even those with an index (`betrace index` writes one
    /// beside each file; a replay uses a fresh one by itself, and decodes only the spans of
    /// traces some rule can apply to).
    #[arg(long)]
    pub no_index: bool,
    /// Also write the compliance evidence as a self-contained HTML page here.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<String>,
    /// Read traces from this Jaeger v2 query service (api_v3 over HTTP) instead of files;
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

pub(super) const MILLISECOND: u64 = 1_000_000;
pub(super) const HOUR: u64 = 3_600_000_000_000;
pub(super) const MONTH: u64 = 30 * 24 * HOUR;

/// A duration flag's value parser: a duration such as `5s` or `250ms` from `MIN` to `MAX`
/// nanoseconds, both included; anything else is refused with the range.
pub(super) fn duration<const MIN: u64, const MAX: u64>(s: &str) -> Result<u64, String> {
    use betrace::lang::value::{format_duration, parse_duration};
    let Some(ns) = parse_duration(s) else {
        return Err("not a duration such as 5s or 250ms (ns us ms s m h d)".into());
    };
    match u64::try_from(ns) {
        Ok(ns) if (MIN..=MAX).contains(&ns) => Ok(ns),
        _ => Err(format!(
            "out of range: from {} to {}",
            format_duration(MIN as i64),
            format_duration(MAX as i64)
        )),
    }
}

/// `--jaeger`'s value parser: an http:// or https:// URL, refused by clap otherwise.
pub(super) fn jaeger_url(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        Ok(s.to_string())
    } else {
        Err("is not an http:// or https:// URL of a Jaeger query service (e.g. http://jaeger-query:16686)".into())
    }
}

/// Runs the replay and returns the exit code: the flags checked, the rules loaded, the
/// outputs opened, the traces judged (from files or a store), the report written.
pub fn run(args: &Args) -> u8 {
    let (from, to) = match window(args) {
        Ok(w) => w,
        Err(message) => return usage(&message),
    };
    let rules = match load_rules(&args.rules) {
        Ok((r, _)) => r,
        // Rules that do not load are bad input for replay: 1 means violations found.
        Err(_) => return USAGE,
    };
    let mut output = match open_outputs(args, &rules) {
        Ok(o) => o,
        Err(message) => return usage(&message),
    };
    let mut write_error = None;
    let mut on_signal = |s: Signal| {
        if write_error.is_none() {
            if let Err(e) = output.write(&s) {
                write_error = Some(e);
            }
        }
    };
    let report_rules = rules.clone();
    let (summary, fetched, failure) = if let Some(url) = &args.jaeger {
        let (summary, fetched, failure) = from_store(args, url, from, to, rules, &mut on_signal);
        (summary, Some(fetched), failure)
    } else {
        match from_files(args, from, to, rules, &mut on_signal) {
            Ok(summary) => (summary, None, None),
            Err(message) => return usage(&message),
        }
    };
    let skipped = |id: &str| summary.stats.rules.get(id).map_or(0, |c| c.skipped);
    if let Err(e) = output.finish(&report_rules, summary.evidence.as_ref(), &skipped) {
        write_error.get_or_insert(e);
    }
    match write_error {
        // The reader went away (`| head`): what it wanted was written; stop quietly.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Some(e) => {
            say(&format!(
                "error: writing signals: {}",
                escape(&e.to_string())
            ));
            return USAGE;
        }
        None => {}
    }
    if let Err(message) = write_report(args, &report_rules, &summary) {
        say(&message);
        return USAGE;
    }
    print_summary(&summary, fetched.as_ref());
    exit_code(args, &summary, failure)
}

/// The flag checks clap does not make, before anything runs: the window `--from`/`--to`
/// (ns) parsed and in order, and the flags that go with `--jaeger`. The last two are
/// clap's `requires` in kind, written here for their messages, which say why
/// (`--jaeger needs --from and --to: a trace store is queried by time`).
fn window(args: &Args) -> Result<(Option<u64>, Option<u64>), String> {
    let from = match args.from.as_deref().map(|s| parse_time(s).ok_or(s)).transpose() {
        Ok(t) => t,
        Err(s) => return Err(format!("--from `{}` is not an RFC 3339 time (2024-11-25T08:00:00Z, 2024-11-25T09:00:00+01:00) or a date (2024-11-25)", escape(s))),
    };
    let to = match args.to.as_deref().map(|s| end_of(s).ok_or(s)).transpose() {
        Ok(t) => t,
        Err(s) => return Err(format!("--to `{}` is not an RFC 3339 time (2024-11-25T08:00:00Z, 2024-11-25T09:00:00+01:00) or a date (2024-11-25)", escape(s))),
    };
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err("--from is after --to: no trace can be in that window".into());
        }
    }
    if args.jaeger.is_none()
        && (!args.service.is_empty()
            || args.jaeger_limit.is_some()
            || args.jaeger_timeout.is_some())
    {
        return Err(
            "--service, --jaeger-limit and --jaeger-timeout go with --jaeger: files are read whole"
                .into(),
        );
    }
    if args.jaeger.is_some() && (from.is_none() || to.is_none()) {
        return Err("--jaeger needs --from and --to: a trace store is queried by time (e.g. --from 2024-11-01 --to 2024-11-25)".into());
    }
    Ok((from, to))
}

/// The signals' output, opened, after checking that no output names a file the run reads
/// or the other output, and that the report can be written (fail now, not after a long
/// replay).
fn open_outputs(args: &Args, rules: &RuleSet) -> Result<Output<Box<dyn Write>>, String> {
    let outputs: Vec<(&str, &str)> = (args.output.iter().map(|p| ("--output", p.as_str())))
        .chain(args.report.iter().map(|p| ("--report", p.as_str())))
        .collect();
    let rule_files: Vec<&str> = rules.files().iter().map(|f| f.name.as_str()).collect();
    paths::check_outputs(&outputs, &args.inputs, &rule_files)?;
    if let Some(path) = &args.report {
        if let Err(e) = File::create(path) {
            return Err(format!("--report {}: {e}", escape(path)));
        }
    }
    let out: Box<dyn Write> = match &args.output {
        Some(path) => match File::create(path) {
            Ok(f) => Box::new(BufWriter::new(f)),
            Err(e) => return Err(format!("{}: {e}", escape(path))),
        },
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    Output::new(args.format, out, rules).map_err(|e| format!("cannot write output: {e}"))
}

/// How the engine buffers traces, from the flags.
fn buffer_config(args: &Args) -> BufferConfig {
    BufferConfig {
        trace_idle_timeout: args.trace_idle_timeout,
        max_trace_age: args.max_trace_age,
        max_traces: usize::try_from(args.max_traces).unwrap_or(usize::MAX),
        max_spans: usize::try_from(args.max_spans).unwrap_or(usize::MAX),
        // Replay bounds what it holds by spilling; it never judges a trace early.
        max_bytes: usize::MAX,
    }
}

/// Whether the run keeps evidence: the summary prints it, the report draws it.
fn keeps_evidence(args: &Args) -> bool {
    args.format == Format::Summary || args.report.is_some()
}

/// Judges the traces of a Jaeger store at `url` over `[from, to]`: the summary, what was
/// fetched, and the store's failure, if any (what was judged before it stands).
fn from_store(
    args: &Args,
    url: &str,
    from: Option<u64>,
    to: Option<u64>,
    rules: RuleSet,
    on_signal: &mut dyn FnMut(Signal),
) -> (Summary, Fetched, Option<String>) {
    let opts = JaegerOptions {
        url: url.to_string(),
        from: from.unwrap_or(0),
        to: to.unwrap_or(u64::MAX),
        services: args.service.clone(),
        limit: args.jaeger_limit.unwrap_or(1000) as usize,
        timeout: Duration::from_nanos(args.jaeger_timeout.unwrap_or(60_000_000_000)),
        max_response_bytes: (args.max_record_mib as u64) << 20,
        lookahead: args.max_trace_age,
        buffer: buffer_config(args),
        evidence: keeps_evidence(args),
    };
    let progress = Arc::new(Progress::default());
    let bar = store_progress(url, progress.clone());
    let (summary, fetched, error) = jaeger::run(rules, &opts, &progress, on_signal, &mut |note| {
        bar.suspend(|| say(&format!("note: {}", escape(note))))
    });
    bar.finish_and_clear();
    (summary, fetched, error.map(|e| e.to_string()))
}

/// Judges the traces of the INPUT files; an input that cannot be read at all is an error.
/// Bad records are shown as they come, the first 100 of them.
fn from_files(
    args: &Args,
    from: Option<u64>,
    to: Option<u64>,
    rules: RuleSet,
    on_signal: &mut dyn FnMut(Signal),
) -> Result<Summary, String> {
    let opts = Options {
        inputs: args.inputs.clone(),
        buffer: buffer_config(args),
        from,
        to,
        limits: Limits {
            max_record_bytes: (args.max_record_mib as usize) << 20,
        },
        threads: usize::from(args.threads),
        evidence: keeps_evidence(args),
        spill_dir: args.spill_dir.clone(),
        no_index: args.no_index,
        observe: None,
        signals_per_rule: None,
    };
    let total_bytes: u64 = args
        .inputs
        .iter()
        .filter(|i| *i != "-")
        .map(|i| dir_size(std::path::Path::new(i)))
        .sum();
    let progress = Arc::new(Progress::default());
    let bar = progress_bar(total_bytes, progress.clone());
    let mut bad_shown = 0u64;
    let on_bad = &mut |bad: &replay::BadRecord| {
        bad_shown += 1;
        if bad_shown <= 100 {
            bar.suspend(|| say(&format!("error: {}", escape(&bad.to_string()))));
        } else if bad_shown == 101 {
            bar.suspend(|| say("error: more bad records; only the first 100 are shown"));
        }
    };
    let on_note = &mut |note: &str| bar.suspend(|| say(&format!("note: {}", escape(note))));
    let result = replay::run(rules, &opts, &progress, on_signal, on_bad, on_note);
    bar.finish_and_clear();
    result.map_err(|bad| escape(&bad.to_string()).into_owned())
}

/// Writes the evidence page (`--report`), when asked for and evidence was kept; the error
/// is the line to say.
fn write_report(args: &Args, rules: &RuleSet, summary: &Summary) -> Result<(), String> {
    let (Some(path), Some(e)) = (&args.report, &summary.evidence) else {
        return Ok(());
    };
    let period = report::Period {
        from: args.from.clone(),
        to: args.to.clone(),
        source: match &args.jaeger {
            Some(url) => format!("Jaeger at {url}"),
            None => args.inputs.join(", "),
        },
        traces_judged: summary.stats.counters.traces_judged
            - summary.stats.counters.traces_outside_window,
        generated: betrace::engine::signal::rfc3339(betrace::engine::signal::now_unix_nano()),
    };
    let page = report::render(rules, e, &period);
    std::fs::write(path, page).map_err(|err| {
        format!(
            "error: writing the report {}: {}",
            escape(path),
            escape(&err.to_string())
        )
    })
}

/// The exit code of a run that got to its end: 2 when the store failed or an input was
/// bad, 1 with `--fail-on-violation` when a rule fired, else 0.
fn exit_code(args: &Args, summary: &Summary, failure: Option<String>) -> u8 {
    let signals = summary.stats.counters.signals;
    if let Some(message) = failure {
        say(&format!(
            "error: the trace store failed: {}\n       what was judged before it is reported above; the run is incomplete",
            escape(&message)
        ));
        USAGE
    } else if summary.had_bad_input() {
        USAGE
    } else if args.fail_on_violation && signals > 0 {
        FAILED
    } else {
        OK
    }
}

/// `--to`: a time, or a date meaning the whole of that day.
pub(super) fn end_of(s: &str) -> Option<u64> {
    let t = parse_time(s)?;
    Some(if s.trim().len() == 10 {
        t.saturating_add(86_400_000_000_000 - 1)
    } else {
        t
    })
}

fn usage(message: &str) -> u8 {
    say(&format!("error: {message}"));
    USAGE
}

/// The bytes below `p`, for the progress bar: each file once, whatever the links.
pub(super) fn dir_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    paths::walk(p, &mut |_, m| total += m.len());
    total
}

/// A progress bar on a terminal, updated from the replay's counters; hidden otherwise.
pub(super) fn progress_bar(total_bytes: u64, progress: Arc<Progress>) -> indicatif::ProgressBar {
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total_bytes.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ticker = bar.clone();
    std::thread::spawn(move || {
        while !ticker.is_finished() {
            ticker.set_position(progress.bytes_read.load(Relaxed));
            ticker.set_message(format!(
                "{} spans, {} signals",
                progress.spans.load(Relaxed),
                progress.signals.load(Relaxed)
            ));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    bar
}

/// A spinner on a terminal while a store is queried; hidden otherwise.
pub(super) fn store_progress(url: &str, progress: Arc<Progress>) -> indicatif::ProgressBar {
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let (ticker, url) = (bar.clone(), escape(url).into_owned());
    std::thread::spawn(move || {
        while !ticker.is_finished() {
            ticker.set_message(format!(
                "{url}: {} queries, {:.1} MB, {} spans, {} signals",
                progress.inputs_done.load(Relaxed),
                progress.bytes_read.load(Relaxed) as f64 / 1e6,
                progress.spans.load(Relaxed),
                progress.signals.load(Relaxed)
            ));
            ticker.tick();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    bar
}

fn print_summary(s: &Summary, fetched: Option<&Fetched>) {
    let b = &s.stats.counters;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let signals = b.signals;
    let mut lines = vec![match fetched {
        None => format!(
            "replay: {} input{}, {:.1} MB, {} spans in {} traces",
            s.inputs,
            if s.inputs == 1 { "" } else { "s" },
            s.bytes_read as f64 / 1e6,
            s.spans,
            b.traces_in
        ),
        Some(f) => format!(
            "replay: Jaeger at {}, {:.1} MB, {} spans in {} traces\n        \
             {} services; queried {}: {}\n        \
             {} queries ({} time slices split because they came back full, {} traces a query), {} traces returned again by another query and judged once",
            escape(&f.url),
            s.bytes_read as f64 / 1e6,
            s.spans,
            f.traces,
            f.services,
            match f.pairs.as_slice() {
                [(s, _)] if s.is_empty() => "every service at once".to_string(),
                pairs => format!("{} (service, operation) pairs", pairs.len()),
            },
            escape(&f.why),
            f.queries,
            f.splits,
            f.limit,
            f.repeats
        ),
    }];
    lines.extend([
        format!(
            "        {} traces judged ({} early under memory pressure), {} outside --from/--to",
            b.traces_judged, b.traces_judged_early, b.traces_outside_window
        ),
        format!(
            "        {} late spans ({} after their trace was released, not judged), {} duplicate spans counted once",
            b.late_spans, b.late_spans_unjudged, b.duplicate_spans
        ),
    ]);
    if let Some(i) = &s.index {
        lines.push(format!(
            "        indexes: inputs read through an index {}, indexed in memory {}; {} traces some rule can apply to read whole, {} traces ({} spans) never decoded: no rule can apply to them",
            i.inputs,
            i.built,
            i.traces_read,
            i.traces_skipped,
            i.spans_skipped
        ));
    }
    if s.spooled > 0 {
        lines.push(format!(
            "        {} input{} read from a pipe, spooled to the spill directory",
            s.spooled,
            if s.spooled == 1 { "" } else { "s" }
        ));
    }
    if let Some(sp) = &s.spilled {
        lines.push(format!(
            "        spilled: {}\n        so every span was read again and written by trace id to disk ({} spans, {:.1} MB), then {} partition{} judged whole, each in time order",
            escape(&sp.reason),
            sp.spans,
            sp.bytes as f64 / 1e6,
            sp.partitions,
            if sp.partitions == 1 { "" } else { "s" }
        ));
    }
    if s.bad_records > 0 || s.invalid_spans > 0 || s.implausible_times > 0 {
        lines.push(format!(
            "        {} bad records skipped, {} unreadable spans skipped, {} spans with implausible (future) times",
            s.bad_records, s.invalid_spans, s.implausible_times
        ));
    }
    if s.inputs_opened_late > 0 {
        lines.push(format!(
            "        {} inputs opened after the data passed their start (more than {} overlapped in time)",
            s.inputs_opened_late,
            replay::MAX_OPEN_INPUTS
        ));
    }
    lines.push(format!(
        "        {signals} signal{} in {:.2}s: {:.0} spans/s, {:.1} MB/s",
        if signals == 1 { "" } else { "s" },
        secs,
        s.spans as f64 / secs,
        s.bytes_read as f64 / 1e6 / secs
    ));
    for (rule, c) in s.stats.rules.iter().filter(|(_, c)| c.violated > 0) {
        lines.push(format!("        {:>8}  {}", c.violated, escape(rule)));
    }
    let skipped: Vec<String> = s
        .stats
        .rules
        .iter()
        .filter(|(_, c)| c.skipped > 0)
        .map(|(rule, c)| format!("        {:>8}  {}", c.skipped, escape(rule)))
        .collect();
    if !skipped.is_empty() {
        lines.push("        traces not judged by rules with `incomplete: skip` (the trace was not complete):".into());
        lines.extend(skipped);
    }
    say(&lines.join("\n"));
}
