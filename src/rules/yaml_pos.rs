//! Where each part of a YAML document stands in its text.
//!
//! serde gives us typed rule files ([`super::yaml_value`]) but no positions once a value is
//! read, and an error in a condition must point at the line and column *in the file*. This
//! module walks the text once with yaml-rust2's event parser and keeps a light tree of byte
//! offsets, and builds in the same walk the value serde reads (as yaml-rust2's loader
//! would have: the text used to be parsed a second time for it).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::yaml::Hash;
use yaml_rust2::Yaml;

use super::yaml_value::{self, YamlError};
use crate::diagnostic::{Code, Diagnostic};

/// A node of the position tree.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Byte offset where the node starts (for block scalars, their first content character).
    pub start: usize,
    /// The node's shape and children.
    pub kind: NodeKind,
}

/// What a node is.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
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
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, n)| n)
    }

    /// The key's offset and value under `key`.
    pub(crate) fn entry(&self, key: &str) -> Option<(usize, &Node)> {
        match &self.kind {
            NodeKind::Map(items) => items
                .iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, at, n)| (*at, n)),
            _ => None,
        }
    }

    /// The `i`th item, if this is a sequence that has it.
    pub(crate) fn item(&self, i: usize) -> Option<&Node> {
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

/// A YAML text read once: where the parts of its first document stand, and what the
/// document says.
#[derive(Debug)]
pub(crate) struct Document {
    /// The position tree of the first document.
    pub root: Node,
    /// The first document as a value, read as yaml-rust2's `YamlLoader` reads it; what the
    /// loader refused (a key repeated in a mapping, any problem in a later document) is
    /// the error.
    pub value: Result<Value, YamlError>,
}

/// Reads `text` in one walk of yaml-rust2's event parser: the position tree and the value
/// of its first document; `Ok(None)` for an empty text. The first document's syntax
/// errors, nesting deeper than `MAX_DEPTH` and aliases that would expand beyond
/// [`MAX_EXPANDED_NODES`] are refused as diagnostics. Later documents are walked too (the
/// loader read them, and refused the text for their errors) under the same limits.
pub(crate) fn read(text: &str) -> Result<Option<Document>, Diagnostic> {
    let offsets = CharOffsets::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut reader = Reader::new(&mut parser, &offsets);
    let root = loop {
        let (event, mark) = reader.next().map_err(Refusal::diagnostic)?;
        match event {
            Event::StreamEnd => return Ok(None),
            Event::StreamStart | Event::DocumentStart => {}
            _ => break reader.document(event, mark).map_err(Refusal::diagnostic)?,
        }
    };
    let value = match reader.rest() {
        Err(r) => Err(r.load_error()),
        Ok(()) => reader.duplicate.take().map_or(Ok(root.value), Err),
    };
    Ok(Some(Document {
        root: root.node,
        value,
    }))
}

/// Why the walk stopped: a parser error or a limit, at a byte offset.
struct Refusal {
    code: Code,
    at: usize,
    info: String,
}

impl Refusal {
    /// In the first document: a diagnostic, as the position walk has always reported it.
    fn diagnostic(self) -> Diagnostic {
        yaml_error(self.code, self.at, self.info)
    }

    /// In a later document: the error the loader gave (it alone read those).
    fn load_error(self) -> YamlError {
        YamlError {
            at: self.at,
            message: self.info,
        }
    }
}

/// One node as the walk read it: where it stands and its value; for keys and anchored
/// nodes, and everything inside them, also the loader's YAML node, which the loader
/// compares (repeated keys) and copies (aliases).
struct Read {
    node: Node,
    value: Value,
    yaml: Option<Yaml>,
}

struct Reader<'p, 't> {
    parser: &'p mut Parser<std::str::Chars<'t>>,
    offsets: &'p CharOffsets,
    depth: usize,
    /// Per anchor: how many nodes it stands for with its own aliases expanded, its value,
    /// and its YAML node.
    anchors: HashMap<usize, (u64, Value, Yaml)>,
    /// The anchors of the document being read: the loader's parser forgets the others at
    /// each document.
    doc_anchors: HashSet<usize>,
    /// The expanded size of the node read last.
    size: u64,
    /// Byte offset of the last event of the node read last, where the loader inserted it.
    end: usize,
    /// Nodes of this document read so far, aliases expanded: past [`MAX_EXPANDED_NODES`]
    /// an alias is not copied, as the document is refused anyway.
    total: u64,
    /// Whether an alias was left uncopied: the document must then be refused.
    truncated: bool,
    /// The first key repeated in a mapping, as the loader reported it.
    duplicate: Option<YamlError>,
}

/// Nesting deeper than this is refused: rule files are shallow, hostile ones are not.
const MAX_DEPTH: usize = 64;

/// The most nodes a document may stand for once its aliases are expanded. A loader that
/// expands aliases (serde does, to build values) would otherwise turn a few hundred bytes
/// of nested aliases ("a billion laughs") into billions of nodes; the library's largest
/// file is about 15,000.
pub(crate) const MAX_EXPANDED_NODES: u64 = 1_000_000;

impl<'p, 't> Reader<'p, 't> {
    fn new(parser: &'p mut Parser<std::str::Chars<'t>>, offsets: &'p CharOffsets) -> Self {
        Reader {
            parser,
            offsets,
            depth: 0,
            anchors: HashMap::new(),
            doc_anchors: HashSet::new(),
            size: 0,
            end: 0,
            total: 0,
            truncated: false,
            duplicate: None,
        }
    }

    fn next(&mut self) -> Result<(Event, usize), Refusal> {
        match self.parser.next_token() {
            Ok((event, mark)) => Ok((event, self.offsets.byte(mark))),
            Err(e) => Err(Refusal {
                code: Code::YamlSyntax,
                at: self.offsets.byte(*e.marker()),
                info: e.info().to_string(),
            }),
        }
    }

    /// The root node of a document, its aliases bounded.
    fn document(&mut self, event: Event, start: usize) -> Result<Read, Refusal> {
        self.doc_anchors.clear();
        self.total = 0;
        self.truncated = false;
        let root = self.node(event, start, false)?;
        if self.truncated {
            return Err(too_large(start));
        }
        Ok(root)
    }

    /// The documents after the first, walked for what the loader refused in them.
    fn rest(&mut self) -> Result<(), Refusal> {
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamEnd => return Ok(()),
                Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
                _ => {
                    self.document(event, mark)?;
                }
            }
        }
    }

    /// Reads the node `event` starts; `yaml` asks for its YAML node as well.
    fn node(&mut self, event: Event, start: usize, yaml: bool) -> Result<Read, Refusal> {
        self.end = start;
        let (read, anchor, size) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let y = yaml_value::scalar(&text, style, tag.as_ref());
                let read = Read {
                    node: Node {
                        start,
                        kind: NodeKind::Scalar(style, text),
                    },
                    value: yaml_value::value(&y),
                    yaml: (yaml || anchor > 0).then_some(y),
                };
                (read, anchor, 1)
            }
            Event::SequenceStart(anchor, _) => {
                let (read, size) = self.sequence(start, yaml || anchor > 0)?;
                (read, anchor, size)
            }
            Event::MappingStart(anchor, _) => {
                let (read, size) = self.mapping(start, yaml || anchor > 0)?;
                (read, anchor, size)
            }
            Event::Alias(id) => return self.alias(id, start, yaml),
            _ => {
                let read = Read {
                    node: Node {
                        start,
                        kind: NodeKind::Other,
                    },
                    value: Value::Null,
                    yaml: yaml.then_some(Yaml::BadValue),
                };
                (read, 0, 1)
            }
        };
        self.total = self.total.saturating_add(1);
        if anchor > 0 {
            let y = read.yaml.clone().unwrap_or(Yaml::BadValue);
            self.anchors.insert(anchor, (size, read.value.clone(), y));
            self.doc_anchors.insert(anchor);
        }
        self.size = size;
        Ok(read)
    }

    /// An alias: its anchor's value copied, as the loader copies it. An anchor of another
    /// document is unknown to the loader's parser, and one still being read is not yet
    /// in the loader's table (it reads as nothing).
    fn alias(&mut self, id: usize, start: usize, yaml: bool) -> Result<Read, Refusal> {
        if !self.doc_anchors.contains(&id) && self.anchors.contains_key(&id) {
            return Err(Refusal {
                code: Code::YamlSyntax,
                at: start,
                info: "while parsing node, found unknown anchor".into(),
            });
        }
        let node = Node {
            start,
            kind: NodeKind::Other,
        };
        let (size, value, y) = match self.anchors.get(&id) {
            Some((size, value, y)) if self.total.saturating_add(*size) <= MAX_EXPANDED_NODES => {
                (*size, value.clone(), yaml.then(|| y.clone()))
            }
            Some((size, ..)) => {
                self.truncated = true;
                (*size, Value::Null, yaml.then_some(Yaml::BadValue))
            }
            None => (1, Value::Null, yaml.then_some(Yaml::BadValue)),
        };
        self.total = self.total.saturating_add(size);
        self.size = size;
        Ok(Read {
            node,
            value,
            yaml: y,
        })
    }

    /// A sequence's items, with its expanded size.
    fn sequence(&mut self, start: usize, yaml: bool) -> Result<(Read, u64), Refusal> {
        self.enter(start)?;
        let mut size: u64 = 1;
        let (mut nodes, mut values, mut yamls) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            let (ev, at) = self.next()?;
            if ev == Event::SequenceEnd {
                self.end = at;
                break;
            }
            let item = self.node(ev, at, yaml)?;
            size = self.grow(size, start)?;
            nodes.push(item.node);
            values.push(item.value);
            yamls.extend(item.yaml);
        }
        self.depth -= 1;
        let read = Read {
            node: Node {
                start,
                kind: NodeKind::Seq(nodes),
            },
            value: Value::Array(values),
            yaml: yaml.then_some(Yaml::Array(yamls)),
        };
        Ok((read, size))
    }

    /// A mapping's entries, with its expanded size. Positions pair each key event with
    /// the next; the value is built as the loader builds it ([`Entries`]).
    fn mapping(&mut self, start: usize, yaml: bool) -> Result<(Read, u64), Refusal> {
        self.enter(start)?;
        let mut size: u64 = 1;
        let mut items = Vec::new();
        let mut entries = Entries::new(yaml);
        loop {
            let (ev, at) = self.next()?;
            if ev == Event::MappingEnd {
                self.end = at;
                break;
            }
            let key = match &ev {
                Event::Scalar(text, ..) => text.clone(),
                _ => String::new(),
            };
            let k = self.node(ev, at, yaml || entries.wants_key())?;
            size = self.grow(size, start)?;
            self.add(&mut entries, k.value, k.yaml);
            let (vev, vat) = self.next()?;
            let v = self.node(vev, vat, yaml || entries.wants_key())?;
            size = self.grow(size, start)?;
            let Read {
                node,
                value,
                yaml: y,
            } = v;
            items.push((key, at, node));
            self.add(&mut entries, value, y);
        }
        self.depth -= 1;
        let (value, y) = entries.finish();
        let read = Read {
            node: Node {
                start,
                kind: NodeKind::Map(items),
            },
            value,
            yaml: y,
        };
        Ok((read, size))
    }

    /// Adds a node read inside a mapping, keeping the first repeated key.
    fn add(&mut self, entries: &mut Entries, value: Value, yaml: Option<Yaml>) {
        if let Err(key) = entries.push(value, yaml) {
            self.duplicate.get_or_insert_with(|| YamlError {
                at: self.end,
                message: format!("{key:?}: duplicated key in mapping"),
            });
        }
    }

    /// `size` plus the node just read, refused beyond [`MAX_EXPANDED_NODES`].
    fn grow(&self, size: u64, at: usize) -> Result<u64, Refusal> {
        let size = size.saturating_add(self.size);
        if size > MAX_EXPANDED_NODES {
            return Err(too_large(at));
        }
        Ok(size)
    }

    fn enter(&mut self, at: usize) -> Result<(), Refusal> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Refusal {
                code: Code::YamlTooDeep,
                at,
                info: format!("nested deeper than {MAX_DEPTH} levels"),
            });
        }
        Ok(())
    }
}

/// A node whose aliases expand beyond [`MAX_EXPANDED_NODES`], refused at `at`.
fn too_large(at: usize) -> Refusal {
    Refusal {
        code: Code::YamlTooLarge,
        at,
        info: format!(
            "its aliases expand to more than {MAX_EXPANDED_NODES} nodes (aliases of aliases multiply)"
        ),
    }
}

/// A mapping's value as yaml-rust2's loader builds it: each node read is the key when no
/// key is waiting, else that key's value. A key that reads as nothing (a bad tag, an
/// alias of an anchor still being read) leaves the slot empty, so the node after it is
/// the key: odd, and kept, so that values do not change.
struct Entries {
    /// The key waiting for its value.
    key: Option<Yaml>,
    /// Keys seen, to find a repeated one (when no YAML node is built).
    seen: HashSet<Yaml>,
    /// The YAML node, when asked for.
    hash: Option<Hash>,
    map: Map<String, Value>,
}

impl Entries {
    fn new(yaml: bool) -> Entries {
        Entries {
            key: None,
            seen: HashSet::new(),
            hash: yaml.then(Hash::new),
            map: Map::new(),
        }
    }

    /// Whether the next node read is a key (and its YAML node is needed).
    fn wants_key(&self) -> bool {
        self.key.is_none()
    }

    /// Adds a node; `Err` with the key if this completes a key already in the mapping.
    fn push(&mut self, value: Value, yaml: Option<Yaml>) -> Result<(), Yaml> {
        let y = yaml.unwrap_or(Yaml::BadValue);
        let Some(key) = self.key.take() else {
            if !y.is_badvalue() {
                self.key = Some(y);
            }
            return Ok(());
        };
        self.map.insert(yaml_value::key(&key), value);
        let repeated = match &mut self.hash {
            Some(hash) => hash.insert(key.clone(), y).is_some(),
            None => !self.seen.insert(key.clone()),
        };
        if repeated {
            Err(key)
        } else {
            Ok(())
        }
    }

    fn finish(self) -> (Value, Option<Yaml>) {
        (Value::Object(self.map), self.hash.map(Yaml::Hash))
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
pub(crate) fn map_range(
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
        let root = read(DOC).unwrap().unwrap().root;
        let rule = root.get("rules").unwrap().item(0).unwrap();
        let (key_at, id) = rule.entry("id").unwrap();
        assert_eq!(&DOC[key_at..key_at + 2], "id");
        assert_eq!(&DOC[id.start..id.start + 1], "a");
    }

    #[test]
    fn maps_literal_block_offsets_to_the_file() {
        let root = read(DOC).unwrap().unwrap().root;
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
        let root = read(DOC).unwrap().unwrap().root;
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
        let e = read("rules:\n  - id: [\n").unwrap_err();
        assert!(e.primary.range.start > 0);
    }
}
