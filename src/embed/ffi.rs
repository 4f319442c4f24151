//! The C ABI (`ffi/betrace.h`, generated from this file by cbindgen and checked by a test).
//!
//! A handle-based API over byte buffers: create an engine from rule text and options, feed
//! it OTLP `ExportTraceServiceRequest` bytes, tick its clock, take signals as OTLP
//! `ExportLogsServiceRequest` (and violation spans as `ExportTraceServiceRequest`) bytes,
//! shut it down, read counters, free what it returned.
//!
//! Every function is safe to call from several threads at once on the same engine (except
//! `betrace_engine_free`, which must be the last call on it); catches every panic and
//! returns `BETRACE_ERR_PANIC` instead of unwinding into C; checks every pointer and
//! length it is given; copies what it needs from caller memory and keeps none of it; and
//! reports errors as a status code plus, when `error_out` is not NULL, a message the caller
//! frees with `betrace_buf_free`.
//!
//! This is the only module with `unsafe` code.

#![allow(non_camel_case_types)]

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::embed::session::{Live, LiveError, Outputs};
use crate::engine::buffer::BufferConfig;
use crate::engine::Counters;

/// Success.
pub const BETRACE_OK: i32 = 0;
/// A NULL pointer where one is required, a length without a pointer, or text that is not UTF-8.
pub const BETRACE_ERR_INVALID_ARGUMENT: i32 = 1;
/// The rules do not load; the message has every error with its line and column.
pub const BETRACE_ERR_RULES: i32 = 2;
/// The bytes are not a protobuf `ExportTraceServiceRequest`.
pub const BETRACE_ERR_DECODE: i32 = 3;
/// The engine was shut down and takes no more spans.
pub const BETRACE_ERR_SHUT_DOWN: i32 = 4;
/// An internal error (a caught panic); the engine stays usable.
pub const BETRACE_ERR_PANIC: i32 = 5;

/// `betrace_options.outputs`: signals as log records.
pub const BETRACE_OUTPUT_LOGS: u32 = 1;
/// `betrace_options.outputs`: signals as violation spans.
pub const BETRACE_OUTPUT_SPANS: u32 = 2;
/// `betrace_options.outputs`: no output; signals are only counted (by rule, and in the
/// counters). For a host that only watches the counters, such as the processor that does
/// not emit violation spans. Alone: with another output it is an invalid argument.
pub const BETRACE_OUTPUT_NONE: u32 = 4;

/// Bytes owned by the library: free with `betrace_buf_free`. `ptr` is NULL when empty;
/// otherwise a NUL byte follows the `len` bytes, so text can be read as a C string.
#[repr(C)]
pub struct betrace_buf {
    /// The bytes, or NULL.
    pub ptr: *mut u8,
    /// How many bytes, not counting the trailing NUL.
    pub len: usize,
}

/// Engine options; a zero field means its default.
#[repr(C)]
pub struct betrace_options {
    /// Judge a trace this long after its last span (default 5 s).
    pub trace_idle_timeout_ns: u64,
    /// Judge a trace at the latest this long after its first span (default 60 s).
    pub max_trace_age_ns: u64,
    /// Most traces held (default 1,000,000).
    pub max_traces: u64,
    /// Most spans held (default 5,000,000).
    pub max_spans: u64,
    /// `BETRACE_OUTPUT_LOGS` and/or `BETRACE_OUTPUT_SPANS`, or `BETRACE_OUTPUT_NONE` (default:
    /// logs).
    pub outputs: u32,
    /// Most bytes the held traces may take, as the engine estimates them from its
    /// allocations (default 512 MiB; the counters' `held_bytes`): beyond it the oldest are
    /// judged early, as beyond `max_traces` and `max_spans`. Appended: a host built with an
    /// older header passes a shorter struct, so hosts and library must come from one build.
    pub memory_limit_bytes: u64,
}

/// A rule file handed to the engine: its name (shown in error messages) and its YAML text;
/// or, with `text` NULL, a path the engine reads itself — a file, a directory (every
/// `*.yaml`/`*.yml` in it) or a glob, expanded as `betrace check` expands its arguments,
/// so that a host needs no file handling of its own. Nothing is kept after the call.
#[repr(C)]
pub struct betrace_source {
    /// The file's name, UTF-8; may be empty. With `text` NULL: the path to read.
    pub name: *const u8,
    /// Its length in bytes.
    pub name_len: usize,
    /// The rule file's text, UTF-8; NULL (with `text_len` 0) to read the files `name`
    /// names.
    pub text: *const u8,
    /// Its length in bytes.
    pub text_len: usize,
}

/// An engine (opaque).
pub struct betrace_engine {
    live: Live,
    /// The engine's own log events, raised during calls into it.
    log: std::sync::Arc<crate::embed::logs::EngineLog>,
}

type Failure = (i32, String);

/// Runs `f`, turning a panic into `BETRACE_ERR_PANIC` and an error into its code, with the
/// message written to `error_out`.
fn guard(error_out: *mut betrace_buf, f: impl FnOnce() -> Result<(), Failure>) -> i32 {
    let (code, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return BETRACE_OK,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            (BETRACE_ERR_PANIC, format!("internal error: {what}"))
        }
    };
    // SAFETY: the caller passes NULL or a pointer to a betrace_buf it owns (header contract);
    // `as_mut` handles NULL, and we only write a fresh value into it.
    if let Some(out) = unsafe { error_out.as_mut() } {
        *out = to_buf(message.into_bytes());
    }
    code
}

/// Hands bytes to the caller, with a trailing NUL.
fn to_buf(mut bytes: Vec<u8>) -> betrace_buf {
    if bytes.is_empty() {
        return betrace_buf {
            ptr: std::ptr::null_mut(),
            len: 0,
        };
    }
    let len = bytes.len();
    bytes.push(0);
    let ptr = Box::into_raw(bytes.into_boxed_slice()) as *mut u8;
    betrace_buf { ptr, len }
}

/// The outputs `betrace_options.outputs` asks for.
fn outputs(bits: u32) -> Result<Outputs, Failure> {
    match bits {
        0 => Ok(Outputs::default()),
        BETRACE_OUTPUT_NONE => Ok(Outputs {
            logs: false,
            spans: false,
        }),
        b if b & !(BETRACE_OUTPUT_LOGS | BETRACE_OUTPUT_SPANS) == 0 => Ok(Outputs {
            logs: b & BETRACE_OUTPUT_LOGS != 0,
            spans: b & BETRACE_OUTPUT_SPANS != 0,
        }),
        _ => Err(invalid(
            "options.outputs: BETRACE_OUTPUT_LOGS and/or BETRACE_OUTPUT_SPANS, or BETRACE_OUTPUT_NONE alone",
        )),
    }
}

fn invalid(what: &str) -> Failure {
    (BETRACE_ERR_INVALID_ARGUMENT, what.to_string())
}

/// Borrows `len` bytes of caller memory for the duration of one call.
fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(invalid(&format!("{what} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(invalid(&format!("{what} length {len} is too large")));
    }
    // SAFETY: `ptr` is non-NULL and the caller promises `len` readable bytes there for the
    // duration of this call (header contract); the length fits in isize; the slice does not
    // outlive the call, as every caller uses it only before returning.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Copies rule files out of caller memory, reading the files of those given by path (in
/// place, in order).
fn sources(
    ptr: *const betrace_source,
    n: usize,
) -> Result<Vec<crate::diagnostic::SourceFile>, Failure> {
    let mut out = Vec::new();
    for item in given(ptr, n)? {
        match item {
            Given::Text(file) => out.push(file),
            Given::Path(spec) => out.extend(
                crate::rules::read_sources(&[spec])
                    .map_err(|e| (BETRACE_ERR_RULES, format!("rules: {e}")))?,
            ),
        }
    }
    Ok(out)
}

/// A rule source as the caller gave it.
enum Given {
    Text(crate::diagnostic::SourceFile),
    Path(String),
}

/// The caller's rule sources, copied out of its memory.
fn given(ptr: *const betrace_source, n: usize) -> Result<Vec<Given>, Failure> {
    if n == 0 {
        return Err((BETRACE_ERR_RULES, "no rule files given".into()));
    }
    if ptr.is_null() {
        return Err(invalid("rules is NULL but n_rules is not 0"));
    }
    if n > isize::MAX as usize / std::mem::size_of::<betrace_source>() {
        return Err(invalid("n_rules is too large"));
    }
    // SAFETY: `ptr` is non-NULL and the caller promises `n` readable betrace_source values
    // there for the call (header contract); the total size fits in isize; the slice is not
    // kept past this function.
    let items = unsafe { std::slice::from_raw_parts(ptr, n) };
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = std::str::from_utf8(bytes(s.name, s.name_len, "rule file name")?)
                .map_err(|_| invalid("a rule file name is not UTF-8"))?;
            if s.text.is_null() && s.text_len == 0 {
                if name.is_empty() {
                    return Err(invalid("a rule source has neither a text nor a path"));
                }
                return Ok(Given::Path(name.to_string()));
            }
            let text = std::str::from_utf8(bytes(s.text, s.text_len, "rule file text")?)
                .map_err(|_| invalid(&format!("rule file `{name}` is not UTF-8")))?;
            let name = if name.is_empty() {
                format!("rules#{}", i + 1)
            } else {
                name.to_string()
            };
            Ok(Given::Text(crate::diagnostic::SourceFile::new(name, text)))
        })
        .collect()
}

fn engine<'a>(e: *const betrace_engine) -> Result<&'a betrace_engine, Failure> {
    // SAFETY: the caller passes NULL or a handle from betrace_engine_new not yet freed
    // (header contract); `as_ref` handles NULL. betrace_engine is Sync, so shared
    // references from several threads are fine.
    unsafe { e.as_ref() }.ok_or_else(|| invalid("engine is NULL"))
}

fn live_error(e: LiveError) -> Failure {
    let code = match e {
        LiveError::Rules(_) | LiveError::NoRules => BETRACE_ERR_RULES,
        LiveError::Decode(_) => BETRACE_ERR_DECODE,
        LiveError::ShutDown => BETRACE_ERR_SHUT_DOWN,
        LiveError::Feed(_) => BETRACE_ERR_INVALID_ARGUMENT,
    };
    (code, e.to_string())
}

fn write<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    // SAFETY: the caller passes NULL or a pointer to a writable T (header contract);
    // `as_mut` handles NULL.
    match unsafe { out.as_mut() } {
        Some(slot) => {
            *slot = value;
            Ok(())
        }
        None => Err(invalid(&format!("{what} is NULL"))),
    }
}

/// The library's version, a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn betrace_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// Creates an engine from `n_rules` rule files, loaded together (all or nothing).
/// `options` may be NULL for defaults. On success `*engine_out` is the handle; on
/// `BETRACE_ERR_RULES` the message lists every error with its file, line and column.
///
/// # Safety
/// `rules` points to `n_rules` readable betrace_source values whose pointers are valid for
/// their lengths; `options` is NULL or valid; `engine_out` points to writable storage;
/// `error_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_new(
    rules: *const betrace_source,
    n_rules: usize,
    options: *const betrace_options,
    engine_out: *mut *mut betrace_engine,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let rules = sources(rules, n_rules)?;
        let defaults = BufferConfig::default();
        // SAFETY: NULL or a valid betrace_options (header contract); `as_ref` handles NULL.
        let (buffer, outputs) = match unsafe { options.as_ref() } {
            None => (defaults, Outputs::default()),
            Some(o) => (
                BufferConfig {
                    trace_idle_timeout: nonzero(
                        o.trace_idle_timeout_ns,
                        defaults.trace_idle_timeout,
                    ),
                    max_trace_age: nonzero(o.max_trace_age_ns, defaults.max_trace_age),
                    max_traces: nonzero(o.max_traces, defaults.max_traces as u64) as usize,
                    max_spans: nonzero(o.max_spans, defaults.max_spans as u64) as usize,
                    max_bytes: usize::try_from(nonzero(
                        o.memory_limit_bytes,
                        defaults.max_bytes as u64,
                    ))
                    .unwrap_or(usize::MAX),
                },
                outputs(o.outputs)?,
            ),
        };
        crate::embed::logs::install();
        let log = std::sync::Arc::new(crate::embed::logs::EngineLog::default());
        let live = {
            let _log = log.enter();
            Live::new(rules, buffer, outputs).map_err(live_error)?
        };
        let handle = Box::into_raw(Box::new(betrace_engine { live, log }));
        write(engine_out, handle, "engine_out").inspect_err(|_| {
            // SAFETY: `handle` came from Box::into_raw just above and was not handed out.
            drop(unsafe { Box::from_raw(handle) });
        })
    })
}

fn nonzero(v: u64, default: u64) -> u64 {
    if v == 0 {
        default
    } else {
        v
    }
}

/// Replaces the engine's rules with `n_rules` rule files. On error the old rules keep
/// running. The same files as last loaded are recognised and change nothing, so a host
/// may call this on a timer; a real change is logged once (rules added, removed, edited)
/// and counted in `rule_changes`.
///
/// # Safety
/// `engine` is a live handle; `rules` as in `betrace_engine_new`; `error_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_set_rules(
    engine: *const betrace_engine,
    rules: *const betrace_source,
    n_rules: usize,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        let _log = e.log.enter();
        e.live
            .set_rules(sources(rules, n_rules)?)
            .map(|_changed| ())
            .map_err(live_error)
    })
}

/// Ingests one protobuf `ExportTraceServiceRequest`. `now_unix_nano` is the caller's clock.
/// The bytes are not kept.
///
/// `feed` says which of the host's inputs the batch came in through, 0 to 63 (0 for a host
/// with one input): when several inputs share an engine — a collector processor listed in
/// several pipelines — a trace's spans from all of them are judged together, and its
/// violation span is taken by every feed that carried spans of it
/// (`betrace_engine_take_spans`). A larger feed is an invalid argument.
///
/// # Safety
/// `engine` is a live handle; `data` points to `len` readable bytes; `error_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_ingest(
    engine: *const betrace_engine,
    feed: u32,
    data: *const u8,
    len: usize,
    now_unix_nano: u64,
    error_out: *mut betrace_buf,
) -> i32 {
    with_batch(engine, data, len, error_out, |live, batch| {
        live.ingest(batch, feed, now_unix_nano)
    })
}

/// Hands one batch of caller memory to the engine.
fn with_batch(
    engine: *const betrace_engine,
    data: *const u8,
    len: usize,
    error_out: *mut betrace_buf,
    f: impl FnOnce(&Live, &[u8]) -> Result<(), LiveError>,
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        let _log = e.log.enter();
        f(&e.live, bytes(data, len, "data")?).map_err(live_error)
    })
}

/// As `betrace_engine_ingest`, for a host that keeps what the engine holds in storage
/// (the collector's `storage` setting): the host has written the batch to storage under
/// `seq` — a number rising from one stored record to the next, shared with the judged ids
/// it stores from `betrace_engine_take_journal` — and the engine keeps track of which
/// traces the batch carried, so that `betrace_engine_take_journal` says when the stored
/// batch may be deleted. A batch that does not decode may be deleted at once.
///
/// # Safety
/// As `betrace_engine_ingest`.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_ingest_stored(
    engine: *const betrace_engine,
    feed: u32,
    data: *const u8,
    len: usize,
    now_unix_nano: u64,
    seq: u64,
    error_out: *mut betrace_buf,
) -> i32 {
    with_batch(engine, data, len, error_out, |live, batch| {
        live.ingest_stored(batch, feed, now_unix_nano, seq)
    })
}

/// Brings back a batch stored before a restart (what `betrace_engine_ingest_stored` was
/// given, with the time it arrived then and its `seq`), judging nothing. Hand back the
/// stored batches and judged ids (`betrace_engine_restore_judged`) in their sequence order
/// before ingesting anything new: the engine then holds what it held before, and the next
/// tick judges what fell due meanwhile, each trace at its own deadline.
///
/// # Safety
/// As `betrace_engine_ingest`.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_restore(
    engine: *const betrace_engine,
    feed: u32,
    data: *const u8,
    len: usize,
    now_unix_nano: u64,
    seq: u64,
    error_out: *mut betrace_buf,
) -> i32 {
    with_batch(engine, data, len, error_out, |live, batch| {
        live.restore(batch, feed, now_unix_nano, seq)
    })
}

/// Brings back trace ids judged before a restart (`len` bytes, 16 per id, as
/// `betrace_engine_take_journal` gave them): those traces are dropped without being judged
/// again, and their later spans count as late. A length that is not a multiple of 16 is an
/// invalid argument; after `betrace_engine_shutdown`, `BETRACE_ERR_SHUT_DOWN`.
///
/// # Safety
/// `engine` is a live handle; `ids` points to `len` readable bytes; `error_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_restore_judged(
    engine: *const betrace_engine,
    ids: *const u8,
    len: usize,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        let _log = e.log.enter();
        let raw = bytes(ids, len, "ids")?;
        if raw.len() % 16 != 0 {
            return Err(invalid(&format!(
                "ids: {} bytes is not a whole number of 16-byte trace ids",
                raw.len()
            )));
        }
        let ids: Vec<crate::trace::TraceId> = raw
            .chunks_exact(16)
            .map(|c| crate::trace::TraceId(c.try_into().expect("16 bytes")))
            .collect();
        e.live.restore_judged(&ids).map_err(live_error)
    })
}

/// After a restart that stood `extra_ns`: traces whose latest span arrives before
/// `until_unix_nano` wait `extra_ns` longer than `trace_idle_timeout` (`max_trace_age` still
/// bounds them), so that spans their senders queued during the outage — retried in no
/// particular order, each after its own backoff — still join them. A later call replaces
/// the earlier one. After `betrace_engine_shutdown`, `BETRACE_ERR_SHUT_DOWN`.
///
/// # Safety
/// `engine` is a live handle; `error_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_extend_idle(
    engine: *const betrace_engine,
    until_unix_nano: u64,
    extra_ns: u64,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        let _log = e.log.enter();
        e.live
            .extend_idle(until_unix_nano, extra_ns)
            .map_err(live_error)
    })
}

/// Takes the journal of a host with storage into `*out`: the ids of the traces judged
/// since the last call, then the `seq` of every stored batch no longer needed, as
/// `u32 n` (little-endian), `n` 16-byte trace ids, `u32 m`, `m` little-endian `u64`s.
/// Store the ids and delete the batches in one write, together with the signals taken in
/// the same pause; exact when no `betrace_engine_ingest_stored` runs meanwhile.
///
/// # Safety
/// `engine` is a live handle; `out` is writable; `error_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_take_journal(
    engine: *const betrace_engine,
    out: *mut betrace_buf,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        let _log = e.log.enter();
        if out.is_null() {
            return Err(invalid("output buffer is NULL"));
        }
        let (judged, freed) = e.live.take_journal();
        let mut bytes = Vec::with_capacity(8 + judged.len() * 16 + freed.len() * 8);
        bytes.extend_from_slice(&(judged.len() as u32).to_le_bytes());
        for id in &judged {
            bytes.extend_from_slice(&id.0);
        }
        bytes.extend_from_slice(&(freed.len() as u32).to_le_bytes());
        for seq in &freed {
            bytes.extend_from_slice(&seq.to_le_bytes());
        }
        write(out, to_buf(bytes), "output buffer")
    })
}

/// Judges the traces whose idle or age timeout has passed at `now_unix_nano`.
///
/// # Safety
/// `engine` is a live handle; `error_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_tick(
    engine: *const betrace_engine,
    now_unix_nano: u64,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        let _log = e.log.enter();
        e.live.tick(now_unix_nano);
        Ok(())
    })
}

/// Judges every held trace; afterwards ingest fails with `BETRACE_ERR_SHUT_DOWN`. Take the
/// signals it produced with `betrace_engine_take_logs` / `_take_spans`.
///
/// # Safety
/// `engine` is a live handle; `error_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_shutdown(
    engine: *const betrace_engine,
    now_unix_nano: u64,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        let _log = e.log.enter();
        e.live.shutdown(now_unix_nano);
        Ok(())
    })
}

/// Takes the waiting signals as a protobuf `ExportLogsServiceRequest` in `*logs_out` (empty
/// when there are none) and their number in `*count_out` (may be NULL).
///
/// # Safety
/// `engine` is a live handle; `logs_out` is writable; `count_out` and `error_out` are NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_take_logs(
    engine: *const betrace_engine,
    logs_out: *mut betrace_buf,
    count_out: *mut u64,
    error_out: *mut betrace_buf,
) -> i32 {
    take(engine, logs_out, count_out, error_out, Live::take_logs)
}

/// Takes the waiting violation spans of the traces `feed` carried (see
/// `betrace_engine_ingest`) as a protobuf `ExportTraceServiceRequest` in `*spans_out`
/// (empty unless `BETRACE_OUTPUT_SPANS` was asked for), and their number. A violation span
/// waits until every feed that carried its trace has taken it; past the pending bound the
/// oldest are dropped and counted, like log records.
///
/// # Safety
/// As `betrace_engine_take_logs`.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_take_spans(
    engine: *const betrace_engine,
    feed: u32,
    spans_out: *mut betrace_buf,
    count_out: *mut u64,
    error_out: *mut betrace_buf,
) -> i32 {
    take(engine, spans_out, count_out, error_out, |live| {
        live.take_spans(feed)
    })
}

/// Hands one of the engine's queues to the caller as bytes and a count.
fn take(
    engine: *const betrace_engine,
    out: *mut betrace_buf,
    count_out: *mut u64,
    error_out: *mut betrace_buf,
    queue: impl FnOnce(&Live) -> (Vec<u8>, usize),
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        let _log = e.log.enter();
        if out.is_null() {
            return Err(invalid("output buffer is NULL"));
        }
        let (bytes, n) = queue(&e.live);
        write(out, to_buf(bytes), "output buffer")?;
        let _ = write(count_out, n as u64, "count_out");
        Ok(())
    })
}

/// Reads the engine's counters into `*out`.
///
/// # Safety
/// `engine` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_counters(
    engine: *const betrace_engine,
    out: *mut Counters,
) -> i32 {
    guard(std::ptr::null_mut(), || {
        let c = self::engine(engine)?.live.counters();
        write(out, c, "out")
    })
}

/// Per rule, the traces it applied to, the traces that violated it (its signals) and the
/// traces it skipped (`incomplete: skip` on an incomplete trace) — what a dashboard needs
/// for a compliance rate (1 − violated ÷ applied) — in `*records_out`, one record per rule
/// in id order, each:
///
/// ```text
/// u32 id_len | id (id_len bytes, UTF-8) | u64 applied | u64 violated | u64 skipped
/// ```
///
/// all integers little-endian, no padding. A rule applies to a trace when its `when` part
/// holds (every trace judged, for a rule without `when`); each trace counts once, however
/// often it is judged. Rules that applied to nothing yet are absent, and so are rules a
/// reload removed (their counts are kept, and come back with the rule).
///
/// # Safety
/// `engine` is a live handle; `records_out` is writable; `error_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_rule_counts(
    engine: *const betrace_engine,
    records_out: *mut betrace_buf,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let rules = self::engine(engine)?.live.loaded_rule_counts();
        let mut out = Vec::new();
        for (id, c) in &rules {
            let len = u32::try_from(id.len()).map_err(|_| invalid("a rule id is too long"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(id.as_bytes());
            for n in [c.applied, c.violated, c.skipped] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        write(records_out, to_buf(out), "records_out")
    })
}

/// Takes one engine's own log events as JSON lines (`{"level","target","message",…}`) in
/// `*json_out`, for the host to write to its own log under that engine's name: the events
/// raised during calls into this engine (its creation included), at or above its level
/// (`betrace_engine_set_log_level`), up to a bound.
///
/// # Safety
/// `engine` is a live handle; `json_out` is writable; `error_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_take_log_events(
    engine: *const betrace_engine,
    json_out: *mut betrace_buf,
    error_out: *mut betrace_buf,
) -> i32 {
    guard(error_out, || {
        let e = self::engine(engine)?;
        write(json_out, to_buf(e.log.drain().into_bytes()), "json_out")
    })
}

/// Sets the most verbose level one engine keeps: 0 off, 1 error, 2 warn, 3 info (default),
/// 4 debug, 5 trace — the level the host's logger asks for.
///
/// # Safety
/// `engine` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_set_log_level(
    engine: *const betrace_engine,
    level: u32,
) -> i32 {
    guard(std::ptr::null_mut(), || {
        self::engine(engine)?.log.set_level(level.min(5) as u8);
        Ok(())
    })
}

/// Takes the library's log events raised outside any engine's call as JSON lines
/// (`{"level","target","message",…}`) in `*json_out`. Events are kept from the first
/// `betrace_engine_new` on, up to a bound.
///
/// # Safety
/// `json_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn betrace_take_log_events(json_out: *mut betrace_buf) -> i32 {
    guard(std::ptr::null_mut(), || {
        write(
            json_out,
            to_buf(crate::embed::logs::drain().into_bytes()),
            "json_out",
        )
    })
}

/// Sets the most verbose log level kept for events outside any engine's call: 0 off,
/// 1 error, 2 warn, 3 info (default), 4 debug, 5 trace.
#[no_mangle]
pub extern "C" fn betrace_set_log_level(level: u32) {
    crate::embed::logs::set_max_level(level.min(5) as u8);
}

/// Frees bytes the library returned, and empties `*buf`. NULL and empty buffers are fine.
///
/// # Safety
/// `buf` is NULL or points to a betrace_buf filled by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn betrace_buf_free(buf: *mut betrace_buf) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: NULL or a valid betrace_buf (contract above); `as_mut` handles NULL.
        let Some(b) = (unsafe { buf.as_mut() }) else {
            return;
        };
        if !b.ptr.is_null() {
            // SAFETY: `ptr` and `len + 1` come from `to_buf`, which leaked a boxed slice of
            // exactly `len + 1` bytes (the trailing NUL); it has not been freed (contract).
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(b.ptr, b.len + 1)) });
        }
        b.ptr = std::ptr::null_mut();
        b.len = 0;
    }));
}

/// Frees an engine. Call it last: no other call on the engine may run at the same time or
/// after. Signals not taken are lost; call `betrace_engine_shutdown` and take them first.
///
/// # Safety
/// `engine` is NULL or a handle from `betrace_engine_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn betrace_engine_free(engine: *mut betrace_engine) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !engine.is_null() {
            // SAFETY: a handle from Box::into_raw in betrace_engine_new, freed only here,
            // with no other call running on it (contract above).
            drop(unsafe { Box::from_raw(engine) });
        }
    }));
}
