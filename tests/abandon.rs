//! Jobs that never return: abandoned after their grace, their worker thread
//! detached and replaced, the detached threads bounded and never waited for.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harbor_pool::{CancelOutcome, JobError, JobOptions, JobStatus, Pool};

/// A job's value that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn deadline(ms: u64) -> JobOptions {
    JobOptions::new().timeout(Duration::from_millis(ms))
}

#[test]
fn a_spinning_job_is_abandoned_and_its_worker_replaced() {
    let pool = Pool::builder()
        .workers(1)
        .thread_name("ab-spin")
        .abandon_after(Duration::from_millis(100))
        .build()
        .unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    let (spin, value_drops) = (Arc::clone(&release), Arc::clone(&drops));
    // Never checks its token: spins until the test lets it go (bounded by
    // PATIENCE so a bug cannot spin forever).
    let stuck = pool
        .submit_with(deadline(50), move |_| {
            let until = Instant::now() + common::PATIENCE;
            while !spin.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::yield_now();
            }
            Ok(Counted(value_drops))
        })
        .unwrap();
    let id = stuck.id();
    assert_eq!(stuck.wait(common::PATIENCE), Some(JobStatus::Abandoned));
    assert_eq!(pool.status(id), Some(JobStatus::Abandoned));
    assert_eq!(pool.wait(id, common::PATIENCE), Some(JobStatus::Abandoned));
    // The next job runs on the replacement, under the same name.
    let name = pool
        .submit(|_| Ok(std::thread::current().name().map(str::to_owned)))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(name.as_deref(), Some("ab-spin-0"));
    let stats = pool.stats();
    assert_eq!(
        (stats.stray_threads, stats.alive, stats.abandoned),
        (1, 1, 1),
        "{stats:?}"
    );
    assert!(matches!(stuck.join(), Err(JobError::Abandoned)));
    // The stray job returns at last: its value is dropped exactly once, and
    // its thread exits.
    release.store(true, Ordering::SeqCst);
    assert!(common::eventually(|| pool.stats().stray_threads == 0));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    common::join(&pool);
    let stats = pool.stats();
    assert_eq!(
        stats.submitted,
        stats.completed + stats.failed + stats.cancelled + stats.abandoned,
        "{stats:?}"
    );
    assert_eq!((stats.alive, stats.restarts), (1, 0), "{stats:?}");
    pool.shutdown();
    assert!(common::no_threads_named("ab-spin"));
}

/// A job that ignores its token and blocks until its sender is used or
/// dropped (bounded by PATIENCE).
fn stuck_job(
    rx: mpsc::Receiver<()>,
) -> impl FnOnce(&harbor_pool::CancelToken) -> harbor_pool::JobResult<()> {
    move |_| {
        let _ = rx.recv_timeout(common::PATIENCE);
        Ok(())
    }
}

#[test]
fn cancel_by_id_starts_the_grace_and_a_job_that_returns_in_time_is_not_abandoned() {
    let pool = Pool::builder()
        .workers(1)
        .abandon_after(Duration::from_secs(60))
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let polite = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(common::PATIENCE)?;
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();
    assert_eq!(pool.cancel(polite.id()), CancelOutcome::Requested);
    assert_eq!(polite.wait(common::PATIENCE), Some(JobStatus::Cancelled));

    // Per job: a short grace overrides the builder's minute.
    let (tx, rx) = mpsc::channel();
    let stuck = pool
        .submit_with(
            JobOptions::new().abandon_after(Duration::from_millis(20)),
            stuck_job(rx),
        )
        .unwrap();
    assert!(common::eventually(|| stuck.status() == JobStatus::Running));
    assert_eq!(pool.cancel(stuck.id()), CancelOutcome::Requested);
    assert_eq!(stuck.wait(common::PATIENCE), Some(JobStatus::Abandoned));
    assert_eq!(pool.submit(|_| Ok(2)).unwrap().join().unwrap(), 2);
    drop(tx);
    assert!(common::eventually(|| pool.stats().stray_threads == 0));
}

#[test]
fn the_stray_cap_holds_a_stuck_position_until_a_stray_exits() {
    let pool = Pool::builder()
        .workers(2)
        .thread_name("ab-cap")
        .abandon_after(Duration::from_millis(20))
        .max_stray_threads(1)
        .build()
        .unwrap();
    let (first_tx, first_rx) = mpsc::channel();
    let (second_tx, second_rx) = mpsc::channel();
    let first = pool.submit_with(deadline(10), stuck_job(first_rx)).unwrap();
    assert_eq!(first.wait(common::PATIENCE), Some(JobStatus::Abandoned));
    assert!(common::eventually(|| {
        let stats = pool.stats();
        stats.stray_threads == 1 && stats.alive == 2
    }));
    let second = pool
        .submit_with(deadline(10), stuck_job(second_rx))
        .unwrap();
    // Abandoned all the same, but its thread stays: one stray is the limit.
    assert_eq!(second.wait(common::PATIENCE), Some(JobStatus::Abandoned));
    let stats = pool.stats();
    assert_eq!((stats.stray_threads, stats.abandoned), (1, 2), "{stats:?}");
    // The other position still serves jobs.
    assert_eq!(pool.submit(|_| Ok(3)).unwrap().join().unwrap(), 3);
    // The first stray exits: the held position is detached and replaced.
    drop(first_tx);
    assert!(common::eventually(|| {
        let stats = pool.stats();
        stats.stray_threads == 1 && stats.alive == 2 && stats.busy == 0
    }));
    for i in 0..4 {
        assert_eq!(pool.submit(move |_| Ok(i)).unwrap().join().unwrap(), i);
    }
    drop(second_tx);
    assert!(common::eventually(|| pool.stats().stray_threads == 0));
    pool.shutdown();
    assert!(common::no_threads_named("ab-cap"));
}

#[test]
fn shutdown_now_abandons_a_stuck_job_and_does_not_wait_for_its_thread() {
    let pool = Pool::builder()
        .workers(1)
        .thread_name("ab-down")
        .abandon_after(Duration::from_millis(50))
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stuck = pool.submit(stuck_job(rx)).unwrap();
    assert!(common::eventually(|| stuck.status() == JobStatus::Running));
    let queued = pool.submit(|_| Ok(())).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let pool = Arc::new(pool);
    let stopper = Arc::clone(&pool);
    std::thread::spawn(move || {
        stopper.shutdown_now();
        done_tx.send(()).unwrap();
    });
    // Well before the stuck job would give up (PATIENCE).
    assert!(
        done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "shutdown_now waited for a thread stuck in an abandoned job"
    );
    assert_eq!(stuck.status(), JobStatus::Abandoned);
    assert_eq!(queued.status(), JobStatus::Cancelled);
    assert_eq!(pool.stats().stray_threads, 1);
    drop(tx);
    assert!(common::eventually(|| pool.stats().stray_threads == 0));
    assert!(common::no_threads_named("ab-down"));
}

#[test]
fn a_stuck_job_joined_inline_takes_its_outer_job_with_it() {
    // A job joins a pending child on a one-worker pool: the child runs
    // inline on the same thread. If the child gets stuck past its grace,
    // both are abandoned and the thread replaced.
    let pool = one_worker_pool();
    let (tx, rx) = mpsc::channel();
    let (child_tx, child_rx) = mpsc::channel();
    let inner = Arc::clone(&pool);
    let outer = pool
        .submit(move |_| {
            let child = inner.submit_with(deadline(10), stuck_job(rx))?;
            child_tx.send(child.id()).unwrap();
            child.join()?;
            Ok(())
        })
        .unwrap();
    let child = child_rx.recv_timeout(common::PATIENCE).unwrap();
    assert_eq!(outer.wait(common::PATIENCE), Some(JobStatus::Abandoned));
    // Both are abandoned in one step of the supervisor, one after the other.
    assert_eq!(
        pool.wait(child, common::PATIENCE),
        Some(JobStatus::Abandoned)
    );
    assert_eq!(pool.submit(|_| Ok(4)).unwrap().join().unwrap(), 4);
    drop(tx);
    assert!(common::eventually(|| pool.stats().stray_threads == 0));
    common::join(&pool);
    let stats = pool.stats();
    assert_eq!(stats.abandoned, 2, "{stats:?}");
    assert_eq!(
        stats.submitted,
        stats.completed + stats.failed + stats.cancelled + stats.abandoned
    );
}

#[test]
fn shutdown_now_reports_every_job_it_ended() {
    let pool = Pool::builder()
        .workers(3)
        .thread_name("ab-report")
        .abandon_after(Duration::from_millis(50))
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let started = move || started_tx.clone();
    // Cooperative: returns `Err` once cancelled.
    let tx = started();
    let cooperative = pool
        .submit(move |token| {
            tx.send(()).unwrap();
            token.sleep(common::PATIENCE)?;
            Ok(())
        })
        .unwrap();
    // Finishes anyway once cancelled: `Completed`.
    let tx = started();
    let finishes = pool
        .submit(move |token| {
            tx.send(()).unwrap();
            let _ = token.sleep(common::PATIENCE);
            Ok(())
        })
        .unwrap();
    // Ignores its token: abandoned.
    let (stuck_tx, stuck_rx) = mpsc::channel::<()>();
    let tx = started();
    let stuck = pool
        .submit(move |_| {
            tx.send(()).unwrap();
            let _ = stuck_rx.recv_timeout(common::PATIENCE);
            Ok(())
        })
        .unwrap();
    for _ in 0..3 {
        started_rx.recv_timeout(common::PATIENCE).unwrap();
    }
    let queued: Vec<_> = (0..2).map(|_| pool.submit(|_| Ok(())).unwrap()).collect();
    for _ in 0..3 {
        pool.execute(|| unreachable!("dropped by shutdown_now"))
            .unwrap();
    }

    let report = pool.shutdown_now();

    let mut cancelled = report.cancelled.clone();
    cancelled.sort();
    let mut expected: Vec<_> = queued.iter().map(|job| job.id()).collect();
    expected.sort();
    assert_eq!(cancelled, expected);
    let mut interrupted = report.interrupted.clone();
    interrupted.sort_by_key(|(id, _)| *id);
    let mut expected = vec![
        (cooperative.id(), JobStatus::Cancelled),
        (finishes.id(), JobStatus::Completed),
        (stuck.id(), JobStatus::Abandoned),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(interrupted, expected);
    assert_eq!(report.abandoned, vec![stuck.id()]);
    assert_eq!(report.untracked_dropped, 3);
    assert_eq!(report.stray_threads, 1);
    assert!(report.joined(), "{report:?}");
    drop(stuck_tx);
    assert!(common::no_threads_named("ab-report"));
}

/// A one-worker pool whose cancelled jobs get a 20 ms grace.
fn one_worker_pool() -> Arc<Pool> {
    Arc::new(
        Pool::builder()
            .workers(1)
            .abandon_after(Duration::from_millis(20))
            .build()
            .unwrap(),
    )
}

/// A job that says it runs, then waits to be released (bounded), ignoring
/// its token.
fn held(
    running: mpsc::Sender<()>,
    released: mpsc::Receiver<()>,
) -> impl FnOnce(&harbor_pool::CancelToken) -> harbor_pool::JobResult<()> + Send + 'static {
    move |_| {
        running.send(()).unwrap();
        let _ = released.recv_timeout(common::PATIENCE);
        Ok(())
    }
}

/// An untracked job that joins a tracked one runs it inline; when that
/// one is abandoned and the thread detached, the untracked job ending on
/// the stray must leave the busy flag to the replacement.
#[test]
fn a_detached_threads_untracked_job_leaves_the_replacements_busy_flag() {
    let pool = one_worker_pool();
    let (b_running, b_runs) = mpsc::channel::<()>();
    let (release_b, b_released) = mpsc::channel::<()>();
    let (b_id_tx, b_id) = mpsc::channel();
    let (u_done_tx, u_done) = mpsc::channel::<()>();
    let inner = Arc::clone(&pool);
    pool.execute(move || {
        let b = inner.submit(held(b_running, b_released)).unwrap();
        b_id_tx.send(b.id()).unwrap();
        let _ = b.join();
        u_done_tx.send(()).unwrap();
    })
    .unwrap();
    let b = b_id.recv_timeout(common::PATIENCE).unwrap();
    b_runs.recv_timeout(common::PATIENCE).unwrap();
    assert_eq!(pool.cancel(b), CancelOutcome::Requested);
    assert!(common::eventually(
        || pool.status(b) == Some(JobStatus::Abandoned)
    ));
    assert!(common::eventually(|| pool.stats().alive == 1));
    // The replacement runs C.
    let (c_running, c_runs) = mpsc::channel::<()>();
    let (release_c, c_released) = mpsc::channel::<()>();
    let c = pool.submit(held(c_running, c_released)).unwrap();
    c_runs.recv_timeout(common::PATIENCE).unwrap();
    assert_eq!(pool.stats().busy, 1);
    // The stray returns from B, then from the untracked job, and exits.
    release_b.send(()).unwrap();
    u_done.recv_timeout(common::PATIENCE).unwrap();
    assert!(common::eventually(|| pool.stats().stray_threads == 0));
    assert_eq!(c.status(), JobStatus::Running);
    assert_eq!(pool.stats().busy, 1, "the replacement is busy with C");
    release_c.send(()).unwrap();
    c.join().unwrap();
}
