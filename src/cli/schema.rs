//! `betrace schema`: the JSON Schema of rule files, for editors.

use super::out_raw;

/// The JSON Schema of rule files (docs/rules.schema.json), for editors and CI.
///
/// Editors with the YAML language server (VS Code's YAML extension, Neovim's
/// yamlls, JetBrains IDEs) validate and complete a rule file whose first line
/// names the schema:
///
///   # yaml-language-server: $schema=URL
///
/// where URL is this repository's copy,
///
///   https://raw.githubusercontent.com/betracehq/betrace/main/docs/rules.schema.json
///
/// or a local one:
///
///   betrace schema > betrace-rules.schema.json
///   # yaml-language-server: $schema=./betrace-rules.schema.json
///
/// Any JSON Schema validator checks rule files in CI with it, for example:
///
///   check-jsonschema --schemafile betrace-rules.schema.json rules/*.yaml
///
/// The schema checks a file's shape (keys, types, allowed words); `betrace check`
/// also compiles each condition and points at what is wrong in it.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {}

/// The schema, as docs/rules.schema.json holds it.
pub const SCHEMA: &str = include_str!("../../docs/rules.schema.json");

/// Prints the schema; always succeeds.
pub fn run(_: &Args) -> u8 {
    out_raw(SCHEMA);
    0
}
