//! A bounded queue: `try_` methods refuse when full, blocking ones wait.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use harbor_pool::{CancelOutcome, JobOptions, JobStatus, Pool, SubmitError};

/// A one-worker pool with queue capacity 2, its worker blocked until the
/// returned sender is used.
fn full_pool() -> (Arc<Pool>, mpsc::Sender<()>) {
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .queue_capacity(2)
            .build()
            .unwrap(),
    );
    let release_tx = common::block_worker(&pool);
    pool.try_execute(|| ()).unwrap();
    pool.try_submit(|_| Ok(())).unwrap();
    (pool, release_tx)
}

/// A pool of `workers` workers whose queue holds one job.
fn one_slot_pool(workers: usize) -> Arc<Pool> {
    Arc::new(
        Pool::builder()
            .workers(workers)
            .queue_capacity(1)
            .build()
            .unwrap(),
    )
}

#[test]
fn try_methods_report_a_full_queue_and_drop_the_job() {
    let (pool, release) = full_pool();
    assert_eq!(pool.stats().queued, 2);
    assert_eq!(pool.try_execute(|| ()).unwrap_err(), SubmitError::QueueFull);
    assert_eq!(
        pool.try_submit(|_| Ok(())).unwrap_err(),
        SubmitError::QueueFull
    );
    assert_eq!(SubmitError::QueueFull.to_string(), "job queue is full");
    release.send(()).unwrap();
    common::join(&pool);
    let stats = pool.stats();
    // Refused jobs were never accepted, so they are not counted.
    assert_eq!((stats.submitted, stats.completed, stats.queued), (3, 3, 0));
}

#[test]
fn blocking_submit_waits_for_room() {
    let (pool, release) = full_pool();
    let (result_tx, result_rx) = mpsc::channel();
    let submitter = Arc::clone(&pool);
    std::thread::spawn(move || {
        let handle = submitter.submit(|_| Ok("made it")).unwrap();
        result_tx.send(handle.join().unwrap()).unwrap();
    });
    // Nothing can be accepted until the worker frees a slot.
    assert!(result_rx.try_recv().is_err());
    release.send(()).unwrap();
    assert_eq!(result_rx.recv_timeout(common::PATIENCE).unwrap(), "made it");
}

#[test]
fn a_full_queue_keeps_ids_and_statuses_consistent() {
    let (pool, release) = full_pool();
    let refused = pool.try_submit(|_| Ok(()));
    assert!(refused.is_err());
    release.send(()).unwrap();
    let handle = pool.submit(|_| Ok(1)).unwrap();
    assert_eq!(handle.wait(common::PATIENCE), Some(JobStatus::Completed));
}

/// What a job got back from submitting into its own pool, by method.
type Refusals = Vec<(&'static str, Result<(), SubmitError>)>;

/// Submits into `pool` from one of its own jobs with every blocking method;
/// the queue is full, so each must refuse at once instead of waiting for a
/// worker (perhaps this very one) to make room.
fn submit_into_own_full_queue(pool: &Pool) -> Refusals {
    vec![
        ("execute", pool.execute(|| ())),
        ("submit", pool.submit(|_| Ok(())).map(drop)),
        (
            "submit_with",
            pool.submit_with(harbor_pool::JobOptions::new(), |_| Ok(()))
                .map(drop),
        ),
    ]
}

fn all_queue_full(refusals: &Refusals) -> bool {
    refusals
        .iter()
        .all(|(_, result)| *result == Err(SubmitError::QueueFull))
}

#[test]
fn a_job_submitting_into_its_own_full_queue_is_refused_not_deadlocked() {
    let pool = one_slot_pool(1);
    let (result_tx, result_rx) = mpsc::channel();
    let inner = Arc::clone(&pool);
    pool.execute(move || {
        // The only worker runs this job, so the one slot stays taken.
        inner.try_execute(|| ()).unwrap();
        let _ = result_tx.send(submit_into_own_full_queue(&inner));
    })
    .unwrap();
    let refusals = result_rx
        .recv_timeout(common::PATIENCE)
        .expect("a job blocked on its own full queue: the pool deadlocked");
    assert!(all_queue_full(&refusals), "{refusals:?}");
    common::join(&pool);
    let stats = pool.stats();
    // The two jobs accepted ran; the refused ones were never counted.
    assert_eq!((stats.submitted, stats.completed), (2, 2));
}

#[test]
fn every_worker_submitting_into_the_full_queue_is_refused_not_deadlocked() {
    const WORKERS: usize = 2;
    let pool = one_slot_pool(WORKERS);
    let (started_tx, started_rx) = mpsc::channel();
    let (result_tx, result_rx) = mpsc::channel();
    let mut go = Vec::new();
    for _ in 0..WORKERS {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        go.push(go_tx);
        let (inner, started_tx, result_tx) =
            (Arc::clone(&pool), started_tx.clone(), result_tx.clone());
        pool.execute(move || {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(common::PATIENCE).unwrap();
            let _ = result_tx.send(submit_into_own_full_queue(&inner));
            // Busy until every worker has tried, so none frees the slot early.
            let _ = go_rx.recv_timeout(common::PATIENCE);
        })
        .unwrap();
    }
    // Both workers are busy with the jobs above; fill the one slot.
    for _ in 0..WORKERS {
        started_rx.recv_timeout(common::PATIENCE).unwrap();
    }
    pool.try_execute(|| ()).unwrap();
    for go in &go {
        go.send(()).unwrap();
    }
    for _ in 0..WORKERS {
        let refusals = result_rx
            .recv_timeout(common::PATIENCE)
            .expect("the workers blocked on their own full queue: the pool deadlocked");
        assert!(all_queue_full(&refusals), "{refusals:?}");
    }
    drop(go);
    common::join(&pool);
    assert_eq!(pool.stats().completed, 3);
}

/// A one-worker pool with queue capacity 4, its worker blocked, and four
/// tracked jobs queued.
fn pool_with_four_queued() -> (Arc<Pool>, mpsc::Sender<()>, Vec<harbor_pool::JobHandle<()>>) {
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .queue_capacity(4)
            .build()
            .unwrap(),
    );
    let release = common::block_worker(&pool);
    let queued: Vec<_> = (0..4)
        .map(|_| pool.try_submit(|_| Ok(())).unwrap())
        .collect();
    assert_eq!(
        pool.try_submit(|_| Ok(())).map(drop),
        Err(SubmitError::QueueFull)
    );
    (pool, release, queued)
}

#[test]
fn cancelling_queued_jobs_frees_their_slots_at_once() {
    let (pool, release, queued) = pool_with_four_queued();
    for handle in &queued {
        assert_eq!(pool.cancel(handle.id()), CancelOutcome::Cancelled);
    }
    // The worker is still blocked: only the cancels made this room.
    let fresh: Vec<_> = (0..4)
        .map(|i| {
            pool.try_submit(|_| Ok(()))
                .unwrap_or_else(|e| panic!("try_submit {i} after the cancels: {e}"))
        })
        .collect();
    assert_eq!(
        pool.try_submit(|_| Ok(())).map(drop),
        Err(SubmitError::QueueFull)
    );
    release.send(()).unwrap();
    for handle in fresh {
        assert_eq!(handle.wait(common::PATIENCE), Some(JobStatus::Completed));
    }
    common::join(&pool);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.cancelled,
            stats.queued
        ),
        (9, 5, 4, 0)
    );
}

#[test]
fn a_submitter_blocked_on_a_full_queue_is_released_by_a_cancel() {
    let (pool, release, queued) = pool_with_four_queued();
    let (result_tx, result_rx) = mpsc::channel();
    let submitter = Arc::clone(&pool);
    let thread = std::thread::spawn(move || {
        let _ = result_tx.send(submitter.submit(|_| Ok("made it")).map(|h| h.id()));
    });
    // The worker stays blocked: the only way in is the slot the cancel frees.
    assert_eq!(pool.cancel(queued[2].id()), CancelOutcome::Cancelled);
    let id = result_rx
        .recv_timeout(common::PATIENCE)
        .expect("the cancel did not release the blocked submitter")
        .unwrap();
    assert_eq!(pool.status(id), Some(JobStatus::Pending));
    release.send(()).unwrap();
    assert_eq!(pool.wait(id, common::PATIENCE), Some(JobStatus::Completed));
    thread.join().unwrap();
}

#[test]
fn a_bounded_queue_bounds_the_closures_it_holds_even_when_deadlines_expire() {
    // Every worker is stuck; a submitter keeps queueing jobs whose deadlines
    // pass at once. The timer cancels them but leaves each closure to the
    // worker that will dequeue it, so each keeps its slot until then: the
    // queue never holds more closures than its capacity.
    struct Live(Arc<AtomicUsize>);
    impl Drop for Live {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let pool = Pool::builder()
        .workers(1)
        .queue_capacity(2)
        .build()
        .unwrap();
    let release = common::block_worker(&pool);
    let live = Arc::new(AtomicUsize::new(0));
    let mut refused = 0;
    for _ in 0..200 {
        live.fetch_add(1, Ordering::SeqCst);
        let held = Live(Arc::clone(&live));
        let options = JobOptions::new().timeout(Duration::from_millis(1));
        match pool.try_submit_with(options, move |_| {
            let _held = &held;
            Ok(())
        }) {
            Ok(job) => assert_eq!(job.wait(common::PATIENCE), Some(JobStatus::Cancelled)),
            Err(SubmitError::QueueFull) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert!(
            live.load(Ordering::SeqCst) <= 2,
            "{} closures queued",
            live.load(Ordering::SeqCst)
        );
    }
    assert_eq!(refused, 198);
    drop(release);
    common::join(&pool);
    assert!(common::eventually(|| live.load(Ordering::SeqCst) == 0));
    assert!(pool.try_execute(|| ()).is_ok());
}

/// A submission blocked on a full queue is dated from the call: its
/// timeout runs during the wait, and its record's submission time (and so
/// its queue wait) is the call's.
#[test]
fn a_blocked_submission_counts_from_the_call() {
    let (pool, release) = full_pool();
    let (calling, called) = mpsc::channel::<std::time::SystemTime>();
    let submitter = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            calling.send(std::time::SystemTime::now()).unwrap();
            // Blocks on the full queue.
            pool.submit_with(
                JobOptions::new().timeout(Duration::from_millis(100)),
                |_| Ok(()),
            )
            .unwrap()
        })
    };
    let call = called.recv_timeout(common::PATIENCE).unwrap();
    // Not synchronisation: the blocked time under test, well past the
    // job's 100 ms timeout.
    std::thread::sleep(Duration::from_millis(400));
    release.send(()).unwrap();
    let late = submitter.join().unwrap();
    assert_eq!(late.wait(common::PATIENCE), Some(JobStatus::Cancelled));
    let info = pool.info(late.id()).unwrap();
    let lag = info.submitted_at.duration_since(call).unwrap_or_default();
    assert!(
        lag < Duration::from_millis(200),
        "submitted {lag:?} after the call"
    );
}

/// A submission that panics before it is queued (here: the random
/// generator behind job ids is gone, as a thread-local destructor submits)
/// holds no slot of a bounded queue afterwards.
#[test]
fn a_submission_that_panics_leaks_no_slot() {
    use std::cell::RefCell;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    struct Late(Arc<Pool>, mpsc::Sender<bool>);
    impl Drop for Late {
        fn drop(&mut self) {
            let pool = Arc::clone(&self.0);
            let panicked = catch_unwind(AssertUnwindSafe(|| {
                let _ = pool.try_submit(|_| Ok(()));
            }))
            .is_err();
            let _ = self.1.send(panicked);
        }
    }
    thread_local! {
        static LATE: RefCell<Option<Late>> = const { RefCell::new(None) };
    }
    common::quiet_panics();
    let pool = one_slot_pool(1);
    let (tx, rx) = mpsc::channel();
    {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            // Registered before the generator's first use, so destroyed
            // after it.
            LATE.with(|late| *late.borrow_mut() = Some(Late(Arc::clone(&pool), tx)));
            pool.submit(|_| Ok(())).unwrap().join().unwrap();
        })
        .join()
        .unwrap();
    }
    // Whether it panicked depends on the destructors' order; either way the
    // slot must be free.
    let _panicked = rx.recv_timeout(common::PATIENCE).unwrap();
    assert!(pool.join_timeout(common::PATIENCE));
    match pool.try_submit(|_| Ok(())) {
        Ok(handle) => handle.join().unwrap(),
        Err(error) => panic!("an idle pool with one slot refused: {error:?}"),
    }
}
