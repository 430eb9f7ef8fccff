//! Panicking jobs never cost a thread; their messages become `Failed`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harbor_pool::{JobError, JobResult, JobStatus, Pool};

const NON_STRING: &str = "job panicked with a non-string payload";

fn counter_still_exact(pool: &Pool) {
    let counter = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        let counter = Arc::clone(&counter);
        pool.execute(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    common::join(pool);
    assert_eq!(counter.load(Ordering::Relaxed), 200);
}

#[test]
fn a_thousand_panics_leave_every_worker_alive() {
    common::quiet_panics();
    let pool = Pool::new(4).unwrap();
    assert!(common::eventually(|| pool.stats().alive == 4));
    for i in 0..1_000 {
        if i % 2 == 0 {
            pool.execute(move || panic!("untracked {i}")).unwrap();
        } else {
            pool.submit(move |_| -> JobResult<()> { panic!("tracked {i}") })
                .unwrap();
        }
    }
    common::join(&pool);
    let stats = pool.stats();
    assert_eq!(stats.alive, 4);
    assert_eq!(
        stats.restarts, 0,
        "panics are caught, not survived by respawning"
    );
    assert_eq!((stats.panicked, stats.failed), (1_000, 1_000));
    counter_still_exact(&pool);
    assert_eq!(pool.stats().alive, 4);
}

#[test]
fn failed_carries_the_message_of_every_payload_kind() {
    common::quiet_panics();
    let pool = Pool::new(2).unwrap();
    let str_job = pool
        .submit(|_| -> JobResult<()> { panic!("static message") })
        .unwrap();
    let string_job = pool
        .submit(|_| -> JobResult<()> { panic!("formatted {}", 42) })
        .unwrap();
    let other_job = pool
        .submit(|_| -> JobResult<()> { std::panic::panic_any(7_u32) })
        .unwrap();
    let err_job = pool
        .submit(|_| -> JobResult<()> { Err("disk full".into()) })
        .unwrap();

    let wait = |h: &harbor_pool::JobHandle<()>| h.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(wait(&str_job), JobStatus::Failed("static message".into()));
    assert_eq!(wait(&string_job), JobStatus::Failed("formatted 42".into()));
    assert_eq!(wait(&other_job), JobStatus::Failed(NON_STRING.into()));
    assert_eq!(wait(&err_job), JobStatus::Failed("disk full".into()));

    assert!(matches!(str_job.join(), Err(JobError::Panicked(m)) if m == "static message"));
    assert!(matches!(string_job.join(), Err(JobError::Panicked(m)) if m == "formatted 42"));
    assert!(matches!(other_job.join(), Err(JobError::Panicked(m)) if m == NON_STRING));
    match err_job.join() {
        Err(JobError::Failed(err)) => assert_eq!(err.to_string(), "disk full"),
        other => panic!("unexpected {other:?}"),
    }
    let stats = pool.stats();
    assert_eq!((stats.failed, stats.panicked), (4, 3));
}

struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{} panicked in drop", self.0);
        }
    }
}

#[test]
fn payload_whose_drop_panics_does_not_take_the_pool_down() {
    common::quiet_panics();
    let pool = Pool::new(2).unwrap();
    let tracked = pool
        .submit(|_| -> JobResult<()> { std::panic::panic_any(PanicOnDrop("payload")) })
        .unwrap();
    pool.execute(|| std::panic::panic_any(PanicOnDrop("untracked payload")))
        .unwrap();
    assert_eq!(
        tracked.wait(Duration::from_secs(20)),
        Some(JobStatus::Failed(NON_STRING.into()))
    );
    common::join(&pool);
    // `alive` counts workers past their start hook, which may lag `build`.
    assert!(common::eventually(|| pool.stats().alive == 2));
    let stats = pool.stats();
    assert_eq!((stats.restarts, stats.panicked), (0, 2));
    counter_still_exact(&pool);
}

#[test]
fn user_drops_and_displays_that_panic_are_contained() {
    common::quiet_panics();
    let pool = Pool::new(1).unwrap();

    // A value whose Drop panics, returned by a job whose handle was dropped.
    // The job waits until its handle is gone, so the value is dropped by the pool.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let detached = pool
        .submit(move |_| {
            go_rx.recv_timeout(common::PATIENCE)?;
            Ok(PanicOnDrop("result"))
        })
        .unwrap();
    let id = detached.id();
    drop(detached);
    go_tx.send(()).unwrap();
    assert_eq!(
        pool.wait(id, Duration::from_secs(20)),
        Some(JobStatus::Completed)
    );

    // A captured value whose Drop panics after the job body returned.
    let capture = PanicOnDrop("capture");
    let job = pool
        .submit(move |_| {
            let _keep = &capture;
            Ok(1)
        })
        .unwrap();
    assert!(matches!(job.join(), Err(JobError::Panicked(m)) if m == "capture panicked in drop"));

    // An error whose Display panics.
    #[derive(Debug)]
    struct BadDisplay;
    impl std::fmt::Display for BadDisplay {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            panic!("display exploded")
        }
    }
    impl std::error::Error for BadDisplay {}
    let bad = pool
        .submit(|_| -> JobResult<()> { Err(BadDisplay.into()) })
        .unwrap();
    match bad.wait(Duration::from_secs(20)) {
        Some(JobStatus::Failed(message)) => {
            assert!(message.contains("display exploded"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }

    common::join(&pool);
    let stats = pool.stats();
    assert_eq!((stats.alive, stats.restarts), (1, 0));
    counter_still_exact(&pool);
}
