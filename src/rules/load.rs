//! Reading rule files: strict keys via serde, positions and values via one walk of the
//! YAML ([`yaml_pos::read`]), conditions via the checker, and every problem collected
//! rather than stopping at the first.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;

use super::yaml_pos::{self, map_range, Node, NodeKind};
use super::{default_signal_type, Compliance, Example, Expect, RuleDef, Severity};
use crate::diagnostic::{clip, Code, Diagnostic, Level, SourceFile};
use crate::lang::check;
use crate::rules::compact::{self, CompactSpan};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    severity: Severity,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    incomplete: super::Incomplete,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    compliance: Option<Compliance>,
    condition: String,
    #[serde(default)]
    signal: Option<SignalDoc>,
    /// Read one by one, so that every bad example is reported.
    #[serde(default)]
    examples: Vec<serde_json::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalDoc {
    #[serde(rename = "type", default)]
    ty: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    context: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleDoc {
    name: String,
    expect: Expect,
    /// Read span by span, so that every bad span is reported.
    trace: Vec<serde_json::Value>,
}

/// Loads every rule of every file. The rules are usable only when no diagnostic is an
/// error: loading is all-or-nothing, and the caller refuses the set whole.
pub fn load(files: &[SourceFile]) -> (Vec<RuleDef>, Vec<Diagnostic>) {
    let mut out = Loader {
        rules: Vec::new(),
        diags: Vec::new(),
        ids: HashMap::new(),
    };
    for (i, f) in files.iter().enumerate() {
        out.file(i, f);
    }
    (out.rules, out.diags)
}

struct Loader {
    rules: Vec<RuleDef>,
    diags: Vec<Diagnostic>,
    /// id → (file, byte range of the id) of its first definition.
    ids: HashMap<String, (usize, Range<usize>)>,
}

impl Loader {
    fn error(
        &mut self,
        code: Code,
        file: usize,
        rule: Option<&str>,
        at: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) {
        self.diags.push(
            Diagnostic::error(code, at, message, label)
                .for_rule(rule)
                .relocate(file, |r| r),
        );
    }

    fn condition_problems(
        &mut self,
        fi: usize,
        f: &SourceFile,
        id: &str,
        node: &Node,
        condition: &str,
        problems: Vec<Diagnostic>,
    ) {
        for p in problems {
            self.diags.push(
                p.relocate(fi, |r| map_range(&f.text, node, condition, r))
                    .for_rule(Some(id)),
            );
        }
    }

    /// A serde error in a part of a rule, pointed at the key or value its path names.
    fn typed_error<E: std::fmt::Display>(
        &mut self,
        fi: usize,
        f: &SourceFile,
        rule: Option<&str>,
        node: &Node,
        e: &serde_path_to_error::Error<E>,
    ) {
        let msg = e.inner().to_string();
        let (at, len) = locate(node, e.path(), &msg, &f.text);
        let label = if msg.starts_with("missing field") {
            "in the mapping that starts here"
        } else if msg.starts_with("unknown field") {
            "unknown key"
        } else {
            "here"
        };
        let code = if msg.starts_with("missing field") {
            Code::MissingKey
        } else if msg.starts_with("unknown field") {
            Code::UnknownKey
        } else if msg.starts_with("invalid type") {
            Code::WrongType
        } else {
            Code::InvalidValue
        };
        let mut d = Diagnostic::error(code, at..at + len, msg.clone(), label).for_rule(rule);
        if msg.starts_with("invalid type") {
            d = d.with_help(format!("`{}` has the wrong type", e.path()));
        }
        self.diags.push(d.relocate(fi, |r| r));
    }

    fn file(&mut self, fi: usize, f: &SourceFile) {
        let (root, value) = match yaml_pos::read(&f.text) {
            Ok(Some(doc)) => (doc.root, doc.value),
            Ok(None) => {
                return self.error(
                    Code::EmptyFile,
                    fi,
                    None,
                    0..0,
                    "empty rule file",
                    "expected a `rules:` list",
                )
            }
            Err(d) => return self.diags.push(d.relocate(fi, |r| r)),
        };
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                // A repeated key is reported (as yaml-rust2's loader reported it) where its
                // value ends, or its mapping: point at the repeated key, and the first.
                if let Some((key, first, again)) = e
                    .message
                    .contains("duplicated key")
                    .then(|| repeated_key(&root))
                    .flatten()
                {
                    let d = Diagnostic::error(
                        Code::YamlRepeatedKey,
                        again..again + key.len().max(1),
                        format!("the key `{}` appears twice in one mapping", clip(&key)),
                        "again here",
                    )
                    .relocate(fi, |r| r)
                    .with_secondary(
                        fi,
                        first..first + key.len().max(1),
                        "first here",
                    );
                    return self.diags.push(d);
                }
                return self.error(
                    Code::YamlUnreadable,
                    fi,
                    None,
                    e.at..e.at + 1,
                    format!("YAML error: {}", e.message),
                    "here",
                );
            }
        };
        let NodeKind::Map(entries) = &root.kind else {
            return self.error(
                Code::NotAMapping,
                fi,
                None,
                root.start..root.start + 1,
                "a rule file is a mapping with one key, `rules`",
                "not a mapping",
            );
        };
        for (key, at, _) in entries {
            if key != "rules" {
                self.error(
                    Code::UnknownTopKey,
                    fi,
                    None,
                    *at..*at + key.len(),
                    format!("unknown key `{key}`"),
                    "a rule file has one top-level key, `rules`",
                );
            }
        }
        let (Some(rules_node), Some(serde_json::Value::Array(items))) =
            (root.get("rules"), value.get("rules"))
        else {
            return self.error(
                Code::NoRules,
                fi,
                None,
                root.start..root.start + 1,
                "no `rules:` list",
                "expected `rules:` followed by a list of rules",
            );
        };
        for (ri, item) in items.iter().enumerate() {
            let Some(node) = rules_node.item(ri) else {
                continue;
            };
            self.rule(fi, f, node, item);
        }
    }

    fn rule(&mut self, fi: usize, f: &SourceFile, node: &Node, item: &serde_json::Value) {
        let id_hint = item.get("id").and_then(|v| v.as_str()).map(str::to_string);
        let doc: RuleDoc = match serde_path_to_error::deserialize(item.clone()) {
            Ok(d) => d,
            Err(e) => {
                self.typed_error(fi, f, id_hint.as_deref(), node, &e);
                // The rest of the rule may have errors too: check its condition anyway.
                if let (Some(cond), Some(cond_node)) = (
                    item.get("condition").and_then(|c| c.as_str()),
                    node.get("condition"),
                ) {
                    if let Err(problems) = check::check_text(cond) {
                        self.condition_problems(
                            fi,
                            f,
                            id_hint.as_deref().unwrap_or(""),
                            cond_node,
                            cond,
                            problems,
                        );
                    }
                }
                return;
            }
        };
        let errors_before = self.error_count();
        let id_range = node
            .get("id")
            .map(|n| n.start..n.start + doc.id.len())
            .unwrap_or(node.start..node.start);

        if doc.id.is_empty()
            || !doc
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            self.error(
                Code::InvalidId,
                fi,
                Some(&doc.id),
                id_range.clone(),
                "a rule id is letters, digits, `_`, `.` and `-`",
                "invalid id",
            );
        }
        match self.ids.get(&doc.id) {
            Some((first_file, first_range)) => {
                let d = Diagnostic::error(
                    Code::DuplicateId,
                    id_range.clone(),
                    format!("duplicate rule id `{}`", doc.id),
                    "defined again here",
                )
                .for_rule(Some(&doc.id))
                .relocate(fi, |r| r)
                .with_secondary(*first_file, first_range.clone(), "first defined here")
                .with_help("rule ids are unique across every loaded file: rename one");
                self.diags.push(d);
            }
            None => {
                self.ids.insert(doc.id.clone(), (fi, id_range));
            }
        }

        let cond_node = node
            .get("condition")
            .cloned()
            .unwrap_or_else(|| node.clone());
        let form = match check::check_text(&doc.condition) {
            Ok(checked) => {
                self.condition_problems(
                    fi,
                    f,
                    &doc.id,
                    &cond_node,
                    &doc.condition,
                    checked.warnings,
                );
                Some(checked.form)
            }
            Err(problems) => {
                self.condition_problems(fi, f, &doc.id, &cond_node, &doc.condition, problems);
                None
            }
        };

        let examples = self.examples(fi, f, &doc, node);
        let (Some(form), true) = (form, self.error_count() == errors_before) else {
            return;
        };
        let signal = doc.signal.unwrap_or(SignalDoc {
            ty: None,
            message: None,
            context: Vec::new(),
        });
        self.rules.push(RuleDef {
            signal_type: signal.ty.unwrap_or_else(|| default_signal_type(&doc.id)),
            message: signal.message.unwrap_or_else(|| doc.name.clone()),
            context: signal.context,
            id: doc.id,
            name: doc.name,
            description: doc.description,
            severity: doc.severity,
            enabled: doc.enabled,
            incomplete: doc.incomplete,
            tags: doc.tags,
            compliance: doc.compliance,
            condition: doc.condition,
            form,
            examples,
            file: fi,
        });
    }

    /// Reads a rule's examples, reporting every bad example and every bad span in them.
    fn examples(&mut self, fi: usize, f: &SourceFile, doc: &RuleDoc, node: &Node) -> Vec<Example> {
        let id = Some(doc.id.as_str());
        let mut examples = Vec::new();
        for (ei, raw) in doc.examples.iter().enumerate() {
            let Some(ex_node) = node.get("examples").and_then(|n| n.item(ei)) else {
                continue;
            };
            let ex: ExampleDoc = match serde_path_to_error::deserialize(raw.clone()) {
                Ok(ex) => ex,
                Err(e) => {
                    self.typed_error(fi, f, id, ex_node, &e);
                    continue;
                }
            };
            let mut spans = Vec::new();
            for (si, raw_span) in ex.trace.iter().enumerate() {
                let span_node = ex_node
                    .get("trace")
                    .and_then(|n| n.item(si))
                    .unwrap_or(ex_node);
                match serde_path_to_error::deserialize::<_, CompactSpan>(raw_span.clone()) {
                    Ok(s) => spans.push(s),
                    Err(e) => self.typed_error(fi, f, id, span_node, &e),
                }
            }
            if spans.len() < ex.trace.len() {
                continue;
            }
            match compact::to_trace(&spans, example_seed(&doc.id, ei)) {
                Ok(trace) => examples.push(Example {
                    name: ex.name.clone(),
                    expect: ex.expect,
                    trace,
                }),
                Err(e) => {
                    // The offending value is the message's last `quoted` word; else the span.
                    let message = e.to_string();
                    let last = message.rsplit('`').nth(1).unwrap_or("");
                    let at = find_key_or_value(ex_node, last)
                        .or_else(|| find_key_or_value(ex_node, &e.span))
                        .filter(|&p| p >= ex_node.start)
                        .unwrap_or(ex_node.start);
                    self.error(
                        Code::BadExample,
                        fi,
                        id,
                        at..at + word_len(&f.text, at),
                        format!("example `{}`: {e}", ex.name),
                        "in this example",
                    );
                }
            }
        }
        examples
    }

    fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.level == Level::Error)
            .count()
    }
}

/// The first key that a mapping of `node` (at any depth) holds twice: the key, and the
/// offsets of its first and second occurrence.
fn repeated_key(node: &Node) -> Option<(String, usize, usize)> {
    match &node.kind {
        NodeKind::Map(items) => {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (key, at, _) in items {
                // Complex keys read as "": never the same key.
                if let Some(&first) = seen.get(key.as_str()).filter(|_| !key.is_empty()) {
                    return Some((key.clone(), first, *at));
                }
                seen.insert(key, *at);
            }
            items.iter().find_map(|(_, _, v)| repeated_key(v))
        }
        NodeKind::Seq(items) => items.iter().find_map(repeated_key),
        _ => None,
    }
}

/// Where a serde error's path points in the position tree: the value it names (the key,
/// for an unknown or missing key), as (offset, length).
fn locate(node: &Node, path: &serde_path_to_error::Path, msg: &str, text: &str) -> (usize, usize) {
    use serde_path_to_error::Segment;
    let mut cur = node;
    let mut key_at = None;
    for seg in path.iter() {
        let next = match seg {
            Segment::Seq { index } => cur.item(*index).map(|n| (None, n)),
            Segment::Map { key } => cur.entry(key).map(|(at, n)| (Some(at), n)),
            _ => None,
        };
        match next {
            Some((at, n)) => {
                key_at = at;
                cur = n;
            }
            None => break,
        }
    }
    // `unknown field `x``: the key inside the mapping reached; `missing field`: the mapping.
    let word = msg.split('`').nth(1).unwrap_or("");
    if msg.starts_with("unknown field") {
        // The path ends at the unknown key's value, or at the mapping holding it.
        if let Some(at) = cur.entry(word).map(|(at, _)| at).or(key_at) {
            return (at, word.len().max(1));
        }
    }
    if msg.starts_with("missing field") {
        // Point at the mapping's first key: the mapping the field is missing from.
        return match &cur.kind {
            NodeKind::Map(items) if !items.is_empty() => (items[0].1, items[0].0.len().max(1)),
            _ => {
                let at = key_at.unwrap_or(cur.start);
                (at, word_len(text, at))
            }
        };
    }
    let at = match &cur.kind {
        NodeKind::Scalar(..) => cur.start,
        _ => key_at.unwrap_or(cur.start),
    };
    (at, word_len(text, at))
}

/// The seed an example's trace and span ids derive from: its rule id and position.
pub(super) fn example_seed(rule_id: &str, index: usize) -> u64 {
    // FNV-1a over the id's bytes, then the index's big-endian bytes: stable across runs
    // and platforms, unlike the std hasher (`write_u64` would be native-endian).
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(rule_id.as_bytes());
    h.write(&(index as u64).to_be_bytes());
    h.finish()
}

fn find_key_or_value(node: &Node, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    match &node.kind {
        NodeKind::Map(items) => items.iter().find_map(|(k, at, v)| {
            if k == word {
                Some(*at)
            } else {
                find_key_or_value(v, word)
            }
        }),
        NodeKind::Seq(items) => items.iter().find_map(|n| find_key_or_value(n, word)),
        NodeKind::Scalar(_, s) if s == word => Some(node.start),
        _ => None,
    }
}

/// The length of the word at `at`, so the caret covers it.
fn word_len(text: &str, at: usize) -> usize {
    text.get(at..)
        .map(|rest| {
            rest.find(|c: char| c.is_whitespace() || c == ':' || c == ',')
                .unwrap_or(rest.len())
                .max(1)
        })
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Vec<SourceFile> {
        vec![SourceFile {
            name: "rules.yaml".into(),
            text: text.into(),
        }]
    }

    #[test]
    fn unknown_keys_and_missing_fields_are_located() {
        let text = "rules:\n  - id: a\n    name: A\n    condition: x\n    colour: red\n  - id: b\n    condition: y\n";
        let (_, diags) = load(&file(text));
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(diags[0].message.contains("unknown field `colour`"));
        assert_eq!(&text[diags[0].primary.range.clone()], "colour");
        assert!(diags[1].message.contains("missing field `name`"));
    }

    #[test]
    fn a_value_saying_at_line_is_quoted_whole() {
        // serde's messages once ended in " at line L column C", and a helper cut them
        // there; it cut users' text too.
        let text =
            "rules:\n  - id: a\n    name: A\n    severity: \"bad at line 5\"\n    condition: x\n";
        let (_, diags) = load(&file(text));
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.contains("`bad at line 5`"), "{diags:?}");
    }

    #[test]
    fn example_seeds_are_stable() {
        // Example trace ids derive from these: they must not change between releases.
        assert_eq!(example_seed("r", 0), 0xb0c9_2e81_2ad4_3975);
        assert_eq!(
            example_seed("payment-requires-inventory", 3),
            0xa3e5_f850_f28f_f0c8
        );
    }

    #[test]
    fn duplicate_ids_across_files_are_refused() {
        let a = SourceFile {
            name: "a.yaml".into(),
            text: "rules:\n  - {id: r, name: R, condition: x}\n".into(),
        };
        let b = SourceFile {
            name: "b.yaml".into(),
            text: "rules:\n  - {id: r, name: R, condition: y}\n".into(),
        };
        let (_, diags) = load(&[a, b]);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].primary.file, 1);
        assert!(diags[0].message.contains("duplicate"));
    }

    #[test]
    fn defaults_apply() {
        let (rules, diags) = load(&file("rules:\n  - id: payment-requires-inventory\n    name: P\n    condition: when { a } always { b }\n"));
        assert!(diags.is_empty(), "{diags:?}");
        let r = &rules[0];
        assert_eq!(r.severity, Severity::Medium);
        assert!(r.enabled);
        assert_eq!(r.signal_type, "PAYMENT_REQUIRES_INVENTORY");
        assert_eq!(r.message, "P");
    }
}
