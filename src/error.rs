//! Every public error type, one per operation family.
//!
//! Messages are short, lowercase and carry no trailing period. Errors carry
//! panic *messages*, never raw panic payloads, so they are `Send + Sync`.

use std::error::Error;
use std::io;

/// A boxed error that can cross threads: what a job returns on failure.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What a tracked job returns: its value, or an error that marks it
/// [`Failed`](crate::JobStatus::Failed) (or
/// [`Cancelled`](crate::JobStatus::Cancelled) if its token was cancelled).
pub type JobResult<T> = Result<T, BoxError>;

/// Why [`Builder::build`](crate::Builder::build) (or
/// [`Pool::new`](crate::Pool::new)) refused to create a pool. Each variant
/// but `Spawn` names the setting that is out of bounds; the limits are
/// listed on [`Builder`](crate::Builder).
///
/// # Examples
///
/// ```
/// use harbor_pool::{BuildError, Pool};
/// assert!(matches!(Pool::new(0), Err(BuildError::ZeroWorkers)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The pool was asked for zero worker threads.
    #[error("a pool needs at least one worker")]
    ZeroWorkers,
    /// The pool was asked for more worker threads than
    /// [`Builder::MAX_WORKERS`](crate::Builder::MAX_WORKERS).
    #[error("workers must be at most {max}, got {requested}")]
    TooManyWorkers {
        /// The number of workers asked for.
        requested: usize,
        /// The most accepted.
        max: usize,
    },
    /// A bounded queue was asked for with capacity zero.
    #[error("queue capacity must be at least 1")]
    ZeroQueueCapacity,
    /// The thread name prefix contains a NUL byte, which no OS thread name may hold.
    #[error("thread name must not contain a nul byte")]
    InvalidThreadName,
    /// The worker stack size is below
    /// [`Builder::MIN_STACK_SIZE`](crate::Builder::MIN_STACK_SIZE) (a
    /// panicking job could overflow it, which aborts the process) or above
    /// [`Builder::MAX_STACK_SIZE`](crate::Builder::MAX_STACK_SIZE).
    #[error("stack size must be between {min} and {max} bytes, got {requested}")]
    InvalidStackSize {
        /// The stack size asked for, in bytes.
        requested: usize,
        /// The smallest accepted.
        min: usize,
        /// The largest accepted.
        max: usize,
    },
    /// The restart limit's window is zero, which would count no respawn and
    /// so never hold back a restart storm.
    #[error("restart window must be above zero")]
    ZeroRestartWindow,
    /// More stray threads were allowed than
    /// [`Builder::MAX_WORKERS`](crate::Builder::MAX_WORKERS).
    #[error("max_stray_threads of {requested} is above the maximum of {max}")]
    TooManyStrayThreads {
        /// The number asked for.
        requested: usize,
        /// The largest number accepted.
        max: usize,
    },
    /// The restart backoff's initial delay is zero or larger than its cap, or
    /// the cap is above
    /// [`Builder::MAX_RESTART_BACKOFF`](crate::Builder::MAX_RESTART_BACKOFF).
    #[error(
        "restart backoff must start above zero and not above its maximum, which must be at most 1h"
    )]
    InvalidBackoff,
    /// The observer's buffer was asked to hold zero jobs, or more than
    /// [`Builder::MAX_OBSERVER_CAPACITY`](crate::Builder::MAX_OBSERVER_CAPACITY).
    ///
    /// ```
    /// use harbor_pool::{BuildError, Builder};
    /// let err = Builder::new().observer_capacity(0).build().unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidObserverCapacity { requested: 0, .. }));
    /// assert_eq!(err.to_string(), "observer_capacity must be between 1 and 16777216, got 0");
    /// ```
    #[error("observer_capacity must be between 1 and {max}, got {requested}")]
    InvalidObserverCapacity {
        /// The capacity asked for, in jobs.
        requested: usize,
        /// The largest accepted.
        max: usize,
    },
    /// The operating system refused to start one of the pool's threads.
    /// Threads already started were stopped and joined.
    #[error("failed to spawn thread {name}: {source}")]
    Spawn {
        /// The name of the thread that could not be started.
        name: String,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },
}

/// Why a job was not accepted. The job was dropped without running.
///
/// # Examples
///
/// ```
/// use harbor_pool::{Pool, SubmitError};
/// let pool = Pool::new(1).unwrap();
/// pool.shutdown();
/// assert_eq!(pool.execute(|| ()).unwrap_err(), SubmitError::Shutdown);
/// assert_eq!(SubmitError::Shutdown.to_string(), "pool is shut down");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The pool has begun shutting down and accepts no new jobs.
    #[error("pool is shut down")]
    Shutdown,
    /// The bounded queue is full: from the `try_` methods, which never
    /// block, and from the blocking ones when called on one of the pool's
    /// own threads, which must not wait for room they may be holding up.
    #[error("job queue is full")]
    QueueFull,
}

/// Why a tracked job produced no value, as reported by
/// [`JobHandle::join`](crate::JobHandle::join) (and by awaiting the
/// handle).
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobError, Pool};
/// let pool = Pool::new(1).unwrap();
/// let h = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("boom") }).unwrap();
/// match h.join() {
///     Err(JobError::Panicked(message)) => assert_eq!(message, "boom"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job panicked; this is the panic message.
    #[error("job panicked: {0}")]
    Panicked(String),
    /// The job returned `Err` while its token was not cancelled.
    #[error("job failed: {0}")]
    Failed(#[source] BoxError),
    /// The job was cancelled: before it started, by its deadline, by a
    /// shutdown, or it returned `Err` after its token was cancelled.
    #[error("job was cancelled")]
    Cancelled,
    /// The worker thread running the job died (outside the job's own panic
    /// handling), so the job's outcome is unknown.
    #[error("{0}")]
    WorkerDied(String),
    /// The job was abandoned: the pool cancelled its token and it did not
    /// return within its grace, so its worker thread was replaced and its
    /// value, if it ever returns one, is dropped.
    #[error("job was abandoned: it did not return within its grace after being cancelled")]
    Abandoned,
    /// The handle already handed its result out: it was polled to
    /// completion as a future, then polled again or joined.
    #[error("job result already taken")]
    ResultTaken,
}

/// A string that is not a job id (a hyphenated UUID).
///
/// # Examples
///
/// ```
/// use harbor_pool::JobId;
/// let err = "not-a-uuid".parse::<JobId>().unwrap_err();
/// assert!(err.to_string().starts_with("invalid job id"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job id: {reason}")]
pub struct ParseJobIdError {
    pub(crate) reason: String,
}
