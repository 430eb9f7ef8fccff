//! Cancel by id from any replica: NOTIFY as the fast path, the poll as the
//! one that never loses a request.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use harbor_pool::{JobId, JobStatus, Pool};
use harbor_store_postgres::{CancelRequest, Store, StoredStatus, Transition};
use support::{PATIENCE, new_id};

/// A store whose cancel handler sends the ids it is given.
fn owner(config: harbor_store_postgres::StoreConfig) -> (Store, mpsc::Receiver<JobId>) {
    let store = Store::open(config).unwrap();
    let (tx, rx) = mpsc::channel();
    store.set_cancel_handler(move |id| {
        let _ = tx.send(id);
    });
    (store, rx)
}

fn running(store: &Store) -> JobId {
    let id = new_id();
    store.record_transitions([Transition::new(id, JobStatus::Running, SystemTime::now())]);
    assert!(store.flush(PATIENCE));
    id
}

#[test]
fn a_cancel_from_another_replica_reaches_the_owner_by_notify_within_a_second() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    // The poll is an hour away: only the notification can deliver it.
    let (a, requests) = owner(support::config(&pg, "a").cancel_poll(Duration::from_secs(3600)));
    let b = Store::open(support::config(&pg, "b")).unwrap();
    let id = running(&a);
    let asked = Instant::now();
    assert_eq!(
        b.cancel(id).unwrap(),
        CancelRequest::Requested {
            replica: "a".into()
        }
    );
    assert_eq!(requests.recv_timeout(PATIENCE), Ok(id));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "the cancel took {took:?}");
    assert_eq!(a.stats().cancels_notified, 1);
    // Asked again: recorded, but handed over once.
    assert!(b.cancel(id).unwrap().is_requested());
    assert!(requests.recv_timeout(Duration::from_millis(300)).is_err());
    let job = b.job(id).unwrap().unwrap();
    assert!(job.cancel_requested_at.is_some());
    assert_eq!(b.cancel(new_id()).unwrap(), CancelRequest::NotFound);
}

#[test]
fn a_running_pool_job_cancelled_on_b_ends_cancelled_on_a() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let pool = std::sync::Arc::new(Pool::new(1).unwrap());
    let a = Store::open(support::config(&pg, "a")).unwrap();
    let weak = std::sync::Arc::downgrade(&pool);
    a.set_cancel_handler(move |id| {
        if let Some(pool) = weak.upgrade() {
            pool.cancel(id);
        }
    });
    let b = Store::open(support::config(&pg, "b")).unwrap();
    let (started_tx, started) = mpsc::channel();
    let handle = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(PATIENCE * 3)?;
            Ok(())
        })
        .unwrap();
    started.recv_timeout(PATIENCE).unwrap();
    a.record(&[pool.info(handle.id()).unwrap()]);
    assert!(a.flush(PATIENCE));
    assert_eq!(
        b.job(handle.id()).unwrap().unwrap().status,
        StoredStatus::Running
    );
    assert!(b.cancel(handle.id()).unwrap().is_requested());
    assert_eq!(handle.wait(PATIENCE), Some(JobStatus::Cancelled));
    a.record(&[pool.info(handle.id()).unwrap()]);
    let job = b.wait(handle.id(), PATIENCE).unwrap().unwrap();
    assert_eq!(job.status, StoredStatus::Cancelled);
    // Finished: a second request finds nothing to cancel.
    assert_eq!(
        b.cancel(handle.id()).unwrap(),
        CancelRequest::Finished(StoredStatus::Cancelled)
    );
}

#[test]
fn a_lost_notify_still_cancels_through_the_poll() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    // Reconnects wait 2 s, so the request below is made while the owner
    // is not listening: its notification is lost.
    let config = support::config(&pg, "a")
        .cancel_poll(Duration::from_millis(300))
        .backoff(Duration::from_secs(2), Duration::from_secs(2));
    let (a, requests) = owner(config);
    let b = Store::open(support::config(&pg, "b")).unwrap();
    let id = running(&a);
    let mut admin = pg.client();
    assert!(support::eventually(|| a.stats().listener_connections == 1));
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'harbor-store a listener'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the LISTEN connection was found and killed");
    assert!(b.cancel(id).unwrap().is_requested());
    assert_eq!(requests.recv_timeout(PATIENCE), Ok(id));
    let stats = a.stats();
    assert_eq!(
        (stats.cancels_notified, stats.cancels_polled),
        (0, 1),
        "{stats:?}"
    );
    assert_eq!(stats.listener_connections, 2);
}

#[test]
fn without_notifications_the_periodic_poll_delivers() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let (a, requests) = owner(support::config(&pg, "a").notifications(false));
    let b = Store::open(support::config(&pg, "b")).unwrap();
    let id = running(&a);
    assert!(b.cancel(id).unwrap().is_requested());
    assert_eq!(requests.recv_timeout(PATIENCE), Ok(id));
    assert_eq!(a.stats().cancels_polled, 1);
    assert_eq!(a.stats().cancels_notified, 0);
}

#[test]
fn a_request_made_before_the_handler_is_set_reaches_it() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(support::config(&pg, "a")).unwrap();
    let b = Store::open(support::config(&pg, "b")).unwrap();
    let id = running(&a);
    let polls = a.stats().cancel_polls;
    assert!(b.cancel(id).unwrap().is_requested());
    // A poll (and maybe the notification) sees the request while no
    // handler is set; a later poll hands it over.
    assert!(support::eventually(|| a.stats().cancel_polls >= polls + 2));
    let (tx, rx) = mpsc::channel();
    a.set_cancel_handler(move |id| {
        let _ = tx.send(id);
    });
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(id));
}

#[test]
fn another_replicas_request_is_not_handed_to_this_one() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let (a, a_requests) = owner(support::config(&pg, "a"));
    let (b, b_requests) = owner(support::config(&pg, "b"));
    let on_b = running(&b);
    assert!(a.cancel(on_b).unwrap().is_requested());
    assert_eq!(b_requests.recv_timeout(PATIENCE), Ok(on_b));
    // Two polls of a's later: still nothing for a.
    assert!(a_requests.recv_timeout(Duration::from_millis(700)).is_err());
}

#[test]
fn the_handler_may_shut_the_store_down() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = std::sync::Arc::new(Store::open(support::config(&pg, "a")).unwrap());
    let b = Store::open(support::config(&pg, "b")).unwrap();
    let id = running(&a);
    let (tx, rx) = mpsc::channel();
    let store = std::sync::Arc::clone(&a);
    // Runs on the store's own listener thread, which shutdown joins.
    a.set_cancel_handler(move |_| {
        let _ = tx.send(store.shutdown(PATIENCE));
    });
    assert!(b.cancel(id).unwrap().is_requested());
    assert_eq!(rx.recv_timeout(PATIENCE * 2), Ok(true));
}
