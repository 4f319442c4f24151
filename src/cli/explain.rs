//! `betrace explain --rules RULES --rule ID`: show how a rule was compiled.

use super::{load_rules, out, say, FAILED, OK};
use betrace::diagnostic::terminal::escape;

/// Show a rule's compiled bytecode and the selectors it uses.
///
/// The listing shows the rule's stack program (HAS, COUNT, BEFORE, … over selectors s0,
/// s1, …), the span name that must be present for the rule to run at all, and each
/// selector's per-span predicate program. Selectors marked "trigger" supply the spans a
/// signal reports.
#[derive(clap::Args)]
pub struct Args {
    /// Rule file, directory or glob to load; repeat the flag for several.
    #[arg(long, required = true, action = clap::ArgAction::Append, value_name = "RULES")]
    pub rules: Vec<String>,
    /// The id of the rule to explain.
    #[arg(long, value_name = "ID")]
    pub rule: String,
}

/// Prints the explanation and returns the exit code.
pub fn run(args: &Args) -> u8 {
    let rules = match load_rules(&args.rules) {
        Ok((r, _)) => r,
        Err(code) => return code,
    };
    let Some(rule) = rules.rule(&args.rule) else {
        say(&format!("error: no rule with id `{}`", escape(&args.rule)));
        let ids: Vec<&str> = rules.rules().iter().map(|r| r.def.id.as_str()).collect();
        let close: Vec<&&str> = ids
            .iter()
            .filter(|id| id.contains(&args.rule) || args.rule.contains(**id))
            .take(5)
            .collect();
        if !close.is_empty() {
            say(&format!(
                "  did you mean: {}",
                close
                    .iter()
                    .map(|s| escape(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return FAILED;
    };
    let d = &rule.def;
    out(&format!(
        "rule      {} — {}",
        escape(&d.id),
        escape(&d.name)
    ));
    out(&format!(
        "severity  {}{}",
        d.severity,
        if d.enabled { "" } else { " (disabled)" }
    ));
    out(&format!("signal    {}", escape(&d.signal_type)));
    out("condition");
    for line in d.condition.trim_end().lines() {
        out(&format!("  {}", escape(line)));
    }
    // The listing quotes the rule's constants: each of its lines is escaped too.
    for line in rules.explain(&d.id).unwrap_or_default().lines() {
        out(&escape(line));
    }
    OK
}
