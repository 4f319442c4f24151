//! The subcommands of `betrace`, one module each. Exit codes follow interfaces.md §2:
//! 0 success, 1 invalid rules or failed examples or (on request) violations, 2 usage or
//! unreadable input.

pub mod check;
pub mod explain;
pub mod replay;
pub mod test;

use betrace::{LoadError, RuleSet};

/// Exit code: success.
pub const OK: u8 = 0;
/// Exit code: invalid rules, failing examples.
pub const FAILED: u8 = 1;
/// Exit code: usage error or unreadable input.
pub const USAGE: u8 = 2;

/// Loads a rule set, printing its warnings (and returning how many there were); on failure
/// prints every error and returns the exit code.
pub fn load_rules(specs: &[String]) -> Result<(RuleSet, usize), u8> {
    match RuleSet::from_paths(specs) {
        Ok((rules, warnings)) => {
            eprint!("{}", warnings.render());
            Ok((rules, warnings.items.len()))
        }
        Err(LoadError::Sources(e)) => {
            eprintln!("error: {e}");
            Err(USAGE)
        }
        Err(LoadError::Rules(report)) => {
            eprint!("{}", report.render());
            let (errors, warnings) = (
                report.error_count(),
                report.items.len() - report.error_count(),
            );
            eprintln!(
                "error: {errors} error{}, {warnings} warning{}; the rule set was not loaded",
                plural(errors),
                plural(warnings)
            );
            Err(FAILED)
        }
    }
}

/// "s" unless there is exactly one.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
