//! Judging a rule's examples (`betrace test`, the library's tests): each example is
//! passed, failed, or skipped — never judged, because the rule says `incomplete: skip`
//! and the example's trace is not complete. A skipped example proves nothing, so it is
//! not a pass.

use crate::eval::vm::Verdict;
use crate::rules::ruleset::RuleSet;
use crate::rules::{Example, Expect};
use crate::trace::projected;

/// How an example came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The rule did what the example expects.
    Passed,
    /// The rule did not.
    Failed,
    /// The rule applies, says `incomplete: skip`, and the trace is not complete: the
    /// example was never judged.
    Skipped,
}

impl Outcome {
    /// The word `betrace test` prints: `ok`, `FAIL` or `skip`.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "ok",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "skip",
        }
    }

    /// Why a skipped example was not judged (`None` for the others).
    pub fn why_skipped(self) -> Option<&'static str> {
        (self == Outcome::Skipped).then_some("skipped: the trace is not complete (one root, every span reaching it by parent links) and the rule says `incomplete: skip`")
    }
}

/// One example judged.
#[derive(Debug, Clone)]
pub struct ExampleRun {
    /// The example's trace, as the rules judge it.
    pub trace: projected::Trace,
    /// What the rule's program found, before `incomplete: skip` is applied.
    pub verdict: Verdict,
    /// Whether the trace is complete (docs/language.md, "Complete traces").
    pub complete: bool,
    /// Whether the rule fires: it fired and did not skip the trace.
    pub fired: bool,
    /// How the example came out.
    pub outcome: Outcome,
}

impl RuleSet {
    /// Judges `example` with the rule at index `rule` (enabled or not).
    pub fn run_example(&self, rule: usize, example: &Example) -> ExampleRun {
        let def = &self.rules()[rule].def;
        let trace = self.project(&example.trace);
        let verdict = {
            let mut view = self.view(&trace);
            self.judge_with(&mut view, rule)
        };
        let complete = trace.is_complete();
        // As the engine does: a rule that applies to an incomplete trace and says
        // `incomplete: skip` does not judge it.
        let skipped = verdict.applies && def.skips(|| complete);
        let fired = verdict.fired && !skipped;
        let outcome = if skipped {
            Outcome::Skipped
        } else if fired == (example.expect == Expect::Violation) {
            Outcome::Passed
        } else {
            Outcome::Failed
        };
        ExampleRun {
            trace,
            verdict,
            complete,
            fired,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"rules:
  - id: audited
    name: Reads are audited
    severity: high
    incomplete: skip
    condition: when { record.read } always { audit.write }
    examples:
      - name: one root, audited
        expect: pass
        trace:
          - name: request
            children:
              - name: record.read
              - name: audit.write
      - name: two roots
        expect: pass
        trace:
          - name: record.read
          - name: audit.write
      - name: two roots, not audited
        expect: violation
        trace:
          - name: record.read
          - name: other
"#;

    #[test]
    fn an_example_the_rule_skips_is_skipped_not_passed() {
        let (rules, _) = RuleSet::from_text("r.yaml", RULES).unwrap();
        let outcomes: Vec<Outcome> = rules.rules()[0]
            .def
            .examples
            .iter()
            .map(|ex| rules.run_example(0, ex).outcome)
            .collect();
        assert_eq!(
            outcomes,
            [Outcome::Passed, Outcome::Skipped, Outcome::Skipped]
        );
    }
}
