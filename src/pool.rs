//! [`Pool`]: the public handle. A thin layer over [`Shared`]; each operation
//! delegates to the part that owns it. The shutdown machinery (waiting for
//! every thread to be joined, `shutdown_timeout`'s escalation, the
//! supervisor's join-once handle) is in `pool/shutdown.rs`.

mod shutdown;

use shutdown::SupervisorThread;

use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::builder::{Builder, Config};
use crate::cancel::CancelToken;
use crate::error::{BuildError, JobResult, SubmitError};
use crate::events::{self, Span, SpanSlot};
use crate::job::{self, CancelOutcome, JobHandle, JobId, JobInfo, JobOptions, JobStatus, Message};
use crate::metrics::PoolMetrics;
use crate::registry::{Draw, Submitted};
use crate::report::ShutdownReport;
use crate::shared::{Mode, Shared};
use crate::stats::PoolStats;
use crate::supervisor::{self, Event};
use crate::sync::deadline_after;
use crate::worker;

/// A fixed set of supervised worker threads that run jobs from one queue.
///
/// * [`submit`](Self::submit) runs a *tracked* job: it gets a [`JobId`], its
///   status can be queried and it can be cancelled by id, it receives a
///   [`CancelToken`], and its result comes back through a [`JobHandle`].
/// * [`execute`](Self::execute) runs an *untracked* closure: no id, no
///   record, the fastest path. Its panics are still caught and counted.
///
/// Every job runs under `catch_unwind`: a panic becomes
/// [`JobStatus::Failed`] with the panic message and never costs a thread.
/// A supervisor thread respawns any worker that dies anyway.
///
/// `Pool` is `Send + Sync`; share it as `Arc<Pool>`. Dropping it shuts it
/// down gracefully (see [`shutdown`](Self::shutdown)).
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobStatus, Pool};
/// use std::time::Duration;
///
/// let pool = Pool::new(2).unwrap();
/// let ok = pool.submit(|_| Ok(21 * 2)).unwrap();
/// let bad = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("boom") }).unwrap();
/// assert_eq!(ok.join().unwrap(), 42);
/// assert_eq!(bad.wait(Duration::from_secs(10)), Some(JobStatus::Failed("boom".into())));
/// assert_eq!(pool.stats().alive, 2); // the panic cost no thread
/// ```
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
    supervisor: SupervisorThread,
    /// Set when `shutdown_timeout` gave up waiting: later shutdown calls
    /// (and `Drop`) do not block on the jobs it left running.
    detached: AtomicBool,
}

// A pool is built to be used across panics: no user code runs under its
// locks, every lock ignores poisoning, and no panic leaves its state half
// updated. (Only the user's thread hooks keep it from being unwind-safe
// automatically.)
impl UnwindSafe for Pool {}
impl RefUnwindSafe for Pool {}

impl Pool {
    /// A pool of `workers` threads with the default settings.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`] for zero,
    /// [`BuildError::TooManyWorkers`] above
    /// [`Builder::MAX_WORKERS`], or [`BuildError::Spawn`] if the OS refuses
    /// a thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(4).unwrap();
    /// assert_eq!(pool.stats().workers, 4);
    /// assert!(harbor_pool::Pool::new(0).is_err());
    /// ```
    pub fn new(workers: usize) -> Result<Pool, BuildError> {
        Builder::new().workers(workers).build()
    }

    /// A [`Builder`] to configure a pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.stats().workers, 2);
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start(config: Config) -> Result<Pool, BuildError> {
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::new(config, events_tx));
        let supervisor = supervisor::start(Arc::clone(&shared), events_rx)?;
        Ok(Pool {
            shared,
            supervisor: SupervisorThread::new(supervisor),
            detached: AtomicBool::new(false),
        })
    }

    /// Queues a tracked job and returns its handle. Blocks while a bounded
    /// queue is full, except on one of the pool's own threads (see Errors).
    ///
    /// The job receives a [`CancelToken`]; returning `Err` marks it
    /// `Failed` (or `Cancelled` if its token was cancelled), panicking marks
    /// it `Failed` with the panic message.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Shutdown`] once shutdown has begun (including while
    /// blocked on a full queue). [`SubmitError::QueueFull`] when a bounded
    /// queue is full and this is called from one of the pool's own jobs:
    /// waiting there could wait for that very worker to make room, a
    /// deadlock. Either way the job is dropped without running.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{CancelToken, JobHandle, JobResult, Pool};
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let handle: JobHandle<u64> = pool
    ///     .submit(|token: &CancelToken| -> JobResult<u64> {
    ///         let mut sum = 0;
    ///         for chunk in 0..100 {
    ///             token.check()?;
    ///             sum += chunk;
    ///         }
    ///         Ok(sum)
    ///     })
    ///     .unwrap();
    /// assert_eq!(handle.join().unwrap(), 4950);
    /// ```
    ///
    /// From inside a job, into its own full queue:
    ///
    /// ```
    /// use harbor_pool::{Pool, SubmitError};
    /// use std::sync::Arc;
    ///
    /// let pool = Arc::new(Pool::builder().workers(1).queue_capacity(1).build().unwrap());
    /// let inner = Arc::clone(&pool);
    /// let outer = pool
    ///     .submit(move |_| {
    ///         inner.try_execute(|| ()).unwrap(); // the only slot
    ///         // The only worker is busy right here: refused, not deadlocked.
    ///         Ok(inner.submit(|_| Ok(())).map(drop))
    ///     })
    ///     .unwrap();
    /// assert_eq!(outer.join().unwrap(), Err(SubmitError::QueueFull));
    /// ```
    pub fn submit<F, T>(&self, job: F) -> Result<JobHandle<T>, SubmitError>
    where
        F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_inner(JobOptions::default(), job, true)
    }

    /// Like [`submit`](Self::submit), but never blocks.
    ///
    /// # Errors
    ///
    /// [`SubmitError::QueueFull`] when the bounded queue is full, and
    /// [`SubmitError::Shutdown`] once shutdown has begun.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{Pool, SubmitError};
    /// let pool = Pool::builder().workers(1).queue_capacity(1).build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let blocker = pool.submit(move |_| { let _ = rx.recv(); Ok(()) }).unwrap();
    /// // The worker is busy with `blocker`; fill the single queue slot.
    /// let mut results = Vec::new();
    /// for _ in 0..3 {
    ///     results.push(pool.try_submit(|_| Ok(())).map(|_| ()));
    /// }
    /// assert!(results.contains(&Err(SubmitError::QueueFull)));
    /// tx.send(()).unwrap();
    /// blocker.join().unwrap();
    /// ```
    pub fn try_submit<F, T>(&self, job: F) -> Result<JobHandle<T>, SubmitError>
    where
        F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_inner(JobOptions::default(), job, false)
    }

    /// Like [`submit`](Self::submit), with per-job [`JobOptions`] such as a
    /// deadline. Blocks while a bounded queue is full, except on one of the
    /// pool's own threads.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit): [`SubmitError::Shutdown`], or
    /// [`SubmitError::QueueFull`] on one of the pool's own threads.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobError, JobOptions, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let options = JobOptions::new().timeout(Duration::from_millis(10));
    /// let handle = pool
    ///     .submit_with(options, |token| {
    ///         token.sleep(Duration::from_secs(60))?;
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// assert!(matches!(handle.join(), Err(JobError::Cancelled)));
    /// ```
    pub fn submit_with<F, T>(
        &self,
        options: JobOptions,
        job: F,
    ) -> Result<JobHandle<T>, SubmitError>
    where
        F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_inner(options, job, true)
    }

    /// Like [`submit_with`](Self::submit_with), but never blocks.
    ///
    /// # Errors
    ///
    /// As [`try_submit`](Self::try_submit).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobOptions, Pool};
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool.try_submit_with(JobOptions::new(), |_| Ok(3)).unwrap();
    /// assert_eq!(handle.join().unwrap(), 3);
    /// ```
    pub fn try_submit_with<F, T>(
        &self,
        options: JobOptions,
        job: F,
    ) -> Result<JobHandle<T>, SubmitError>
    where
        F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_inner(options, job, false)
    }

    fn submit_inner<F, T>(
        &self,
        options: JobOptions,
        job: F,
        blocking: bool,
    ) -> Result<JobHandle<T>, SubmitError>
    where
        F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
        T: Send + 'static,
    {
        // The pool's `abandon_after` is applied when the job is interrupted
        // (`Shared::interrupt`), so the record holds only the job's own.
        let feed = self.shared.feed.clone();
        // Here, not in `make`: capturing the span runs a `tracing`
        // subscriber (user code).
        let span = SpanSlot::current();
        // Before any wait for a slot: the job's queue wait and deadline count
        // from the call.
        let at = Submitted::now(options.timeout);
        // Before the job holds anything: drawing can panic.
        let draw = Draw::new();
        let registry = &self.shared.registry;
        let (id, parts, deadline) = self.shared.accept_with(blocking, move || {
            // Numbered once it will be queued (registry invariant 9).
            let id = registry.number(draw);
            let (cell, parts) = job::new_cell_in(span, at, id, options, feed, job);
            let deadline = cell
                .record()
                .deadline()
                .map(|at| (at, Arc::downgrade(&cell)));
            (Message::Track(cell), (id, parts, deadline))
        })?;
        if let Some((at, job)) = deadline {
            // One timer (the supervisor) drives every deadline.
            let _ = self.shared.events.send(Event::Deadline(at, job));
        }
        // The handle exists before the (user) logger runs: dropping it, if
        // the logger panics, detaches the job as usual.
        let handle = parts.into_handle(Arc::downgrade(&self.shared), self.shared.id);
        events::submitted(id);
        Ok(handle)
    }

    /// Queues an untracked closure: fire and forget, the fastest path. It
    /// has no id and no record; a panic is caught, logged and counted in
    /// [`stats`](Self::stats). Blocks while a bounded queue is full, except
    /// on one of the pool's own threads.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Shutdown`] once shutdown has begun, and
    /// [`SubmitError::QueueFull`] when a bounded queue is full and this is
    /// called from one of the pool's own jobs (as for
    /// [`submit`](Self::submit)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let pool = harbor_pool::Pool::new(2).unwrap();
    /// let count = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..10 {
    ///     let count = Arc::clone(&count);
    ///     pool.execute(move || {
    ///         count.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .unwrap();
    /// }
    /// pool.join();
    /// assert_eq!(count.load(Ordering::Relaxed), 10);
    /// ```
    pub fn execute<F>(&self, job: F) -> Result<(), SubmitError>
    where
        F: FnOnce() + Send + 'static,
    {
        let submitted = self.shared.counters.latency.submitted();
        self.shared.accept(
            Message::Run(Box::new(job), Span::current(), submitted),
            true,
        )
    }

    /// Like [`execute`](Self::execute), but never blocks.
    ///
    /// # Errors
    ///
    /// [`SubmitError::QueueFull`] when the bounded queue is full, and
    /// [`SubmitError::Shutdown`] once shutdown has begun.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// pool.try_execute(|| ()).unwrap();
    /// pool.join();
    /// assert_eq!(pool.stats().completed, 1);
    /// ```
    pub fn try_execute<F>(&self, job: F) -> Result<(), SubmitError>
    where
        F: FnOnce() + Send + 'static,
    {
        let submitted = self.shared.counters.latency.submitted();
        self.shared.accept(
            Message::Run(Box::new(job), Span::current(), submitted),
            false,
        )
    }

    /// The status of the tracked job `id`, or `None` if the pool does not
    /// know it (never submitted here, or a finished record dropped under
    /// [`retain_finished`](Builder::retain_finished)).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobId, JobStatus, Pool};
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool.submit(|_| Ok(())).unwrap();
    /// handle.wait(std::time::Duration::from_secs(10));
    /// assert_eq!(pool.status(handle.id()), Some(JobStatus::Completed));
    /// let unknown: JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
    /// assert_eq!(pool.status(unknown), None);
    /// ```
    pub fn status(&self, id: JobId) -> Option<JobStatus> {
        self.shared.registry.with(id, |record| record.status())
    }

    /// A snapshot of the tracked job `id`: status, times and worker; `None`
    /// if unknown (as for [`status`](Self::status)).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// let handle = pool.submit(|_| Ok(())).unwrap();
    /// let info = pool.info(handle.id()).unwrap();
    /// assert_eq!(info.id, handle.id());
    /// ```
    pub fn info(&self, id: JobId) -> Option<JobInfo> {
        self.shared
            .registry
            .with(id, |record| record.info(&self.shared.names))
    }

    /// Blocks until the tracked job `id` is terminal and returns its status,
    /// or returns `None` when `timeout` passes first or the id is unknown.
    ///
    /// On one of this pool's workers, a job still pending is run right there
    /// first, to completion (as [`JobHandle::join`] does), so the timeout
    /// applies only to a job already running elsewhere.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobStatus, Pool};
    /// use std::time::Duration;
    /// let pool = Pool::new(1).unwrap();
    /// let id = pool.submit(|_| Ok(())).unwrap().id(); // handle dropped: detached
    /// assert_eq!(pool.wait(id, Duration::from_secs(10)), Some(JobStatus::Completed));
    /// ```
    pub fn wait(&self, id: JobId, timeout: Duration) -> Option<JobStatus> {
        let deadline = deadline_after(timeout);
        let job = self.shared.registry.get(id)?;
        // As `JobHandle::wait`: a worker of this pool runs a pending job
        // itself rather than wait for another worker.
        worker::run_inline(&self.shared, &job);
        job.record().wait(deadline)
    }

    /// Awaits the tracked job `id`: a future of its terminal status, or of
    /// `None` at once if the pool does not know the id (never submitted
    /// here, or forgotten under retention), as for [`wait`](Self::wait).
    ///
    /// The job is looked up when `wait_async` is called; the future then
    /// holds the job itself, so retention forgetting the record meanwhile
    /// loses nothing, and it works after the pool is dropped. Nothing
    /// polls: the thread that ends the job wakes every future awaiting it,
    /// however many. A dropped future withdraws its waker. There is no
    /// timeout: add your runtime's (for example
    /// `tokio::time::timeout(d, pool.wait_async(id))`). The future is
    /// `'static`, `Send` and `Unpin`, and no async runtime is needed; any
    /// executor works.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobId, JobStatus, Pool};
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let id = pool.submit(|_| Ok(())).unwrap().id(); // handle dropped: detached
    /// assert_eq!(pollster::block_on(pool.wait_async(id)), Some(JobStatus::Completed));
    ///
    /// let unknown: JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
    /// assert_eq!(pollster::block_on(pool.wait_async(unknown)), None);
    /// ```
    pub fn wait_async(
        &self,
        id: JobId,
    ) -> impl Future<Output = Option<JobStatus>> + Send + Unpin + 'static + use<> {
        job::WaitStatus::new(self.shared.registry.get(id), &self.shared)
    }

    /// Cancels the tracked job `id`.
    ///
    /// * pending: it becomes `Cancelled` and never runs
    ///   ([`CancelOutcome::Cancelled`]);
    /// * running: its token is cancelled ([`CancelOutcome::Requested`]); it
    ///   ends `Cancelled` if it then returns `Err`, `Completed` if it returns
    ///   `Ok`, `Failed` if it panics;
    /// * finished: nothing changes ([`CancelOutcome::AlreadyFinished`]);
    /// * unknown: [`CancelOutcome::NotFound`].
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{CancelOutcome, JobId, Pool};
    /// let pool = Pool::new(1).unwrap();
    /// let unknown: JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
    /// assert_eq!(pool.cancel(unknown), CancelOutcome::NotFound);
    /// ```
    pub fn cancel(&self, id: JobId) -> CancelOutcome {
        match self.shared.registry.get(id) {
            Some(job) => self.shared.cancel(&job),
            None => CancelOutcome::NotFound,
        }
    }

    /// A snapshot of the pool's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(3).unwrap();
    /// let stats = pool.stats();
    /// assert_eq!((stats.workers, stats.submitted), (3, 0));
    /// ```
    pub fn stats(&self) -> PoolStats {
        let mut stats = self.shared.counters.snapshot(self.shared.jobs_rx.len());
        stats.observer_overflows = self.shared.feed.as_ref().map_or(0, |feed| feed.overflows());
        stats
    }

    /// Latency histograms of every job, tracked and untracked: how long
    /// jobs waited in the queue and how long they ran (see [`PoolMetrics`]
    /// for which jobs count). Each worker records into its own histograms
    /// without locks; this adds them up. Exact once [`join`](Self::join)
    /// returns; approximate while jobs run.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Pool;
    /// use std::time::Duration;
    ///
    /// let pool = Pool::new(2).unwrap();
    /// for _ in 0..100 {
    ///     pool.execute(|| ()).unwrap();
    /// }
    /// pool.join();
    /// let metrics = pool.metrics();
    /// assert_eq!(metrics.run_time.count(), 100);
    /// let p99 = metrics.queue_wait.quantile(0.99).unwrap();
    /// assert!(p99 < Duration::from_secs(60));
    /// ```
    pub fn metrics(&self) -> PoolMetrics {
        self.shared.counters.latency.snapshot()
    }

    /// Blocks until no accepted job is pending or running. The pool stays
    /// usable.
    ///
    /// `join` returns once the pool has been idle at some instant after the
    /// call began: jobs submitted before that instant are waited for, jobs
    /// submitted after it are not. Every thread waiting in `join` when the
    /// pool goes idle returns, even if one of them (or anyone else) submits
    /// new work before the others wake, so a service that never stops
    /// receiving work cannot starve a `join`. The idle instant is the one
    /// seen by the thread that ends the last outstanding job (or by a
    /// waiter itself): a submission that lands between that job's end and
    /// that look hides the instant, and `join` then waits for the new job.
    ///
    /// Cost: a `join` of a pool that was seen idle and has accepted nothing
    /// since returns after three atomic loads, so joining an idle pool in a loop is
    /// cheap; otherwise it sums every worker's counters once and sleeps.
    /// While someone waits, a worker that finishes a job adds that sum only
    /// when the queue is empty.
    ///
    /// Called from one of this pool's own jobs it returns at once (it would
    /// otherwise wait for itself), logging a warning.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(2).unwrap();
    /// for _ in 0..100 {
    ///     pool.execute(|| ()).unwrap();
    /// }
    /// pool.join();
    /// assert_eq!(pool.stats().completed, 100);
    /// pool.execute(|| ()).unwrap(); // still usable
    /// ```
    pub fn join(&self) {
        if self.on_own_worker("join") {
            return;
        }
        self.shared.wait_idle(None);
    }

    /// Like [`join`](Self::join), giving up after `timeout`. Returns `true`
    /// if the pool was idle at some instant after the call began (the same
    /// guarantee as `join`), `false` if `timeout` passed first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// pool.execute(|| ()).unwrap();
    /// assert!(pool.join_timeout(Duration::from_secs(10)));
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        if self.on_own_worker("join_timeout") {
            return false;
        }
        self.shared.wait_idle(deadline_after(timeout))
    }

    /// Graceful shutdown: refuses new jobs, runs everything already queued,
    /// then joins every thread of the pool. Idempotent.
    ///
    /// Called from one of the pool's own jobs, it starts the shutdown and
    /// returns without waiting (the threads finish on their own once that
    /// job returns), so it cannot deadlock.
    ///
    /// If no worker can be kept alive (a restart storm) the jobs still
    /// queued end `Cancelled` rather than waiting forever.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobStatus, Pool, SubmitError};
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool.submit(|_| Ok(())).unwrap();
    /// pool.shutdown();
    /// assert_eq!(handle.status(), JobStatus::Completed); // drained
    /// assert_eq!(pool.execute(|| ()), Err(SubmitError::Shutdown));
    /// assert_eq!(pool.stats().alive, 0);
    /// ```
    pub fn shutdown(&self) {
        let _ = self.shutdown_inner(Mode::Graceful);
    }

    /// Immediate shutdown: refuses new jobs; queued jobs end `Cancelled`
    /// without running; running jobs' tokens are cancelled; then joins every
    /// thread. A running job that ignores its token is waited for, unless
    /// it is abandoned after its grace
    /// ([`Builder::abandon_after`](crate::Builder::abandon_after)); a thread
    /// detached that way is not waited for.
    ///
    /// Returns a [`ShutdownReport`]: the tracked jobs cancelled before they
    /// ran, those interrupted and how each ended, those abandoned, and the
    /// untracked jobs dropped. Called from one of the pool's own jobs, it
    /// starts the shutdown and returns at once, with what the report holds
    /// so far and [`joined`](ShutdownReport::joined) `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobStatus, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let (started_tx, started_rx) = std::sync::mpsc::channel();
    /// let running = pool
    ///     .submit(move |token| {
    ///         started_tx.send(()).unwrap();
    ///         token.sleep(Duration::from_secs(60))?;
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// let queued = pool.submit(|_| Ok(())).unwrap();
    /// started_rx.recv().unwrap();
    /// let report = pool.shutdown_now();
    /// assert_eq!(running.status(), JobStatus::Cancelled);
    /// assert_eq!(queued.status(), JobStatus::Cancelled);
    /// assert_eq!(report.cancelled, vec![queued.id()]);
    /// ```
    pub fn shutdown_now(&self) -> ShutdownReport {
        let joined = self.shutdown_inner(Mode::Now);
        self.report(joined)
    }

    /// Graceful shutdown for up to `timeout`; if jobs are still running
    /// then, escalates to [`shutdown_now`](Self::shutdown_now) and waits up
    /// to `timeout` again for the cancelled jobs to return. So it returns
    /// within about twice `timeout`.
    ///
    /// Returns a [`ShutdownReport`] (empty but for
    /// [`joined`](ShutdownReport::joined) when the graceful part was
    /// enough). [`ShutdownReport::joined`] says whether every thread of the
    /// pool exited and was joined; if not, the remaining threads are left to
    /// finish on their own (each exits as soon as its job returns), and
    /// later `shutdown` calls or dropping the pool no longer wait for them.
    /// Called from one of the pool's own jobs, it starts the shutdown and
    /// returns at once, not joined.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = harbor_pool::Pool::new(2).unwrap();
    /// pool.execute(|| ()).unwrap();
    /// let report = pool.shutdown_timeout(Duration::from_secs(10));
    /// assert!(report.joined());
    /// assert!(report.cancelled.is_empty());
    /// ```
    pub fn shutdown_timeout(&self, timeout: Duration) -> ShutdownReport {
        let joined = self.shutdown_timeout_inner(timeout);
        self.report(joined)
    }

    /// `true` once shutdown has begun (new jobs are refused).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// assert!(!pool.is_shutdown());
    /// pool.shutdown();
    /// assert!(pool.is_shutdown());
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.shared.is_closed()
    }

    /// `true` (and logs) when called on one of this pool's own threads (a
    /// job, or a closure the supervisor drops), where waiting for the pool
    /// would wait for the caller itself.
    fn on_own_worker(&self, operation: &str) -> bool {
        let own = worker::is_own_thread(self.shared.id);
        if own {
            // Contained: this runs in `Drop`, possibly while unwinding.
            log_quietly!(log::warn!(
                "{operation} called on one of the pool's own threads; not waiting"
            ));
        }
        own
    }
}

impl Drop for Pool {
    /// Same as [`shutdown`](Pool::shutdown): no thread is left behind.
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.config.thread_name)
            .field("shutdown", &self.is_shutdown())
            .field("stats", &self.stats())
            .finish()
    }
}
