//! Stack for the passes that recurse over a rule's tree: parsing bounds how deep a rule
//! nests (`lang::syntax::parser::MAX_NESTING`), and this makes room for that depth
//! on any thread.

/// Runs `f`, a pass that recurses over a rule's tree, with at least 256 KiB of stack: on a
/// thread with less left (a host's small thread), it runs on a fresh 4 MiB stack instead.
/// Nesting is bounded by the parser (`lang::syntax::parser::MAX_NESTING`), so this
/// is plenty.
pub(crate) fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(256 << 10, 4 << 20, f)
}
