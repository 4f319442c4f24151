//! BeTrace: invariants that production systems depend on, written as rules and checked on
//! every OpenTelemetry trace.
//!
//! Two paths run through the crate, and its folders follow them. A rule:
//!
//! * [`rules`] reads rule files (YAML) strictly, reports every problem located, and builds a
//!   [`RuleSet`];
//! * [`lang`] parses each condition ([`lang::syntax`]), checks it ([`lang::check`] → the
//!   [`lang::hir`]) and compiles it to [`lang::bytecode`];
//! * [`diagnostic`] renders what went wrong, pointing into the source.
//!
//! A span, from the collector to a signal:
//!
//! * [`embed::ffi`] → [`embed::session`]: the C ABI the collector calls per batch;
//! * [`otlp`]: the batch decoded into per-trace fragments of [`trace::projected::Trace`],
//!   keeping only what the rules read;
//! * [`engine::buffer`]: fragments assembled into whole traces, judged when complete;
//! * [`engine`] → [`eval::vm`]: every rule run over the trace;
//! * [`engine::signal`] → [`otlp::encode`]: what fired, out as OTLP log records or spans.
//!
//! [`replay`] drives the same [`engine`] over stored traces with a clock taken from the
//! data; [`eval::reference`] is the plain evaluator the VM is tested against, over the plain
//! [`trace::Trace`] that [`rules::compact`] reads examples into.

// A `Diagnostic` is returned only when reading rules fails, a cold path: boxing it would
// cost every call site clarity for nothing.
#![allow(clippy::result_large_err)]

pub mod diagnostic;
pub mod embed;
pub mod engine;
pub mod eval;
pub mod lang;
pub mod otlp;
pub mod replay;
pub mod rules;
pub mod trace;

pub use rules::ruleset::{LoadError, RuleSet};

/// The engine allocates and frees a trace's few blocks at a high rate from several threads;
/// mimalloc does that at a fraction of glibc's cost (BENCHMARKS.md, "Allocator"). It only
/// serves Rust's allocations: a host's `malloc` (the Go collector's C side) is untouched.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs `f`, a pass that recurses over a rule's tree, with at least 256 KiB of stack: on a
/// thread with less left (a host's small thread), it runs on a fresh 4 MiB stack instead.
/// Nesting is bounded by the parser ([`lang::syntax::parser::MAX_NESTING`]), so this is plenty.
pub(crate) fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(256 << 10, 4 << 20, f)
}

/// The engine's version, as reported in signals' instrumentation scope.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
