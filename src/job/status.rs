//! [`JobStatus`], where a tracked job is in its life, and
//! [`CancelOutcome`], what a cancel request found.

use std::fmt;

/// Where a tracked job is in its life.
///
/// `Pending -> Running -> Completed | Failed | Cancelled | Abandoned`, or
/// `Pending -> Cancelled`. The first terminal state wins; a terminal status
/// never changes.
///
/// # Examples
///
/// ```
/// use harbor_pool::JobStatus;
/// assert!(JobStatus::Failed("boom".into()).is_terminal());
/// assert!(!JobStatus::Running.is_terminal());
/// assert_eq!(JobStatus::Cancelled.as_str(), "cancelled");
/// assert_eq!(JobStatus::Failed("boom".into()).to_string(), "failed: boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// Accepted and queued; not started.
    Pending,
    /// A worker is running it.
    Running,
    /// It returned `Ok`.
    Completed,
    /// It panicked (the panic message), returned `Err` without being
    /// cancelled (the error's text), or its worker died.
    Failed(String),
    /// It was cancelled before starting, or returned `Err` after its token
    /// was cancelled.
    Cancelled,
    /// The pool cancelled its token (by id, deadline or `shutdown_now`) and
    /// it did not return within its grace
    /// ([`Builder::abandon_after`](crate::Builder::abandon_after)): it was
    /// given up on and its worker thread replaced. Whatever it returns later
    /// is dropped.
    Abandoned,
}

impl JobStatus {
    /// `true` for `Completed`, `Failed`, `Cancelled` and `Abandoned`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(harbor_pool::JobStatus::Completed.is_terminal());
    /// assert!(!harbor_pool::JobStatus::Pending.is_terminal());
    /// ```
    pub fn is_terminal(&self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }

    /// The status's name in lowercase: `"pending"`, `"running"`,
    /// `"completed"`, `"failed"`, `"cancelled"` or `"abandoned"`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(harbor_pool::JobStatus::Failed("x".into()).as_str(), "failed");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed(_) => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobStatus::Failed(message) => write!(f, "failed: {message}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// What a cancel request found.
///
/// # Examples
///
/// ```
/// use harbor_pool::{CancelOutcome, Pool};
/// let pool = Pool::new(1).unwrap();
/// let handle = pool.submit(|_| Ok(1)).unwrap();
/// handle.wait(std::time::Duration::from_secs(10));
/// assert_eq!(handle.cancel(), CancelOutcome::AlreadyFinished);
/// assert_eq!(CancelOutcome::AlreadyFinished.as_str(), "already_finished");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelOutcome {
    /// It was pending; it is now `Cancelled` and will never run.
    Cancelled,
    /// It is running; its token is now cancelled and the job decides how to end.
    Requested,
    /// It had already reached a terminal state; nothing changed.
    AlreadyFinished,
    /// No job with that id is known (never submitted, or forgotten under
    /// retention).
    NotFound,
}

impl CancelOutcome {
    /// The outcome's name in snake case, e.g. `"already_finished"`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(harbor_pool::CancelOutcome::Requested.as_str(), "requested");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            CancelOutcome::Cancelled => "cancelled",
            CancelOutcome::Requested => "requested",
            CancelOutcome::AlreadyFinished => "already_finished",
            CancelOutcome::NotFound => "not_found",
        }
    }
}

impl fmt::Display for CancelOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
