//! Fuzzes replay's input reader and the engine behind it: arbitrary bytes as a collector
//! file (JSON lines, pretty-printed JSON, length-prefixed protobuf or JSON frames, zstd or
//! gzip), every batch fed to an engine with tiny limits and a clock taken from the data,
//! then shutdown. Nothing may crash, and the buffer's span counts must add up.
#![no_main]

use std::sync::OnceLock;

use betrace::engine::buffer::BufferConfig;
use betrace::engine::{Engine, EngineConfig};
use betrace::replay::input::{self, Limits, Record};
use betrace::RuleSet;
use libfuzzer_sys::fuzz_target;

fn rules() -> &'static RuleSet {
    static R: OnceLock<RuleSet> = OnceLock::new();
    R.get_or_init(|| {
        RuleSet::from_text(
            "ecommerce.yaml",
            include_str!("../../examples/rules/ecommerce.yaml"),
        )
        .expect("the playbook loads")
        .0
    })
}

fuzz_target!(|data: &[u8]| {
    let engine = Engine::new(
        rules().clone(),
        EngineConfig {
            buffer: BufferConfig {
                trace_idle_timeout: 1_000,
                max_trace_age: 5_000,
                max_traces: 8,
                max_spans: 64,
                max_bytes: 64 << 10,
            },
            ..EngineConfig::default()
        },
    );
    let mut clock = 0u64;
    input::read_from(
        "fuzz",
        Box::new(std::io::Cursor::new(data.to_vec())),
        Limits {
            max_record_bytes: 1 << 20,
        },
        &engine.rules().projection().clone(),
        false,
        &mut |r| {
            if let Record::Batch(batch, _) = r {
                let end = batch
                    .fragments
                    .iter()
                    .flat_map(|f| &f.spans)
                    .map(|s| s.end_unix_nano)
                    .max()
                    .unwrap_or(0);
                clock = clock.max(end);
                let _ = engine.ingest(batch.fragments, clock);
                let _ = engine.tick(clock);
            }
            true
        },
    );
    let _ = engine.shutdown();
    let c = engine.stats().counters;
    assert_eq!(
        c.spans_in,
        c.spans_accepted + c.duplicate_spans + c.late_spans_unjudged,
        "{c:?}"
    );
    assert_eq!((c.held_traces, c.held_spans), (0, 0));
});
