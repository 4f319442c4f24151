//! Text for a terminal: every character that could act on it, or change the shape of what
//! is printed, is shown as an escape instead.
//!
//! Values in BeTrace's output for people come from traces, trace stores and rule files:
//! service names, HTTP error bodies, rule names, file names. Printed raw, an escape sequence
//! (`ESC [ 2 J`) acts on the operator's terminal, a newline forges an extra table row or an
//! extra `error:` line, and a bidi override (U+202E) shows text in an order other than its
//! bytes. [`escape`] is the one function every human-readable output passes such values
//! through; machine formats (JSON lines, CSV) stay lossless and are quoted by their writers.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is shown escaped: the C0 controls (newline and tab too), DEL, the C1
/// controls, the line and paragraph separators, and the bidirectional formatting characters
/// (embeddings, overrides, isolates and marks).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' | '\u{061c}'
        )
}

/// `s` as it may be printed for people: every [`is_unsafe`] character becomes `\n`, `\r`,
/// `\t` or, as in JSON, `\u` and four hex digits (ESC is `\u001b`). Borrowed when there is
/// nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Appends `c` to `out`, escaped if it is [`is_unsafe`].
pub fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_unsafe(c) => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

/// `text` escaped except for its line breaks (`\n`, and the `\r` of a `\r\n`): for quoting
/// a multi-line source, such as a rule file under a diagnostic. With it, `map` turns a byte
/// offset of `text` into the offset of the same place in the result.
pub fn escape_lines(text: &str) -> (String, OffsetMap) {
    let mut out = String::with_capacity(text.len());
    let mut shifts = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let keep = c == '\n' || (c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n'));
        if keep || !is_unsafe(c) {
            out.push(c);
            continue;
        }
        let before = out.len();
        push_escaped(&mut out, c);
        // Every offset after this character moves by what escaping added so far.
        let added = shifts.last().map_or(0, |&(_, a)| a) + (out.len() - before) - c.len_utf8();
        shifts.push((i + c.len_utf8(), added));
    }
    (out, OffsetMap { shifts })
}

/// Byte offsets of a text to offsets of its [`escape_lines`] form.
#[derive(Debug, Clone, Default)]
pub struct OffsetMap {
    /// (offset just after an escaped character, bytes added by escaping it and every one
    /// before it), in order.
    shifts: Vec<(usize, usize)>,
}

impl OffsetMap {
    /// The offset in the escaped text of the place at `at` in the original.
    pub fn map(&self, at: usize) -> usize {
        let n = self.shifts.partition_point(|&(after, _)| after <= at);
        at + n.checked_sub(1).map_or(0, |last| self.shifts[last].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_newlines_and_bidi_overrides_are_escaped() {
        assert_eq!(escape("plain — ünïcode"), "plain — ünïcode");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u001b[2Jb");
        assert_eq!(escape("row\nerror: forged"), "row\\nerror: forged");
        assert_eq!(escape("x\r\ty\u{7f}\u{9b}"), "x\\r\\ty\\u007f\\u009b");
        assert_eq!(escape("evil\u{202e}gpj.exe"), "evil\\u202egpj.exe");
        assert_eq!(
            escape("\u{2066}a\u{2069}\u{2028}"),
            "\\u2066a\\u2069\\u2028"
        );
    }

    #[test]
    fn offsets_follow_the_escapes_and_line_breaks_stay() {
        let text = "a\u{1b}b\r\nc\u{202e}d\n";
        let (escaped, map) = escape_lines(text);
        assert_eq!(escaped, "a\\u001bb\r\nc\\u202ed\n");
        for (i, c) in text.char_indices() {
            if !is_unsafe(c) || c == '\n' || c == '\r' {
                assert_eq!(escaped[map.map(i)..].chars().next(), Some(c), "at {i}");
            }
        }
        assert_eq!(map.map(text.len()), escaped.len());
    }
}
