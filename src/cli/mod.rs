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

/// Loads a rule set, printing warnings; on failure prints the errors and returns the exit code.
pub fn load_rules(specs: &[String]) -> Result<RuleSet, u8> {
    match RuleSet::from_paths(specs) {
        Ok((rules, warnings)) => {
            if !warnings.items.is_empty() {
                eprint!("{}", warnings.render());
            }
            Ok(rules)
        }
        Err(LoadError::Sources(e)) => {
            eprintln!("error: {e}");
            Err(USAGE)
        }
        Err(LoadError::Rules(report)) => {
            eprint!("{}", report.render());
            eprintln!(
                "error: {} error(s); the rule set was not loaded",
                report.error_count()
            );
            Err(FAILED)
        }
    }
}
