//! `betrace discover --report FILE.html`: the candidates as one self-contained page for a
//! team to review together — each with its scores, the traces that broke it, its examples
//! and the rule to paste. No script, no external asset (the evidence report's styles).

use std::fmt::Write as _;

use betrace::discover::{render, Found, Summary};

use super::report::esc;

/// What the page says about the run.
pub struct Run<'a> {
    /// Where the traces came from.
    pub source: &'a str,
    /// When (RFC 3339).
    pub generated: &'a str,
}

/// The page.
pub fn render(found: &[Found], s: &Summary, run: &Run<'_>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>BeTrace candidate invariants</title>\n<style>\n",
        include_str!("report.css"),
        "</style>\n</head>\n<body>\n"
    ));
    let near = found.iter().filter(|f| f.is_near()).count();
    let _ = write!(
        h,
        "<header><h1>Candidate invariants</h1>\n<dl class=\"facts\">\
         <dt>Source</dt><dd>{}</dd>\
         <dt>Complete traces mined</dt><dd>{}</dd>\
         <dt>Thresholds</dt><dd>support ≥ {}, confidence ≥ {}</dd>\
         <dt>Candidates</dt><dd>{} ({} near-invariants: broken in a few traces, listed first)</dd>\
         <dt>Pruned</dt><dd>{} below the thresholds, {} implied by another, {} already known, {} failed the holdout, {} beyond the first {}</dd>\
         <dt>Generated</dt><dd>{} by betrace {}</dd></dl>\n\
         <p class=\"note\">Every candidate is disabled. Keep the ones that say what the system must do: \
         give each an id, a severity and a message of your own, run <code>betrace test</code>, \
         replay it over more traces, then enable it.</p></header>\n",
        esc(run.source),
        s.traces_mined,
        s.min_support,
        s.min_confidence,
        found.len(),
        near,
        s.below_thresholds + s.one_per_trace,
        s.implied,
        s.known,
        s.failed_holdout,
        s.beyond_top,
        found.len(),
        esc(run.generated),
        env!("CARGO_PKG_VERSION"),
    );
    if found.is_empty() {
        h.push_str("<p class=\"none\">Nothing found: no template held in enough traces.</p>\n");
    } else {
        overview(&mut h, found);
        for (i, f) in found.iter().enumerate() {
            candidate(&mut h, i + 1, f);
        }
    }
    h.push_str("<footer>betrace discover — docs/discover.md says how candidates are mined, scored and pruned.</footer>\n</body>\n</html>\n");
    h
}

/// One row per candidate, linking to its section.
fn overview(h: &mut String, found: &[Found]) {
    h.push_str(
        "<section><h2>Candidates</h2>\n<table class=\"overview\"><thead><tr><th class=\"n\">#</th>\
         <th>Candidate</th><th>Family</th><th class=\"n\">Support</th><th class=\"n\">Broke</th>\
         <th class=\"n\">Confidence</th><th class=\"n\">Lower</th><th class=\"n\">Lift</th></tr></thead><tbody>\n",
    );
    for (i, f) in found.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td class=\"n\">{}</td><td><a href=\"#c-{}\">{}</a></td><td><span class=\"sev\">{}</span></td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.4}</td>\
             <td class=\"n\">{:.4}</td><td class=\"n\">{:.2}</td></tr>",
            if f.is_near() { "near" } else { "held" },
            i + 1,
            esc(&f.candidate.id),
            esc(&f.candidate.name),
            f.candidate.family.word(),
            f.support,
            f.violations,
            f.confidence,
            f.confidence_lower,
            f.lift
        );
    }
    h.push_str("</tbody></table></section>\n");
}

/// A candidate's section: scores, exceptions, examples, the rule.
fn candidate(h: &mut String, rank: usize, f: &Found) {
    let c = &f.candidate;
    let _ = write!(
        h,
        "<section id=\"c-{}\"><h2>{}. {}</h2>\n<pre class=\"condition\">{}</pre>\n<p>{}</p>\n",
        esc(&c.id),
        rank,
        esc(&c.name),
        esc(&c.condition),
        esc(&render::scores(f))
    );
    if f.exceptions.is_empty() {
        h.push_str("<p class=\"none\">No trace broke it.</p>\n");
    } else {
        let _ = write!(
            h,
            "<h3>Exceptions</h3>\n<p class=\"note\">{} trace{} broke it{}: look them up in your trace backend.</p>\n<ul class=\"exceptions\">",
            f.violations,
            if f.violations == 1 { "" } else { "s" },
            if f.violations as usize > f.exceptions.len() {
                format!(" (the first {} are listed)", f.exceptions.len())
            } else {
                String::new()
            }
        );
        for t in &f.exceptions {
            let _ = write!(h, "<li><code>{t}</code></li>");
        }
        h.push_str("</ul>\n");
    }
    let text = render::yaml(std::slice::from_ref(f), "");
    let _ = write!(
        h,
        "<details><summary>The rule, with its examples</summary><pre class=\"condition\">{}</pre></details>\n</section>\n",
        esc(text.trim_start_matches('\n'))
    );
}
