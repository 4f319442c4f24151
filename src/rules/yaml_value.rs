//! YAML text as `serde_json` values, read with yaml-rust2 (the YAML 1.2 core schema: `yes`
//! is a string, `0x1f` an integer), so that the typed parts of rule files deserialize with
//! serde. serde_yaml, which did this before, is archived upstream; yaml-rust2 already reads
//! the same text for positions ([`super::yaml_pos`]). Positions never come from here:
//! errors in typed parts are located through the position tree.

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// A YAML text that is not YAML: where (byte offset) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Byte offset of the problem in the text.
    pub at: usize,
    /// What the parser said.
    pub message: String,
}

/// The first document of `text` as a value; an empty text is `null`. The text is walked
/// first without building anything ([`super::yaml_pos::positions`]): nesting deeper than
/// it allows, or aliases that would expand beyond
/// [`super::yaml_pos::MAX_EXPANDED_NODES`], are refused before a value is built.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    if let Err(d) = super::yaml_pos::positions(text) {
        return Err(YamlError {
            at: d.primary.range.start,
            message: d.message,
        });
    }
    parse_walked(text)
}

/// The first document of `text`, a text that [`super::yaml_pos::positions`] has already
/// walked and accepted: rule files are walked for positions first, and need not be
/// walked again here.
pub(crate) fn parse_walked(text: &str) -> Result<Value, YamlError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| YamlError {
        at: byte_offset(text, e.marker().index()),
        message: e.info().to_string(),
    })?;
    Ok(docs.first().map_or(Value::Null, value))
}

/// yaml-rust2 counts characters; the rest of the crate counts bytes.
fn byte_offset(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

/// One YAML node as a value. Floats JSON cannot hold (`.inf`, `.nan`) stay as their text;
/// a mapping key that is not a string is written as the scalar it is (`1: x` has key "1").
pub fn value(y: &Yaml) -> Value {
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

fn key(k: &Yaml) -> String {
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
    fn a_billion_laughs_is_refused_before_anything_is_built() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("expand to more than"), "{e:?}");
        // Aliases within the bound are fine.
        assert_eq!(parse("a: &x [1, 2]\nb: [*x, *x]\n").unwrap()["b"][1][0], 1);
    }

    #[test]
    fn an_error_says_where_in_bytes() {
        let e = parse("é: [1, 2\n").unwrap_err();
        assert!(e.at >= 2 && e.at <= 10, "{e:?}");
    }
}
