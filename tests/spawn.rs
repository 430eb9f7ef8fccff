//! Jobs run, values come back, counts are exact; bad configuration is refused.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use harbor_pool::{BuildError, JobStatus, Pool};

#[test]
fn counter_total_is_exact_with_execute() {
    common::init_logging();
    let pool = Pool::new(4).unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    for _ in 0..1_000 {
        let counter = Arc::clone(&counter);
        pool.execute(move || {
            for _ in 0..100 {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
    }
    common::join(&pool);
    assert_eq!(counter.load(Ordering::Relaxed), 100_000);
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.completed, stats.failed),
        (1_000, 1_000, 0)
    );
}

#[test]
fn submit_returns_each_jobs_value() {
    let pool = Pool::new(3).unwrap();
    let handles: Vec<_> = (0..200_u64)
        .map(|i| pool.submit(move |_| Ok(i * i)).unwrap())
        .collect();
    let ids: std::collections::HashSet<_> = handles.iter().map(|h| h.id()).collect();
    assert_eq!(ids.len(), 200, "every job has its own id");
    for (i, handle) in handles.into_iter().enumerate() {
        let id = handle.id();
        assert_eq!(handle.join().unwrap(), (i * i) as u64);
        // When join returns, the pool already shows the terminal state.
        assert_eq!(pool.status(id), Some(JobStatus::Completed));
    }
}

#[test]
fn workers_are_named_and_counted() {
    let pool = Pool::builder()
        .workers(2)
        .thread_name("spawn-t")
        .build()
        .unwrap();
    assert!(common::eventually(|| pool.stats().alive == 2));
    let name = pool
        .submit(|_| Ok(std::thread::current().name().unwrap().to_owned()))
        .unwrap()
        .join()
        .unwrap();
    assert!(name == "spawn-t-0" || name == "spawn-t-1", "{name}");
    let info = pool.info(pool.submit(|_| Ok(())).unwrap().id()).unwrap();
    assert!(info.submitted_at <= std::time::SystemTime::now());
}

#[test]
fn bad_configuration_is_a_typed_error() {
    assert!(matches!(Pool::new(0), Err(BuildError::ZeroWorkers)));
    assert!(matches!(
        Pool::builder().queue_capacity(0).build(),
        Err(BuildError::ZeroQueueCapacity)
    ));
    assert!(matches!(
        Pool::builder().thread_name("nul\0").build(),
        Err(BuildError::InvalidThreadName)
    ));
    use std::time::Duration;
    assert!(matches!(
        Pool::builder()
            .restart_backoff(Duration::ZERO, Duration::from_secs(1))
            .build(),
        Err(BuildError::InvalidBackoff)
    ));
    // Errors print short lowercase messages.
    assert_eq!(
        BuildError::ZeroWorkers.to_string(),
        "a pool needs at least one worker"
    );
}

#[test]
fn malformed_ids_are_errors_and_unknown_ids_are_none() {
    let pool = Pool::new(1).unwrap();
    for bad in [
        "",
        "42",
        "not-a-uuid-at-all-but-36-chars-long!",
        "67e5504410b1426f9247bb680e5fe0c8",
    ] {
        assert!(bad.parse::<harbor_pool::JobId>().is_err(), "{bad:?}");
    }
    let unknown: harbor_pool::JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
    assert_eq!(pool.status(unknown), None);
    assert_eq!(pool.info(unknown), None);
    assert_eq!(
        pool.wait(unknown, std::time::Duration::from_millis(1)),
        None
    );
    assert_eq!(pool.cancel(unknown), harbor_pool::CancelOutcome::NotFound);
}

#[test]
fn build_returns_once_every_worker_is_up() {
    for _ in 0..200 {
        let pool = Pool::new(4).unwrap();
        assert_eq!(pool.stats().alive, 4);
    }
    // Start hooks that take a while are waited for too.
    let pool = Pool::builder()
        .workers(3)
        .on_thread_start(|_| std::thread::yield_now())
        .build()
        .unwrap();
    assert_eq!(pool.stats().alive, 3);
}

#[test]
fn build_does_not_wait_for_a_restart_storm() {
    // Worker 0's start hook always panics and its respawns are held back
    // for a minute: `build` counts the first failed attempt as over.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pool = Pool::builder()
            .workers(2)
            .thread_name("storm-build")
            .restart_limit(0, std::time::Duration::from_secs(60))
            .restart_backoff(
                std::time::Duration::from_secs(60),
                std::time::Duration::from_secs(60),
            )
            .on_thread_start(|index| assert_ne!(index, 0, "worker 0 never starts"))
            .build()
            .unwrap();
        let alive = pool.stats().alive;
        // Answer before the drop: shutting down abandons the held-back respawn.
        tx.send(alive).unwrap();
    });
    assert_eq!(rx.recv_timeout(common::PATIENCE), Ok(1));
}
