//! What the store keeps of a job: the transitions it is given and the rows
//! it reads back.

use std::fmt;
use std::time::SystemTime;

use harbor_pool::{JobId, JobInfo, JobStatus, Progress};

/// A job's state as the store records it: a snapshot of one tracked job,
/// taken from a [`JobInfo`] or built by hand.
///
/// Giving the store a job's states out of order is harmless: the store
/// never lets an older state replace a newer one (see
/// [`Store::record`](crate::Store::record)).
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobStatus, Pool};
/// use harbor_store_postgres::Transition;
///
/// let pool = Pool::new(1).unwrap();
/// let handle = pool.submit(|_| Ok(())).unwrap();
/// handle.wait(std::time::Duration::from_secs(10));
/// let info = pool.info(handle.id()).unwrap();
/// let transition = Transition::from(&info);
/// assert_eq!(transition.id, handle.id());
/// assert_eq!(transition.status, JobStatus::Completed);
/// assert!(transition.finished_at.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The job's id.
    pub id: JobId,
    /// Its status.
    pub status: JobStatus,
    /// When the pool accepted it.
    pub submitted_at: SystemTime,
    /// When a worker started it, if one did.
    pub started_at: Option<SystemTime>,
    /// When it ended, if it has.
    pub finished_at: Option<SystemTime>,
    /// Its latest progress report, if any.
    pub progress: Option<Progress>,
}

impl Transition {
    /// A transition of job `id` to `status`, submitted `submitted_at`, with
    /// no start or end time and no progress (set those fields as needed).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobId, JobStatus};
    /// use harbor_store_postgres::Transition;
    /// use std::time::SystemTime;
    ///
    /// let id: JobId = uuid::Uuid::new_v4().into();
    /// let mut t = Transition::new(id, JobStatus::Running, SystemTime::now());
    /// t.started_at = Some(SystemTime::now());
    /// assert!(t.finished_at.is_none());
    /// ```
    pub fn new(id: JobId, status: JobStatus, submitted_at: SystemTime) -> Self {
        Transition {
            id,
            status,
            submitted_at,
            started_at: None,
            finished_at: None,
            progress: None,
        }
    }

    /// 0 for pending, 1 for running, 2 for every terminal status: a state
    /// may replace another of lower or equal rank, never a terminal one
    /// (the same rule as the upsert's `WHERE`, in `writer.rs`).
    pub(crate) fn rank(&self) -> u8 {
        match self.status {
            JobStatus::Pending => 0,
            JobStatus::Running => 1,
            _ => 2,
        }
    }

    /// Whether `self` may replace `older`, a state of the same job.
    pub(crate) fn supersedes(&self, older: &Transition) -> bool {
        older.rank() < 2 && self.rank() >= older.rank()
    }
}

impl From<&JobInfo> for Transition {
    fn from(info: &JobInfo) -> Self {
        Transition {
            id: info.id,
            status: info.status.clone(),
            submitted_at: info.submitted_at,
            started_at: info.started_at,
            finished_at: info.finished_at,
            progress: info.progress.clone(),
        }
    }
}

/// A job's status as every replica reads it from the store: the pool's
/// statuses and one of the store's own, [`Lost`](Self::Lost).
///
/// # Examples
///
/// ```
/// use harbor_store_postgres::StoredStatus;
///
/// assert!(StoredStatus::Lost.is_terminal());
/// assert_eq!(StoredStatus::Lost.as_str(), "lost");
/// assert_eq!(StoredStatus::Failed("boom".into()).to_string(), "failed: boom");
/// assert!(!StoredStatus::Running.is_terminal());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoredStatus {
    /// Accepted and queued on its replica; not started.
    Pending,
    /// Running on its replica.
    Running,
    /// It returned `Ok`.
    Completed,
    /// It panicked, returned an error, or its worker died (the text).
    Failed(String),
    /// It was cancelled.
    Cancelled,
    /// Its replica gave up on it after a cancel (see
    /// `harbor_pool::JobStatus::Abandoned`).
    Abandoned,
    /// Its replica stopped before it ended: the replica's lease expired
    /// without a clean stop (a crash, a partition, an outage of the
    /// database longer than the lease), or the replica restarted under the
    /// same id, or stopped cleanly with the job unfinished. Terminal: the
    /// job is never re-run anywhere, and whatever it did before is unknown.
    Lost,
}

impl StoredStatus {
    /// `true` for every status but `Pending` and `Running`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(harbor_store_postgres::StoredStatus::Cancelled.is_terminal());
    /// ```
    pub fn is_terminal(&self) -> bool {
        !matches!(self, StoredStatus::Pending | StoredStatus::Running)
    }

    /// The name stored in the `status` column: `"pending"`, `"running"`,
    /// `"completed"`, `"failed"`, `"cancelled"`, `"abandoned"` or `"lost"`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(harbor_store_postgres::StoredStatus::Pending.as_str(), "pending");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            StoredStatus::Pending => "pending",
            StoredStatus::Running => "running",
            StoredStatus::Completed => "completed",
            StoredStatus::Failed(_) => "failed",
            StoredStatus::Cancelled => "cancelled",
            StoredStatus::Abandoned => "abandoned",
            StoredStatus::Lost => "lost",
        }
    }

    /// The status a pool's [`JobStatus`] is stored as.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::JobStatus;
    /// use harbor_store_postgres::StoredStatus;
    ///
    /// assert_eq!(StoredStatus::from(&JobStatus::Cancelled), StoredStatus::Cancelled);
    /// ```
    pub fn from_pool(status: &JobStatus) -> Self {
        match status {
            JobStatus::Pending => StoredStatus::Pending,
            JobStatus::Running => StoredStatus::Running,
            JobStatus::Completed => StoredStatus::Completed,
            JobStatus::Failed(message) => StoredStatus::Failed(message.clone()),
            JobStatus::Cancelled => StoredStatus::Cancelled,
            JobStatus::Abandoned => StoredStatus::Abandoned,
            // A status added to the pool later: terminal, since every
            // unfinished one is named above; kept as a failure with its name.
            other => StoredStatus::Failed(other.to_string()),
        }
    }

    /// Reads a `status` column and its `error` column back.
    pub(crate) fn from_column(name: &str, error: Option<String>) -> Option<Self> {
        Some(match name {
            "pending" => StoredStatus::Pending,
            "running" => StoredStatus::Running,
            "completed" => StoredStatus::Completed,
            "failed" => StoredStatus::Failed(error.unwrap_or_default()),
            "cancelled" => StoredStatus::Cancelled,
            "abandoned" => StoredStatus::Abandoned,
            "lost" => StoredStatus::Lost,
            _ => return None,
        })
    }
}

impl From<&JobStatus> for StoredStatus {
    fn from(status: &JobStatus) -> Self {
        StoredStatus::from_pool(status)
    }
}

impl fmt::Display for StoredStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredStatus::Failed(message) => write!(f, "failed: {message}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A job as read from the store, by any replica.
///
/// # Examples
///
/// ```no_run
/// use harbor_store_postgres::{Store, StoreConfig, StoredStatus};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::open(StoreConfig::new("postgres://localhost/harbor", "b"))?;
/// let id = "3f2a1b4c-0000-4000-8000-000000000000".parse()?;
/// if let Some(job) = store.job(id)? {
///     println!("{} on {} ({:?}): {}", job.id, job.replica, job.replica_address, job.status);
///     assert_eq!(job.status.is_terminal(), job.finished_at.is_some());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredJob {
    /// The job's id.
    pub id: JobId,
    /// The replica that accepted it, and runs or ran it.
    pub replica: String,
    /// That replica's address, as it registered it.
    pub replica_address: Option<String>,
    /// Its status as every reader sees it: `Lost` once its replica's lease
    /// has expired with the job unfinished.
    pub status: StoredStatus,
    /// Its latest progress report, if any.
    pub progress: Option<Progress>,
    /// When its replica accepted it (the replica's clock).
    pub submitted_at: SystemTime,
    /// When it started, if it did (the replica's clock).
    pub started_at: Option<SystemTime>,
    /// When it ended: the replica's clock, or for a lost job when it was
    /// found lost (the database's clock). Set exactly when `status` is
    /// terminal.
    pub finished_at: Option<SystemTime>,
    /// When a cancel was first requested, from any replica.
    pub cancel_requested_at: Option<SystemTime>,
}

/// What [`Store::cancel`](crate::Store::cancel) did.
///
/// # Examples
///
/// ```
/// use harbor_store_postgres::{CancelRequest, StoredStatus};
///
/// let outcome = CancelRequest::Finished(StoredStatus::Completed);
/// assert!(!outcome.is_requested());
/// assert!(CancelRequest::Requested { replica: "a".into() }.is_requested());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelRequest {
    /// The store has no such job.
    NotFound,
    /// The job was pending or running: the request is recorded and its
    /// replica notified (and its poll finds the request if the
    /// notification is lost). The job ends `cancelled` if it honours its
    /// token.
    Requested {
        /// The replica that owns it.
        replica: String,
    },
    /// The job had already ended (or is lost); nothing to cancel. The
    /// request is recorded all the same.
    Finished(StoredStatus),
}

impl CancelRequest {
    /// Whether the request reached an unfinished job.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!harbor_store_postgres::CancelRequest::NotFound.is_requested());
    /// ```
    pub fn is_requested(&self) -> bool {
        matches!(self, CancelRequest::Requested { .. })
    }
}
