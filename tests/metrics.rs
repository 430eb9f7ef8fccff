//! Latency histograms: queue wait and run time of every job.

mod common;

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::PATIENCE;
use harbor_pool::{CancelOutcome, Histogram, JobResult, JobStatus, Pool, PoolMetrics};

/// The one bucket holding every count, if there is exactly one.
fn only_bucket(histogram: &Histogram) -> Option<usize> {
    let mut used = histogram
        .counts()
        .iter()
        .enumerate()
        .filter(|&(_, &count)| count > 0);
    let (index, _) = used.next()?;
    used.next().is_none().then_some(index)
}

fn assert_counts(metrics: &PoolMetrics, started: u64, returned: u64) {
    assert_eq!(
        metrics.queue_wait.count(),
        started,
        "queue_wait: {metrics:?}"
    );
    assert_eq!(metrics.run_time.count(), returned, "run_time: {metrics:?}");
}

#[test]
fn a_new_pool_has_empty_histograms() {
    let pool = Pool::new(2).unwrap();
    let metrics = pool.metrics();
    assert_counts(&metrics, 0, 0);
    assert_eq!(metrics.run_time.sum(), Duration::ZERO);
    assert_eq!(metrics.queue_wait.quantile(0.5), None);
}

/// Every job that started is counted once in each histogram, tracked or
/// untracked, however it ended; a job cancelled while queued never started
/// and is in neither.
#[test]
fn counts_equal_the_jobs_that_ran() {
    common::quiet_panics();
    let pool = Pool::new(2).unwrap();

    // Cancelled while queued: both workers busy, so it waits; never runs.
    let release_a = common::block_worker(&pool);
    let release_b = common::block_worker(&pool);
    let queued = pool.submit(|_| Ok(())).unwrap();
    assert_eq!(queued.cancel(), CancelOutcome::Cancelled);
    drop((release_a, release_b));
    let mut ran = 2; // the two blocking jobs

    for i in 0..100 {
        pool.execute(|| ()).unwrap();
        if i % 10 == 0 {
            pool.execute(|| panic!("untracked panic")).unwrap();
            ran += 1;
        }
        ran += 1;
    }
    let mut handles = Vec::new();
    for i in 0..100_u32 {
        handles.push(pool.submit(move |_| -> JobResult<u32> {
            match i % 4 {
                0 => Ok(i),
                1 => Err("bad input".into()),
                2 => panic!("tracked panic"),
                _ => Ok(i),
            }
        }));
        ran += 1;
    }
    // Cancelled while running: its token, then it returns `Err`.
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let running = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(PATIENCE * 2)?;
            Ok(())
        })
        .unwrap();
    ran += 1;
    started_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(running.cancel(), CancelOutcome::Requested);
    assert_eq!(running.wait(PATIENCE), Some(JobStatus::Cancelled));
    drop(handles);
    common::join(&pool);

    let stats = pool.stats();
    assert_eq!(stats.submitted, ran + 1);
    assert_eq!(stats.cancelled, 2, "one while queued, one while running");
    assert_counts(&pool.metrics(), ran, ran);
    assert_eq!(queued.status(), JobStatus::Cancelled);
}

#[test]
fn a_job_that_sleeps_20_ms_lands_in_its_bucket() {
    let pool = Pool::new(1).unwrap();
    let handle = pool
        .submit(|_| {
            let started = Instant::now();
            thread::sleep(Duration::from_millis(20));
            Ok(started.elapsed())
        })
        .unwrap();
    let slept = handle.join().unwrap();
    let run_time = pool.metrics().run_time;
    assert_eq!(run_time.count(), 1);
    // The pool's reading brackets the job's own.
    let measured = run_time.sum();
    assert!(measured >= slept, "{measured:?} < {slept:?}");
    assert!(measured < slept + PATIENCE);
    let bucket = only_bucket(&run_time).expect("one latency, one bucket");
    let bounds = Histogram::upper_bounds();
    assert!(measured <= bounds[bucket], "{measured:?} above its bucket");
    assert!(
        bucket > 0 && measured > bounds[bucket - 1],
        "{measured:?} below its bucket"
    );
    // Unless the machine stalled the job by 12 ms more, that is the bucket
    // (16.384 ms, 32.768 ms].
    if measured <= Duration::from_micros(32_768) {
        assert_eq!(bounds[bucket], Duration::from_micros(32_768));
        assert_eq!(bucket, 15);
    }
}

/// A job queued behind a worker that is busy for 20 ms waits at least that
/// long, and the histogram shows it.
#[test]
fn queue_wait_is_the_time_from_submission_to_start() {
    let pool = Pool::new(1).unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    pool.execute(move || {
        go_rx.recv_timeout(PATIENCE).unwrap();
        thread::sleep(Duration::from_millis(20));
    })
    .unwrap();
    let submitted = Instant::now();
    let behind = pool.submit(|_| Ok(Instant::now())).unwrap();
    go_tx.send(()).unwrap();
    let started = behind.join().unwrap();
    common::join(&pool);

    let queue_wait = pool.metrics().queue_wait;
    assert_eq!(queue_wait.count(), 2);
    let waited = started - submitted;
    assert!(waited >= Duration::from_millis(20));
    // The waiting job is in a bucket above 16 ms, and the sum holds its
    // 20 ms at least. (The job ahead may land there too if a loaded machine
    // took that long to wake the worker for it.)
    let bounds = Histogram::upper_bounds();
    let slow: u64 = queue_wait
        .counts()
        .iter()
        .enumerate()
        .filter(|&(i, _)| bounds.get(i).is_none_or(|b| *b > Duration::from_millis(16)))
        .map(|(_, count)| count)
        .sum();
    assert!(slow >= 1, "{queue_wait:?}");
    assert!(queue_wait.sum() >= Duration::from_millis(20));
    assert!(queue_wait.quantile(1.0).unwrap() > Duration::from_millis(16));
}

/// A job run inline (a job joining a pending job of its own pool) is
/// counted once, on the worker whose thread ran it.
#[test]
fn a_job_run_inline_counts_once() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let inner_pool = Arc::clone(&pool);
    let outer = pool
        .submit(move |_| {
            let inner = inner_pool.submit(|_| Ok(2)).unwrap();
            Ok(inner.join().unwrap() * 21)
        })
        .unwrap();
    assert_eq!(outer.join().unwrap(), 42);
    common::join(&pool);
    assert_counts(&pool.metrics(), 2, 2);
}

/// Jobs `shutdown_now` cancels while queued never start: not counted.
#[test]
fn jobs_dropped_by_shutdown_now_are_not_counted() {
    let pool = Pool::new(1).unwrap();
    let release = common::block_worker(&pool);
    for _ in 0..10 {
        pool.execute(|| ()).unwrap();
        pool.submit(|_| Ok(())).unwrap();
    }
    // The blocking job returns once its channel closes; shutdown_now only
    // cancels tokens, and an untracked job has none.
    drop(release);
    pool.shutdown_now();
    let metrics = pool.metrics();
    let stats = pool.stats();
    let ran = stats.completed + stats.failed;
    assert!(ran >= 1, "the blocking job ran");
    assert_eq!(stats.completed + stats.failed + stats.cancelled, 21);
    assert_counts(&metrics, ran, ran);
}

/// Many submitters, tracked and untracked, against the counters: once the
/// pool is idle the histograms hold exactly the jobs that ran. Repeated, so
/// that a recording that races with `join` shows.
#[test]
fn counts_are_exact_once_join_returns() {
    const SUBMITTERS: usize = 4;
    const JOBS: usize = 2_000;
    let pool = Arc::new(Pool::new(2).unwrap());
    for round in 1..=5_u64 {
        thread::scope(|scope| {
            for submitter in 0..SUBMITTERS {
                let pool = &pool;
                scope.spawn(move || {
                    for job in 0..JOBS {
                        if (job + submitter) % 2 == 0 {
                            pool.execute(|| ()).unwrap();
                        } else {
                            drop(pool.submit(|_| Ok(())).unwrap());
                        }
                    }
                });
            }
        });
        common::join(&pool);
        let expected = round * (SUBMITTERS * JOBS) as u64;
        assert_counts(&pool.metrics(), expected, expected);
        assert_eq!(pool.stats().completed, expected);
    }
}

/// With the switch off nothing is recorded, and everything else works.
#[test]
fn latency_metrics_off_records_nothing() {
    let pool = Pool::builder()
        .workers(2)
        .latency_metrics(false)
        .build()
        .unwrap();
    for _ in 0..50 {
        pool.execute(|| ()).unwrap();
    }
    let handle = pool
        .submit(|token| {
            token.set_progress(1, Some(1));
            Ok(())
        })
        .unwrap();
    handle.wait(PATIENCE);
    common::join(&pool);
    assert_eq!(pool.metrics(), PoolMetrics::default());
    assert_eq!(pool.stats().completed, 51);
    assert_eq!(handle.progress().map(|p| p.done), Some(1));
    assert!(pool.info(handle.id()).unwrap().started_at.is_some());
}
