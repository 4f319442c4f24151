//! The engine's counters: one struct from the trace buffer, through the engine and the
//! live session, across the C ABI (as `betrace_counters`) to the collector components'
//! telemetry. Each layer fills the fields it owns; adding a counter is adding a field here
//! (and its mirror in `go-shim/internal/betrace`, which a Go test checks field by field).

/// What an engine has counted so far. This struct is the C ABI's `betrace_counters` as
/// it stands (fields are only ever appended, so an older host reads a prefix).
///
/// The span counts add up: `spans_in = spans_accepted + duplicate_spans +
/// late_spans_unjudged`, and every accepted span is judged with its trace (at least once).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Spans received (buffer).
    pub spans_in: u64,
    /// Distinct traces started (buffer).
    pub traces_in: u64,
    /// Times a trace was judged; a trace judged again after a late span counts twice
    /// (buffer).
    pub traces_judged: u64,
    /// Traces judged early to stay within `max_traces` / `max_spans` / `max_bytes`
    /// (buffer).
    pub traces_judged_early: u64,
    /// Spans that arrived for a trace already judged (buffer).
    pub late_spans: u64,
    /// Late spans that arrived after the trace's spans were released, so were not judged
    /// with them; a subset of `late_spans` (buffer).
    pub late_spans_unjudged: u64,
    /// Traces held now: waiting, or kept after judging for late spans (buffer).
    pub held_traces: u64,
    /// Spans held now (buffer).
    pub held_spans: u64,
    /// Signals produced: rule violations, one per rule and trace (engine).
    pub signals: u64,
    /// Signals dropped because nobody took them in time (live session).
    pub signals_dropped: u64,
    /// Batches that could not be decoded at all (live session).
    pub decode_errors: u64,
    /// Spans skipped because they could not be read (a bad or all-zero id, a bad value or
    /// string); the rest of their batch is kept (live session).
    pub invalid_spans: u64,
    /// Time spent judging, in nanoseconds (engine).
    pub eval_nanos: u64,
    /// Spans received again (same trace id and span id) while their trace was held:
    /// counted once, as OTLP exporters retry (buffer).
    pub duplicate_spans: u64,
    /// BeTrace's own `betrace.violation` spans that came back in (a processor's output fed
    /// to a connector on the same pipeline): left out, never judged (live session).
    pub own_spans: u64,
    /// Traces that alone outgrew `max_spans`: each was judged early on the spans it had;
    /// its later spans are late and not judged. The other traces held are left alone
    /// (buffer).
    pub traces_oversized: u64,
    /// Rules loaded now (live session).
    pub rules: u64,
    /// The loaded rule set's digest: a stable hash of its rules, equal on replicas that
    /// run the same rules (live session).
    pub rules_digest: u64,
    /// Times a reload changed the rules (a rule added, removed or edited); reloading the
    /// same files changes nothing and is not counted (live session).
    pub rule_changes: u64,
    /// Spans held and judged with their trace (buffer).
    pub spans_accepted: u64,
    /// Traces not judged because they start outside replay's `--from`/`--to` window
    /// (engine; always 0 live).
    pub traces_outside_window: u64,
    /// Bytes the held traces take now, as the buffer estimates them from its allocations'
    /// sizes: what `max_bytes` (`memory_limit_mib`) bounds (buffer).
    pub held_bytes: u64,
    /// Of `traces_judged_early`, those judged early because `max_bytes` would have been
    /// exceeded (oversized ones included) (buffer).
    pub traces_judged_early_memory: u64,
}

impl Counters {
    /// Adds what another engine counted (replay judges on several engines, one per
    /// partition of trace ids). The `rules` and `rules_digest` fields are the loaded rule
    /// set's, not counts: the larger is kept.
    pub fn add(&mut self, o: &Counters) {
        let Counters {
            spans_in,
            traces_in,
            traces_judged,
            traces_judged_early,
            late_spans,
            late_spans_unjudged,
            held_traces,
            held_spans,
            signals,
            signals_dropped,
            decode_errors,
            invalid_spans,
            eval_nanos,
            duplicate_spans,
            own_spans,
            traces_oversized,
            rules,
            rules_digest,
            rule_changes,
            spans_accepted,
            traces_outside_window,
            held_bytes,
            traces_judged_early_memory,
        } = o;
        self.spans_in += spans_in;
        self.traces_in += traces_in;
        self.traces_judged += traces_judged;
        self.traces_judged_early += traces_judged_early;
        self.late_spans += late_spans;
        self.late_spans_unjudged += late_spans_unjudged;
        self.held_traces += held_traces;
        self.held_spans += held_spans;
        self.signals += signals;
        self.signals_dropped += signals_dropped;
        self.decode_errors += decode_errors;
        self.invalid_spans += invalid_spans;
        self.eval_nanos += eval_nanos;
        self.duplicate_spans += duplicate_spans;
        self.own_spans += own_spans;
        self.traces_oversized += traces_oversized;
        self.rules = self.rules.max(*rules);
        self.rules_digest = self.rules_digest.max(*rules_digest);
        self.rule_changes += rule_changes;
        self.spans_accepted += spans_accepted;
        self.traces_outside_window += traces_outside_window;
        self.held_bytes += held_bytes;
        self.traces_judged_early_memory += traces_judged_early_memory;
    }
}
