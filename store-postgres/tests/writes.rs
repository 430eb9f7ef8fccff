//! Writing job states: batched, one statement per batch; never backwards.

mod support;

use std::time::SystemTime;

use harbor_pool::{JobStatus, Pool, Progress};
use harbor_store_postgres::{Store, StoredStatus, Transition};
use support::{PATIENCE, new_id};

#[test]
fn a_pools_jobs_are_written_with_status_progress_and_error() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let store = Store::open(support::config(&pg, "a").address("http://a:1")).unwrap();
    let pool = Pool::new(2).unwrap();
    let ok = pool
        .submit(|token| {
            token.set_progress(7, Some(10));
            token.set_progress_message("copying");
            Ok(())
        })
        .unwrap();
    let bad = pool
        .submit(|_| -> harbor_pool::JobResult<()> { Err("no disk".into()) })
        .unwrap();
    assert!(ok.wait(PATIENCE).is_some() && bad.wait(PATIENCE).is_some());
    store.record(&[pool.info(ok.id()).unwrap(), pool.info(bad.id()).unwrap()]);
    assert!(store.flush(PATIENCE));

    let job = store.job(ok.id()).unwrap().unwrap();
    assert_eq!(job.status, StoredStatus::Completed);
    assert_eq!(job.replica, "a");
    assert_eq!(job.replica_address.as_deref(), Some("http://a:1"));
    let progress = job.progress.unwrap();
    assert_eq!((progress.done, progress.total), (7, Some(10)));
    assert_eq!(progress.message.as_deref(), Some("copying"));
    assert!(job.started_at.is_some() && job.finished_at.is_some());
    let info = pool.info(ok.id()).unwrap();
    // timestamptz keeps microseconds.
    let micros = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    };
    assert_eq!(micros(job.submitted_at), micros(info.submitted_at));

    let job = store.job(bad.id()).unwrap().unwrap();
    assert_eq!(job.status, StoredStatus::Failed("no disk".into()));
    assert_eq!(store.job(new_id()).unwrap(), None);
}

#[test]
fn stale_states_never_overwrite_later_ones() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let store = Store::open(support::config(&pg, "a")).unwrap();
    let now = SystemTime::now();
    let (done, failed, running) = (new_id(), new_id(), new_id());
    let mut progress = Progress::default();
    progress.done = 99;
    let mut late_running = Transition::new(done, JobStatus::Running, now);
    late_running.progress = Some(progress);
    // Each state in its own flushed write, so the database (not the
    // buffer's coalescing) decides.
    for step in [
        Transition::new(done, JobStatus::Completed, now),
        late_running,
        Transition::new(done, JobStatus::Pending, now),
        Transition::new(done, JobStatus::Failed("late".into()), now),
        Transition::new(failed, JobStatus::Failed("first".into()), now),
        Transition::new(failed, JobStatus::Cancelled, now),
        Transition::new(running, JobStatus::Running, now),
        Transition::new(running, JobStatus::Pending, now),
    ] {
        store.record_transitions([step]);
        assert!(store.flush(PATIENCE));
    }
    let done_job = store.job(done).unwrap().unwrap();
    assert_eq!(done_job.status, StoredStatus::Completed);
    assert_eq!(
        done_job.progress, None,
        "the stale progress was not applied"
    );
    assert!(done_job.finished_at.is_some());
    assert_eq!(
        store.job(failed).unwrap().unwrap().status,
        StoredStatus::Failed("first".into())
    );
    assert_eq!(
        store.job(running).unwrap().unwrap().status,
        StoredStatus::Running
    );
    assert_eq!(store.stats().batches, 8);
}

#[test]
fn one_statement_per_batch() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let mut client = pg.client();
    client
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .unwrap();
    let store = Store::open(support::config(&pg, "a").max_batch(2_000)).unwrap();
    client
        .batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    let now = SystemTime::now();
    let jobs = 10_000;
    store.record_transitions(
        (0..jobs).map(|_| Transition::new(new_id(), JobStatus::Completed, now)),
    );
    assert!(store.flush(PATIENCE));
    let stats = store.stats();
    assert_eq!(stats.transitions, jobs);
    let row = client
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8, coalesce(sum(rows), 0)::int8
             FROM pg_stat_statements WHERE query LIKE '%INSERT INTO harbor_jobs%'",
            &[],
        )
        .unwrap();
    let (calls, rows): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(calls as u64, stats.batches, "one statement per batch");
    // The statement returns one row per batch (its counts).
    assert_eq!(rows as u64, stats.batches);
    assert!(
        stats.batches >= jobs / 2_000 && stats.batches <= 50,
        "{} batches for {jobs} states",
        stats.batches
    );
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM harbor_jobs WHERE status = 'completed'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored as u64, jobs);
}

#[test]
fn a_full_buffer_counts_what_it_drops_and_writes_the_rest_once_back() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let store = Store::open(support::config(&pg, "a").buffer_capacity(10)).unwrap();
    // Stop the database so nothing drains, then overfill.
    pg.stop();
    let now = SystemTime::now();
    let ids: Vec<_> = (0..25).map(|_| new_id()).collect();
    store.record_transitions(
        ids.iter()
            .map(|&id| Transition::new(id, JobStatus::Running, now)),
    );
    // A batch the writer took before failing comes back over the capacity
    // (at most one batch), so at least 5 of 25 were dropped.
    assert!(support::eventually(|| {
        let stats = store.stats();
        stats.buffered as u64 + stats.overflowed == 25 && stats.write_errors > 0
    }));
    let stats = store.stats();
    assert!(stats.overflowed >= 5, "{stats:?}");
    pg.restart();
    assert!(store.flush(PATIENCE));
    let mut client = pg.client();
    let stored: i64 = client
        .query_one("SELECT count(*) FROM harbor_jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        stored as usize, stats.buffered,
        "every accepted state was written"
    );
}
