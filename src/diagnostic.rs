//! Errors and warnings about rule files, located in the file and rendered with a caret
//! under the offending text (codespan-reporting, in rustc's style).

use std::fmt;
use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as Cs, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, Config};

pub use crate::check::Level;

/// A rule file's name and text, kept so diagnostics can quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name to show (the path as given).
    pub name: String,
    /// The whole text.
    pub text: String,
}

/// One error or warning about a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// Index of the file in the list it was loaded with.
    pub file: usize,
    /// The rule it is about, when known.
    pub rule_id: Option<String>,
    /// Byte range in the file.
    pub range: Range<usize>,
    /// The headline.
    pub message: String,
    /// The label under the caret.
    pub label: String,
    /// Further lines (`= help: …`).
    pub notes: Vec<String>,
}

/// A set of diagnostics with the files they point into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The files, by the index diagnostics use.
    pub files: Vec<SourceFile>,
    /// The diagnostics, in the order found.
    pub items: Vec<Diagnostic>,
}

impl Report {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.level == Level::Error)
    }

    /// How many errors there are.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.level == Level::Error)
            .count()
    }

    /// `file:line:col` of a diagnostic (1-based), as editors and CI logs expect.
    pub fn position(&self, d: &Diagnostic) -> (String, usize, usize) {
        let f = &self.files[d.file];
        let start = d.range.start.min(f.text.len());
        let before = &f.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (f.name.clone(), line, col)
    }

    /// Renders every diagnostic, rustc-style, with the offending line and a caret.
    pub fn render(&self) -> String {
        let mut files = SimpleFiles::new();
        for f in &self.files {
            files.add(f.name.clone(), f.text.clone());
        }
        let config = Config::default();
        let mut out = String::new();
        for d in &self.items {
            let cs = match d.level {
                Level::Error => Cs::error(),
                Level::Warning => Cs::warning(),
            };
            let message = match &d.rule_id {
                Some(id) => format!("{} (rule `{id}`)", d.message),
                None => d.message.clone(),
            };
            let end = d
                .range
                .end
                .max(d.range.start)
                .min(self.files[d.file].text.len());
            let start = d.range.start.min(end);
            if let Some(window) = self.long_line(d, start, end) {
                out.push_str(&window);
                continue;
            }
            let cs = cs
                .with_message(message)
                .with_labels(vec![
                    Label::primary(d.file, start..end).with_message(d.label.clone())
                ])
                .with_notes(d.notes.clone());
            if term::emit_to_string(&mut out, &config, &files, &cs).is_err() {
                let (name, line, col) = self.position(d);
                out.push_str(&format!("{name}:{line}:{col}: {}\n", d.message));
            }
        }
        out
    }
}

/// Lines longer than this are shown as a window around the caret, never whole.
const MAX_LINE: usize = 160;

impl Report {
    /// The rendering of a diagnostic whose line is too long to quote: the same layout as
    /// codespan's, with a window of the line around the caret.
    fn long_line(&self, d: &Diagnostic, start: usize, end: usize) -> Option<String> {
        let text = &self.files[d.file].text;
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        if line_end - line_start <= MAX_LINE {
            return None;
        }
        let floor = |mut i: usize| {
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let from = floor(start.saturating_sub(40).max(line_start));
        let to = floor((start + 80).min(line_end).max(from));
        let caret_end = end.min(to).max(start + 1);
        let (name, line, col) = self.position(d);
        let level = match d.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        let message = match &d.rule_id {
            Some(id) => format!("{} (rule `{id}`)", d.message),
            None => d.message.clone(),
        };
        let gutter = " ".repeat(line.to_string().len());
        let lead = if from > line_start { "…" } else { "" };
        let tail = if to < line_end { "…" } else { "" };
        let pad = lead.chars().count() + text[from..start].chars().count();
        let carets = text[start..caret_end.min(text.len()).max(start)]
            .chars()
            .count()
            .max(1);
        let mut out = format!(
            "{level}: {message}\n{gutter} ┌─ {name}:{line}:{col}\n{gutter} │\n{line} │ {lead}{}{tail}\n{gutter} │ {}{} {}\n",
            &text[from..to],
            " ".repeat(pad),
            "^".repeat(carets),
            d.label
        );
        for note in &d.notes {
            out.push_str(&format!("{gutter} = {note}\n"));
        }
        out.push('\n');
        Some(out)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// At most 64 characters of `s`, for messages: a huge value is never echoed whole.
pub fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        None => std::borrow::Cow::Borrowed(s),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}… ({} bytes)", &s[..end], s.len())),
    }
}
