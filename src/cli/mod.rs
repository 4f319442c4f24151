//! The subcommands of `betrace`, one module each. Exit codes follow README.md and `betrace --help`:
//! 0 success, 1 invalid rules or failed examples or (on request) violations, 2 usage or
//! unreadable input.

pub mod candidates;
pub mod check;
pub mod discover;
pub mod explain;
pub mod index;
pub mod output;
pub mod paths;
pub mod replay;
pub mod report;
pub mod schema;
pub mod summary;
pub mod test;

use betrace::diagnostic::terminal::escape;
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
            say_raw(&warnings.render());
            Ok((rules, warnings.items.len()))
        }
        Err(LoadError::Sources(e)) => {
            say(&format!("error: {}", escape(&e.to_string())));
            Err(USAGE)
        }
        Err(LoadError::Rules(report)) => {
            say_raw(&report.render());
            let (errors, warnings) = (
                report.error_count(),
                report.items.len() - report.error_count(),
            );
            say(&format!(
                "error: {errors} error{}, {warnings} warning{}; the rule set was not loaded",
                plural(errors),
                plural(warnings)
            ));
            Err(FAILED)
        }
    }
}

/// Writes a line to standard error, ignoring a closed or failing stderr: a diagnostic that
/// cannot be shown is no reason to crash (`betrace … 2>&1 >/dev/null | head -1`).
pub fn say(text: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = err.write_all(b"\n");
    }
}

/// Writes text to standard error as it is (no newline added), ignoring failures.
pub fn say_raw(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes a line to standard output, ignoring a closed pipe (`betrace test … | head -1`).
pub fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.write_all(b"\n");
}

/// Writes text to standard output as it is, ignoring a closed pipe.
pub fn out_raw(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// "s" unless there is exactly one.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
