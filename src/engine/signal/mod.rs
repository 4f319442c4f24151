//! What a rule reports when it fires (docs/language.md, "What a rule reports"): one [`Signal`] per (rule, trace), built
//! from the first trigger span, and its JSON-line form; its message rendered from a template
//! (`message`), its times written as RFC 3339 (`time`).

use serde::Serialize;

mod time;

pub use crate::rules::message::{placeholders, render_message};
pub use time::{now_unix_nano, parse_time, rfc3339};

use crate::eval::vm::Verdict;
use crate::lang::value::Value;
use crate::rules::{Compliance, RuleDef};
use crate::trace::projected::Trace;
use crate::trace::{Resource, SpanId, TraceId};

/// Whether a signal came from the live engine or from replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Detected in the collector.
    #[default]
    Live,
    /// Detected by `betrace replay` (or `betrace test`).
    Replay,
}

impl Mode {
    /// The mode word.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Replay => "replay",
        }
    }
}

/// One rule firing on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The rule's id.
    pub rule_id: String,
    /// The rule's name.
    pub rule_name: String,
    /// The rule's severity.
    pub severity: crate::rules::Severity,
    /// The signal type.
    pub signal_type: String,
    /// The rendered message.
    pub message: String,
    /// The violating trace.
    pub trace_id: TraceId,
    /// The first trigger span (or the root span when there are no trigger spans).
    pub span_id: SpanId,
    /// The trigger spans, first trigger span first; at most [`MAX_SPAN_IDS`] of them.
    pub span_ids: Vec<SpanId>,
    /// How many trigger spans there were (more than `span_ids` holds when capped).
    pub span_ids_total: usize,
    /// The first trigger span's start.
    pub time_unix_nano: u64,
    /// The first trigger span's resource.
    pub resource: Resource,
    /// Context attributes present on the first trigger span, in the rule's order.
    pub context: Vec<(String, Value)>,
    /// The rule's compliance mapping.
    pub compliance: Option<Compliance>,
    /// Live or replay.
    pub mode: Mode,
    /// Whether the trace was complete (docs/language.md, "Complete traces"): one root,
    /// every parent present, not judged early.
    pub complete: bool,
    /// The host's inputs that brought spans of the trace ([`Trace::feeds`]): where a host
    /// with several inputs sends the violation span.
    pub feeds: u64,
}

/// Most trigger span ids a signal lists: one trace of a million spans cannot make a
/// signal of megabytes. The total is always kept.
pub const MAX_SPAN_IDS: usize = 100;

/// Longest rendered message, in bytes; a longer one (a huge attribute in `{key}`) is cut
/// with an ellipsis.
pub const MAX_MESSAGE: usize = 4096;

impl Signal {
    /// Builds the signal for a rule that fired on a trace. `None` only for an empty trace.
    pub fn new(
        rule: &RuleDef,
        trace: &Trace,
        verdict: &Verdict,
        mode: Mode,
        complete: bool,
    ) -> Option<Signal> {
        let first = verdict.triggers.first().copied().or_else(|| trace.root())?;
        let span = &trace.spans[first];
        let resource = trace.resource_of(span);
        let get = |key: &str| trace.attr_or_resource(span, key);
        let context = rule
            .context
            .iter()
            .filter_map(|k| get(k).map(|v| (k.clone(), v.to_value())))
            .collect();
        let mut span_ids: Vec<SpanId> = verdict
            .triggers
            .iter()
            .take(MAX_SPAN_IDS)
            .map(|&i| trace.spans[i].span_id)
            .collect();
        if span_ids.is_empty() {
            span_ids.push(span.span_id);
        }
        let span_ids_total = verdict.triggers.len().max(1);
        let mut message = render_message(&rule.message, |k| get(k).map(|v| v.to_string()));
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Some(Signal {
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            severity: rule.severity,
            signal_type: rule.signal_type.clone(),
            message,
            trace_id: trace.trace_id,
            span_id: span.span_id,
            span_ids,
            span_ids_total,
            time_unix_nano: span.start_unix_nano,
            resource: resource.clone(),
            context,
            compliance: rule.compliance.clone(),
            mode,
            complete,
            feeds: trace.feeds,
        })
    }

    /// The resource's `service.name`.
    pub fn service(&self) -> &str {
        self.resource.service_name()
    }

    /// The JSON object of docs/language.md, "What a rule reports".
    pub fn to_json(&self) -> serde_json::Value {
        let context: serde_json::Map<String, serde_json::Value> = self
            .context
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        serde_json::json!({
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "severity": self.severity.as_str(),
            "signal_type": self.signal_type,
            "message": self.message,
            "trace_id": self.trace_id.to_string(),
            "span_id": self.span_id.to_string(),
            "span_ids": self.span_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "span_ids_total": self.span_ids_total,
            "time": rfc3339(self.time_unix_nano),
            "service": self.service(),
            "context": context,
            "compliance": self.compliance,
            "mode": self.mode,
            "complete": self.complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_any_rfc3339_offset() {
        let z = parse_time("2024-11-25T08:00:00Z").unwrap();
        assert_eq!(parse_time("2024-11-25T09:00:00+01:00"), Some(z));
        assert_eq!(parse_time("2024-11-25T03:30:00-04:30"), Some(z));
        assert_eq!(parse_time("2024-11-25T08:00:00.000z"), Some(z));
        assert_eq!(parse_time("2024-11-25 08:00:00"), Some(z));
        assert_eq!(parse_time("2024-11-25"), parse_time("2024-11-25T00:00:00Z"));
        assert_eq!(parse_time("2024-11-25T08:00:00+25:00"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn messages_fill_placeholders_and_leave_missing_empty() {
        let get = |k: &str| (k == "id").then(|| "pi_1".to_string());
        assert_eq!(
            render_message("charge {id} without {missing}!", get),
            "charge pi_1 without !"
        );
        assert_eq!(render_message("brace { alone", get), "brace { alone");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(
            rfc3339(1_732_524_137_384_000_000),
            "2024-11-25T08:42:17.384000000Z"
        );
        assert_eq!(
            parse_time("2024-11-25T08:42:17.384Z"),
            Some(1_732_524_137_384_000_000)
        );
        assert_eq!(parse_time("2024-11-25"), Some(1_732_492_800_000_000_000));
        assert_eq!(parse_time("yesterday"), None);
    }
}
