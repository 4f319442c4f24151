//! `--format summary`: how often each rule held — traces it applied to, traces that
//! violated it, the compliance rate — overall, then by day, service and service version.

use std::io::{self, Write};

use betrace::diagnostic::terminal::escape;
use betrace::engine::evidence::{Breakdown, Evidence, Tally};
use betrace::RuleSet;

/// A compliance rate as people read it: "99.97%", "100%", "n/a" when nothing applied.
/// Never rounds up to 100%: a rule violated once is below it.
pub fn rate(t: &Tally) -> String {
    if t.applied == 0 {
        return "n/a".into();
    }
    if t.violated == 0 {
        return "100%".into();
    }
    // Truncated, in integers: 99.996% with a violation shows 99.99%, never 100.00%.
    let held = t.applied.saturating_sub(t.violated) as u128;
    let basis_points = held * 10_000 / t.applied as u128;
    format!("{}.{:02}%", basis_points / 100, basis_points % 100)
}

/// Writes the summary of every rule of `rules` (those that applied to nothing too);
/// `skipped` says per rule how many traces `incomplete: skip` left unjudged. Names, ids and
/// the services and versions traces carry are escaped ([`escape`]): none can act on the
/// terminal or forge a row.
pub fn write(
    out: &mut dyn Write,
    rules: &RuleSet,
    evidence: &Evidence,
    skipped: &dyn Fn(&str) -> u64,
) -> io::Result<()> {
    let width = rules
        .rules()
        .iter()
        .map(|r| escape(&r.def.id).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<width$}  {:<8}  {:>10}  {:>10}  {:>10}  {:>8}  NAME",
        "RULE", "SEVERITY", "APPLIED", "VIOLATED", "COMPLIANCE", "SKIPPED"
    )?;
    let mut all = Tally::default();
    for r in rules.rules() {
        let t = evidence.total(&r.def.id);
        all.applied += t.applied;
        all.violated += t.violated;
        writeln!(
            out,
            "{:<width$}  {:<8}  {:>10}  {:>10}  {:>10}  {:>8}  {}{}",
            escape(&r.def.id),
            r.def.severity.as_str(),
            t.applied,
            t.violated,
            rate(&t),
            skipped(&r.def.id),
            escape(&r.def.name),
            if r.def.enabled { "" } else { " (disabled)" }
        )?;
    }
    writeln!(
        out,
        "{:<width$}  {:<8}  {:>10}  {:>10}  {:>10}",
        "total",
        "",
        all.applied,
        all.violated,
        rate(&all)
    )?;
    for r in rules.rules() {
        let id = &r.def.id;
        if !evidence.rules.contains_key(id) {
            continue;
        }
        writeln!(out)?;
        let compliance = r
            .def
            .compliance
            .as_ref()
            .map(|c| format!("  [{} {}]", escape(&c.framework), escape(&c.control)))
            .unwrap_or_default();
        writeln!(out, "{} — {}{compliance}", escape(id), escape(&r.def.name))?;
        breakdown(out, "day", &evidence.by_day(id))?;
        breakdown(out, "service", &evidence.by_service(id))?;
        breakdown(out, "version", &evidence.by_version(id))?;
    }
    if evidence.groups_overflowed > 0 {
        writeln!(
            out,
            "\nnote: {} traces counted under (other): more than {} distinct (day, service, version) groups",
            evidence.groups_overflowed,
            betrace::engine::evidence::MAX_GROUPS
        )?;
    }
    Ok(())
}

fn breakdown(out: &mut dyn Write, what: &str, rows: &Breakdown) -> io::Result<()> {
    let rows: Vec<_> = rows.iter().map(|(k, t)| (escape(k), t)).collect();
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        .max(what.len());
    writeln!(
        out,
        "  {what:<width$}  {:>10}  {:>10}  {:>10}",
        "applied", "violated", "compliance"
    )?;
    for (key, t) in &rows {
        writeln!(
            out,
            "  {key:<width$}  {:>10}  {:>10}  {:>10}",
            t.applied,
            t.violated,
            rate(t)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_never_rounds_up_to_full_compliance() {
        let t = |applied, violated| Tally { applied, violated };
        assert_eq!(rate(&t(0, 0)), "n/a");
        assert_eq!(rate(&t(10, 0)), "100%");
        assert_eq!(rate(&t(100_000, 1)), "99.99%");
        assert_eq!(rate(&t(10_000, 3)), "99.97%");
        assert_eq!(rate(&t(4, 4)), "0.00%");
    }
}
