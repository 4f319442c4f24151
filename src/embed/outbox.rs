//! Signals waiting for the host to take them, one bounded queue per output.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::otlp::encode::Detected;

/// Signals waiting to be taken; beyond this the oldest are dropped (and counted), so a
/// caller that never takes them cannot grow memory without bound.
pub const MAX_PENDING_SIGNALS: usize = 100_000;

/// One output's waiting signals: the oldest dropped, and counted, past
/// [`MAX_PENDING_SIGNALS`].
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<Detected>>,
    dropped: AtomicU64,
}

impl Outbox {
    /// Queues signals, dropping the oldest beyond the bound.
    pub fn push(&self, items: Vec<Detected>) {
        let mut q = self.queue.lock();
        q.extend(items);
        let over = q.len().saturating_sub(MAX_PENDING_SIGNALS);
        if over > 0 {
            q.drain(..over);
            self.dropped.fetch_add(over as u64, Relaxed);
            tracing::warn!(target: "betrace", dropped = over, "signals dropped: none were taken");
        }
    }

    /// Takes every waiting signal, oldest first.
    pub fn take(&self) -> Vec<Detected> {
        self.queue.lock().drain(..).collect()
    }

    /// Signals dropped so far because nobody took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}
