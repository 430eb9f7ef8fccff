//! Cooperative cancellation: [`CancelToken`] and [`Cancelled`].
//!
//! Invariants:
//!
//! 1. The flag only ever goes from "not cancelled" to "cancelled".
//! 2. A thread in [`CancelToken::sleep`] checks the flag while holding the
//!    token's mutex, and [`CancelToken::cancel`] sets the flag before taking
//!    that mutex to notify. So a sleeper either sees the flag or is already
//!    waiting when the notification comes: no wake-up is lost.
//!
//! The token's mutex guards no data and is never held while user code runs.
//!
//! A job reports progress through its token too
//! ([`CancelToken::set_progress`]); that lives in the job's record as well
//! (`progress.rs`, `registry.rs`), not in the token's state.
//!
//! A tracked job's token state lives in the job's record; its
//! [`CancelToken`] holds the job's cell. A clone the job keeps beyond its
//! end keeps that cell allocated (its record and the closure's storage; the
//! closure itself was consumed when it ran).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::job::Tracked;
// The loom facade: `TokenState` is modelled (`loom_tests` below).
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Condvar, Mutex, deadline_after, lock, wait_until};

/// A flag that tells a job to stop, checked cooperatively by the job.
///
/// Every tracked job receives a `&CancelToken`. The pool cancels it when the
/// job is cancelled by id ([`Pool::cancel`](crate::Pool::cancel)), when its
/// deadline passes ([`JobOptions::timeout`](crate::JobOptions::timeout)), and
/// on [`Pool::shutdown_now`](crate::Pool::shutdown_now). A job notices by
/// calling [`check`](Self::check) (or [`is_cancelled`](Self::is_cancelled))
/// between steps, or by waiting with [`sleep`](Self::sleep), which returns
/// early when the token is cancelled.
///
/// Clones share one flag. Tokens also work outside any pool.
///
/// A tracked job's token shares its allocation with the job's record, so a
/// clone kept after the job ended keeps that record's memory alive (a few
/// hundred bytes plus the closure's size) until the clone is dropped.
///
/// # Examples
///
/// ```
/// use harbor_pool::{CancelToken, Cancelled};
/// use std::time::Duration;
///
/// let token = CancelToken::new();
/// assert!(token.check().is_ok());
///
/// let other = token.clone();
/// other.cancel();
/// assert!(token.is_cancelled());
/// assert_eq!(token.check(), Err(Cancelled));
/// // A cancelled token's sleep returns at once.
/// assert_eq!(token.sleep(Duration::from_secs(60)), Err(Cancelled));
/// ```
#[derive(Clone)]
pub struct CancelToken {
    source: Source,
}

/// Where a token's state lives. A pool's job gets a token that points into
/// the job's own record, so a tracked job costs no separate allocation (and
/// no separate cache miss) for its token.
#[derive(Clone)]
enum Source {
    /// A token made with [`CancelToken::new`].
    Own(Arc<TokenState>),
    /// The token of a tracked job; its state is `job.record().cancel`.
    Job(Arc<dyn Tracked>),
}

/// The shared state behind every clone of one token.
#[derive(Default)]
pub(crate) struct TokenState {
    cancelled: AtomicBool,
    /// Guards nothing; pairs with `wake` so sleepers do not miss a cancel
    /// (invariant 2).
    lock: Mutex<()>,
    wake: Condvar,
}

impl TokenState {
    /// Sets the flag and wakes every sleeper (see [`CancelToken::cancel`]).
    pub(crate) fn cancel(&self) {
        // SeqCst pairs with the load in `sleep`, which happens under `lock`
        // (invariant 2); the mutex below orders the notification after it.
        if !self.cancelled.swap(true, Ordering::SeqCst) {
            let _guard = lock(&self.lock);
            self.wake.notify_all();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        // Acquire: whatever the canceller did before cancelling is visible to
        // a job that sees the flag.
        self.cancelled.load(Ordering::Acquire)
    }

    fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        let deadline = deadline_after(duration);
        let mut guard = lock(&self.lock);
        // Bounded by `deadline` (or by a cancel when there is none); each
        // pass re-checks the flag because wake-ups can be spurious.
        loop {
            // Checked under `lock`: keeps invariant 2.
            if self.is_cancelled() {
                return Err(Cancelled);
            }
            let (next, timed_out) = wait_until(&self.wake, guard, deadline);
            guard = next;
            if timed_out {
                return if self.is_cancelled() {
                    Err(Cancelled)
                } else {
                    Ok(())
                };
            }
        }
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken {
            source: Source::Own(Arc::default()),
        }
    }
}

impl CancelToken {
    /// Creates a token that is not cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = harbor_pool::CancelToken::new();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the token, waking every thread in [`sleep`](Self::sleep).
    ///
    /// Cancelling twice is harmless.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = harbor_pool::CancelToken::new();
    /// token.cancel();
    /// token.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        self.state().cancel();
    }

    /// Returns `true` once the token has been cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = harbor_pool::CancelToken::new();
    /// assert!(!token.is_cancelled());
    /// token.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.state().is_cancelled()
    }

    /// Returns `Err(Cancelled)` once the token has been cancelled.
    ///
    /// Made for `?` inside a job: [`Cancelled`] converts into the job's
    /// error type.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{CancelToken, JobResult};
    ///
    /// fn step(token: &CancelToken) -> JobResult<u32> {
    ///     token.check()?;
    ///     Ok(1)
    /// }
    /// let token = CancelToken::new();
    /// assert_eq!(step(&token).unwrap(), 1);
    /// token.cancel();
    /// assert!(step(&token).is_err());
    /// ```
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps for `duration`, returning early with `Err(Cancelled)` as soon
    /// as the token is cancelled.
    ///
    /// Returns `Ok(())` if the whole duration passed without a cancel. A
    /// duration too large to add to the current time sleeps until cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{CancelToken, Cancelled};
    /// use std::time::{Duration, Instant};
    ///
    /// let token = CancelToken::new();
    /// assert_eq!(token.sleep(Duration::from_millis(1)), Ok(()));
    ///
    /// let canceller = token.clone();
    /// let started = Instant::now();
    /// std::thread::spawn(move || canceller.cancel());
    /// assert_eq!(token.sleep(Duration::from_secs(60)), Err(Cancelled));
    /// assert!(started.elapsed() < Duration::from_secs(30));
    /// ```
    pub fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        self.state().sleep(duration)
    }

    /// Reports the job's progress: `done` units of work out of `total`
    /// (if the job knows it). The latest report shows in
    /// [`Pool::info`](crate::Pool::info) and
    /// [`JobHandle::progress`](crate::JobHandle::progress), and stays there
    /// once the job ends.
    ///
    /// Cheap enough for a hot loop: no lock, no allocation, no system call,
    /// one atomic read-modify-write and three stores into the job's record. A reader
    /// never sees `done` from one call with `total` from another. Clones of
    /// the token on several threads may report at once: each report is
    /// applied whole, one at a time, and the last applied stays (a report
    /// arriving while another is half-written waits for its few stores).
    ///
    /// The numbers are set apart from the message
    /// ([`set_progress_message`](Self::set_progress_message)) so that the
    /// hot path never takes a `String`: a message would cost an allocation
    /// and a lock on every call.
    ///
    /// A token made with [`CancelToken::new`] belongs to no job: progress
    /// reported on it is ignored, since nothing can read it.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobStatus, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool
    ///     .submit(|token| {
    ///         let items = 1_000;
    ///         for done in 1..=items {
    ///             token.check()?;
    ///             token.set_progress(done, Some(items));
    ///         }
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// let id = handle.id();
    /// assert_eq!(pool.wait(id, Duration::from_secs(10)), Some(JobStatus::Completed));
    /// let progress = pool.info(id).unwrap().progress.unwrap();
    /// assert_eq!((progress.done, progress.total), (1_000, Some(1_000)));
    ///
    /// // Outside a pool, nothing to report to.
    /// harbor_pool::CancelToken::new().set_progress(1, None);
    /// ```
    pub fn set_progress(&self, done: u64, total: Option<u64>) {
        if let Source::Job(job) = &self.source {
            job.record().progress.set(done, total);
        }
    }

    /// Sets the job's progress message (an empty one clears it), shown with
    /// its progress numbers in [`Pool::info`](crate::Pool::info) and
    /// [`JobHandle::progress`](crate::JobHandle::progress).
    ///
    /// Meant for occasional use (a phase, a file name): it takes the job's
    /// record lock briefly. A message longer than
    /// [`Progress::MAX_MESSAGE_BYTES`](crate::Progress::MAX_MESSAGE_BYTES)
    /// is cut at a character boundary at or below it, so a record never
    /// holds more. A report is not worth failing a job for, so this never
    /// errs. As for [`set_progress`](Self::set_progress), it is ignored on a
    /// token made with [`CancelToken::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Pool;
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool
    ///     .submit(|token| {
    ///         token.set_progress_message("downloading");
    ///         token.set_progress_message(format!("parsing {}", "a.csv"));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// handle.wait(std::time::Duration::from_secs(10));
    /// let progress = handle.progress().unwrap();
    /// assert_eq!(progress.message.as_deref(), Some("parsing a.csv"));
    /// assert_eq!((progress.done, progress.total), (0, None)); // no numbers set
    /// ```
    pub fn set_progress_message(&self, message: impl Into<String>) {
        if let Source::Job(job) = &self.source {
            job.record().set_progress_message(message.into());
        }
    }

    /// The token handed to the tracked job `job`.
    pub(crate) fn for_job(job: Arc<dyn Tracked>) -> Self {
        CancelToken {
            source: Source::Job(job),
        }
    }

    fn state(&self) -> &TokenState {
        match &self.source {
            Source::Own(state) => state,
            Source::Job(job) => &job.record().cancel,
        }
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The error a cancelled [`CancelToken`] reports.
///
/// It implements [`std::error::Error`], so `token.check()?` works in a job
/// returning [`JobResult`](crate::JobResult). A job that returns an error
/// after its token was cancelled ends
/// [`JobStatus::Cancelled`](crate::JobStatus::Cancelled).
///
/// # Examples
///
/// ```
/// use harbor_pool::Cancelled;
/// assert_eq!(Cancelled.to_string(), "cancelled");
/// let boxed: harbor_pool::BoxError = Cancelled.into();
/// assert!(boxed.is::<Cancelled>());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn sleep_wakes_early_for_every_sleeper() {
        let token = CancelToken::new();
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let token = token.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let r = token.sleep(Duration::from_secs(600));
                tx.send((r, started.elapsed())).unwrap();
            });
        }
        token.cancel();
        for _ in 0..3 {
            let (r, took) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(r, Err(Cancelled));
            assert!(took < Duration::from_secs(10));
        }
    }

    #[test]
    fn huge_duration_does_not_overflow() {
        let token = CancelToken::new();
        token.cancel();
        assert_eq!(token.sleep(Duration::MAX), Err(Cancelled));
    }
}

/// loom models of a token, one per named race (see "Verification" in
/// `docs/design.md`). Sleeps use `Duration::MAX`, the path without a
/// deadline (loom has no clock); a lost wake-up shows as loom's deadlock
/// report.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;
    use loom::thread;
    use std::time::Duration;

    use super::{Cancelled, TokenState};
    use crate::sync::model;

    /// Cancel vs sleep: the sleeper sees the flag or is woken by the cancel
    /// (invariant 2).
    #[test]
    fn loom_cancel_vs_sleep() {
        model(|| {
            let state = Arc::new(TokenState::default());
            let sleeper = {
                let state = Arc::clone(&state);
                thread::spawn(move || state.sleep(Duration::MAX))
            };
            state.cancel();
            assert_eq!(sleeper.join().unwrap(), Err(Cancelled));
        });
    }

    /// Cancel twice, from two threads, with a sleeper: only the first
    /// cancel notifies, and that is enough; the flag stays set.
    #[test]
    fn loom_cancel_twice() {
        model(|| {
            let state = Arc::new(TokenState::default());
            let sleeper = {
                let state = Arc::clone(&state);
                thread::spawn(move || state.sleep(Duration::MAX))
            };
            let other = {
                let state = Arc::clone(&state);
                thread::spawn(move || state.cancel())
            };
            state.cancel();
            other.join().unwrap();
            assert!(state.is_cancelled());
            assert_eq!(sleeper.join().unwrap(), Err(Cancelled));
        });
    }
}
