//! The maintenance thread: this replica's lease, the `lost` sweep of dead
//! replicas' jobs, and retention.
//!
//! Invariants:
//!
//! 1. The lease is renewed every heartbeat interval; a failed renewal is
//!    retried with backoff, not at the next interval.
//! 2. A renewal that finds the lease already expired marks this replica's
//!    unfinished rows `lost` first, in the same transaction: readers have
//!    been seeing them as `lost` (computed on read) and must not see them
//!    come back to life. The pool may still finish them; those late
//!    states are ignored (first terminal wins, the writer's invariant 1).
//! 3. The sweep stores `lost` for unfinished rows of every replica whose
//!    lease has expired, so those rows get a `finished_at` and retention
//!    can delete them; readers do not wait for it (they compute `lost`).
//! 4. Retention deletes at most `retention_batch` rows per statement, so
//!    no statement holds many row locks or runs long.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::StoreError;
use crate::conn::{Backoff, MARK_LOST, connect};
use crate::store::Inner;

/// The thread's loop.
pub(crate) fn run(inner: Arc<Inner>) {
    let config = &inner.config;
    let beat = config.heartbeat_interval();
    let mut client: Option<Client> = None;
    let mut backoff = Backoff::new(config);
    let start = Instant::now();
    let mut next_beat = start + beat;
    let mut next_sweep = start + beat;
    let mut next_retention = start + config.retention_interval;
    loop {
        let now = Instant::now();
        let mut wake = next_beat.min(next_sweep);
        if config.retention.is_some() {
            wake = wake.min(next_retention);
        }
        if inner.sleep(wake.saturating_duration_since(now)) {
            return;
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            match connect(config, "maintenance") {
                Ok(new) => client = Some(new),
                Err(err) => {
                    log::warn!("lease renewal cannot connect: {err}");
                    // Invariant 1.
                    next_beat = Instant::now() + backoff.next_delay();
                    continue;
                }
            }
        }
        let Some(conn) = client.as_mut() else {
            continue;
        };
        let now = Instant::now();
        if now >= next_beat {
            match heartbeat(&inner, conn) {
                Ok(()) => {
                    backoff.reset();
                    next_beat = now + beat;
                }
                Err(err) => {
                    log::warn!("lease renewal failed: {err}");
                    client = None;
                    next_beat = Instant::now() + backoff.next_delay();
                    continue;
                }
            }
        }
        if now >= next_sweep {
            next_sweep = now + beat;
            match sweep(conn) {
                Ok(0) => {}
                Ok(n) => log::info!("marked {n} jobs of expired replicas lost"),
                Err(err) => {
                    log::debug!("lost sweep failed: {}", crate::error::describe(&err));
                    client = None;
                    continue;
                }
            }
        }
        if let Some(keep) = config.retention
            && now >= next_retention
        {
            next_retention = now + config.retention_interval;
            match purge(conn, keep, config.retention_batch) {
                Ok(n) => {
                    inner.stats.purged.fetch_add(n, Relaxed);
                    if n > 0 {
                        log::debug!("retention deleted {n} finished jobs");
                    }
                }
                Err(err) => {
                    log::debug!("retention failed: {}", crate::error::describe(&err));
                    client = None;
                }
            }
        }
    }
}

/// Renews the lease (invariant 2).
fn heartbeat(inner: &Inner, client: &mut Client) -> Result<(), StoreError> {
    let config = &inner.config;
    let mut tx = client.transaction().map_err(StoreError::from_pg)?;
    let row = tx
        .query_opt(
            "SELECT incarnation, lease_expires_at < now() FROM harbor_replicas
             WHERE id = $1 FOR UPDATE",
            &[&config.replica],
        )
        .map_err(StoreError::from_pg)?;
    let Some(row) = row else {
        log::error!(
            "replica {} is no longer registered; re-registering",
            config.replica
        );
        drop(tx);
        return crate::store::register(inner, client).map(|_| ());
    };
    let incarnation: uuid::Uuid = row.get(0);
    if incarnation != inner.incarnation {
        log::error!(
            "replica id {} was taken by another process; this one's jobs will read as lost",
            config.replica
        );
        return Ok(());
    }
    let lapsed: bool = row.get(1);
    if lapsed {
        let lost = tx
            .execute(MARK_LOST, &[&config.replica])
            .map_err(StoreError::from_pg)?;
        log::warn!(
            "replica {}'s lease had expired: {lost} unfinished jobs are now lost",
            config.replica
        );
    }
    tx.execute(
        "UPDATE harbor_replicas
         SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $2)
         WHERE id = $1",
        &[&config.replica, &config.lease.as_secs_f64()],
    )
    .map_err(StoreError::from_pg)?;
    tx.commit().map_err(StoreError::from_pg)?;
    inner.stats.heartbeats.fetch_add(1, Relaxed);
    Ok(())
}

/// Invariant 3.
fn sweep(client: &mut Client) -> Result<u64, postgres::Error> {
    client.execute(
        "UPDATE harbor_jobs j
         SET status = 'lost', finished_at = r.lease_expires_at, updated_at = now()
         FROM harbor_replicas r
         WHERE r.id = j.replica AND j.status IN ('pending', 'running')
           AND r.lease_expires_at < now()",
        &[],
    )
}

/// Deletes rows finished more than `keep` ago, `batch` at a time
/// (invariant 4), and replicas gone that long with no rows left. Returns
/// the jobs deleted.
pub(crate) fn purge(
    client: &mut Client,
    keep: Duration,
    batch: usize,
) -> Result<u64, postgres::Error> {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let keep = keep.as_secs_f64();
    let delete = client.prepare(
        "DELETE FROM harbor_jobs WHERE id IN (
             SELECT id FROM harbor_jobs
             WHERE finished_at < now() - make_interval(secs => $1)
             LIMIT $2)",
    )?;
    let mut total = 0;
    loop {
        let n = client.execute(&delete, &[&keep, &batch])?;
        total += n;
        if n < batch as u64 {
            break;
        }
    }
    client.execute(
        "DELETE FROM harbor_replicas r
         WHERE r.lease_expires_at < now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM harbor_jobs j WHERE j.replica = r.id)",
        &[&keep],
    )?;
    Ok(total)
}
