//! The join/idle handshake: [`IdleGate`].
//!
//! `Pool::join` waits here until no accepted job is pending or running;
//! every thread that counts a job finished (or a submission refused) checks
//! here afterwards. The gate knows nothing of the pool: the caller passes
//! the number of outstanding jobs as a closure (`Counters::outstanding`,
//! a sum over the counters, in the pool), so the handshake is modelled on
//! its own (`loom_tests` below).
//!
//! The guarantee: a wait returns `true` once the pool has been idle at some
//! instant after the wait began, as seen either by the waiter's own sum or by
//! a finishing thread's. Every thread waiting when a finishing thread sees
//! the pool idle returns, even if new work is submitted before it runs
//! again: the generation, not a second look at the counters, tells it.
//! Without that, a service that never stops receiving work could keep a
//! `join` asleep forever behind the first waiter to wake (threadpool's
//! `test_join_wavesurfer`).
//!
//! Invariants:
//!
//! 1. Handshake: a waiter registers in `joiners` and then sums; a finisher
//!    counts its finish and then loads `joiners` (all `SeqCst`). So either
//!    the waiter's sum sees the finish, or the finisher sees the waiter.
//! 2. A waiter registers and reads the generation in one critical section
//!    of `generation`'s lock. So a finisher that saw it (by 1) takes the
//!    lock after that section: every generation bump it makes is one the
//!    waiter counts.
//! 3. The generation is bumped by whoever sums zero *under the lock*: a
//!    finisher in `check`, or a waiter in `wait` (which then releases the
//!    others, or a waiter that sees the pool idle first and submits at once
//!    would leave them asleep). A bump therefore records an idle instant
//!    inside that critical section, after the start of every wait that
//!    counts it (by 2). A sum taken before the lock could predate a later
//!    waiter and release it while its pool was never idle, so it only
//!    decides whether to take the lock.
//! 4. A waiter returns `true` when the generation moved since it registered
//!    or its own sum (under the lock) is zero; it re-checks after every
//!    wake, spurious or not. With 1 to 3: no wake-up is lost, every waiter
//!    of an idle instant that a finisher or a waiter sees returns, and none
//!    returns `true` for an instant before it began.
//! 5. `generation`'s lock is a leaf: the `outstanding` closure must not take
//!    a lock, and no user code runs under it.
//! 6. A finisher may skip the sum when [`IdleGate::check_unless`]'s
//!    `pending` says so: the pool's says "the queue holds an entry", and
//!    whoever takes that entry off checks afterwards (a worker after the
//!    job it ran, or after an entry it skipped, already ended; the
//!    supervisor after draining). Each side puts a `SeqCst` fence between
//!    its own write (the finisher's count, the taker's dequeue) and its
//!    read of the other's (the queue, the counters), so either the finisher
//!    sees the entry gone or the taker's sum sees the finish. Without it,
//!    every finish while someone joins would sum every worker's tally:
//!    O(workers) cache misses per job.

use std::time::Instant;

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Condvar, Mutex, lock, seq_cst_handshake, wait_until};

/// Where `join` waits for the pool to go idle (see the module docs).
pub(crate) struct IdleGate {
    /// Threads in [`IdleGate::wait`]; finishers skip the gate while it is 0,
    /// so a pool nobody joins pays one load per finish.
    joiners: AtomicUsize,
    /// Idle instants seen by finishers while someone waited (invariant 3).
    /// Wraps; a waiter only compares it for equality.
    generation: Mutex<u64>,
    /// Notified, under `generation`'s lock, when it moves.
    idle: Condvar,
}

impl IdleGate {
    pub(crate) fn new() -> Self {
        IdleGate {
            joiners: AtomicUsize::new(0),
            generation: Mutex::new(0),
            idle: Condvar::new(),
        }
    }

    /// Called after a job was counted finished (or a submission refused):
    /// releases every waiter if `outstanding` is now zero. Costs one load
    /// of a read-mostly line unless someone waits.
    #[cfg(test)]
    pub(crate) fn check(&self, outstanding: impl Fn() -> u64) {
        self.check_unless(|| false, outstanding);
    }

    /// As [`check`](Self::check), but while someone waits, first asks
    /// `pending`, an O(1) look that says the caller need not sum: `true`
    /// only if some thread will check again after this one's count is
    /// visible to it (invariant 6). `outstanding` may be a sum over every
    /// worker; `pending` spares it on every finish while work is queued.
    pub(crate) fn check_unless(&self, pending: impl Fn() -> bool, outstanding: impl Fn() -> u64) {
        // The caller's count comes before this load (invariant 1; see
        // `seq_cst_handshake` for the model's fence). Of several finishing
        // threads, the last to count sees every finish in its sum.
        seq_cst_handshake();
        if self.joiners.load(Ordering::SeqCst) == 0 {
            return;
        }
        if pending() {
            return;
        }
        // A first look without the lock, so that a busy pool with a waiter
        // does not take the lock on every finish.
        if outstanding() != 0 {
            return;
        }
        let mut generation = lock(&self.generation);
        // Invariant 3: only a sum under the lock may release waiters. If a
        // submission arrived since the look above, the pool was idle only
        // before the lock; the job just submitted ends with a check of its
        // own (its finish is counted after every current waiter registered).
        if outstanding() == 0 {
            self.release(&mut generation, 0);
        }
    }

    /// Records an idle instant seen under `generation`'s lock (the caller
    /// holds it) and wakes every waiter (invariant 3). `caller_waits` is 1
    /// when the caller is itself a waiter.
    fn release(&self, generation: &mut u64, caller_waits: usize) {
        *generation = generation.wrapping_add(1);
        // Waiters register and leave under the lock the caller holds, so
        // this count is exact: skip the notification (a syscall) when no
        // one else waits.
        if self.joiners.load(Ordering::SeqCst) > caller_waits {
            self.idle.notify_all();
        }
    }

    /// Blocks until `outstanding` has been zero at some instant after this
    /// call began (see the module docs), or `deadline` passes. Returns
    /// whether it was.
    pub(crate) fn wait(&self, outstanding: impl Fn() -> u64, deadline: Option<Instant>) -> bool {
        let mut generation = lock(&self.generation);
        // Invariant 2: registered and the start read in one critical section.
        self.joiners.fetch_add(1, Ordering::SeqCst);
        let start = *generation;
        seq_cst_handshake();
        // Bounded by `deadline`: after a timeout, one last look and out.
        // Re-checks after every (possibly spurious) wake (invariant 4).
        let mut timed_out = false;
        let idle = loop {
            if *generation != start {
                break true;
            }
            if outstanding() == 0 {
                // Invariant 3: this sighting releases the other waiters too.
                self.release(&mut generation, 1);
                break true;
            }
            if timed_out {
                break false;
            }
            (generation, timed_out) = wait_until(&self.idle, generation, deadline);
        };
        self.joiners.fetch_sub(1, Ordering::SeqCst);
        idle
    }

    /// Threads in [`wait`](Self::wait) now.
    #[cfg(test)]
    pub(crate) fn joiners(&self) -> usize {
        self.joiners.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::IdleGate;
    use crate::sync::{PATIENCE, eventually};

    #[test]
    fn an_idle_count_returns_at_once_and_a_busy_one_times_out() {
        let gate = IdleGate::new();
        assert!(gate.wait(|| 0, None));
        let soon = Instant::now() + Duration::from_millis(5);
        assert!(!gate.wait(|| 1, Some(soon)));
        assert_eq!(gate.joiners(), 0);
    }

    /// The generation releases every waiter of an idle instant, although
    /// the count is no longer zero when they wake.
    #[test]
    fn every_waiter_of_an_idle_instant_returns_after_new_work() {
        let gate = Arc::new(IdleGate::new());
        let outstanding = Arc::new(AtomicU64::new(1));
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let (gate, outstanding, tx) = (gate.clone(), outstanding.clone(), tx.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + 2 * PATIENCE;
                let idle = gate.wait(|| outstanding.load(Ordering::SeqCst), Some(deadline));
                // New work at once, as a waiter that resubmits would.
                outstanding.fetch_add(1, Ordering::SeqCst);
                tx.send(idle).unwrap();
            });
        }
        assert!(eventually(|| gate.joiners() == 3));
        outstanding.fetch_sub(1, Ordering::SeqCst);
        gate.check(|| outstanding.load(Ordering::SeqCst));
        for _ in 0..3 {
            assert_eq!(rx.recv_timeout(PATIENCE), Ok(true));
        }
    }

    /// A look at the counters taken before another joiner began does not
    /// release it (invariant 3).
    #[test]
    fn a_stale_sum_does_not_release_a_later_waiter() {
        let gate = Arc::new(IdleGate::new());
        let outstanding = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        {
            let (gate, outstanding) = (gate.clone(), outstanding.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_millis(200);
                // Work submitted before the wait began, never finished.
                outstanding.fetch_add(1, Ordering::SeqCst);
                tx.send(gate.wait(|| outstanding.load(Ordering::SeqCst), Some(deadline)))
                    .unwrap();
            });
        }
        assert!(eventually(|| gate.joiners() == 1));
        // A finisher whose first look (outside the lock) saw zero before
        // that submission: its sum under the lock must decide.
        let looks = AtomicU64::new(0);
        gate.check(|| {
            if looks.fetch_add(1, Ordering::SeqCst) == 0 {
                0
            } else {
                outstanding.load(Ordering::SeqCst)
            }
        });
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(false));
    }
}

/// loom models of the handshake, one per named race. Run with
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib loom` (see
/// "Verification" in `docs/design.md`). A lost wake-up shows as loom's
/// deadlock report; a wrong answer as a failed assertion.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use loom::thread;

    use super::IdleGate;
    use crate::sync::model;

    /// The gate with a count of outstanding jobs, as `Shared` uses it.
    struct Pool {
        gate: IdleGate,
        outstanding: AtomicU64,
    }

    impl Pool {
        fn new(jobs: u64) -> Arc<Pool> {
            Arc::new(Pool {
                gate: IdleGate::new(),
                outstanding: AtomicU64::new(jobs),
            })
        }

        fn submit(&self) {
            self.outstanding.fetch_add(1, SeqCst);
        }

        /// Counts a finish, then checks, as every finishing thread does.
        fn finish(&self) {
            self.outstanding.fetch_sub(1, SeqCst);
            self.gate.check(|| self.outstanding.load(SeqCst));
        }

        fn join(&self) -> bool {
            self.gate.wait(|| self.outstanding.load(SeqCst), None)
        }
    }

    /// A finisher vs a joiner: the joiner sees the finish or is woken by it
    /// (invariant 1).
    #[test]
    fn loom_finisher_vs_joiner() {
        model(|| {
            let pool = Pool::new(1);
            let finisher = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || pool.finish())
            };
            assert!(pool.join());
            finisher.join().unwrap();
        });
    }

    /// Two finishers vs a joiner: whichever counts last sees both finishes
    /// and wakes the joiner.
    #[test]
    fn loom_two_finishers_vs_joiner() {
        model(|| {
            let pool = Pool::new(2);
            let finishers: Vec<_> = (0..2)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    thread::spawn(move || pool.finish())
                })
                .collect();
            assert!(pool.join());
            for finisher in finishers {
                finisher.join().unwrap();
            }
        });
    }

    /// Two joiners waiting when the pool goes idle, and the first to return
    /// submits new work that never finishes: both return `true` (the
    /// generation, invariant 4). This is threadpool's wavesurfer.
    #[test]
    fn loom_two_joiners_a_finisher_and_a_resubmit() {
        model(|| {
            let pool = Pool::new(1);
            let joiners: Vec<_> = (0..2)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    thread::spawn(move || {
                        let idle = pool.join();
                        pool.submit();
                        idle
                    })
                })
                .collect();
            // Both wait before the pool goes idle (bounded: each joiner
            // registers in its first step under the lock).
            while pool.gate.joiners() < 2 {
                thread::yield_now();
            }
            pool.finish();
            for joiner in joiners {
                assert!(joiner.join().unwrap());
            }
        });
    }

    /// A finisher's look at the counters that predates a joiner does not
    /// release that joiner (invariant 3): a join that began after a job was
    /// submitted returns only after that job finished.
    #[test]
    fn loom_a_stale_sighting_does_not_release_a_later_joiner() {
        model(|| {
            let pool = Pool::new(1);
            let first = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || pool.finish())
            };
            let later = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    let finished = Arc::new(AtomicBool::new(false));
                    pool.submit();
                    let finisher = {
                        let (pool, finished) = (Arc::clone(&pool), Arc::clone(&finished));
                        thread::spawn(move || {
                            finished.store(true, SeqCst);
                            pool.finish();
                        })
                    };
                    assert!(pool.join());
                    assert!(
                        finished.load(SeqCst),
                        "released before the job it was submitted behind finished"
                    );
                    finisher.join().unwrap();
                })
            };
            // The joiner whose presence makes the first finisher look.
            assert!(pool.join());
            first.join().unwrap();
            later.join().unwrap();
        });
    }
}
