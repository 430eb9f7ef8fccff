//! The bounded, coalescing buffer between [`Store::record`](crate::Store::record)
//! and the writer thread.
//!
//! Invariants:
//!
//! 1. At most one state per job is buffered: a newer state replaces the
//!    buffered one when it [`supersedes`](Transition::supersedes) it, else
//!    it is dropped as stale. So a terminal state is never replaced.
//! 2. The buffer holds at most `capacity` jobs from `record`. A batch the
//!    writer failed to write comes back with `restore`, which may exceed
//!    the capacity by at most one batch: nothing once accepted is dropped
//!    for room.
//! 3. When full, a new job's terminal state evicts a buffered unfinished
//!    state (that job's own terminal state is still to come); any other
//!    new job's state is dropped and counted in `overflowed`.
//! 4. `in_flight` is true from `take` until `settle` or `restore`, so
//!    "empty and not in flight" means everything recorded has been written.
//! 5. `take` hands jobs out oldest first (by when each entered the buffer),
//!    so a buffer that never drains still writes every job in turn.
//!
//! Never runs user code; the lock is held only for map operations.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use harbor_pool::JobId;

use crate::job::Transition;

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<JobId, Transition>,
    /// Jobs buffered unfinished, oldest first, for eviction (invariant 3).
    /// Entries may be stale (written, or since finished) or repeated:
    /// checked on use, and compacted when they outnumber the jobs twice
    /// over, so under a buffer that never drains it stays bounded.
    unfinished: VecDeque<JobId>,
    /// Every buffered job, oldest first (invariant 5); stale entries
    /// (evicted jobs) are skipped, and compacted like `unfinished`.
    order: VecDeque<JobId>,
    in_flight: bool,
    closed: bool,
    overflowed: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Buffer {
    capacity: usize,
    state: Mutex<State>,
    /// Signalled when jobs arrive, a batch settles, or the buffer closes.
    changed: Condvar,
}

/// What `record` did with a state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    Accepted,
    /// Dropped for room (invariant 3); the overflow count so far.
    Overflowed(u64),
    Closed,
}

impl Buffer {
    pub(crate) fn new(capacity: usize) -> Self {
        Buffer {
            capacity,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock, so poison says nothing.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Buffers `transition`, coalescing it with the job's buffered state.
    pub(crate) fn record(&self, transition: Transition) -> Recorded {
        let mut state = self.lock();
        if state.closed {
            return Recorded::Closed;
        }
        let outcome = state.insert(transition, Some(self.capacity));
        drop(state);
        self.changed.notify_all();
        outcome
    }

    /// Puts back a batch that was not written (invariant 2), older than
    /// anything buffered since: a buffered state of the same job wins if it
    /// supersedes the returned one.
    pub(crate) fn restore(&self, batch: Vec<Transition>) {
        let mut state = self.lock();
        let mut oldest = Vec::new();
        for transition in batch {
            let id = transition.id;
            match state.jobs.get(&id) {
                Some(newer) if newer.supersedes(&transition) => {}
                _ => {
                    state.insert(transition, None);
                    // Back in line at the front: it was taken first
                    // (invariant 5).
                    if state.order.back() == Some(&id) {
                        state.order.pop_back();
                        oldest.push(id);
                    }
                }
            }
        }
        for id in oldest.into_iter().rev() {
            state.order.push_front(id);
        }
        state.in_flight = false;
        drop(state);
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for jobs, then takes up to `max` of them and
    /// marks a batch in flight. Returns an empty batch on timeout, and
    /// `None` once closed and empty.
    pub(crate) fn take(&self, max: usize, timeout: Duration) -> Option<Vec<Transition>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        // Wait loop: until jobs arrive, the buffer closes or the deadline.
        while state.jobs.is_empty() && !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Some(Vec::new());
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if state.jobs.is_empty() {
            return None;
        }
        let batch: Vec<Transition> = if state.jobs.len() <= max {
            state.unfinished.clear();
            state.order.clear();
            state.jobs.drain().map(|(_, t)| t).collect()
        } else {
            // Keeps invariant 5.
            let mut batch = Vec::with_capacity(max);
            while batch.len() < max {
                let Some(id) = state.order.pop_front() else {
                    break;
                };
                if let Some(transition) = state.jobs.remove(&id) {
                    batch.push(transition);
                }
            }
            batch
        };
        state.in_flight = true;
        Some(batch)
    }

    /// The batch taken last was written (invariant 4).
    pub(crate) fn settle(&self) {
        self.lock().in_flight = false;
        self.changed.notify_all();
    }

    /// Refuses further `record`s; `take` drains what is left.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits up to `timeout` until everything recorded so far is written
    /// (empty and nothing in flight, invariant 4). Under a steady stream of
    /// new states it may time out although each was written.
    pub(crate) fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        // Wait loop: until drained or the deadline.
        while !state.jobs.is_empty() || state.in_flight {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Jobs buffered, and states dropped for room so far.
    pub(crate) fn counts(&self) -> (usize, u64) {
        let state = self.lock();
        (state.jobs.len(), state.overflowed)
    }
}

impl State {
    /// Invariants 1 and 3; `capacity` is `None` for a restore (invariant 2).
    fn insert(&mut self, transition: Transition, capacity: Option<usize>) -> Recorded {
        if let Some(buffered) = self.jobs.get_mut(&transition.id) {
            if transition.supersedes(buffered) {
                *buffered = transition;
            }
            return Recorded::Accepted;
        }
        if let Some(capacity) = capacity
            && self.jobs.len() >= capacity
            && !(transition.rank() == 2 && self.evict_unfinished())
        {
            self.overflowed += 1;
            return Recorded::Overflowed(self.overflowed);
        }
        if transition.rank() < 2 {
            self.unfinished.push_back(transition.id);
            if self.unfinished.len() > 2 * self.jobs.len() + 64 {
                self.compact();
            }
        }
        self.order.push_back(transition.id);
        if self.order.len() > 2 * self.jobs.len() + 64 {
            let jobs = &self.jobs;
            let mut seen = std::collections::HashSet::with_capacity(jobs.len());
            self.order
                .retain(|id| (jobs.contains_key(id) || *id == transition.id) && seen.insert(*id));
        }
        self.jobs.insert(transition.id, transition);
        Recorded::Accepted
    }

    /// Keeps one entry per buffered unfinished job, in order.
    fn compact(&mut self) {
        let jobs = &self.jobs;
        let mut seen = std::collections::HashSet::with_capacity(jobs.len());
        self.unfinished
            .retain(|id| jobs.get(id).is_some_and(|t| t.rank() < 2) && seen.insert(*id));
    }

    /// Drops the oldest buffered unfinished state; false if there is none.
    fn evict_unfinished(&mut self) -> bool {
        while let Some(id) = self.unfinished.pop_front() {
            if self.jobs.get(&id).is_some_and(|t| t.rank() < 2) {
                self.jobs.remove(&id);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harbor_pool::JobStatus;
    use std::time::SystemTime;

    fn state(id: JobId, status: JobStatus) -> Transition {
        Transition::new(id, status, SystemTime::UNIX_EPOCH)
    }

    fn new_id() -> JobId {
        uuid::Uuid::new_v4().into()
    }

    #[test]
    fn a_job_is_coalesced_and_terminal_states_are_never_replaced() {
        let buffer = Buffer::new(10);
        let id = new_id();
        buffer.record(state(id, JobStatus::Pending));
        buffer.record(state(id, JobStatus::Running));
        buffer.record(state(id, JobStatus::Completed));
        buffer.record(state(id, JobStatus::Running));
        buffer.record(state(id, JobStatus::Cancelled));
        let batch = buffer.take(100, Duration::ZERO).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].status, JobStatus::Completed);
    }

    #[test]
    fn a_running_state_does_not_go_back_to_pending() {
        let buffer = Buffer::new(10);
        let id = new_id();
        buffer.record(state(id, JobStatus::Running));
        buffer.record(state(id, JobStatus::Pending));
        let batch = buffer.take(100, Duration::ZERO).unwrap();
        assert_eq!(batch[0].status, JobStatus::Running);
    }

    #[test]
    fn when_full_a_terminal_state_evicts_an_unfinished_one_and_others_overflow() {
        let buffer = Buffer::new(2);
        let (a, b, c, d) = (new_id(), new_id(), new_id(), new_id());
        assert_eq!(
            buffer.record(state(a, JobStatus::Running)),
            Recorded::Accepted
        );
        assert_eq!(
            buffer.record(state(b, JobStatus::Completed)),
            Recorded::Accepted
        );
        assert_eq!(
            buffer.record(state(c, JobStatus::Pending)),
            Recorded::Overflowed(1)
        );
        // c's terminal state takes a's place; a's comes later.
        assert_eq!(
            buffer.record(state(c, JobStatus::Completed)),
            Recorded::Accepted
        );
        // Nothing unfinished is left to evict.
        assert_eq!(
            buffer.record(state(d, JobStatus::Failed("x".into()))),
            Recorded::Overflowed(2)
        );
        // A buffered job is still updated when full.
        assert_eq!(
            buffer.record(state(b, JobStatus::Running)),
            Recorded::Accepted
        );
        let mut ids: Vec<JobId> = buffer
            .take(10, Duration::ZERO)
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        ids.sort();
        let mut want = vec![b, c];
        want.sort();
        assert_eq!(ids, want);
        assert_eq!(buffer.counts(), (0, 2));
    }

    #[test]
    fn a_restored_batch_loses_to_newer_states_and_may_exceed_the_capacity() {
        let buffer = Buffer::new(1);
        let (a, b) = (new_id(), new_id());
        buffer.record(state(a, JobStatus::Running));
        let batch = buffer.take(10, Duration::ZERO).unwrap();
        assert!(!buffer.wait_drained(Duration::ZERO), "a batch is in flight");
        buffer.record(state(a, JobStatus::Completed));
        buffer.record(state(b, JobStatus::Running)); // full: overflows
        buffer.restore(batch);
        let batch = buffer.take(10, Duration::ZERO).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].status, JobStatus::Completed);
        buffer.restore(vec![
            state(a, JobStatus::Running),
            state(b, JobStatus::Running),
        ]);
        assert_eq!(buffer.counts().0, 2, "a restore ignores the capacity");
    }

    #[test]
    fn the_eviction_queue_stays_bounded_when_the_buffer_never_drains() {
        let buffer = Buffer::new(1_000_000);
        let running: Vec<JobId> = (0..500).map(|_| new_id()).collect();
        for _ in 0..200 {
            // Progress of the same running jobs, taken a part at a time.
            for &id in &running {
                buffer.record(state(id, JobStatus::Running));
            }
            buffer.take(100, Duration::ZERO).unwrap();
            buffer.settle();
        }
        // Without compaction: about 100 stale entries a round, 20,000.
        let queued = buffer.lock().unfinished.len();
        assert!(
            queued <= 2 * running.len() + 64,
            "{queued} queued for 500 jobs"
        );
    }

    #[test]
    fn a_buffer_that_never_drains_hands_out_its_oldest_jobs_first() {
        let buffer = Buffer::new(1_000);
        let first: Vec<JobId> = (0..100).map(|_| new_id()).collect();
        for &id in &first {
            buffer.record(state(id, JobStatus::Running));
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10 {
            // New jobs keep coming faster than batches leave.
            for _ in 0..20 {
                buffer.record(state(new_id(), JobStatus::Running));
            }
            // The first jobs, updated meanwhile, keep their turn.
            buffer.record(state(first[99], JobStatus::Completed));
            for transition in buffer.take(10, Duration::ZERO).unwrap() {
                seen.insert(transition.id);
            }
            buffer.settle();
        }
        assert!(first.iter().all(|id| seen.contains(id)));
        // A batch that failed goes back first in line.
        let batch = buffer.take(2, Duration::ZERO).unwrap();
        let ids: Vec<JobId> = batch.iter().map(|t| t.id).collect();
        buffer.restore(batch);
        let again: Vec<JobId> = buffer
            .take(2, Duration::ZERO)
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(again, ids);
    }

    #[test]
    fn take_splits_large_batches_and_drain_waits_for_settle() {
        let buffer = Buffer::new(100);
        for _ in 0..25 {
            buffer.record(state(new_id(), JobStatus::Running));
        }
        assert_eq!(buffer.take(10, Duration::ZERO).unwrap().len(), 10);
        buffer.settle();
        assert_eq!(buffer.take(10, Duration::ZERO).unwrap().len(), 10);
        buffer.settle();
        assert_eq!(buffer.take(10, Duration::ZERO).unwrap().len(), 5);
        assert!(!buffer.wait_drained(Duration::ZERO));
        buffer.settle();
        assert!(buffer.wait_drained(Duration::ZERO));
        assert_eq!(buffer.take(10, Duration::ZERO), Some(Vec::new()));
        buffer.close();
        assert_eq!(buffer.take(10, Duration::ZERO), None);
        assert_eq!(
            buffer.record(state(new_id(), JobStatus::Running)),
            Recorded::Closed
        );
    }
}
