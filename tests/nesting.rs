//! Hostile nesting in rule files: every command and the C ABI answer with a located error
//! instead of overflowing the stack, even on a host's small thread.

use betrace::embed::ffi::{
    betrace_buf, betrace_buf_free, betrace_engine, betrace_engine_free, betrace_engine_new,
    betrace_source,
};
use betrace::RuleSet;

/// Runs `f` on a thread with a 256 KiB stack, as a host might call the engine.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no stack overflow")
}

fn rule(condition: &str) -> String {
    format!("rules:\n  - id: deep\n    name: Deep\n    condition: |\n      {condition}\n")
}

fn hostile() -> Vec<(&'static str, String)> {
    vec![
        (
            "parentheses",
            format!("{}a{}", "(".repeat(1200), ")".repeat(1200)),
        ),
        ("nots", format!("{}a", "not ".repeat(9000))),
        (
            "where",
            format!("a.where({}x == 1{})", "(".repeat(2000), ")".repeat(2000)),
        ),
        (
            "not-parens",
            format!("{}a{}", "not (".repeat(300), ")".repeat(300)),
        ),
        ("unclosed", "(".repeat(100_000)),
    ]
}

#[test]
fn deep_conditions_are_a_located_error_on_a_small_stack() {
    for (what, condition) in hostile() {
        let text = rule(&condition);
        let rendered = on_small_stack(move || match RuleSet::from_text("deep.yaml", &text) {
            Ok(_) => panic!("{what}: loaded"),
            Err(report) => report.render(),
        });
        assert!(rendered.contains("deep.yaml:5:"), "{what}: {rendered}");
        assert!(
            rendered.contains("nests deeper than 64 levels"),
            "{what}: {rendered}"
        );
        assert!(
            rendered.len() < 4000,
            "{what}: the condition is not echoed whole"
        );
    }
}

#[test]
fn nesting_just_within_the_bound_loads_and_judges_on_a_small_stack() {
    let text = rule(&format!(
        "{}a{} and not not b",
        "(".repeat(60),
        ")".repeat(60)
    ));
    let ok = on_small_stack(move || {
        RuleSet::from_text("ok.yaml", &text)
            .map(|_| ())
            .map_err(|r| r.render())
    });
    assert_eq!(ok, Ok(()));
}

#[test]
fn deep_yaml_is_refused_not_a_crash() {
    let flow = format!("rules: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
    let children = {
        let mut t = String::from("rules:\n  - id: a\n    name: A\n    condition: x\n    examples:\n      - name: deep\n        expect: pass\n        trace:\n");
        let mut indent = 10;
        for _ in 0..3000 {
            t.push_str(&format!(
                "{}- name: x\n{}  children:\n",
                " ".repeat(indent),
                " ".repeat(indent)
            ));
            indent += 4;
        }
        t.push_str(&format!("{}- name: leaf\n", " ".repeat(indent)));
        t
    };
    for text in [flow, children] {
        let result = on_small_stack(move || {
            RuleSet::from_text("deep.yaml", &text)
                .map(|_| ())
                .map_err(|r| r.render())
        });
        let err = result.expect_err("refused");
        assert!(err.contains("deep.yaml"), "{err}");
    }
}

#[test]
fn the_c_abi_refuses_a_deep_rule_on_a_small_stack() {
    for (what, condition) in hostile() {
        let text = rule(&condition);
        let (code, message) = on_small_stack(move || {
            let name = "deep.yaml";
            let src = betrace_source {
                name: name.as_ptr(),
                name_len: name.len(),
                text: text.as_ptr(),
                text_len: text.len(),
            };
            let mut engine: *mut betrace_engine = std::ptr::null_mut();
            let mut err = betrace_buf {
                ptr: std::ptr::null_mut(),
                len: 0,
            };
            // SAFETY: valid pointers to live locals, as the header asks.
            let code =
                unsafe { betrace_engine_new(&src, 1, std::ptr::null(), &mut engine, &mut err) };
            let message = if err.ptr.is_null() {
                String::new()
            } else {
                // SAFETY: the engine wrote `len` bytes at `ptr`.
                let m = String::from_utf8_lossy(unsafe {
                    std::slice::from_raw_parts(err.ptr, err.len)
                })
                .into_owned();
                // SAFETY: a buffer the engine returned, freed once.
                unsafe { betrace_buf_free(&mut err) };
                m
            };
            if !engine.is_null() {
                // SAFETY: a handle the engine returned, freed once.
                unsafe { betrace_engine_free(engine) };
            }
            (code, message)
        });
        assert_ne!(code, 0, "{what}");
        assert!(
            message.contains("nests deeper than 64 levels"),
            "{what}: {message}"
        );
    }
}

#[test]
fn a_fuzz_found_rule_file_renders_without_panicking() {
    // Found by `cargo fuzz run rules`: a diagnostic range inside a multi-byte character on
    // a long line made the renderer slice mid-character.
    renders_without_panicking(include_bytes!("diagnostics/fuzz-crash-char-boundary.bin"));
}

#[test]
fn a_caret_at_a_multi_byte_character_on_a_long_line_renders() {
    // Found by `cargo fuzz run rules` (2026-11-24): an empty range just before a
    // three-byte character (a byte-order mark mid-line) on a long line; the caret was
    // widened to one byte, inside the character.
    renders_without_panicking(include_bytes!("diagnostics/fuzz-crash-caret-in-char.bin"));
}

fn renders_without_panicking(bytes: &'static [u8]) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let rendered = on_small_stack(move || match RuleSet::from_text("fuzz.yaml", &text) {
        Ok(_) => String::new(),
        Err(report) => report.render(),
    });
    assert!(rendered.is_empty() || rendered.contains("fuzz.yaml"));
}
