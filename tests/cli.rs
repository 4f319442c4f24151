//! The `betrace` binary as users run it: exit codes, messages, positions.

use std::process::Command;

fn betrace(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run betrace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("betrace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const THREE_MISTAKES: &str = "\
rules:
  - id: payment-requires-inventory
    name: Payment requires inventory
    condition: |
      when { payment.charge }
        always { inventory.reserve.where(span:duration > \"fast\") }
  - id: retry-idempotent
    name: Retries reuse the intent
    severity: hgh
    condition: when { payment.charge } always { payment.retry }
  - id: admin-audit
    name: Admin actions are audited
    condition: when { admin.action } always { audit.log.where(k matches \"(\") }
";

#[test]
fn check_reports_all_three_mistakes_with_positions() {
    let path = temp_file("three.yaml", THREE_MISTAKES);
    let (code, _, err) = betrace(&["check", &path]);
    assert_eq!(code, 1, "{err}");
    for (line_col, what) in [
        (":6:58", "duration"),
        (":9:15", "unknown variant `hgh`"),
        (":13:73", "invalid regex"),
    ] {
        assert!(
            err.contains(&format!("{path}{line_col}")),
            "missing {line_col} in:\n{err}"
        );
        assert!(err.contains(what), "missing {what} in:\n{err}");
    }
    assert!(
        err.contains("^^^^^^"),
        "a caret under the offending text:\n{err}"
    );
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn check_accepts_the_library_and_reports_warnings_without_failing() {
    let (code, out, _) = betrace(&["check", "examples/rules"]);
    assert_eq!(code, 0);
    assert!(out.contains("91 rules in 6 files"), "{out}");
    let path = temp_file(
        "warn.yaml",
        "rules:\n  - {id: w, name: W, condition: trace.has(a) and trace.has(b)}\n",
    );
    let (code, _, err) = betrace(&["check", &path]);
    assert_eq!(code, 0);
    assert!(
        err.contains("warning") && err.contains("when { trace.has(a) } always { trace.has(b) }"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(betrace(&["check"]).0, 2);
    assert_eq!(betrace(&["check", "/no/such/file.yaml"]).0, 2);
    assert_eq!(betrace(&["frobnicate"]).0, 2);
}

#[test]
fn test_passes_on_the_library_and_explains_a_failure() {
    let (code, out, _) = betrace(&["test", "examples/rules"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().last().unwrap().starts_with("examples: ") && out.contains(" 0 failed"),
        "{out}"
    );

    let path = temp_file(
        "failing.yaml",
        "rules:\n  - id: r\n    name: R\n    condition: when { payment.charge } always { inventory.reserve }\n    examples:\n      - name: wrongly expected\n        expect: violation\n        trace:\n          - name: inventory.reserve\n          - name: payment.charge\n",
    );
    let (code, out, _) = betrace(&["test", &path]);
    assert_eq!(code, 1);
    assert!(out.contains("FAIL  r: wrongly expected"), "{out}");
    assert!(
        out.contains("expected a violation; the rule did not fire"),
        "{out}"
    );
    assert!(
        out.contains("always")
            && out.contains("inventory.reserve")
            && out.contains("1 span matches"),
        "{out}"
    );
    assert!(out.contains("examples: 0 passed, 1 failed"), "{out}");
}

#[test]
fn test_json_prints_one_object_per_example_with_its_signal() {
    let (code, out, _) = betrace(&["test", "--json", "examples/rules/ecommerce.yaml"]);
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let v = lines
        .iter()
        .find(|l| l["rule_id"] == "payment-retry-idempotent" && l["expect"] == "violation")
        .unwrap();
    assert_eq!(v["signal"]["signal_type"], "PAYMENT_RETRY_IDEMPOTENT");
    // The trigger span is the retry (`attempt > 1`): the `when` selector, per docs/language.md, "What a rule reports".
    assert_eq!(v["signal"]["context"]["payment_intent_id"], "pi_3b");
    assert_eq!(v["signal"]["context"]["attempt"], 2);
}

#[test]
fn explain_shows_the_bytecode() {
    let (code, out, _) = betrace(&[
        "explain",
        "--rules",
        "examples/rules",
        "--rule",
        "payment-requires-inventory",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("HAS") && out.contains("BEFORE") && out.contains("APPLIES"),
        "{out}"
    );
    assert!(
        out.contains("skip unless the trace has a span named \"payment.charge\""),
        "{out}"
    );
    let (code, _, err) = betrace(&["explain", "--rules", "examples/rules", "--rule", "payment"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean"), "{err}");
}

#[test]
fn test_explains_every_level_down_to_the_span_that_decided() {
    let rules = temp_file(
        "explain-deep.yaml",
        "rules:
  - id: retries
    name: Few retries, a successful payment
    condition: when { checkout } always { count(retry) < 3 and payment.where(ok == true) }
    examples:
      - name: many
        expect: pass
        trace:
          - name: checkout
          - name: retry
          - name: payment
            span_id: 00000000000000ab
            attributes: { ok: false }
",
    );
    let (code, out, _) = betrace(&["test", &rules]);
    assert_eq!(code, 1);
    assert!(out.contains("count(retry) < 3"), "{out}");
    assert!(!out.contains("count(count("), "{out}");
    assert!(out.contains("1 vs 3"), "{out}");
    assert!(
        out.contains("none of the 1 span with its name passes the filter; first: 00000000000000ab (ok = false)"),
        "the false part of the `and`, down to its span: {out}"
    );
}

#[test]
fn replay_with_rules_that_do_not_load_exits_2_not_1() {
    let rules = temp_file(
        "broken-for-replay.yaml",
        "rules:\n  - id: x\n    name: X\n    condition: a >>= 1\n",
    );
    let (code, _, err) = betrace(&["replay", "--rules", &rules, "examples/traces"]);
    assert_eq!(code, 2, "1 means violations found: {err}");
    assert!(err.contains("broken-for-replay.yaml:4:"), "{err}");
}

#[test]
fn byte_order_marks_read_as_nothing_in_rule_and_trace_files() {
    let rules = temp_file(
        "bom-rules.yaml",
        "\u{feff}rules:\n  - id: no-charge\n    name: No charge\n    condition: payment.charge\n",
    );
    let traces = temp_file(
        "bom-traces.json",
        "\u{feff}{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"5f9c2a1b3e4d67895f9c2a1b3e4d6789\",\"spanId\":\"a1b2c3d4e5f60718\",\"name\":\"payment.charge\"}]}]}]}\n",
    );
    let (code, out, err) = betrace(&["replay", "--rules", &rules, &traces]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}{err}");
}
