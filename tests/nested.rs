//! Jobs that submit jobs to their own pool and wait for them (rayon's
//! `install` pattern): a worker that waits for a pending job of its own pool
//! runs it itself, so this never deadlocks, however few workers there are.

mod common;

use std::sync::Arc;
use std::time::Duration;

use harbor_pool::{JobError, JobOptions, JobResult, JobStatus, Pool};

/// How a nested job waits for its child.
#[derive(Clone, Copy, Debug)]
enum How {
    Join,
    PollThenJoin,
    JoinTimeout,
    ById,
}

/// A job `depth` levels deep: each level submits the next and waits for it
/// in `how`; the innermost returns 1, each level adds 1.
fn nested(pool: Arc<Pool>, depth: u32, how: How) -> JobResult<u32> {
    if depth == 0 {
        return Ok(1);
    }
    let inner = Arc::clone(&pool);
    let child = pool.submit(move |_| nested(inner, depth - 1, how))?;
    let value = match how {
        How::Join => child.join()?,
        How::PollThenJoin => {
            assert!(
                child
                    .wait(common::PATIENCE)
                    .is_some_and(|s| s.is_terminal())
            );
            child.join()?
        }
        How::JoinTimeout => match child.join_timeout(common::PATIENCE) {
            Ok(result) => result?,
            Err(_) => return Err("child did not finish".into()),
        },
        How::ById => {
            let id = child.id();
            assert_eq!(pool.wait(id, common::PATIENCE), Some(JobStatus::Completed));
            child.join()?
        }
    };
    Ok(value + 1)
}

#[test]
fn nested_submit_and_join_on_a_one_worker_pool() {
    for how in [How::Join, How::PollThenJoin, How::JoinTimeout, How::ById] {
        let pool = Arc::new(Pool::builder().workers(1).build().unwrap());
        let inner = Arc::clone(&pool);
        let top = pool.submit(move |_| nested(inner, 8, how)).unwrap();
        match top.join_timeout(common::PATIENCE) {
            Ok(result) => assert_eq!(result.unwrap(), 9, "{how:?}"),
            Err(_) => panic!("nested {how:?} deadlocked a one-worker pool"),
        }
        common::join(&pool);
        let stats = pool.stats();
        assert_eq!((stats.submitted, stats.completed), (9, 9), "{how:?}");
    }
}

#[test]
fn a_child_past_its_deadline_is_cancelled_not_run_inline() {
    let pool = Arc::new(Pool::builder().workers(1).build().unwrap());
    let inner = Arc::clone(&pool);
    let (tx, rx) = std::sync::mpsc::channel();
    let parent = pool
        .submit(move |_| {
            let child = inner.submit_with(
                JobOptions::new().timeout(Duration::ZERO),
                |_| -> JobResult<()> { panic!("an expired job must not run") },
            )?;
            let id = child.id();
            let _ = tx.send(child.join());
            Ok(inner.status(id))
        })
        .unwrap();
    assert_eq!(
        parent.join_timeout(common::PATIENCE).ok().unwrap().unwrap(),
        Some(JobStatus::Cancelled)
    );
    assert!(matches!(rx.recv().unwrap(), Err(JobError::Cancelled)));
}

#[test]
fn children_raced_between_inline_runs_and_other_workers_run_exactly_once() {
    // Two workers, many parents each joining several children: a child is
    // taken either by a worker dequeuing it or by its parent inline, never
    // both, and every count adds up.
    let pool = Arc::new(Pool::builder().workers(2).build().unwrap());
    let runs = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let parents: Vec<_> = (0..300_u64)
        .map(|p| {
            let inner = Arc::clone(&pool);
            let runs = Arc::clone(&runs);
            pool.submit(move |_| {
                let children: Vec<_> = (0..4_u64)
                    .map(|c| {
                        let runs = Arc::clone(&runs);
                        inner.submit(move |_| {
                            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            Ok(p * 10 + c)
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let mut sum = 0;
                for child in children {
                    sum += child.join()?;
                }
                Ok(sum)
            })
            .unwrap()
        })
        .collect();
    for (p, parent) in parents.into_iter().enumerate() {
        let p = p as u64;
        let expected = (0..4).map(|c| p * 10 + c).sum::<u64>();
        match parent.join_timeout(common::PATIENCE) {
            Ok(result) => assert_eq!(result.unwrap(), expected),
            Err(_) => panic!("parent {p} did not finish"),
        }
    }
    common::join(&pool);
    assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 1_200);
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.completed), (1_500, 1_500));
}
