//! The store attached to a pool as its observer: every tracked job reaches
//! the store without the embedding code recording anything, and a cancel
//! from another replica reaches the job.

mod support;

use std::sync::Arc;
use std::sync::mpsc;

use harbor_pool::{JobStatus, Pool};
use harbor_store_postgres::{Store, StoredStatus};
use support::PATIENCE;

#[test]
fn a_pool_observed_by_the_store_is_readable_and_cancellable_from_another_replica() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Arc::new(Store::open(support::config(&pg, "a")).unwrap());
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .observer(a.clone())
            .build()
            .unwrap(),
    );
    let weak = Arc::downgrade(&pool);
    a.set_cancel_handler(move |id| {
        if let Some(pool) = weak.upgrade() {
            pool.cancel(id);
        }
    });
    let b = Store::open(support::config(&pg, "b")).unwrap();

    let done: Vec<_> = (0..100)
        .map(|i| {
            pool.submit(move |token| {
                token.set_progress(i, Some(100));
                Ok(())
            })
            .unwrap()
        })
        .collect();
    let (started_tx, started) = mpsc::channel();
    let long = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(PATIENCE * 3)?;
            Ok(())
        })
        .unwrap();
    started.recv_timeout(PATIENCE).unwrap();
    let long_id = long.id();
    // Submitted on A, seen running on B.
    assert!(support::eventually(|| {
        b.job(long_id)
            .unwrap()
            .is_some_and(|job| job.status == StoredStatus::Running)
    }));
    assert!(b.cancel(long_id).unwrap().is_requested());
    assert_eq!(long.wait(PATIENCE), Some(JobStatus::Cancelled));
    let job = b.wait(long_id, PATIENCE).unwrap().unwrap();
    assert_eq!(job.status, StoredStatus::Cancelled);
    for handle in done {
        let id = handle.id();
        handle.join().unwrap();
        let job = b.wait(id, PATIENCE).unwrap().unwrap();
        assert_eq!(job.status, StoredStatus::Completed);
        assert_eq!(job.replica, "a");
    }
    pool.shutdown();
    assert!(a.shutdown(PATIENCE));
}
