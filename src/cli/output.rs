//! Replay's output formats: JSON lines (docs/language.md, "What a rule reports"), a table grouped by rule, and CSV
//! with one row per signal and a column per context key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};

use betrace::diagnostic::terminal::escape;
use betrace::engine::evidence::{day_name, day_of, Evidence};
use betrace::engine::signal::{rfc3339, Signal};
use betrace::RuleSet;

/// The formats of `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per signal, per line.
    Jsonl,
    /// Signals grouped by rule: count, first and last time, affected services.
    Table,
    /// One row per signal, a column per context key.
    Csv,
    /// Per rule: traces applied to, violated, compliance rate; then by day, service and
    /// service version.
    Summary,
}

/// Writes signals in one format.
pub struct Output<W: Write> {
    format: Format,
    sink: Sink<W>,
    context_keys: Vec<String>,
    groups: Vec<Group>,
    group_of: HashMap<String, usize>,
    rule_order: HashMap<String, usize>,
}

/// Where rows go: straight to the writer, or through the csv crate's quoting.
enum Sink<W: Write> {
    Plain(W),
    Csv(Box<csv::Writer<W>>),
}

struct Group {
    rule_id: String,
    severity: String,
    count: u64,
    first: u64,
    last: u64,
    services: BTreeSet<String>,
    /// Signals by UTC day (days since 1970-01-01).
    days: BTreeMap<u64, u64>,
}

impl<W: Write> Output<W> {
    /// Starts output for signals of `rules` (CSV columns come from the rules' context keys).
    pub fn new(format: Format, out: W, rules: &RuleSet) -> io::Result<Output<W>> {
        let mut context_keys: Vec<String> = Vec::new();
        for r in rules.rules() {
            for k in &r.def.context {
                if !context_keys.contains(k) {
                    context_keys.push(k.clone());
                }
            }
        }
        let rule_order = rules
            .rules()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.def.id.clone(), i))
            .collect();
        let sink = match format {
            Format::Csv => {
                // Every cell quoted: a cell holding `;`, `|` or a tab stays one cell in a
                // spreadsheet whose separator is one of those, not only `,`.
                let mut w = csv::WriterBuilder::new()
                    .quote_style(csv::QuoteStyle::Always)
                    .from_writer(out);
                let mut header: Vec<String> = [
                    "rule_id",
                    "rule_name",
                    "severity",
                    "signal_type",
                    "message",
                    "trace_id",
                    "span_id",
                    "span_ids",
                    "time",
                    "service",
                    "mode",
                    "compliance_framework",
                    "compliance_control",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                header.extend(context_keys.iter().map(|k| format!("context.{k}")));
                w.write_record(&header)?;
                Sink::Csv(Box::new(w))
            }
            _ => Sink::Plain(out),
        };
        Ok(Output {
            format,
            sink,
            context_keys,
            groups: Vec::new(),
            group_of: HashMap::new(),
            rule_order,
        })
    }

    /// Writes (or, for the table, tallies) one signal.
    pub fn write(&mut self, s: &Signal) -> io::Result<()> {
        match (&mut self.sink, self.format) {
            (Sink::Plain(out), Format::Jsonl) => {
                serde_json::to_writer(&mut *out, &s.to_json())?;
                out.write_all(b"\n")
            }
            (Sink::Csv(w), _) => {
                let mut row = vec![
                    s.rule_id.clone(),
                    s.rule_name.clone(),
                    s.severity.to_string(),
                    s.signal_type.clone(),
                    s.message.clone(),
                    s.trace_id.to_string(),
                    s.span_id.to_string(),
                    s.span_ids
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                    rfc3339(s.time_unix_nano),
                    s.service().to_string(),
                    s.mode.as_str().to_string(),
                    s.compliance
                        .as_ref()
                        .map(|c| c.framework.clone())
                        .unwrap_or_default(),
                    s.compliance
                        .as_ref()
                        .map(|c| c.control.clone())
                        .unwrap_or_default(),
                ];
                for k in &self.context_keys {
                    row.push(
                        s.context
                            .iter()
                            .find(|(key, _)| key == k)
                            .map(|(_, v)| v.to_string())
                            .unwrap_or_default(),
                    );
                }
                w.write_record(row.iter().map(|cell| neutralise(cell).into_owned()))
                    .map_err(io::Error::other)
            }
            (Sink::Plain(_), Format::Summary) => Ok(()),
            (Sink::Plain(_), _) => {
                let i = match self.group_of.get(&s.rule_id) {
                    Some(&i) => i,
                    None => {
                        self.groups.push(Group {
                            rule_id: s.rule_id.clone(),
                            severity: s.severity.to_string(),
                            count: 0,
                            first: u64::MAX,
                            last: 0,
                            services: BTreeSet::new(),
                            days: BTreeMap::new(),
                        });
                        self.group_of
                            .insert(s.rule_id.clone(), self.groups.len() - 1);
                        self.groups.len() - 1
                    }
                };
                let g = &mut self.groups[i];
                g.count += 1;
                g.first = g.first.min(s.time_unix_nano);
                g.last = g.last.max(s.time_unix_nano);
                *g.days.entry(day_of(s.time_unix_nano)).or_default() += 1;
                if !s.service().is_empty() {
                    g.services.insert(s.service().to_string());
                }
                Ok(())
            }
        }
    }

    /// Finishes: prints the table or the summary (from `evidence`), flushes everything.
    pub fn finish(
        mut self,
        rules: &RuleSet,
        evidence: Option<&Evidence>,
        skipped: &dyn Fn(&str) -> u64,
    ) -> io::Result<()> {
        let out = match &mut self.sink {
            Sink::Csv(w) => return w.flush(),
            Sink::Plain(out) => out,
        };
        if self.format == Format::Summary {
            if let Some(e) = evidence {
                super::summary::write(out, rules, e, skipped)?;
            }
            return out.flush();
        }
        if self.format == Format::Table {
            let order = &self.rule_order;
            self.groups
                .sort_by_key(|g| order.get(&g.rule_id).copied().unwrap_or(usize::MAX));
            // Everything from rules and traces is escaped: a value can neither act on the
            // terminal nor forge a row.
            let width = self
                .groups
                .iter()
                .map(|g| escape(&g.rule_id).chars().count())
                .max()
                .unwrap_or(4)
                .max(4);
            writeln!(
                out,
                "{:<width$}  {:<8}  {:>7}  {:<24}  {:<24}  SERVICES",
                "RULE", "SEVERITY", "SIGNALS", "FIRST", "LAST"
            )?;
            let mut total = 0;
            for g in &self.groups {
                total += g.count;
                let services: Vec<_> = g.services.iter().map(|s| escape(s)).collect();
                writeln!(
                    out,
                    "{:<width$}  {:<8}  {:>7}  {:<24}  {:<24}  {}",
                    escape(&g.rule_id),
                    escape(&g.severity),
                    g.count,
                    short_time(g.first),
                    short_time(g.last),
                    services.join(", ")
                )?;
                let days: Vec<String> = g
                    .days
                    .iter()
                    .map(|(d, n)| format!("{} {n}", day_name(*d)))
                    .collect();
                writeln!(out, "{:<width$}  by day: {}", "", days.join(", "))?;
            }
            writeln!(out, "{:<width$}  {:<8}  {:>7}", "total", "", total)?;
        }
        out.flush()
    }
}

fn short_time(ns: u64) -> String {
    // Milliseconds are enough to find a trace; the JSON form keeps nanoseconds.
    let t = rfc3339(ns);
    match (t.find('.'), t.len()) {
        (Some(dot), _) if t.len() > dot + 4 => format!("{}Z", &t[..dot + 4]),
        _ => t,
    }
}

/// A CSV cell as spreadsheets can open it safely, whatever their separator (`,`, `;`, tab
/// or `|`, by locale). A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
/// return (after any spaces) is read as a formula (CSV injection); and a spreadsheet whose
/// separator is not the file's splits a cell at its own separator, quotes or not, so every
/// part after a `,`, `;`, `|` or tab is the start of a cell too. Each such start gets a `'`
/// before the formula character, as OWASP recommends (`ord;=1+1` is written `ord;'=1+1`);
/// every cell is also quoted by the writer.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    let is_separator = |c: char| matches!(c, ',' | ';' | '|' | '\t');
    let starts_formula = |c: char| matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r');
    let mut at_start = true;
    let mut risky = false;
    for c in cell.chars() {
        if at_start && starts_formula(c) {
            risky = true;
            break;
        }
        at_start = is_separator(c) || (at_start && c == ' ');
    }
    if !risky {
        return cell.into();
    }
    let mut out = String::with_capacity(cell.len() + 2);
    let mut at_start = true;
    for c in cell.chars() {
        if at_start && starts_formula(c) {
            out.push('\'');
        }
        out.push(c);
        at_start = is_separator(c) || (at_start && c == ' ');
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::neutralise;

    #[test]
    fn no_cell_can_start_a_formula_under_any_separator() {
        for (risky, safe) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t'=1"),
            ("\r=1", "'\r=1"),
            ("  =1+1", "  '=1+1"),
            ("ord;=1+1", "ord;'=1+1"),
            ("ord,=1+1", "ord,'=1+1"),
            ("ord|=1+1", "ord|'=1+1"),
            ("ord\t=1+1", "ord\t'=1+1"),
            ("a; -2", "a; '-2"),
            ("=a;@b", "'=a;'@b"),
        ] {
            assert_eq!(neutralise(risky), safe, "{risky:?}");
        }
        for safe in ["checkout", "a=b", "x-1", "1.5", "", "a;b", "ord; ok"] {
            assert_eq!(neutralise(safe), safe, "{safe:?}");
        }
    }
}
