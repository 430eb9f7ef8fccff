//! Tests of [`Shared`](super::Shared): the idle handshake when queued jobs
//! end before a worker takes them off the queue, and the bounded queue's
//! slots. "Invariant N" means the list in the parent module's docs
//! (`shared.rs`); other lists are named ("idle invariant 6").

use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use crate::sync::{PATIENCE, eventually};
use crate::{CancelOutcome, JobId, JobOptions, JobStatus, Pool, SubmitError};

/// How the queued job gets cancelled, and who takes it off the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    /// Its deadline passes; the worker sees the deadline when it
    /// dequeues it.
    Deadline,
    /// By id; the worker finds it cancelled when it dequeues it.
    ById,
    /// By id, then `shutdown_now`: the supervisor (or the worker, if it
    /// gets there first) drains it.
    ByIdThenAbort,
}

/// A job cancelled while queued is counted finished by whoever cancelled
/// it; the thread that later takes it off the queue must still wake a
/// `join` that began meanwhile, however it was cancelled.
#[test]
fn join_wakes_when_the_last_queued_job_was_cancelled_while_pending() {
    for way in [Way::Deadline, Way::ById, Way::ByIdThenAbort] {
        let pool = Pool::new(1).unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        pool.execute(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(PATIENCE);
        })
        .unwrap();
        started_rx.recv_timeout(PATIENCE).unwrap();

        let options = match way {
            Way::Deadline => JobOptions::new().timeout(Duration::from_millis(1)),
            Way::ById | Way::ByIdThenAbort => JobOptions::new(),
        };
        let job = pool.submit_with(options, |_| Ok(())).unwrap();
        if way != Way::Deadline {
            job.cancel();
        }
        assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));

        std::thread::scope(|scope| {
            let (joined_tx, joined_rx) = mpsc::channel();
            let pool = &pool;
            // Waits up to twice as long as the test does, so a missed
            // wake-up shows as a `join` that does not return in time
            // (on timeout it would report the, by then idle, pool as idle).
            scope.spawn(move || {
                let _ = joined_tx.send(pool.join_timeout(2 * PATIENCE));
            });
            // The blocking job must end while `join` waits, with the
            // cancelled job still in the queue behind it (the shape of
            // the lost wake-up this test pins).
            assert!(eventually(|| pool.shared.idle.joiners() == 1));
            if way == Way::ByIdThenAbort {
                // Starts the shutdown without waiting for it.
                pool.shared.begin_shutdown(super::Mode::Now);
            }
            release_tx.send(()).unwrap();
            assert_eq!(
                joined_rx.recv_timeout(PATIENCE),
                Ok(true),
                "join missed the wake-up ({way:?})"
            );
        });
    }
}

/// A one-worker pool that allows no stray thread, its only worker stuck
/// in a job that has been abandoned (counted finished, but its thread is
/// held in place, builder `max_stray_threads(0)`), and behind it the
/// entry of a job cancelled while queued. By the counters the pool is
/// idle; the entry stays queued until the stuck job returns (here: when
/// the returned sender is used, at the latest after twice PATIENCE).
fn idle_behind_a_held_abandoned_job(
    pool: &Pool,
    before_abandon: impl FnOnce(),
) -> mpsc::Sender<()> {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let options = JobOptions::new().abandon_after(Duration::from_millis(10));
    // Ignores its token.
    let stuck = pool
        .submit_with(options, move |_| {
            started_tx.send(()).unwrap();
            // Longer than the tests' wait for the join, so a join that
            // returns only because this job did fails them.
            let _ = release_rx.recv_timeout(2 * PATIENCE);
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let queued = pool.submit(|_| Ok(())).unwrap();
    assert_eq!(queued.cancel(), CancelOutcome::Cancelled);
    before_abandon();
    assert_eq!(stuck.cancel(), CancelOutcome::Requested);
    assert_eq!(stuck.wait(PATIENCE), Some(JobStatus::Abandoned));
    let stats = pool.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.cancelled,
            stats.abandoned,
            stats.queued
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(stats.stray_threads, 0, "held in place, not detached");
    release_tx
}

/// Regression of idle invariant 6 extended to waiters: a join that
/// begins once the pool is idle sees the queued entry, skips its sum and
/// sleeps until the stuck job returns (forever, if it never does).
#[test]
fn a_join_of_an_idle_pool_is_not_held_by_an_entry_no_worker_takes() {
    let pool = Pool::builder()
        .workers(1)
        .max_stray_threads(0)
        .build()
        .unwrap();
    let release = idle_behind_a_held_abandoned_job(&pool, || {});
    std::thread::scope(|scope| {
        let (joined_tx, joined_rx) = mpsc::channel();
        let pool = &pool;
        scope.spawn(move || {
            pool.join();
            let _ = joined_tx.send(());
        });
        let joined = joined_rx.recv_timeout(PATIENCE);
        // Unsticks the worker, which takes the entry off and checks.
        release.send(()).unwrap();
        assert_eq!(joined, Ok(()), "join slept on an idle pool");
    });
}

/// The same with the join begun before the abandonment: the
/// supervisor's check after counting the job `Abandoned` sees the queued
/// entry and skips (finisher side of idle invariant 6, before a2371e1
/// too).
#[test]
fn a_join_begun_before_an_abandonment_wakes_on_an_idle_pool() {
    let pool = Pool::builder()
        .workers(1)
        .max_stray_threads(0)
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        let (joined_tx, joined_rx) = mpsc::channel();
        let pool = &pool;
        let release = idle_behind_a_held_abandoned_job(pool, || {
            scope.spawn(move || {
                pool.join();
                let _ = joined_tx.send(());
            });
            assert!(eventually(|| pool.shared.idle.joiners() == 1));
        });
        let joined = joined_rx.recv_timeout(PATIENCE);
        release.send(()).unwrap();
        assert_eq!(joined, Ok(()), "join slept on an idle pool");
    });
}

/// A one-worker pool with a full queue of `capacity` tracked jobs, its
/// worker blocked until the returned sender is used.
fn full(capacity: usize) -> (Arc<Pool>, mpsc::Sender<()>, Vec<JobId>) {
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .queue_capacity(capacity)
            .build()
            .unwrap(),
    );
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    pool.execute(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(PATIENCE);
    })
    .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let ids = (0..capacity)
        .map(|_| pool.try_submit(|_| Ok(())).unwrap().id())
        .collect();
    (pool, release_tx, ids)
}

fn slots(pool: &Pool) -> &super::Slots {
    pool.shared.slots.as_ref().unwrap()
}

/// Invariant 5: a cancel by id releases the slot to a submitter already
/// asleep waiting for one (the wake-up path, not the fast path).
#[test]
fn a_cancel_wakes_a_submitter_waiting_for_a_slot() {
    let (pool, release, ids) = full(2);
    let (result_tx, result_rx) = mpsc::channel();
    let submitter = Arc::clone(&pool);
    let thread = std::thread::spawn(move || {
        let _ = result_tx.send(submitter.submit(|_| Ok(())).map(|h| h.id()));
    });
    assert!(eventually(|| slots(&pool).waiters() == 1));
    assert_eq!(pool.cancel(ids[0]), CancelOutcome::Cancelled);
    let id = result_rx.recv_timeout(PATIENCE).unwrap().unwrap();
    assert_eq!(slots(&pool).occupied(), 2);
    release.send(()).unwrap();
    assert_eq!(pool.wait(id, PATIENCE), Some(JobStatus::Completed));
    thread.join().unwrap();
    assert!(pool.join_timeout(PATIENCE));
    assert_eq!((slots(&pool).occupied(), slots(&pool).waiters()), (0, 0));
}

/// Invariant 5 under every way a queued job can leave `Pending`: the
/// deadline timer, a cancel by id, and `shutdown_now` (the supervisor's
/// drain) each give the slot back exactly once.
#[test]
fn every_way_out_of_the_queue_gives_the_slot_back_once() {
    let (pool, release, ids) = full(3);
    let expiring = pool
        .try_submit_with(JobOptions::new().timeout(Duration::from_millis(1)), |_| {
            Ok(())
        })
        .map(drop);
    // Full: the deadline job was refused. Cancel one to let it in.
    assert_eq!(expiring, Err(SubmitError::QueueFull));
    assert_eq!(pool.cancel(ids[0]), CancelOutcome::Cancelled);
    // A second cancel of the same job changes nothing.
    assert_eq!(pool.cancel(ids[0]), CancelOutcome::AlreadyFinished);
    assert_eq!(slots(&pool).occupied(), 2);
    let expiring = pool
        .try_submit_with(JobOptions::new().timeout(Duration::from_millis(1)), |_| {
            Ok(())
        })
        .unwrap();
    assert_eq!(expiring.wait(PATIENCE), Some(JobStatus::Cancelled));
    // The timer leaves the closure to the worker that dequeues it, and
    // the slot with it: the capacity bounds the closures queued.
    assert_eq!(slots(&pool).occupied(), 3);
    assert_eq!(pool.try_execute(|| ()), Err(SubmitError::QueueFull));
    pool.shared.begin_shutdown(super::Mode::Now);
    release.send(()).unwrap();
    assert!(pool.shared.wait_done(crate::sync::deadline_after(PATIENCE)));
    assert_eq!(slots(&pool).occupied(), 0);
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.completed), (5, 1));
    assert_eq!(stats.cancelled, 4);
}

/// Invariant 5 by repetition: submitters (blocking and not, tracked and
/// not, some with deadlines) race a canceller on a small bounded queue.
/// After every round the slot count is back to zero and the counters
/// add up; a release missed or doubled would show here (or trip the
/// `debug_assert` in `Slots::release`).
#[test]
fn racing_submits_and_cancels_give_every_slot_back() {
    const ROUNDS: usize = 40;
    const SUBMITTERS: usize = 3;
    const JOBS: usize = 60;
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .queue_capacity(3)
            .retain_finished(0)
            .build()
            .unwrap(),
    );
    let mut cancelled_queued = 0;
    for round in 0..ROUNDS {
        let (ids_tx, ids_rx) = mpsc::channel::<JobId>();
        let start = Arc::new(Barrier::new(SUBMITTERS + 1));
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|s| {
                let (pool, ids_tx, start) = (Arc::clone(&pool), ids_tx.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    for n in 0..JOBS {
                        let options = if n % 5 == 0 {
                            JobOptions::new().timeout(Duration::from_micros(200))
                        } else {
                            JobOptions::new()
                        };
                        let job = move |token: &crate::CancelToken| {
                            token.sleep(Duration::from_micros(50))?;
                            Ok(())
                        };
                        let id = match (n + s + round) % 4 {
                            0 => pool.submit_with(options, job).map(|h| Some(h.id())),
                            1 => pool.try_submit_with(options, job).map(|h| Some(h.id())),
                            2 => pool.execute(|| ()).map(|()| None),
                            _ => pool.try_execute(|| ()).map(|()| None),
                        };
                        match id {
                            Ok(Some(id)) => {
                                let _ = ids_tx.send(id);
                            }
                            Ok(None) | Err(SubmitError::QueueFull) => {}
                            Err(e) => panic!("unexpected refusal: {e}"),
                        }
                    }
                })
            })
            .collect();
        drop(ids_tx);
        start.wait();
        // Cancels every tracked job it hears of, queued or running;
        // ends when every submitter has finished.
        loop {
            match ids_rx.recv_timeout(PATIENCE) {
                Ok(id) => {
                    if pool.cancel(id) == CancelOutcome::Cancelled {
                        cancelled_queued += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("round {round}: a submitter is stuck")
                }
            }
        }
        for submitter in submitters {
            submitter.join().unwrap();
        }
        assert!(pool.join_timeout(PATIENCE), "round {round}: not idle");
        let stats = pool.stats();
        assert_eq!(
            stats.submitted,
            stats.completed + stats.failed + stats.cancelled,
            "round {round}: {stats:?}"
        );
        assert_eq!(
            (slots(&pool).occupied(), slots(&pool).waiters()),
            (0, 0),
            "round {round}"
        );
    }
    // The race reached the path under test: jobs cancelled while queued.
    assert!(cancelled_queued > 0);
    assert_eq!(pool.stats().restarts, 0);
}
