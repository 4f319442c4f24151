//! Live equals replay: the same corpus fed to the live engine through the C ABI (protobuf
//! batches in arrival order, the clock ticking with the data) and to `betrace replay` over
//! the file exporter's output; every signal must be the same, field by field (mode aside),
//! read back from the OTLP log records the collector would send.

mod common;

use std::collections::BTreeMap;

use betrace::embed::ffi::*;
use betrace_corpus::{batches, encode, generate, write, Compression, Format};
use common::{jsonl, replay, tmp};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::{json, Value as Json};

fn rule_sources() -> Vec<(String, String)> {
    let mut files: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn any_to_json(v: &AnyValue) -> Json {
    match v.value.as_ref() {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::ArrayValue(a)) => {
            Json::Array(a.values.iter().map(any_to_json).collect())
        }
        _ => Json::Null,
    }
}

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// A log record as the JSON line replay writes for the same signal.
fn as_signal(req: &ExportLogsServiceRequest) -> Vec<Json> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let service = rl
            .resource
            .as_ref()
            .and_then(|r| attr(&r.attributes, "service.name"))
            .map(any_to_json)
            .unwrap_or(json!(""));
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let a = |k: &str| {
                    attr(&r.attributes, k)
                        .map(any_to_json)
                        .unwrap_or(Json::Null)
                };
                let context: serde_json::Map<String, Json> = r
                    .attributes
                    .iter()
                    .filter_map(|kv| {
                        let k = kv.key.strip_prefix("betrace.context.")?;
                        Some((k.to_string(), any_to_json(kv.value.as_ref()?)))
                    })
                    .collect();
                let compliance = match (
                    a("betrace.compliance.framework"),
                    a("betrace.compliance.control"),
                ) {
                    (Json::Null, _) => Json::Null,
                    (f, c) => json!({"framework": f, "control": c}),
                };
                let total = match a("betrace.violation.span_ids_total") {
                    Json::Null => json!(a("betrace.violation.span_ids")
                        .as_array()
                        .map_or(0, Vec::len)),
                    n => n,
                };
                out.push(json!({
                    "rule_id": a("betrace.rule.id"),
                    "rule_name": a("betrace.rule.name"),
                    "severity": a("betrace.rule.severity"),
                    "signal_type": a("betrace.signal.type"),
                    "message": r.body.as_ref().map(any_to_json).unwrap_or(Json::Null),
                    "trace_id": hex(&r.trace_id),
                    "span_id": hex(&r.span_id),
                    "span_ids": a("betrace.violation.span_ids"),
                    "span_ids_total": total,
                    "time": betrace::engine::signal::rfc3339(r.time_unix_nano),
                    "service": service,
                    "context": context,
                    "compliance": compliance,
                    "mode": a("betrace.mode"),
                    "complete": a("betrace.trace.complete"),
                }));
            }
        }
    }
    out
}

#[test]
fn the_live_engine_through_the_c_abi_signals_exactly_what_replay_does() {
    let corpus = generate(91, 1500, 0.08);
    let dir = tmp("live-equals-replay");
    write(&dir, &corpus, Format::Proto, Compression::Zstd, 100, 40).unwrap();
    let (code, out, err) = replay(&["--rules", "examples/rules", dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let mut replayed = jsonl(&out);

    let sources = rule_sources();
    let srcs: Vec<betrace_source> = sources
        .iter()
        .map(|(n, t)| betrace_source {
            name: n.as_ptr(),
            name_len: n.len(),
            text: t.as_ptr(),
            text_len: t.len(),
        })
        .collect();
    let mut engine = std::ptr::null_mut();
    let mut err_buf = betrace_buf {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
    // SAFETY: every pointer is to a live local or to `sources`, alive for the call.
    let rc = unsafe {
        betrace_engine_new(
            srcs.as_ptr(),
            srcs.len(),
            std::ptr::null(),
            &mut engine,
            &mut err_buf,
        )
    };
    assert_eq!(rc, BETRACE_OK);
    let mut live = Vec::new();
    let mut take = |engine| {
        let mut buf = betrace_buf {
            ptr: std::ptr::null_mut(),
            len: 0,
        };
        // SAFETY: a live handle; `buf` is written by the engine and freed once below.
        let rc = unsafe {
            betrace_engine_take_logs(engine, &mut buf, std::ptr::null_mut(), std::ptr::null_mut())
        };
        assert_eq!(rc, BETRACE_OK);
        if !buf.ptr.is_null() {
            // SAFETY: the engine returned `len` readable bytes at `ptr`.
            let bytes = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) };
            live.extend(as_signal(&ExportLogsServiceRequest::decode(bytes).unwrap()));
            // SAFETY: returned by the engine, freed once.
            unsafe { betrace_buf_free(&mut buf) };
        }
    };
    let mut clock = 0u64;
    for batch in batches(&corpus, 100) {
        let bytes = encode(&batch, Format::Proto);
        let mut ends: Vec<u64> = batch
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.end_time_unix_nano)
            .collect();
        ends.sort_unstable();
        clock = clock.max(ends[ends.len() / 2]);
        // SAFETY: a live handle and a buffer alive for the call.
        unsafe {
            assert_eq!(
                betrace_engine_ingest(
                    engine,
                    0,
                    bytes.as_ptr(),
                    bytes.len(),
                    clock,
                    std::ptr::null_mut()
                ),
                BETRACE_OK
            );
            assert_eq!(
                betrace_engine_tick(engine, clock, std::ptr::null_mut()),
                BETRACE_OK
            );
        }
        take(engine);
    }
    // SAFETY: a live handle, shut down then freed once.
    unsafe {
        assert_eq!(
            betrace_engine_shutdown(engine, clock, std::ptr::null_mut()),
            BETRACE_OK
        )
    };
    take(engine);
    // SAFETY: as above.
    unsafe { betrace_engine_free(engine) };

    assert_eq!(
        live.len(),
        corpus.expected.len(),
        "the live engine finds every injected violation"
    );
    for s in &mut live {
        assert_eq!(s["mode"], "live");
        s["mode"] = json!("replay");
    }
    let key = |s: &Json| (s["trace_id"].to_string(), s["rule_id"].to_string());
    live.sort_by_key(key);
    replayed.sort_by_key(key);
    let by_rule = |v: &[Json]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for s in v {
            *m.entry(s["rule_id"].to_string()).or_default() += 1;
        }
        m
    };
    assert_eq!(by_rule(&live), by_rule(&replayed));
    for (l, r) in live.iter().zip(&replayed) {
        assert_eq!(l, r, "every field of every signal");
    }
}
