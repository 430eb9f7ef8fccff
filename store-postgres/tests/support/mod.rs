//! The store tests' helpers. The PostgreSQL they run against comes from
//! the crate's `testing` feature ([`harbor_store_postgres::testing`]),
//! which the server's tests use too; this crate's dev-dependency on itself
//! turns the feature on for its tests.
//!
//! Every wait here is bounded.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

pub(crate) use harbor_store_postgres::testing::Postgres;

/// Generous bound for anything that should happen "soon" on a loaded 2-core box.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `condition` holds, checking every 5 ms, for at most
/// `within`. Returns whether it held. Awaits an eventual state with a
/// deadline; never used to order events.
pub(crate) fn eventually_within(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`eventually_within`] [`PATIENCE`].
pub(crate) fn eventually(condition: impl FnMut() -> bool) -> bool {
    eventually_within(PATIENCE, condition)
}

/// A store config for `replica` on `pg` with the test's short periods:
/// lease 3 s, polls of 300 ms, retention off, backoff 20 ms to 500 ms.
pub(crate) fn config(pg: &Postgres, replica: &str) -> harbor_store_postgres::StoreConfig {
    harbor_store_postgres::StoreConfig::new(pg.url(), replica)
        .lease(Duration::from_secs(3))
        .cancel_poll(Duration::from_millis(300))
        .wait_poll(Duration::from_millis(300))
        .retention(None)
        .backoff(Duration::from_millis(20), Duration::from_millis(500))
}

/// A new job id.
pub(crate) fn new_id() -> harbor_pool::JobId {
    uuid::Uuid::new_v4().into()
}

/// Counts the rows of `harbor_jobs` with `status` as stored (not as read).
pub(crate) fn stored_status(
    client: &mut postgres::Client,
    id: harbor_pool::JobId,
) -> Option<String> {
    client
        .query_opt(
            "SELECT status FROM harbor_jobs WHERE id = $1",
            &[id.as_uuid()],
        )
        .unwrap()
        .map(|row| row.get(0))
}
