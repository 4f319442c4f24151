//! At most one log line per interval of engine time, for events that can repeat on every
//! batch (unreadable spans, traces larger than `max_spans`): the first is logged, then one
//! per interval, each with the running total, so a flood costs one line, not thousands.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How often a repeating event may be logged: once per this much engine time (10 s).
pub(crate) const LOG_INTERVAL: u64 = 10_000_000_000;

/// When an event was last logged, in engine time (0: never).
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    logged_at: AtomicU64,
}

impl LogLimit {
    /// Whether to log now: the first call does, then one call per [`LOG_INTERVAL`]. Of
    /// several threads calling at once, one wins.
    pub(crate) fn due(&self, now: u64) -> bool {
        let last = self.logged_at.load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_INTERVAL;
        due && self
            .logged_at
            .compare_exchange(last, now.max(1), Relaxed, Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_then_once_per_interval() {
        let l = LogLimit::default();
        assert!(l.due(5));
        assert!(!l.due(6));
        assert!(!l.due(5 + LOG_INTERVAL - 1));
        assert!(l.due(5 + LOG_INTERVAL));
        assert!(!l.due(5 + LOG_INTERVAL));
    }

    #[test]
    fn time_zero_still_logs_once() {
        let l = LogLimit::default();
        assert!(l.due(0));
        assert!(!l.due(0), "logged at 0 is remembered as 1");
    }
}
