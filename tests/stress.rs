//! Many submitters, panicking and failing jobs, concurrent cancels: every job
//! ends terminal and the counters add up.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use harbor_pool::{CancelOutcome, JobError, JobId, JobOptions, JobResult, JobStatus, Pool};

const SUBMITTERS: usize = 4;
const JOBS_EACH: usize = 600;

/// How job `n` behaves.
fn job(n: usize) -> impl FnOnce(&harbor_pool::CancelToken) -> JobResult<usize> + Send + 'static {
    move |token| match n % 10 {
        0 => panic!("job {n} panicked"),
        1 => Err(format!("job {n} failed").into()),
        2 | 3 => {
            // Slow enough to be caught running by a cancel.
            token.sleep(Duration::from_millis(2))?;
            Ok(n)
        }
        _ => Ok(n),
    }
}

#[test]
fn stress_every_job_terminal_and_counters_add_up() {
    common::quiet_panics();
    let pool = Arc::new(
        Pool::builder()
            .workers(3)
            .retain_finished(100_000)
            .build()
            .unwrap(),
    );
    let ids: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let untracked_ran = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(SUBMITTERS + 1));

    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let pool = Arc::clone(&pool);
            let ids = Arc::clone(&ids);
            let untracked_ran = Arc::clone(&untracked_ran);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut handles = Vec::new();
                for i in 0..JOBS_EACH {
                    let n = s * JOBS_EACH + i;
                    if n.is_multiple_of(7) {
                        let untracked_ran = Arc::clone(&untracked_ran);
                        pool.execute(move || {
                            untracked_ran.fetch_add(1, Ordering::Relaxed);
                            if n.is_multiple_of(2) {
                                panic!("untracked {n}");
                            }
                        })
                        .unwrap();
                        continue;
                    }
                    let options = if n.is_multiple_of(11) {
                        JobOptions::new().timeout(Duration::from_millis(1))
                    } else {
                        JobOptions::new()
                    };
                    let handle = pool.submit_with(options, job(n)).unwrap();
                    ids.lock().unwrap().push(handle.id());
                    handles.push((n, handle));
                }
                handles
            })
        })
        .collect();

    // A canceller races the submitters, cancelling whatever it finds.
    let canceller = {
        let pool = Arc::clone(&pool);
        let ids = Arc::clone(&ids);
        let barrier = Arc::clone(&barrier);
        std::thread::spawn(move || {
            barrier.wait();
            let mut outcomes: HashMap<JobId, CancelOutcome> = HashMap::new();
            let mut next = 0;
            while next < SUBMITTERS * JOBS_EACH / 2 {
                let id = {
                    let ids = ids.lock().unwrap();
                    if next >= ids.len() {
                        None
                    } else {
                        Some(ids[next])
                    }
                };
                match id {
                    Some(id) => {
                        next += 3;
                        outcomes.insert(id, pool.cancel(id));
                    }
                    None if pool.stats().submitted as usize >= SUBMITTERS * JOBS_EACH => break,
                    None => std::thread::yield_now(),
                }
            }
            outcomes
        })
    };

    let mut handles = Vec::new();
    for submitter in submitters {
        handles.extend(submitter.join().unwrap());
    }
    let outcomes = canceller.join().unwrap();
    assert!(pool.join_timeout(common::PATIENCE), "pool went idle");

    let mut by_status: HashMap<&'static str, u64> = HashMap::new();
    let mut panicked = 0;
    for (n, handle) in handles {
        let status = handle.status();
        assert!(status.is_terminal(), "job {n}: {status:?}");
        assert_eq!(pool.status(handle.id()), Some(status.clone()));
        if outcomes.get(&handle.id()) == Some(&CancelOutcome::Cancelled) {
            assert_eq!(
                status,
                JobStatus::Cancelled,
                "cancelled while pending stays cancelled"
            );
        }
        *by_status.entry(status.as_str()).or_default() += 1;
        match (handle.join(), &status) {
            (Ok(v), JobStatus::Completed) => assert_eq!(v, n),
            (Err(JobError::Panicked(m)), JobStatus::Failed(s)) => {
                assert_eq!(&m, s);
                panicked += 1;
            }
            (Err(JobError::Failed(e)), JobStatus::Failed(s)) => assert_eq!(&e.to_string(), s),
            (Err(JobError::Cancelled), JobStatus::Cancelled) => {}
            (result, status) => panic!("job {n}: {result:?} with {status:?}"),
        }
    }

    let untracked = untracked_ran.load(Ordering::Relaxed) as u64;
    let untracked_panics = (0..SUBMITTERS * JOBS_EACH)
        .filter(|n| n.is_multiple_of(7) && n.is_multiple_of(2))
        .count() as u64;
    let stats = pool.stats();
    assert_eq!(stats.submitted, (SUBMITTERS * JOBS_EACH) as u64);
    assert_eq!(
        stats.submitted,
        stats.completed + stats.failed + stats.cancelled
    );
    assert_eq!(
        stats.completed,
        by_status["completed"] + untracked - untracked_panics
    );
    assert_eq!(stats.failed, by_status["failed"] + untracked_panics);
    assert_eq!(
        stats.cancelled,
        by_status.get("cancelled").copied().unwrap_or(0)
    );
    assert_eq!(stats.panicked, panicked + untracked_panics);
    assert_eq!((stats.busy, stats.queued, stats.restarts), (0, 0, 0));
    assert!(common::eventually(|| pool.stats().alive == 3));
}
