//! YAML text as `serde_json` values, read as yaml-rust2's loader reads it (the YAML 1.2
//! core schema: `yes` is a string, `0x1f` an integer), so that the typed parts of rule files
//! deserialize with serde. serde_yaml, which did this before, is archived upstream. The
//! value is built in the walk that finds positions ([`super::yaml_pos::read`]): the text is
//! parsed once. Positions never come from here: errors in typed parts are located through
//! the position tree.

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::Tag;
use yaml_rust2::scanner::TScalarStyle;
use yaml_rust2::Yaml;

/// A YAML text that is not YAML: where (byte offset) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    /// Byte offset of the problem in the text.
    pub at: usize,
    /// What the parser said.
    pub message: String,
}

/// The first document of `text` as a value; an empty text is `null`. Nesting deeper than
/// the position walk allows, or aliases that would expand beyond
/// [`super::yaml_pos::MAX_EXPANDED_NODES`], are refused before they are built.
pub(crate) fn parse(text: &str) -> Result<Value, YamlError> {
    match super::yaml_pos::read(text) {
        Ok(Some(doc)) => doc.value,
        Ok(None) => Ok(Value::Null),
        Err(d) => Err(YamlError {
            at: d.primary.range.start,
            message: d.message,
        }),
    }
}

/// A scalar as yaml-rust2's loader reads it: quoted and block scalars are strings; a plain
/// one is typed by its `!!` tag (`!!int`, `!!float`, `!!bool`, `!!null`; text that does
/// not fit the tag reads as nothing), else by the core schema (`Yaml::from_str`).
pub(crate) fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Yaml {
    if style != TScalarStyle::Plain {
        return Yaml::String(text.to_owned());
    }
    match tag {
        None => Yaml::from_str(text),
        Some(tag) if tag.handle == "tag:yaml.org,2002:" => tagged(text, &tag.suffix),
        Some(_) => Yaml::String(text.to_owned()),
    }
}

/// A plain scalar with the core schema's tag `suffix`, as the loader reads it.
fn tagged(text: &str, suffix: &str) -> Yaml {
    match suffix {
        "bool" => match text {
            "true" | "True" | "TRUE" => Yaml::Boolean(true),
            "false" | "False" | "FALSE" => Yaml::Boolean(false),
            _ => Yaml::BadValue,
        },
        "int" => text.parse::<i64>().map_or(Yaml::BadValue, Yaml::Integer),
        // The loader keeps the text of a float it can read; `as_f64` reads it the same
        // (private) way.
        "float" => Some(Yaml::Real(text.to_owned()))
            .filter(|y| y.as_f64().is_some())
            .unwrap_or(Yaml::BadValue),
        "null" => match text {
            "~" | "null" => Yaml::Null,
            _ => Yaml::BadValue,
        },
        _ => Yaml::String(text.to_owned()),
    }
}

/// One YAML node as a value. Floats JSON cannot hold (`.inf`, `.nan`) stay as their text;
/// a mapping key that is not a string is written as the scalar it is (`1: x` has key "1").
pub(crate) fn value(y: &Yaml) -> Value {
    match y {
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(text) => y
            .as_f64()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(value).collect()),
        Yaml::Hash(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (key(k), value(v)))
                .collect::<Map<String, Value>>(),
        ),
    }
}

/// A mapping key as a JSON object key: a string as itself, nothing as "", another scalar as
/// its JSON text (`1: x` has key "1"). A mapping or a sequence as a key (`? {a: 1}`) is
/// named by its kind only: no rule file has one, and the JSON text of keys nested in keys
/// grows twofold with each level of escaping (a 200-byte file took 4 GB before).
pub(crate) fn key(k: &Yaml) -> String {
    match k {
        Yaml::Hash(_) => return "(a mapping as a key)".into(),
        Yaml::Array(_) => return "(a sequence as a key)".into(),
        _ => {}
    }
    match value(k) {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nested_in_keys_are_named_not_written_out() {
        // `? ? ? … x` nests a mapping as the key of a mapping as a key, forty deep: written
        // out as JSON, each level escapes the one inside it, and the key text doubles per
        // level (the fuzzer's 198-byte rule file took 4 GB and over a minute).
        let text = format!("{}x: 1\n", "? ".repeat(40));
        let v = parse(&text).unwrap();
        let text = v.to_string();
        assert!(text.len() < 1000, "{} bytes", text.len());
        assert!(text.contains("(a mapping as a key)"), "{text}");
        let seq = parse("? [a, b]\n: 1\n").unwrap();
        assert_eq!(seq["(a sequence as a key)"], 1);
    }

    #[test]
    fn the_core_schema_types_scalars() {
        let v =
            parse("a: yes\nb: 0x1f\nc: 1.5\nd: ~\ne: true\nf: .inf\ng: '7'\nh: [1, x]\n1: one\n")
                .unwrap();
        assert_eq!(v["a"], "yes");
        assert_eq!(v["b"], 31);
        assert_eq!(v["c"], 1.5);
        assert_eq!(v["d"], Value::Null);
        assert_eq!(v["e"], true);
        assert_eq!(v["f"], ".inf");
        assert_eq!(v["g"], "7");
        assert_eq!(v["h"], serde_json::json!([1, "x"]));
        assert_eq!(v["1"], "one");
    }

    #[test]
    fn anchors_are_resolved_and_empty_text_is_null() {
        let v = parse("base: &b {x: 1}\ncopy: *b\n").unwrap();
        assert_eq!(v["copy"]["x"], 1);
        assert_eq!(parse("").unwrap(), Value::Null);
    }

    #[test]
    fn a_billion_laughs_is_refused_before_it_is_expanded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("expand to more than"), "{e:?}");
        // In a later document too: the loader used to expand those unbounded.
        let later = parse(&format!("a: 1\n---\n{text}")).unwrap_err();
        assert!(later.message.contains("expand to more than"), "{later:?}");
        // Aliases within the bound are fine.
        assert_eq!(parse("a: &x [1, 2]\nb: [*x, *x]\n").unwrap()["b"][1][0], 1);
    }

    #[test]
    fn an_error_says_where_in_bytes() {
        let e = parse("é: [1, 2\n").unwrap_err();
        assert!(e.at >= 2 && e.at <= 10, "{e:?}");
    }

    /// What the value was before it was built in the position walk: yaml-rust2's loader
    /// reading the text a second time. Only for texts the walk accepts.
    fn loader(text: &str) -> Result<Value, YamlError> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| YamlError {
            at: text
                .char_indices()
                .nth(e.marker().index())
                .map_or(text.len(), |(i, _)| i),
            message: e.info().to_string(),
        })?;
        Ok(docs.first().map_or(Value::Null, value))
    }

    /// The one walk gives what the loader gave, error or value; `false` if the walk
    /// refused the text (syntax, or a limit the loader did not have) and there is nothing
    /// to compare.
    fn same_as_loader(text: &str) -> bool {
        let Ok(Some(doc)) = super::super::yaml_pos::read(text) else {
            // An empty text, or refused before the loader ever ran (as before).
            return read_is_empty(text);
        };
        if let Err(e) = &doc.value {
            if e.message.contains("nested deeper") || e.message.contains("expand to more") {
                return false; // a later document the loader read without limits
            }
        }
        assert_eq!(doc.value, loader(text), "text: {text:?}");
        true
    }

    fn read_is_empty(text: &str) -> bool {
        if matches!(super::super::yaml_pos::read(text), Ok(None)) {
            assert_eq!(parse(text), loader(text), "text: {text:?}");
            return true;
        }
        false
    }

    /// Every YAML file of the repository: rule files, diagnostics cases, configuration.
    fn repository_yaml() -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        for dir in ["examples", "testdata", "tests"] {
            walk(&root.join(dir), &mut out);
        }
        out
    }

    #[test]
    fn every_yaml_file_reads_as_the_loader_read_it() {
        let files = repository_yaml();
        assert!(files.len() > 30, "{files:?}");
        let mut compared = 0;
        for path in files {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            compared += usize::from(same_as_loader(&text));
        }
        // The rule files and most diagnostics cases are YAML the walk accepts.
        assert!(compared > 25, "{compared}");
    }

    /// Scalars, tags, anchors and keys whose reading is easy to get wrong.
    const TRICKY: &[&str] = &[
        "a: yes",
        "a: no",
        "a: on",
        "a: 0x1f",
        "a: 0o17",
        "a: 0b11",
        "a: +12",
        "a: -12",
        "a: 1e3",
        "a: 1.5e-3",
        "a: .5",
        "a: 1.",
        "a: .inf",
        "a: -.INF",
        "a: +.Inf",
        "a: .nan",
        "a: .NaN",
        "a: inf",
        "a: nan",
        "a: ~",
        "a: null",
        "a: Null",
        "a: NULL",
        "a:",
        "a: ''",
        "a: 'quoted'",
        "a: \"1\"",
        "a: \"true\"",
        "a: 'null'",
        "a: True",
        "a: FALSE",
        "a: 99999999999999999999",
        "a: -9223372036854775808",
        "a: 0x",
        "a: 0xffffffffffffffffff",
        "a: 1_000",
        "a: 12:30",
        "a: 2001-12-14",
        "a: !!str 1",
        "a: !!str true",
        "a: !!int 12",
        "a: !!int 0x1f",
        "a: !!int x",
        "a: !!float 1",
        "a: !!float 1.5",
        "a: !!float x",
        "a: !!float .inf",
        "a: !!bool true",
        "a: !!bool yes",
        "a: !!null ~",
        "a: !!null x",
        "a: !!null",
        "a: !!binary aGk=",
        "a: !local x",
        "a: !!str 'q'",
        "a: !!int '12'",
        "a: !!map {b: 1}",
        "a: !!seq [1]",
        "%TAG !! tag:example.com,2000:\n---\na: !!int 1",
        "a: &x 1\nb: *x",
        "a: &x [1, {c: 2}]\nb: *x\nc: [*x, *x]",
        "a: &x {k: v}\n*x : 1",
        "a: &x b\n*x : 2",
        "a: &x a\n*x : 2",
        "a: &x [1, *x]",
        "a: &x\n  b: *x",
        "a: &x 1\na2: &x 2\nb: *x",
        "a: |\n  line one\n  line two\n",
        "a: >\n  folded\n  text\n\n  para\n",
        "a: |-\n  keep\n",
        "a: |+\n  keep\n\n",
        "a: >2\n    indented\n",
        "a: \"multi\n  line\"",
        "a: plain\n  continued",
        "a: 'it''s'",
        "a: \"\\u00e9\\t\"",
        "1: one",
        "0x1f: hex",
        "true: yes",
        "~: nothing",
        "null: n",
        "1.5: f",
        ".inf: i",
        "[1, 2]: seq",
        "{a: 1}: map",
        "? [a, b]\n: c",
        "? |\n  block key\n: v",
        "!!int 3: x",
        "!!int x: 1\nb: 2",
        "{!!int x: 1, b: 2, c: 3}",
        "!!null ~: x",
        "a: 1\na: 2",
        "a: 1\nb: {c: 1, c: 2}",
        "1: a\n0x1: b",
        "1: a\n'1': b",
        "1.0: a\n1.00: b",
        "true: a\nTrue: b",
        "~: a\nnull: b",
        "'': a\n~: b",
        "[1]: a\n[1]: b",
        "{a: 1}: x\n{a: 1}: y",
        "a: [1, 2, 3,]",
        "- a\n- b: c\n  d: e",
        "",
        "---",
        "---\n...",
        "# only a comment",
        "---\n---\n",
        "a: 1\n---\nb: 2",
        "a: 1\n---\na: 1\na: 2",
        "a: &x 1\n---\nb: *x",
        "a: 1\n--- [",
        "a: 1\n...\n",
        "'top string'",
        "42",
        "[a, b]",
        "- - - deep",
        "{a: {b: {c: [1, {d: e}]}}}",
        "a: b: c",
        "a: [",
        "a: 'x",
        "\u{feff}a: 1",
        "é: 1\nü: \"ß\"",
        "rules:\n  - id: r\n    name: R\n    condition: |\n      when { a } always { b }\n",
    ];

    #[test]
    fn tricky_yaml_reads_as_the_loader_read_it() {
        for text in TRICKY {
            same_as_loader(text);
        }
    }

    #[test]
    fn repeated_keys_are_reported_as_the_loader_reported_them() {
        let e = parse("a: 1\nb: {c: 1, c: 2}\n").unwrap_err();
        assert_eq!(e, loader("a: 1\nb: {c: 1, c: 2}\n").unwrap_err());
        assert!(e.message.contains("duplicated key"), "{e:?}");
        // Keys equal as YAML, not as text, are repeated too: the loader compares nodes.
        assert!(parse("1: a\n0x1: b\n").is_err());
        assert_eq!(
            parse("1: a\n'1': b\n").unwrap(),
            serde_json::json!({"1": "b"})
        );
    }

    /// One fragment of a generated YAML text.
    fn fragment() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scalar = proptest::sample::select(vec![
            "1",
            "0x1f",
            "0o17",
            "1e3",
            ".inf",
            "-.INF",
            ".nan",
            "~",
            "null",
            "yes",
            "true",
            "False",
            "'q'",
            "\"1\"",
            "!!str 1",
            "!!int 2",
            "!!float 3",
            "!!bool x",
            "!!null ~",
            "x",
            "é",
            "''",
            "a b",
            "-1",
            "+1",
        ]);
        let anchor = proptest::sample::select(vec!["", "", "", "&a ", "&b "]);
        let alias = proptest::sample::select(vec!["*a", "*b"]);
        let leaf = prop_oneof![
            4 => (anchor, scalar).prop_map(|(a, s)| format!("{a}{s}")),
            1 => alias.prop_map(str::to_string),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(|entries| {
                    let entries: Vec<String> =
                        entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    format!("{{{}}}", entries.join(", "))
                }),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn generated_yaml_reads_as_the_loader_read_it(
            docs in proptest::collection::vec(fragment(), 1..3),
            block in proptest::bool::ANY,
        ) {
            // Flow documents, as they are or under a block mapping's key.
            let docs: Vec<String> = if block {
                docs.iter().map(|d| format!("k:\n  x: {d}\n  y: {d}\n")).collect()
            } else {
                docs
            };
            same_as_loader(&docs.join("\n---\n"));
        }

        #[test]
        fn any_text_reads_as_the_loader_read_it(
            text in "[-:?&*!|>'\"#{}\\[\\], \\nab1.~]{0,60}"
        ) {
            same_as_loader(&text);
        }
    }
}
