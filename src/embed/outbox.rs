//! Signals waiting for the host to take them, one bounded queue per output.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::otlp::encode::Detected;

/// Signals waiting to be taken; beyond this the oldest are dropped (and counted), so a
/// caller that never takes them cannot grow memory without bound.
pub(crate) const MAX_PENDING_SIGNALS: usize = 100_000;

/// One output's waiting signals: the oldest dropped, and counted, past
/// [`MAX_PENDING_SIGNALS`].
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Detected>>,
    dropped: AtomicU64,
}

impl Outbox {
    /// Queues signals, dropping the oldest beyond the bound.
    pub(crate) fn push(&self, items: Vec<Detected>) {
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
    pub(crate) fn take(&self) -> Vec<Detected> {
        self.queue.lock().drain(..).collect()
    }

    /// Takes the waiting signals of the traces feed `feed` carried
    /// ([`crate::engine::signal::Signal::feeds`]), oldest first. A signal stays until every
    /// feed that carried its trace has taken it.
    pub(crate) fn take_feed(&self, feed: u32) -> Vec<Detected> {
        let bit = 1u64 << feed;
        let mut q = self.queue.lock();
        if q.iter().all(|d| d.signal.feeds == bit) {
            return q.drain(..).collect();
        }
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(q.len());
        for mut d in q.drain(..) {
            if d.signal.feeds & bit == 0 {
                kept.push_back(d);
                continue;
            }
            d.signal.feeds &= !bit;
            if d.signal.feeds == 0 {
                taken.push(d);
            } else {
                let mut copy = d.clone();
                copy.signal.feeds = bit;
                taken.push(copy);
                kept.push_back(d);
            }
        }
        *q = kept;
        taken
    }

    /// Signals dropped so far because nobody took them.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}
