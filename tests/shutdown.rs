//! Shutdown never loses a job silently and never leaves a thread behind.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use harbor_pool::{JobError, JobOptions, JobStatus, Pool, SubmitError};

#[test]
fn shutdown_runs_everything_queued() {
    let pool = Pool::builder()
        .workers(2)
        .thread_name("sd-drain")
        .build()
        .unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let counter = Arc::clone(&counter);
            pool.submit(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap()
        })
        .collect();
    for _ in 0..100 {
        let counter = Arc::clone(&counter);
        pool.execute(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    pool.shutdown();
    assert_eq!(counter.load(Ordering::SeqCst), 200);
    assert!(handles.iter().all(|h| h.status() == JobStatus::Completed));
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.alive), (200, 0));
    assert!(common::no_threads_named("sd-drain"));
}

#[test]
fn submitting_after_shutdown_is_refused() {
    let pool = Pool::new(1).unwrap();
    pool.shutdown();
    assert!(pool.is_shutdown());
    assert_eq!(pool.execute(|| ()).unwrap_err(), SubmitError::Shutdown);
    assert_eq!(pool.try_execute(|| ()).unwrap_err(), SubmitError::Shutdown);
    assert_eq!(pool.submit(|_| Ok(())).unwrap_err(), SubmitError::Shutdown);
    assert_eq!(
        pool.try_submit(|_| Ok(())).unwrap_err(),
        SubmitError::Shutdown
    );
    assert_eq!(
        pool.submit_with(JobOptions::new(), |_| Ok(())).unwrap_err(),
        SubmitError::Shutdown
    );
    // Shutting down again, in any mode, is harmless.
    pool.shutdown();
    pool.shutdown_now();
    assert!(pool.shutdown_timeout(Duration::from_millis(1)).joined());
    assert_eq!(pool.stats().submitted, 0);
}

#[test]
fn shutdown_now_cancels_queued_jobs_which_never_run() {
    let pool = Pool::builder()
        .workers(1)
        .thread_name("sd-now")
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let running = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(Duration::from_secs(600))?;
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();

    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..10)
        .map(|_| {
            let ran = Arc::clone(&ran);
            pool.submit(move |_| {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap()
        })
        .collect();
    for _ in 0..5 {
        let ran = Arc::clone(&ran);
        pool.execute(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }

    pool.shutdown_now();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "queued jobs never ran");
    assert_eq!(running.status(), JobStatus::Cancelled);
    for handle in queued {
        assert_eq!(handle.status(), JobStatus::Cancelled);
        assert!(matches!(handle.join(), Err(JobError::Cancelled)));
    }
    let stats = pool.stats();
    assert_eq!(stats.cancelled, 16);
    assert_eq!(
        stats.submitted,
        stats.completed + stats.failed + stats.cancelled
    );
    assert!(common::no_threads_named("sd-now"));
}

#[test]
fn shutdown_timeout_escalates_and_reports_stragglers() {
    // A cooperative job: escalation cancels it, every thread exits.
    let pool = Pool::new(1).unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let job = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(Duration::from_secs(600))?;
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();
    assert!(pool.shutdown_timeout(Duration::from_millis(50)).joined());
    assert_eq!(job.status(), JobStatus::Cancelled);

    // A job that ignores its token: shutdown_timeout gives up and says so.
    let pool = Pool::builder()
        .workers(1)
        .thread_name("sd-stuck")
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let stubborn = pool
        .submit(move |_| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(common::PATIENCE);
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();
    assert!(!pool.shutdown_timeout(Duration::from_millis(20)).joined());
    // Dropping the pool now does not wait for the straggler...
    drop(pool);
    // ...which finishes on its own, and then its threads are gone.
    release_tx.send(()).unwrap();
    assert_eq!(stubborn.wait(common::PATIENCE), Some(JobStatus::Completed));
    assert!(common::no_threads_named("sd-stuck"));
}

#[test]
fn dropping_the_last_handle_inside_its_own_job_does_not_deadlock() {
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .thread_name("sd-self")
            .build()
            .unwrap(),
    );
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let inner = Arc::clone(&pool);
    pool.execute(move || {
        go_rx.recv_timeout(common::PATIENCE).unwrap();
        drop(inner); // the last reference: Pool::drop runs on a worker
        done_tx.send(()).unwrap();
    })
    .unwrap();
    drop(pool);
    go_tx.send(()).unwrap();
    done_rx.recv_timeout(common::PATIENCE).unwrap();
    assert!(common::no_threads_named("sd-self"));
}

#[test]
fn dropping_the_last_pool_in_a_closure_discarded_after_its_deadline_does_not_deadlock() {
    // A job whose deadline passes while it is queued ends `Cancelled` at
    // once; its closure is dropped by the worker that dequeues it (never on
    // the supervisor's timer). If that closure holds the last `Arc<Pool>`,
    // the pool's `Drop` runs on a pool thread and must not wait for itself.
    let pool = Arc::new(Pool::builder().thread_name("sd-last").build().unwrap());
    let release = common::block_worker(&pool);
    let release_others: Vec<_> = (1..pool.stats().workers)
        .map(|_| common::block_worker(&pool))
        .collect();
    struct Tell(mpsc::Sender<()>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let (inner, tell) = (Arc::clone(&pool), Tell(dropped_tx));
    let job = pool
        .submit_with(
            JobOptions::new().timeout(Duration::from_millis(1)),
            move |_| {
                let _keep = (&inner, &tell);
                Ok(())
            },
        )
        .unwrap();
    drop(pool); // the queued closure now holds the last `Arc<Pool>`
    assert_eq!(job.wait(common::PATIENCE), Some(JobStatus::Cancelled));
    // The timer did not drop it: every worker is still blocked.
    assert!(dropped_rx.try_recv().is_err());
    drop(release);
    drop(release_others);
    // Fields drop in order: `inner` (the pool) first, then `tell`; so this
    // arrives only once the pool's `Drop` has returned.
    assert!(
        dropped_rx.recv_timeout(common::PATIENCE).is_ok(),
        "Pool::drop on a pool thread did not return"
    );
    // The supervisor still stops and joins every thread.
    assert!(common::no_threads_named("sd-last"));
}

#[test]
fn join_is_not_held_up_by_submissions_refused_after_shutdown() {
    // A refused submission must never show as outstanding, not even for a
    // moment: a join that saw it would have no one left to wake it.
    let pool = Arc::new(Pool::new(1).unwrap());
    pool.shutdown();
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (pool, stop) = (Arc::clone(&pool), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(pool.try_execute(|| ()), Err(SubmitError::Shutdown));
            }
        })
    };
    let (joined_tx, joined_rx) = mpsc::channel();
    {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                pool.join();
            }
            let _ = joined_tx.send(());
        });
    }
    let joined = joined_rx.recv_timeout(common::PATIENCE);
    stop.store(true, Ordering::Relaxed);
    submitter.join().unwrap();
    assert!(
        joined.is_ok(),
        "a join on an idle, shut-down pool never returned"
    );
    assert_eq!(pool.stats().submitted, 0);
}

#[test]
fn shutdown_and_join_from_inside_a_job_return() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let inner = Arc::clone(&pool);
    let job = pool
        .submit(move |_| {
            inner.join(); // would wait for itself: returns at once
            inner.shutdown();
            Ok(inner.is_shutdown())
        })
        .unwrap();
    assert!(job.join().unwrap());
    pool.shutdown();
    assert_eq!(pool.stats().alive, 0);
}

#[test]
fn a_submitter_blocked_on_a_full_queue_is_released_by_shutdown() {
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .queue_capacity(1)
            .build()
            .unwrap(),
    );
    let release_tx = common::block_worker(&pool);
    let queued = pool.submit(|_| Ok(())).unwrap(); // fills the queue

    let (result_tx, result_rx) = mpsc::channel();
    let submitter = Arc::clone(&pool);
    std::thread::spawn(move || {
        result_tx
            .send(submitter.submit(|_| Ok(())).map(|_| ()))
            .unwrap();
    });
    let closer = Arc::clone(&pool);
    let shutdown = std::thread::spawn(move || closer.shutdown());
    assert!(common::eventually(|| pool.is_shutdown()));
    // Still blocked behind the busy worker, yet the submitter is answered.
    assert_eq!(
        result_rx.recv_timeout(common::PATIENCE).unwrap(),
        Err(SubmitError::Shutdown)
    );
    release_tx.send(()).unwrap();
    shutdown.join().unwrap();
    assert_eq!(queued.status(), JobStatus::Completed, "graceful drain");
}

#[test]
fn every_job_accepted_during_shutdown_races_ends_terminal() {
    // Submitters race a shutdown: each job is either refused or ends terminal.
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .queue_capacity(64)
            .build()
            .unwrap(),
    );
    let refused = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let submitters: Vec<_> = (0..3)
        .map(|_| {
            let pool = Arc::clone(&pool);
            let refused = Arc::clone(&refused);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut accepted = Vec::new();
                for _ in 0..2_000 {
                    match pool.submit(|_| Ok(())) {
                        Ok(handle) => accepted.push(handle),
                        Err(SubmitError::Shutdown) => {
                            refused.store(true, Ordering::SeqCst);
                            break;
                        }
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
                accepted
            })
        })
        .collect();
    barrier.wait();
    pool.shutdown();
    for submitter in submitters {
        for handle in submitter.join().unwrap() {
            assert!(handle.status().is_terminal());
            handle.join().unwrap();
        }
    }
    let stats = pool.stats();
    assert_eq!(
        stats.submitted,
        stats.completed + stats.failed + stats.cancelled
    );
}

static CREATED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Counts its drops, to prove nothing leaks and nothing drops twice.
struct Tracked;

impl Tracked {
    fn new() -> Self {
        CREATED.fetch_add(1, Ordering::SeqCst);
        Tracked
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn every_closure_and_result_is_dropped_exactly_once() {
    common::quiet_panics();
    let pool = Pool::builder()
        .workers(1)
        .queue_capacity(100)
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let blocker = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(Duration::from_secs(600))?;
            Ok(Tracked::new())
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();

    let handles = submit_mix(&pool);
    // Queued jobs are cancelled without running, the blocker's token too.
    pool.shutdown_now();
    assert!(matches!(blocker.join(), Err(JobError::Cancelled)));
    drop(handles);
    drop(pool);

    // The same mix on a pool that runs everything; results are taken by
    // `join` or dropped by the pool for detached handles.
    let pool = Pool::builder()
        .workers(2)
        .queue_capacity(100)
        .build()
        .unwrap();
    let handles = submit_mix(&pool);
    common::join(&pool);
    for handle in handles {
        let _ = handle.join();
    }
    drop(pool);
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        CREATED.load(Ordering::SeqCst),
        "every captured value and result dropped exactly once"
    );
}

fn submit_mix(pool: &Pool) -> Vec<harbor_pool::JobHandle<Tracked>> {
    let mut handles = Vec::new();
    for i in 0..60 {
        let captured = Tracked::new();
        match i % 6 {
            // Tracked jobs whose handles are kept, dropped, or cancelled by id.
            0 | 1 => handles.push(
                pool.submit(move |_| {
                    let _keep = &captured;
                    Ok(Tracked::new())
                })
                .unwrap(),
            ),
            2 => drop(
                pool.submit(move |_| {
                    let _keep = &captured;
                    Ok(Tracked::new())
                })
                .unwrap(),
            ),
            3 => {
                let handle = pool
                    .submit(move |_| {
                        let _keep = &captured;
                        Ok(Tracked::new())
                    })
                    .unwrap();
                pool.cancel(handle.id());
            }
            // Untracked jobs, and jobs refused by a full queue.
            4 => pool.execute(move || drop(captured)).unwrap(),
            _ => {
                let refused = pool.try_execute(move || drop(captured));
                let _ = refused;
            }
        }
    }
    handles
}

#[test]
fn dropping_the_last_pool_in_a_workers_thread_local_destructor_does_not_deadlock() {
    // A job keeps its pool in a thread-local ("the current pool") and shuts
    // it down. The worker then exits, and the pool's last `Arc` is dropped
    // by the thread-local's destructor, while the supervisor is joining that
    // very thread: `Pool::drop` there must not wait for the supervisor.
    struct Current(Option<Arc<Pool>>, mpsc::Sender<()>);
    impl Drop for Current {
        fn drop(&mut self) {
            drop(self.0.take()); // the pool's last `Arc`
            let _ = self.1.send(());
        }
    }
    thread_local! {
        static CURRENT: std::cell::RefCell<Option<Current>> = const { std::cell::RefCell::new(None) };
    }
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .thread_name("sd-tls")
            .build()
            .unwrap(),
    );
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let inner = Arc::clone(&pool);
    pool.execute(move || {
        go_rx.recv_timeout(common::PATIENCE).unwrap();
        inner.shutdown(); // from its own job: starts it and returns
        CURRENT.with(|current| *current.borrow_mut() = Some(Current(Some(inner), dropped_tx)));
    })
    .unwrap();
    drop(pool);
    go_tx.send(()).unwrap();
    assert!(
        dropped_rx.recv_timeout(common::PATIENCE).is_ok(),
        "Pool::drop in a worker's thread-local destructor did not return"
    );
    assert!(common::no_threads_named("sd-tls"));
}
