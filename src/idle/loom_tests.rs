//! loom models of the join/idle handshake (declared, with how to run them,
//! in the parent module, `idle.rs`, whose list "invariant N" means).

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst, fence};
use loom::thread;

use super::{Counts, IdleGate};
use crate::sync::model;

/// The gate with counters as `Shared` keeps them: submissions entered
/// and refused (accepted is their difference), finishes, and queue
/// entries.
struct Pool {
    gate: IdleGate,
    entered: AtomicU64,
    refused: AtomicU64,
    finished: AtomicU64,
    queued: AtomicU64,
}

impl Counts for Pool {
    fn pending(&self) -> bool {
        fence(SeqCst);
        self.queued.load(SeqCst) > 0
    }

    fn accepted(&self) -> u64 {
        // Refusals first (invariant 7).
        let refused = self.refused.load(SeqCst);
        self.entered.load(SeqCst) - refused
    }

    fn outstanding(&self) -> (u64, u64) {
        let finished = self.finished.load(SeqCst);
        let accepted = self.accepted();
        (accepted - finished, accepted)
    }
}

impl Pool {
    /// A pool with `jobs` accepted jobs, none queued.
    fn new(jobs: u64) -> Arc<Pool> {
        Arc::new(Pool {
            gate: IdleGate::new(),
            entered: AtomicU64::new(jobs),
            refused: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        })
    }

    fn submit(&self) {
        self.entered.fetch_add(1, SeqCst);
    }

    /// Counts a finish, then checks, as every finishing thread does.
    fn finish(&self) {
        self.finished.fetch_add(1, SeqCst);
        self.gate.check(self);
    }

    fn join(&self) -> bool {
        self.gate.wait(self, None)
    }

    /// Submits a job to `pool`, finishes it on another thread that
    /// first raises a flag, and joins: the join, begun behind the job,
    /// must return only after it (`failure` otherwise).
    fn join_behind_a_job(pool: &Arc<Pool>, failure: &str) {
        let finished = Arc::new(AtomicBool::new(false));
        pool.submit();
        let finisher = {
            let (pool, finished) = (Arc::clone(pool), Arc::clone(&finished));
            thread::spawn(move || {
                finished.store(true, SeqCst);
                pool.finish();
            })
        };
        assert!(pool.join());
        assert!(finished.load(SeqCst), "{failure}");
        finisher.join().unwrap();
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
                Pool::join_behind_a_job(
                    &pool,
                    "released before the job it was submitted behind finished",
                )
            })
        };
        // The joiner whose presence makes the first finisher look.
        assert!(pool.join());
        first.join().unwrap();
        later.join().unwrap();
    });
}

/// A worker that finishes a job while the queue holds an entry skips
/// its sum; the worker that takes the entry off (and runs it, or skips
/// it because a canceller ended it while queued) checks afterwards and
/// wakes the joiner (invariant 6).
#[test]
fn loom_a_worker_skips_its_sum_for_the_taker_of_a_queued_entry() {
    for cancelled in [false, true] {
        model(move || {
            // One job running, one queued.
            let pool = Pool::new(2);
            pool.queued.store(1, SeqCst);
            let canceller = cancelled.then(|| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || pool.finish())
            });
            let running = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    pool.finished.fetch_add(1, SeqCst);
                    pool.gate.check_before_dequeue(&*pool);
                })
            };
            let taker = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    pool.queued.fetch_sub(1, SeqCst);
                    if !cancelled {
                        pool.finished.fetch_add(1, SeqCst);
                    }
                    pool.gate.check_before_dequeue(&*pool);
                })
            };
            assert!(pool.join());
            running.join().unwrap();
            taker.join().unwrap();
            if let Some(canceller) = canceller {
                canceller.join().unwrap();
            }
        });
    }
}

/// The idle mark (invariant 7) does not release a joiner whose job was
/// submitted before it joined, even while another submission enters and
/// is refused (the accepted count goes up and back down).
#[test]
fn loom_a_refused_submission_does_not_pass_for_the_idle_mark() {
    model(|| {
        let pool = Pool::new(0);
        // An idle sum leaves the mark 0.
        assert!(pool.join());
        let refused = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                pool.entered.fetch_add(1, SeqCst);
                pool.refused.fetch_add(1, SeqCst);
                pool.gate.check(&*pool);
            })
        };
        Pool::join_behind_a_job(&pool, "released by a stale idle mark");
        refused.join().unwrap();
    });
}
