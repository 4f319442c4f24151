//! docs/rules.schema.json (what `betrace schema` prints) says what the loader accepts, no
//! more and no less: every object's keys are the loader's keys, every word list is the
//! loader's words. The loader is asked, by loading files with a key or a word it cannot
//! know and reading the "expected one of …" of its error; a key added to the loader
//! without the schema, or the other way round, fails here. That real validators accept
//! the library and refuse broken files with this schema is `make schema-test`.

use std::collections::BTreeSet;
use std::process::Command;

use betrace::RuleSet;
use serde_json::Value;

const SCHEMA: &str = include_str!("../docs/rules.schema.json");

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("docs/rules.schema.json is JSON")
}

/// The property names of one object of the schema (`$defs` name, or "" for the file).
fn properties(def: &str) -> BTreeSet<String> {
    let s = schema();
    let obj = match def {
        "" => &s,
        "compliance" | "signal" => &s["$defs"]["rule"]["properties"][def],
        d => &s["$defs"][d],
    };
    assert_eq!(
        obj["additionalProperties"],
        Value::Bool(false),
        "{def}: no other keys"
    );
    obj["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn words(path: &[&str]) -> BTreeSet<String> {
    let mut v = &schema()["$defs"];
    for p in path {
        v = &v[*p];
    }
    v["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{path:?} is an enum"))
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

/// The loader's error for a rule file with `rule` as its one rule's body.
fn load_error(rule: &str) -> String {
    let text = format!("rules:\n  - id: probe\n    name: Probe\n{rule}");
    match RuleSet::from_text("probe.yaml", &text) {
        Ok(_) => panic!("loaded, but should not have:\n{text}"),
        Err(report) => report.render(),
    }
}

fn loads(rule: &str) {
    let text = format!("rules:\n  - id: probe\n    name: Probe\n{rule}");
    if let Err(report) = RuleSet::from_text("probe.yaml", &text) {
        panic!("did not load:\n{text}\n{}", report.render());
    }
}

/// The backquoted words after "expected one of" (or "expected") in a loader error.
fn expected(error: &str) -> BTreeSet<String> {
    let at = error
        .find("expected one of")
        .or_else(|| error.find("expected `"))
        .unwrap_or_else(|| panic!("no expected list in:\n{error}"));
    let line = error[at..].lines().next().unwrap();
    let line = line.split(" (rule `").next().unwrap();
    line.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

const CONDITION: &str = "    condition: when { a } always { b }\n";

#[test]
fn every_object_has_the_loader_s_keys() {
    let probes = [
        ("rule", format!("{CONDITION}    zz_unknown: 1\n")),
        ("signal", format!("{CONDITION}    signal: {{ zz_unknown: 1 }}\n")),
        (
            "compliance",
            format!("{CONDITION}    compliance: {{ framework: F, control: C, zz_unknown: 1 }}\n"),
        ),
        (
            "example",
            format!("{CONDITION}    examples:\n      - {{ name: e, expect: pass, trace: [], zz_unknown: 1 }}\n"),
        ),
        (
            "span",
            format!("{CONDITION}    examples:\n      - {{ name: e, expect: pass, trace: [ {{ name: s, zz_unknown: 1 }} ] }}\n"),
        ),
    ];
    for (def, rule) in probes {
        let error = load_error(&rule);
        assert!(
            error.contains("unknown field `zz_unknown`"),
            "{def}: {error}"
        );
        assert_eq!(expected(&error), properties(def), "{def}: loader vs schema");
    }
    let top = RuleSet::from_text("probe.yaml", "rules: []\nzz_unknown: 1\n")
        .expect_err("an unknown top-level key is refused")
        .render();
    assert!(top.contains("one top-level key, `rules`"), "{top}");
    assert_eq!(properties(""), BTreeSet::from(["rules".to_string()]));
}

#[test]
fn every_word_list_is_the_loader_s() {
    let severity = load_error(&format!("{CONDITION}    severity: zz\n"));
    assert_eq!(
        expected(&severity),
        words(&["rule", "properties", "severity"])
    );
    let incomplete = load_error(&format!("{CONDITION}    incomplete: zz\n"));
    assert_eq!(
        expected(&incomplete),
        words(&["rule", "properties", "incomplete"])
    );
    let expect = load_error(&format!(
        "{CONDITION}    examples:\n      - {{ name: e, expect: zz, trace: [] }}\n"
    ));
    assert_eq!(
        expected(&expect),
        words(&["example", "properties", "expect"])
    );
    for (key, list) in [
        ("kind", betrace::trace::SpanKind::WORDS.as_slice()),
        ("status", betrace::trace::StatusCode::WORDS.as_slice()),
    ] {
        let want: BTreeSet<String> = list.iter().map(|w| w.to_string()).collect();
        assert_eq!(words(&["span", "properties", key]), want, "span {key}");
        for w in list {
            loads(&format!(
                "{CONDITION}    examples:\n      - {{ name: e, expect: pass, trace: [ {{ name: s, {key}: {w} }} ] }}\n"
            ));
        }
    }
}

#[test]
fn what_the_schema_requires_the_loader_requires() {
    let required = |def: &str| -> BTreeSet<String> {
        let s = schema();
        s["$defs"][def]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        required("rule"),
        BTreeSet::from(["id", "name", "condition"].map(String::from))
    );
    let parts = [
        ("id", "id: probe"),
        ("name", "name: Probe"),
        ("condition", "condition: when { a } always { b }"),
    ];
    for (key, _) in parts {
        let body: Vec<&str> = parts
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(_, l)| *l)
            .collect();
        let text = format!("rules:\n  - {}\n", body.join("\n    "));
        let error = RuleSet::from_text("probe.yaml", &text)
            .err()
            .unwrap_or_else(|| panic!("loaded without {key}:\n{text}"))
            .render();
        assert!(
            error.contains(&format!("missing field `{key}`")),
            "{key}: {error}"
        );
    }
}

#[test]
fn betrace_schema_prints_the_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), SCHEMA);
}
