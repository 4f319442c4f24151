//! BeTrace: invariants that production systems depend on, written as rules and checked on
//! every OpenTelemetry trace.
//!
//! The path of a rule, by module:
//!
//! * [`rules`] reads rule files (YAML) strictly and reports every problem, located;
//! * [`syntax`] parses a condition with the pest grammar into an [`syntax::ast`];
//! * [`check`] resolves and type-checks it into the [`hir`];
//! * [`compile`] turns the HIR into [`bytecode`], shared across a [`ruleset::RuleSet`];
//! * [`vm`] judges a [`projected::Trace`] — a trace keeping only what the rules read —
//!   with that bytecode; [`reference`] is the plain tree-walking evaluator over the plain
//!   [`trace::Trace`] the VM is tested against;
//! * [`signal`] is what a firing rule reports.
//!
//! [`compact`] reads the readable YAML traces that examples and tests are written in.

// A `Diagnostic` is returned only when reading rules fails, a cold path: boxing it would
// cost every call site clarity for nothing.
#![allow(clippy::result_large_err)]

pub mod buffer;
pub mod bytecode;
pub mod check;
pub mod compact;
pub mod compile;
pub mod diagnostic;
pub mod engine;
pub mod explain;
pub mod export;
pub mod ffi;
pub mod hir;
pub mod live;
pub mod logs;
pub mod otlp;
pub mod projected;
pub mod reference;
pub mod replay;
pub mod rules;
pub mod ruleset;
pub mod signal;
pub mod syntax;
pub mod trace;
pub mod value;
pub mod vm;

pub use ruleset::{LoadError, RuleSet};

/// The engine allocates and frees a trace's few blocks at a high rate from several threads;
/// mimalloc does that at a fraction of glibc's cost (BENCHMARKS.md, "Allocator"). It only
/// serves Rust's allocations: a host's `malloc` (the Go collector's C side) is untouched.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs `f`, a pass that recurses over a rule's tree, with at least 256 KiB of stack: on a
/// thread with less left (a host's small thread), it runs on a fresh 4 MiB stack instead.
/// Nesting is bounded by the parser ([`syntax::parser::MAX_NESTING`]), so this is plenty.
pub(crate) fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(256 << 10, 4 << 20, f)
}

/// The engine's version, as reported in signals' instrumentation scope.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
