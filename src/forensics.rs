//! Panic forensics: the process-wide panic hook, the capture slot a worker
//! arms around each job, and the public types that carry what was captured
//! ([`CapturePanics`], [`PanicLocation`], [`JobPanic`], [`PanicReport`]).
//!
//! See "Panic forensics" in `docs/design.md` for how the hook chains.
//!
//! Invariants:
//!
//! 1. The hook is installed at most once per process, and only when a pool
//!    asks for it ([`Builder::capture_panics`] other than `Off`, or
//!    [`Builder::quiet_panics`]). It takes the hook installed before it
//!    once, and calls it for every panic it does not silence.
//! 2. The hook acts only on a thread whose capture slot is armed: a worker,
//!    while it runs a job of a pool whose settings ask for it. Every other
//!    panic (another thread; a worker's start or stop hook; the pool's
//!    callbacks; any pool with `Off` and not quiet) goes to the previous
//!    hook unchanged, and nothing is recorded for it.
//! 3. The slot holds the settings of the pool whose job runs on this
//!    thread, so two pools with different settings each get their own
//!    behaviour, whichever installed the hook.
//! 4. Arming nests: a job run inline inside another job (worker invariant 7)
//!    arms its own slot and restores the outer job's when it ends, also when
//!    it unwinds.
//! 5. The hook never panics, takes no lock of the pool and runs no user code
//!    but the previous hook; the slot is borrowed only briefly, never while
//!    user code runs, and the hook skips a slot it cannot borrow.
//!
//! [`Builder::capture_panics`]: crate::Builder::capture_panics
//! [`Builder::quiet_panics`]: crate::Builder::quiet_panics

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::fmt;
use std::panic::{self, PanicHookInfo};
use std::sync::{Arc, Mutex};

use crate::job::JobId;
use crate::sync::lock;
use crate::unwind;

/// What a pool records about a job's panic beyond its message, set with
/// [`Builder::capture_panics`](crate::Builder::capture_panics).
///
/// Anything but `Off` needs a panic hook: the first pool built with such a
/// setting installs one, once per process, that chains to the hook installed
/// before it (see [`Builder::capture_panics`](crate::Builder::capture_panics)).
///
/// # Examples
///
/// ```
/// use harbor_pool::{CapturePanics, Pool};
///
/// let pool = Pool::builder()
///     .workers(1)
///     .capture_panics(CapturePanics::Location)
///     .build()
///     .unwrap();
/// let line = line!() + 1;
/// let job = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("boom") }).unwrap();
/// job.wait(std::time::Duration::from_secs(30));
/// let panic = pool.info(job.id()).unwrap().panic.unwrap();
/// assert_eq!(panic.location.as_ref().unwrap().line, line);
/// assert!(panic.backtrace.is_none());
/// assert_eq!(CapturePanics::default(), CapturePanics::Off);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CapturePanics {
    /// Nothing beyond the message and the worker (the default). The pool
    /// does not touch the process's panic hook for this setting.
    #[default]
    Off,
    /// The file, line and column where the job panicked.
    Location,
    /// The location, and a backtrace of the panicking thread.
    ///
    /// The backtrace is captured with [`Backtrace::force_capture`] inside
    /// the hook, whatever `RUST_BACKTRACE` says: walking the stack costs
    /// tens of microseconds per panic. Symbols are resolved only when the
    /// backtrace is first formatted, which can take milliseconds (more the
    /// first time, while debug information is loaded); the worker never
    /// formats it. Without debug information, frames have no file names.
    LocationAndBacktrace,
}

/// Where a panic was raised: a copy of [`std::panic::Location`].
///
/// # Examples
///
/// ```
/// use harbor_pool::{CapturePanics, Pool};
///
/// let pool = Pool::builder().workers(1).capture_panics(CapturePanics::Location).build().unwrap();
/// let job = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("boom") }).unwrap();
/// job.wait(std::time::Duration::from_secs(30));
/// let location = pool.info(job.id()).unwrap().panic.unwrap().location.clone().unwrap();
/// assert!(location.file.ends_with(".rs"));
/// assert_eq!(
///     location.to_string(),
///     format!("{}:{}:{}", location.file, location.line, location.column)
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PanicLocation {
    /// The source file, as the compiler named it.
    pub file: String,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl fmt::Display for PanicLocation {
    /// `file:line:column`, as the standard library prints a location.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// What the pool knows about a job's panic: kept in [`JobInfo::panic`] for a
/// tracked job, and passed to [`Builder::on_panic`] for every job.
///
/// The message and the thread are always there; the location and the
/// backtrace only as [`Builder::capture_panics`] asks. Two `JobPanic`s are
/// equal when their fields are, backtraces compared by identity (the same
/// capture), since a [`Backtrace`] has no equality of its own.
///
/// [`JobInfo::panic`]: crate::JobInfo::panic
/// [`Builder::on_panic`]: crate::Builder::on_panic
/// [`Builder::capture_panics`]: crate::Builder::capture_panics
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobStatus, Pool};
///
/// let pool = Pool::builder().workers(1).thread_name("forensic").build().unwrap();
/// let job = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("boom") }).unwrap();
/// job.wait(std::time::Duration::from_secs(30));
/// let info = pool.info(job.id()).unwrap();
/// assert_eq!(info.status, JobStatus::Failed("boom".into()));
/// let panic = info.panic.unwrap();
/// assert_eq!((panic.message.as_str(), panic.thread.as_str()), ("boom", "forensic-0"));
/// assert!(panic.location.is_none(), "not captured by default");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobPanic {
    /// The panic message: the payload's text if it is a `&str` or a
    /// `String`, a fixed descriptive text otherwise (as in
    /// [`JobStatus::Failed`](crate::JobStatus::Failed)).
    pub message: String,
    /// The name of the worker thread it panicked on.
    pub thread: String,
    /// Where it panicked, with [`CapturePanics::Location`] or
    /// [`CapturePanics::LocationAndBacktrace`]. `None` otherwise, and for a
    /// payload re-raised with [`std::panic::resume_unwind`], which does not
    /// run the panic hook.
    pub location: Option<PanicLocation>,
    /// The panicking thread's backtrace, with
    /// [`CapturePanics::LocationAndBacktrace`] (same exceptions as
    /// `location`). Shared, so cloning a `JobInfo` does not copy it.
    pub backtrace: Option<Arc<Backtrace>>,
}

impl PartialEq for JobPanic {
    fn eq(&self, other: &Self) -> bool {
        let same_backtrace = match (&self.backtrace, &other.backtrace) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.message == other.message
            && self.thread == other.thread
            && self.location == other.location
            && same_backtrace
    }
}

impl Eq for JobPanic {}

impl JobPanic {
    /// What a worker knows of a panic with `message` on thread `thread`,
    /// given what the hook captured while the job ran.
    ///
    /// The capture is the last panic the hook saw during the job. If its
    /// message is not the one that ended the job, the panic that did was
    /// re-raised without the hook (`resume_unwind`) after an earlier one the
    /// job caught itself: the capture is someone else's, and is dropped.
    pub(crate) fn new(message: String, thread: &str, caught: Option<Caught>) -> Self {
        let caught = caught.filter(|caught| caught.message == message);
        let (location, backtrace) = caught.map_or((None, None), |caught| {
            (caught.location, caught.backtrace.map(Arc::new))
        });
        JobPanic {
            message,
            thread: thread.to_owned(),
            location,
            backtrace,
        }
    }

    /// ` at file:line:column`, or nothing: appended to the pool's log line.
    pub(crate) fn at(&self) -> At<'_> {
        At(self.location.as_ref())
    }
}

/// Formats as ` at file:line:column` when there is a location, else as
/// nothing ([`JobPanic::at`]).
pub(crate) struct At<'a>(Option<&'a PanicLocation>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(location) => write!(f, " at {location}"),
            None => Ok(()),
        }
    }
}

/// What [`Builder::on_panic`](crate::Builder::on_panic) receives for a job
/// that panicked.
///
/// # Examples
///
/// ```
/// use harbor_pool::{PanicReport, Pool};
/// use std::sync::mpsc;
///
/// let (tx, rx) = mpsc::channel::<PanicReport>();
/// let tx = std::sync::Mutex::new(tx);
/// let pool = Pool::builder()
///     .workers(1)
///     .on_panic(move |report| {
///         let _ = tx.lock().unwrap().send(report.clone());
///     })
///     .build()
///     .unwrap();
/// pool.execute(|| panic!("untracked")).unwrap();
/// let report = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
/// assert_eq!(report.job_id, None); // `execute` jobs have no id
/// assert_eq!(report.panic.message, "untracked");
/// assert_eq!(report.panic.thread, "harbor-worker-0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PanicReport {
    /// The job's id: `Some` for a tracked job, `None` for one queued with
    /// [`execute`](crate::Pool::execute).
    pub job_id: Option<JobId>,
    /// The panic: message, worker thread, and location and backtrace when
    /// captured. The same allocation as the job's
    /// [`JobInfo::panic`](crate::JobInfo::panic).
    pub panic: Arc<JobPanic>,
}

/// The callback set with [`Builder::on_panic`](crate::Builder::on_panic).
pub(crate) type PanicCallback = Arc<dyn Fn(&PanicReport) + Send + Sync + 'static>;

/// Calls the pool's `on_panic` callback, if any, containing a panic in it.
///
/// Runs on the worker after the job's bookkeeping, with no lock held and
/// the capture slot disarmed (so a panic in the callback reaches the
/// previous hook like any other panic outside a job).
pub(crate) fn notify(
    callback: Option<&PanicCallback>,
    job_id: Option<JobId>,
    panic: &Arc<JobPanic>,
) {
    let Some(callback) = callback else {
        return;
    };
    let report = PanicReport {
        job_id,
        panic: Arc::clone(panic),
    };
    if let Err(message) = unwind::catch(|| callback(&report)) {
        log_quietly!(log::warn!(
            "the on_panic callback panicked on {}: {message}",
            panic.thread
        ));
    }
}

/// A pool's settings for its workers' capture slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) capture: CapturePanics,
    /// Job panics do not reach the previous hook.
    pub(crate) quiet: bool,
}

impl Settings {
    /// Whether these settings need the hook (invariant 1). If not, workers
    /// never arm their slot, and the pool behaves as if no hook existed.
    pub(crate) fn needs_hook(self) -> bool {
        self.capture != CapturePanics::Off || self.quiet
    }
}

/// What the hook captured about the last panic on an armed thread.
#[derive(Debug)]
pub(crate) struct Caught {
    message: String,
    location: Option<PanicLocation>,
    backtrace: Option<Backtrace>,
}

/// A thread's capture slot.
#[derive(Default)]
struct Slot {
    /// `Some` while a job of a pool that needs the hook runs here.
    armed: Option<Settings>,
    caught: Option<Caught>,
}

thread_local! {
    /// Armed by a worker around each job (invariants 2 to 4).
    static SLOT: RefCell<Slot> = const {
        RefCell::new(Slot {
            armed: None,
            caught: None,
        })
    };
}

/// Arms this thread's slot with `settings` for one job, if they need the
/// hook; returns the guard that disarms it. `None` (and nothing touched)
/// for a pool with `Off` and not quiet.
pub(crate) fn arm(settings: Settings) -> Option<Armed> {
    if !settings.needs_hook() {
        return None;
    }
    let fresh = Slot {
        armed: Some(settings),
        caught: None,
    };
    // Invariant 5: a short borrow, no user code under it.
    let outer = SLOT
        .try_with(|slot| std::mem::replace(&mut *slot.borrow_mut(), fresh))
        .ok()?;
    Some(Armed { outer: Some(outer) })
}

/// Keeps a slot armed for one job; restores the slot as it was before (an
/// outer job's, invariant 4) when dropped, also while unwinding.
pub(crate) struct Armed {
    outer: Option<Slot>,
}

impl Armed {
    /// Ends the job's capture, returning what the hook caught during it.
    pub(crate) fn disarm(self) -> Option<Caught> {
        SLOT.try_with(|slot| slot.borrow_mut().caught.take())
            .ok()
            .flatten()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            let _ = SLOT.try_with(|slot| *slot.borrow_mut() = outer);
        }
    }
}

/// The hook installed before ours, called for everything ours does not
/// silence (invariant 1). `None` until [`install`] ran.
type PreviousHook = Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync + 'static>;

/// Whether the hook is installed; held while installing it.
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// Installs the pool's panic hook unless it already is (invariant 1).
///
/// Not on a panicking thread: `std::panic::set_hook` panics there. A pool
/// built while its thread unwinds (in a `Drop`) then runs without the hook,
/// as with `Off`, and says so in the log; the next pool built elsewhere
/// installs it.
pub(crate) fn install() {
    let mut installed = lock(&INSTALLED);
    if *installed {
        return;
    }
    if std::thread::panicking() {
        drop(installed);
        log_quietly!(log::warn!(
            "a pool that captures or silences panics was built on a panicking thread; \
             its panic hook is not installed"
        ));
        return;
    }
    // Between these two calls a panic elsewhere meets the default hook.
    let previous: PreviousHook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if forward(info) {
            previous(info);
        }
    }));
    *installed = true;
}

/// The hook's own work: records the panic if this thread is armed for a pool
/// that captures, and says whether the previous hook should see it.
/// Never panics (invariant 5).
fn forward(info: &PanicHookInfo<'_>) -> bool {
    SLOT.try_with(|slot| {
        // A slot in use (impossible: no user code runs while it is
        // borrowed) is treated as unarmed.
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return true;
        };
        let Some(settings) = slot.armed else {
            // Invariant 2: not a job of a pool that asked for the hook.
            return true;
        };
        if settings.capture != CapturePanics::Off {
            slot.caught = Some(Caught {
                // The text `unwind::message` gives the payload after the
                // catch (`payload_as_str` needs Rust 1.91).
                message: unwind::message(info.payload()),
                location: info.location().map(|at| PanicLocation {
                    file: at.file().to_owned(),
                    line: at.line(),
                    column: at.column(),
                }),
                backtrace: (settings.capture == CapturePanics::LocationAndBacktrace)
                    .then(Backtrace::force_capture),
            });
        }
        !settings.quiet
    })
    // The thread's locals are being destroyed: not inside a job.
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(capture: CapturePanics, quiet: bool) -> Settings {
        Settings { capture, quiet }
    }

    #[test]
    fn off_and_not_quiet_arms_nothing() {
        assert!(arm(settings(CapturePanics::Off, false)).is_none());
        assert!(arm(settings(CapturePanics::Off, true)).is_some());
        assert!(arm(settings(CapturePanics::Location, false)).is_some());
    }

    #[test]
    fn arming_nests_and_restores_the_outer_slot() {
        let outer = arm(settings(CapturePanics::Location, false)).unwrap();
        let inner = arm(settings(CapturePanics::Off, true)).unwrap();
        assert_eq!(
            SLOT.with(|slot| slot.borrow().armed),
            Some(settings(CapturePanics::Off, true))
        );
        assert!(inner.disarm().is_none());
        assert_eq!(
            SLOT.with(|slot| slot.borrow().armed),
            Some(settings(CapturePanics::Location, false))
        );
        drop(outer);
        assert_eq!(SLOT.with(|slot| slot.borrow().armed), None);
    }

    #[test]
    fn a_capture_with_another_message_is_dropped() {
        let caught = || Caught {
            message: "first".to_owned(),
            location: Some(PanicLocation {
                file: "a.rs".to_owned(),
                line: 1,
                column: 2,
            }),
            backtrace: None,
        };
        let kept = JobPanic::new("first".to_owned(), "w-0", Some(caught()));
        assert_eq!(kept.location.as_ref().unwrap().to_string(), "a.rs:1:2");
        assert_eq!(kept.at().to_string(), " at a.rs:1:2");
        let dropped = JobPanic::new("second".to_owned(), "w-0", Some(caught()));
        assert_eq!(dropped.location, None);
        assert_eq!(dropped.at().to_string(), "");
        assert_ne!(kept, dropped);
    }
}
