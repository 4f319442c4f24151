//! Which stored batches a host still has to keep.
//!
//! A host with storage (the collector's `storage` setting, docs/deploy.md "Nothing lost
//! when a collector dies") writes every batch it ingests to storage under a sequence
//! number before the engine sees it, and writes down the ids of the traces the engine
//! judged. After a crash it hands the engine back the stored batches and judged ids, in
//! sequence order, and the engine stands where it stood: every trace not yet judged is
//! held again with the spans it had, and judged as if nothing had stopped.
//!
//! The journal is what tells the host when a stored batch may go: a batch is needed while
//! some trace with spans in it is held and not judged yet. Each batch counts the traces it
//! carried; a trace's judgement, or a fragment the buffer did not keep (late, or only
//! re-sent spans), takes its trace off the count; at zero the batch is free.

use std::collections::HashMap;

use crate::trace::TraceId;

/// The batches each waiting trace has spans in, and how many waiting traces each batch
/// still carries.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// Per trace not yet judged: the batches with its spans, oldest first.
    batches_of: HashMap<TraceId, Vec<u64>, foldhash::fast::RandomState>,
    /// Per stored batch: how many traces still need it.
    needed_by: HashMap<u64, u32, foldhash::fast::RandomState>,
    /// Traces that got spans since the last [`Journal::settle`].
    touched: Vec<TraceId>,
    /// Batches no trace needs any more, not yet taken.
    freed: Vec<u64>,
}

impl Journal {
    /// Records that batch `seq` carried spans of `traces` (each once).
    pub(crate) fn add(&mut self, seq: u64, traces: impl IntoIterator<Item = TraceId>) {
        let mut carried = 0u32;
        for id in traces {
            let batches = self.batches_of.entry(id).or_default();
            if batches.last() == Some(&seq) {
                continue;
            }
            batches.push(seq);
            carried += 1;
            self.touched.push(id);
        }
        if carried == 0 {
            self.freed.push(seq);
        } else {
            *self.needed_by.entry(seq).or_default() += carried;
        }
    }

    /// A trace was judged (or forgotten): the batches it had spans in no longer need to
    /// be kept for it.
    pub(crate) fn judged(&mut self, id: &TraceId) {
        let Some(batches) = self.batches_of.remove(id) else {
            return;
        };
        for seq in batches {
            if let Some(n) = self.needed_by.get_mut(&seq) {
                *n -= 1;
                if *n == 0 {
                    self.needed_by.remove(&seq);
                    self.freed.push(seq);
                }
            }
        }
    }

    /// Lets go of the traces that got spans since the last call and are not waiting:
    /// spans the buffer did not keep (late spans of a released trace, re-sent ones) hold
    /// no batch.
    pub(crate) fn settle(&mut self, waiting: impl Fn(&TraceId) -> bool) {
        for id in std::mem::take(&mut self.touched) {
            if !waiting(&id) {
                self.judged(&id);
            }
        }
    }

    /// The batches freed since the last call.
    pub(crate) fn take_freed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.freed)
    }

    /// How many stored batches are still needed.
    #[cfg(test)]
    pub(crate) fn needed(&self) -> usize {
        self.needed_by.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TraceId {
        TraceId([n; 16])
    }

    #[test]
    fn a_batch_is_freed_when_every_trace_in_it_is_judged() {
        let mut j = Journal::default();
        j.add(1, [id(1), id(2)]);
        j.add(2, [id(2)]);
        j.judged(&id(1));
        assert!(j.take_freed().is_empty(), "trace 2 still needs batch 1");
        j.judged(&id(2));
        let mut freed = j.take_freed();
        freed.sort();
        assert_eq!(freed, vec![1, 2]);
        assert_eq!(j.needed(), 0);
    }

    #[test]
    fn spans_not_kept_free_their_batch_at_settle() {
        let mut j = Journal::default();
        j.add(1, [id(1)]);
        j.add(2, [id(1), id(3)]);
        // Trace 3's fragment was late: the buffer did not keep it.
        j.settle(|t| *t == id(1));
        assert!(j.take_freed().is_empty());
        j.judged(&id(1));
        let mut freed = j.take_freed();
        freed.sort();
        assert_eq!(freed, vec![1, 2]);
    }

    #[test]
    fn an_empty_batch_is_free_at_once_and_repeats_count_once() {
        let mut j = Journal::default();
        j.add(7, []);
        assert_eq!(j.take_freed(), vec![7]);
        j.add(8, [id(1), id(1)]);
        j.judged(&id(1));
        assert_eq!(j.take_freed(), vec![8]);
        j.judged(&id(1));
        assert!(
            j.take_freed().is_empty(),
            "a second judgement frees nothing twice"
        );
    }
}
