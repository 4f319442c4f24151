//! `betrace check RULES…`: load and compile rule files, report every error and warning.

use super::{load_rules, out, plural, OK};

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
    let (rules, warnings) = match load_rules(&args.rules) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let n = rules.rules().len();
    let files = rules.files().len();
    let examples: usize = rules.rules().iter().map(|r| r.def.examples.len()).sum();
    out(&format!(
        "ok: {n} rule{} in {files} file{}, {examples} example{}, {warnings} warning{}",
        plural(n),
        plural(files),
        plural(examples),
        plural(warnings)
    ));
    OK
}
