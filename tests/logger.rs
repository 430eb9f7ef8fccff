//! A logger that panics cannot leave a job non-terminal or a join hanging.
//! Alone in its own test binary: it installs the process's logger.

mod common;

use std::sync::{Arc, Mutex, mpsc};

use harbor_pool::{JobError, JobStatus, Pool};
use log::{Level, LevelFilter, Log, Metadata, Record};

/// Panics on every message that contains the text set in `TRIGGER`.
struct PanickingLogger;

static TRIGGER: Mutex<Option<&'static str>> = Mutex::new(None);

impl Log for PanickingLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Debug
    }

    fn log(&self, record: &Record<'_>) {
        let trigger = *TRIGGER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(trigger) = trigger
            && record.args().to_string().contains(trigger)
        {
            panic!("logger failed on {trigger:?}");
        }
    }

    fn flush(&self) {}
}

/// The job's value, or `None` if it failed or did not end in time.
fn join<T: std::fmt::Debug>(job: harbor_pool::JobHandle<T>) -> Option<T> {
    job.join_timeout(common::PATIENCE).ok()?.ok()
}

/// Waits until the supervisor has replaced the worker `restarts` times in
/// all (a respawn is counted once its thread is spawned) and it is up.
fn replaced(pool: &Pool, restarts: u64) -> bool {
    common::eventually(|| {
        let stats = pool.stats();
        stats.restarts == restarts && stats.alive == 1
    })
}

fn trigger_on(text: Option<&'static str>) {
    *TRIGGER.lock().unwrap_or_else(|e| e.into_inner()) = text;
}

#[test]
fn a_panicking_logger_cannot_strand_a_job() {
    common::quiet_panics();
    log::set_logger(&PanickingLogger).unwrap();
    log::set_max_level(LevelFilter::Debug);
    let pool = Pool::builder()
        .workers(1)
        .thread_name("log-panic")
        .build()
        .unwrap();

    // The logger fails as the job starts: that log call is contained, so
    // the job runs and the worker lives on. (A worker that dies under a
    // running job is tested in worker.rs: the job ends `Failed`.)
    trigger_on(Some("started on"));
    let job = pool.submit(|_| Ok(1)).unwrap();
    assert_eq!(join(job), Some(1));
    // The logger fails on a job's panic: the panic is logged after the
    // job's bookkeeping, so the job keeps its real outcome; the worker dies
    // in the logger and is replaced.
    trigger_on(Some("panicked on"));
    let job = pool
        .submit(|_| -> harbor_pool::JobResult<()> { panic!("boom") })
        .unwrap();
    match job.join_timeout(common::PATIENCE) {
        Ok(Err(JobError::Panicked(message))) => assert_eq!(message, "boom"),
        Ok(other) => panic!("expected Panicked, got {other:?}"),
        Err(_) => panic!("the job never ended"),
    }
    assert!(replaced(&pool, 1), "{:?}", pool.stats());

    // The logger fails after the job ran: the job is already terminal, with
    // its real result.
    trigger_on(Some(" ended "));
    let job = pool.submit(|_| Ok(2)).unwrap();
    let id = job.id();
    assert_eq!(join(job), Some(2));
    assert_eq!(pool.status(id), Some(JobStatus::Completed));
    // The worker logs the end after recording it, and dies there.
    assert!(replaced(&pool, 2), "{:?}", pool.stats());

    // The logger fails on an untracked job's panic: it is still counted.
    trigger_on(Some("untracked job panicked"));
    pool.execute(|| panic!("boom")).unwrap();
    common::join(&pool);
    assert!(replaced(&pool, 3), "{:?}", pool.stats());

    trigger_on(None);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.failed,
            stats.panicked
        ),
        (4, 2, 2, 2),
        "{stats:?}"
    );
    // The pool still serves jobs.
    assert_eq!(join(pool.submit(|_| Ok(3)).unwrap()), Some(3));
    // The supervisor, which logged each worker's death (with the logger's
    // panic message, so the logger panicked there too), still joins every
    // thread at shutdown.
    trigger_on(Some("log-panic"));
    drop(pool);
    trigger_on(None);
    assert!(common::no_threads_named("log-panic"));

    // A job panics while it holds the pool's last `Arc`: `Pool::drop` runs
    // during unwinding, on the pool's own thread, and logs there. A logger
    // that panics then must not abort the process.
    trigger_on(Some("not waiting"));
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .thread_name("log-unwind")
            .build()
            .unwrap(),
    );
    let inner = Arc::clone(&pool);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let job = pool
        .submit(move |_| -> harbor_pool::JobResult<()> {
            go_rx.recv_timeout(common::PATIENCE).unwrap();
            let _last = inner;
            panic!("with the last pool")
        })
        .unwrap();
    drop(pool);
    go_tx.send(()).unwrap();
    match job.join_timeout(common::PATIENCE) {
        Ok(Err(JobError::Panicked(message))) => assert_eq!(message, "with the last pool"),
        Ok(other) => panic!("expected Panicked, got {other:?}"),
        Err(_) => panic!("the job never ended"),
    }
    trigger_on(None);
    assert!(common::no_threads_named("log-unwind"));

    // A job joins a pending child on a one-worker pool, which runs it
    // inline; the logger fails as the child's end is logged. That must not
    // unwind into the parent and change its outcome.
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .thread_name("log-inline")
            .build()
            .unwrap(),
    );
    let inner = Arc::clone(&pool);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let parent = pool
        .submit(move |_| {
            go_rx.recv_timeout(common::PATIENCE).unwrap();
            let child = inner.submit(|_| Ok(5))?;
            Ok(child.join()? + 1)
        })
        .unwrap();
    trigger_on(Some("ended completed"));
    go_tx.send(()).unwrap();
    match parent.join_timeout(common::PATIENCE) {
        Ok(result) => assert_eq!(result.unwrap(), 6),
        Err(_) => panic!("the parent never ended"),
    }
    trigger_on(None);
    drop(pool);
    assert!(common::no_threads_named("log-inline"));
}
