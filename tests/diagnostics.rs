//! Golden diagnostics: every case in `tests/diagnostics/` (a rule file, or a directory of
//! them) is checked with `betrace check`, and the whole rendered output — headlines,
//! positions, quoted lines, carets, labels, notes — must equal the `.out` file beside it.
//! `BETRACE_BLESS=1 cargo test --test diagnostics` rewrites the `.out` files; review the
//! diff before committing.

use std::path::Path;
use std::process::Command;

#[test]
fn rendered_diagnostics_match_their_golden_files() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = Path::new(root).join("tests/diagnostics");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the cases are there");
    let bless = std::env::var_os("BETRACE_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let rel = case.strip_prefix(root).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
            .current_dir(root)
            .arg("check")
            .arg(rel)
            .output()
            .unwrap();
        let got = format!(
            "exit: {}\n{}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr)
        );
        let golden = case.with_extension("out");
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n--- want\n{want}\n--- got\n{got}",
                rel.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
