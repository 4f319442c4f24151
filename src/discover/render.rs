//! Writing candidates out (interfaces: `discover` output): a rule file `betrace check`
//! accepts as it stands, one JSON object per line, or a table for a terminal.

use std::fmt::Write;

use super::candidate::Candidate;
use super::{Found, EXCEPTIONS};
use crate::diagnostic::terminal::escape;

/// A candidate as a rule of a file: for loading alone, for judging, or as found.
pub struct Rule<'a> {
    c: &'a Candidate,
    found: Option<&'a Found>,
    enabled: bool,
}

impl<'a> Rule<'a> {
    /// The candidate as it is judged (enabled, skipping incomplete traces), or alone to
    /// see that it loads.
    pub fn bare(c: &'a Candidate) -> Rule<'a> {
        Rule {
            c,
            found: None,
            enabled: true,
        }
    }

    /// A candidate found: disabled, with its scores and examples.
    pub fn found(f: &'a Found) -> Rule<'a> {
        Rule {
            c: &f.candidate,
            found: Some(f),
            enabled: false,
        }
    }
}

/// The scores as a sentence, for the description.
pub fn scores(f: &Found) -> String {
    let mut s = format!(
        "Discovered ({}): held in {} of {} complete traces it applied to (confidence {:.4}, Wilson 95% lower bound {:.4}, lift {:.2})",
        f.candidate.family.word(),
        f.support - f.violations,
        f.support,
        f.confidence,
        f.confidence_lower,
        f.lift
    );
    if let Some((a, v)) = f.holdout {
        let _ = write!(s, "; on the holdout {} of {}", a - v, a);
    }
    if let Some(note) = &f.candidate.note {
        let _ = write!(s, "; bound: {note}");
    }
    s.push('.');
    s
}

/// A rule file of these rules.
pub fn rule_file(rules: &[Rule<'_>]) -> String {
    let mut out = String::from("rules:\n");
    for r in rules {
        let c = r.c;
        let _ = writeln!(out, "  - id: {}", c.id);
        let _ = writeln!(out, "    name: {}", json(&c.name));
        if let Some(f) = r.found {
            let _ = writeln!(out, "    description: {}", json(&scores(f)));
        }
        let _ = writeln!(out, "    severity: info");
        if !r.enabled {
            let _ = writeln!(out, "    enabled: false");
        }
        let _ = writeln!(out, "    incomplete: skip");
        let _ = writeln!(out, "    tags: [discovered, {}]", c.family.word());
        let _ = writeln!(out, "    condition: {}", json(&c.condition));
        if let Some(f) = r.found {
            if !f.examples.is_empty() {
                let _ = writeln!(out, "    examples:");
                for e in &f.examples {
                    let _ = writeln!(
                        out,
                        "      - name: {}",
                        json(&format!(
                            "{} (trace {}, cut down to {} span{})",
                            if e.violation { "broke it" } else { "held" },
                            e.trace_id,
                            e.spans,
                            if e.spans == 1 { "" } else { "s" }
                        ))
                    );
                    let _ = writeln!(
                        out,
                        "        expect: {}",
                        if e.violation { "violation" } else { "pass" }
                    );
                    let _ = writeln!(out, "        trace:");
                    out.push_str(&e.yaml);
                }
            }
        }
    }
    out
}

/// The YAML output: a comment saying where it came from, then the rule file.
pub fn yaml(found: &[Found], header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    if found.is_empty() {
        out.push_str("rules: []\n");
        return out;
    }
    out.push_str(&rule_file(
        &found.iter().map(Rule::found).collect::<Vec<_>>(),
    ));
    out
}

/// One JSON object per candidate.
pub fn jsonl(found: &[Found]) -> String {
    let mut out = String::new();
    for f in found {
        let rule = serde_json::json!({
            "id": f.candidate.id,
            "name": f.candidate.name,
            "description": scores(f),
            "severity": "info",
            "enabled": false,
            "incomplete": "skip",
            "tags": ["discovered", f.candidate.family.word()],
            "condition": f.candidate.condition,
        });
        let mut o = serde_json::json!({
            "id": f.candidate.id,
            "family": f.candidate.family.word(),
            "condition": f.candidate.condition,
            "support": f.support,
            "violations": f.violations,
            "confidence": f.confidence,
            "confidence_lower": f.confidence_lower,
            "lift": f.lift,
            "exceptions": f.exceptions.iter().take(EXCEPTIONS).map(|t| t.to_string()).collect::<Vec<_>>(),
            "rule": rule,
        });
        if let Some((a, v)) = f.holdout {
            o["holdout"] = serde_json::json!({ "applied": a, "violations": v });
        }
        if let Some(n) = &f.candidate.note {
            o["bound"] = serde_json::json!(n);
        }
        out.push_str(&o.to_string());
        out.push('\n');
    }
    out
}

/// A table for a terminal: rank, scores, family and condition.
pub fn table(found: &[Found]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:>8}  {:>6}  {:>7}  {:>7}  {:>7}  {:<11}  condition",
        "#", "support", "broke", "conf", "lower", "lift", "family"
    );
    for (i, f) in found.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>4}  {:>8}  {:>6}  {:>7.4}  {:>7.4}  {:>7.2}  {:<11}  {}",
            i + 1,
            f.support,
            f.violations,
            f.confidence,
            f.confidence_lower,
            f.lift,
            f.candidate.family.word(),
            escape(&f.candidate.condition)
        );
        if let Some(first) = f.exceptions.first() {
            let _ = writeln!(
                out,
                "{:>4}  {:>8}  exceptions: {}{}",
                "",
                "",
                first,
                if f.violations > 1 {
                    format!(" and {} more", f.violations - 1)
                } else {
                    String::new()
                }
            );
        }
    }
    out
}

/// A JSON string: also a YAML double-quoted scalar.
fn json(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}
