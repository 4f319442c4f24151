//! Fuzzes `betrace_engine_new` with hostile rule text: every input either loads or is
//! refused with BETRACE_ERR_RULES / INVALID_ARGUMENT and a message. Nothing may crash.
#![no_main]

use betrace::embed::ffi::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut e = std::ptr::null_mut();
    let mut err = betrace_buf {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
    // SAFETY: `data` is valid for its length for the call; `e` and `err` are live locals;
    // the engine (if any) and the message are freed exactly once.
    unsafe {
        let src = betrace_source {
            name: b"fuzz.yaml".as_ptr(),
            name_len: 9,
            text: data.as_ptr(),
            text_len: data.len(),
        };
        let rc = betrace_engine_new(&src, 1, std::ptr::null(), &mut e, &mut err);
        match rc {
            BETRACE_OK => betrace_engine_free(e),
            BETRACE_ERR_RULES | BETRACE_ERR_INVALID_ARGUMENT => {
                assert!(!err.ptr.is_null() && err.len > 0)
            }
            other => panic!("unexpected status {other}"),
        }
        betrace_buf_free(&mut err);
    }
});
