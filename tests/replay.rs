//! `betrace replay` over what a collector's file exporter writes: formats, compression,
//! assembly across lines and files, time windows, bad input, outputs, and the corpus.

use std::io::Write;
use std::path::{Path, PathBuf};

use betrace::engine::{Engine, EngineConfig};
use betrace::otlp;
use betrace::RuleSet;
use betrace_corpus::{batches, encode, generate, write, Compression, Format};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::Value as Json;

mod common;
use common::{expected, jsonl, pairs, replay, tmp};

// ------------------------------------------------------------------ a hand-made trace

const RULES: &str = "testdata/replay/rules.yaml";

fn span(trace: &str, id: &str, parent: &str, name: &str, start_s: u64, attrs: &str) -> String {
    let start = 1_732_524_000_000_000_000u64 + start_s * 1_000_000_000;
    format!(
        r#"{{"traceId":"{trace}","spanId":"{id}","parentSpanId":"{parent}","name":"{name}","kind":1,"startTimeUnixNano":"{start}","endTimeUnixNano":"{}","attributes":[{attrs}],"status":{{}}}}"#,
        start + 1_000_000
    )
}

fn line(service: &str, spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"scope":{{"name":"t"}},"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

const T1: &str = "11111111111111111111111111111111";
const T2: &str = "22222222222222222222222222222222";
const ORDER: &str = r#"{"key":"order_id","value":{"stringValue":"ord_1"}}"#;

/// T1: the reservation comes in file a, the charge in file b — judged whole, no violation.
/// T2: a charge and, on another line, a shipment without confirmation — two violations.
fn split_trace_files(dir: &Path) -> (PathBuf, PathBuf) {
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    std::fs::write(
        &a,
        [
            line(
                "shop",
                &[span(T1, "1000000000000001", "", "checkout", 0, "")],
            ),
            line(
                "inventory",
                &[span(
                    T1,
                    "1000000000000002",
                    "1000000000000001",
                    "inventory.reserve",
                    1,
                    "",
                )],
            ),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        [
            line(
                "payments",
                &[span(
                    T1,
                    "1000000000000003",
                    "1000000000000001",
                    "payment.charge",
                    2,
                    ORDER,
                )],
            ),
            line(
                "payments",
                &[span(T2, "2000000000000001", "", "payment.charge", 2, ORDER)],
            ),
            line(
                "fulfilment",
                &[span(
                    T2,
                    "2000000000000002",
                    "",
                    "shipment.initiate",
                    3,
                    ORDER,
                )],
            ),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    (a, b)
}

#[test]
fn a_trace_split_across_files_and_lines_is_judged_once_whole() {
    let dir = tmp("split");
    let (a, b) = split_trace_files(&dir);
    let (code, out, err) = replay(
        &["--rules", RULES, a.to_str().unwrap(), b.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let signals = jsonl(&out);
    assert_eq!(
        pairs(&signals),
        vec![
            (T2.to_string(), "payment-requires-inventory".to_string()),
            (
                T2.to_string(),
                "shipment-after-payment-confirmed".to_string()
            )
        ],
        "T1 has its reservation in the other file: judged whole, it passes"
    );
    assert!(err.contains("2 traces judged"), "{err}");
}

#[test]
fn from_and_to_select_by_the_first_span_start() {
    let dir = tmp("window");
    let (a, b) = split_trace_files(&dir);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    // T2 starts at +2s; a window ending at +1s excludes it.
    let (_, out, err) = replay(
        &["--rules", RULES, "--to", "2024-11-25T08:40:01Z", a, b],
        None,
    );
    assert!(jsonl(&out).is_empty(), "{out}");
    assert!(err.contains("1 outside --from/--to"), "{err}");
    let (_, out, _) = replay(
        &["--rules", RULES, "--from", "2024-11-25T08:40:02Z", a, b],
        None,
    );
    assert_eq!(jsonl(&out).len(), 2);
    let (_, out, _) = replay(
        &[
            "--rules",
            RULES,
            "--from",
            "2024-11-25",
            "--to",
            "2024-11-25",
            a,
            b,
        ],
        None,
    );
    assert_eq!(jsonl(&out).len(), 2, "a date means the whole day");
    let (code, _, err) = replay(&["--rules", RULES, "--from", "last tuesday", a], None);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn garbage_lines_and_truncated_protobuf_are_reported_and_the_rest_is_judged() {
    let dir = tmp("bad");
    let (a, b) = split_trace_files(&dir);
    let mut text = std::fs::read_to_string(&b).unwrap();
    text.insert_str(0, "this is not json\n");
    std::fs::write(&b, text).unwrap();
    // A protobuf file whose second message is cut short.
    let corpus = generate(3, 20, 0.0);
    let data = batches(&corpus, 50);
    let mut pb = Vec::new();
    for d in &data[..2] {
        let body = d.encode_to_vec();
        pb.extend_from_slice(&(body.len() as u32).to_be_bytes());
        pb.extend_from_slice(&body);
    }
    pb.truncate(pb.len() - 10);
    let c = dir.join("c.pb");
    std::fs::write(&c, &pb).unwrap();

    let (code, out, err) = replay(
        &[
            "--rules",
            RULES,
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            c.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2, "bad input exits 2:\n{err}");
    assert!(
        err.contains(&format!("{}:1: invalid OTLP/JSON", b.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: byte ", c.display())) && err.contains("truncated message"),
        "{err}"
    );
    assert_eq!(jsonl(&out).len(), 2, "the good lines were still judged");
    assert!(err.contains("2 bad records skipped"), "{err}");
}

#[test]
fn missing_input_is_a_usage_error() {
    let (code, _, err) = replay(&["--rules", RULES, "/no/such/traces"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("/no/such/traces: no such file or directory"),
        "{err}"
    );
}

#[test]
fn every_exporter_format_and_compression_is_read() {
    let corpus = generate(11, 300, 0.2);
    let want = expected(&corpus);
    assert!(want.len() > 30);
    let dir = tmp("formats");
    for (name, format, compression) in [
        ("json", Format::Json, Compression::None),
        ("proto", Format::Proto, Compression::None),
        ("json-zstd", Format::Json, Compression::Zstd),
        ("proto-zstd", Format::Proto, Compression::Zstd),
    ] {
        let out = dir.join(name);
        write(&out, &corpus, format, compression, 64, 20).unwrap();
        let (code, stdout, err) =
            replay(&["--rules", "examples/rules", out.to_str().unwrap()], None);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(pairs(&jsonl(&stdout)), want, "{name}");
    }
    // Whole files compressed with zstd (the exporter's native compression) and gzip.
    let json_dir = dir.join("json");
    let files: Vec<PathBuf> = std::fs::read_dir(&json_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for (name, pack) in [("whole-zstd", 0), ("whole-gzip", 1)] {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).unwrap();
        for f in &files {
            let raw = std::fs::read(f).unwrap();
            let packed = if pack == 0 {
                zstd::encode_all(raw.as_slice(), 3).unwrap()
            } else {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&raw).unwrap();
                e.finish().unwrap()
            };
            std::fs::write(
                out.join(f.file_name().unwrap()).with_extension("packed"),
                packed,
            )
            .unwrap();
        }
        let (code, stdout, err) =
            replay(&["--rules", "examples/rules", out.to_str().unwrap()], None);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(pairs(&jsonl(&stdout)), want, "{name}");
    }
    // Standard input.
    let bytes: Vec<u8> = files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    let (code, stdout, err) = replay(&["--rules", "examples/rules", "-"], Some(&bytes));
    assert_eq!(code, 0, "{err}");
    assert_eq!(pairs(&jsonl(&stdout)), want, "stdin");
}

#[test]
fn a_single_pretty_printed_json_object_is_read() {
    let dir = tmp("pretty");
    let (_, b) = split_trace_files(&dir);
    let first = std::fs::read_to_string(&b)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let v: Json = serde_json::from_str(&first).unwrap();
    let path = dir.join("one.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let (code, out, err) = replay(&["--rules", RULES, path.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        pairs(&jsonl(&out)),
        vec![(T2.to_string(), "payment-requires-inventory".to_string())]
    );
}

#[test]
fn replay_finds_exactly_the_injected_violations_of_the_corpus() {
    let corpus = generate(42, 3000, 0.05);
    let dir = tmp("corpus");
    write(&dir, &corpus, Format::Json, Compression::None, 200, 50).unwrap();
    let (code, out, err) = replay(&["--rules", "examples/rules", dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(pairs(&jsonl(&out)), expected(&corpus));
    assert!(
        err.contains(&format!("{} spans in 3000 traces", corpus.span_count())),
        "{err}"
    );
}

#[test]
fn replay_signals_equal_the_live_engines_and_output_order_is_deterministic() {
    let corpus = generate(5, 500, 0.1);
    let dir = tmp("live");
    write(&dir, &corpus, Format::Proto, Compression::None, 100, 1000).unwrap();
    let (_, first, _) = replay(&["--rules", "examples/rules", dir.to_str().unwrap()], None);
    let (_, second, _) = replay(&["--rules", "examples/rules", dir.to_str().unwrap()], None);
    assert_eq!(first, second, "same input, same bytes out");

    // The live engine fed the same batches with a wall clock that moves on after each.
    let (rules, _) = RuleSet::from_paths(&["examples/rules"]).unwrap();
    let engine = Engine::new(rules, EngineConfig::default());
    let mut live = Vec::new();
    let mut now = 0;
    for batch in batches(&corpus, 100) {
        now += 1_000_000;
        let decoded =
            otlp::decode_protobuf(&encode(&batch, Format::Proto), engine.rules().projection())
                .unwrap();
        live.extend(engine.ingest(decoded.fragments, now));
        live.extend(engine.tick(now));
    }
    live.extend(engine.shutdown());
    let mut live_json: Vec<Json> = live.iter().map(|s| s.to_json()).collect();
    for s in &mut live_json {
        assert_eq!(s["mode"], "live");
        s["mode"] = Json::from("replay");
    }
    let mut replayed = jsonl(&first);
    let key = |s: &Json| (s["trace_id"].to_string(), s["rule_id"].to_string());
    live_json.sort_by_key(key);
    replayed.sort_by_key(key);
    assert_eq!(live_json, replayed, "every field of every signal");
}

#[test]
fn outputs_jsonl_table_and_csv_field_by_field() {
    let dir = tmp("outputs");
    let (a, b) = split_trace_files(&dir);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let (_, out, _) = replay(&["--rules", RULES, a, b], None);
    let signals = jsonl(&out);
    let s = signals
        .iter()
        .find(|s| s["rule_id"] == "shipment-after-payment-confirmed")
        .unwrap();
    assert_eq!(s["rule_name"], "Shipment only after payment confirmation");
    assert_eq!(s["severity"], "critical");
    assert_eq!(s["signal_type"], "SHIPMENT_AFTER_PAYMENT_CONFIRMED");
    assert_eq!(
        s["message"],
        "Order ord_1 shipped before its payment was confirmed"
    );
    assert_eq!(s["trace_id"], T2);
    assert_eq!(s["span_id"], "2000000000000002");
    assert_eq!(s["span_ids"], serde_json::json!(["2000000000000002"]));
    assert_eq!(s["time"], "2024-11-25T08:40:03.000000000Z");
    assert_eq!(s["service"], "fulfilment");
    assert_eq!(s["context"], serde_json::json!({"order_id": "ord_1"}));
    assert_eq!(s["compliance"], Json::Null);
    assert_eq!(s["mode"], "replay");

    let (_, table, _) = replay(&["--rules", RULES, "--format", "table", a, b], None);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("RULE")
            && lines[0].contains("SIGNALS")
            && lines[0].contains("SERVICES"),
        "{table}"
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with("payment-requires-inventory"))
        .unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        vec![
            "payment-requires-inventory",
            "critical",
            "1",
            "2024-11-25T08:40:02.000Z",
            "2024-11-25T08:40:02.000Z",
            "payments"
        ]
    );
    assert!(
        lines.last().unwrap().split_whitespace().eq(["total", "2"]),
        "{table}"
    );

    let out_file = dir.join("signals.csv");
    let (code, stdout, _) = replay(
        &[
            "--rules",
            RULES,
            "--format",
            "csv",
            "--output",
            out_file.to_str().unwrap(),
            a,
            b,
        ],
        None,
    );
    assert_eq!(code, 0);
    assert!(stdout.is_empty(), "--output writes to the file");
    let mut reader = csv::Reader::from_path(&out_file).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        &header[..4],
        ["rule_id", "rule_name", "severity", "signal_type"]
    );
    assert!(
        header.contains(&"context.order_id".to_string())
            && header.contains(&"context.shipment_id".to_string()),
        "{header:?}"
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let ship = rows
        .iter()
        .find(|r| &r[col("rule_id")] == "shipment-after-payment-confirmed")
        .unwrap();
    assert_eq!(&ship[col("trace_id")], T2);
    assert_eq!(
        &ship[col("message")],
        "Order ord_1 shipped before its payment was confirmed"
    );
    assert_eq!(&ship[col("context.order_id")], "ord_1");
    assert_eq!(
        &ship[col("context.shipment_id")],
        "",
        "absent context is an empty cell"
    );
    assert_eq!(&ship[col("mode")], "replay");
}

#[test]
fn fail_on_violation_exits_1() {
    let dir = tmp("gate");
    let (a, b) = split_trace_files(&dir);
    let (code, _, _) = replay(
        &[
            "--rules",
            RULES,
            "--fail-on-violation",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 1);
    let (code, _, _) = replay(
        &["--rules", RULES, "--fail-on-violation", a.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "T1's spans alone violate nothing");
}

#[test]
fn memory_pressure_spills_instead_of_judging_early() {
    let corpus = generate(8, 400, 0.05);
    let dir = tmp("pressure");
    write(&dir, &corpus, Format::Json, Compression::None, 100, 1000).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["--rules", "examples/rules"];
        args.extend_from_slice(extra);
        args.push(dir.to_str().unwrap());
        replay(&args, None)
    };
    let (code, roomy, _) = run(&[]);
    assert_eq!(code, 0);
    let (code, tight, err) = run(&["--max-traces", "10"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tight, roomy, "the same signals, whatever the limit");
    assert!(
        err.contains("spilled: more was held at once than --max-traces 10"),
        "{err}"
    );
    assert!(err.contains("(0 early under memory pressure)"), "{err}");
}

#[test]
fn decoding_a_protobuf_batch_matches_its_json_form() {
    let corpus = generate(9, 50, 0.0);
    let (rules, _) = RuleSet::from_paths(&["examples/rules"]).unwrap();
    let keys = rules.projection();
    assert!(keys.len() > 20, "the library's rules read many keys");
    let mut kept = 0;
    for batch in batches(&corpus, 40) {
        let pb = otlp::decode_protobuf(&encode(&batch, Format::Proto), keys).unwrap();
        let js = otlp::decode_json(&encode(&batch, Format::Json), keys).unwrap();
        assert_eq!(pb.fragments, js.fragments);
        kept += pb
            .fragments
            .iter()
            .flat_map(|t| t.spans.iter().map(move |s| t.attrs(s).count()))
            .sum::<usize>();
        let round: TracesData =
            TracesData::decode(encode(&batch, Format::Proto).as_slice()).unwrap();
        assert_eq!(round, batch);
    }
    assert!(kept > 300, "attributes the rules read are kept ({kept})");
}

#[test]
fn the_demo_traces_hold_exactly_their_corpus_violations() {
    // examples/traces was written by: betrace-corpus --seed 2024 --traces 500 --rate 0.05
    //   --format json --compression zstd --spans-per-batch 200 --batches-per-file 25
    let corpus = generate(2024, 500, 0.05);
    let (code, out, err) = replay(&["--rules", "examples/rules", "examples/traces"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(pairs(&jsonl(&out)), expected(&corpus));
}
