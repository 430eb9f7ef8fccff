//! Awaiting jobs: `JobHandle` as a `Future` and `Pool::wait_async`, on a
//! real runtime (tokio, multi-thread) and on a minimal executor (pollster).
//!
//! Every wait is bounded: tokio's by `tokio::time::timeout`, pollster's by
//! running it on a helper thread whose answer is awaited with a deadline
//! (a lost wake-up fails the test instead of hanging it). Futures are
//! polled by hand where the test must know that a waker is registered
//! before the job ends.
#![cfg(not(loom))] // tokio does not build under `--cfg loom`

mod common;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::PATIENCE;
use harbor_pool::{
    CancelOutcome, JobError, JobHandle, JobId, JobOptions, JobResult, JobStatus, Pool,
};

/// A boxed job future, so one test body runs on either executor.
type Awaited = Pin<Box<dyn Future<Output = Result<u32, JobError>> + Send>>;

/// Runs `future` on a tokio multi-thread runtime, inside a spawned task
/// (so it is polled by a runtime worker), bounded by `PATIENCE`.
fn on_tokio<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(PATIENCE, tokio::spawn(future))
            .await
            .expect("the future did not complete within PATIENCE")
            .expect("the task panicked")
    })
}

/// Runs `future` with `pollster::block_on` on a helper thread, waiting at
/// most `PATIENCE` for it (a hung future leaks that thread and fails).
fn on_pollster<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(pollster::block_on(future));
    });
    rx.recv_timeout(PATIENCE)
        .expect("the future did not complete within PATIENCE")
}

/// Wraps `future`, sending on `pending` once it first returns `Pending`,
/// that is once its waker is registered.
fn signal_pending<F: Future + Unpin>(
    mut future: F,
    pending: mpsc::Sender<()>,
) -> impl Future<Output = F::Output> {
    let mut pending = Some(pending);
    std::future::poll_fn(move |cx| {
        let poll = Pin::new(&mut future).poll(cx);
        if poll.is_pending()
            && let Some(tx) = pending.take()
        {
            let _ = tx.send(());
        }
        poll
    })
}

/// A waker that counts its wakes; its live clones are its `Arc`'s strong
/// count less the test's own reference.
#[derive(Default)]
struct Counted {
    wakes: AtomicUsize,
}

impl Wake for Counted {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counted {
    fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(self))
    }

    /// Clones of its waker alive now, wherever they are.
    fn live(self: &Arc<Self>) -> usize {
        Arc::strong_count(self) - 1
    }

    fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

/// Polls `future` once with `waker`.
fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// A job that runs until `release` is used or dropped (bounded by
/// `PATIENCE`), returning `value`.
fn held_job(pool: &Pool, value: u32) -> (JobHandle<u32>, mpsc::Sender<()>) {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let handle = pool
        .submit(move |_| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(PATIENCE);
            Ok(value)
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    (handle, release_tx)
}

/// Every way a job ends, awaited through `run` (one executor).
fn awaits_every_outcome(run: &dyn Fn(Awaited) -> Result<u32, JobError>) {
    common::quiet_panics();
    let pool = Arc::new(Pool::new(1).unwrap());

    // Completed, failed, panicked.
    assert_eq!(run(Box::pin(pool.submit(|_| Ok(7)).unwrap())).unwrap(), 7);
    let failed = pool.submit(|_| -> JobResult<u32> { Err("bad input".into()) });
    let err = run(Box::pin(failed.unwrap())).unwrap_err();
    assert!(
        matches!(&err, JobError::Failed(e) if e.to_string() == "bad input"),
        "{err:?}"
    );
    let panicked = pool.submit(|_| -> JobResult<u32> { panic!("boom") });
    let err = run(Box::pin(panicked.unwrap())).unwrap_err();
    assert!(
        matches!(&err, JobError::Panicked(m) if m == "boom"),
        "{err:?}"
    );

    // Cancelled by id while pending, while the future waits.
    let release = common::block_worker(&pool);
    let pending = pool.submit(|_| Ok(1)).unwrap();
    let (polled_tx, polled_rx) = mpsc::channel();
    let canceller = {
        let (pool, id) = (Arc::clone(&pool), pending.id());
        thread::spawn(move || {
            polled_rx.recv_timeout(PATIENCE).unwrap();
            pool.cancel(id)
        })
    };
    let err = run(Box::pin(signal_pending(pending, polled_tx))).unwrap_err();
    assert!(matches!(err, JobError::Cancelled), "{err:?}");
    assert_eq!(canceller.join().unwrap(), CancelOutcome::Cancelled);

    // A deadline that passes while pending: the timer ends it and wakes us.
    let expiring = pool
        .submit_with(JobOptions::new().timeout(Duration::from_millis(10)), |_| {
            Ok(2)
        })
        .unwrap();
    assert!(matches!(run(Box::pin(expiring)), Err(JobError::Cancelled)));
    drop(release);

    // Cancelled by id while running, while the future waits.
    let (started_tx, started_rx) = mpsc::channel();
    let running = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(Duration::from_secs(3600))?;
            Ok(3)
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let (polled_tx, polled_rx) = mpsc::channel();
    let canceller = {
        let (pool, id) = (Arc::clone(&pool), running.id());
        thread::spawn(move || {
            polled_rx.recv_timeout(PATIENCE).unwrap();
            pool.cancel(id)
        })
    };
    let err = run(Box::pin(signal_pending(running, polled_tx))).unwrap_err();
    assert!(matches!(err, JobError::Cancelled), "{err:?}");
    assert_eq!(canceller.join().unwrap(), CancelOutcome::Requested);

    // A deadline that passes while running.
    let slow = pool
        .submit_with(
            JobOptions::new().timeout(Duration::from_millis(20)),
            |token| {
                token.sleep(Duration::from_secs(3600))?;
                Ok(4)
            },
        )
        .unwrap();
    assert!(matches!(run(Box::pin(slow)), Err(JobError::Cancelled)));

    let stats = pool.stats();
    assert_eq!(
        (
            stats.completed,
            stats.failed,
            stats.panicked,
            stats.cancelled
        ),
        // The untracked job that held the worker completed too.
        (2, 2, 1, 4),
        "{stats:?}"
    );
}

#[test]
fn tokio_awaits_every_outcome() {
    awaits_every_outcome(&on_tokio);
}

#[test]
fn pollster_awaits_every_outcome() {
    awaits_every_outcome(&on_pollster);
}

#[test]
fn a_handle_is_an_unpin_send_future() {
    fn check<F: Future<Output = Result<u64, JobError>> + Unpin + Send + 'static>() {}
    check::<JobHandle<u64>>();
    fn check_wait<F: Future<Output = Option<JobStatus>> + Unpin + Send + 'static>(_: F) {}
    let pool = Pool::new(1).unwrap();
    let id = pool.submit(|_| Ok(())).unwrap().id();
    check_wait(pool.wait_async(id));
}

#[test]
fn awaiting_after_the_pool_is_dropped() {
    // Finished before the pool went away.
    let pool = Pool::new(1).unwrap();
    let handle = pool.submit(|_| Ok(5)).unwrap();
    let waiting = pool.wait_async(handle.id());
    drop(pool); // graceful: runs the job first
    assert_eq!(on_pollster(handle).unwrap(), 5);
    assert_eq!(on_tokio(waiting), Some(JobStatus::Completed));

    // Awaited while the pool shuts down: `shutdown_now` cancels the queued
    // job (while its only worker is still held), which wakes the futures.
    let pool = Pool::new(1).unwrap();
    let release = common::block_worker(&pool);
    let queued = pool.submit(|_| Ok(6)).unwrap();
    let waiting = pool.wait_async(queued.id());
    let (polled_tx, polled_rx) = mpsc::channel();
    let awaited = {
        let polled_tx = polled_tx.clone();
        thread::spawn(move || on_tokio(signal_pending(queued, polled_tx)))
    };
    let waited = thread::spawn(move || on_pollster(signal_pending(waiting, polled_tx)));
    for _ in 0..2 {
        polled_rx.recv_timeout(PATIENCE).unwrap();
    }
    let stopper = thread::spawn(move || {
        pool.shutdown_now();
        drop(pool);
    });
    // Both bounded by PATIENCE inside.
    assert!(matches!(awaited.join().unwrap(), Err(JobError::Cancelled)));
    assert_eq!(waited.join().unwrap(), Some(JobStatus::Cancelled));
    drop(release);
    stopper.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_awaited_from_64_tasks() {
    const JOBS: u64 = 10_000;
    const TASKS: u64 = 64;
    let pool = Arc::new(Pool::new(2).unwrap());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                // This task's share, all in flight at once, then awaited.
                let handles: Vec<_> = (task..JOBS)
                    .step_by(TASKS as usize)
                    .map(|i| pool.submit(move |_| Ok(i)).unwrap())
                    .collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sum
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += tokio::time::timeout(PATIENCE, task)
            .await
            .expect("a task did not finish within PATIENCE")
            .unwrap();
    }
    assert_eq!(total, JOBS * (JOBS - 1) / 2);
    // A future can see its job terminal a moment before the worker counts
    // it; the counters are exact once the pool is idle.
    assert!(pool.join_timeout(PATIENCE));
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.completed), (JOBS, JOBS));
}

#[test]
fn pollster_awaits_jobs_from_many_threads() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let threads: Vec<_> = (0..8_u64)
        .map(|t| {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                (0..500_u64)
                    .map(|i| on_pollster(pool.submit(move |_| Ok(t * 1_000 + i)).unwrap()))
                    .map(Result::unwrap)
                    .sum::<u64>()
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let expected: u64 = (0..8_u64)
        .map(|t| (0..500).map(|i| t * 1_000 + i).sum::<u64>())
        .sum();
    assert_eq!(total, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiters_on_one_id_all_wake() {
    const WAITERS: usize = 200;
    let pool = Pool::new(1).unwrap();
    let (handle, release) = held_job(&pool, 9);
    let id = handle.id();
    let (pending_tx, pending_rx) = mpsc::channel();
    let tasks: Vec<_> = (0..WAITERS)
        .map(|_| tokio::spawn(signal_pending(pool.wait_async(id), pending_tx.clone())))
        .collect();
    // Some on a minimal executor too, on threads of their own.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let waiting = signal_pending(pool.wait_async(id), pending_tx.clone());
            thread::spawn(move || on_pollster(waiting))
        })
        .collect();
    // Every one of them registered before the job ends.
    for _ in 0..WAITERS + threads.len() {
        pending_rx.recv_timeout(PATIENCE).unwrap();
    }
    drop(release);
    for task in tasks {
        let status = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("a waiter was not woken within PATIENCE")
            .unwrap();
        assert_eq!(status, Some(JobStatus::Completed));
    }
    for thread in threads {
        assert_eq!(thread.join().unwrap(), Some(JobStatus::Completed));
    }
    assert_eq!(handle.await.unwrap(), 9);
}

#[test]
fn wait_async_on_an_unknown_or_forgotten_id_is_ready_at_once() {
    let pool = Pool::builder()
        .workers(1)
        .retain_finished(1)
        .build()
        .unwrap();
    let unknown: JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
    let noop = Waker::noop();
    let mut future = pin!(pool.wait_async(unknown));
    let mut cx = Context::from_waker(noop);
    assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(None));
    // Polled again: the same answer, no panic.
    assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(None));

    let first = pool.submit(|_| Ok(())).unwrap().id();
    assert_eq!(pool.wait(first, PATIENCE), Some(JobStatus::Completed));
    for _ in 0..4 {
        let id = pool.submit(|_| Ok(())).unwrap().id();
        assert_eq!(pool.wait(id, PATIENCE), Some(JobStatus::Completed));
    }
    assert_eq!(pool.status(first), None, "forgotten under retention");
    let mut forgotten = pin!(pool.wait_async(first));
    assert_eq!(forgotten.as_mut().poll(&mut cx), Poll::Ready(None));
}

#[test]
fn wait_async_survives_retention_forgetting_the_job_meanwhile() {
    let pool = Pool::builder()
        .workers(1)
        .retain_finished(1)
        .build()
        .unwrap();
    let (handle, release) = held_job(&pool, 1);
    let id = handle.id();
    drop(handle);
    let counted = Arc::new(Counted::default());
    let mut waiting = pool.wait_async(id);
    assert!(poll_once(&mut waiting, &counted.waker()).is_pending());
    drop(release);
    for _ in 0..4 {
        let other = pool.submit(|_| Ok(())).unwrap().id();
        assert_eq!(pool.wait(other, PATIENCE), Some(JobStatus::Completed));
    }
    assert_eq!(pool.status(id), None, "forgotten under retention");
    assert_eq!(counted.wakes(), 1);
    assert_eq!(
        poll_once(&mut waiting, &counted.waker()),
        Poll::Ready(Some(JobStatus::Completed))
    );
    assert_eq!(counted.live(), 0);
}

#[test]
fn a_waker_is_stored_once_replaced_when_another_and_woken_once() {
    let pool = Pool::new(1).unwrap();
    let (mut handle, release) = held_job(&pool, 3);
    let (first, second) = (Arc::new(Counted::default()), Arc::new(Counted::default()));
    let first_waker = first.waker();
    assert!(poll_once(&mut handle, &first_waker).is_pending());
    assert_eq!(first.live(), 2, "ours and the stored clone");
    // The same task (a clone of its waker): nothing is cloned or replaced.
    assert!(poll_once(&mut handle, &first_waker.clone()).is_pending());
    assert_eq!(first.live(), 2);
    // Another task: the stored waker is replaced, the old one dropped.
    let second_waker = second.waker();
    assert!(poll_once(&mut handle, &second_waker).is_pending());
    assert_eq!((first.live(), second.live()), (1, 2));
    drop(first_waker);
    assert_eq!(first.live(), 0);

    drop(release);
    assert!(common::eventually(|| second.wakes() == 1));
    assert_eq!(second.live(), 1, "the pool keeps no waker once it woke it");
    assert_eq!(first.wakes(), 0);
    assert!(matches!(
        poll_once(&mut handle, &second_waker),
        Poll::Ready(Ok(3))
    ));
    // Polled after `Ready`: a clear error, no panic, no waker stored.
    assert!(matches!(
        poll_once(&mut handle, &second_waker),
        Poll::Ready(Err(JobError::ResultTaken))
    ));
    assert!(matches!(handle.join(), Err(JobError::ResultTaken)));
    drop(second_waker);
    assert_eq!((second.live(), second.wakes()), (0, 1));
}

#[test]
fn dropped_futures_leave_no_waker_behind() {
    let pool = Pool::new(1).unwrap();
    let (mut handle, release) = held_job(&pool, 4);
    let id = handle.id();
    let counted = Arc::new(Counted::default());
    // Short-lived futures against a long-running job, as with timeouts:
    // each polled once, then dropped.
    for _ in 0..10_000 {
        let mut waiting = pool.wait_async(id);
        assert!(poll_once(&mut waiting, &counted.waker()).is_pending());
    }
    assert_eq!(counted.live(), 0, "every dropped future withdrew its waker");
    // A handle polled and then dropped withdraws its waker too (and
    // detaches, as before).
    assert!(poll_once(&mut handle, &counted.waker()).is_pending());
    assert_eq!(counted.live(), 1);
    drop(handle);
    assert_eq!(counted.live(), 0);
    drop(release);
    assert_eq!(pool.wait(id, PATIENCE), Some(JobStatus::Completed));
    assert_eq!(counted.wakes(), 0, "nobody left to wake");
}

#[test]
fn a_polled_handle_can_still_be_joined_or_waited() {
    let pool = Pool::new(1).unwrap();
    let counted = Arc::new(Counted::default());

    let (mut handle, release) = held_job(&pool, 8);
    assert!(poll_once(&mut handle, &counted.waker()).is_pending());
    drop(release);
    assert_eq!(handle.wait(PATIENCE), Some(JobStatus::Completed));
    assert_eq!(handle.join().unwrap(), 8);

    let (mut handle, release) = held_job(&pool, 9);
    assert!(poll_once(&mut handle, &counted.waker()).is_pending());
    drop(release);
    assert_eq!(handle.join_timeout(PATIENCE).ok().unwrap().unwrap(), 9);
    // A joiner can see the terminal status before the finishing worker has
    // woken the stored waker (it wakes after releasing the record's lock):
    // await the wake, bounded.
    assert!(
        common::eventually(|| counted.wakes() == 2),
        "{}",
        counted.wakes()
    );
    assert!(
        common::eventually(|| counted.live() == 0),
        "{}",
        counted.live()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_on_a_handle_leaves_it_usable() {
    let pool = Pool::new(1).unwrap();
    let (mut handle, release) = held_job(&pool, 11);
    // Bounded by its own timeout: the job is held, so it must time out.
    let early = tokio::time::timeout(Duration::from_millis(20), &mut handle).await;
    assert!(early.is_err());
    assert_eq!(handle.status(), JobStatus::Running);
    drop(release);
    let value = tokio::time::timeout(PATIENCE, handle)
        .await
        .expect("not woken within PATIENCE");
    assert_eq!(value.unwrap(), 11);
}

#[test]
fn awaiting_a_pending_job_from_a_job_of_the_same_pool_runs_it_inline() {
    // One worker: the inner job can only run if the awaiting job runs it.
    let pool = Arc::new(Pool::new(1).unwrap());
    let inner_pool = Arc::clone(&pool);
    let outer = pool
        .submit(move |_| {
            let handle = inner_pool.submit(|_| Ok(20))?;
            let id = inner_pool.submit(|_| Ok(0))?.id();
            let status = pollster::block_on(inner_pool.wait_async(id));
            assert_eq!(status, Some(JobStatus::Completed));
            Ok(pollster::block_on(handle)? + 1)
        })
        .unwrap();
    match outer.join_timeout(PATIENCE) {
        Ok(value) => assert_eq!(value.unwrap(), 21),
        Err(_) => {
            // The worker is stuck for good: leak the pool rather than hang
            // in its drop.
            std::mem::forget(pool);
            panic!("awaiting a pending job from a job deadlocked the pool");
        }
    }
}
