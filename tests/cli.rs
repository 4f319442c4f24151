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

/// One OTLP/JSON line: a `payment.charge` span of a service named `service`.
fn charge_trace(service: &str) -> String {
    let service = serde_json::Value::String(service.into());
    format!(
        "{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"service.name\",\"value\":{{\"stringValue\":{service}}}}},{{\"key\":\"service.version\",\"value\":{{\"stringValue\":{service}}}}}]}},\"scopeSpans\":[{{\"spans\":[{{\"traceId\":\"5f9c2a1b3e4d67895f9c2a1b3e4d6789\",\"spanId\":\"a1b2c3d4e5f60718\",\"name\":\"payment.charge\",\"startTimeUnixNano\":\"1732521600000000000\",\"endTimeUnixNano\":\"1732521600100000000\"}}]}}]}}]}}\n"
    )
}

const HOSTILE: &str = "shop\u{1b}[2J\u{1b}]0;owned\u{7}\nerror: forged\u{202e}\u{9b}31m";

/// No text meant for people carries a control character, a bidi override or a forged line.
fn assert_inert(text: &str) {
    for c in ['\u{1b}', '\u{7}', '\u{202e}', '\u{9b}'] {
        assert!(!text.contains(c), "{c:?} reached the terminal:\n{text}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("error: forged")),
        "a forged line:\n{text}"
    );
}

#[test]
fn values_from_traces_and_rules_cannot_act_on_the_terminal() {
    let rules = temp_file(
        "hostile-rules.yaml",
        "rules:\n  - id: no-charge\n    name: \"No charge\\e[2J\\nerror: forged\\u202e\"\n    condition: payment.charge\n    compliance: {framework: \"SOC2\\e]0;x\\a\", control: \"CC\\n1\"}\n",
    );
    let traces = temp_file("hostile-traces.json", &charge_trace(HOSTILE));
    for format in ["table", "summary"] {
        let (code, out, err) = betrace(&["replay", "--rules", &rules, "--format", format, &traces]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("shop\\u001b[2J"),
            "escaped, not dropped:\n{out}"
        );
        assert_inert(&out);
        assert_inert(&err);
    }
    // Machine formats keep the value whole.
    let (_, out, _) = betrace(&["replay", "--rules", &rules, &traces]);
    let signal: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(signal["service"], HOSTILE, "{out}");

    // A bad rule id echoed in a diagnostic, and a bad record's message.
    let bad_id = temp_file(
        "hostile-id.yaml",
        "rules:\n  - id: \"x\\e[2J\\nerror: forged\"\n    name: X\n    condition: a\n",
    );
    let (code, _, err) = betrace(&["check", &bad_id]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("x\\u001b[2J\\nerror: forged"), "{err}");
    assert_inert(&err);
    let bad_record = temp_file(
        "hostile-record.json",
        &format!("{{\"x\": \"{}\n", "\\u001b[2J"),
    );
    let (_, _, err) = betrace(&["replay", "--rules", &rules, &bad_record]);
    assert_inert(&err);
    // A rule file whose own text holds an escape: quoted under the caret, escaped, and the
    // caret still under the mistake.
    let in_source = temp_file(
        "hostile-source.yaml",
        "rules:\n  - id: x\n    name: \"\u{1b}[2J\"\n    condition: a >>= 1\n    severity: \"\u{1b}]0;x\u{7}\"\n",
    );
    let (code, _, err) = betrace(&["check", &in_source]);
    assert_eq!(code, 1);
    assert_inert(&err);
    // A rule id asked for and not found.
    let (code, _, err) = betrace(&["explain", "--rules", &rules, "--rule", HOSTILE]);
    assert_eq!(code, 1);
    assert_inert(&err);
}

#[test]
fn csv_cells_cannot_start_a_formula_under_any_separator() {
    let rules = temp_file(
        "csv-rules.yaml",
        "rules:\n  - id: no-charge\n    name: No charge\n    condition: payment.charge\n",
    );
    let traces = temp_file("csv-traces.json", &charge_trace("ord;=1+1"));
    let (code, out, err) = betrace(&["replay", "--rules", &rules, "--format", "csv", &traces]);
    assert_eq!(code, 0, "{err}");
    let row = out.lines().nth(1).unwrap();
    assert!(
        row.contains("\"ord;'=1+1\""),
        "quoted and neutralised: {row}"
    );
    // Read as a spreadsheet of each locale reads it: no cell starts a formula.
    for sep in [b',', b';', b'|', b'\t'] {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(sep)
            .has_headers(false)
            .flexible(true)
            .from_reader(out.as_bytes());
        for record in reader.records() {
            for cell in record.unwrap().iter() {
                assert!(
                    !cell.trim_start().starts_with(['=', '+', '-', '@']),
                    "with separator {:?}, {cell:?} starts a formula:\n{out}",
                    sep as char
                );
            }
        }
    }
    assert!(
        out.lines().all(|l| l.starts_with('"')),
        "every cell quoted:\n{out}"
    );
}

#[test]
fn numeric_flags_have_sane_ranges() {
    let rules = "examples/rules";
    for (flag, value) in [
        ("--threads", "100000"),
        ("--threads", "65536"),
        ("--max-traces", "0"),
        ("--max-traces", "100000000000000"),
        ("--max-spans", "0"),
        ("--max-record-mib", "0"),
        ("--max-record-mib", "1000000"),
        ("--trace-idle-timeout", "0s"),
        ("--trace-idle-timeout", "10000d"),
        ("--max-trace-age", "0.1ms"),
        ("--max-trace-age", "1000000h"),
    ] {
        let (code, _, err) = betrace(&["replay", "--rules", rules, flag, value, "examples/traces"]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(value),
            "{flag} {value}: {err}"
        );
    }
    for (flag, value) in [("--jaeger-limit", "0"), ("--jaeger-timeout", "100d")] {
        let (code, _, err) = betrace(&[
            "replay",
            "--rules",
            rules,
            "--jaeger",
            "http://127.0.0.1:9",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            flag,
            value,
        ]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
    let tiny = temp_file("threads-trace.json", &charge_trace("shop"));
    let (code, _, err) = betrace(&["replay", "--rules", rules, "--threads", "1024", &tiny]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn no_output_may_name_a_file_the_run_reads_or_the_other_output() {
    let rules = temp_file(
        "keep-rules.yaml",
        "rules:\n  - id: no-charge\n    name: No charge\n    condition: payment.charge\n",
    );
    let before = std::fs::read_to_string(&rules).unwrap();
    let dir = std::path::Path::new(&rules).parent().unwrap().to_path_buf();
    let link = dir.join("keep-rules-symlink.yaml");
    let hard = dir.join("keep-rules-hardlink.yaml");
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_file(&hard);
    std::os::unix::fs::symlink(&rules, &link).unwrap();
    std::fs::hard_link(&rules, &hard).unwrap();
    let traces_dir = dir.join("outputs-inputs");
    std::fs::create_dir_all(&traces_dir).unwrap();
    let traces = traces_dir.join("t.json");
    std::fs::write(&traces, charge_trace("shop")).unwrap();
    let traces_link = dir.join("t-hardlink.json");
    let _ = std::fs::remove_file(&traces_link);
    std::fs::hard_link(&traces, &traces_link).unwrap();
    let out = dir.join("fresh-output.jsonl").display().to_string();
    let (link, hard, traces_dir, traces_link) = (
        link.display().to_string(),
        hard.display().to_string(),
        traces_dir.display().to_string(),
        traces_link.display().to_string(),
    );
    for flags in [
        vec!["--report", rules.as_str()],
        vec!["--output", rules.as_str()],
        vec!["--report", link.as_str()],
        vec!["--output", hard.as_str()],
        vec!["--output", out.as_str(), "--report", out.as_str()],
        vec!["--output", traces_link.as_str()],
    ] {
        let mut args = vec!["replay", "--rules", &rules];
        args.extend(&flags);
        args.push(&traces_dir);
        let (code, _, err) = betrace(&args);
        assert_eq!(code, 2, "{flags:?}: {err}");
        assert!(err.starts_with("error: --"), "{flags:?}: {err}");
        assert_eq!(
            std::fs::read_to_string(&rules).unwrap(),
            before,
            "{flags:?}"
        );
    }
    // A rule directory: every file in it is read.
    let rules_dir = dir.join("keep-rules-dir");
    std::fs::create_dir_all(&rules_dir).unwrap();
    let in_dir = rules_dir.join("r.yaml");
    std::fs::write(&in_dir, &before).unwrap();
    let (code, _, err) = betrace(&[
        "replay",
        "--rules",
        rules_dir.to_str().unwrap(),
        "--report",
        in_dir.to_str().unwrap(),
        &traces_dir,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rule file"), "{err}");
    assert_eq!(std::fs::read_to_string(&in_dir).unwrap(), before);
    assert!(!std::path::Path::new(&out).exists(), "nothing created");
}
