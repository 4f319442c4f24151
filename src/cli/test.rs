//! `betrace test RULES…`: run every rule's `examples:` and say why a failing one failed.

use betrace::engine::signal::{Mode, Signal};
use betrace::eval::explain;
use betrace::rules::examples::Outcome;
use betrace::rules::Expect;

use super::{load_rules, out, say, FAILED, OK};
use betrace::diagnostic::terminal::escape;

/// Run the examples written next to each rule.
///
/// Each example is a compact trace with `expect: pass` (the rule must not fire) or
/// `expect: violation` (it must). For a failing example the output shows each clause of
/// the condition, what it evaluated to, and how many spans matched. Exit code: 0 when every
/// example passes, 1 when any fails, 2 for unreadable paths.
#[derive(clap::Args)]
pub struct Args {
    /// Rule files, directories (every *.yaml / *.yml in them) or globs.
    #[arg(required = true, value_name = "RULES")]
    pub rules: Vec<String>,
    /// Print one JSON object per example (with the signal it raised) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the examples and returns the exit code.
pub fn run(args: &Args) -> u8 {
    let rules = match load_rules(&args.rules) {
        Ok((r, _)) => r,
        Err(code) => return code,
    };
    let (mut passed, mut failed, mut skipped_n) = (0usize, 0usize, 0usize);
    let mut last_file = None;
    for (ri, rule) in rules.rules().iter().enumerate() {
        let def = &rule.def;
        if !args.json && last_file != Some(def.file) {
            out(&escape(&rules.files()[def.file].name));
            last_file = Some(def.file);
        }
        if def.examples.is_empty() && !args.json {
            out(&format!("  none  {}: no examples", escape(&def.id)));
        }
        for ex in &def.examples {
            // Issue 23: an example the rule skips (`incomplete: skip`) is neither passed
            // nor failed; the library says which (`rules::examples`).
            let run = rules.run_example(ri, ex);
            let (trace, verdict, complete, fired) =
                (run.trace, run.verdict, run.complete, run.fired);
            let skipped = run.outcome == Outcome::Skipped;
            let ok = run.outcome == Outcome::Passed;
            match run.outcome {
                Outcome::Passed => passed += 1,
                Outcome::Failed => failed += 1,
                Outcome::Skipped => skipped_n += 1,
            }
            if args.json {
                let signal = fired
                    .then(|| Signal::new(def, &trace, &verdict, Mode::Replay, complete))
                    .flatten();
                let line = serde_json::json!({
                    "rule_id": def.id,
                    "example": ex.name,
                    "expect": expect_word(ex.expect),
                    "fired": fired,
                    "skipped": skipped,
                    "passed": ok,
                    "signal": signal.map(|s| s.to_json()),
                });
                out(&format!("{line}"));
                continue;
            }
            out(&format!(
                "  {:<4}  {}: {}",
                run.outcome.word(),
                escape(&def.id),
                escape(&ex.name)
            ));
            if let Some(why) = run.outcome.why_skipped() {
                out(&format!("        {why}"));
            }
            if run.outcome == Outcome::Failed {
                let why = match ex.expect {
                    Expect::Violation => "expected a violation; the rule did not fire",
                    Expect::Pass => "expected no violation; the rule fired",
                };
                out(&format!("        {why}"));
                if skipped {
                    out("        it would have: the trace is not complete (one root, every parent present) and the rule says `incomplete: skip`");
                }
                for step in explain::explain(&def.form, &ex.trace) {
                    let indent = "  ".repeat(step.depth);
                    out(&format!(
                        "          {:<7} {:<5} {indent}{}",
                        step.clause,
                        step.value,
                        escape(&step.text)
                    ));
                    if !step.detail.is_empty() {
                        out(&format!(
                            "                        {indent}  {}",
                            escape(&step.detail)
                        ));
                    }
                }
            }
        }
    }
    if !args.json {
        out(&format!(
            "examples: {passed} passed, {failed} failed, {skipped_n} skipped"
        ));
    } else {
        say(&format!(
            "examples: {passed} passed, {failed} failed, {skipped_n} skipped"
        ));
    }
    if failed == 0 {
        OK
    } else {
        FAILED
    }
}

fn expect_word(e: Expect) -> &'static str {
    match e {
        Expect::Pass => "pass",
        Expect::Violation => "violation",
    }
}
