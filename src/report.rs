//! [`ShutdownReport`]: what an immediate (or escalated) shutdown did to the
//! jobs it found, and the log the pool keeps to build it.
//!
//! Entries are logged only once `shutdown_now` began (the pool's `abort`
//! flag), by whoever ends a job then: the supervisor's sweep of pending
//! jobs, a worker draining the queue, the supervisor abandoning a job. So
//! the log costs nothing before a shutdown, and its lock is a leaf taken by
//! no one else.

use std::sync::{Arc, Mutex};

use crate::job::{JobId, JobStatus, Tracked};
use crate::sync::lock;

/// What [`Pool::shutdown_now`](crate::Pool::shutdown_now) or
/// [`Pool::shutdown_timeout`](crate::Pool::shutdown_timeout) did: which
/// tracked jobs never ran, which were interrupted and how they ended, which
/// were abandoned, how many untracked jobs were dropped, and whether every
/// thread was joined. Like Java's `shutdownNow`, so the caller can retry or
/// report the work that was lost.
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobStatus, Pool};
/// use std::time::Duration;
///
/// let pool = Pool::new(1).unwrap();
/// let (started_tx, started_rx) = std::sync::mpsc::channel();
/// let running = pool
///     .submit(move |token| {
///         started_tx.send(()).unwrap();
///         token.sleep(Duration::from_secs(60))?;
///         Ok(())
///     })
///     .unwrap();
/// let queued = pool.submit(|_| Ok(())).unwrap();
/// started_rx.recv().unwrap();
/// let report = pool.shutdown_now();
/// assert_eq!(report.cancelled, vec![queued.id()]);
/// assert_eq!(report.interrupted, vec![(running.id(), JobStatus::Cancelled)]);
/// assert!(report.joined());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tracked jobs cancelled without running: queued when the shutdown
    /// began, or cancelled by id while it ran.
    pub cancelled: Vec<JobId>,
    /// Tracked jobs that were running when the shutdown cancelled their
    /// tokens, each with its status when the report was made (`Running` if
    /// `shutdown_timeout` gave up before it returned).
    pub interrupted: Vec<(JobId, JobStatus)>,
    /// Tracked jobs abandoned during the shutdown: they ignored their
    /// cancelled token beyond their grace
    /// ([`Builder::abandon_after`](crate::Builder::abandon_after)).
    pub abandoned: Vec<JobId>,
    /// Untracked jobs dropped without running.
    pub untracked_dropped: u64,
    /// Detached threads still running, each stuck in an abandoned job; a
    /// shutdown never waits for them.
    pub stray_threads: usize,
    pub(crate) joined: bool,
}

impl ShutdownReport {
    /// `true` if every worker and the supervisor exited and were joined
    /// (what `shutdown_timeout` used to return). Detached threads
    /// ([`stray_threads`](Self::stray_threads)) are never waited for and do
    /// not count.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(2).unwrap();
    /// assert!(pool.shutdown_timeout(std::time::Duration::from_secs(10)).joined());
    /// ```
    pub fn joined(&self) -> bool {
        self.joined
    }
}

/// What the pool logs for its report while shutting down.
#[derive(Default)]
pub(crate) struct ReportLog {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    cancelled: Vec<JobId>,
    interrupted: Vec<Arc<dyn Tracked>>,
    abandoned: Vec<JobId>,
    untracked_dropped: u64,
}

impl ReportLog {
    pub(crate) fn cancelled(&self, id: JobId) {
        lock(&self.inner).cancelled.push(id);
    }

    pub(crate) fn interrupted(&self, job: &Arc<dyn Tracked>) {
        lock(&self.inner).interrupted.push(Arc::clone(job));
    }

    pub(crate) fn abandoned(&self, id: JobId) {
        lock(&self.inner).abandoned.push(id);
    }

    pub(crate) fn untracked_dropped(&self) {
        lock(&self.inner).untracked_dropped += 1;
    }

    /// The report so far. Reads each interrupted job's status after the
    /// log's lock is released (lock order: nothing nests under it).
    pub(crate) fn report(&self, stray_threads: usize, joined: bool) -> ShutdownReport {
        let (cancelled, interrupted, abandoned, untracked_dropped) = {
            let entries = lock(&self.inner);
            (
                entries.cancelled.clone(),
                entries.interrupted.clone(),
                entries.abandoned.clone(),
                entries.untracked_dropped,
            )
        };
        ShutdownReport {
            cancelled,
            interrupted: interrupted
                .iter()
                .map(|job| (job.record().id, job.record().status()))
                .collect(),
            abandoned,
            untracked_dropped,
            stray_threads,
            joined,
        }
    }
}
