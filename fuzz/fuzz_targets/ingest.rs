//! Fuzzes `betrace_engine_ingest`, the C ABI's entry for span batches: arbitrary bytes as
//! an OTLP request, then a clock tick and taking the signals out. Nothing may crash.
//! The first 8 bytes pick the clock, so idle, age and pressure judging are reached too.
#![no_main]

use std::sync::OnceLock;

use betrace::embed::ffi::*;
use libfuzzer_sys::fuzz_target;

const RULES: &str = include_str!("../../examples/rules/ecommerce.yaml");

struct Engine(*mut betrace_engine);
// SAFETY: the engine handle is documented as safe to use from several threads at once.
unsafe impl Send for Engine {}
// SAFETY: as above; only shared calls (never betrace_engine_free) are made through it.
unsafe impl Sync for Engine {}

fn engine() -> *mut betrace_engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut e = std::ptr::null_mut();
        let opts = betrace_options {
            trace_idle_timeout_ns: 1_000,
            max_trace_age_ns: 5_000,
            max_traces: 64,
            max_spans: 512,
            outputs: BETRACE_OUTPUT_LOGS | BETRACE_OUTPUT_SPANS,
        };
        let name = "ecommerce.yaml";
        let src = betrace_source {
            name: name.as_ptr(),
            name_len: name.len(),
            text: RULES.as_ptr(),
            text_len: RULES.len(),
        };
        // SAFETY: `src` points at static strings valid for their lengths; opts and e are live
        // locals; error_out is NULL.
        let rc = unsafe { betrace_engine_new(&src, 1, &opts, &mut e, std::ptr::null_mut()) };
        assert_eq!(rc, BETRACE_OK);
        Engine(e)
    })
    .0
}

fuzz_target!(|data: &[u8]| {
    let e = engine();
    let now = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) % 10_000)
        .unwrap_or(0);
    // Two feeds, as a processor shared by two pipelines has.
    let feed = u32::from(data.get(8).copied().unwrap_or(0) & 1);
    let mut err = betrace_buf {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
    let mut out = betrace_buf {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
    // SAFETY: `e` is a live handle never freed; `data` is valid for its length for the call;
    // every out-pointer is a live local; each returned buffer is freed exactly once.
    unsafe {
        let rc = betrace_engine_ingest(e, feed, data.as_ptr(), data.len(), now, &mut err);
        assert!(
            rc == BETRACE_OK || rc == BETRACE_ERR_DECODE,
            "unexpected status {rc}"
        );
        betrace_buf_free(&mut err);
        assert_eq!(betrace_engine_tick(e, now + 2_000, &mut err), BETRACE_OK);
        betrace_buf_free(&mut err);
        assert_eq!(
            betrace_engine_take_logs(e, &mut out, std::ptr::null_mut(), &mut err),
            BETRACE_OK
        );
        betrace_buf_free(&mut out);
        for feed in 0..2 {
            assert_eq!(
                betrace_engine_take_spans(e, feed, &mut out, std::ptr::null_mut(), &mut err),
                BETRACE_OK
            );
            betrace_buf_free(&mut out);
        }
    }
});
