//! Retention: finished rows older than the configured age are deleted in
//! batches; recent and unfinished ones stay.

mod support;

use std::time::{Duration, SystemTime};

use harbor_pool::JobStatus;
use harbor_store_postgres::{Store, Transition};
use support::{PATIENCE, new_id};

fn count(client: &mut postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM harbor_jobs", &[])
        .unwrap()
        .get(0)
}

#[test]
fn old_finished_rows_are_deleted_in_batches() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let mut client = pg.client();
    client
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .unwrap();
    let store = Store::open(
        support::config(&pg, "a")
            .retention(Some(Duration::from_secs(600)))
            .retention_schedule(Duration::from_millis(100), 10),
    )
    .unwrap();
    client
        .batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    let now = SystemTime::now();
    let hour_ago = now - Duration::from_secs(3600);
    let old = (0..25).map(|_| {
        let mut t = Transition::new(new_id(), JobStatus::Completed, hour_ago);
        t.finished_at = Some(hour_ago);
        t
    });
    let recent = (0..5).map(|_| {
        let mut t = Transition::new(new_id(), JobStatus::Failed("x".into()), now);
        t.finished_at = Some(now);
        t
    });
    // Submitted long ago, still running: never deleted.
    let running = (0..3).map(|_| Transition::new(new_id(), JobStatus::Running, hour_ago));
    store.record_transitions(old.chain(recent).chain(running));
    assert!(store.flush(PATIENCE));
    assert!(support::eventually(|| count(&mut client) == 8));
    // The store counts a batch once its DELETE has returned, a moment after
    // the rows are gone for other sessions.
    assert!(
        support::eventually(|| store.stats().purged == 25),
        "purged: {}",
        store.stats().purged
    );
    let deletes: i64 = client
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements
             WHERE query LIKE 'DELETE FROM harbor_jobs%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(deletes >= 3, "25 rows in batches of 10: {deletes} deletes");
    // A pass on demand with a shorter age takes the recent ones too.
    assert_eq!(store.purge_finished(Duration::ZERO).unwrap(), 5);
    assert_eq!(count(&mut client), 3);
}
