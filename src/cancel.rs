//! Cooperative cancellation: [`CancelToken`], [`Cancelled`], the
//! [`WaitForCancel`] future and [`CancelRegistration`]s of callbacks.
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
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::job::Tracked;
use crate::observer;
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

/// The shared state behind every clone of one token.
#[derive(Default)]
pub(crate) struct TokenState {
    cancelled: AtomicBool,
    /// The wakers and callbacks to run on cancel (invariants 3 to 5); also
    /// pairs with `wake` so sleepers do not miss a cancel (invariant 2).
    lock: Mutex<Entries>,
    wake: Condvar,
}

/// What a token runs when it is cancelled, under keys never reused.
#[derive(Default)]
struct Entries {
    next_key: u64,
    /// In registration order (invariant 5). Empty, it has allocated
    /// nothing: a token without entries costs no allocation.
    list: Vec<(u64, Entry)>,
}

/// One thing to run on cancel.
enum Entry {
    /// The waker of a pending [`WaitForCancel`].
    Waker(Waker),
    /// A callback given to [`CancelToken::on_cancel`].
    Callback(Box<dyn FnOnce() + Send>),
}

impl Entries {
    /// Adds `entry` last; returns its key.
    fn push(&mut self, entry: Entry) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.list.push((key, entry));
        key
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut Entry> {
        self.list
            .iter_mut()
            .find(|(k, _)| *k == key)
            .map(|(_, entry)| entry)
    }

    fn remove(&mut self, key: u64) -> Option<Entry> {
        let at = self.list.iter().position(|(k, _)| *k == key)?;
        Some(self.list.remove(at).1)
    }
}

impl Entry {
    /// Runs the callback or wakes the waker, containing a panic. Called with
    /// no lock held (invariant 4).
    fn fire(self) {
        match self {
            Entry::Waker(waker) => {
                if let Err(message) = crate::unwind::catch(move || waker.wake()) {
                    log_quietly!(log::warn!(
                        "a waker panicked when woken by a cancel: {message}"
                    ));
                }
            }
            Entry::Callback(callback) => run_callback(callback),
        }
    }
}

/// Runs an [`CancelToken::on_cancel`] callback, containing a panic. Called
/// with no lock held (invariant 4).
fn run_callback(callback: impl FnOnce()) {
    if let Err(message) = crate::unwind::catch(callback) {
        log_quietly!(log::warn!("a cancel callback panicked: {message}"));
    }
}

impl TokenState {
    /// Sets the flag, wakes every sleeper and every pending
    /// [`WaitForCancel`], and runs every registered callback (see
    /// [`CancelToken::cancel`]). Must be called with no lock held: it runs
    /// user code (invariant 4). Returns `true` if this call cancelled it
    /// (it was not cancelled before).
    pub(crate) fn cancel(&self) -> bool {
        // SeqCst pairs with the loads in `sleep` and `register`, which happen
        // under `lock` (invariants 2 and 3); the mutex below orders the
        // notification and the taking of entries after it.
        if self.cancelled.swap(true, Ordering::SeqCst) {
            return false; // invariant 1: the first canceller did all the rest
        }
        let taken = {
            let mut entries = lock(&self.lock);
            self.wake.notify_all();
            // Every entry, at once; none is added from now on (invariant 3).
            mem::take(&mut entries.list)
        };
        // Invariant 4: the entries run with the lock released, in
        // registration order (invariant 5).
        for (_, entry) in taken {
            entry.fire();
        }
        true
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

    /// Adds `entry` unless the token is cancelled; gives it back then, for
    /// the caller to handle once the lock is released (invariant 3).
    fn register(&self, entry: Entry) -> Result<u64, Entry> {
        let mut entries = lock(&self.lock);
        // Checked under `lock`: keeps invariant 3.
        if self.is_cancelled() {
            return Err(entry);
        }
        Ok(entries.push(entry))
    }

    /// Removes the entry `key` if the canceller has not taken it. The
    /// caller drops what is returned, with the lock released (invariant 4).
    fn deregister(&self, key: u64) -> Option<Entry> {
        lock(&self.lock).remove(key)
    }

    /// [`WaitForCancel`]'s poll: `key` is its entry, if it made one.
    fn poll_cancelled(&self, key: &mut Option<u64>, waker: &Waker) -> Poll<()> {
        if self.is_cancelled() {
            return Poll::Ready(());
        }
        if let Some(key) = *key {
            let mut entries = lock(&self.lock);
            if self.is_cancelled() {
                return Poll::Ready(());
            }
            // `will_wake` compares pointers; it runs no user code.
            if let Some(Entry::Waker(stored)) = entries.get_mut(key)
                && stored.will_wake(waker)
            {
                return Poll::Pending;
            }
        }
        // A waker's `clone` and `drop` are user code: neither under the
        // lock (invariant 4).
        let fresh = waker.clone();
        let mut entries = lock(&self.lock);
        // Checked under `lock`: keeps invariant 3.
        if self.is_cancelled() {
            drop(entries);
            drop(fresh);
            return Poll::Ready(());
        }
        let replaced = match key.and_then(|key| entries.get_mut(key)) {
            Some(stored) => Some(mem::replace(stored, Entry::Waker(fresh))),
            None => {
                *key = Some(entries.push(Entry::Waker(fresh)));
                None
            }
        };
        drop(entries);
        drop(replaced);
        Poll::Pending
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
    /// ([`Waker::will_wake`]), and dropping it removes the waker. It is
    /// `Unpin`, `Send` and `Sync`, and holds a clone of the token. A token
    /// that is never cancelled never completes it: a tracked job that ends
    /// without being cancelled does not cancel its token.
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

/// The future returned by [`CancelToken::cancelled`]: completes once the
/// token is cancelled.
///
/// Dropping it before then removes its waker from the token.
///
/// # Examples
///
/// ```
/// use harbor_pool::CancelToken;
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
///
/// let token = CancelToken::new();
/// let mut future = pin!(token.cancelled());
/// let mut cx = Context::from_waker(Waker::noop());
/// assert_eq!(future.as_mut().poll(&mut cx), Poll::Pending);
/// token.cancel();
/// assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(()));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct WaitForCancel {
    token: CancelToken,
    /// Its entry in the token, once a poll stored a waker.
    key: Option<u64>,
}

impl Future for WaitForCancel {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.token.state().poll_cancelled(&mut this.key, cx.waker())
    }
}

impl Drop for WaitForCancel {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // The waker is dropped here, with the lock released (invariant 4).
            drop(self.token.state().deregister(key));
        }
    }
}

impl fmt::Debug for WaitForCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancel")
            .field("cancelled", &self.token.is_cancelled())
            .finish()
    }
}

/// A callback registered with [`CancelToken::on_cancel`]; dropping it
/// unregisters the callback.
///
/// Dropping it removes the callback unless a cancel has already taken it
/// to run:
///
/// * a cancel that begins after the drop returned never runs the callback;
///   nor does any cancel if [`is_cancelled`](CancelToken::is_cancelled) is
///   still `false` after the drop;
/// * if a cancel had already begun, it took the callback with every other
///   one registered by then, and runs it (or ran it) on the cancelling
///   thread; `drop` **does not wait** for it to finish. So
///   dropping a registration inside its own callback, or while holding a
///   lock that the callback takes, cannot deadlock, and a callback running
///   on the pool's supervisor (a deadline) never holds up a job's drop.
///
/// A registration whose callback already ran (or ran at once because the
/// token was cancelled) does nothing when dropped.
///
/// # Examples
///
/// ```
/// use harbor_pool::CancelToken;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// let token = CancelToken::new();
/// let runs = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&runs);
/// let registration = token.on_cancel(move || {
///     counter.fetch_add(1, Ordering::SeqCst);
/// });
/// drop(registration); // unregistered: the cancel below does not run it
/// token.cancel();
/// assert_eq!(runs.load(Ordering::SeqCst), 0);
/// ```
#[must_use = "dropping the registration unregisters the callback at once"]
pub struct CancelRegistration {
    /// The token and the callback's key, while it may still be registered.
    entry: Option<(CancelToken, u64)>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        if let Some((token, key)) = self.entry.take() {
            // Never waits (invariant 5). The callback's captures are dropped
            // here, with the lock released (invariant 4).
            drop(token.state().deregister(key));
        }
    }
}

impl fmt::Debug for CancelRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelRegistration")
            .field("token", &self.entry.as_ref().map(|(token, _)| token))
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

    use super::{CancelToken, Cancelled, TokenState};
    use crate::sync::{lock, model};
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

    /// Register vs cancel: the callback runs exactly once, taken by the
    /// canceller or run at once by the registering thread, never both and
    /// never neither (invariant 3); the token keeps no entry.
    #[test]
    fn loom_register_vs_cancel() {
        model(|| {
            let token = CancelToken::new();
            let runs = Arc::new(AtomicUsize::new(0));
            let registrar = {
                let token = token.clone();
                let runs = Arc::clone(&runs);
                thread::spawn(move || {
                    token.on_cancel(move || {
                        runs.fetch_add(1, Ordering::SeqCst);
                    })
                })
            };
            token.cancel();
            let registration = registrar.join().unwrap();
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            drop(registration);
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            assert!(lock(&token.state().lock).list.is_empty());
        });
    }

    /// Dropping a registration vs cancel: the callback runs at most once,
    /// and not at all if the drop returned before the cancel began or the
    /// flag was unset after the drop (invariant 5).
    #[test]
    fn loom_drop_vs_cancel() {
        model(|| {
            let token = CancelToken::new();
            let runs = Arc::new(AtomicUsize::new(0));
            let dropped = Arc::new(AtomicBool::new(false));
            let registration = {
                let runs = Arc::clone(&runs);
                token.on_cancel(move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                })
            };
            let dropper = {
                let dropped = Arc::clone(&dropped);
                let token = token.clone();
                thread::spawn(move || {
                    drop(registration);
                    dropped.store(true, Ordering::SeqCst);
                    token.is_cancelled()
                })
            };
            let dropped_before_cancel = dropped.load(Ordering::SeqCst);
            token.cancel();
            let cancelled_after_drop = dropper.join().unwrap();
            let runs = runs.load(Ordering::SeqCst);
            assert!(runs <= 1);
            if dropped_before_cancel || !cancelled_after_drop {
                assert_eq!(runs, 0);
            }
            assert!(lock(&token.state().lock).list.is_empty());
        });
    }

    /// A pending `cancelled()` future vs cancel: the future sees the flag
    /// or its waker is taken and woken (invariant 3). A lost wake-up shows
    /// as loom's deadlock report.
    #[test]
    fn loom_future_vs_cancel() {
        model(|| {
            let token = CancelToken::new();
            let waiter = {
                let token = token.clone();
                thread::spawn(move || loom::future::block_on(token.cancelled()))
            };
            token.cancel();
            waiter.join().unwrap();
            assert!(lock(&token.state().lock).list.is_empty());
        });
    }
}
