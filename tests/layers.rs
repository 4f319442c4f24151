//! The layer order written in `src/lib.rs` (its "Layers" section), held against the code.
//!
//! Every `crate::X…` path in `src/` (in a `use`, grouped `use crate::{a, b}` forms included,
//! or written out in code) is mapped to the floor of `X` by the list parsed from `src/lib.rs`
//! itself; a path from a module to one on a higher floor fails the test, named with its file
//! and line. `src/cli/` and `src/main.rs` are the binary, above every floor, and not read.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The floors from `src/lib.rs`: module name → floor number (1 is the top).
fn floors(lib: &str) -> HashMap<String, usize> {
    let mut floors = HashMap::new();
    let mut in_section = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            if in_section {
                break;
            }
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            in_section = doc == "# Layers";
            continue;
        }
        if !in_section {
            continue;
        }
        // "N. [`a`], [`b`]: what they are": the names before the colon are the floor's.
        let Some((number, rest)) = doc.split_once(". ") else {
            continue;
        };
        let Ok(floor) = number.parse::<usize>() else {
            continue;
        };
        let names = rest.split(':').next().unwrap_or("");
        for name in names.split(',') {
            let name = name.trim().trim_start_matches("[`").trim_end_matches("`]");
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "src/lib.rs, Layers: cannot read the module name in {doc:?}"
            );
            floors.insert(name.to_string(), floor);
        }
    }
    assert!(
        floors.len() >= 2,
        "src/lib.rs has no \"# Layers\" section listing the modules by floor"
    );
    floors
}

/// The root's re-exports, `pub use m::…::{A, B};`: name → the module `m` it comes from.
fn reexports(lib: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in lib.lines() {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim_end_matches(';');
        let module = path.split("::").next().unwrap_or("").to_string();
        let last = path.rsplit("::").next().unwrap_or("");
        let names = last.trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.trim();
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.clone());
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with every `//` comment blanked out (doc links are no imports), line
/// breaks kept so that offsets still give lines.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment of each item that `crate::` opens at `rest`: one for
/// `crate::a::…`, one per top-level item for `crate::{a::…, b}`.
fn heads(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    if !rest.starts_with('{') {
        return vec![ident(rest)];
    }
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 1;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let item = ident(&rest[start..i]);
                if !item.is_empty() {
                    out.push(item);
                }
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    out
}

#[test]
fn no_import_runs_back_up_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let floors = floors(&lib);
    let reexports = reexports(&lib);
    let floor_of = |name: &str| -> Option<usize> {
        floors
            .get(name)
            .or_else(|| reexports.get(name).and_then(|m| floors.get(m)))
            .copied()
    };

    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root).unwrap();
        let rel_str = rel.to_string_lossy().replace('\\', "/");
        let in_src = rel_str.trim_start_matches("src/");
        if in_src == "lib.rs" || in_src == "main.rs" || in_src.starts_with("cli/") {
            continue;
        }
        let module = in_src
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let Some(&here) = floors.get(&module) else {
            panic!("{rel_str}: module `{module}` is on no floor of src/lib.rs's Layers");
        };
        let text = without_comments(&fs::read_to_string(file).unwrap());
        for (at, _) in text.match_indices("crate::") {
            // `betrace_crate::` or the like is not this crate.
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let line = text[..at].matches('\n').count() + 1;
            for head in heads(&text[at + "crate::".len()..]) {
                let there = floor_of(&head);
                // An item of the root that is no re-export stands above every floor.
                if there.is_none_or(|there| there < here) {
                    let source = text.lines().nth(line - 1).unwrap_or("").trim();
                    wrong.push(format!(
                        "{rel_str}:{line}: `{module}` (floor {here}) imports `crate::{head}` ({}): {source}",
                        match there {
                            Some(f) => format!("floor {f}, above"),
                            None => "the crate root, above every floor".to_string(),
                        }
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run back up the layers of src/lib.rs:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn grouped_imports_are_read_item_by_item() {
    assert_eq!(heads("engine::signal::Mode;"), ["engine"]);
    assert_eq!(
        heads("{engine::{signal, judge}, trace,\n lang::value::Value};"),
        ["engine", "trace", "lang"]
    );
}

#[test]
fn the_layers_are_read_from_lib_rs() {
    let lib = "//! # Layers\n//!\n//! 1. [`embed`], [`replay`]: top;\n//! 2. [`lang`]: bottom.\n//!\n//! # Names\n//! 3. [`x`]: not a floor.\n";
    let floors = floors(lib);
    assert_eq!(floors.len(), 3, "{floors:?}");
    assert_eq!(
        (floors["embed"], floors["replay"], floors["lang"]),
        (1, 1, 2)
    );
}
