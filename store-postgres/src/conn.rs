//! Connections: opening one, a few kept for reads, reconnect backoff, and
//! the SQL shared by several rooms.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use postgres::{Client, NoTls, Row};

use crate::job::{StoredJob, StoredStatus};
use crate::{StoreConfig, StoreError};

/// The `harbor_jobs` columns of a [`StoredJob`], as every reader sees them:
/// an unfinished job whose replica's lease has expired (or whose replica
/// row is gone) reads `lost`, finished when the lease expired. Used with
/// `FROM harbor_jobs j LEFT JOIN harbor_replicas r ON r.id = j.replica`.
pub(crate) const JOB_COLUMNS: &str = "
    j.id, j.replica, r.address,
    CASE WHEN j.status IN ('pending', 'running')
              AND coalesce(r.lease_expires_at < now(), true)
         THEN 'lost' ELSE j.status END AS status,
    j.error, j.progress_done, j.progress_total, j.progress_message,
    j.submitted_at, j.started_at,
    CASE WHEN j.status IN ('pending', 'running')
              AND coalesce(r.lease_expires_at < now(), true)
         THEN coalesce(r.lease_expires_at, now()) ELSE j.finished_at END AS finished_at,
    j.cancel_requested_at";

/// `FROM` clause to go with [`JOB_COLUMNS`].
pub(crate) const JOB_FROM: &str =
    "FROM harbor_jobs j LEFT JOIN harbor_replicas r ON r.id = j.replica";

/// Marks every unfinished job of replica `$1` lost: at start (its previous
/// incarnation's), at a clean stop, and when its lease had lapsed.
pub(crate) const MARK_LOST: &str = "
    UPDATE harbor_jobs SET status = 'lost', finished_at = now(), updated_at = now()
    WHERE replica = $1 AND status IN ('pending', 'running')";

/// Reads a row of [`JOB_COLUMNS`].
pub(crate) fn job_from_row(row: &Row) -> Result<StoredJob, StoreError> {
    let id: uuid::Uuid = row.get(0);
    let status: String = row.get(3);
    let error: Option<String> = row.get(4);
    let status =
        StoredStatus::from_column(&status, error).ok_or_else(|| StoreError::UnknownStatus {
            id: id.into(),
            status: status.clone(),
        })?;
    let done: Option<i64> = row.get(5);
    let total: Option<i64> = row.get(6);
    let message: Option<String> = row.get(7);
    let progress = (done.is_some() || total.is_some() || message.is_some()).then(|| {
        let mut progress = harbor_pool::Progress::default();
        progress.done = done.unwrap_or(0).max(0) as u64;
        progress.total = total.map(|t| t.max(0) as u64);
        progress.message = message;
        progress
    });
    Ok(StoredJob {
        id: id.into(),
        replica: row.get(1),
        replica_address: row.get(2),
        status,
        progress,
        submitted_at: row.get(8),
        started_at: row.get(9),
        finished_at: row.get(10),
        cancel_requested_at: row.get(11),
    })
}

/// Opens a connection for `role` (`reader`, `writer`, `listener`,
/// `waiter`, `maintenance`), bounded by the connect timeout.
pub(crate) fn connect(config: &StoreConfig, role: &str) -> Result<Client, StoreError> {
    config
        .pg_config_for(role)?
        .connect(NoTls)
        .map_err(StoreError::Unavailable)
}

/// Capped exponential backoff between reconnects.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(config: &StoreConfig) -> Self {
        Backoff {
            min: config.backoff_min,
            max: config.backoff_max,
            next: config.backoff_min,
        }
    }

    /// The wait before the next attempt; doubles each call up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A few idle connections for reads and cancels, so callers on many
/// threads do not each connect. A connection that fails is dropped, never
/// put back; nothing is retried here, so a caller waits at most one
/// connect timeout plus one query.
pub(crate) struct Readers {
    idle: Mutex<Vec<Client>>,
    max_idle: usize,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl Readers {
    pub(crate) fn new(max_idle: usize) -> Self {
        Readers {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// Runs `f` on an idle connection or a new one. An idle connection
    /// may have died while it sat (the server restarted): if `f` fails on
    /// it for that reason, `f` runs once more on a new connection. The lock
    /// is held only to take or return a connection, never while `f` runs.
    pub(crate) fn with<T>(
        &self,
        config: &StoreConfig,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(mut client) = taken {
            match f(&mut client).map_err(StoreError::from_pg) {
                Err(StoreError::Unavailable(_)) => {}
                result => {
                    self.give_back(client);
                    return result;
                }
            }
        }
        let mut client = connect(config, "reader")?;
        let result = f(&mut client).map_err(StoreError::from_pg);
        if !matches!(result, Err(StoreError::Unavailable(_))) {
            self.give_back(client);
        }
        result
    }

    /// Keeps `client` for later reads, if there is room.
    pub(crate) fn give(&self, client: Client) {
        self.give_back(client);
    }

    fn give_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(client);
        }
    }

    /// Closes the idle connections.
    pub(crate) fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
