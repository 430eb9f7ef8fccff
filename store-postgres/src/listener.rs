//! The listener thread: cancel requests for this replica's jobs, by
//! `NOTIFY` and by poll, handed to the embedding code; `harbor_done`
//! notifications relayed to the waiter thread.
//!
//! Invariants:
//!
//! 1. Every cancel request for an unfinished job of this replica reaches
//!    the handler within one `cancel_poll` of being made (plus a reconnect,
//!    if the database is away), whether or not its notification arrives:
//!    the poll reads every such request, and runs at once after each
//!    (re)connect, when notifications sent meanwhile were lost.
//! 2. A request is handed over once per job while its row stays
//!    unfinished (`delivered`), however many notifications and polls see
//!    it; a request seen while no handler is set is not marked delivered,
//!    so the next poll hands it to the handler set meanwhile.
//! 3. The handler (user code) runs on this thread with no lock held; a
//!    panic in it is caught and logged.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use harbor_pool::JobId;
use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;

use crate::conn::{Backoff, connect};
use crate::store::Inner;

/// Channel of cancel requests; the payload is `<job id> <replica id>`.
pub(crate) const CANCEL_CHANNEL: &str = "harbor_cancel";
/// Channel of batches that wrote a terminal state; the payload is the
/// writing replica's id.
pub(crate) const DONE_CHANNEL: &str = "harbor_done";

/// How long the thread blocks at most before looking at the clock and the
/// stop signal again.
const SLICE: Duration = Duration::from_millis(100);

/// How a request reached this replica.
#[derive(Debug, Clone, Copy)]
enum Via {
    Notify,
    Poll,
}

/// The listener thread's loop.
pub(crate) fn run(inner: Arc<Inner>) {
    let mut delivered: HashSet<JobId> = HashSet::new();
    let mut backoff = Backoff::new(&inner.config);
    loop {
        if inner.stopping() {
            return;
        }
        let mut client = match connect_and_listen(&inner) {
            Ok(client) => client,
            Err(err) => {
                log::debug!("cancel listener cannot connect: {err}");
                if inner.sleep(backoff.next_delay()) {
                    return;
                }
                continue;
            }
        };
        inner.stats.listens.fetch_add(1, Relaxed);
        match serve(&inner, &mut client, &mut delivered) {
            Ok(()) => return, // stopping
            Err(err) => {
                log::warn!("cancel listener lost its connection, reconnecting: {err}");
                if inner.sleep(backoff.next_delay()) {
                    return;
                }
            }
        }
        backoff.reset();
    }
}

fn connect_and_listen(inner: &Inner) -> Result<Client, crate::StoreError> {
    let mut client = connect(&inner.config, "listener")?;
    if inner.config.notifications {
        client
            .batch_execute(&format!("LISTEN {CANCEL_CHANNEL}; LISTEN {DONE_CHANNEL}"))
            .map_err(crate::StoreError::from_pg)?;
    }
    Ok(client)
}

/// Serves one connection until it fails (`Err`) or the store stops (`Ok`).
fn serve(inner: &Inner, client: &mut Client, delivered: &mut HashSet<JobId>) -> Result<(), String> {
    let text = |err: postgres::Error| crate::error::describe(&err);
    // Invariant 1: poll first, for requests made while not listening.
    let mut next_poll = Instant::now();
    let poll_sql = "SELECT id FROM harbor_jobs
        WHERE replica = $1 AND status IN ('pending', 'running')
          AND cancel_requested_at IS NOT NULL";
    let poll = client.prepare(poll_sql).map_err(text)?;
    loop {
        if inner.stopping() {
            return Ok(());
        }
        if Instant::now() >= next_poll {
            let rows = client
                .query(&poll, &[&inner.config.replica])
                .map_err(text)?;
            inner.stats.cancel_polls.fetch_add(1, Relaxed);
            let requested: HashSet<JobId> = rows
                .iter()
                .map(|row| JobId::from(row.get::<_, uuid::Uuid>(0)))
                .collect();
            // Invariant 2: forget jobs that have ended.
            delivered.retain(|id| requested.contains(id));
            for id in requested {
                deliver(inner, delivered, id, Via::Poll);
            }
            next_poll = Instant::now() + inner.config.cancel_poll;
        }
        let slice = next_poll
            .saturating_duration_since(Instant::now())
            .min(SLICE);
        if !inner.config.notifications {
            // Polls only; a closed connection shows in the next poll.
            if inner.sleep(slice) {
                return Ok(());
            }
            continue;
        }
        let mut received = Vec::new();
        {
            let mut notifications = client.notifications();
            let mut iter = notifications.timeout_iter(slice);
            let until = Instant::now() + slice;
            // Drains what arrives within the slice, no longer.
            while let Some(note) = iter.next().map_err(text)? {
                received.push(note);
                if Instant::now() >= until {
                    break;
                }
            }
        }
        if client.is_closed() {
            // The iterator ends quietly when the connection closes.
            return Err("the connection closed".into());
        }
        let mut done = false;
        for note in received {
            match note.channel() {
                CANCEL_CHANNEL => {
                    let Some((id, replica)) = note.payload().split_once(' ') else {
                        continue;
                    };
                    if replica != inner.config.replica {
                        continue;
                    }
                    match id.parse::<JobId>() {
                        Ok(id) => deliver(inner, delivered, id, Via::Notify),
                        Err(err) => {
                            log::warn!("bad cancel notification {:?}: {err}", note.payload())
                        }
                    }
                }
                DONE_CHANNEL => done = true,
                _ => {}
            }
        }
        if done {
            // Full means a poke is already pending: the waiter re-reads all.
            let _ = inner.poke.try_send(());
        }
    }
}

/// Hands a request to the handler once (invariants 2 and 3).
fn deliver(inner: &Inner, delivered: &mut HashSet<JobId>, id: JobId, via: Via) {
    if delivered.contains(&id) {
        return;
    }
    let Some(handler) = inner.cancel_handler() else {
        log::debug!("cancel request for job {id} held: no handler set yet");
        return;
    };
    delivered.insert(id);
    match via {
        Via::Notify => inner.stats.cancels_notified.fetch_add(1, Relaxed),
        Via::Poll => inner.stats.cancels_polled.fetch_add(1, Relaxed),
    };
    log::debug!("cancel request for job {id} (by {via:?})");
    if catch_unwind(AssertUnwindSafe(|| handler(id))).is_err() {
        log::error!("the cancel handler panicked on job {id}");
    }
}
