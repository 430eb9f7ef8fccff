//! The writer thread: the buffer's batches into `harbor_jobs`, one
//! statement (one round trip) per batch.
//!
//! Invariants:
//!
//! 1. A row's status only moves forward: pending -> running -> terminal,
//!    and a terminal row is never updated again by a transition (first
//!    terminal wins, including `lost`). The upsert's `WHERE` enforces it
//!    in the database, whatever order states arrive in.
//! 2. A batch that fails is put back into the buffer (`Buffer::restore`)
//!    and retried after a reconnect with backoff, until written or the
//!    store gives up at the end of its shutdown timeout. Nothing accepted
//!    is dropped before that.
//! 3. A batch holds at most one state per job (the buffer's invariant 1),
//!    as `INSERT ... ON CONFLICT DO UPDATE` requires.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use postgres::{Client, Statement};

use crate::conn::{Backoff, connect};
use crate::error::is_connection_gone;
use crate::job::Transition;
use crate::store::Inner;

/// The batch upsert. `$1` the replica; `$2..$10` the batch's columns as
/// arrays; `$11` whether the batch holds a terminal state, which sends one
/// `harbor_done` notification for the whole batch (waiters re-read).
pub(crate) const UPSERT: &str = "
WITH up AS (
    INSERT INTO harbor_jobs AS j (id, replica, status, error, submitted_at, started_at,
                                  finished_at, progress_done, progress_total, progress_message)
    SELECT b.id, $1, b.status, b.error, b.submitted_at, b.started_at, b.finished_at,
           b.progress_done, b.progress_total, b.progress_message
    FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                $7::timestamptz[], $8::int8[], $9::int8[], $10::text[])
         AS b(id, status, error, submitted_at, started_at, finished_at,
              progress_done, progress_total, progress_message)
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status,
        error = excluded.error,
        started_at = coalesce(excluded.started_at, j.started_at),
        finished_at = excluded.finished_at,
        progress_done = coalesce(excluded.progress_done, j.progress_done),
        progress_total = coalesce(excluded.progress_total, j.progress_total),
        progress_message = coalesce(excluded.progress_message, j.progress_message),
        updated_at = now()
    -- invariant 1: forward only, never past a terminal state
    WHERE j.status = 'pending' OR (j.status = 'running' AND excluded.status <> 'pending')
    RETURNING 1
)
SELECT (SELECT count(*) FROM up),
       (SELECT count(pg_notify('harbor_done', $1)) WHERE $11::bool)";

/// The writer thread's loop.
pub(crate) fn run(inner: Arc<Inner>) {
    let mut conn: Option<(Client, Statement)> = None;
    let mut backoff = Backoff::new(&inner.config);
    let mut failing_since: Option<Instant> = None;
    loop {
        let batch = match inner
            .buffer
            .take(inner.config.max_batch, Duration::from_millis(500))
        {
            None => return, // closed and drained
            Some(batch) if batch.is_empty() => continue,
            Some(batch) => batch,
        };
        match write(&inner, &mut conn, &batch) {
            Ok(()) => {
                inner.buffer.settle();
                backoff.reset();
                if let Some(since) = failing_since.take() {
                    log::info!(
                        "store writes resumed after {:.1?}; catching up",
                        since.elapsed()
                    );
                }
            }
            Err(err) => {
                let jobs = batch.len();
                let text = crate::error::describe(&err);
                // Keeps invariant 2.
                inner.buffer.restore(batch);
                inner.stats.write_errors.fetch_add(1, Relaxed);
                if is_connection_gone(&err) || conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                    conn = None;
                }
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    log::warn!("store write of {jobs} jobs failed, buffering and retrying: {text}");
                } else {
                    log::debug!("store write retry failed: {text}");
                }
                // Sleeps the backoff; wakes early only to give up.
                if inner
                    .abort
                    .recv_timeout(backoff.next_delay())
                    .is_err_and(|e| e.is_disconnected())
                {
                    let (left, _) = inner.buffer.counts();
                    log::error!(
                        "store shut down with {left} jobs' states unwritten (postgres unavailable: {text})"
                    );
                    return;
                }
            }
        }
    }
}

/// Writes one batch in one statement (invariant 3), connecting first if
/// need be.
fn write(
    inner: &Inner,
    conn: &mut Option<(Client, Statement)>,
    batch: &[Transition],
) -> Result<(), postgres::Error> {
    if conn.as_ref().is_none_or(|(client, _)| client.is_closed()) {
        *conn = None;
        // `connect` fails only with `Unavailable`: the config was
        // validated at open.
        let mut client = match connect(&inner.config, "writer") {
            Ok(client) => client,
            Err(crate::StoreError::Unavailable(err) | crate::StoreError::Postgres(err)) => {
                return Err(err);
            }
            Err(other) => unreachable!("connect failed with {other}"),
        };
        let statement = client.prepare(UPSERT)?;
        inner.stats.reconnects.fetch_add(1, Relaxed);
        *conn = Some((client, statement));
    }
    let Some((client, statement)) = conn.as_mut() else {
        unreachable!("connected above")
    };
    let n = batch.len();
    let mut ids = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut submitted = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    let mut finished: Vec<Option<SystemTime>> = Vec::with_capacity(n);
    let mut done = Vec::with_capacity(n);
    let mut total = Vec::with_capacity(n);
    let mut message = Vec::with_capacity(n);
    let mut any_terminal = false;
    for t in batch {
        let status = crate::job::StoredStatus::from_pool(&t.status);
        any_terminal |= status.is_terminal();
        ids.push(*t.id.as_uuid());
        statuses.push(status.as_str());
        errors.push(match &t.status {
            harbor_pool::JobStatus::Failed(text) => Some(text.as_str()),
            _ => None,
        });
        submitted.push(t.submitted_at);
        started.push(t.started_at);
        // A terminal row always has an end time (StoredJob's promise).
        finished.push(match (status.is_terminal(), t.finished_at) {
            (true, None) => Some(SystemTime::now()),
            (_, at) => at,
        });
        let progress = t.progress.as_ref();
        done.push(progress.map(|p| clamp(p.done)));
        total.push(progress.and_then(|p| p.total).map(clamp));
        message.push(progress.and_then(|p| p.message.as_deref()));
    }
    let row = client.query_one(
        &*statement,
        &[
            &inner.config.replica,
            &ids,
            &statuses,
            &errors,
            &submitted,
            &started,
            &finished,
            &done,
            &total,
            &message,
            &any_terminal,
        ],
    )?;
    let written: i64 = row.get(0);
    inner.stats.batches.fetch_add(1, Relaxed);
    inner.stats.transitions.fetch_add(n as u64, Relaxed);
    log::trace!("store batch: {n} states, {written} rows changed");
    Ok(())
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
