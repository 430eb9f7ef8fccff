//! Tests of [`IdleGate`](super::IdleGate) against counters of their own
//! (no pool). "Invariant N" means the list in the parent module's docs
//! (`idle.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Counts, IdleGate};
use crate::sync::{PATIENCE, eventually};

/// Counters as a pool keeps them, and how often they were summed.
#[derive(Default)]
struct Jobs {
    accepted: AtomicU64,
    finished: AtomicU64,
    /// Queue entries (`pending`).
    queued: AtomicU64,
    sums: AtomicU64,
    /// The next sum answers as if taken before any job was submitted.
    stale: AtomicBool,
}

impl Jobs {
    fn with(accepted: u64) -> Arc<Jobs> {
        let jobs = Jobs::default();
        jobs.accepted.store(accepted, SeqCst);
        Arc::new(jobs)
    }

    fn sums(&self) -> u64 {
        self.sums.load(SeqCst)
    }
}

impl Counts for Jobs {
    fn pending(&self) -> bool {
        self.queued.load(SeqCst) > 0
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(SeqCst)
    }

    fn outstanding(&self) -> (u64, u64) {
        self.sums.fetch_add(1, SeqCst);
        if self.stale.swap(false, SeqCst) {
            return (0, 0);
        }
        let finished = self.finished.load(SeqCst);
        let accepted = self.accepted.load(SeqCst);
        (accepted - finished, accepted)
    }
}

#[test]
fn an_idle_count_returns_at_once_and_a_busy_one_times_out() {
    let gate = IdleGate::new();
    assert!(gate.wait(&*Jobs::with(0), None));
    let soon = Instant::now() + Duration::from_millis(5);
    assert!(!gate.wait(&*Jobs::with(1), Some(soon)));
    assert_eq!(gate.joiners(), 0);
}

/// The generation releases every waiter of an idle instant, although
/// the count is no longer zero when they wake.
#[test]
fn every_waiter_of_an_idle_instant_returns_after_new_work() {
    let gate = Arc::new(IdleGate::new());
    let jobs = Jobs::with(1);
    let (tx, rx) = mpsc::channel();
    for _ in 0..3 {
        let (gate, jobs, tx) = (gate.clone(), jobs.clone(), tx.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + 2 * PATIENCE;
            let idle = gate.wait(&*jobs, Some(deadline));
            // New work at once, as a waiter that resubmits would.
            jobs.accepted.fetch_add(1, SeqCst);
            tx.send(idle).unwrap();
        });
    }
    assert!(eventually(|| gate.joiners() == 3));
    jobs.finished.fetch_add(1, SeqCst);
    gate.check(&*jobs);
    for _ in 0..3 {
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(true));
    }
}

/// A look at the counters taken before another joiner began does not
/// release it (invariant 3).
#[test]
fn a_stale_sum_does_not_release_a_later_waiter() {
    let gate = Arc::new(IdleGate::new());
    let jobs = Jobs::with(0);
    let (tx, rx) = mpsc::channel();
    {
        let (gate, jobs) = (gate.clone(), jobs.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(200);
            // Work submitted before the wait began, never finished.
            jobs.accepted.fetch_add(1, SeqCst);
            tx.send(gate.wait(&*jobs, Some(deadline))).unwrap();
        });
    }
    assert!(eventually(|| gate.joiners() == 1));
    // A finisher whose first look (outside the lock) saw zero before
    // that submission: its sum under the lock must decide.
    jobs.stale.store(true, SeqCst);
    gate.check(&*jobs);
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(false));
}

/// Invariant 7: once a sum saw the pool idle, joining it again costs
/// no sum until a job is accepted; then the mark no longer answers.
#[test]
fn an_idle_pool_is_joined_again_without_a_sum() {
    let gate = IdleGate::new();
    let jobs = Jobs::with(3);
    jobs.finished.store(3, SeqCst);
    assert!(gate.wait(&*jobs, None));
    assert_eq!(jobs.sums(), 1);
    for _ in 0..10 {
        assert!(gate.wait(&*jobs, None));
    }
    assert_eq!(jobs.sums(), 1, "the mark answered");
    jobs.accepted.fetch_add(1, SeqCst);
    let soon = Instant::now() + Duration::from_millis(5);
    assert!(!gate.wait(&*jobs, Some(soon)), "a job is outstanding");
    assert!(jobs.sums() > 1);
    // A finisher's idle sum leaves a new mark.
    jobs.finished.fetch_add(1, SeqCst);
    let waiting = jobs.sums();
    assert!(gate.wait(&*jobs, None));
    assert!(gate.wait(&*jobs, None));
    assert_eq!(jobs.sums(), waiting + 1);
}

/// Invariant 6: a worker going back to the queue skips its sum while
/// the queue holds an entry; the taker of the entry checks and releases
/// the waiter. Every other checker, and the waiter, sum regardless: an
/// entry of a job that already ended leaves the pool idle.
#[test]
fn only_a_worker_going_back_to_the_queue_skips_its_sum() {
    let gate = Arc::new(IdleGate::new());
    let jobs = Jobs::with(2);
    jobs.finished.store(1, SeqCst);
    jobs.queued.store(1, SeqCst);
    let (tx, rx) = mpsc::channel();
    {
        let (gate, jobs) = (gate.clone(), jobs.clone());
        std::thread::spawn(move || {
            tx.send(gate.wait(&*jobs, Some(Instant::now() + 2 * PATIENCE)))
                .unwrap();
        });
    }
    assert!(eventually(|| gate.joiners() == 1));
    let waiting = jobs.sums();
    assert!(waiting >= 1, "the waiter summed");
    // A worker finishes the running job and goes back to the queue.
    jobs.finished.fetch_add(1, SeqCst);
    gate.check_before_dequeue(&*jobs);
    assert_eq!(jobs.sums(), waiting, "skipped: the entry's taker checks");
    assert_eq!(gate.joiners(), 1);
    // Any other checker (a canceller, the supervisor) sums: idle.
    gate.check(&*jobs);
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(true));
}
