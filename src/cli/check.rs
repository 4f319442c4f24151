//! `betrace check RULES…`: load and compile rule files, report every error and warning.

use betrace::LoadError;

use super::{FAILED, OK, USAGE};

/// Validate rule files: syntax, types, unknown keys, duplicate ids.
///
/// Every error is reported with file:line:col and a caret under the offending text;
/// warnings (such as a condition that fires on every trace having both spans) are printed
/// but do not fail the check. Exit code: 0 valid (warnings allowed), 1 invalid, 2 usage
/// error or unreadable path.
#[derive(clap::Args)]
pub struct Args {
    /// Rule files, directories (every *.yaml / *.yml in them) or globs.
    #[arg(required = true, value_name = "RULES")]
    pub rules: Vec<String>,
}

/// Runs the check and returns the exit code.
pub fn run(args: &Args) -> u8 {
    match betrace::RuleSet::from_paths(&args.rules) {
        Ok((rules, warnings)) => {
            eprint!("{}", warnings.render());
            let n = rules.rules().len();
            let examples: usize = rules.rules().iter().map(|r| r.def.examples.len()).sum();
            println!(
                "ok: {n} rule{} in {} file{}, {examples} example{}, {} warning{}",
                plural(n),
                rules.files().len(),
                plural(rules.files().len()),
                plural(examples),
                warnings.items.len(),
                plural(warnings.items.len())
            );
            OK
        }
        Err(LoadError::Sources(e)) => {
            eprintln!("error: {e}");
            USAGE
        }
        Err(LoadError::Rules(report)) => {
            eprint!("{}", report.render());
            let warnings = report.items.len() - report.error_count();
            eprintln!(
                "error: {} error{}, {warnings} warning{}",
                report.error_count(),
                plural(report.error_count()),
                plural(warnings)
            );
            FAILED
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
