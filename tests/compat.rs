//! The `compat::ThreadPool` implementations: every spawned job runs exactly
//! once, and panicking jobs leave the pool working.

mod common;

use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

#[cfg(feature = "rayon")]
use harbor_pool::compat::RayonThreadPool;
use harbor_pool::compat::{NaiveThreadPool, SharedQueueThreadPool, ThreadPool, ThreadPoolError};

const JOBS: usize = 200;
const INCREMENTS: usize = 1_000;
const PANICS: usize = 100;
/// Every wait is bounded by this, so a lost job fails the test instead of
/// hanging it.
const TIMEOUT: Duration = Duration::from_secs(30);
const MARKER: &str = "compat test: expected panic";

/// Silences the panics these tests cause on purpose; any other panic (a
/// failing assertion) still reaches the default hook.
fn silence_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&MARKER) {
                default(info);
            }
        }));
    });
}

/// Waits, up to `TIMEOUT` in all, for one message per job.
fn recv_all(rx: &mpsc::Receiver<()>, count: usize) {
    let deadline = Instant::now() + TIMEOUT;
    for received in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(error) = rx.recv_timeout(left) {
            panic!("only {received} of {count} jobs reported back: {error}");
        }
    }
}

/// `JOBS` jobs each add `INCREMENTS` to one counter; the total is exact.
fn spawn_counter<P: ThreadPool>(pool: &P) {
    let counter = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for _ in 0..JOBS {
        let counter = Arc::clone(&counter);
        let tx = tx.clone();
        pool.spawn(move || {
            for _ in 0..INCREMENTS {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            tx.send(()).unwrap();
        });
    }
    recv_all(&rx, JOBS);
    assert_eq!(counter.load(Ordering::SeqCst), JOBS * INCREMENTS);
}

/// Spawns `PANICS` panicking jobs and waits until every one has unwound:
/// each holds a sender, dropped during unwinding, so the channel
/// disconnects once the last one is done.
fn spawn_panics<P: ThreadPool>(pool: &P) {
    silence_expected_panics();
    let (tx, rx) = mpsc::channel::<()>();
    for _ in 0..PANICS {
        let tx = tx.clone();
        pool.spawn(move || {
            let _tx = tx;
            panic::panic_any(MARKER);
        });
    }
    drop(tx);
    assert_eq!(
        rx.recv_timeout(TIMEOUT),
        Err(RecvTimeoutError::Disconnected)
    );
}

/// Polls `condition` until it holds; panics after `TIMEOUT`.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    // Bounded by `deadline`; the pause only spaces out the polls.
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn pools_are_send_and_sync() {
    assert_send_sync::<SharedQueueThreadPool>();
    assert_send_sync::<NaiveThreadPool>();
    assert_send_sync::<ThreadPoolError>();
    #[cfg(feature = "rayon")]
    assert_send_sync::<RayonThreadPool>();
}

#[test]
fn shared_queue_thread_pool_spawn_counter() {
    let pool = SharedQueueThreadPool::new(4).unwrap();
    spawn_counter(&pool);
}

#[test]
fn shared_queue_thread_pool_panic_task() {
    let pool = SharedQueueThreadPool::new(4).unwrap();
    // Workers count themselves alive once their thread is up.
    eventually("4 workers up", || pool.pool().stats().alive == 4);
    let alive = pool.pool().stats().alive;
    spawn_panics(&pool);
    spawn_counter(&pool);
    // `join` makes the counters final before they are read.
    common::join(pool.pool());
    let stats = pool.pool().stats();
    assert_eq!(stats.alive, alive, "a panic cost a worker");
    assert_eq!(stats.panicked, PANICS as u64);
    assert_eq!(stats.completed, JOBS as u64);
    assert_eq!(stats.restarts, 0);
}

#[test]
fn shared_queue_thread_pool_refuses_zero_threads() {
    assert!(matches!(
        SharedQueueThreadPool::new(0),
        Err(ThreadPoolError::ZeroThreads)
    ));
}

#[test]
fn shared_queue_thread_pool_drops_jobs_after_shutdown() {
    let pool = SharedQueueThreadPool::new(2).unwrap();
    pool.pool().shutdown();
    let witness = Arc::new(());
    let held = Arc::clone(&witness);
    pool.spawn(move || drop(held));
    // Dropped at once, on this thread, without running.
    assert_eq!(Arc::strong_count(&witness), 1);
    assert_eq!(pool.pool().stats().submitted, 0);
}

#[test]
fn naive_thread_pool_spawn_counter() {
    let pool = NaiveThreadPool::new(4).unwrap();
    spawn_counter(&pool);
}

#[test]
fn naive_thread_pool_panic_task() {
    // A naive pool has no workers to lose: each panic ends its own thread.
    let pool = NaiveThreadPool::new(4).unwrap();
    spawn_panics(&pool);
    spawn_counter(&pool);
}

#[test]
fn naive_thread_pool_refuses_zero_threads() {
    assert!(matches!(
        NaiveThreadPool::new(0),
        Err(ThreadPoolError::ZeroThreads)
    ));
}

#[cfg(feature = "rayon")]
#[test]
fn rayon_thread_pool_spawn_counter() {
    let pool = RayonThreadPool::new(4).unwrap();
    spawn_counter(&pool);
}

#[cfg(feature = "rayon")]
#[test]
fn rayon_thread_pool_panic_task() {
    let pool = RayonThreadPool::new(4).unwrap();
    spawn_panics(&pool);
    spawn_counter(&pool);
    assert_eq!(pool.pool().current_num_threads(), 4);
}

#[cfg(feature = "rayon")]
#[test]
fn rayon_thread_pool_refuses_zero_threads() {
    assert!(matches!(
        RayonThreadPool::new(0),
        Err(ThreadPoolError::ZeroThreads)
    ));
}
