//! Compliance evidence against traces whose counts are known by construction: how many
//! traces each rule applied to and was violated on, by day, service and version — in
//! `--format summary`, in the table's per-day breakdown, and in the HTML report as a
//! browser renders it (Debian's Chromium, headless).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// 2024-11-01T00:00:00Z.
const DAY0: u64 = 1_730_419_200_000_000_000;
const DAY: u64 = 86_400_000_000_000;
const HOUR: u64 = 3_600_000_000_000;
const MS: u64 = 1_000_000;

const RULES: &str = r#"rules:
  - id: pay
    name: Charges follow a reservation
    severity: critical
    compliance: { framework: PCI-DSS, control: "10.2" }
    condition: when { payment.charge } always { inventory.reserve }
  - id: audit
    name: Deletes are audited
    severity: high
    condition: trace.has(admin.delete) and not trace.has(audit.log)
  - id: idle
    name: Never applies
    condition: when { nothing.here } always { audit.log }
"#;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("betrace-evidence-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn span(trace: u32, n: u8, parent: Option<u8>, name: &str, start: u64) -> Value {
    let mut s = json!({
        "traceId": format!("{trace:032x}"),
        "spanId": format!("{trace:08x}{n:08x}"),
        "name": name,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + MS).to_string(),
    });
    if let Some(p) = parent {
        s["parentSpanId"] = json!(format!("{trace:08x}{p:08x}"));
    }
    s
}

fn resource(service: &str, version: Option<&str>, spans: Vec<Value>) -> Value {
    let mut attrs = vec![json!({"key": "service.name", "value": {"stringValue": service}})];
    if let Some(v) = version {
        attrs.push(json!({"key": "service.version", "value": {"stringValue": v}}));
    }
    json!({"resource": {"attributes": attrs}, "scopeSpans": [{"spans": spans}]})
}

/// Writes the traces, one batch a line, and returns the file.
///
/// * 60 checkout traces: 3 days × 2 services × 2 versions × 5, each a request with a charge;
///   on day 1 the version 1.1 ones skip the reservation (10 violations of `pay`);
/// * 7 health checks in `frontend` (no version) on day 2: `pay` does not apply;
/// * 3 deletes in `admin` 1.0 on day 0 without an audit log (3 violations of `audit`).
///
/// `audit` has no `when`: it applies to all 70 traces.
fn write_traces() -> PathBuf {
    let mut lines = Vec::new();
    let mut id = 1u32;
    for day in 0..3u64 {
        for service in ["checkout", "billing"] {
            for version in ["1.0", "1.1"] {
                for i in 0..5u64 {
                    let t = DAY0 + day * DAY + (1 + i) * HOUR;
                    let mut spans = vec![span(id, 1, None, "request", t)];
                    if !(day == 1 && version == "1.1") {
                        spans.push(span(id, 2, Some(1), "inventory.reserve", t + MS));
                    }
                    spans.push(span(id, 3, Some(1), "payment.charge", t + 2 * MS));
                    lines.push(json!({"resourceSpans": [resource(service, Some(version), spans)]}));
                    id += 1;
                }
            }
        }
    }
    for i in 0..7u64 {
        let t = DAY0 + 2 * DAY + (10 + i) * HOUR;
        lines.push(json!({"resourceSpans": [resource("frontend", None, vec![span(id, 1, None, "health.check", t)])]}));
        id += 1;
    }
    for i in 0..3u64 {
        let t = DAY0 + (20 + i) * HOUR;
        lines.push(json!({"resourceSpans": [resource("admin", Some("1.0"), vec![span(id, 1, None, "admin.delete", t)])]}));
        id += 1;
    }
    let path = dir().join("traces.json");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

fn rules() -> PathBuf {
    let path = dir().join("rules.yaml");
    std::fs::write(&path, RULES).unwrap();
    path
}

fn betrace(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(args)
        .output()
        .expect("run betrace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cells of the line starting with `key` (after it) in the block that starts with
/// `header`.
fn row(text: &str, header: &str, key: &str) -> Vec<String> {
    let block = &text[text
        .find(header)
        .unwrap_or_else(|| panic!("{header} in\n{text}"))..];
    let line = block
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("{key} under {header} in\n{text}"));
    line.trim_start()[key.len()..]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_summary_counts_what_was_built() {
    let (traces, rules) = (write_traces(), rules());
    let (code, out, err) = betrace(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "summary",
        traces.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        row(&out, "RULE", "pay")[1..4],
        ["60", "10", "83.33%"],
        "{out}"
    );
    assert_eq!(
        row(&out, "RULE", "audit")[1..4],
        ["70", "3", "95.71%"],
        "{out}"
    );
    assert_eq!(row(&out, "RULE", "idle")[1..4], ["0", "0", "n/a"], "{out}");
    assert_eq!(
        row(&out, "RULE", "total")[..3],
        ["130", "13", "90.00%"],
        "{out}"
    );

    let pay = "pay — Charges follow a reservation  [PCI-DSS 10.2]";
    assert_eq!(row(&out, pay, "2024-11-01"), ["20", "0", "100%"]);
    assert_eq!(row(&out, pay, "2024-11-02"), ["20", "10", "50.00%"]);
    assert_eq!(row(&out, pay, "2024-11-03"), ["20", "0", "100%"]);
    assert_eq!(row(&out, pay, "checkout"), ["30", "5", "83.33%"]);
    assert_eq!(row(&out, pay, "billing"), ["30", "5", "83.33%"]);
    assert_eq!(row(&out, pay, "checkout 1.1"), ["15", "5", "66.66%"]);
    assert_eq!(row(&out, pay, "billing 1.0"), ["15", "0", "100%"]);

    // `audit` applies to every trace, attributed to its root (health checks: no version).
    let audit = "audit — Deletes are audited";
    assert_eq!(row(&out, audit, "2024-11-01"), ["23", "3", "86.95%"]);
    assert_eq!(row(&out, audit, "2024-11-03"), ["27", "0", "100%"]);
    assert_eq!(row(&out, audit, "frontend unknown"), ["7", "0", "100%"]);
    assert_eq!(row(&out, audit, "admin 1.0"), ["3", "3", "0.00%"]);
    assert!(
        !out.contains("idle — "),
        "a rule that applied to nothing has no breakdown"
    );

    // The table gains the per-day breakdown of signals.
    let (code, out, _) = betrace(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "table",
        traces.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("by day: 2024-11-02 10\n"), "{out}");
    assert!(out.contains("by day: 2024-11-01 3\n"), "{out}");
}

#[test]
fn a_trace_judged_again_after_a_late_span_counts_once() {
    // A charge alone is judged (applied, violated); its reservation arrives late and the
    // trace is judged again, whole: still one trace applied, one violated.
    let d = dir().join("late");
    std::fs::create_dir_all(&d).unwrap();
    let t = DAY0;
    let first = json!({"resourceSpans": [resource("checkout", Some("1"), vec![
        span(9, 1, None, "payment.charge", t),
    ])]});
    // Far later in data time, a span of another trace moves the clock past the idle
    // timeout; then a late reservation of trace 9 arrives (judged again, still held).
    let other = json!({"resourceSpans": [resource("checkout", Some("1"), vec![
        span(10, 1, None, "inventory.reserve", t + 7_000 * MS),
    ])]});
    let late = json!({"resourceSpans": [resource("checkout", Some("1"), vec![
        span(9, 2, None, "inventory.reserve", t + 7_001 * MS),
    ])]});
    let path = d.join("t.json");
    std::fs::write(&path, format!("{first}\n{other}\n{late}\n")).unwrap();
    let (code, out, err) = betrace(&[
        "replay",
        "--rules",
        rules().to_str().unwrap(),
        "--format",
        "summary",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 late spans"), "{err}");
    // Judged twice (a violation first, then whole), counted once.
    assert_eq!(row(&out, "RULE", "pay")[1..3], ["1", "1"], "{out}");
}

/// Debian's Chromium, or `None` (then the test says it was skipped; in CI it fails).
fn chromium() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("CI must install Debian's chromium (.ci/run does)");
    }
    found
}

#[test]
fn the_report_as_a_browser_shows_it() {
    let (traces, rules) = (write_traces(), rules());
    let report = dir().join("evidence.html");
    let (code, _, err) = betrace(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--from",
        "2024-11-01",
        "--to",
        "2024-11-03",
        "--report",
        report.to_str().unwrap(),
        "--output",
        dir().join("signals.jsonl").to_str().unwrap(),
        traces.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&report).unwrap();
    // Self-contained: nothing is fetched from anywhere.
    for outside in ["src=", "href=\"http", "@import", "url(", "<script", "<link"] {
        assert!(!html.contains(outside), "the page refers to {outside}");
    }
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium to render the report");
        return;
    };
    let profile = dir().join("chromium-profile");
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--allow-file-access-from-files",
    ];
    let url = format!("file://{}", report.display());
    let dom = Command::new(browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .expect("run chromium");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let rendered = String::from_utf8_lossy(&dom.stdout);
    let text = strip_tags(&rendered);
    for expected in [
        "Compliance evidence",
        "2024-11-01 — 2024-11-03",
        "Charges follow a reservation",
        "Deletes are audited",
        "Never applies",
        "PCI-DSS 10.2",
        "83.33%",
        "95.71%",
        "Days with violations: 2024-11-02: 10",
        "First violation",
        "checkout 1.1",
        "The rule applied to no trace in this period.",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not on the page:\n{text}"
        );
    }
    for id in ["pay", "audit", "idle"] {
        assert!(
            rendered.contains(&format!("id=\"rule-{id}\"")),
            "rule {id} has no section"
        );
    }

    // The screenshot a person would see; README's picture is this file.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    let status = Command::new(browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args([
            "--window-size=1000,1500",
            &format!("--screenshot={}", shot.display()),
            &url,
        ])
        .output()
        .expect("run chromium");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Not a blank page: a blank 1000×1500 PNG is a few kilobytes.
    assert!(png.len() > 50_000, "the screenshot is {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
}

/// The text of an HTML document, tags dropped and entities of the five escapes decoded.
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
