//! A bounded queue: `try_` methods refuse when full, blocking ones wait.

mod common;

use std::sync::Arc;
use std::sync::mpsc;

use harbor_pool::{JobStatus, Pool, SubmitError};

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
