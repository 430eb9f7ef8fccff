//! Job ids, statuses, options, the internal job types and [`JobHandle`].
//!
//! A tracked job is one allocation, a [`JobCell`], shared by the queue, the
//! registry and the job's handle. It holds the type-erased [`Record`] (status
//! and times), the closure until a worker takes it, and the result slot the
//! handle reads. (A job with a timeout or its own grace has them in a second,
//! small allocation.)
//!
//! Invariants:
//!
//! 1. The closure is taken at most once: by the worker that started the job,
//!    or dropped by whoever cancelled it while pending.
//! 2. The result slot is written before the record becomes terminal, so a
//!    [`JobHandle::join`] that sees a terminal record finds the result there.
//!    A cancelled-while-pending job writes no result; `join` reports
//!    [`JobError::Cancelled`] for an empty slot.
//! 3. Once the handle is dropped (detached), the slot refuses results and
//!    they are dropped at once, so finished records kept for status queries
//!    hold no job values.
//! 4. No user code (the job, its captures' or results' `Drop`, its error's
//!    `Display`) runs while a lock is held, and all of it runs under
//!    `catch_unwind` on the worker.
//! 5. A [`JobHandle`] waited on ([`join`](JobHandle::join),
//!    [`wait`](JobHandle::wait), [`join_timeout`](JobHandle::join_timeout),
//!    or polled as a future) by one of its own pool's workers runs the job
//!    there if it is still pending (worker invariant 7): submit-then-join
//!    inside a job never deadlocks, however few workers the pool has.
//! 6. A future awaiting a job ([`JobHandle`] as a `Future`, or
//!    [`WaitStatus`] from [`Pool::wait_async`](crate::Pool::wait_async))
//!    holds at most one waker registration in the job's record and
//!    withdraws it when dropped (registry invariant 6), so futures that
//!    come and go leave nothing behind. Nothing polls: the thread that ends
//!    the job wakes them.
//! 7. A handle yields its result once, through `join` or a `Ready` poll;
//!    afterwards polling and `join` return [`JobError::ResultTaken`].

use std::fmt;
use std::future::Future;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::cancel::CancelToken;
use crate::error::{JobError, JobResult, ParseJobIdError};
use crate::events::{Span, SpanSlot};
use crate::forensics::JobPanic;
use crate::metrics::Tick;
use crate::observer::{Feed, Mark};
use crate::progress::Progress;
use crate::registry::{CancelStep, Record};
use crate::shared::Shared;
use crate::sync::{deadline_after, lock};
use crate::unwind;
use crate::wake::Key;
use crate::worker;

/// The id of a tracked job: a random (v4) UUID.
///
/// It prints and parses as the hyphenated UUID, so it can travel through
/// URLs, logs and JSON.
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobId, Pool};
///
/// let pool = Pool::new(1).unwrap();
/// let handle = pool.submit(|_| Ok(())).unwrap();
/// let id: JobId = handle.id();
/// let text = id.to_string();
/// assert_eq!(text.len(), 36);
/// assert_eq!(text.parse::<JobId>().unwrap(), id);
/// assert!("nope".parse::<JobId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

impl JobId {
    pub(crate) fn new() -> Self {
        JobId(Uuid::new_v4())
    }

    /// The UUID behind this id.
    ///
    /// # Examples
    ///
    /// ```
    /// let id: harbor_pool::JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
    /// assert_eq!(id.as_uuid().get_version_num(), 4);
    /// ```
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for JobId {
    fn from(uuid: Uuid) -> Self {
        JobId(uuid)
    }
}

impl From<JobId> for Uuid {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0.hyphenated())
    }
}

impl FromStr for JobId {
    type Err = ParseJobIdError;

    /// Parses the hyphenated form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`),
    /// in either case. Other UUID spellings are refused, so one id has one
    /// spelling in URLs and logs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(ParseJobIdError {
                reason: format!(
                    "expected a hyphenated uuid of 36 characters, found {}",
                    s.len()
                ),
            });
        }
        Uuid::try_parse(s)
            .map(JobId)
            .map_err(|err| ParseJobIdError {
                reason: err.to_string(),
            })
    }
}

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

/// Per-job options for [`Pool::submit_with`](crate::Pool::submit_with).
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobOptions, JobStatus, Pool};
/// use std::time::Duration;
///
/// let pool = Pool::new(1).unwrap();
/// let handle = pool
///     .submit_with(JobOptions::new().timeout(Duration::from_millis(20)), |token| {
///         token.sleep(Duration::from_secs(60))?; // ends early at the deadline
///         Ok(())
///     })
///     .unwrap();
/// assert_eq!(handle.wait(Duration::from_secs(30)), Some(JobStatus::Cancelled));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) abandon_after: Option<Duration>,
}

impl JobOptions {
    /// Options with no deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = harbor_pool::JobOptions::new();
    /// assert_eq!(options, harbor_pool::JobOptions::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the job a deadline `timeout` after submission. When it passes,
    /// a pending job is cancelled (it never starts) and a running job's
    /// token is cancelled. One timer thread drives every deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = harbor_pool::JobOptions::new().timeout(Duration::from_secs(5));
    /// assert_ne!(options, harbor_pool::JobOptions::new());
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Abandons this job if it has not returned `grace` after the pool
    /// cancelled its token (by id, by its deadline, or by
    /// `shutdown_now`), overriding
    /// [`Builder::abandon_after`](crate::Builder::abandon_after): it ends
    /// [`JobStatus::Abandoned`] and its worker thread is replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = harbor_pool::JobOptions::new()
    ///     .timeout(Duration::from_secs(5))
    ///     .abandon_after(Duration::from_secs(1));
    /// assert_ne!(options, harbor_pool::JobOptions::new());
    /// ```
    pub fn abandon_after(mut self, grace: Duration) -> Self {
        self.abandon_after = Some(grace);
        self
    }
}

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
    /// ([`CancelToken::set_progress`], [`CancelToken::set_progress_message`]),
    /// or `None` if it reported none. Kept once the job has ended.
    pub progress: Option<Progress>,
}

/// How a worker's run of a tracked job ended.
pub(crate) struct Outcome {
    pub(crate) status: JobStatus,
    pub(crate) panicked: bool,
}

/// A tracked job, type-erased for the queue and the registry.
/// `RefUnwindSafe` so that a [`CancelToken`] holding a job stays unwind-safe.
pub(crate) trait Tracked: Send + Sync + RefUnwindSafe {
    fn record(&self) -> &Record;

    /// Takes the span current where the job was submitted (nothing
    /// without the `tracing` feature), for the worker that runs it.
    fn take_span(&self) -> Span;

    /// Runs the job on the current (worker) thread, after `Record::start`,
    /// handing it `token` (made by [`CancelToken::for_job`] from this job).
    /// Never unwinds: user panics are caught (invariant 4).
    fn run(&self, token: &CancelToken) -> Outcome;

    /// Drops the closure without running it (invariant 1). Returns whether
    /// there was one to drop (it had neither run nor been dropped before).
    fn discard(&self) -> bool;

    /// Stores the result for a job whose worker died under it.
    fn lose(&self, message: &str);

    /// Stores [`JobError::Abandoned`] as the result of a job given up on,
    /// and refuses (drops) whatever the job returns later.
    fn abandon(&self);
}

/// The typed side of a tracked job, seen by its [`JobHandle`].
trait Slot<T>: Tracked {
    fn take_result(&self) -> Option<Result<T, JobError>>;
    fn detach(&self);
    /// Takes the result and detaches, under one lock: for `join`, which
    /// consumes the handle.
    fn take_result_and_detach(&self) -> Option<Result<T, JobError>>;
}

pub(crate) struct JobCell<F, T> {
    record: Record,
    /// Until a worker takes it to run the job, or the job is discarded.
    span: SpanSlot,
    job: Mutex<Option<F>>,
    slot: Mutex<SlotState<T>>,
}

struct SlotState<T> {
    result: Option<Result<T, JobError>>,
    detached: bool,
}

impl<F, T> JobCell<F, T>
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn store(&self, result: Result<T, JobError>) {
        let refused = {
            let mut slot = lock(&self.slot);
            if slot.detached {
                Some(result)
            } else {
                slot.result = Some(result);
                None
            }
        };
        // Outside the lock, contained (invariants 3 and 4).
        if let Some(result) = refused {
            unwind::drop_quietly(result);
        }
    }
}

impl<F, T> Tracked for JobCell<F, T>
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn record(&self) -> &Record {
        &self.record
    }

    fn take_span(&self) -> Span {
        self.span.take()
    }

    fn run(&self, token: &CancelToken) -> Outcome {
        let Some(job) = lock(&self.job).take() else {
            // Unreachable: only a started job runs, and a started job was not
            // discarded (invariant 1). Answer safely anyway.
            return Outcome {
                status: JobStatus::Cancelled,
                panicked: false,
            };
        };
        let (status, result, panicked) = match unwind::catch(|| job(token)) {
            Ok(Ok(value)) => (JobStatus::Completed, Ok(value), false),
            Ok(Err(err)) if token.is_cancelled() => {
                unwind::drop_quietly(err);
                (JobStatus::Cancelled, Err(JobError::Cancelled), false)
            }
            Ok(Err(err)) => {
                let message = unwind::catch(|| err.to_string()).unwrap_or_else(|panic| {
                    format!("the job's error panicked while being formatted: {panic}")
                });
                (
                    JobStatus::Failed(message),
                    Err(JobError::Failed(err)),
                    false,
                )
            }
            Err(message) => (
                JobStatus::Failed(message.clone()),
                Err(JobError::Panicked(message)),
                true,
            ),
        };
        self.store(result);
        Outcome { status, panicked }
    }

    fn discard(&self) -> bool {
        let job = lock(&self.job).take();
        let had = job.is_some();
        // Never to run: its span goes too (closing it runs the subscriber).
        if let Some(message) = unwind::drop_quietly((job, self.span.take())) {
            // Runs on the supervisor and in the worker's drop guard too.
            log_quietly!(log::warn!(
                "dropping cancelled job {} panicked: {message}",
                self.record.id
            ));
        }
        had
    }

    fn lose(&self, message: &str) {
        let mut slot = lock(&self.slot);
        // A result already stored is the job's real one: keep it.
        if !slot.detached && slot.result.is_none() {
            slot.result = Some(Err(JobError::WorkerDied(message.to_owned())));
        }
    }

    fn abandon(&self) {
        let mut slot = lock(&self.slot);
        if !slot.detached && slot.result.is_none() {
            slot.result = Some(Err(JobError::Abandoned));
        }
        // Invariant 3's refusal: the value the job may still return is
        // dropped by its thread when it does.
        slot.detached = true;
    }
}

impl<F, T> Slot<T> for JobCell<F, T>
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn take_result(&self) -> Option<Result<T, JobError>> {
        lock(&self.slot).result.take()
    }

    fn detach(&self) {
        drop(self.take_result_and_detach());
    }

    fn take_result_and_detach(&self) -> Option<Result<T, JobError>> {
        let mut slot = lock(&self.slot);
        slot.detached = true;
        // Returned, so a result the caller drops is dropped after unlocking
        // (invariant 4).
        slot.result.take()
    }
}

/// Builds the shared cell for a new tracked job, on the submitting thread
/// (it captures that thread's current span).
pub(crate) fn new_cell<F, T>(
    id: JobId,
    options: JobOptions,
    feed: Option<Arc<Feed>>,
    job: F,
) -> (Arc<dyn Tracked>, JobHandleParts<T>)
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    let mut record = Record::new(id, options.timeout, options.abandon_after);
    record.mark = Mark::new(feed);
    let cell = Arc::new(JobCell {
        record,
        span: SpanSlot::current(),
        job: Mutex::new(Some(job)),
        slot: Mutex::new(SlotState {
            result: None,
            detached: false,
        }),
    });
    (cell.clone(), JobHandleParts { cell })
}

/// Builds a tracked job and its handle outside any pool (for unit tests).
#[cfg(test)]
pub(crate) fn test_cell<T: Send + 'static>(
    job: impl FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    shared: &Arc<Shared>,
) -> (Arc<dyn Tracked>, JobHandle<T>) {
    let (cell, parts) = new_cell(JobId::new(), JobOptions::default(), None, job);
    (cell, parts.into_handle(Arc::downgrade(shared), shared.id))
}

/// The typed half of [`new_cell`], turned into a handle once the job is queued.
pub(crate) struct JobHandleParts<T> {
    cell: Arc<dyn Slot<T>>,
}

impl<T> JobHandleParts<T> {
    /// The handle of a job queued on the pool `shared`, whose id is `pool`.
    pub(crate) fn into_handle(self, shared: Weak<Shared>, pool: usize) -> JobHandle<T> {
        JobHandle {
            cell: self.cell,
            shared,
            pool,
            awaiting: Awaiting::Idle,
        }
    }
}

/// A unit of work on the queue.
pub(crate) enum Message {
    /// An untracked job from [`Pool::execute`](crate::Pool::execute), and
    /// the span current where it was submitted, and when it was submitted
    /// (for the queue wait histogram).
    Run(Box<dyn FnOnce() + Send + 'static>, Span, Tick),
    /// A tracked job.
    Track(Arc<dyn Tracked>),
    /// Test seam: a tracked job whose worker thread dies while running it,
    /// outside any `catch_unwind` (as a bug in the pool would).
    #[cfg(test)]
    Poison(Arc<dyn Tracked>),
}

impl Message {
    /// The tracked job inside, if any.
    pub(crate) fn tracked(&self) -> Option<&Arc<dyn Tracked>> {
        match self {
            Message::Run(..) => None,
            Message::Track(job) => Some(job),
            #[cfg(test)]
            Message::Poison(job) => Some(job),
        }
    }
}

/// An owned permission to wait for a tracked job and take its value.
///
/// Dropping the handle detaches: the job still runs, and its status stays
/// queryable through the pool. [`join`](Self::join) works even after the
/// pool forgot the job's record (retention) and after the pool was dropped.
///
/// # Awaiting
///
/// `JobHandle<T>` is also a [`Future`] with the output of `join`,
/// `Result<T, JobError>`, and is [`Unpin`], so `handle.await` works on any
/// executor; no async runtime is needed by the pool. Nothing polls: the
/// handle stores the task's [`Waker`](std::task::Waker) in the job's
/// record, and the thread that ends the job (the worker, or whoever
/// cancels it) wakes it. Awaiting costs no thread, unlike a `join` inside
/// `spawn_blocking`.
///
/// * The handle may be polled, then [`join`](Self::join)ed or
///   [`wait`](Self::wait)ed, and dropped at any point; dropping detaches as
///   above and withdraws its waker. A handle in a `select!` that lost
///   detaches the job too; keep `&mut handle` in the `select!` to go on
///   awaiting it.
/// * Polled again with a waker that wakes another task, it replaces the
///   stored one; with one that wakes the same task ([`will_wake`]), it
///   keeps it.
/// * The result is yielded once: after a `Ready` poll, further polls and
///   `join` return [`JobError::ResultTaken`] (never a panic).
/// * The handle keeps working after the pool was dropped or forgot the
///   job's record (retention), as `join` does.
/// * Polled on one of its own pool's workers (a job awaiting a job it
///   submitted, with a blocking executor such as `pollster`), a job still
///   pending runs right there, as for `join`.
///
/// To add a timeout, wrap the handle in your runtime's timer (such as
/// `tokio::time::timeout(d, &mut handle)`); on timeout the job keeps
/// running and the handle can still be awaited, joined or cancelled.
///
/// [`will_wake`]: std::task::Waker::will_wake
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobStatus, Pool};
///
/// let pool = Pool::new(2).unwrap();
/// let handle = pool.submit(|_| Ok(6 * 7)).unwrap();
/// assert_eq!(handle.join().unwrap(), 42);
/// ```
///
/// Awaited, here with the `pollster` executor (any executor works):
///
/// ```
/// use harbor_pool::{JobError, Pool};
///
/// let pool = Pool::new(2).unwrap();
/// let handle = pool.submit(|_| Ok(6 * 7)).unwrap();
/// assert_eq!(pollster::block_on(handle).unwrap(), 42);
///
/// let failed = pool.submit(|_| -> harbor_pool::JobResult<()> { Err("bad input".into()) }).unwrap();
/// let err = pollster::block_on(failed).unwrap_err();
/// assert!(matches!(err, JobError::Failed(e) if e.to_string() == "bad input"));
/// ```
pub struct JobHandle<T> {
    cell: Arc<dyn Slot<T>>,
    shared: Weak<Shared>,
    /// The pool's id (`Shared::id`), to tell its workers without upgrading
    /// `shared`.
    pool: usize,
    /// Where the handle is as a future (invariants 6 and 7).
    awaiting: Awaiting,
}

/// A [`JobHandle`]'s state as a future.
#[derive(Clone, Copy)]
enum Awaiting {
    /// No waker registered.
    Idle,
    /// Polled `Pending`: its waker is registered in the record under this
    /// key (invariant 6).
    Registered(Key),
    /// A `Ready` poll handed the result out (invariant 7).
    Taken,
    /// `join` took the result and detached the job (invariant 3): nothing
    /// is left for `Drop` to do.
    Joined,
}

// As for `Pool`, whose shared state (with the user's hooks) a handle
// references: the pool's state survives panics, and the result slot is
// behind a mutex that ignores poisoning.
impl<T> UnwindSafe for JobHandle<T> {}
impl<T> RefUnwindSafe for JobHandle<T> {}

impl<T> JobHandle<T> {
    /// The job's id.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// let handle = pool.submit(|_| Ok(())).unwrap();
    /// assert!(pool.status(handle.id()).is_some());
    /// ```
    pub fn id(&self) -> JobId {
        self.cell.record().id
    }

    /// The job's current status.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobStatus, Pool};
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool.submit(|_| Ok(())).unwrap();
    /// handle.wait(std::time::Duration::from_secs(10));
    /// assert_eq!(handle.status(), JobStatus::Completed);
    /// ```
    pub fn status(&self) -> JobStatus {
        self.cell.record().status()
    }

    /// The latest progress the job reported through its token, or `None`
    /// if it reported none yet. Kept once the job has ended; works after
    /// the pool forgot the record, as [`join`](Self::join) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Pool;
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let (reported_tx, reported_rx) = mpsc::channel();
    /// let (go_tx, go_rx) = mpsc::channel::<()>();
    /// let handle = pool
    ///     .submit(move |token| {
    ///         token.set_progress(1, Some(2));
    ///         reported_tx.send(()).unwrap();
    ///         let _ = go_rx.recv_timeout(Duration::from_secs(30));
    ///         token.set_progress(2, Some(2));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// reported_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    /// assert_eq!(handle.progress().unwrap().done, 1);
    /// go_tx.send(()).unwrap();
    /// handle.wait(Duration::from_secs(30));
    /// assert_eq!(handle.progress().unwrap().done, 2);
    /// ```
    pub fn progress(&self) -> Option<Progress> {
        self.cell.record().progress()
    }

    /// `true` once the job is in a terminal state (join will not block).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// let handle = pool.submit(|_| Ok(())).unwrap();
    /// handle.wait(std::time::Duration::from_secs(10));
    /// assert!(handle.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.cell.record().is_terminal()
    }

    /// Cancels the job, as [`Pool::cancel`](crate::Pool::cancel) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{CancelOutcome, JobStatus, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool
    ///     .submit(|token| {
    ///         token.sleep(Duration::from_secs(60))?;
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// let outcome = handle.cancel(); // pending or running, depending on timing
    /// assert!(matches!(outcome, CancelOutcome::Cancelled | CancelOutcome::Requested));
    /// assert_eq!(handle.wait(Duration::from_secs(30)), Some(JobStatus::Cancelled));
    /// ```
    pub fn cancel(&self) -> CancelOutcome {
        match self.shared.upgrade() {
            Some(shared) => {
                let job: Arc<dyn Tracked> = self.cell.clone();
                shared.cancel(&job)
            }
            // The pool and all its threads are gone, so the job is terminal;
            // answer from the record alone.
            None => match self.cell.record().cancel() {
                CancelStep::Cancelled(notify) => {
                    notify.send(self.cell.record());
                    let _ = self.cell.discard();
                    CancelOutcome::Cancelled
                }
                CancelStep::Running => {
                    self.cell.record().cancel.cancel();
                    CancelOutcome::Requested
                }
                CancelStep::Finished => CancelOutcome::AlreadyFinished,
            },
        }
    }

    /// Blocks until the job is terminal or `timeout` passes; returns the
    /// terminal status, or `None` on timeout.
    ///
    /// On a worker of the job's own pool, a job still pending is run right
    /// there first (see [`join`](Self::join)), to completion: the timeout
    /// then applies only to a job already running elsewhere.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobStatus, Pool};
    /// use std::time::Duration;
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool.submit(|_| Ok(())).unwrap();
    /// assert_eq!(handle.wait(Duration::from_secs(10)), Some(JobStatus::Completed));
    /// ```
    pub fn wait(&self, timeout: Duration) -> Option<JobStatus> {
        let deadline = deadline_after(timeout);
        self.run_here_if_own_worker();
        self.cell.record().wait(deadline)
    }

    /// Called on one of the job's own pool's workers (a job joining a job it
    /// submitted), runs the job here if it is still pending, so that a pool
    /// whose every worker waits this way cannot deadlock (invariant 5).
    fn run_here_if_own_worker(&self) {
        if !worker::is_own_worker(self.pool) {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            let job: Arc<dyn Tracked> = self.cell.clone();
            worker::run_inline(&shared, &job);
        }
    }

    /// Blocks until the job is terminal and returns its value or why there
    /// is none.
    ///
    /// When `join` returns, the pool's [`status`](crate::Pool::status) for
    /// this id already shows the terminal state (unless the record was
    /// already dropped by retention).
    ///
    /// Called from a job of the same pool while this job is still pending,
    /// it runs this job right there, on the calling worker, instead of
    /// waiting for another worker to take it (so nested submit-and-join
    /// cannot deadlock the pool). [`wait`](Self::wait) and
    /// [`join_timeout`](Self::join_timeout) do the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobError, Pool};
    /// let pool = Pool::new(1).unwrap();
    /// let ok = pool.submit(|_| Ok("done")).unwrap();
    /// let failed = pool.submit(|_| -> harbor_pool::JobResult<()> { Err("bad input".into()) }).unwrap();
    /// assert_eq!(ok.join().unwrap(), "done");
    /// let err = failed.join().unwrap_err();
    /// assert!(matches!(&err, JobError::Failed(e) if e.to_string() == "bad input"));
    /// ```
    pub fn join(mut self) -> Result<T, JobError> {
        if let Awaiting::Taken = self.awaiting {
            // Invariant 7: a `Ready` poll already handed it out.
            return Err(JobError::ResultTaken);
        }
        self.run_here_if_own_worker();
        let status = self.cell.record().wait(None);
        // One lock for the result and the detachment `Drop` would
        // otherwise take again (invariant 3).
        let result = self.cell.take_result_and_detach();
        self.awaiting = Awaiting::Joined;
        Self::result_or_why(result, status)
    }

    /// The result of a terminal job whose terminal status is `status`.
    fn take_result(&self, status: Option<JobStatus>) -> Result<T, JobError> {
        Self::result_or_why(self.cell.take_result(), status)
    }

    /// `result`, taken from the slot of a job whose terminal status is
    /// `status`, or why there is none.
    fn result_or_why(
        result: Option<Result<T, JobError>>,
        status: Option<JobStatus>,
    ) -> Result<T, JobError> {
        match result {
            Some(result) => result,
            // Invariant 2: an empty slot means cancelled while pending.
            None => Err(match status {
                Some(JobStatus::Failed(message)) => JobError::WorkerDied(message),
                Some(JobStatus::Abandoned) => JobError::Abandoned,
                _ => JobError::Cancelled,
            }),
        }
    }

    /// Waits for the job with a deadline: `Ok` with its result once terminal,
    /// or `Err(self)` on timeout so the caller can keep waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Pool;
    /// use std::time::Duration;
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool.submit(|_| Ok(5)).unwrap();
    /// let value = handle.join_timeout(Duration::from_secs(10)).ok().unwrap().unwrap();
    /// assert_eq!(value, 5);
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JobError>, Self> {
        match self.wait(timeout) {
            Some(_) => Ok(self.join()),
            None => Err(self),
        }
    }
}

/// Awaits the job: its value or why there is none, as
/// [`join`](JobHandle::join) returns. See "Awaiting" on [`JobHandle`].
impl<T> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `JobHandle` is `Unpin`: no field is pinned.
        let this = self.get_mut();
        let mut key = match this.awaiting {
            // Invariant 7: polled after `Ready`. (`Joined` cannot be polled:
            // `join` consumed the handle.)
            Awaiting::Taken | Awaiting::Joined => {
                return Poll::Ready(Err(JobError::ResultTaken));
            }
            Awaiting::Registered(key) => Some(key),
            Awaiting::Idle => None,
        };
        // Invariant 5: a pending job awaited on its own pool runs here.
        this.run_here_if_own_worker();
        let polled = this.cell.record().poll_terminal(cx, &mut key);
        this.awaiting = key.map_or(Awaiting::Idle, Awaiting::Registered);
        match polled {
            Poll::Ready(status) => {
                this.awaiting = Awaiting::Taken;
                Poll::Ready(this.take_result(Some(status)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for JobHandle<T> {
    fn drop(&mut self) {
        match self.awaiting {
            // Invariant 6: no waker is left behind.
            Awaiting::Registered(key) => self.cell.record().unregister(key),
            // `join` detached it already (invariant 3).
            Awaiting::Joined => return,
            Awaiting::Idle | Awaiting::Taken => {}
        }
        // Invariant 3: nobody can take a result any more.
        self.cell.detach();
    }
}

/// The future of [`Pool::wait_async`](crate::Pool::wait_async): the job's
/// terminal status, or `None` for an id the pool did not know.
///
/// It holds the job itself, not the pool's registry, so retention that
/// forgets the record while it waits loses nothing, and it works after the
/// pool was dropped. Polling again after `Ready` gives the same answer.
pub(crate) struct WaitStatus {
    /// `None`: the id was unknown.
    job: Option<Arc<dyn Tracked>>,
    shared: Weak<Shared>,
    /// The pool's id, as in [`JobHandle`].
    pool: usize,
    /// Its waker registration (invariant 6).
    waker: Option<Key>,
}

impl WaitStatus {
    /// Awaits `job`, if known, of the pool `shared`.
    pub(crate) fn new(job: Option<Arc<dyn Tracked>>, shared: &Arc<Shared>) -> Self {
        // Only a known job may need the pool, to run it inline.
        let weak = match job {
            Some(_) => Arc::downgrade(shared),
            None => Weak::new(),
        };
        WaitStatus {
            job,
            shared: weak,
            pool: shared.id,
            waker: None,
        }
    }
}

impl Future for WaitStatus {
    type Output = Option<JobStatus>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(job) = &this.job else {
            return Poll::Ready(None);
        };
        // Invariant 5, as `Pool::wait` does.
        if worker::is_own_worker(this.pool)
            && let Some(shared) = this.shared.upgrade()
        {
            worker::run_inline(&shared, job);
        }
        job.record().poll_terminal(cx, &mut this.waker).map(Some)
    }
}

impl Drop for WaitStatus {
    fn drop(&mut self) {
        // Invariant 6.
        if let (Some(job), Some(key)) = (&self.job, self.waker.take()) {
            job.record().unregister(key);
        }
    }
}

impl fmt::Debug for WaitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitStatus")
            .field("id", &self.job.as_ref().map(|job| job.record().id))
            .finish()
    }
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.id())
            .field("status", &self.status())
            .finish()
    }
}

#[cfg(test)]
pub(crate) fn test_job() -> Arc<dyn Tracked> {
    new_cell(
        JobId::new(),
        JobOptions::default(),
        None,
        |_: &CancelToken| Ok(()),
    )
    .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_other_spellings() {
        let id = JobId::new();
        let simple = id.as_uuid().simple().to_string();
        assert!(simple.parse::<JobId>().is_err());
        assert_eq!(id.to_string().to_uppercase().parse::<JobId>().unwrap(), id);
        assert!("".parse::<JobId>().is_err());
        assert!(
            "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"
                .parse::<JobId>()
                .is_err()
        );
    }

    #[test]
    fn awaiting_keeps_a_handle_small() {
        // A cell, the pool's `Weak` and id (32 bytes before handles were
        // futures), and its state as a future in one word.
        assert_eq!(size_of::<JobHandle<u64>>(), 40);
    }

    #[test]
    fn detached_slot_drops_results_at_once() {
        let (cell, parts) = new_cell(
            JobId::new(),
            JobOptions::default(),
            None,
            |_: &CancelToken| Ok(vec![1_u8; 16]),
        );
        let handle = parts.into_handle(Weak::new(), 0);
        let typed = Arc::clone(&handle.cell);
        drop(handle);
        assert!(cell.record().start(0));
        let outcome = cell.run(&CancelToken::for_job(Arc::clone(&cell)));
        assert_eq!(outcome.status, JobStatus::Completed);
        assert!(
            typed.take_result().is_none(),
            "a detached job keeps no value"
        );
    }
}
