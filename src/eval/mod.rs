//! Judging a trace with a compiled rule:
//!
//! * [`vm`] runs the bytecode over a [`crate::trace::projected::Trace`] (the engine's
//!   spans, keeping only what the rules read) — the production path;
//! * [`reference`](mod@reference) is the plain tree-walking evaluator over the plain
//!   [`crate::trace::Trace`], the oracle the VM is tested against, and nothing else;
//! * [`explain`] says, for `betrace test` and `betrace explain`, why a rule passed or fired.

pub mod explain;
mod occurrence;
pub mod reference;
pub mod vm;
