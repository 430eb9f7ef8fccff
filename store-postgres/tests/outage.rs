//! PostgreSQL stopped for a few seconds under writes, then started again:
//! the store never blocks its caller, buffers, reconnects and catches up
//! with nothing lost.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harbor_pool::{JobId, Pool};
use harbor_store_postgres::{Store, StoredStatus};
use support::PATIENCE;

#[test]
fn jobs_accepted_during_an_outage_reach_the_store_with_their_true_status() {
    let _ = env_logger::builder().is_test(true).try_init();
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    // A lease longer than the outage: the replica is alive throughout; a
    // buffer for every job of a few seconds (tens of thousands a second).
    let store = Arc::new(
        Store::open(
            support::config(&pg, "a")
                .lease(Duration::from_secs(60))
                .buffer_capacity(1_000_000),
        )
        .unwrap(),
    );
    let pool = Arc::new(Pool::new(2).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicUsize::new(0));
    let slowest_record = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    // The observer's part, played by a thread: every job's states as the
    // pool reports them, recorded as it goes.
    let producer = {
        let (store, pool, stop, produced, slowest) = (
            Arc::clone(&store),
            Arc::clone(&pool),
            Arc::clone(&stop),
            Arc::clone(&produced),
            Arc::clone(&slowest_record),
        );
        std::thread::spawn(move || {
            let mut ids: Vec<(JobId, bool)> = Vec::new();
            let mut n = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let fail = n.is_multiple_of(7);
                let handle = pool
                    .submit(move |token| {
                        token.set_progress(n, Some(n));
                        if fail {
                            return Err("seventh".into());
                        }
                        Ok(())
                    })
                    .unwrap();
                let id = handle.id();
                let t = Instant::now();
                store.record(&[pool.info(id).unwrap()]);
                handle.wait(PATIENCE).unwrap();
                store.record(&[pool.info(id).unwrap()]);
                let took = t.elapsed();
                let mut slowest = slowest.lock().unwrap();
                *slowest = (*slowest).max(took);
                drop(slowest);
                ids.push((id, fail));
                produced.fetch_add(1, Ordering::Relaxed);
            }
            ids
        })
    };
    // Written before the outage, so the writer has a connection to lose.
    assert!(support::eventually(|| store.stats().transitions >= 200));
    pg.stop();
    let stopped = Instant::now();
    let at_stop = produced.load(Ordering::Relaxed);
    // A few seconds down: writes fail and jobs keep coming, accepted
    // during the outage. (A bounded wait for the outage's length, not a
    // synchronisation.)
    assert!(support::eventually(|| {
        stopped.elapsed() >= Duration::from_secs(3)
            && store.stats().write_errors >= 3
            && produced.load(Ordering::Relaxed) >= at_stop + 500
    }));
    let during = produced.load(Ordering::Relaxed) - at_stop;
    pg.restart();
    assert!(support::eventually(
        || produced.load(Ordering::Relaxed) >= at_stop + during + 200
    ));
    stop.store(true, Ordering::Relaxed);
    let ids = producer.join().unwrap();
    assert!(store.flush(PATIENCE), "caught up");
    let stats = store.stats();
    assert_eq!(stats.overflowed, 0);
    assert!(stats.writer_connections >= 2, "{stats:?}");
    let mut client = pg.client();
    let wanted: Vec<uuid::Uuid> = ids.iter().map(|(id, _)| *id.as_uuid()).collect();
    let rows = client
        .query(
            "SELECT id, status, error, progress_done FROM harbor_jobs WHERE id = ANY($1)",
            &[&wanted],
        )
        .unwrap();
    assert_eq!(rows.len(), ids.len(), "every job is in the store");
    let by_id: std::collections::HashMap<uuid::Uuid, (String, Option<String>)> = rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    for (id, fail) in &ids {
        let (status, error) = &by_id[id.as_uuid()];
        if *fail {
            assert_eq!(
                (status.as_str(), error.as_deref()),
                ("failed", Some("seventh")),
                "{id}"
            );
        } else {
            assert_eq!(status, "completed", "{id}");
        }
    }
    // Read back through the store too: one job accepted mid-outage.
    let (sample, failed) = ids[at_stop + during / 2];
    let want = if failed {
        StoredStatus::Failed("seventh".into())
    } else {
        StoredStatus::Completed
    };
    assert_eq!(store.job(sample).unwrap().unwrap().status, want);
    // Recording never waited on the database.
    let slowest = *slowest_record.lock().unwrap();
    assert!(
        slowest < Duration::from_secs(2),
        "a record took {slowest:?}"
    );
    eprintln!(
        "outage: {} jobs, {during} during the outage, {} write errors, {} batches",
        ids.len(),
        stats.write_errors,
        stats.batches
    );
}
