//! Waiting for a job of any replica: woken by NOTIFY, bounded by the
//! timeout, from async code without blocking a runtime thread.

mod support;

use std::time::{Duration, Instant, SystemTime};

use harbor_pool::JobStatus;
use harbor_store_postgres::{Store, StoreError, StoredStatus, Transition};
use support::{PATIENCE, new_id};

#[test]
fn an_async_wait_on_b_is_woken_by_the_notify_of_a_terminal_state_on_a() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(support::config(&pg, "a")).unwrap();
    // The poll is an hour away: only the notification can wake the wait.
    let b = Store::open(support::config(&pg, "b").wait_poll(Duration::from_secs(3600))).unwrap();
    let id = new_id();
    let now = SystemTime::now();
    a.record_transitions([Transition::new(id, JobStatus::Running, now)]);
    assert!(a.flush(PATIENCE));
    // One runtime thread: a blocked thread would stall the whole test.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let wait = b.wait_async(id, PATIENCE);
    let (ticks_tx, mut ticks) = tokio::sync::mpsc::unbounded_channel::<()>();
    let job = runtime.block_on(async {
        let waiting = tokio::spawn(wait);
        // The runtime thread keeps running other tasks meanwhile.
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let _ = ticks_tx.send(());
            }
        });
        for _ in 0..3 {
            ticks.recv().await.unwrap();
        }
        a.record_transitions([Transition::new(id, JobStatus::Completed, now)]);
        tokio::time::timeout(PATIENCE, waiting).await
    });
    let job = job
        .expect("woken before the timeout")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(job.status, StoredStatus::Completed);
    assert_eq!(job.replica, "a");
}

#[test]
fn a_wait_times_out_with_the_latest_state_and_an_unknown_job_is_none() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(support::config(&pg, "a")).unwrap();
    let id = new_id();
    a.record_transitions([Transition::new(id, JobStatus::Running, SystemTime::now())]);
    assert!(a.flush(PATIENCE));
    let started = Instant::now();
    let job = a.wait(id, Duration::from_millis(500)).unwrap().unwrap();
    assert_eq!(job.status, StoredStatus::Running);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(a.wait(new_id(), Duration::from_millis(100)).unwrap(), None);
}

#[test]
fn a_wait_for_a_finished_job_returns_at_once() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(support::config(&pg, "a").wait_poll(Duration::from_secs(3600))).unwrap();
    let id = new_id();
    a.record_transitions([Transition::new(id, JobStatus::Cancelled, SystemTime::now())]);
    assert!(a.flush(PATIENCE));
    let job = a.wait(id, Duration::from_secs(3600)).unwrap().unwrap();
    assert_eq!(job.status, StoredStatus::Cancelled);
}

#[test]
fn a_wait_while_postgres_is_down_ends_at_its_deadline() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(support::config(&pg, "a")).unwrap();
    let id = new_id();
    pg.stop();
    let started = Instant::now();
    match a.wait(id, Duration::from_millis(500)) {
        Err(StoreError::NoAnswer { id: got, .. }) => assert_eq!(got, id),
        other => panic!("expected NoAnswer, got {other:?}"),
    }
    assert!(started.elapsed() < PATIENCE);
    assert!(a.job(id).unwrap_err().is_unavailable());
}

#[test]
fn waits_pending_at_shutdown_end_with_shutdown() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(support::config(&pg, "a")).unwrap();
    let id = new_id();
    a.record_transitions([Transition::new(id, JobStatus::Running, SystemTime::now())]);
    assert!(a.flush(PATIENCE));
    let wait = a.wait_async(id, PATIENCE * 3);
    assert!(a.shutdown(PATIENCE));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let result = runtime
        .block_on(async { tokio::time::timeout(PATIENCE, wait).await })
        .unwrap();
    assert!(matches!(result, Err(StoreError::Shutdown)), "{result:?}");
}
