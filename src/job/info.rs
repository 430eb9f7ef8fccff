//! [`JobInfo`], a snapshot of a tracked job's record.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{JobId, JobStatus};
use crate::forensics::JobPanic;
use crate::progress::Progress;

/// A snapshot of a tracked job: its status and when things happened.
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobStatus, Pool};
/// use std::time::Duration;
///
/// let pool = Pool::new(1).unwrap();
/// let handle = pool.submit(|_| Ok(())).unwrap();
/// handle.wait(Duration::from_secs(10));
/// let info = pool.info(handle.id()).unwrap();
/// assert_eq!(info.status, JobStatus::Completed);
/// assert!(info.started_at.is_some() && info.finished_at.is_some());
/// assert!(info.worker.unwrap().starts_with("harbor-worker-"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job's id.
    pub id: JobId,
    /// Its status when the snapshot was taken.
    pub status: JobStatus,
    /// When the pool accepted it.
    pub submitted_at: SystemTime,
    /// When a worker started it, if one did.
    pub started_at: Option<SystemTime>,
    /// When it reached a terminal state, if it has.
    pub finished_at: Option<SystemTime>,
    /// The name of the worker thread that ran it, if one did.
    pub worker: Option<String>,
    /// The timeout it was submitted with, if any.
    pub timeout: Option<Duration>,
    /// If it panicked: the message and the worker thread, and where it
    /// panicked (and a backtrace) as
    /// [`Builder::capture_panics`](crate::Builder::capture_panics) asks.
    /// Set before the status turns `Failed`, so a snapshot that shows the
    /// failure shows this too. `None` for a job that did not panic,
    /// including one whose worker died under it.
    ///
    /// ```
    /// use harbor_pool::{CapturePanics, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .workers(1)
    ///     .capture_panics(CapturePanics::LocationAndBacktrace)
    ///     .build()
    ///     .unwrap();
    /// let bad = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("boom") }).unwrap();
    /// let good = pool.submit(|_| Ok(())).unwrap();
    /// good.wait(std::time::Duration::from_secs(30));
    /// bad.wait(std::time::Duration::from_secs(30));
    /// assert_eq!(pool.info(good.id()).unwrap().panic, None);
    /// let panic = pool.info(bad.id()).unwrap().panic.unwrap();
    /// assert_eq!(panic.message, "boom");
    /// assert!(panic.location.is_some() && panic.backtrace.is_some());
    /// ```
    pub panic: Option<Arc<JobPanic>>,
    /// The latest progress the job reported through its token
    /// ([`CancelToken::set_progress`](crate::CancelToken::set_progress),
    /// [`CancelToken::set_progress_message`](crate::CancelToken::set_progress_message)),
    /// or `None` if it reported none. Kept once the job has ended.
    pub progress: Option<Progress>,
}
