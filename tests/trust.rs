//! Replay on the inputs users really have: several replicas' files, retried exports,
//! absurd times, tiny limits, bombs, truncated and hostile records, closed pipes. Each
//! test failed before the fix it guards.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use betrace_corpus::{batches, encode, generate, Format};
use common::{expected, jsonl, pairs, replay, tmp};
use opentelemetry_proto::tonic::trace::v1::{Span, TracesData};

/// The part of `batch` whose spans satisfy `keep`.
fn part(batch: &TracesData, keep: &dyn Fn(&Span) -> bool) -> TracesData {
    let mut b = batch.clone();
    for rs in &mut b.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| keep(s));
        }
    }
    b
}

fn write_jsonl(path: &Path, batches: &[TracesData]) {
    let mut text = Vec::new();
    for b in batches {
        text.extend(encode(b, Format::Json));
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

fn write_proto(path: &Path, batches: &[TracesData]) {
    let mut bytes = Vec::new();
    for b in batches {
        let body = encode(b, Format::Proto);
        bytes.extend((body.len() as u32).to_be_bytes());
        bytes.extend(body);
    }
    std::fs::write(path, bytes).unwrap();
}

/// Two collector replicas that each received about half of every batch's spans, each
/// writing its own rotated files — replica A's named in time order, replica B's so that
/// name order is not time order.
fn replica_dirs(dir: &Path, corpus: &betrace_corpus::Corpus) -> (PathBuf, PathBuf) {
    let all = batches(corpus, 200);
    let (a, b) = (dir.join("replica-a"), dir.join("replica-b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let half_a: Vec<TracesData> = all
        .iter()
        .map(|x| part(x, &|s| s.span_id[7] % 2 == 0))
        .collect();
    let half_b: Vec<TracesData> = all
        .iter()
        .map(|x| part(x, &|s| s.span_id[7] % 2 == 1))
        .collect();
    for (n, chunk) in half_a.chunks(20).enumerate() {
        write_jsonl(&a.join(format!("traces-{n:02}.json")), chunk);
    }
    for (n, chunk) in half_b.chunks(15).enumerate() {
        write_proto(&b.join(format!("z{:02}.pb", 99 - n)), chunk);
    }
    (a, b)
}

fn count_after(err: &str, label: &str) -> u64 {
    let at = err
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in {err}"));
    err[..at]
        .split_whitespace()
        .last()
        .and_then(|w| w.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no count before `{label}` in {err}"))
}

#[test]
fn replica_files_give_exactly_the_signals_of_one_file() {
    let corpus = generate(77, 2000, 0.05);
    let dir = tmp("replicas");
    let (a, b) = replica_dirs(&dir, &corpus);
    let (code, out, err) = replay(
        &[
            "--rules",
            "examples/rules",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(pairs(&jsonl(&out)), expected(&corpus), "{err}");
    // Given the other way round, or as their parent directory: the same.
    let (_, out2, _) = replay(&["--rules", "examples/rules", dir.to_str().unwrap()], None);
    assert_eq!(pairs(&jsonl(&out2)), expected(&corpus));
    assert_eq!(count_after(&err, "late spans"), 0, "{err}");
}

#[test]
fn an_absurd_span_time_cannot_move_the_clock() {
    let corpus = generate(78, 2000, 0.05);
    let dir = tmp("absurd");
    let mut all = batches(&corpus, 200);
    let mut absurd = all[0].resource_spans[0].scope_spans[0].spans[0].clone();
    absurd.trace_id = vec![0xab; 16];
    absurd.parent_span_id.clear();
    absurd.name = "clock.breaker".into();
    absurd.start_time_unix_nano = u64::MAX - 1;
    absurd.end_time_unix_nano = u64::MAX - 1;
    all[0].resource_spans[0].scope_spans[0].spans.push(absurd);
    write_jsonl(&dir.join("traces.json"), &all);
    let (code, out, err) = replay(&["--rules", "examples/rules", dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let mut got = pairs(&jsonl(&out));
    got.retain(|(t, _)| t != &"ab".repeat(16));
    assert_eq!(got, expected(&corpus), "{err}");
    assert_eq!(count_after(&err, "spans with implausible"), 1, "{err}");
}

#[test]
fn tiny_limits_never_change_a_verdict() {
    let corpus = generate(79, 600, 0.2);
    let dir = tmp("tiny");
    let (a, b) = replica_dirs(&dir, &corpus);
    let (code, out, err) = replay(
        &[
            "--rules",
            "examples/rules",
            "--max-traces",
            "3",
            "--max-spans",
            "20",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let got = pairs(&jsonl(&out));
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(got.len(), unique.len(), "a (rule, trace) signalled twice");
    // Replay spills rather than judge early: exactly the injected violations, each trace
    // judged once, whole.
    assert_eq!(got, expected(&corpus), "{err}");
    assert_eq!(
        count_after(&err, "traces judged ("),
        600,
        "each trace judged once: {err}"
    );
    assert!(err.contains("(0 early under memory pressure)"), "{err}");
    assert!(err.contains("spilled: more was held at once"), "{err}");
    assert_eq!(count_after(&err, "late spans"), 0, "{err}");
}

const COUNT_RULES: &str = "rules:
  - id: two-approvals
    name: Two approvals are two
    condition: count(approval.received) >= 2
";

#[test]
fn a_re_sent_span_counts_once() {
    let dir = tmp("resent");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, COUNT_RULES).unwrap();
    let line = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5f9c2a1b3e4d67895f9c2a1b3e4d6789","spanId":"a1b2c3d4e5f60718","name":"approval.received","startTimeUnixNano":"1732524137384000000","endTimeUnixNano":"1732524137385000000"}]}]}]}"#;
    // The exporter retried: the same batch twice in one file, and again in another replica.
    std::fs::write(dir.join("a.json"), format!("{line}\n{line}\n")).unwrap();
    std::fs::write(dir.join("b.json"), format!("{line}\n")).unwrap();
    let (code, out, err) = replay(
        &[
            "--rules",
            rules.to_str().unwrap(),
            dir.join("a.json").to_str().unwrap(),
            dir.join("b.json").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "one approval, sent three times, is one");
    assert_eq!(count_after(&err, "duplicate spans"), 2, "{err}");
}

#[test]
fn message_bombs_are_skipped_and_reported_without_allocating_them() {
    let dir = tmp("bombs");
    // 8 bytes claiming a 512 MiB message.
    let claim = dir.join("claim.pb");
    std::fs::write(&claim, [0x20, 0, 0, 0, 1, 2, 3, 4]).unwrap();
    // A zstd message that inflates past the limit, then a good one.
    let corpus = generate(80, 20, 0.0);
    let good = encode(&batches(&corpus, 1000)[0], Format::Proto);
    let mut bomb = Vec::new();
    for body in [
        zstd::encode_all(&vec![0u8; 3 << 20][..], 19).unwrap(),
        zstd::encode_all(good.as_slice(), 3).unwrap(),
    ] {
        bomb.extend((body.len() as u32).to_be_bytes());
        bomb.extend(body);
    }
    let zbomb = dir.join("bomb.zst.pb");
    std::fs::write(&zbomb, bomb).unwrap();
    // A JSON line longer than the limit, then a good line.
    let long = dir.join("long.json");
    let good_line = String::from_utf8(encode(&batches(&corpus, 1000)[0], Format::Json)).unwrap();
    std::fs::write(
        &long,
        format!(
            "{{\"resourceSpans\":[], \"pad\":\"{}\"}}\n{good_line}\n",
            "x".repeat(3 << 20)
        ),
    )
    .unwrap();
    for (file, says) in [
        (&claim, "runs past the end of the input"),
        (&zbomb, "inflating past 2 MiB skipped"),
        (&long, "record larger than 2 MiB skipped"),
    ] {
        let (code, _, err) = replay(
            &[
                "--rules",
                "examples/rules",
                "--max-record-mib",
                "2",
                file.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(says), "{err}");
        if file != &claim {
            assert!(
                err.contains(&format!("{} spans", corpus.span_count())),
                "the good record after it is read: {err}"
            );
        }
    }
}

#[test]
fn a_truncated_json_line_does_not_swallow_the_next_line() {
    let corpus = generate(81, 30, 0.0);
    let all = batches(&corpus, 100);
    let lines: Vec<String> = all
        .iter()
        .map(|b| String::from_utf8(encode(b, Format::Json)).unwrap())
        .collect();
    let dir = tmp("truncated");
    let cut = &lines[0][..lines[0].len() / 2];
    let cut_in_string = &lines[0][..lines[0].find("\"name\"").unwrap() + 4];
    let mut text = format!("{cut}\n{cut_in_string}\n");
    for l in &lines[1..] {
        text.push_str(l);
        text.push('\n');
    }
    let path = dir.join("traces.json");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = replay(&["--rules", "examples/rules", path.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(err.contains("traces.json:1: truncated JSON"), "{err}");
    assert!(err.contains("traces.json:2: truncated JSON"), "{err}");
    let rest: usize = all[1..]
        .iter()
        .map(|b| {
            b.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>()
        })
        .sum();
    assert!(
        err.contains(&format!(" {rest} spans in")),
        "every later line read: {err}"
    );
}

#[test]
fn pretty_printed_json_is_read_in_linear_time() {
    // 40 batches in one pretty-printed object: 2.5 MB over 150k lines. Quadratic reading
    // took minutes for a third of this.
    let corpus = generate(82, 400, 0.0);
    let mut merged = TracesData::default();
    for b in batches(&corpus, 200) {
        merged.resource_spans.extend(b.resource_spans);
    }
    let dir = tmp("pretty");
    let path = dir.join("one.json");
    std::fs::write(&path, serde_json::to_string_pretty(&merged).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = replay(&["--rules", "examples/rules", path.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("{} spans", corpus.span_count())),
        "{err}"
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn an_output_that_is_an_input_is_refused_before_anything_is_touched() {
    let dir = tmp("outputs-inputs");
    let corpus = generate(83, 10, 0.0);
    let input = dir.join("traces.json");
    write_jsonl(&input, &batches(&corpus, 100));
    let before = std::fs::read(&input).unwrap();
    let (code, _, err) = replay(
        &[
            "--rules",
            "examples/rules",
            "--output",
            input.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("is also an input"), "{err}");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input is intact"
    );
    let inside = dir.join("signals.jsonl");
    let (code, _, err) = replay(
        &[
            "--rules",
            "examples/rules",
            "--output",
            inside.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("inside the input directory"), "{err}");
    assert!(!inside.exists(), "nothing was created");
}

#[test]
fn old_instrumentation_library_spans_files_are_read() {
    let corpus = generate(84, 50, 0.2);
    let dir = tmp("old-key");
    let text: String = batches(&corpus, 100)
        .iter()
        .map(|b| {
            String::from_utf8(encode(b, Format::Json))
                .unwrap()
                .replace("\"scopeSpans\"", "\"instrumentationLibrarySpans\"")
                + "\n"
        })
        .collect();
    std::fs::write(dir.join("old.json"), text).unwrap();
    let (code, out, err) = replay(&["--rules", "examples/rules", dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(pairs(&jsonl(&out)), expected(&corpus));
}

#[test]
fn one_bad_span_keeps_the_rest_of_its_batch_and_is_reported() {
    let corpus = generate(85, 50, 0.2);
    let dir = tmp("bad-span");
    let all = batches(&corpus, 100);
    let mut text = String::new();
    for (i, b) in all.iter().enumerate() {
        let mut line = String::from_utf8(encode(b, Format::Json)).unwrap();
        if i == 0 {
            // A span the exporter could not have meant: its own trace, a fractional intValue.
            let bad = r#"{"traceId":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd","spanId":"cdcdcdcdcdcdcdcd","name":"x","attributes":[{"key":"n","value":{"intValue":7.5}}]},"#;
            line = line.replacen("\"spans\":[", &format!("\"spans\":[{bad}"), 1);
            line = line.replace("\"kind\":1", "\"kind\":\"SPAN_KIND_INTERNAL\"");
        }
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(dir.join("t.json"), text).unwrap();
    let (code, out, err) = replay(&["--rules", "examples/rules", dir.to_str().unwrap()], None);
    assert_eq!(code, 2, "bad input is said in the exit code");
    assert_eq!(pairs(&jsonl(&out)), expected(&corpus), "{err}");
    assert!(err.contains("t.json:1: 1 unreadable span skipped"), "{err}");
    assert!(err.contains("7.5 is not a 64-bit integer"), "{err}");
}

#[test]
fn closed_pipes_are_no_reason_to_panic() {
    let dir = tmp("pipes");
    let corpus = generate(86, 200, 0.2);
    write_jsonl(&dir.join("t.json"), &batches(&corpus, 100));
    std::fs::write(dir.join("bad.json"), "garbage\n".repeat(50)).unwrap();
    for (close_stdout, close_stderr) in [(false, true), (true, false), (true, true)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_betrace"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["replay", "--rules", "examples/rules", dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let keep_out = (!close_stdout).then_some(out);
        let keep_err = (!close_stderr).then_some(err);
        let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                if let Some(mut r) = r {
                    r.read_to_end(&mut s).unwrap();
                }
                s
            })
        };
        let o = drain(keep_out.map(|r| Box::new(r) as _));
        let e = drain(keep_err.map(|r| Box::new(r) as _));
        let status = child.wait().unwrap();
        let (_, err) = (o.join().unwrap(), e.join().unwrap());
        assert_eq!(
            status.code(),
            Some(2),
            "stdout closed {close_stdout}, stderr closed {close_stderr}: {}",
            String::from_utf8_lossy(&err)
        );
    }
    // `betrace test` into a closed pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["test", "examples/rules"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::io::stderr().flush();
}

fn spans_line(spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

fn json_span(trace: &str, id: u64, parent: Option<u64>, name: &str, attrs: &str) -> String {
    let parent = parent.map(|p| format!("{p:016x}")).unwrap_or_default();
    format!(
        r#"{{"traceId":"{trace}","spanId":"{id:016x}","parentSpanId":"{parent}","name":"{name}","startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{attrs}]}}"#,
        1_732_524_000_000_000_000u64 + id,
        1_732_524_000_000_000_000u64 + id + 1000
    )
}

#[test]
fn within_is_linear_in_a_deep_parent_chain() {
    let dir = tmp("deep-chain");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: steps-under-root\n    name: Every step is under the root\n    condition: not (step within root)\n",
    )
    .unwrap();
    let trace = "d".repeat(32);
    let mut spans = vec![json_span(&trace, 1, None, "root", "")];
    for i in 2..=400_000u64 {
        spans.push(json_span(&trace, i, Some(i - 1), "step", ""));
    }
    let input = dir.join("chain.json");
    let text: String = spans.chunks(10_000).map(|c| spans_line(c) + "\n").collect();
    std::fs::write(&input, text).unwrap();
    let started = std::time::Instant::now();
    let (code, out, err) = replay(
        &["--rules", rules.to_str().unwrap(), input.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "every step has the root above it");
    assert!(err.contains("400000 spans in 1 traces"), "{err}");
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn csv_cells_are_neutralised_and_trigger_span_ids_are_capped() {
    let dir = tmp("csv-cap");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: no-bulk\n    name: No bulk op\n    condition: bulk.op\n    signal:\n      message: \"{formula}\"\n",
    )
    .unwrap();
    let trace = "e".repeat(32);
    let formula = r#"{"key":"formula","value":{"stringValue":"=HYPERLINK(\"http://x\")"}}"#;
    let spans: Vec<String> = (1..=2000u64)
        .map(|i| json_span(&trace, i, None, "bulk.op", formula))
        .collect();
    let input = dir.join("bulk.json");
    std::fs::write(&input, spans_line(&spans) + "\n").unwrap();
    let (code, out, err) = replay(
        &["--rules", rules.to_str().unwrap(), input.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let signals = jsonl(&out);
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0]["span_ids"].as_array().unwrap().len(), 100);
    assert_eq!(signals[0]["span_ids_total"], 2000);
    assert!(out.len() < 10_000, "one signal of {} bytes", out.len());
    let (code, csv, err) = replay(
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--format",
            "csv",
            input.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(csv.contains(r#"'=HYPERLINK"#), "{csv}");
    assert!(
        !csv.contains(r#",=HYPERLINK"#) && !csv.contains(r#","=HYPERLINK"#),
        "{csv}"
    );
}

#[test]
fn a_pipe_is_an_input_read_once() {
    let corpus = generate(87, 40, 0.25);
    let dir = tmp("pipe");
    let file = dir.join("t.json");
    write_jsonl(&file, &batches(&corpus, 100));
    let out = Command::new("bash")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("-c")
        .arg(format!(
            "{} replay --rules examples/rules <(cat {})",
            env!("CARGO_BIN_EXE_betrace"),
            file.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        pairs(&jsonl(&String::from_utf8_lossy(&out.stdout))),
        expected(&corpus),
        "{err}"
    );
}
