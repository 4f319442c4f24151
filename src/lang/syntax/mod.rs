//! The syntax of conditions: the pest grammar (`grammar/betrace.pest`) and the tree it
//! parses into. Nothing here knows about types or traces.

pub mod ast;
mod parser;

pub use parser::{parse, unescape};
