//! The rule language, from text to bytecode, in the order a condition goes through it:
//!
//! * [`syntax`] parses a condition with the pest grammar (`grammar/betrace.pest`) into an
//!   [`syntax::ast`];
//! * [`check`] resolves names, checks types and compiles patterns, into the [`hir`];
//! * [`compile`] turns the HIR into [`bytecode`], shared across a rule set;
//! * [`value`] is what an attribute or a literal holds, and how two compare;
//! * [`span`] holds the words of a span that rules name (its kind and status), shared with
//!   [`crate::trace`];
//! * `stack` makes room on the stack for the passes that recurse over a rule.
//!
//! Nothing here knows about traces or OTLP: [`crate::eval`] runs what this produces.

pub mod bytecode;
pub mod check;
pub mod compile;
pub mod hir;
pub mod span;
pub(crate) mod stack;
pub mod syntax;
pub mod value;
