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
//!
//! # Layers
//!
//! The modules stand in floors, the top first. A module imports only from its own floor and
//! the floors below it, never from one above: a span falls floor by floor from [`embed`] to
//! [`lang`] with no stair back up. `tests/layers.rs` reads this list and holds `src/` to it.
//!
//! 1. [`discover`]: candidate rules mined from stored traces, judged by replay;
//! 2. [`embed`], [`replay`]: the drivers, the C ABI's live session and replay over stored
//!    traces;
//! 3. [`otlp`]: OTLP in (decoding into trace fragments) and out (signals as logs or spans);
//! 4. [`engine`]: traces assembled, judged, and acted on;
//! 5. [`rules`]: rule files read into a rule set, which returns verdicts;
//! 6. [`eval`]: the VM and the reference evaluator;
//! 7. [`trace`]: traces, plain and projected;
//! 8. [`lang`]: the rule language, its values and words;
//! 9. [`diagnostic`]: what went wrong, located and rendered.
//!
//! # Names
//!
//! "Engine" names four things, one per side of the C ABI:
//!
//! * in Rust, [`engine::Engine`]: a rule set, the trace buffer and the signals, driven by
//!   live or replay;
//! * in C, `betrace_engine` (`ffi/betrace.h`, [`embed::ffi`]): a handle around the live
//!   session ([`embed::session`]'s `Live`), which holds an `Engine`;
//! * in Go, `betrace.Engine` (`go-shim/internal/betrace`): the cgo wrapper of that handle;
//! * in Go, the package `engine` (`go-shim/internal/engine`): it holds a `Runner`, which
//!   drives a `betrace.Engine` for the collector's components.
//!
//! "Trace" names two: the plain [`trace::Trace`] (examples, the reference evaluator) and
//! [`trace::projected::Trace`] (what the engine holds); [`trace`] says which is which.
//!
//! This file only declares the modules and re-exports: everything else lives on a floor.

// A `Diagnostic` is returned only when reading rules fails, a cold path: boxing it would
// cost every call site clarity for nothing.
#![warn(missing_docs)]
#![warn(unreachable_pub)]
#![allow(clippy::result_large_err)]

pub mod diagnostic;
pub mod discover;
pub mod embed;
pub mod engine;
pub mod eval;
pub mod lang;
pub mod otlp;
pub mod replay;
pub mod rules;
pub mod trace;

pub use engine::VERSION;
pub use rules::ruleset::{LoadError, RuleSet};

/// The engine allocates and frees a trace's few blocks at a high rate from several threads;
/// mimalloc does that at a fraction of glibc's cost (BENCHMARKS.md, "Allocator"). It only
/// serves Rust's allocations: a host's `malloc` (the Go collector's C side) is untouched.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
