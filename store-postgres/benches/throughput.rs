//! How many job transitions per second the store writes, batched, into a
//! PostgreSQL of its own on this machine (durable: fsync and synchronous
//! commit on, the defaults).
//!
//! ```sh
//! cargo bench -p harbor-store-postgres --bench throughput
//! ```
//!
//! Two loads, each timed from the first `record` until `flush` returns:
//!
//! * `distinct`: every transition a new job's terminal state, so nothing
//!   coalesces and each is a row written.
//! * `lifecycle`: each job's three states (pending, running, completed)
//!   recorded one after another, as a pool reports them; the buffer may
//!   coalesce states of a job the writer has not taken yet, so "offered"
//!   counts what was recorded and "written" what reached the database.
//!
//! Prints a line per run; no assertion (performance is reported, not
//! tested). Skips, like the tests, where PostgreSQL is not installed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Instant, SystemTime};

use harbor_pool::JobStatus;
use harbor_store_postgres::{Store, Transition};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list
    }
    let Some(pg) = support::Postgres::start_with(true) else {
        return;
    };
    let jobs: usize = std::env::var("HARBOR_BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    for round in 0..3 {
        let store =
            Store::open(support::config(&pg, &format!("bench{round}")).buffer_capacity(jobs * 2))
                .unwrap();
        let now = SystemTime::now();
        let started = Instant::now();
        store.record_transitions(
            (0..jobs).map(|_| Transition::new(support::new_id(), JobStatus::Completed, now)),
        );
        assert!(store.flush(support::PATIENCE * 10));
        let secs = started.elapsed().as_secs_f64();
        let stats = store.stats();
        println!(
            "distinct  round {round}: {jobs} transitions in {secs:.2} s = {:.0}/s written, {} batches",
            stats.transitions as f64 / secs,
            stats.batches
        );
        drop(store);

        let store =
            Store::open(support::config(&pg, &format!("life{round}")).buffer_capacity(jobs * 2))
                .unwrap();
        let started = Instant::now();
        let per_job = [JobStatus::Pending, JobStatus::Running, JobStatus::Completed];
        let ids: Vec<_> = (0..jobs / 3).map(|_| support::new_id()).collect();
        for status in per_job {
            store.record_transitions(ids.iter().map(|&id| {
                let mut t = Transition::new(id, status.clone(), now);
                if status != JobStatus::Pending {
                    t.started_at = Some(now);
                }
                t
            }));
        }
        assert!(store.flush(support::PATIENCE * 10));
        let secs = started.elapsed().as_secs_f64();
        let stats = store.stats();
        let offered = ids.len() * 3;
        println!(
            "lifecycle round {round}: {offered} transitions in {secs:.2} s = {:.0}/s offered, \
             {:.0}/s written ({} rows, {} batches)",
            offered as f64 / secs,
            stats.transitions as f64 / secs,
            stats.transitions,
            stats.batches
        );
    }
}
