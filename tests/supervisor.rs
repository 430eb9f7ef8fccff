//! The supervisor replaces dead workers, counts restarts and backs off in a
//! restart storm without spinning.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harbor_pool::{JobError, JobStatus, Pool};

#[test]
fn a_start_hook_that_panics_a_few_times_is_survived() {
    common::quiet_panics();
    common::init_logging();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let pool = Pool::builder()
        .workers(2)
        .thread_name("sup-few")
        .restart_limit(10, Duration::from_secs(60))
        .on_thread_start(move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) < 3 {
                panic!("hook not ready yet");
            }
        })
        .build()
        .unwrap();
    assert!(
        common::eventually(|| pool.stats().alive == 2),
        "alive returns to the configured count: {:?}",
        pool.stats()
    );
    let stats = pool.stats();
    assert_eq!(stats.restarts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // Respawned workers keep their names and serve jobs.
    let names: Vec<String> = (0..20)
        .map(|_| {
            pool.submit(|_| Ok(std::thread::current().name().unwrap().to_owned()))
                .unwrap()
                .join()
                .unwrap()
        })
        .collect();
    assert!(
        names.iter().all(|n| n == "sup-few-0" || n == "sup-few-1"),
        "{names:?}"
    );
    drop(pool);
    assert!(common::no_threads_named("sup-few"));
}

#[test]
fn a_hook_that_always_panics_does_not_make_the_supervisor_spin() {
    common::quiet_panics();
    let (calls_tx, calls_rx) = mpsc::channel::<Instant>();
    let calls_tx = std::sync::Mutex::new(calls_tx);
    let backoff = Duration::from_millis(100);
    let pool = Pool::builder()
        .workers(2)
        .thread_name("sup-storm")
        .restart_limit(2, Duration::from_secs(60))
        .restart_backoff(backoff, backoff * 2)
        .on_thread_start(move |index| {
            if index == 1 {
                let _ = calls_tx.lock().unwrap().send(Instant::now());
                panic!("worker 1 can never start");
            }
        })
        .build()
        .unwrap();

    // The first start and two restarts happen at once; after that each
    // respawn waits at least the backoff, which doubles up to its cap.
    let calls: Vec<Instant> = (0..6)
        .map(|_| calls_rx.recv_timeout(common::PATIENCE).unwrap())
        .collect();
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[2] >= backoff, "{gaps:?}");
    assert!(gaps[3] >= backoff * 2, "{gaps:?}");
    assert!(gaps[4] >= backoff * 2, "capped: {gaps:?}");

    // Meanwhile the healthy worker keeps serving jobs.
    // The sixth start is the fifth restart; it is counted once its thread
    // is spawned, which may be a moment after the hook ran.
    assert!(
        common::eventually(|| pool.stats().restarts >= 5),
        "{:?}",
        pool.stats()
    );
    assert_eq!(pool.stats().alive, 1);
    for i in 0..10 {
        assert_eq!(pool.submit(move |_| Ok(i)).unwrap().join().unwrap(), i);
    }
    // Shutdown does not wait for the backoff.
    let started = Instant::now();
    drop(pool);
    assert!(started.elapsed() < common::PATIENCE);
    assert!(common::no_threads_named("sup-storm"));
}

#[test]
fn shutdown_with_no_worker_able_to_start_cancels_the_queue() {
    common::quiet_panics();
    let pool = Pool::builder()
        .workers(1)
        .thread_name("sup-dead")
        .restart_limit(1, Duration::from_secs(60))
        .restart_backoff(Duration::from_millis(50), Duration::from_millis(100))
        .on_thread_start(|_| panic!("never starts"))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..5)
        .map(|i| pool.submit(move |_| Ok(i)).unwrap())
        .collect();
    pool.execute(|| ()).unwrap();
    // Never hangs: the queued jobs end Cancelled instead of waiting forever.
    pool.shutdown();
    for handle in handles {
        assert!(matches!(handle.join(), Err(JobError::Cancelled)));
    }
    let stats = pool.stats();
    assert_eq!(stats.cancelled, 6);
    assert_eq!(
        stats.submitted,
        stats.completed + stats.failed + stats.cancelled
    );
    assert!(common::no_threads_named("sup-dead"));
}

#[test]
fn a_stop_hook_that_panics_does_not_hang_shutdown() {
    common::quiet_panics();
    let pool = Pool::builder()
        .workers(2)
        .thread_name("sup-stop")
        .on_thread_stop(|_| panic!("stop hook failed"))
        .build()
        .unwrap();
    let job = pool.submit(|_| Ok(())).unwrap();
    assert_eq!(job.wait(common::PATIENCE), Some(JobStatus::Completed));
    pool.shutdown();
    assert_eq!(pool.stats().restarts, 0, "no respawn during shutdown");
    assert!(common::no_threads_named("sup-stop"));
}
