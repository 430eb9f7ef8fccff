//! Cooperative cancellation: [`CancelToken`], [`Cancelled`], the
//! [`WaitForCancel`] future and [`CancelRegistration`]s of callbacks.
//!
//! Where it lives: this file holds the public token, [`CancelToken`], and
//! its error, [`Cancelled`]; `cancel/state.rs` the machinery the invariants
//! below govern ([`TokenState`], its entries and how they fire);
//! `cancel/registration.rs` the two handles on an entry, [`WaitForCancel`]
//! and [`CancelRegistration`]; `cancel/loom_tests.rs` the loom models of
//! the races named below.
//!
//! A token's state ([`TokenState`]) is a flag, a mutex and a condvar. The
//! mutex guards the token's *entries*: the wakers of pending
//! [`WaitForCancel`] futures and the callbacks given to
//! [`CancelToken::on_cancel`], each under a key that is never reused, in
//! registration order. A token nobody awaits or registers a callback with
//! has an empty list, which allocates nothing.
//!
//! A job reports progress through its token too
//! ([`CancelToken::set_progress`]); that lives in the job's record as well
//! (`progress.rs`, `registry/record.rs`), not in the token's state.
//!
//! Invariants:
//!
//! 1. The flag only ever goes from "not cancelled" to "cancelled", and only
//!    the first [`TokenState::cancel`] call that sets it does anything else.
//! 2. A thread in [`CancelToken::sleep`] checks the flag while holding the
//!    token's mutex, and [`CancelToken::cancel`] sets the flag before taking
//!    that mutex to notify. So a sleeper either sees the flag or is already
//!    waiting when the notification comes: no wake-up is lost.
//! 3. An entry is added only under the mutex and only while the flag is
//!    unset (checked under the mutex, as in invariant 2); otherwise the
//!    registering thread runs the callback itself, or the future completes.
//!    The first canceller sets the flag and then, under the mutex, takes
//!    every entry at once. So every entry is either taken by the canceller
//!    or handled at once by its registrant, never both and never neither;
//!    and the list stays empty from then on.
//! 4. No user code runs under the mutex: not a callback, not a waker's
//!    `wake`, `clone` or `drop`, not the `drop` of a callback's captures.
//!    The canceller releases the lock, then runs what it took, each entry
//!    under `catch_unwind` ([`crate::unwind`]). So a callback may cancel,
//!    register, drop registrations or poll futures of its own token.
//! 5. Wake order: the canceller notifies the sleepers (under the mutex),
//!    then runs what it took in registration order, every entry of it,
//!    before `cancel` returns. Dropping a registration removes its entry under the mutex if
//!    the canceller has not taken it: that callback never runs. Otherwise
//!    it was taken, so the flag was set before the drop took the mutex, and
//!    the callback runs (or ran) on the cancelling thread; `drop` does not
//!    wait for it. So a drop that returns before a cancel begins, or after
//!    which the flag is still unset, means the callback never runs; and
//!    dropping a registration inside its own callback, or while holding a
//!    lock the callback takes, cannot deadlock.
//!
//! Lock order: the token's mutex is a leaf; nothing else is locked while it
//! is held. [`TokenState::cancel`] runs user code (invariant 4), so the pool
//! calls it with none of its own locks held (see "Lock order" in
//! `docs/design.md`).
//!
//! See "Cancelling a token" in `docs/design.md` for a diagram.
//!
//! A tracked job's token state lives in the job's record; its
//! [`CancelToken`] holds the job's cell. A clone the job keeps beyond its
//! end keeps that cell allocated (its record and the closure's storage; the
//! closure itself was consumed when it ran). A [`WaitForCancel`] or a
//! [`CancelRegistration`] holds such a clone, so the state its entry lives
//! in outlives it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::job::Tracked;
use crate::observer;

mod registration;
mod state;

pub use registration::{CancelRegistration, WaitForCancel};
pub(crate) use state::TokenState;
use state::{Entry, run_callback};

/// A flag that tells a job to stop, checked cooperatively by the job.
///
/// Every tracked job receives a `&CancelToken`. The pool cancels it when the
/// job is cancelled by id ([`Pool::cancel`](crate::Pool::cancel)), when its
/// deadline passes ([`JobOptions::timeout`](crate::JobOptions::timeout)), and
/// on [`Pool::shutdown_now`](crate::Pool::shutdown_now). A job notices by
/// calling [`check`](Self::check) (or [`is_cancelled`](Self::is_cancelled))
/// between steps, or by waiting with [`sleep`](Self::sleep), which returns
/// early when the token is cancelled. Async code awaits
/// [`cancelled`](Self::cancelled); a job blocked in I/O registers an
/// [`on_cancel`](Self::on_cancel) callback that unblocks it.
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

    /// Cancels the token: wakes every thread in [`sleep`](Self::sleep),
    /// completes every [`cancelled`](Self::cancelled) future and runs every
    /// [`on_cancel`](Self::on_cancel) callback.
    ///
    /// The first call does all of that, on the calling thread, before it
    /// returns: the callbacks run in registration order, each with no lock
    /// of the token held, and a callback that panics is contained (logged
    /// at warn level) without stopping the others. Cancelling again, from
    /// any thread, returns at once and changes nothing.
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

    /// A future that completes once the token is cancelled, for async code
    /// that holds a token: `select!` on it beside the work to stop.
    ///
    /// The future needs no runtime: it stores its task's waker in the token
    /// on its first pending poll, and [`cancel`](Self::cancel) wakes it. It
    /// replaces the stored waker only when the task's waker changed
    /// ([`Waker::will_wake`](std::task::Waker::will_wake)), and dropping
    /// it removes the waker. It is `Unpin`, `Send` and `Sync`, and holds a
    /// clone of the token. A token that is never cancelled never completes
    /// it: a tracked job that ends without being cancelled does not cancel
    /// its token.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::CancelToken;
    ///
    /// let token = CancelToken::new();
    /// let canceller = token.clone();
    /// let thread = std::thread::spawn(move || canceller.cancel());
    /// // Any executor drives it; here, a minimal one.
    /// pollster::block_on(token.cancelled());
    /// assert!(token.is_cancelled());
    /// thread.join().unwrap();
    /// ```
    pub fn cancelled(&self) -> WaitForCancel {
        WaitForCancel {
            token: self.clone(),
            key: None,
        }
    }

    /// Registers `callback` to run once when the token is cancelled; at
    /// once, on this thread, if it already is.
    ///
    /// Made for unblocking a job stuck in blocking I/O: a callback that shuts
    /// down the job's socket makes its `read` return, so the job ends
    /// promptly when cancelled by id, by its deadline or by
    /// [`Pool::shutdown_now`](crate::Pool::shutdown_now).
    ///
    /// * `callback` runs exactly once, on the thread that cancels the token
    ///   (for a deadline, the pool's supervisor thread; so keep it short and
    ///   non-blocking: close a socket, set a flag, send on a channel), with
    ///   no lock of the token held, after the callbacks registered before
    ///   it. If it panics, the panic is contained and logged; the other
    ///   callbacks still run and the canceller does not panic.
    /// * Dropping the returned [`CancelRegistration`] unregisters it: a
    ///   cancel that begins after the drop returned does not run `callback`
    ///   (the drop does not wait for a callback a cancel already started;
    ///   see [`CancelRegistration`]). Bind the registration to a name that
    ///   lives as long as the callback should (`let _unblock = ...`;
    ///   `let _ = ...` drops it at once).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::CancelToken;
    /// use std::sync::mpsc;
    ///
    /// let token = CancelToken::new();
    /// let (tx, rx) = mpsc::channel();
    /// let registration = token.on_cancel(move || tx.send("cancelled").unwrap());
    /// assert!(rx.try_recv().is_err());
    /// token.cancel(); // runs the callback on this thread
    /// assert_eq!(rx.try_recv(), Ok("cancelled"));
    /// drop(registration);
    ///
    /// // Already cancelled: the callback runs before `on_cancel` returns.
    /// let (tx, rx) = mpsc::channel();
    /// let _registration = token.on_cancel(move || tx.send(()).unwrap());
    /// assert_eq!(rx.try_recv(), Ok(()));
    /// ```
    ///
    /// Unblocking a read (the job's deadline shuts the socket down):
    ///
    /// ```
    /// use harbor_pool::{JobOptions, JobStatus, Pool};
    /// use std::io::Read;
    /// use std::net::{Shutdown, TcpListener, TcpStream};
    /// use std::time::Duration;
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let mut stream = TcpStream::connect(listener.local_addr()?)?;
    /// let (_silent_peer, _) = listener.accept()?;
    ///
    /// let pool = Pool::new(1)?;
    /// let options = JobOptions::new().timeout(Duration::from_millis(50));
    /// let job = pool.submit_with(options, move |token| {
    ///     let socket = stream.try_clone()?;
    ///     let _unblock = token.on_cancel(move || {
    ///         let _ = socket.shutdown(Shutdown::Both);
    ///     });
    ///     let mut buf = [0_u8; 64];
    ///     let read = stream.read(&mut buf)?; // returns 0 once shut down
    ///     token.check()?;
    ///     Ok(read)
    /// })?;
    /// assert_eq!(job.wait(Duration::from_secs(30)), Some(JobStatus::Cancelled));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_cancel<F>(&self, callback: F) -> CancelRegistration
    where
        F: FnOnce() + Send + 'static,
    {
        let state = self.state();
        // Cancelled already: run it here, with no lock held (invariants 3
        // and 4). This first check only saves a lock and an allocation.
        if state.is_cancelled() {
            run_callback(callback);
            return CancelRegistration { entry: None };
        }
        match state.register(Entry::Callback(Box::new(callback))) {
            Ok(key) => CancelRegistration {
                entry: Some((self.clone(), key)),
            },
            Err(entry) => {
                entry.fire();
                CancelRegistration { entry: None }
            }
        }
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
            observer::note(job);
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
            observer::note(job);
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
mod loom_tests;
