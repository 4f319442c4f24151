//! Errors and warnings about rule files, located in the file and rendered with a caret
//! under the offending text (codespan-reporting, in rustc's style).

pub mod code;
pub mod terminal;

pub use code::Code;

use std::fmt;
use std::ops::Range;

use terminal::escape;

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

/// A line under a diagnostic, typed by what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// How to fix it (`help: …`).
    Help(String),
    /// A fact that explains it (`note: …`).
    Note(String),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Help(text) => write!(f, "help: {text}"),
            Note::Note(text) => write!(f, "note: {text}"),
        }
    }
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
    /// What kind of problem it is, as a stable code (docs/errors.md).
    pub code: Code,
    /// The rule it is about, when known.
    pub rule_id: Option<String>,
    /// The headline.
    pub message: String,
    /// Where it is.
    pub primary: Label,
    /// Other places that explain it (the first definition of a duplicate id).
    pub secondary: Vec<Label>,
    /// Further lines (`help: …`, `note: …`).
    pub notes: Vec<Note>,
}

impl Diagnostic {
    /// An error at `range` of source 0.
    pub fn error(
        code: Code,
        range: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic::new(Level::Error, code, range, message, label)
    }

    /// A warning at `range` of source 0.
    pub fn warning(
        code: Code,
        range: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic::new(Level::Warning, code, range, message, label)
    }

    fn new(
        level: Level,
        code: Code,
        range: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            level,
            code,
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
        self.notes.push(Note::Help(help.into()));
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

    /// Adds a `note: …` line.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(Note::Note(note.into()));
        self
    }

    /// The texts of the help notes.
    pub fn help(&self) -> impl Iterator<Item = &str> {
        self.notes.iter().filter_map(|n| match n {
            Note::Help(text) => Some(text.as_str()),
            Note::Note(_) => None,
        })
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

    /// `file:line:col` of a diagnostic (1-based), as editors and CI logs expect: the place
    /// the caret is shown at.
    pub fn position(&self, d: &Diagnostic) -> (String, usize, usize) {
        let f = &self.files[d.primary.file];
        let start = self.range_shown(&d.primary).start;
        let before = &f.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (f.name.clone(), line, col)
    }

    /// Where a label is shown, whatever a stage computed: within the text, on character
    /// boundaries, and never past the last line — a place at the very end of a text that
    /// ends with a line break (a mapping that ends with the file) is shown on the last
    /// character of the last line, not on a line after the file.
    fn range_shown(&self, l: &Label) -> Range<usize> {
        let text = self.files.get(l.file).map_or("", |f| f.text.as_str());
        let floor = |mut i: usize| {
            i = i.min(text.len());
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let end = floor(l.range.end.max(l.range.start));
        let start = floor(l.range.start).min(end);
        let last_line_end = text.trim_end_matches(['\n', '\r']).len();
        if start >= last_line_end && last_line_end < text.len() {
            // The last character before the trailing line breaks (none: the start).
            let last = text[..last_line_end]
                .char_indices()
                .next_back()
                .map_or(0, |(i, _)| i);
            return last..last_line_end;
        }
        start..end
    }

    /// Renders every diagnostic, rustc-style, with the offending line and a caret.
    pub fn render(&self) -> String {
        self.items.iter().map(|d| self.render_one(d)).collect()
    }

    /// Renders one diagnostic, rustc-style: its headline, the offending line with a caret
    /// under the primary label, the secondary labels, and the notes.
    ///
    /// Whatever came from the rule file (quoted lines, ids and values in messages, file
    /// names) is shown through [`terminal::escape`]: a control character in a rule file can
    /// neither act on the terminal nor forge a line of the report.
    pub fn render_one(&self, d: &Diagnostic) -> String {
        // The files as shown: escaped, with a map from offsets in the text to offsets in it.
        let shown: Vec<_> = self
            .files
            .iter()
            .map(|f| terminal::escape_lines(&f.text))
            .collect();
        let mut files = SimpleFiles::new();
        for (f, (text, _)) in self.files.iter().zip(&shown) {
            files.add(escape(&f.name).into_owned(), text.as_str());
        }
        let clamp = |l: &Label| self.range_shown(l);
        // The same place in the escaped text.
        let place = |l: &Label| {
            let r = clamp(l);
            match shown.get(l.file) {
                Some((_, map)) => map.map(r.start)..map.map(r.end),
                None => r,
            }
        };
        if let Some(window) = self.long_line(d, clamp(&d.primary)) {
            return window;
        }
        let cs = match d.level {
            Level::Error => Cs::error(),
            Level::Warning => Cs::warning(),
        }
        .with_code(d.code.as_str());
        let mut labels = vec![CsLabel::primary(d.primary.file, place(&d.primary))
            .with_message(escape(&d.primary.message))];
        labels.extend(
            d.secondary
                .iter()
                .filter(|l| l.file < self.files.len())
                .map(|l| CsLabel::secondary(l.file, place(l)).with_message(escape(&l.message))),
        );
        let cs = cs
            .with_message(self.headline(d))
            .with_labels(labels)
            .with_notes(
                d.notes
                    .iter()
                    .map(|n| escape_note(&n.to_string()))
                    .collect(),
            );
        let mut out = String::new();
        if term::emit_to_string(&mut out, &Config::default(), &files, &cs).is_err() {
            let (name, line, col) = self.position(d);
            out = format!(
                "{}:{line}:{col}: {}[{}]: {}\n",
                escape(&name),
                level_word(d.level),
                d.code,
                self.headline(d)
            );
        }
        out
    }

    /// The headline, escaped, naming the rule when it is known.
    fn headline(&self, d: &Diagnostic) -> String {
        match &d.rule_id {
            Some(id) => format!("{} (rule `{}`)", escape(&d.message), escape(id)),
            None => escape(&d.message).into_owned(),
        }
    }
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warning => "warning",
    }
}

/// A note as shown: escaped line by line, keeping the line breaks BeTrace wrote.
fn escape_note(note: &str) -> String {
    note.split('\n')
        .map(|line| escape(line))
        .collect::<Vec<_>>()
        .join("\n")
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
        let level = format!("{}[{}]", level_word(d.level), d.code);
        let message = self.headline(d);
        let gutter = " ".repeat(line.to_string().len());
        let lead = if from > line_start { "…" } else { "" };
        let tail = if to < line_end { "…" } else { "" };
        // Counted in the escaped text, as it is shown.
        let shown = |r: Range<usize>| escape(&text[r]).chars().count();
        let pad = lead.chars().count() + shown(from..start);
        let carets = shown(start..caret_end.max(start)).max(1);
        let mut out = format!(
            "{level}: {message}\n{gutter} ┌─ {}:{line}:{col}\n{gutter} │\n{line} │ {lead}{}{tail}\n{gutter} │ {}{} {}\n",
            escape(&name),
            escape(&text[from..to]),
            " ".repeat(pad),
            "^".repeat(carets),
            escape(&d.primary.message)
        );
        for note in &d.notes {
            out.push_str(&format!("{gutter} = {}\n", escape_note(&note.to_string())));
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
