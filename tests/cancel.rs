//! Cancellation by id in every state, tokens, and deadlines.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harbor_pool::{
    CancelOutcome, CancelToken, Cancelled, JobError, JobOptions, JobResult, JobStatus, Pool,
};

static DROPS: AtomicUsize = AtomicUsize::new(0);
struct Counted;
impl Drop for Counted {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn cancelling_a_pending_job_means_it_never_runs() {
    let pool = Pool::new(1).unwrap();
    let release = common::block_worker(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let captured = Counted;
    let job = pool
        .submit(move |_| {
            let _keep = &captured;
            flag.store(true, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    assert_eq!(job.status(), JobStatus::Pending);
    let before = DROPS.load(Ordering::SeqCst);
    assert_eq!(pool.cancel(job.id()), CancelOutcome::Cancelled);
    // The closure (and what it captured) is released at once, exactly once.
    assert_eq!(DROPS.load(Ordering::SeqCst), before + 1);
    assert_eq!(pool.status(job.id()), Some(JobStatus::Cancelled));
    assert_eq!(pool.cancel(job.id()), CancelOutcome::AlreadyFinished);

    release.send(()).unwrap();
    common::join(&pool);
    assert!(
        !ran.load(Ordering::SeqCst),
        "a cancelled pending job never runs"
    );
    assert_eq!(DROPS.load(Ordering::SeqCst), before + 1);
    assert!(matches!(job.join(), Err(JobError::Cancelled)));
    let stats = pool.stats();
    assert_eq!(stats.cancelled, 1);
    assert_eq!(
        stats.submitted,
        stats.completed + stats.failed + stats.cancelled
    );
}

/// Submits a job that reports it started, then waits on its token, and
/// finishes as `finish` says once cancelled.
fn running_job(
    pool: &Pool,
    finish: fn(&CancelToken) -> JobResult<u8>,
) -> harbor_pool::JobHandle<u8> {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let handle = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            let _ = token.sleep(Duration::from_secs(600));
            finish(token)
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();
    handle
}

#[test]
fn cancelling_a_running_job_cancels_its_token() {
    common::quiet_panics();
    let pool = Pool::new(1).unwrap();

    // Returns Err after the cancel: Cancelled.
    let job = running_job(&pool, |token| {
        token.check()?;
        Ok(1)
    });
    assert_eq!(pool.cancel(job.id()), CancelOutcome::Requested);
    assert_eq!(job.wait(common::PATIENCE), Some(JobStatus::Cancelled));
    assert!(matches!(job.join(), Err(JobError::Cancelled)));

    // Finishes anyway with Ok: Completed.
    let job = running_job(&pool, |_| Ok(2));
    assert_eq!(job.cancel(), CancelOutcome::Requested);
    assert_eq!(job.join().unwrap(), 2);

    // Panics after the cancel: Failed.
    let job = running_job(&pool, |_| panic!("gave up badly"));
    assert_eq!(pool.cancel(job.id()), CancelOutcome::Requested);
    assert_eq!(
        job.wait(common::PATIENCE),
        Some(JobStatus::Failed("gave up badly".into()))
    );

    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.completed, stats.failed), (1, 1, 1));
}

#[test]
fn cancelling_finished_or_unknown_jobs_changes_nothing() {
    let pool = Pool::new(1).unwrap();
    let job = pool.submit(|_| Ok(())).unwrap();
    job.wait(common::PATIENCE).unwrap();
    assert_eq!(pool.cancel(job.id()), CancelOutcome::AlreadyFinished);
    assert_eq!(job.cancel(), CancelOutcome::AlreadyFinished);
    assert_eq!(job.status(), JobStatus::Completed);
    let unknown = "00000000-0000-4000-8000-000000000000".parse().unwrap();
    assert_eq!(pool.cancel(unknown), CancelOutcome::NotFound);
}

#[test]
fn an_err_without_cancellation_is_failed_not_cancelled() {
    let pool = Pool::new(1).unwrap();
    let job = pool
        .submit(|_| -> JobResult<()> { Err(Cancelled.into()) })
        .unwrap();
    assert_eq!(
        job.wait(common::PATIENCE),
        Some(JobStatus::Failed("cancelled".into()))
    );
}

#[test]
fn token_sleep_wakes_early_on_cancel() {
    let pool = Pool::new(1).unwrap();
    let (started_tx, started_rx) = mpsc::channel::<Instant>();
    let job = pool
        .submit(move |token| {
            started_tx.send(Instant::now()).unwrap();
            token.sleep(Duration::from_secs(600))?;
            Ok(())
        })
        .unwrap();
    let started = started_rx.recv_timeout(common::PATIENCE).unwrap();
    job.cancel();
    assert_eq!(job.wait(common::PATIENCE), Some(JobStatus::Cancelled));
    // Far below the 600 s it asked for; the bound is loose for loaded CI.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_running_job_past_its_deadline_is_cancelled() {
    let pool = Pool::new(1).unwrap();
    let job = pool
        .submit_with(
            JobOptions::new().timeout(Duration::from_millis(30)),
            |token| {
                token.sleep(Duration::from_secs(600))?;
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(job.wait(common::PATIENCE), Some(JobStatus::Cancelled));
    assert_eq!(
        pool.info(job.id()).unwrap().timeout,
        Some(Duration::from_millis(30))
    );
    assert!(matches!(job.join(), Err(JobError::Cancelled)));
}

#[test]
fn a_pending_job_past_its_deadline_never_starts() {
    let pool = Pool::new(1).unwrap();
    let release = common::block_worker(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let job = pool
        .submit_with(
            JobOptions::new().timeout(Duration::from_millis(10)),
            move |_| {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            },
        )
        .unwrap();
    // The timer cancels it while it waits in the queue.
    assert_eq!(job.wait(common::PATIENCE), Some(JobStatus::Cancelled));
    release.send(()).unwrap();
    common::join(&pool);
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn a_job_that_beats_its_deadline_completes() {
    let pool = Pool::new(1).unwrap();
    let job = pool
        .submit_with(JobOptions::new().timeout(Duration::from_secs(600)), |_| {
            Ok(9)
        })
        .unwrap();
    assert_eq!(job.join().unwrap(), 9);
    // A huge timeout is accepted too (it cannot overflow the clock).
    let job = pool
        .submit_with(JobOptions::new().timeout(Duration::MAX), |_| Ok(10))
        .unwrap();
    assert_eq!(job.join().unwrap(), 10);
}

#[test]
fn a_slow_drop_of_an_expired_job_does_not_delay_other_deadlines() {
    // The deadline timer runs no user code: a queued job whose deadline
    // passes is marked `Cancelled`, and its closure (here, one whose `Drop`
    // blocks) is dropped later by a worker. So another job's deadline fires
    // on time while that `Drop` would still be blocking.
    struct SlowDrop(mpsc::Receiver<()>);
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            let _ = self.0.recv_timeout(common::PATIENCE);
        }
    }
    let pool = Pool::builder().workers(1).build().unwrap();
    let release_worker = common::block_worker(&pool);
    let (release_drop, slow) = mpsc::channel();
    let slow = SlowDrop(slow);
    let first = pool
        .submit_with(
            JobOptions::new().timeout(Duration::from_millis(10)),
            move |_| {
                let _slow = &slow;
                Ok(())
            },
        )
        .unwrap();
    let second = pool
        .submit_with(
            JobOptions::new().timeout(Duration::from_millis(100)),
            |_| Ok(()),
        )
        .unwrap();
    assert_eq!(first.wait(common::PATIENCE), Some(JobStatus::Cancelled));
    // Well before the slow `Drop` could have given up (PATIENCE).
    assert_eq!(
        second.wait(Duration::from_secs(5)),
        Some(JobStatus::Cancelled),
        "the second deadline waited for the first job's Drop"
    );
    drop(release_drop);
    drop(release_worker);
    common::join(&pool);
}
