//! The `betrace` command: check, test, explain and replay rule files.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Invariant rules checked on OpenTelemetry traces.
///
/// Rules say what must always (or never) happen in a trace: "a charge is always preceded by
/// an inventory reservation". `betrace check` validates rule files, `betrace test` runs the
/// examples written next to each rule, `betrace replay` judges the trace files a collector
/// already writes, `betrace explain` shows how a rule compiles, and `betrace schema` prints
/// the JSON Schema editors use to check rule files as they are written, and `betrace index`
/// writes beside each trace file an index with which a replay reads only what rules can judge,
/// and `betrace discover` mines stored traces for the invariants nobody wrote down.
#[derive(Parser)]
#[command(name = "betrace", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Check(cli::check::Args),
    Test(cli::test::Args),
    Explain(cli::explain::Args),
    // Boxed: replay has many flags, the others few.
    Replay(Box<cli::replay::Args>),
    Index(cli::index::Args),
    // Boxed, as replay.
    Discover(Box<cli::discover::Args>),
    Schema(cli::schema::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    on_signals();
    let code = match cli.command {
        Command::Check(args) => cli::check::run(&args),
        Command::Test(args) => cli::test::run(&args),
        Command::Explain(args) => cli::explain::run(&args),
        Command::Replay(args) => cli::replay::run(&args),
        Command::Index(args) => cli::index::run(&args),
        Command::Discover(args) => cli::discover::run(&args),
        Command::Schema(args) => cli::schema::run(&args),
    };
    ExitCode::from(code)
}

/// Interrupted (SIGINT, SIGTERM), the command removes its spill directories before it exits
/// as the signal would have it (128 + its number). A file grown past `ulimit -f` fails its
/// write (SIGXFSZ, handled, no longer ends the process): a spill then reports it, and the
/// traces `discover` keeps are judged by reading the input again.
fn on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGXFSZ};
    let _ = signal_hook::flag::register(
        SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("betrace-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                betrace::replay::spill::remove_live();
                std::process::exit(128 + signal);
            }
        });
}
