//! The hand-off between the data path and the access-log writer: a bounded queue of records
//! that the writer empties in batches.
//!
//! A push is a short, uncontended lock and a move into a `Vec`: no allocation once the
//! buffers have grown, no system call. The writer swaps the whole `Vec` out for its own empty
//! one, so the two sides touch the lock once per record and once per batch. When the queue
//! holds `capacity` records (the writer is stuck on a slow disk or a full pipe), records are
//! dropped and counted rather than queued without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::end::Record;

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued; the writer picks it up on its next round.
    Queued,
    /// Queued, and the queue just reached its wake-up mark: wake the writer now.
    QueuedWake,
    /// The queue was full (or closed): the record was dropped and counted.
    Dropped,
}

/// A bounded queue of records, emptied a batch at a time.
pub(super) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    wake_at: usize,
    dropped: AtomicU64,
}

struct State {
    records: Vec<Record>,
    closed: bool,
}

impl Queue {
    /// A queue holding at most `capacity` records that asks for the writer when it holds
    /// `wake_at`.
    pub(super) fn new(capacity: usize, wake_at: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                records: Vec::new(),
                closed: false,
            }),
            capacity,
            wake_at: wake_at.clamp(1, capacity.max(1)),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues one record, or drops it when the queue is full or closed.
    pub(super) fn push(&self, record: Record) -> Pushed {
        let mut state = self.lock();
        if state.closed || state.records.len() >= self.capacity {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            // The record's strings are freed here, after the lock is released.
            drop(record);
            return Pushed::Dropped;
        }
        state.records.push(record);
        if state.records.len() == self.wake_at {
            Pushed::QueuedWake
        } else {
            Pushed::Queued
        }
    }

    /// Swaps every queued record into `batch` (which must be empty; its capacity is reused
    /// for the next round). Returns whether the queue was closed: if so, nothing more will
    /// come.
    pub(super) fn take(&self, batch: &mut Vec<Record>) -> bool {
        debug_assert!(batch.is_empty());
        let mut state = self.lock();
        std::mem::swap(&mut state.records, batch);
        state.closed
    }

    /// Refuses further records; the writer's next [`Queue::take`] is its last.
    pub(super) fn close(&self) {
        self.lock().closed = true;
    }

    /// Records dropped since the queue was made.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something ever did, the records are
        // still whole, so keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::fixtures;

    fn conn_record() -> Record {
        Record::Tcp(fixtures::conn_record())
    }

    #[test]
    fn wakes_once_at_the_mark_then_drops_when_full() {
        let queue = Queue::new(3, 2);
        let pushed: Vec<_> = (0..5).map(|_| queue.push(conn_record())).collect();
        assert_eq!(
            pushed,
            [
                Pushed::Queued,
                Pushed::QueuedWake,
                Pushed::Queued,
                Pushed::Dropped,
                Pushed::Dropped
            ]
        );
        assert_eq!(queue.dropped(), 2);

        let mut batch = Vec::new();
        assert!(!queue.take(&mut batch));
        assert_eq!(batch.len(), 3);
        batch.clear();
        // Emptied: room again, and the mark wakes the writer again.
        assert_eq!(queue.push(conn_record()), Pushed::Queued);
        assert_eq!(queue.push(conn_record()), Pushed::QueuedWake);
    }

    #[test]
    fn a_closed_queue_hands_over_what_it_holds_and_refuses_more() {
        let queue = Queue::new(10, 5);
        queue.push(conn_record());
        queue.close();
        assert_eq!(queue.push(conn_record()), Pushed::Dropped);
        let mut batch = Vec::new();
        assert!(queue.take(&mut batch));
        assert_eq!(batch.len(), 1);
    }
}
