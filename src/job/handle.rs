//! [`JobHandle`], the owned handle of a tracked job: waited on (`join`,
//! `wait`, `join_timeout`) or awaited as a [`Future`]; and [`WaitStatus`],
//! the future of [`Pool::wait_async`](crate::Pool::wait_async).
//!
//! The invariants are numbered in the parent module's docs (`job.rs`):
//! 5 to 7 are the handle's, which relies on the cell's 2 and 3.

use std::fmt;
use std::future::Future;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use super::cell::{Slot, Tracked};
use super::{CancelOutcome, JobId, JobStatus};
use crate::error::JobError;
use crate::progress::Progress;
use crate::registry::CancelStep;
use crate::shared::Shared;
use crate::sync::deadline_after;
use crate::wake::Key;
use crate::worker;

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
    pub(super) cell: Arc<dyn Slot<T>>,
    pub(super) shared: Weak<Shared>,
    /// The pool's id (`Shared::id`), to tell its workers without upgrading
    /// `shared`.
    pub(super) pool: usize,
    /// Where the handle is as a future (invariants 6 and 7).
    pub(super) awaiting: Awaiting,
}

/// A [`JobHandle`]'s state as a future.
#[derive(Clone, Copy)]
pub(super) enum Awaiting {
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
        match (result, status) {
            // The first terminal state wins (registry invariant 1): a value
            // the job stored just as the supervisor abandoned it, before
            // the slot refused it, is not handed out. Dropped here, with no
            // lock held, contained like every refused result.
            (result, Some(JobStatus::Abandoned)) => {
                crate::unwind::drop_quietly(result);
                Err(JobError::Abandoned)
            }
            (Some(result), _) => result,
            // Invariant 2: an empty slot means cancelled while pending.
            (None, Some(JobStatus::Failed(message))) => Err(JobError::WorkerDied(message)),
            (None, _) => Err(JobError::Cancelled),
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

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.id())
            .field("status", &self.status())
            .finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awaiting_keeps_a_handle_small() {
        // A cell, the pool's `Weak` and id (32 bytes before handles were
        // futures), and its state as a future in one word.
        assert_eq!(size_of::<JobHandle<u64>>(), 40);
    }
}
