//! Replay from a Jaeger store when the store is capped, refuses, breaks or hangs; and
//! discover from one (every trace fetched once, or a clear error).
//!
//! The store here is a small HTTP server speaking api_v3's shapes, so that each failure
//! can be produced on demand; the real Jaeger (built from its module) is exercised by
//! `make e2e` (tests/e2e/run.sh), against the live connector's signals.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use betrace::engine::signal::{parse_time, rfc3339};

/// 2024-11-25T08:00:00Z.
const T0: u64 = 1_732_521_600_000_000_000;
const MS: u64 = 1_000_000;

const RULES: &str = "rules:
  - id: pay
    name: Charges follow a reservation
    condition: when { payment.charge } always { inventory.reserve }
";

/// How the store answers one request.
enum Reply {
    Ok(String),
    Status(u16, String),
    /// Accept and never answer.
    Hang,
    /// 302 to this location.
    Redirect(String),
}

/// A store: the handler sees each request's path and query.
fn serve(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || answer(stream, &*handler));
        }
    });
    url
}

fn answer(mut stream: TcpStream, handler: &dyn Fn(&str) -> Reply) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let target = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (code, body) = match handler(&target) {
        Reply::Ok(body) => (200, body),
        Reply::Status(code, body) => (code, body),
        Reply::Hang => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        Reply::Redirect(to) => {
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return;
        }
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A query parameter's value, percent-decoded.
fn param(target: &str, key: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            let bytes = v.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        })
    })
}

/// A stored trace: a charge at `start`, a reservation before it unless `violates`; with
/// `root`, both under a checkout span that starts first (a complete trace).
#[derive(Clone)]
struct Stored {
    id: u8,
    start: u64,
    violates: bool,
    root: bool,
}

impl Stored {
    fn span(&self, n: u8, name: &str, start: u64, service: &str) -> String {
        let parent = if self.root && n != 0 {
            format!(r#","parentSpanId":"{:02x}00000000000000""#, self.id)
        } else {
            String::new()
        };
        format!(
            r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{:02x}000000000000000000000000000000","spanId":"{:02x}{n:02x}000000000000"{parent},"name":"{name}","startTimeUnixNano":"{start}","endTimeUnixNano":"{}"}}]}}]}}"#,
            self.id,
            self.id,
            start + MS
        )
    }

    /// Its resource spans: the reservation (in another service, a millisecond before the
    /// charge, so it can straddle a slice boundary) and the charge (and their root).
    fn json(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.root {
            out.push(self.span(0, "POST /checkout", self.start - 2 * MS, "shop"));
        }
        if !self.violates {
            out.push(self.span(1, "inventory.reserve", self.start - MS, "inventory"));
        }
        out.push(self.span(2, "payment.charge", self.start, "payments"));
        out
    }
}

/// The api_v3 find-traces answer of a store holding `traces`: matches by the charge's
/// start (the operation this store knows), most recent first, at most `num_traces`;
/// refuses a `num_traces` above `refuse_above` with a 500, as Jaeger's memory store does
/// beyond its `max_traces`.
fn find(traces: &[Stored], target: &str, refuse_above: usize) -> Reply {
    let min = parse_time(&param(target, "query.start_time_min").unwrap()).unwrap();
    let max = parse_time(&param(target, "query.start_time_max").unwrap()).unwrap();
    let n: usize = param(target, "query.num_traces").unwrap().parse().unwrap();
    assert_eq!(param(target, "query.raw_traces").as_deref(), Some("true"));
    if n > refuse_above {
        return Reply::Status(
            500,
            r#"{"error":{"httpCode":500,"message":"search depth must be greater than 0 and less than max traces"}}"#.into(),
        );
    }
    let found: Vec<String> = traces
        .iter()
        .rev()
        .filter(|t| t.start >= min && t.start <= max)
        .take(n)
        .flat_map(Stored::json)
        .collect();
    if found.is_empty() {
        return Reply::Status(
            404,
            r#"{"error":{"httpCode":404,"message":"No traces found"}}"#.into(),
        );
    }
    Reply::Ok(format!(
        r#"{{"result":{{"resourceSpans":[{}]}}}}"#,
        found.join(",")
    ))
}

fn listing(target: &str) -> Option<Reply> {
    if target.starts_with("/api/v3/services") {
        return Some(Reply::Ok(r#"{"services":["inventory","payments"]}"#.into()));
    }
    if target.starts_with("/api/v3/operations") {
        let body = if param(target, "service").as_deref() == Some("payments") {
            r#"{"operations":[{"name":"payment.charge","spanKind":"server"},{"name":"payment.charge","spanKind":"client"},{"name":"payment.status"}]}"#
        } else {
            r#"{"operations":[{"name":"inventory.reserve"}]}"#
        };
        return Some(Reply::Ok(body.into()));
    }
    None
}

fn rules_file() -> String {
    let dir = std::env::temp_dir().join(format!("betrace-jaeger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.yaml");
    // Tests run at once: each writes its own copy and renames it into place, so that none
    // reads the file half written.
    static COPIES: AtomicUsize = AtomicUsize::new(0);
    let copy = dir.join(format!(
        "rules-{}.yaml",
        COPIES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&copy, RULES).unwrap();
    std::fs::rename(&copy, &path).unwrap();
    path.display().to_string()
}

fn replay(url: &str, extra: &[&str]) -> (i32, String, String) {
    let rules = rules_file();
    let mut args = vec![
        "replay",
        "--rules",
        &rules,
        "--jaeger",
        url,
        "--from",
        "2024-11-25",
        "--to",
        "2024-11-25",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(&args)
        .output()
        .expect("run betrace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stored(n: u8) -> Vec<Stored> {
    (0..n)
        .map(|i| Stored {
            id: i + 1,
            // Several traces share a millisecond: slices must split below it.
            start: T0 + (i as u64 / 3) * MS,
            violates: i % 4 == 0,
            root: false,
        })
        .collect()
}

#[test]
fn a_capped_store_is_enumerated_completely_and_each_trace_judged_once() {
    let traces = stored(40);
    let queries = Arc::new(AtomicUsize::new(0));
    let (t, q) = (traces.clone(), queries.clone());
    let url = serve(move |target| {
        listing(target).unwrap_or_else(|| {
            q.fetch_add(1, Ordering::Relaxed);
            find(&t, target, 8)
        })
    });
    // Asks for 1,000 a query; the store refuses more than 8 and returns at most what is
    // asked: the limit is halved to 7… then 40 traces come in slices that split.
    let (code, out, err) = replay(&url, &["--jaeger-limit", "1000", "--format", "summary"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("asking for 500 traces a query instead of 1000"),
        "{err}"
    );
    // Each trace fetched and judged once, however often the slices returned it.
    assert!(err.contains(" spans in 40 traces\n"), "{err}");
    assert!(err.contains("\n        40 traces judged"), "{err}");
    let row = out.lines().find(|l| l.starts_with("pay ")).expect(&out);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..5], ["medium", "40", "10", "75.00%"], "{out}");
    assert!(
        queries.load(Ordering::Relaxed) > 10,
        "the slices were split"
    );

    // The signals are the traces that violate, each once.
    let (code, out, err) = replay(&url, &["--jaeger-limit", "3"]);
    assert_eq!(code, 0, "{err}");
    let mut ids: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["trace_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = traces
        .iter()
        .filter(|t| t.violates)
        .map(|t| format!("{:02x}000000000000000000000000000000", t.id))
        .collect();
    want.sort();
    assert_eq!(ids, want);
    // Only the operation a rule needs was asked for, across its span kinds once.
    assert!(err.contains("1 (service, operation) pairs"), "{err}");
}

#[test]
fn the_first_span_decides_the_window_even_when_the_matching_span_is_later() {
    // A trace whose reservation starts in the window and whose charge starts after `to`
    // is in the window (file replay's rule); one whose first span is before `from` is not.
    let day_end = parse_time("2024-11-25T23:59:59.9999Z").unwrap();
    let late = Stored {
        id: 1,
        start: day_end + MS / 2,
        violates: false,
        root: false,
    };
    let traces = vec![late];
    let url = serve(move |target| listing(target).unwrap_or_else(|| find(&traces, target, 100)));
    let (code, out, err) = replay(&url, &["--format", "summary"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 traces"), "{err}");
    let row = out.lines().find(|l| l.starts_with("pay ")).expect(&out);
    assert!(
        row.contains(" 1 ") && row.contains("100%"),
        "{out}\n{}",
        rfc3339(day_end)
    );
}

fn unused_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

#[test]
fn each_bad_store_is_a_clear_error_naming_the_request() {
    let url = unused_port_url();
    let (code, _, err) = replay(&url, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{url}/api/v3/services")) && err.contains("cannot reach the store"),
        "{err}"
    );

    let url = serve(|target| {
        listing(target).unwrap_or_else(|| Reply::Ok("{\"result\": {\"resourceSpans\": [".into()))
    });
    let (code, _, err) = replay(&url, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/api/v3/traces?query.start_time_min=2024-11-25T00%3A00%3A00"),
        "{err}"
    );
    assert!(
        err.contains("not the JSON expected of Jaeger's api_v3"),
        "{err}"
    );

    let url = serve(|target| listing(target).unwrap_or(Reply::Hang));
    let (code, _, err) = replay(&url, &["--jaeger-timeout", "300ms"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no answer in time") && err.contains("/api/v3/traces?"),
        "{err}"
    );

    let url = serve(|_| {
        Reply::Status(
            403,
            r#"{"error":{"message":"tenant header missing"}}"#.into(),
        )
    });
    let (code, _, err) = replay(&url, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("HTTP 403") && err.contains("tenant header missing"),
        "{err}"
    );

    let url = serve(|target| {
        listing(target).unwrap_or_else(|| Reply::Status(500, "store on fire".into()))
    });
    let (code, _, err) = replay(&url, &["--jaeger-limit", "4"]);
    assert_eq!(code, 2);
    // A server error is not the store saying "too many": the limit stays, the query is
    // asked again a few times, and the error says so.
    assert!(!err.contains("asking for"), "{err}");
    assert!(
        err.contains("HTTP 500: store on fire (after 4 attempts)"),
        "{err}"
    );

    // A redirect to another host is not followed, and the error names where it led.
    let url = serve(|_| Reply::Redirect("http://203.0.113.9:16686/api/v3/services".into()));
    let (code, _, err) = replay(&url, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("redirects to http://203.0.113.9:16686/api/v3/services, another host"),
        "{err}"
    );

    let url = serve(|target| listing(target).unwrap_or_else(|| Reply::Ok("[1, 2]".into())));
    let (code, _, err) = replay(&url, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("not the JSON expected"), "{err}");
}

#[test]
fn what_was_judged_before_a_store_failure_is_kept() {
    let traces = stored(5);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let url = serve(move |target| {
        listing(target).unwrap_or_else(|| {
            // The first query answers (full: it is split); every later one fails.
            if c.fetch_add(1, Ordering::Relaxed) == 0 {
                find(&traces, target, 100)
            } else {
                Reply::Status(502, "bad gateway".into())
            }
        })
    });
    let (code, out, err) = replay(&url, &["--jaeger-limit", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("HTTP 502: bad gateway") && err.contains("the run is incomplete"),
        "{err}"
    );
    // The first answer held the most recent trace, which violates: its signal is out.
    assert!(err.contains("1 traces judged"), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("\"trace_id\":\"05000000000000000000000000000000\""),
        "{out}"
    );
}

#[test]
fn store_flags_are_checked_before_anything_runs() {
    let rules = rules_file();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
            .args(["replay", "--rules", &rules])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--service", "checkout", "examples/traces"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("go with --jaeger"), "{err}");
    let (code, err) = run(&[
        "--jaeger",
        "jaeger:16686",
        "--from",
        "2024-11-25",
        "--to",
        "2024-11-25",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
    let (code, err) = run(&["--jaeger", "http://127.0.0.1:9", "--from", "2024-11-25"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--jaeger needs --from and --to"), "{err}");
    let (code, err) = run(&[
        "--report",
        "/nonexistent/dir/r.html",
        "--jaeger",
        "http://127.0.0.1:9",
        "--from",
        "2024-11-25",
        "--to",
        "2024-11-25",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--report /nonexistent/dir/r.html") && !err.contains("api/v3"),
        "nothing was asked of the store: {err}"
    );
}

#[test]
fn a_window_as_wide_as_time_itself_splits_without_overflow() {
    // `--from 1970-01-01 --to 2554-07-21`: the last slice ends at u64::MAX nanoseconds, so
    // its width plus one does not fit in 64 bits.
    let traces = stored(9);
    let url = serve(move |target| listing(target).unwrap_or_else(|| find(&traces, target, 100)));
    let rules = rules_file();
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args([
            "replay",
            "--rules",
            &rules,
            "--jaeger",
            &url,
            "--from",
            "1970-01-01",
            "--to",
            "2554-07-21",
            "--jaeger-limit",
            "2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(" spans in 9 traces\n"), "{err}");
}

/// A store that fails each find query `fails` times (with `status`) before it answers.
fn flaky(
    traces: Vec<Stored>,
    fails: usize,
    status: u16,
    refuse_above: usize,
) -> (String, Arc<AtomicUsize>) {
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    let url = serve(move |target| {
        listing(target).unwrap_or_else(|| {
            let n = q.fetch_add(1, Ordering::Relaxed);
            if n % (fails + 1) < fails {
                Reply::Status(status, "try again later".into())
            } else {
                find(&traces, target, refuse_above)
            }
        })
    });
    (url, queries)
}

#[test]
fn transient_failures_are_retried_without_shrinking_the_page() {
    // Every query fails three times (503) before it answers: with the old halving, the
    // limit fell to 1 and every slice looked full (40 traces: thousands of queries).
    let (url, queries) = flaky(stored(40), 3, 503, 1000);
    let (code, out, err) = replay(&url, &["--jaeger-limit", "50", "--format", "summary"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("asking for"), "{err}");
    assert!(err.contains("\n        40 traces judged"), "{err}");
    let row = out.lines().find(|l| l.starts_with("pay ")).expect(&out);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..5], ["medium", "40", "10", "75.00%"], "{out}");
    // One slice (40 traces < 50 asked: never split), four attempts.
    assert_eq!(queries.load(Ordering::Relaxed), 4);

    // 429 is transient too; a slice with fewer traces than asked is not split.
    let (url, queries) = flaky(stored(40), 1, 429, 1000);
    let (code, _, err) = replay(&url, &["--jaeger-limit", "16", "--format", "summary"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("\n        40 traces judged"), "{err}");
    let first = queries.load(Ordering::Relaxed);
    let (url, queries) = flaky(stored(40), 0, 503, 1000);
    let (code, _, err) = replay(&url, &["--jaeger-limit", "16", "--format", "summary"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        first,
        2 * queries.load(Ordering::Relaxed),
        "the same slices, each asked twice"
    );
}

#[test]
fn the_page_grows_back_to_the_stores_own_limit() {
    // The store lists at most 8: refused at 1,000, the limit settles on 8 (not 7, where
    // halving lands), and no more queries are refused once it has.
    let (url, _) = flaky(stored(40), 0, 503, 8);
    let (code, _, err) = replay(&url, &["--jaeger-limit", "1000", "--format", "summary"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("\n        40 traces judged"), "{err}");
    assert!(
        err.contains("asking for 8 traces a query instead of 9")
            || err.contains("asking for 7 traces a query instead of 9"),
        "{err}"
    );
    let refusals = err.matches("asking for").count();
    assert!(refusals <= 12, "{refusals} refusals: {err}");
}

/// `betrace discover --jaeger URL` over 2024-11-25 with `extra` flags: exit code, stdout,
/// stderr.
fn discover(url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "discover",
        "--jaeger",
        url,
        "--from",
        "2024-11-25",
        "--to",
        "2024-11-25",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(&args)
        .output()
        .expect("run betrace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The candidates of `--format jsonl` output, by condition: (support, violations, the
/// exceptions sorted).
fn by_condition(jsonl: &str) -> std::collections::BTreeMap<String, (u64, u64, Vec<String>)> {
    jsonl
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let mut ex: Vec<String> = v["exceptions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_string())
                .collect();
            ex.sort();
            (
                v["condition"].as_str().unwrap().to_string(),
                (
                    v["support"].as_u64().unwrap(),
                    v["violations"].as_u64().unwrap(),
                    ex,
                ),
            )
        })
        .collect()
}

#[test]
fn discover_mines_every_trace_of_a_capped_store_once_as_from_its_files() {
    let traces: Vec<Stored> = stored(40)
        .into_iter()
        .map(|t| Stored { root: true, ..t })
        .collect();
    let (t, queried) = (traces.clone(), Arc::new(AtomicUsize::new(0)));
    let q = queried.clone();
    let url = serve(move |target| {
        listing(target).unwrap_or_else(|| {
            q.fetch_add(1, Ordering::Relaxed);
            // Every trace is asked for, whatever service or operation holds it.
            assert_eq!(param(target, "query.operation_name"), None, "{target}");
            find(&t, target, 8)
        })
    });
    let flags = [
        "--format",
        "jsonl",
        "--top",
        "0",
        "--min-support",
        "5",
        "--min-confidence",
        "0.7",
    ];
    let mut args = flags.to_vec();
    args.extend(["--jaeger-limit", "3"]);
    let (code, out, err) = discover(&url, &args);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("40 traces fetched") && err.contains("40 complete traces mined"),
        "{err}"
    );
    assert!(
        queried.load(Ordering::Relaxed) > 10,
        "the slices were split: {err}"
    );
    // The same traces as a file: the same candidates, counts and exceptions.
    let dir = std::env::temp_dir().join(format!("betrace-jaeger-discover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("traces.json");
    let lines: Vec<String> = traces
        .iter()
        .map(|t| format!(r#"{{"resourceSpans":[{}]}}"#, t.json().join(",")))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out_files = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .arg("discover")
        .args(flags)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out_files.status.success());
    let from_files = by_condition(&String::from_utf8_lossy(&out_files.stdout));
    let from_store = by_condition(&out);
    assert_eq!(from_store, from_files);
    // Among them the rule the traces were made by, broken by the ten without a reservation
    // (the exceptions are those ten).
    let mut want: Vec<String> = traces
        .iter()
        .filter(|t| t.violates)
        .map(|t| format!("{:02x}000000000000000000000000000000", t.id))
        .collect();
    want.sort();
    assert!(
        from_store.values().any(|c| *c == (40, 10, want.clone())),
        "{out}"
    );
}

#[test]
fn discover_from_a_failing_store_is_a_clear_error_and_mines_nothing() {
    let traces = stored(5);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let url = serve(move |target| {
        listing(target).unwrap_or_else(|| {
            // The first query answers (full: it is split); every later one fails.
            if c.fetch_add(1, Ordering::Relaxed) == 0 {
                find(&traces, target, 100)
            } else {
                Reply::Status(502, "bad gateway".into())
            }
        })
    });
    let (code, out, err) = discover(&url, &["--jaeger-limit", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: the trace store failed: ")
            && err.contains(&format!("{url}/api/v3/traces?"))
            && err.contains("HTTP 502: bad gateway"),
        "{err}"
    );
    assert!(
        out.is_empty(),
        "nothing is mined from part of a window: {out}"
    );

    let (code, out, err) = discover(&unused_port_url(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot reach the store"), "{err}");
    assert!(out.is_empty(), "{out}");
}

#[test]
fn discover_store_flags_are_checked_before_anything_runs() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
            .arg("discover")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--jaeger", "http://127.0.0.1:9", "--from", "2024-11-25"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--jaeger needs --from and --to"), "{err}");
    let (code, err) = run(&["--jaeger-limit", "5", "examples/traces"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("go with --jaeger"), "{err}");
    let (code, err) = run(&[
        "--jaeger",
        "jaeger:16686",
        "--from",
        "2024-11-25",
        "--to",
        "2024-11-25",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
    let (code, err) = run(&[
        "--jaeger",
        "http://127.0.0.1:9",
        "--from",
        "2024-11-25",
        "--to",
        "2024-11-25",
        "examples/traces",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
}
