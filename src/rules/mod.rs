//! Rule files (docs/language.md, "Rule files"): finding them, reading them strictly, checking every condition,
//! and reporting every problem at once, located in the file.

pub mod compact;
pub mod examples;
mod load;
pub mod message;
pub mod ruleset;
mod sources;
pub(crate) mod yaml_pos;
pub(crate) mod yaml_value;

use std::fmt;

use serde::Deserialize;

pub use load::load;
pub use sources::{read_sources, warn_walk_note, SourceError, Walk, WalkNote};

use crate::lang::hir::Form;
use crate::trace::Trace;

/// What a rule does on a trace that is not complete (docs/language.md, "Complete traces").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Incomplete {
    /// Judge it as it is (the default).
    #[default]
    Fire,
    /// Never fire on it; count it as skipped instead.
    Skip,
}

/// How serious a rule's violations are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Critical: OTLP severity FATAL (21).
    Critical,
    /// High: ERROR (17).
    High,
    /// Medium (the default): WARN (13).
    #[default]
    Medium,
    /// Low: INFO2 (10).
    Low,
    /// Info: INFO (9).
    Info,
}

impl Severity {
    /// The severity word.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    /// The OTLP log severity number (docs/language.md, "What a rule reports").
    pub fn otlp_number(self) -> i32 {
        match self {
            Severity::Critical => 21,
            Severity::High => 17,
            Severity::Medium => 13,
            Severity::Low => 10,
            Severity::Info => 9,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The compliance framework and control a rule evidences; copied into every signal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Compliance {
    /// E.g. `SOC2`, `HIPAA`.
    pub framework: String,
    /// E.g. `CC7.2`, `164.312(b)`.
    pub control: String,
}

/// What an example expects of its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The rule must not fire.
    Pass,
    /// The rule must fire.
    Violation,
}

/// An example trace with its expected outcome, run by `betrace test`.
#[derive(Debug, Clone)]
pub struct Example {
    /// The example's name.
    pub name: String,
    /// What the rule should do.
    pub expect: Expect,
    /// The trace.
    pub trace: Trace,
}

/// A loaded and checked rule, before compilation.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// Unique id, `[A-Za-z0-9_.-]+`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Longer description.
    pub description: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// Whether the rule is evaluated.
    pub enabled: bool,
    /// Whether it fires on incomplete traces.
    pub incomplete: Incomplete,
    /// Free tags.
    pub tags: Vec<String>,
    /// Compliance mapping.
    pub compliance: Option<Compliance>,
    /// The condition as written.
    pub condition: String,
    /// The checked condition.
    pub form: Form,
    /// The signal type (default: the id in UPPER_SNAKE).
    pub signal_type: String,
    /// The message template (`{key}` reads the first trigger span's attribute).
    pub message: String,
    /// Attribute keys copied into the signal's context.
    pub context: Vec<String>,
    /// Examples for `betrace test`.
    pub examples: Vec<Example>,
    /// Index of the file the rule came from.
    pub file: usize,
}

impl RuleDef {
    /// Whether the rule leaves a trace unjudged: it says `incomplete: skip` and the trace
    /// is not complete (`complete` is asked only then; it may be costly).
    pub fn skips(&self, complete: impl FnOnce() -> bool) -> bool {
        self.incomplete == Incomplete::Skip && !complete()
    }
}

/// The signal type a rule gets when it names none: its id in UPPER_SNAKE.
pub fn default_signal_type(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
