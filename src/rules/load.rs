//! Reading rule files: strict keys via serde, positions via [`yaml_pos`], conditions via
//! the checker, and every problem collected rather than stopping at the first.

use std::collections::HashMap;

use serde::Deserialize;

use super::yaml_pos::{self, map_range, Node, NodeKind};
use super::{default_signal_type, Compliance, Example, Expect, RuleDef, Severity};
use crate::check::{self, Level};
use crate::compact::{self, CompactSpan};
use crate::diagnostic::{Diagnostic, SourceFile};

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
    tags: Vec<String>,
    #[serde(default)]
    compliance: Option<Compliance>,
    condition: String,
    #[serde(default)]
    signal: Option<SignalDoc>,
    #[serde(default)]
    examples: Vec<ExampleDoc>,
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
    trace: Vec<CompactSpan>,
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
    ids: HashMap<String, (usize, std::ops::Range<usize>)>,
}

impl Loader {
    fn error(
        &mut self,
        file: usize,
        rule: Option<&str>,
        at: std::ops::Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) {
        self.diags.push(Diagnostic {
            level: Level::Error,
            file,
            rule_id: rule.map(str::to_string),
            range: at,
            message: message.into(),
            label: label.into(),
            notes: Vec::new(),
        });
    }

    fn condition_problems(
        &mut self,
        fi: usize,
        f: &SourceFile,
        id: &str,
        node: &Node,
        condition: &str,
        problems: Vec<check::Problem>,
    ) {
        for p in problems {
            let range = map_range(&f.text, node, condition, p.loc.clone());
            self.diags.push(Diagnostic {
                level: p.level,
                file: fi,
                rule_id: Some(id.to_string()),
                range,
                message: p.message,
                label: p.label,
                notes: p.help.into_iter().map(|h| format!("help: {h}")).collect(),
            });
        }
    }

    fn file(&mut self, fi: usize, f: &SourceFile) {
        let root = match yaml_pos::positions(&f.text) {
            Ok(Some(root)) => root,
            Ok(None) => {
                return self.error(
                    fi,
                    None,
                    0..0,
                    "empty rule file",
                    "expected a `rules:` list",
                )
            }
            Err(e) => {
                return self.error(
                    fi,
                    None,
                    e.at..e.at + 1,
                    format!("YAML syntax error: {}", e.message),
                    "here",
                )
            }
        };
        let value: serde_yaml::Value = match serde_yaml::from_str(&f.text) {
            Ok(v) => v,
            Err(e) => {
                let at = e.location().map(|l| l.index()).unwrap_or(0);
                return self.error(
                    fi,
                    None,
                    at..at + 1,
                    format!("YAML error: {}", strip_location(&e.to_string())),
                    "here",
                );
            }
        };
        let NodeKind::Map(entries) = &root.kind else {
            return self.error(
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
                    fi,
                    None,
                    *at..*at + key.len(),
                    format!("unknown key `{key}`"),
                    "a rule file has one top-level key, `rules`",
                );
            }
        }
        let (Some(rules_node), Some(serde_yaml::Value::Sequence(items))) =
            (root.get("rules"), value.get("rules"))
        else {
            return self.error(
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

    fn rule(&mut self, fi: usize, f: &SourceFile, node: &Node, item: &serde_yaml::Value) {
        let id_hint = item.get("id").and_then(|v| v.as_str()).map(str::to_string);
        let doc: RuleDoc = match serde_yaml::from_value(item.clone()) {
            Ok(d) => d,
            Err(e) => {
                let msg = strip_location(&e.to_string());
                let at = locate_message(node, &msg);
                let label = if msg.starts_with("missing field") {
                    "in this rule"
                } else {
                    "here"
                };
                self.error(
                    fi,
                    id_hint.as_deref(),
                    at..at + word_len(&f.text, at),
                    msg,
                    label,
                );
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
        let errors_before = self
            .diags
            .iter()
            .filter(|d| d.level == Level::Error)
            .count();
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
                fi,
                Some(&doc.id),
                id_range.clone(),
                "a rule id is letters, digits, `_`, `.` and `-`",
                "invalid id",
            );
        }
        match self.ids.get(&doc.id) {
            Some((first_file, first_range)) => {
                let (ff, fr) = (*first_file, first_range.clone());
                self.error(
                    fi,
                    Some(&doc.id),
                    id_range.clone(),
                    format!("duplicate rule id `{}`", doc.id),
                    "defined again here",
                );
                let note = format!("first defined in file #{} at byte {}", ff + 1, fr.start);
                self.diags.last_mut().expect("just pushed").notes.push(note);
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

        let mut examples = Vec::new();
        for (ei, ex) in doc.examples.iter().enumerate() {
            match compact::to_trace(&ex.trace, example_seed(&doc.id, ei)) {
                Ok(trace) => examples.push(Example {
                    name: ex.name.clone(),
                    expect: ex.expect,
                    trace,
                }),
                Err(e) => {
                    let at = node
                        .get("examples")
                        .and_then(|n| n.item(ei))
                        .map(|n| n.start)
                        .unwrap_or(node.start);
                    let at = find_key_or_value(node, &e.span)
                        .filter(|&p| p >= at)
                        .unwrap_or(at);
                    self.error(
                        fi,
                        Some(&doc.id),
                        at..at + word_len(&f.text, at),
                        format!("example `{}`: {e}", ex.name),
                        "in this example",
                    );
                }
            }
        }

        let errors_after = self
            .diags
            .iter()
            .filter(|d| d.level == Level::Error)
            .count();
        let (Some(form), true) = (form, errors_after == errors_before) else {
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
            tags: doc.tags,
            compliance: doc.compliance,
            condition: doc.condition,
            form,
            examples,
            file: fi,
        });
    }
}

/// The seed an example's trace and span ids derive from: its rule id and position.
pub fn example_seed(rule_id: &str, index: usize) -> u64 {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rule_id.bytes().chain((index as u64).to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// serde_yaml appends " at line L column C"; our own caret says that better.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Where in a rule a serde message points: the first `word` in backticks that names a key
/// or a value of the rule, else the rule's start.
fn locate_message(node: &Node, msg: &str) -> usize {
    if msg.starts_with("missing field") {
        return node.start;
    }
    let word = msg.split('`').nth(1).unwrap_or("");
    find_key_or_value(node, word).unwrap_or(node.start)
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
        assert_eq!(&text[diags[0].range.clone()], "colour");
        assert!(diags[1].message.contains("missing field `name`"));
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
        assert_eq!(diags[0].file, 1);
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
