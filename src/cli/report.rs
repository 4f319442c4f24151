//! `--report FILE.html`: compliance evidence as one self-contained page — for an auditor or
//! an incident review. No script, no external asset: styles inline, charts as inline SVG,
//! so it opens from a file, mails as an attachment and prints as it shows.

use std::fmt::Write as _;

use betrace::engine::evidence::{day_name, day_of, Breakdown, Evidence, RuleEvidence, Tally};
use betrace::engine::signal::rfc3339;
use betrace::RuleSet;

use super::summary::rate;

/// Most violating trace ids listed per rule; the rest are counted (the CSV lists every one).
pub const SHOWN_TRACE_IDS: usize = 25;

/// Most days a chart draws one bar each; longer periods draw only days with data.
const MAX_CHART_DAYS: u64 = 400;

/// What the page says about the run beside the evidence.
pub struct Period {
    /// `--from`, or the earliest day with data.
    pub from: Option<String>,
    /// `--to`, or the latest day with data.
    pub to: Option<String>,
    /// Where the traces came from (files, or a Jaeger URL).
    pub source: String,
    /// Traces judged.
    pub traces_judged: u64,
    /// When the report was made (RFC 3339).
    pub generated: String,
}

/// The page.
pub fn render(rules: &RuleSet, evidence: &Evidence, period: &Period) -> String {
    let days: Vec<u64> = evidence
        .rules
        .keys()
        .flat_map(|id| evidence.by_day(id))
        .filter_map(|(d, _)| day_number(&d))
        .collect();
    let (first_day, last_day) = (days.iter().min().copied(), days.iter().max().copied());
    let from = period
        .from
        .clone()
        .or_else(|| first_day.map(day_name))
        .unwrap_or_else(|| "—".into());
    let to = period
        .to
        .clone()
        .or_else(|| last_day.map(day_name))
        .unwrap_or_else(|| "—".into());
    let mut all = Tally::default();
    for e in evidence.rules.values() {
        all.applied += e.total.applied;
        all.violated += e.total.violated;
    }
    let violated_rules = evidence
        .rules
        .values()
        .filter(|e| e.total.violated > 0)
        .count();

    let mut h = String::with_capacity(64 * 1024);
    h.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>BeTrace compliance evidence</title>\n<style>\n",
        include_str!("report.css"),
        "</style>\n</head>\n<body>\n"
    ));
    let _ = write!(
        h,
        "<header><h1>Compliance evidence</h1>\n<dl class=\"facts\">\
         <dt>Period</dt><dd>{} — {}</dd>\
         <dt>Source</dt><dd>{}</dd>\
         <dt>Traces judged</dt><dd>{}</dd>\
         <dt>Rules</dt><dd>{} ({} violated)</dd>\
         <dt>Generated</dt><dd>{} by betrace {}</dd></dl></header>\n",
        esc(&from),
        esc(&to),
        esc(&period.source),
        period.traces_judged,
        rules.rules().len(),
        violated_rules,
        esc(&period.generated),
        env!("CARGO_PKG_VERSION"),
    );

    // The overview: every rule, one row.
    h.push_str(
        "<section><h2>Rules</h2>\n<table class=\"overview\"><thead><tr><th>Rule</th><th>Name</th>\
         <th>Severity</th><th>Framework / control</th><th class=\"n\">Applied</th>\
         <th class=\"n\">Violated</th><th class=\"n\">Compliance</th></tr></thead><tbody>\n",
    );
    for r in rules.rules() {
        let t = evidence.total(&r.def.id);
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td><a href=\"#rule-{}\"><code>{}</code></a></td><td>{}</td>\
             <td><span class=\"sev {}\">{}</span></td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            if t.violated > 0 {
                "bad"
            } else if t.applied > 0 {
                "good"
            } else {
                "idle"
            },
            esc(&r.def.id),
            esc(&r.def.id),
            esc(&r.def.name),
            r.def.severity,
            r.def.severity,
            esc(&control(r)),
            t.applied,
            t.violated,
            rate(&t)
        );
    }
    let _ = writeln!(
        h,
        "</tbody><tfoot><tr><td colspan=\"4\">All rules</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td></tr></tfoot></table></section>",
        all.applied,
        all.violated,
        rate(&all)
    );

    // One section per rule.
    for r in rules.rules() {
        let id = &r.def.id;
        let e = evidence.rules.get(id);
        let t = e.map(|e| e.total).unwrap_or_default();
        let _ = write!(
            h,
            "<section class=\"rule\" id=\"rule-{}\"><h2><code>{}</code> {}</h2>\n<dl class=\"facts\">\
             <dt>Severity</dt><dd>{}</dd><dt>Framework / control</dt><dd>{}</dd>\
             <dt>Applied to</dt><dd>{} traces</dd><dt>Violated by</dt><dd>{} traces</dd>\
             <dt>Compliance</dt><dd>{}</dd>",
            esc(id),
            esc(id),
            esc(&r.def.name),
            r.def.severity,
            esc(&control(r)),
            t.applied,
            t.violated,
            rate(&t)
        );
        if let Some(e) = e.filter(|e| e.total.violated > 0) {
            let _ = write!(
                h,
                "<dt>First violation</dt><dd>{}</dd><dt>Last violation</dt><dd>{}</dd>",
                e.first_violation.map(rfc3339).unwrap_or_default(),
                e.last_violation.map(rfc3339).unwrap_or_default()
            );
        }
        h.push_str("</dl>\n");
        if let Some(d) = r.def.description.as_deref().filter(|d| !d.is_empty()) {
            let _ = writeln!(h, "<p class=\"description\">{}</p>", esc(d));
        }
        let _ = writeln!(
            h,
            "<pre class=\"condition\">{}</pre>",
            esc(r.def.condition.trim())
        );
        let Some(e) = e else {
            h.push_str(
                "<p class=\"none\">The rule applied to no trace in this period.</p></section>\n",
            );
            continue;
        };
        chart(&mut h, &evidence.by_day(id), first_day, last_day);
        h.push_str("<div class=\"breakdowns\">");
        table(&mut h, "Service", &evidence.by_service(id));
        table(&mut h, "Service and version", &evidence.by_version(id));
        h.push_str("</div>\n");
        traces(&mut h, e);
        h.push_str("</section>\n");
    }
    if evidence.groups_overflowed > 0 {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} traces are counted under “(other)”: more than {} distinct \
             (day, service, version) groups were seen.</p>",
            evidence.groups_overflowed,
            betrace::engine::evidence::MAX_GROUPS
        );
    }
    h.push_str(
        "<footer>Applied: traces where the rule's <code>when</code> part held (every trace \
         judged, for a rule without <code>when</code>). Violated: traces the rule fired on. \
         Compliance: 1 − violated ÷ applied, truncated, never rounded up. Days are UTC, by \
         the start of the span each trace is attributed to.</footer>\n</body>\n</html>\n",
    );
    h
}

/// A bar per day: violations (red) over the days of the period.
fn chart(h: &mut String, by_day: &Breakdown, first: Option<u64>, last: Option<u64>) {
    let counts: std::collections::BTreeMap<u64, Tally> = by_day
        .iter()
        .filter_map(|(d, t)| Some((day_number(d)?, *t)))
        .collect();
    let days: Vec<u64> = match (first, last) {
        (Some(a), Some(b)) if b - a < MAX_CHART_DAYS => (a..=b).collect(),
        _ => counts.keys().copied().collect(),
    };
    if days.is_empty() {
        return;
    }
    let max = counts
        .values()
        .map(|t| t.violated)
        .max()
        .unwrap_or(0)
        .max(1);
    let (bar, gap, height) = ((640 / days.len().max(1)).clamp(2, 40) as u64, 1u64, 120u64);
    let width = days.len() as u64 * (bar + gap);
    let _ = write!(
        h,
        "<figure class=\"chart\"><figcaption>Violations per day (UTC), highest {max}</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {width} {}\" \
         width=\"{width}\" height=\"{}\" aria-label=\"violations per day\">",
        height + 16,
        height + 16
    );
    for (i, d) in days.iter().enumerate() {
        let t = counts.get(d).copied().unwrap_or_default();
        let x = i as u64 * (bar + gap);
        let bh = if t.violated == 0 {
            0
        } else {
            (t.violated * height / max).max(2)
        };
        let _ = write!(
            h,
            "<rect class=\"day\" x=\"{x}\" y=\"0\" width=\"{bar}\" height=\"{height}\"><title>{}: {} applied, {} violated</title></rect>",
            day_name(*d),
            t.applied,
            t.violated
        );
        if bh > 0 {
            let _ = write!(
                h,
                "<rect class=\"v\" x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{bh}\"><title>{}: {} violations</title></rect>",
                height - bh,
                day_name(*d),
                t.violated
            );
        }
    }
    let _ = write!(
        h,
        "<text x=\"0\" y=\"{}\">{}</text><text x=\"{width}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        height + 13,
        day_name(days[0]),
        height + 13,
        day_name(days[days.len() - 1])
    );
    // The same numbers as text, for print and for screen readers.
    let listed: Vec<String> = counts
        .iter()
        .filter(|(_, t)| t.violated > 0)
        .map(|(d, t)| format!("{}: {}", day_name(*d), t.violated))
        .collect();
    let _ = writeln!(
        h,
        "</figure><p class=\"days\">Days with violations: {}</p>",
        if listed.is_empty() {
            "none".to_string()
        } else {
            esc(&listed.join(", "))
        }
    );
}

fn table(h: &mut String, what: &str, rows: &Breakdown) {
    let _ = write!(
        h,
        "<table><thead><tr><th>{what}</th><th class=\"n\">Applied</th><th class=\"n\">Violated</th>\
         <th class=\"n\">Compliance</th></tr></thead><tbody>"
    );
    for (key, t) in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(key),
            t.applied,
            t.violated,
            rate(t)
        );
    }
    h.push_str("</tbody></table>");
}

fn traces(h: &mut String, e: &RuleEvidence) {
    if e.violating_traces.is_empty() {
        return;
    }
    let shown = e.violating_traces.len().min(SHOWN_TRACE_IDS);
    let _ = write!(
        h,
        "<details open><summary>Violating traces ({})</summary><ul class=\"traces\">",
        e.total.violated
    );
    for id in &e.violating_traces[..shown] {
        let _ = write!(h, "<li><code>{id}</code></li>");
    }
    h.push_str("</ul>");
    let more = e.total.violated - shown as u64;
    if more > 0 {
        let _ = write!(
            h,
            "<p class=\"more\">and {more} more: <code>--format csv</code> lists every one.</p>"
        );
    }
    h.push_str("</details>\n");
}

fn control(r: &betrace::rules::ruleset::Rule) -> String {
    r.def
        .compliance
        .as_ref()
        .map(|c| format!("{} {}", c.framework, c.control))
        .unwrap_or_else(|| "—".into())
}

fn day_number(d: &str) -> Option<u64> {
    let t = betrace::engine::signal::parse_time(d)?;
    Some(day_of(t))
}

/// Text as HTML: the five characters that could end an element or attribute, escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_traces_cannot_open_an_element() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
