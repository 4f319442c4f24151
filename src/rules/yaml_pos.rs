//! Where each part of a YAML document stands in its text.
//!
//! serde gives us typed rule files ([`super::yaml_value`]) but no positions once a value is read, and an
//! error in a condition must point at the line and column *in the file*. This module reads
//! the same text with yaml-rust2's event parser and keeps a light tree of byte offsets.

use yaml_rust2::parser::{Event, Parser};

use crate::diagnostic::{Code, Diagnostic};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A node of the position tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Byte offset where the node starts (for block scalars, their first content character).
    pub start: usize,
    /// The node's shape and children.
    pub kind: NodeKind,
}

/// What a node is.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A scalar with its style and text.
    Scalar(TScalarStyle, String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping: key text, key offset, value.
    Map(Vec<(String, usize, Node)>),
    /// An alias or anything else without children.
    Other,
}

impl Node {
    /// The value under `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, n)| n)
    }

    /// The key's offset and value under `key`.
    pub fn entry(&self, key: &str) -> Option<(usize, &Node)> {
        match &self.kind {
            NodeKind::Map(items) => items
                .iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, at, n)| (*at, n)),
            _ => None,
        }
    }

    /// The `i`th item, if this is a sequence that has it.
    pub fn item(&self, i: usize) -> Option<&Node> {
        match &self.kind {
            NodeKind::Seq(items) => items.get(i),
            _ => None,
        }
    }
}

/// A YAML syntax error: a [`Diagnostic`] at the byte where the parser gave up.
fn yaml_error(code: Code, at: usize, message: String) -> Diagnostic {
    Diagnostic::error(
        code,
        at..at + 1,
        format!("YAML syntax error: {message}"),
        "here",
    )
}

/// Builds the position tree of the first document in `text`; `Ok(None)` for an empty one.
pub fn positions(text: &str) -> Result<Option<Node>, Diagnostic> {
    let offsets = CharOffsets::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut reader = Reader {
        parser: &mut parser,
        offsets: &offsets,
        depth: 0,
        anchors: std::collections::HashMap::new(),
        size: 0,
    };
    loop {
        let (event, mark) = reader.next()?;
        match event {
            Event::StreamEnd => return Ok(None),
            Event::StreamStart | Event::DocumentStart => {}
            _ => return reader.node(event, mark).map(Some),
        }
    }
}

struct Reader<'p, 't> {
    parser: &'p mut Parser<std::str::Chars<'t>>,
    offsets: &'p CharOffsets,
    depth: usize,
    /// Per anchor, how many nodes it stands for with its own aliases expanded.
    anchors: std::collections::HashMap<usize, u64>,
    /// The expanded size of the node read last.
    size: u64,
}

/// Nesting deeper than this is refused: rule files are shallow, hostile ones are not.
const MAX_DEPTH: usize = 64;

/// The most nodes a document may stand for once its aliases are expanded. A loader that
/// expands aliases (serde does, to build values) would otherwise turn a few hundred bytes
/// of nested aliases ("a billion laughs") into billions of nodes; the library's largest
/// file is about 15,000.
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;

impl Reader<'_, '_> {
    fn next(&mut self) -> Result<(Event, usize), Diagnostic> {
        match self.parser.next_token() {
            Ok((event, mark)) => Ok((event, self.offsets.byte(mark))),
            Err(e) => Err(yaml_error(
                Code::YamlSyntax,
                self.offsets.byte(*e.marker()),
                e.info().to_string(),
            )),
        }
    }

    fn node(&mut self, event: Event, start: usize) -> Result<Node, Diagnostic> {
        let mut size: u64 = 1;
        let (kind, anchor) = match event {
            Event::Scalar(text, style, anchor, _) => (NodeKind::Scalar(style, text), anchor),
            Event::SequenceStart(anchor, _) => {
                self.enter(start)?;
                let mut items = Vec::new();
                loop {
                    let (ev, at) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(ev, at)?);
                    size = self.grow(size, start)?;
                }
                self.depth -= 1;
                (NodeKind::Seq(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                self.enter(start)?;
                let mut items = Vec::new();
                loop {
                    let (ev, at) = self.next()?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let key = match &ev {
                        Event::Scalar(text, ..) => text.clone(),
                        _ => String::new(),
                    };
                    let _ = self.node(ev, at)?;
                    size = self.grow(size, start)?;
                    let (vev, vat) = self.next()?;
                    let value = self.node(vev, vat)?;
                    size = self.grow(size, start)?;
                    items.push((key, at, value));
                }
                self.depth -= 1;
                (NodeKind::Map(items), anchor)
            }
            Event::Alias(id) => {
                size = self.anchors.get(&id).copied().unwrap_or(1);
                (NodeKind::Other, 0)
            }
            _ => (NodeKind::Other, 0),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, size);
        }
        self.size = size;
        Ok(Node { start, kind })
    }

    /// `size` plus the node just read, refused beyond [`MAX_EXPANDED_NODES`].
    fn grow(&self, size: u64, at: usize) -> Result<u64, Diagnostic> {
        let size = size.saturating_add(self.size);
        if size > MAX_EXPANDED_NODES {
            return Err(yaml_error(
                Code::YamlTooLarge,
                at,
                format!(
                    "its aliases expand to more than {MAX_EXPANDED_NODES} nodes (aliases of aliases multiply)"
                ),
            ));
        }
        Ok(size)
    }

    fn enter(&mut self, at: usize) -> Result<(), Diagnostic> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(yaml_error(
                Code::YamlTooDeep,
                at,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }
}

/// yaml-rust2 counts characters; diagnostics need bytes.
struct CharOffsets {
    bytes: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> CharOffsets {
        let mut bytes: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        bytes.push(text.len());
        CharOffsets { bytes }
    }

    fn byte(&self, m: Marker) -> usize {
        self.bytes
            .get(m.index())
            .copied()
            .unwrap_or_else(|| *self.bytes.last().expect("never empty"))
    }
}

/// Maps a byte range inside a scalar's *value* to a byte range in the file.
///
/// Exact for literal blocks (`|`) and single-line plain or quoted scalars — the forms
/// conditions are written in. Otherwise the offending text is searched for after the
/// scalar's start, and failing that the scalar's start is used.
pub fn map_range(
    text: &str,
    node: &Node,
    value: &str,
    range: std::ops::Range<usize>,
) -> std::ops::Range<usize> {
    let NodeKind::Scalar(style, _) = &node.kind else {
        return node.start..node.start;
    };
    let len = range.end.saturating_sub(range.start);
    let (line_no, col) = {
        let before = &value[..range.start.min(value.len())];
        let line_no = before.matches('\n').count();
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        (line_no, col)
    };
    match style {
        TScalarStyle::Literal => {
            // yaml-rust2 marks a literal block at its first content character: the content's
            // lines are the file's lines from there, less that indent.
            let line_start = text[..node.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
            let indent = node.start - line_start;
            match line_starts(&text[line_start..]).nth(line_no) {
                Some((offset, line)) => {
                    let start = line_start + offset;
                    let s = start + (indent + col).min(line.len());
                    s..(s + len).min(start + line.len()).max(s)
                }
                None => node.start..node.start,
            }
        }
        TScalarStyle::Plain | TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
            let quote = usize::from(!matches!(style, TScalarStyle::Plain));
            let map = align(
                text,
                node.start + quote,
                value,
                *style == TScalarStyle::DoubleQuoted,
            );
            let at = |i: usize| map.get(i).copied().unwrap_or(node.start);
            let s = at(range.start.min(value.len()));
            let e = if range.end > range.start {
                // The end of the last character, not the start of the next (which may sit
                // past an escape or a line break).
                let last = value[..range.end.min(value.len())]
                    .char_indices()
                    .next_back()
                    .map_or(range.start, |(i, _)| i);
                at(last) + value[last..].chars().next().map_or(0, char::len_utf8)
            } else {
                s
            };
            s..e.max(s).min(text.len())
        }
        _ => {
            let needle = value.get(range.clone()).unwrap_or("");
            match (!needle.is_empty())
                .then(|| text[node.start..].find(needle))
                .flatten()
            {
                Some(o) => node.start + o..node.start + o + needle.len(),
                None => node.start..node.start,
            }
        }
    }
}

/// For each byte of a flow scalar's `value`, the byte of `text` (from `start`, just inside
/// any opening quote) it was read from: escapes (`\\"`, `\\n`, `\\u00e9`, `''`) and folded
/// line breaks with their indentation are walked over, so a caret lands on the character
/// as written. One entry more than `value` has bytes: where the value ends.
fn align(text: &str, start: usize, value: &str, double_quoted: bool) -> Vec<usize> {
    let src = text.as_bytes();
    let skip_blank = |mut i: usize| {
        while matches!(src.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    };
    let mut map = Vec::with_capacity(value.len() + 1);
    let mut si = start;
    for vc in value.chars() {
        // Find where `vc` was written, passing over what produced no character.
        let (at, next) = loop {
            let Some(sc) = text.get(si..).and_then(|r| r.chars().next()) else {
                break (text.len(), text.len());
            };
            if double_quoted && sc == '\\' {
                let len = match text[si + 1..].chars().next() {
                    Some('\n' | '\r') => {
                        si = skip_blank(si + 2); // a line continuation reads as nothing
                        continue;
                    }
                    Some('x') => 4,
                    Some('u') => 6,
                    Some('U') => 10,
                    Some(c) => 1 + c.len_utf8(),
                    None => 1,
                };
                break (si, si + len);
            }
            if sc == vc {
                let mut next = si + sc.len_utf8();
                if vc == '\'' && src.get(next) == Some(&b'\'') {
                    next += 1; // `''` in single quotes reads as one quote
                }
                break (si, next);
            }
            if vc == ' ' && (sc == '\n' || sc == '\r') {
                break (si, skip_blank(si)); // a folded line break reads as one space
            }
            si += sc.len_utf8();
        };
        map.extend(std::iter::repeat_n(at, vc.len_utf8()));
        si = next;
    }
    map.push(si.min(text.len()));
    map
}

fn line_starts(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    s.split('\n').map(move |line| {
        let start = offset;
        offset += line.len() + 1;
        (start, line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "rules:\n  - id: a\n    condition: |\n      when { x }\n        always { y.where(k > ) }\n  - id: b\n    condition: \"a and b\"\n";

    #[test]
    fn finds_keys_and_values() {
        let root = positions(DOC).unwrap().unwrap();
        let rule = root.get("rules").unwrap().item(0).unwrap();
        let (key_at, id) = rule.entry("id").unwrap();
        assert_eq!(&DOC[key_at..key_at + 2], "id");
        assert_eq!(&DOC[id.start..id.start + 1], "a");
    }

    #[test]
    fn maps_literal_block_offsets_to_the_file() {
        let root = positions(DOC).unwrap().unwrap();
        let cond = root
            .get("rules")
            .unwrap()
            .item(0)
            .unwrap()
            .get("condition")
            .unwrap();
        let NodeKind::Scalar(_, value) = &cond.kind else {
            panic!()
        };
        let at = value.find("k >").unwrap();
        let r = map_range(DOC, cond, value, at..at + 3);
        assert_eq!(&DOC[r], "k >");
    }

    #[test]
    fn maps_quoted_scalar_offsets_to_the_file() {
        let root = positions(DOC).unwrap().unwrap();
        let cond = root
            .get("rules")
            .unwrap()
            .item(1)
            .unwrap()
            .get("condition")
            .unwrap();
        let r = map_range(DOC, cond, "a and b", 2..5);
        assert_eq!(&DOC[r], "and");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = positions("rules:\n  - id: [\n").unwrap_err();
        assert!(e.primary.range.start > 0);
    }
}
