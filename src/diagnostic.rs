//! Errors and warnings about rule files, located in the file and rendered with a caret
//! under the offending text (codespan-reporting, in rustc's style).

use std::fmt;
use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as Cs, Label as CsLabel};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, Config};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The rule set is refused.
    Error,
    /// Reported; the rule set loads.
    Warning,
}

/// A rule file's name and text, kept so diagnostics can quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name to show (the path as given).
    pub name: String,
    /// The whole text, without a UTF-8 byte order mark.
    pub text: String,
}

impl SourceFile {
    /// A source file; a leading UTF-8 byte order mark (editors on Windows write one) is
    /// dropped, so that it neither breaks parsing nor shifts every column.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let mut text = text.into();
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        SourceFile {
            name: name.into(),
            text,
        }
    }
}

/// A place in a source, with what to say there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Index of the file in the list it was loaded with (0 while a diagnostic is still
    /// relative to a condition's text).
    pub file: usize,
    /// Byte range in that source.
    pub range: Range<usize>,
    /// What to print under it.
    pub message: String,
}

/// One error or warning, located: every stage that reads rule text (the YAML reader, the
/// parser, the checker, the loader) reports with this one type.
///
/// A diagnostic made while reading a condition is relative to the condition's text; the
/// loader moves it into the file with [`Diagnostic::relocate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// The rule it is about, when known.
    pub rule_id: Option<String>,
    /// The headline.
    pub message: String,
    /// Where it is.
    pub primary: Label,
    /// Other places that explain it (the first definition of a duplicate id).
    pub secondary: Vec<Label>,
    /// Further lines (`help: …`, `note: …`).
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `range` of source 0.
    pub fn error(
        range: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic::new(Level::Error, range, message, label)
    }

    /// A warning at `range` of source 0.
    pub fn warning(
        range: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic::new(Level::Warning, range, message, label)
    }

    fn new(
        level: Level,
        range: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            level,
            rule_id: None,
            message: message.into(),
            primary: Label {
                file: 0,
                range,
                message: label.into(),
            },
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a `help: …` line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.notes.push(format!("help: {}", help.into()));
        self
    }

    /// Adds a secondary label.
    pub fn with_secondary(
        mut self,
        file: usize,
        range: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        self.secondary.push(Label {
            file,
            range,
            message: message.into(),
        });
        self
    }

    /// Says which rule it is about.
    pub fn for_rule(mut self, id: Option<&str>) -> Self {
        self.rule_id = id.map(str::to_string);
        self
    }

    /// Moves a diagnostic made relative to some text (a condition) into `file`, mapping
    /// each range with `map`.
    pub fn relocate(mut self, file: usize, map: impl Fn(Range<usize>) -> Range<usize>) -> Self {
        for label in std::iter::once(&mut self.primary).chain(&mut self.secondary) {
            label.file = file;
            label.range = map(label.range.clone());
        }
        self
    }

    /// The `help: …` notes, without the prefix.
    pub fn help(&self) -> impl Iterator<Item = &str> {
        self.notes.iter().filter_map(|n| n.strip_prefix("help: "))
    }
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
        let f = &self.files[d.primary.file];
        let mut start = d.primary.range.start.min(f.text.len());
        while !f.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &f.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (f.name.clone(), line, col)
    }

    /// Renders every diagnostic, rustc-style, with the offending line and a caret.
    pub fn render(&self) -> String {
        self.items.iter().map(|d| self.render_one(d)).collect()
    }

    /// Renders one diagnostic, rustc-style: its headline, the offending line with a caret
    /// under the primary label, the secondary labels, and the notes.
    pub fn render_one(&self, d: &Diagnostic) -> String {
        let mut files = SimpleFiles::new();
        for f in &self.files {
            files.add(f.name.clone(), f.text.as_str());
        }
        // Within the text and on character boundaries, whatever a stage computed.
        let clamp = |l: &Label| {
            let text = self.files.get(l.file).map_or("", |f| f.text.as_str());
            let floor = |mut i: usize| {
                i = i.min(text.len());
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                i
            };
            let end = floor(l.range.end.max(l.range.start));
            floor(l.range.start).min(end)..end
        };
        if let Some(window) = self.long_line(d, clamp(&d.primary)) {
            return window;
        }
        let cs = match d.level {
            Level::Error => Cs::error(),
            Level::Warning => Cs::warning(),
        };
        let message = match &d.rule_id {
            Some(id) => format!("{} (rule `{id}`)", d.message),
            None => d.message.clone(),
        };
        let mut labels =
            vec![CsLabel::primary(d.primary.file, clamp(&d.primary))
                .with_message(&d.primary.message)];
        labels.extend(
            d.secondary
                .iter()
                .filter(|l| l.file < self.files.len())
                .map(|l| CsLabel::secondary(l.file, clamp(l)).with_message(&l.message)),
        );
        let cs = cs
            .with_message(message)
            .with_labels(labels)
            .with_notes(d.notes.clone());
        let mut out = String::new();
        if term::emit_to_string(&mut out, &Config::default(), &files, &cs).is_err() {
            let (name, line, col) = self.position(d);
            out = format!("{name}:{line}:{col}: {}\n", d.message);
        }
        out
    }
}

/// Lines longer than this are shown as a window around the caret, never whole.
const MAX_LINE: usize = 160;

impl Report {
    /// The rendering of a diagnostic whose line is too long to quote: the same layout as
    /// codespan's, with a window of the line around the caret.
    fn long_line(&self, d: &Diagnostic, range: Range<usize>) -> Option<String> {
        let (start, end) = (range.start, range.end);
        let text = &self.files.get(d.primary.file)?.text;
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return None;
        }
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
        // At least one character under the caret: widened to the end of the character at
        // `start`, never into its middle.
        let mut caret_end = end.min(to).max(start + 1).min(text.len());
        while !text.is_char_boundary(caret_end) {
            caret_end += 1;
        }
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
        let carets = text[start..caret_end.max(start)].chars().count().max(1);
        let mut out = format!(
            "{level}: {message}\n{gutter} ┌─ {name}:{line}:{col}\n{gutter} │\n{line} │ {lead}{}{tail}\n{gutter} │ {}{} {}\n",
            &text[from..to],
            " ".repeat(pad),
            "^".repeat(carets),
            d.primary.message
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
