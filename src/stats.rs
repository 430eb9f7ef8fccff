//! Counters behind [`PoolStats`]. (The latency histograms behind
//! `Pool::metrics` sit beside them, per worker, in `metrics/latency.rs`.)
//!
//! Workers count their own jobs in a [`Tally`] of their own (one cache line
//! each), so finishing a job touches no line another worker writes. Jobs
//! finished by other threads (a cancel by id, a deadline, a shutdown) are
//! counted in a shared tally. `stats()` adds them up.
//!
//! The job counters are updated with `SeqCst` read-modify-writes (the same
//! instruction as `Relaxed` on x86) because `Pool::join` sums them in a
//! handshake with finishing threads (see `Shared::check_idle`). The other
//! statistics are `Relaxed` snapshots. [`PoolStats`] is exact once the pool
//! is idle (after [`Pool::join`](crate::Pool::join)); while jobs are being
//! submitted, a submission in progress may be counted a moment before it is
//! accepted or refused.

use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release, SeqCst},
};

use crate::job::JobStatus;
use crate::metrics::Latency;

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
    /// Entries in the queue: jobs waiting for a worker, and entries of jobs
    /// that ended while queued (cancelled, or run inline by a job that
    /// joined them) that no worker has taken off yet (it skips them). Those
    /// hold no slot of a bounded queue once their closure is gone, so this
    /// can exceed [`queue_capacity`](crate::Builder::queue_capacity).
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
    /// Jobs abandoned: cancelled by the pool and not returned within their
    /// grace ([`Builder::abandon_after`](crate::Builder::abandon_after)).
    /// Once the pool is idle,
    /// `submitted == completed + failed + cancelled + abandoned`.
    pub abandoned: u64,
    /// Detached threads still running: worker threads, each stuck in an
    /// abandoned job, and the observer thread if its `observe` outlived
    /// [`observer_shutdown_timeout`](crate::Builder::observer_shutdown_timeout)
    /// at shutdown. They are not counted in `alive`.
    pub stray_threads: usize,
    /// Transitions of tracked jobs the [`JobObserver`](crate::JobObserver)
    /// never saw because its buffer was full
    /// ([`Builder::observer_capacity`](crate::Builder::observer_capacity));
    /// each counts a note that found no room, which may stand for several
    /// transitions of one job. Always 0 without an observer.
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// pool.submit(|_| Ok(())).unwrap().join().unwrap();
    /// assert_eq!(pool.stats().observer_overflows, 0);
    /// ```
    pub observer_overflows: u64,
}

/// How one job ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Completed,
    Failed,
    Panicked,
    Cancelled,
    Abandoned,
}

impl Ending {
    pub(crate) fn of(status: &JobStatus, panicked: bool) -> Ending {
        match status {
            JobStatus::Completed => Ending::Completed,
            JobStatus::Cancelled => Ending::Cancelled,
            JobStatus::Abandoned => Ending::Abandoned,
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
    abandoned: AtomicU64,
    pub(crate) busy: AtomicBool,
    /// Queue entries this tally's thread took off the queue (a worker, or
    /// the supervisor draining it for `others`). One writer at a time, so a
    /// load and a `Release` store, no read-modify-write; read by
    /// [`Intake::close_and_drain`].
    taken: AtomicU64,
    /// Bumped by the supervisor when it detaches this position's stuck
    /// thread; a worker that sees it differ from its own exits as a stray
    /// once it returns from its job (registry invariant 6).
    pub(crate) generation: AtomicU64,
}

impl Tally {
    /// Counts one finished job. SeqCst: see the module docs.
    pub(crate) fn count(&self, ending: Ending) {
        match ending {
            Ending::Completed => self.completed.fetch_add(1, SeqCst),
            Ending::Failed => self.failed.fetch_add(1, SeqCst),
            Ending::Panicked => {
                self.panicked.fetch_add(1, SeqCst);
                self.failed.fetch_add(1, SeqCst)
            }
            Ending::Cancelled => self.cancelled.fetch_add(1, SeqCst),
            Ending::Abandoned => self.abandoned.fetch_add(1, SeqCst),
        };
    }

    /// Counts one entry taken off the queue. Call only on the thread that
    /// owns this tally (see `taken`), right after the dequeue.
    pub(crate) fn took(&self) {
        // Release: a drain that sees this count also sees the entry gone
        // from the queue (the dequeue precedes it).
        self.taken.store(self.taken.load(Relaxed) + 1, Release);
    }

    fn finished(&self) -> u64 {
        self.completed.load(SeqCst)
            + self.failed.load(SeqCst)
            + self.cancelled.load(SeqCst)
            + self.abandoned.load(SeqCst)
    }
}

/// Every counter of one pool.
pub(crate) struct Counters {
    /// The intake gate and submission counts; written by submitters only.
    pub(crate) intake: Intake,
    pub(crate) restarts: AtomicU64,
    pub(crate) alive: AtomicUsize,
    /// Detached threads still running.
    pub(crate) strays: AtomicUsize,
    /// Jobs ended by threads other than workers.
    pub(crate) others: Tally,
    /// Indexed by worker index; a respawned worker keeps its tally.
    pub(crate) workers: Box<[Tally]>,
    /// Queue wait and run time histograms, per worker (`metrics/latency.rs`).
    pub(crate) latency: Latency,
}

impl Counters {
    /// Counters for `workers` workers, with latency histograms if
    /// `latency` ([`Builder::latency_metrics`](crate::Builder::latency_metrics)).
    pub(crate) fn new(workers: usize, latency: bool) -> Self {
        Counters {
            intake: Intake::default(),
            restarts: AtomicU64::new(0),
            alive: AtomicUsize::new(0),
            strays: AtomicUsize::new(0),
            others: Tally::default(),
            workers: (0..workers).map(|_| Tally::default()).collect(),
            latency: Latency::new(workers, latency),
        }
    }

    /// Accepted jobs not yet finished (pending or running), as far as the
    /// counters can tell, and the accepted count read for it; exact when no
    /// thread is mid-way through a job's bookkeeping.
    ///
    /// Reads the finishes first: a job seen finished was counted submitted
    /// before (the queue orders the two, or, for a job cancelled by id
    /// before its entry was queued, the registry), so it is also seen
    /// submitted, and
    /// the result can only overestimate, never miss a live job. A zero
    /// therefore means every submission entered up to the accepted count's
    /// read had finished or been refused (idle invariant 7).
    pub(crate) fn outstanding(&self) -> (u64, u64) {
        let finished: u64 = self.tallies().map(Tally::finished).sum();
        let accepted = self.intake.accepted();
        (accepted.saturating_sub(finished), accepted)
    }

    /// Queue entries taken off the queue so far, by every worker and the
    /// supervisor.
    pub(crate) fn taken(&self) -> u64 {
        // Acquire: pairs with `Tally::took`.
        self.tallies().map(|tally| tally.taken.load(Acquire)).sum()
    }

    fn tallies(&self) -> impl Iterator<Item = &Tally> {
        self.workers.iter().chain(std::iter::once(&self.others))
    }

    pub(crate) fn snapshot(&self, queued: usize) -> PoolStats {
        let mut stats = PoolStats {
            workers: self.workers.len(),
            // Acquire: pairs with a worker's Release when it counts itself
            // alive, so the restart that spawned it is seen too (the
            // supervisor counts it before spawning).
            alive: self.alive.load(Acquire),
            queued,
            restarts: self.restarts.load(Relaxed),
            stray_threads: self.strays.load(Relaxed),
            ..PoolStats::default()
        };
        for tally in self.tallies() {
            stats.busy += usize::from(tally.busy.load(Relaxed));
            stats.completed += tally.completed.load(SeqCst);
            stats.failed += tally.failed.load(SeqCst);
            stats.panicked += tally.panicked.load(SeqCst);
            stats.cancelled += tally.cancelled.load(SeqCst);
            stats.abandoned += tally.abandoned.load(SeqCst);
        }
        // After the finishes, as in `outstanding`: `submitted` is never seen
        // below `completed + failed + cancelled`.
        stats.submitted = self.intake.accepted();
        stats
    }
}

/// The intake gate (shared invariant 1) and the submission counts, on a
/// cache line of its own: submitters write it for every job, and it must not
/// share a line with the read-mostly fields workers load per job.
///
/// A queued submission costs one read-modify-write here, `entered` (it is
/// also the submission count). Leaving is not counted: a permit's job is
/// either in the queue, taken off it (each taker counts its entries, with
/// no read-modify-write, [`Tally::took`]), or refused (`withdrawn`, the rare
/// path). So [`close_and_drain`](Intake::close_and_drain) knows every
/// permit granted before it closed has left once entries taken, entries
/// queued and permits withdrawn add up to the permits granted.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Intake {
    /// Submissions begun, times two; bit 0 is "closed".
    entered: AtomicU64,
    /// Permits granted and then refused (full queue, shutdown while
    /// blocked): they left without queueing anything.
    withdrawn: AtomicU64,
    /// Submissions refused (closed intake, full queue, shutdown while blocked).
    refused: AtomicU64,
}

const CLOSED: u64 = 1;
const ONE: u64 = 2;

/// A submitter inside the intake; leaving is counted when it drops. A
/// permit dropped without [`Permit::queued`] (the queue refused the job, or
/// the submitter unwound) counts the submission as refused, so it is never
/// counted as a job still to come.
pub(crate) struct Permit<'a> {
    intake: &'a Intake,
    queued: bool,
}

impl Intake {
    /// Enters, counting the submission, or `None` once closed.
    ///
    /// The caller calls `Shared::check_idle` after a `None`: a submission
    /// that raced with `close_and_drain` was counted and then refused, and a
    /// join may have seen it in between.
    pub(crate) fn enter(&self) -> Option<Permit<'_>> {
        // Once closed, refuse without counting: a stream of submissions
        // after shutdown must not keep the counters moving, or a join could
        // keep catching one half-counted.
        if self.is_closed() {
            return None;
        }
        // SeqCst pairs with `close`: either this sees CLOSED, or `close`'s
        // caller counts this submission in the value it waits for.
        let previous = self.entered.fetch_add(ONE, SeqCst);
        if previous & CLOSED != 0 {
            // Closed just now: not waited for, so not `withdrawn`.
            self.refused.fetch_add(1, SeqCst);
            return None;
        }
        Some(Permit {
            intake: self,
            queued: false,
        })
    }

    /// Closes the intake and waits for every submitter that entered before
    /// to leave. Afterwards nothing can be queued again.
    ///
    /// `delivered` counts the entries that reached the queue: those taken
    /// off it ([`Counters::taken`]), read first, then those in it. It never
    /// counts an entry twice (one seen taken is seen gone from the queue),
    /// and may miss one moving between the two reads, which only makes this
    /// look again. An entry counts as in the queue from the moment its send
    /// reserved its slot; a worker that finds the slot still being written
    /// waits for it, so it is not lost.
    pub(crate) fn close_and_drain(&self, delivered: impl Fn() -> u64) {
        let before = self.entered.fetch_or(CLOSED, SeqCst) / ONE;
        // Bounded: a permit is held only across taking a queue slot, a
        // registry insert and one queue send, and a submitter waiting for a
        // slot is woken by closing the slots, which the caller does before
        // this. Every permit granted before `before` ends queued (counted
        // by `delivered` once its send reserved a slot) or withdrawn.
        while self.withdrawn.load(SeqCst) + delivered() < before {
            std::thread::yield_now();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.entered.load(SeqCst) & CLOSED != 0
    }

    /// Submissions accepted so far. Reads `refused` first: a refusal is
    /// always counted after its submission, so this never undercounts.
    pub(crate) fn accepted(&self) -> u64 {
        let refused = self.refused.load(SeqCst);
        (self.entered.load(SeqCst) / ONE).saturating_sub(refused)
    }
}

impl Permit<'_> {
    /// The job is in the queue.
    pub(crate) fn queued(mut self) {
        self.queued = true;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.queued {
            self.intake.refused.fetch_add(1, SeqCst);
            // After `refused`: `close_and_drain` seeing this permit leave
            // implies `accepted` no longer counts it.
            self.intake.withdrawn.fetch_add(1, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    use crate::sync::{PATIENCE, eventually};

    /// Shared invariant 1 with one read-modify-write per submission: the
    /// drain returns only once every permit granted before it closed has
    /// queued its entry (counted by `delivered`) or been withdrawn.
    #[test]
    fn close_and_drain_waits_for_every_permit_granted_before() {
        let intake = Arc::new(Intake::default());
        let delivered = Arc::new(AtomicU64::new(0));
        let queueing = intake.enter().unwrap();
        let refusing = intake.enter().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let drain = {
            let (intake, delivered) = (Arc::clone(&intake), Arc::clone(&delivered));
            std::thread::spawn(move || {
                intake.close_and_drain(|| delivered.load(SeqCst));
                done_tx.send(()).unwrap();
            })
        };
        assert!(eventually(|| intake.is_closed()));
        assert!(intake.enter().is_none(), "no permit once closed");
        drop(refusing);
        // A bounded look: one permit is still out.
        assert!(done_rx.recv_timeout(Duration::from_millis(50)).is_err());
        // Its entry reaches the queue (a send reserves its slot), then the
        // submitter leaves.
        delivered.store(1, SeqCst);
        queueing.queued();
        done_rx.recv_timeout(PATIENCE).unwrap();
        drain.join().unwrap();
        assert_eq!(intake.accepted(), 1);
    }

    #[test]
    fn panicked_counts_as_failed_too() {
        let counters = Counters::new(2, true);
        counters.intake.enter().unwrap().queued();
        counters.intake.enter().unwrap().queued();
        drop(counters.intake.enter().unwrap());
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
