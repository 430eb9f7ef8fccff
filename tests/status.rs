//! Job status transitions, lookups by id, and retention of finished records.

mod common;

use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use harbor_pool::{JobStatus, Pool};

#[test]
fn pending_running_completed_in_order() {
    let pool = Pool::new(1).unwrap();
    let (release_blocker, blocker_rx) = mpsc::channel::<()>();
    let blocker = pool
        .submit(move |_| {
            blocker_rx.recv_timeout(common::PATIENCE)?;
            Ok(())
        })
        .unwrap();

    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (finish_tx, finish_rx) = mpsc::channel::<()>();
    let job = pool
        .submit(move |_| {
            started_tx.send(())?;
            finish_rx.recv_timeout(common::PATIENCE)?;
            Ok("done")
        })
        .unwrap();
    let id = job.id();

    // The only worker is busy with the blocker, so the job waits.
    assert_eq!(pool.status(id), Some(JobStatus::Pending));
    assert_eq!(job.status(), JobStatus::Pending);
    let info = pool.info(id).unwrap();
    assert_eq!((info.started_at, info.worker), (None, None));

    release_blocker.send(()).unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();
    assert_eq!(pool.status(id), Some(JobStatus::Running));
    let info = pool.info(id).unwrap();
    assert!(info.started_at.is_some());
    assert_eq!(info.worker.as_deref(), Some("harbor-worker-0"));
    assert!(!job.is_finished());

    finish_tx.send(()).unwrap();
    assert_eq!(job.join().unwrap(), "done");
    assert_eq!(pool.status(id), Some(JobStatus::Completed));
    let info = pool.info(id).unwrap();
    assert!(info.finished_at.unwrap() >= info.started_at.unwrap());
    assert!(info.started_at.unwrap() >= info.submitted_at);
    blocker.join().unwrap();
}

/// A tracked job's times are derived from one clock's ticks and a wall-clock
/// anchor per thread (read at most every 10 ms): they stay in order across
/// the submitting and the worker thread, measure real durations, and agree
/// with the wall clock.
#[test]
fn derived_times_are_in_order_and_measure_real_durations() {
    let before = SystemTime::now();
    let pool = Pool::new(2).unwrap();
    let handles: Vec<_> = (0..2_000)
        .map(|_| pool.submit(|_| Ok(())).unwrap())
        .collect();
    let sleeper = pool
        .submit(|_| {
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        })
        .unwrap();
    let sleeper_id = sleeper.id();
    sleeper.join().unwrap();
    for handle in handles {
        let id = handle.id();
        handle.join().unwrap();
        let info = pool.info(id).unwrap();
        let (started, finished) = (info.started_at.unwrap(), info.finished_at.unwrap());
        assert!(
            info.submitted_at <= started && started <= finished,
            "{info:?}"
        );
    }
    let info = pool.info(sleeper_id).unwrap();
    let (started, finished) = (info.started_at.unwrap(), info.finished_at.unwrap());
    let ran = finished.duration_since(started).unwrap();
    // Slept 20 ms at least; a time derived from a stale or wrong anchor
    // would be off by far more than the slack here.
    assert!(ran >= Duration::from_millis(19), "{ran:?}");
    let after = SystemTime::now();
    assert!(before <= info.submitted_at && finished <= after, "{info:?}");
}

#[test]
fn wait_returns_terminal_status_or_none_on_timeout() {
    let pool = Pool::new(1).unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let job = pool
        .submit(move |_| {
            rx.recv_timeout(common::PATIENCE)?;
            Ok(())
        })
        .unwrap();
    assert_eq!(pool.wait(job.id(), Duration::from_millis(10)), None);
    assert_eq!(job.wait(Duration::from_millis(10)), None);
    tx.send(()).unwrap();
    assert_eq!(
        pool.wait(job.id(), common::PATIENCE),
        Some(JobStatus::Completed)
    );
}

#[test]
fn retention_forgets_the_oldest_finished_records() {
    // One worker: jobs finish, and are retired, in submission order, so
    // "oldest" is well defined.
    let pool = Pool::builder()
        .workers(1)
        .retain_finished(5)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..20_u32)
        .map(|i| pool.submit(move |_| Ok(i)).unwrap())
        .collect();
    // Once `join` returns, retention has been applied to every job.
    common::join(&pool);
    for handle in &handles[..15] {
        assert_eq!(pool.status(handle.id()), None, "forgotten");
        assert_eq!(pool.info(handle.id()), None);
    }
    for handle in &handles[15..] {
        assert_eq!(pool.status(handle.id()), Some(JobStatus::Completed));
    }
    // Handles keep working for forgotten jobs, and after the pool is gone.
    drop(pool);
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.status(), JobStatus::Completed);
        assert_eq!(handle.join().unwrap(), i as u32);
    }
}

#[test]
fn running_jobs_are_never_forgotten() {
    let pool = Pool::builder()
        .workers(2)
        .retain_finished(0)
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (tx, rx) = mpsc::channel::<()>();
    let running = pool
        .submit(move |_| {
            started_tx.send(())?;
            rx.recv_timeout(common::PATIENCE)?;
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();
    // Finished jobs come and go on the other worker...
    for _ in 0..50 {
        let handle = pool.submit(|_| Ok(())).unwrap();
        let id = handle.id();
        handle.join().unwrap();
        // Retired just after it became terminal.
        assert!(common::eventually(|| pool.status(id).is_none()));
    }
    // ...but the running one stays visible.
    assert_eq!(pool.status(running.id()), Some(JobStatus::Running));
    tx.send(()).unwrap();
    let id = running.id();
    running.join().unwrap();
    assert!(common::eventually(|| pool.status(id).is_none()));
}

#[test]
fn join_works_after_the_pool_is_dropped() {
    let pool = Pool::new(2).unwrap();
    let handle = pool.submit(|_| Ok(vec![1, 2, 3])).unwrap();
    drop(pool); // graceful: runs the queued job first
    assert_eq!(handle.join().unwrap(), vec![1, 2, 3]);
}
