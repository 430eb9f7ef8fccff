//! `CancelToken::cancelled()`: a future that completes when the token is
//! cancelled (by `cancel`, a job's cancel by id, its deadline, or
//! `shutdown_now`), on a real executor (tokio, multi-threaded) and a
//! minimal one (pollster); and the wakers it stores, counted so that none
//! leaks.

// tokio is not a dev-dependency under `cfg(loom)` (see Cargo.toml).
#![cfg(not(loom))]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::PATIENCE;
use harbor_pool::{
    CancelOutcome, CancelToken, JobHandle, JobOptions, JobStatus, Pool, WaitForCancel,
};

/// Awaits `token.cancelled()`, reporting on `first_poll` whether its first
/// poll was pending (the waker is stored by then), so a test can cancel
/// only after that and exercise the wake-up rather than the ready path.
async fn await_cancel(token: CancelToken, first_poll: mpsc::Sender<bool>) {
    let mut future = token.cancelled();
    let mut reported = false;
    std::future::poll_fn(|cx| {
        let poll = Pin::new(&mut future).poll(cx);
        if !reported {
            reported = true;
            let _ = first_poll.send(poll.is_pending());
        }
        poll
    })
    .await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Starts awaiting `token.cancelled()` on `rt` and returns once that future
/// is pending; the handle completes when it does.
fn await_on_tokio(
    rt: &tokio::runtime::Runtime,
    token: &CancelToken,
) -> tokio::task::JoinHandle<()> {
    let (polled_tx, polled_rx) = mpsc::channel();
    let task = rt.spawn(await_cancel(token.clone(), polled_tx));
    assert_eq!(
        polled_rx.recv_timeout(PATIENCE),
        Ok(true),
        "first poll is pending"
    );
    task
}

/// Fails the test unless `task` completes within `PATIENCE`.
fn completes(rt: &tokio::runtime::Runtime, task: tokio::task::JoinHandle<()>) {
    rt.block_on(async {
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the future did not complete within PATIENCE")
            .unwrap();
    });
}

/// A tracked job that hands its token out, then waits on it (bounded).
fn job_sharing_its_token(pool: &Pool, options: JobOptions) -> (JobHandle<()>, CancelToken) {
    let (token_tx, token_rx) = mpsc::channel();
    let job = pool
        .submit_with(options, move |token| {
            token_tx.send(token.clone()).unwrap();
            token.sleep(PATIENCE)?;
            Ok(())
        })
        .unwrap();
    (job, token_rx.recv_timeout(PATIENCE).unwrap())
}

#[test]
fn completes_on_cancel_on_a_tokio_runtime() {
    let rt = runtime();
    let token = CancelToken::new();
    let tasks: Vec<_> = (0..20).map(|_| await_on_tokio(&rt, &token)).collect();
    let canceller = token.clone();
    thread::spawn(move || canceller.cancel()).join().unwrap();
    for task in tasks {
        completes(&rt, task);
    }
}

#[test]
fn completes_on_cancel_under_pollster() {
    let token = CancelToken::new();
    let (polled_tx, polled_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let waiter = token.clone();
    thread::spawn(move || {
        pollster::block_on(await_cancel(waiter, polled_tx));
        done_tx.send(()).unwrap();
    });
    assert_eq!(polled_rx.recv_timeout(PATIENCE), Ok(true));
    token.cancel();
    done_rx.recv_timeout(PATIENCE).unwrap();
}

#[test]
fn select_on_cancelled_beside_work() {
    let rt = runtime();
    let token = CancelToken::new();
    let (polled_tx, polled_rx) = mpsc::channel();
    let waiter = token.clone();
    let task = rt.spawn(async move {
        tokio::select! {
            () = await_cancel(waiter, polled_tx) => "cancelled",
            () = tokio::time::sleep(PATIENCE) => "worked until the end",
        }
    });
    assert_eq!(polled_rx.recv_timeout(PATIENCE), Ok(true));
    token.cancel();
    let outcome = rt.block_on(async { tokio::time::timeout(PATIENCE, task).await });
    assert_eq!(outcome.unwrap().unwrap(), "cancelled");
}

#[test]
fn completes_when_its_job_is_cancelled_by_id() {
    let rt = runtime();
    let pool = Pool::new(1).unwrap();
    let (job, token) = job_sharing_its_token(&pool, JobOptions::new());
    let task = await_on_tokio(&rt, &token);
    assert_eq!(pool.cancel(job.id()), CancelOutcome::Requested);
    completes(&rt, task);
    assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));
}

#[test]
fn completes_at_its_jobs_deadline() {
    let rt = runtime();
    let pool = Pool::new(1).unwrap();
    let options = JobOptions::new().timeout(Duration::from_millis(200));
    let (job, token) = job_sharing_its_token(&pool, options);
    let task = await_on_tokio(&rt, &token);
    completes(&rt, task);
    assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));
}

#[test]
fn completes_on_shutdown_now() {
    let rt = runtime();
    let pool = Pool::new(1).unwrap();
    let (job, token) = job_sharing_its_token(&pool, JobOptions::new());
    let task = await_on_tokio(&rt, &token);
    pool.shutdown_now();
    completes(&rt, task);
    assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));
}

/// A job can await its own token with a minimal executor inside it.
#[test]
fn a_job_can_block_on_its_own_token() {
    let pool = Pool::new(1).unwrap();
    let (polled_tx, polled_rx) = mpsc::channel();
    let job = pool
        .submit(move |token| {
            pollster::block_on(await_cancel(token.clone(), polled_tx));
            token.check()?;
            Ok(())
        })
        .unwrap();
    assert_eq!(polled_rx.recv_timeout(PATIENCE), Ok(true));
    assert_eq!(job.cancel(), CancelOutcome::Requested);
    let status = job.wait(PATIENCE);
    if status.is_none() {
        // The job is stuck in its future: dropping the pool would wait for it.
        std::mem::forget(pool);
        panic!("the job's future was not woken by the cancel");
    }
    assert_eq!(status, Some(JobStatus::Cancelled));
}

/// A waker that counts its wake-ups. Its clones and drops are counted by its
/// `Arc`: every clone the token stores is one more strong reference, every
/// drop (or consuming `wake`) one fewer.
#[derive(Default)]
struct CountingWaker {
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

struct Counted {
    counter: Arc<CountingWaker>,
    waker: Waker,
}

impl Counted {
    fn new() -> Self {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        Counted { counter, waker }
    }

    /// Clones of the waker alive beyond this test's own two references.
    fn stored(&self) -> usize {
        Arc::strong_count(&self.counter) - 2
    }

    fn wakes(&self) -> usize {
        self.counter.wakes.load(Ordering::SeqCst)
    }

    fn poll(&self, future: &mut WaitForCancel) -> Poll<()> {
        Pin::new(future).poll(&mut Context::from_waker(&self.waker))
    }
}

#[test]
fn one_waker_is_stored_however_often_it_polls_and_released_when_woken() {
    let token = CancelToken::new();
    let mut future = token.cancelled();
    let waker = Counted::new();
    for _ in 0..3 {
        assert_eq!(waker.poll(&mut future), Poll::Pending);
        assert_eq!(waker.stored(), 1, "will_wake: no clone per poll");
    }
    token.cancel();
    assert_eq!(waker.wakes(), 1);
    assert_eq!(waker.stored(), 0, "woken by value: the clone is gone");
    assert_eq!(waker.poll(&mut future), Poll::Ready(()));
    assert_eq!(
        waker.poll(&mut future),
        Poll::Ready(()),
        "ready stays ready"
    );
    drop(future);
    assert_eq!((waker.stored(), waker.wakes()), (0, 1));
}

#[test]
fn a_replaced_waker_is_dropped_and_never_woken() {
    let token = CancelToken::new();
    let mut future = token.cancelled();
    let (first, second) = (Counted::new(), Counted::new());
    assert_eq!(first.poll(&mut future), Poll::Pending);
    assert_eq!(second.poll(&mut future), Poll::Pending);
    assert_eq!((first.stored(), second.stored()), (0, 1));
    token.cancel();
    assert_eq!((first.wakes(), second.wakes()), (0, 1));
    assert_eq!(second.stored(), 0);
    assert_eq!(second.poll(&mut future), Poll::Ready(()));
}

#[test]
fn a_dropped_future_releases_its_waker_and_is_never_woken() {
    let token = CancelToken::new();
    let waker = Counted::new();
    let mut future = token.cancelled();
    assert_eq!(waker.poll(&mut future), Poll::Pending);
    assert_eq!(waker.stored(), 1);
    drop(future);
    assert_eq!(waker.stored(), 0);
    token.cancel();
    assert_eq!(waker.wakes(), 0);
}

#[test]
fn a_cancelled_token_completes_at_once_without_storing_a_waker() {
    let token = CancelToken::new();
    token.cancel();
    let waker = Counted::new();
    let mut future = token.cancelled();
    assert_eq!(waker.poll(&mut future), Poll::Ready(()));
    assert_eq!((waker.stored(), waker.wakes()), (0, 0));
}

/// Poll-then-drop on one thread against cancel on another, many times: no
/// waker is left behind, and none is woken twice.
#[test]
fn racing_poll_drop_and_cancel_leaks_no_waker() {
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        for round in 0..2_000 {
            let token = CancelToken::new();
            let waker = Arc::new(Counted::new());
            let start = Arc::new(Barrier::new(2));
            let poller = {
                let (token, waker, start) = (token.clone(), Arc::clone(&waker), Arc::clone(&start));
                thread::spawn(move || {
                    let mut future = token.cancelled();
                    start.wait();
                    let _ = waker.poll(&mut future);
                    if round % 2 == 0 {
                        // Polled again, with a different waker.
                        let _ = Counted::new().poll(&mut future);
                    }
                })
            };
            start.wait();
            token.cancel();
            poller.join().unwrap();
            assert_eq!(waker.stored(), 0, "round {round}: a waker leaked");
            assert!(waker.wakes() <= 1, "round {round}: woken twice");
        }
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(PATIENCE)
        .expect("the rounds did not finish within PATIENCE, or one failed");
}

#[test]
fn the_future_is_send_sync_and_unpin() {
    fn check<T: Send + Sync + Unpin + std::panic::UnwindSafe>() {}
    check::<WaitForCancel>();
    check::<harbor_pool::CancelRegistration>();
}
