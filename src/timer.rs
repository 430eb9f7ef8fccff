//! Job deadlines: one min-heap, driven by the supervisor thread, and the
//! counter that tells the supervisor when finished jobs' entries should be
//! swept out.
//!
//! See `docs/design.md` ("Deadlines").
//!
//! Invariants:
//!
//! 1. The timer runs no job code (only the logger, and the `on_cancel`
//!    callbacks and `cancelled()` wakers of a running job it cancels). Firing a deadline cancels a pending job's
//!    record without dropping its closure (the worker that dequeues the job
//!    drops it, worker invariant 6), and only cancels a running job's token.
//!    So a slow or panicking `Drop` in a job's captures never delays another
//!    job's deadline.
//! 2. An entry holds a `Weak` to its job, which pins the job's allocation
//!    (not its closure or result) until the entry goes. Every tracked job
//!    with a deadline that becomes terminal is counted in [`Stale`]; once
//!    that count reaches half the heap (and at least [`MIN_COMPACT`]), the
//!    supervisor is asked once ([`Stale::note`] returns `true`) to compact:
//!    it drops the entries of finished jobs and gives spare capacity back. So
//!    at most about half the heap plus [`MIN_COMPACT`] entries are stale at
//!    any time, and compaction costs O(1) amortised per finished job.
//! 3. The count may run ahead of the truth (a deadline that fired was popped
//!    already; a job finished before its entry was pushed): that only makes
//!    a compaction come early, never lets stale entries grow unbounded.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::job::Tracked;

/// `now + delay`, or an instant too far away to matter when that overflows
/// (supervisor invariant 5).
pub(crate) fn far_after(now: Instant, delay: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(delay)
        .or_else(|| now.checked_add(100 * YEAR))
        .or_else(|| now.checked_add(YEAR))
        // An `Instant` a year ahead always fits on the platforms std supports.
        .unwrap_or(now)
}

/// The fewest stale entries worth a compaction.
pub(crate) const MIN_COMPACT: usize = 1024;

/// Finished deadline jobs not yet swept from the heap (invariant 2). Written
/// by every thread that ends a job with a deadline, so it sits on a cache
/// line of its own.
#[repr(align(128))]
pub(crate) struct Stale {
    count: AtomicUsize,
    /// Compact once `count` reaches this; the supervisor keeps it at half
    /// the heap's length (at least `MIN_COMPACT`).
    threshold: AtomicUsize,
    /// A compaction was asked for and has not finished yet.
    requested: AtomicBool,
}

impl Default for Stale {
    fn default() -> Self {
        Stale {
            count: AtomicUsize::new(0),
            threshold: AtomicUsize::new(MIN_COMPACT),
            requested: AtomicBool::new(false),
        }
    }
}

impl Stale {
    /// Counts one job with a deadline that became terminal. Returns `true`
    /// when the caller must ask the supervisor to compact (once per round).
    pub(crate) fn note(&self) -> bool {
        // Relaxed throughout: a hint for when to sweep; the sweep itself
        // checks every entry (invariant 3), so no ordering is needed.
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        count >= self.threshold.load(Ordering::Relaxed)
            && !self.requested.swap(true, Ordering::Relaxed)
    }
}

struct Entry {
    at: Instant,
    job: Weak<dyn Tracked>,
}

// Ordered by `at`, reversed: `BinaryHeap` is a max-heap.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.at.cmp(&self.at)
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}

/// The supervisor's deadline heap.
#[derive(Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Entry>,
}

impl Deadlines {
    /// Adds a deadline, keeping `stale`'s threshold at half the heap.
    pub(crate) fn push(&mut self, at: Instant, job: Weak<dyn Tracked>, stale: &Stale) {
        self.heap.push(Entry { at, job });
        stale.threshold.store(self.threshold(), Ordering::Relaxed);
    }

    /// Adds an entry to a heap that is never compacted (abandonment
    /// graces: few, and each goes when it is due).
    pub(crate) fn push_uncounted(&mut self, at: Instant, job: Weak<dyn Tracked>) {
        self.heap.push(Entry { at, job });
    }

    fn threshold(&self) -> usize {
        (self.heap.len() / 2).max(MIN_COMPACT)
    }

    /// The earliest deadline, if any.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|entry| entry.at)
    }

    /// Takes the next job whose deadline is at or before `now` and that
    /// still exists.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Arc<dyn Tracked>> {
        while self.heap.peek().is_some_and(|entry| entry.at <= now) {
            if let Some(job) = self.heap.pop().and_then(|entry| entry.job.upgrade()) {
                return Some(job);
            }
        }
        None
    }

    /// Drops the entries of jobs that are gone or terminal and gives spare
    /// capacity back (invariant 2).
    pub(crate) fn compact(&mut self, stale: &Stale) {
        // Reset first: jobs that end during the sweep count towards the next
        // round (some of their entries go in this one: invariant 3).
        stale.count.store(0, Ordering::Relaxed);
        self.heap.retain(|entry| {
            entry
                .job
                .upgrade()
                .is_some_and(|job| !job.record().is_terminal())
        });
        // Hysteresis: shrink only well past twice the length, so a steady
        // state does not reallocate on every round.
        if self.heap.capacity() > 4 * self.heap.len().max(MIN_COMPACT) {
            self.heap.shrink_to(2 * self.heap.len());
        }
        stale.threshold.store(self.threshold(), Ordering::Relaxed);
        stale.requested.store(false, Ordering::Relaxed);
    }

    /// Entries held (test seam).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
