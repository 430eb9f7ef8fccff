//! A panic-resilient, supervised thread pool with job tracking and
//! cooperative cancellation.
//!
//! Long-running services run work they do not fully trust on a fixed set of
//! threads. `harbor-pool` keeps those threads alive and the work accounted
//! for:
//!
//! * a panicking job never costs the pool a thread and never takes the
//!   process down: it ends [`JobStatus::Failed`] with the panic message;
//! * a supervisor thread respawns any worker that dies anyway, without
//!   restart storms;
//! * every tracked job has a [`JobId`] (a UUID) by which its status can be
//!   queried and it can be cancelled;
//! * every tracked job receives a [`CancelToken`] for cooperative
//!   cancellation, and can be given a deadline;
//! * async code awaits a job's [`JobHandle`] or its id
//!   ([`Pool::wait_async`]) on any executor, without blocking a thread;
//! * a tracked job can report its [`Progress`] through its token, readable
//!   by id; [`Pool::metrics`] gives latency histograms of every job;
//! * shutdown never loses a job silently and never leaves a thread behind.
//!
//! # Quick start
//!
//! ```
//! use harbor_pool::{CancelOutcome, JobStatus, Pool};
//! use std::time::Duration;
//!
//! let pool = Pool::new(4)?;
//!
//! // A tracked job: it gets an id and a cancel token, and returns a value.
//! let handle = pool.submit(|token| {
//!     let mut sum = 0_u64;
//!     for i in 0..1_000 {
//!         token.check()?; // returns early if the job is cancelled
//!         sum += i;
//!     }
//!     Ok(sum)
//! })?;
//! let id = handle.id();
//! assert_eq!(handle.join()?, 499_500);
//! assert_eq!(pool.status(id), Some(JobStatus::Completed));
//!
//! // A panicking job is contained.
//! let bad = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("bad input") })?;
//! assert_eq!(bad.wait(Duration::from_secs(10)), Some(JobStatus::Failed("bad input".into())));
//!
//! // A long job, cancelled by id.
//! let long = pool.submit(|token| {
//!     token.sleep(Duration::from_secs(3600))?;
//!     Ok(())
//! })?;
//! assert_ne!(pool.cancel(long.id()), CancelOutcome::NotFound);
//! assert_eq!(long.wait(Duration::from_secs(10)), Some(JobStatus::Cancelled));
//!
//! // Untracked fire-and-forget work, the fastest path.
//! pool.execute(|| { /* ... */ })?;
//!
//! pool.join(); // wait until idle; the pool stays usable
//! let stats = pool.stats();
//! assert_eq!(stats.alive, 4);
//! assert_eq!(stats.panicked, 1);
//! pool.shutdown(); // also what dropping the pool does
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Panics and supervision
//!
//! Every job runs under [`std::panic::catch_unwind`]. A panic becomes
//! [`JobStatus::Failed`] carrying the payload's text (`&str` or `String`; any
//! other payload gets a fixed descriptive text), [`JobHandle::join`] returns
//! [`JobError::Panicked`], and the worker moves on to the next job. A panic
//! payload whose own `Drop` panics is contained too.
//!
//! Catching is cheaper and more informative than letting the thread die:
//! no thread is spawned per panic, the message is kept, and the job's state
//! changes in order on the thread that ran it.
//!
//! What cannot be caught inside a job (a panicking
//! [`on_thread_start`](Builder::on_thread_start) hook, a bug) kills the
//! worker thread. The supervisor learns of it at once, joins the dead thread
//! and respawns a worker with the same index and name; a job that was running
//! on it ends `Failed` with a message saying its worker died. Respawns beyond
//! [`restart_limit`](Builder::restart_limit) within its window are delayed
//! with capped exponential backoff ([`restart_backoff`](Builder::restart_backoff))
//! and logged at error level, so a hook that always panics cannot make the
//! supervisor spin. Restarts are counted in [`PoolStats::restarts`].
//!
//! The pool cannot catch anything when the program is built with
//! `panic = "abort"`: the first panic ends the process, as with any pool.
//!
//! # Panic forensics
//!
//! A tracked job that panicked keeps a [`JobPanic`] in [`JobInfo::panic`]:
//! the message and the worker thread, and, if
//! [`capture_panics`](Builder::capture_panics) asks, the file, line and
//! column where it panicked ([`CapturePanics::Location`]) and a backtrace
//! ([`CapturePanics::LocationAndBacktrace`]).
//! [`on_panic`](Builder::on_panic) is called with a [`PanicReport`] for
//! every job that panics, tracked or not, for alerting and metrics.
//! [`quiet_panics`](Builder::quiet_panics) keeps job panics away from the
//! panic hook installed before the pool's (which by default prints them),
//! so the pool's `log` warning is their one report.
//!
//! ```
//! use harbor_pool::{CapturePanics, Pool};
//! use std::sync::{Arc, Mutex};
//!
//! let alerts = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&alerts);
//! let pool = Pool::builder()
//!     .workers(1)
//!     .capture_panics(CapturePanics::Location)
//!     .quiet_panics(true)
//!     .on_panic(move |report| sink.lock().unwrap().push(report.panic.message.clone()))
//!     .build()?;
//! let job = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("bad input") })?;
//! let _ = job.wait(std::time::Duration::from_secs(30));
//! let panic = pool.info(job.id()).unwrap().panic.unwrap();
//! assert_eq!(panic.location.as_ref().unwrap().line, line!() - 3);
//! pool.shutdown(); // joins the worker: the callback has run
//! assert_eq!(*alerts.lock().unwrap(), ["bad input"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Capturing and silencing need a panic hook. The first pool that asks
//! installs one, once per process; it chains to the hook that was there
//! before and acts only on jobs of pools that asked, each with its own
//! settings. Other panics, and every panic in a process whose pools all
//! leave these settings off, reach the previous hook unchanged.
//!
//! # Cancellation
//!
//! A tracked job receives a `&CancelToken`. [`Pool::cancel`] (or
//! [`JobHandle::cancel`]) cancels a pending job outright (it never runs) and
//! cancels a running job's token; the job notices through
//! [`CancelToken::check`], [`CancelToken::is_cancelled`] or
//! [`CancelToken::sleep`], which wakes early. A running job whose token was
//! cancelled ends `Cancelled` if it returns `Err`, `Completed` if it returns
//! `Ok` (it finished anyway), `Failed` if it panics. Deadlines
//! ([`JobOptions::timeout`] with [`Pool::submit_with`]) cancel the same way,
//! driven by one timer for all jobs.
//!
//! Two more ways to notice a cancel, for jobs that cannot poll a flag:
//!
//! * [`CancelToken::cancelled`] returns a future ([`WaitForCancel`]) that
//!   completes when the token is cancelled, so async code can `select!` on
//!   it. It works on any executor; the crate depends on none.
//! * [`CancelToken::on_cancel`] registers a callback that runs once, on the
//!   cancelling thread (at once if the token is cancelled already), for
//!   unblocking a job stuck in blocking I/O: shut its socket down and its
//!   `read` returns. Dropping the returned [`CancelRegistration`]
//!   unregisters it.
//!
//! ```
//! use harbor_pool::{CancelOutcome, JobStatus, Pool};
//! use std::io::Read;
//! use std::net::{Shutdown, TcpListener, TcpStream};
//! use std::time::Duration;
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let mut stream = TcpStream::connect(listener.local_addr()?)?;
//! let (_peer, _) = listener.accept()?; // never writes: the read blocks
//!
//! let pool = Pool::new(1)?;
//! let (registered_tx, registered_rx) = std::sync::mpsc::channel();
//! let job = pool.submit(move |token| {
//!     let socket = stream.try_clone()?;
//!     let _unblock = token.on_cancel(move || {
//!         let _ = socket.shutdown(Shutdown::Both);
//!     });
//!     registered_tx.send(())?;
//!     let mut buf = [0_u8; 64];
//!     let read = stream.read(&mut buf)?; // returns 0 once shut down
//!     token.check()?;
//!     Ok(read)
//! })?;
//! registered_rx.recv_timeout(Duration::from_secs(30))?;
//! assert_eq!(pool.cancel(job.id()), CancelOutcome::Requested);
//! assert_eq!(job.wait(Duration::from_secs(30)), Some(JobStatus::Cancelled));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Job status
//!
//! `Pending -> Running -> Completed | Failed | Cancelled | Abandoned`, or
//! `Pending -> Cancelled`; the first terminal state wins. [`Pool::status`],
//! [`Pool::info`] and [`Pool::wait`] look a job up by id. Finished records
//! are kept up to [`retain_finished`](Builder::retain_finished) (oldest
//! forgotten first), so memory stays flat in a long-running service; a
//! forgotten id answers `None`, and a [`JobHandle`] keeps working.
//!
//! To follow every tracked job from outside the pool (to mirror statuses
//! into a shared store, say), attach a [`JobObserver`] with
//! [`Builder::observer`]: it receives each job's transitions in coalesced
//! batches on a thread of the pool's own, never on a worker; a full buffer
//! drops transitions (counted in [`PoolStats::observer_overflows`]) rather
//! than slow a job down.
//!
//! # Shutdown
//!
//! * [`Pool::shutdown`] (and dropping the pool): refuse new jobs, run
//!   everything queued, join every thread;
//! * [`Pool::shutdown_now`]: refuse new jobs, cancel everything queued
//!   (it ends `Cancelled` without running) and every running job's token,
//!   then join;
//! * [`Pool::shutdown_timeout`]: graceful for a while, then as
//!   `shutdown_now`.
//!
//! `shutdown_now` and `shutdown_timeout` return a [`ShutdownReport`]: the
//! tracked jobs cancelled without running, those interrupted and how each
//! ended, those abandoned, the untracked jobs dropped, and whether every
//! thread was joined.
//!
//! A job submitted after shutdown began gets [`SubmitError::Shutdown`].
//! Shutting down (or dropping) the pool from inside one of its own jobs
//! does not deadlock: it starts the shutdown and returns. Any other caller
//! returns only once every thread of the pool has exited, however many
//! call at once.
//!
//! # Async
//!
//! A [`JobHandle<T>`](JobHandle) is a `Future<Output = Result<T, JobError>>`
//! (and `Unpin`), and [`Pool::wait_async`] gives a future of a job's
//! terminal status by id. They work on any executor; the pool depends on no
//! async runtime. Nothing polls: the future stores its task's waker with
//! the job, and the thread that ends the job wakes it. Add a timeout with
//! your runtime's timer. Dropping an awaited handle detaches the job, as
//! dropping any handle does.
//!
//! ```
//! use harbor_pool::{JobStatus, Pool};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::new(2)?;
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let handle = pool.submit(|_| Ok(6 * 7))?;
//!     let id = handle.id();
//!     assert_eq!(handle.await?, 42); // no thread blocked while it runs
//!
//!     let status = tokio::time::timeout(Duration::from_secs(10), pool.wait_async(id)).await?;
//!     assert_eq!(status, Some(JobStatus::Completed));
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! A handle may be polled and then joined, and dropped at any point. After
//! it was awaited to completion, awaiting or joining it again returns
//! [`JobError::ResultTaken`].
//!
//! # Stuck jobs
//!
//! Cancellation is cooperative, so a job that never checks its token (or
//! is blocked where it cannot) would keep its worker for good. With
//! [`Builder::abandon_after`] (or [`JobOptions::abandon_after`]), a job
//! that has not returned `grace` after the pool cancelled its token (by
//! id, deadline or `shutdown_now`) ends [`JobStatus::Abandoned`]; its
//! thread is detached and a replacement starts under the same name. At
//! most [`Builder::max_stray_threads`] detached threads are kept; a
//! detached thread whose job returns drops the value and exits.
//! [`PoolStats::abandoned`] and [`PoolStats::stray_threads`] count them.
//!
//! # Progress and metrics
//!
//! A job calls [`CancelToken::set_progress`] (lock-free and
//! allocation-free, so a hot loop may call it on every step) and, now and
//! then, [`CancelToken::set_progress_message`]; [`Pool::info`] and
//! [`JobHandle::progress`] return the latest [`Progress`], which stays in
//! the finished record.
//!
//! [`Pool::metrics`] returns [`PoolMetrics`]: a queue wait and a run time
//! [`Histogram`] over every job, tracked or not, with fixed log-scale
//! buckets from 1 µs to 134 s, bucket counts, sum and count (what a
//! Prometheus histogram needs) and [`Histogram::quantile`]. Each worker
//! records into its own histograms without locks.
//!
//! ```
//! use harbor_pool::Pool;
//!
//! let pool = Pool::new(2)?;
//! let handle = pool.submit(|token| {
//!     token.set_progress_message("counting");
//!     for step in 1..=100 {
//!         token.set_progress(step, Some(100));
//!     }
//!     Ok(())
//! })?;
//! let id = handle.id();
//! handle.join()?;
//! let progress = pool.info(id).unwrap().progress.unwrap();
//! assert_eq!((progress.done, progress.message.as_deref()), (100, Some("counting")));
//! pool.join();
//! assert_eq!(pool.metrics().run_time.count(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Jobs that wait for jobs
//!
//! A job may submit to its own pool and wait for the result
//! ([`JobHandle::join`], [`JobHandle::wait`], [`Pool::wait`]): if that job
//! is still pending, the waiting worker runs it inline. Nested
//! submit-and-join therefore never deadlocks, even on one worker.
//!
//! # Logging
//!
//! The crate logs through the [`log`] facade and never prints. Enable a
//! logger (for example `env_logger`) in your binary to see it:
//!
//! | level | what |
//! |---|---|
//! | error | a worker thread died; a restart storm; jobs cancelled because no worker was left |
//! | warn | a job panicked (job id, worker name, message) |
//! | info | pool started and stopped; workers respawned |
//! | debug, trace | worker and job lifecycle, cancellations, deadlines |
//!
//! Panics also reach the process's panic hook, which by default prints them
//! to stderr; [`quiet_panics`](Builder::quiet_panics) keeps a pool's job
//! panics from it (see "Panic forensics"), or install your own hook with
//! [`std::panic::set_hook`].
//!
//! With the `tracing` cargo feature (off by default), the pool's job and
//! worker lifecycle events (submitted, started, ended, panicked, worker
//! died, respawned) are `tracing` events with `job_id` and `worker` fields,
//! and a job runs, and its events are emitted, inside the span that was
//! current where it was submitted. Worker threads emit to the global
//! default subscriber. With no subscriber set, the events still reach `log`
//! (through `tracing`'s `log` feature). Without the feature the crate does
//! not depend on `tracing` at all.
//!
//! The design (state machine, shutdown protocol, lock order) is described in
//! `docs/design.md` in the repository.

#![forbid(unsafe_code)]

/// Runs one `log` call, containing a panic from the logger.
///
/// For the supervisor, drop guards and shutdown: a panicking logger must
/// not stop the pool's own bookkeeping. (Job paths log after their
/// bookkeeping instead; the worker's drop guard covers them.)
macro_rules! log_quietly {
    ($log:expr) => {
        let _ = $crate::unwind::catch(|| $log);
    };
}

mod builder;
mod cancel;
pub mod compat;
mod error;
mod events;
mod forensics;
mod idle;
mod job;
mod metrics;
mod observer;
mod pool;
mod progress;
mod registry;
mod report;
mod shared;
mod slots;
mod stats;
mod supervisor;
mod sync;
mod timer;
mod unwind;
mod wake;
mod worker;

pub use crate::builder::{Builder, DEFAULT_RETAIN_FINISHED};
pub use crate::cancel::{CancelRegistration, CancelToken, Cancelled, WaitForCancel};
pub use crate::error::{BoxError, BuildError, JobError, JobResult, ParseJobIdError, SubmitError};
pub use crate::forensics::{CapturePanics, JobPanic, PanicLocation, PanicReport};
pub use crate::job::{CancelOutcome, JobHandle, JobId, JobInfo, JobOptions, JobStatus};
pub use crate::metrics::{Histogram, PoolMetrics};
pub use crate::observer::{JobObserver, MAX_BATCH};
pub use crate::pool::Pool;
pub use crate::progress::Progress;
pub use crate::report::ShutdownReport;
pub use crate::stats::PoolStats;

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that says it runs, then waits to be released (bounded),
    /// ignoring its token.
    pub(crate) fn held(
        running: std::sync::mpsc::Sender<()>,
        released: std::sync::mpsc::Receiver<()>,
    ) -> impl FnOnce(&CancelToken) -> JobResult<()> + Send + 'static {
        move |_| {
            running.send(()).unwrap();
            let _ = released.recv_timeout(crate::sync::PATIENCE);
            Ok(())
        }
    }

    /// A [`held`] job of `pool`, running, and what releases it.
    pub(crate) fn running_held_job(pool: &Pool) -> (JobHandle<()>, std::sync::mpsc::Sender<()>) {
        let (running_tx, running) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        let job = pool.submit(held(running_tx, released)).unwrap();
        running.recv_timeout(crate::sync::PATIENCE).unwrap();
        (job, release)
    }

    /// Names of this process's threads (Linux truncates them to 15 bytes).
    pub(crate) fn thread_names() -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Pool>();
        assert_send_sync::<Builder>();
        assert_send_sync::<JobHandle<u64>>();
        assert_send_sync::<JobId>();
        assert_send_sync::<JobStatus>();
        assert_send_sync::<JobInfo>();
        assert_send_sync::<CancelToken>();
        assert_send_sync::<WaitForCancel>();
        assert_send_sync::<CancelRegistration>();
        assert_send_sync::<JobError>();
        assert_send_sync::<SubmitError>();
        assert_send_sync::<BuildError>();
        assert_send_sync::<PoolStats>();
        assert_send_sync::<CapturePanics>();
        assert_send_sync::<JobPanic>();
        assert_send_sync::<PanicLocation>();
        assert_send_sync::<PanicReport>();
        assert_send_sync::<PoolMetrics>();
        assert_send_sync::<Histogram>();
        assert_send_sync::<Progress>();
    }

    fn assert_unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}

    /// Users catch panics around code that holds these; none of them may
    /// force an `AssertUnwindSafe` on them.
    #[test]
    fn public_types_are_unwind_safe() {
        assert_unwind_safe::<Pool>();
        assert_unwind_safe::<JobHandle<u64>>();
        assert_unwind_safe::<CancelToken>();
        assert_unwind_safe::<WaitForCancel>();
        assert_unwind_safe::<CancelRegistration>();
        assert_unwind_safe::<JobId>();
        assert_unwind_safe::<JobStatus>();
        assert_unwind_safe::<PoolStats>();
        assert_unwind_safe::<PoolMetrics>();
        assert_unwind_safe::<Progress>();
    }
}

// The README's Rust example is compiled and run as a doc test, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
