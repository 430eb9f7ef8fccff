//! Counters behind [`PoolStats`].
//!
//! Workers count their own jobs in a [`Tally`] of their own (one cache line
//! each), so finishing a job touches no line another worker writes. Jobs
//! finished by other threads (a cancel by id, a deadline, a shutdown) are
//! counted in a shared tally. `stats()` adds them up.
//!
//! All counters are `Relaxed`: each is a monotonic count read as a snapshot;
//! nothing is synchronised through them. [`PoolStats`] is exact once the pool
//! is idle (after [`Pool::join`](crate::Pool::join)).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::job::JobStatus;

/// A snapshot of a pool's counters.
///
/// Tracked (`submit`) and untracked (`execute`) jobs are counted alike. Once
/// [`Pool::join`](crate::Pool::join) returns (and no one submits meanwhile),
/// `submitted == completed + failed + cancelled`.
///
/// # Examples
///
/// ```
/// use harbor_pool::Pool;
/// let pool = Pool::new(2).unwrap();
/// pool.execute(|| ()).unwrap();
/// pool.execute(|| panic!("boom")).unwrap();
/// pool.join();
/// let stats = pool.stats();
/// assert_eq!((stats.submitted, stats.completed, stats.failed, stats.panicked), (2, 1, 1, 1));
/// assert_eq!(stats.submitted, stats.completed + stats.failed + stats.cancelled);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// The configured number of worker threads.
    pub workers: usize,
    /// Worker threads that are up (past their start hook) and not yet exited.
    pub alive: usize,
    /// Workers running a job right now.
    pub busy: usize,
    /// Jobs waiting in the queue (including pending jobs already cancelled,
    /// which a worker will skip).
    pub queued: usize,
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs that returned `Ok` (tracked) or returned at all (untracked).
    pub completed: u64,
    /// Jobs that returned `Err` (not cancelled), panicked, or lost their worker.
    pub failed: u64,
    /// The part of `failed` that panicked.
    pub panicked: u64,
    /// Jobs that ended `Cancelled`, including queued jobs dropped by
    /// [`Pool::shutdown_now`](crate::Pool::shutdown_now).
    pub cancelled: u64,
    /// Worker threads respawned by the supervisor.
    pub restarts: u64,
}

/// How one job ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Completed,
    Failed,
    Panicked,
    Cancelled,
}

impl Ending {
    pub(crate) fn of(status: &JobStatus, panicked: bool) -> Ending {
        match status {
            JobStatus::Completed => Ending::Completed,
            JobStatus::Cancelled => Ending::Cancelled,
            _ if panicked => Ending::Panicked,
            _ => Ending::Failed,
        }
    }
}

/// One worker's counters (or the shared ones), on a cache line of its own.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Tally {
    completed: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    pub(crate) busy: AtomicBool,
}

impl Tally {
    pub(crate) fn count(&self, ending: Ending) {
        match ending {
            Ending::Completed => self.completed.fetch_add(1, Relaxed),
            Ending::Failed => self.failed.fetch_add(1, Relaxed),
            Ending::Panicked => {
                self.panicked.fetch_add(1, Relaxed);
                self.failed.fetch_add(1, Relaxed)
            }
            Ending::Cancelled => self.cancelled.fetch_add(1, Relaxed),
        };
    }
}

/// Every counter of one pool.
pub(crate) struct Counters {
    /// Incremented by submitting threads only.
    submitted: Padded<AtomicU64>,
    pub(crate) restarts: AtomicU64,
    pub(crate) alive: AtomicUsize,
    /// Jobs ended by threads other than workers.
    pub(crate) others: Tally,
    /// Indexed by worker index; a respawned worker keeps its tally.
    pub(crate) workers: Box<[Tally]>,
}

#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl Counters {
    pub(crate) fn new(workers: usize) -> Self {
        Counters {
            submitted: Padded::default(),
            restarts: AtomicU64::new(0),
            alive: AtomicUsize::new(0),
            others: Tally::default(),
            workers: (0..workers).map(|_| Tally::default()).collect(),
        }
    }

    pub(crate) fn submitted(&self) {
        self.submitted.0.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, queued: usize) -> PoolStats {
        let mut stats = PoolStats {
            workers: self.workers.len(),
            alive: self.alive.load(Relaxed),
            queued,
            submitted: self.submitted.0.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
            ..PoolStats::default()
        };
        for tally in self.workers.iter().chain(std::iter::once(&self.others)) {
            stats.busy += usize::from(tally.busy.load(Relaxed));
            stats.completed += tally.completed.load(Relaxed);
            stats.failed += tally.failed.load(Relaxed);
            stats.panicked += tally.panicked.load(Relaxed);
            stats.cancelled += tally.cancelled.load(Relaxed);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panicked_counts_as_failed_too() {
        let counters = Counters::new(2);
        counters.submitted();
        counters.submitted();
        counters.workers[0].count(Ending::Panicked);
        counters.others.count(Ending::Cancelled);
        let stats = counters.snapshot(0);
        assert_eq!((stats.failed, stats.panicked, stats.cancelled), (1, 1, 1));
        assert_eq!(
            stats.submitted,
            stats.completed + stats.failed + stats.cancelled
        );
    }
}
