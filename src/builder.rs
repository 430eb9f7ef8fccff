//! [`Builder`]: a pool's configuration, validated by [`Builder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::BuildError;
use crate::forensics::{self, CapturePanics, PanicCallback, PanicReport, Settings};
use crate::observer::JobObserver;
use crate::pool::Pool;

/// A hook run on a worker thread with the worker's index.
pub(crate) type Hook = Arc<dyn Fn(usize) + Send + Sync + 'static>;

/// Everything a pool is configured with. Validated; read-only once built.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) retain_finished: usize,
    pub(crate) latency_metrics: bool,
    pub(crate) restart_limit: u32,
    pub(crate) restart_window: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) on_thread_start: Option<Hook>,
    pub(crate) on_thread_stop: Option<Hook>,
    pub(crate) abandon_after: Option<Duration>,
    /// `None`: as many as `workers`.
    pub(crate) max_stray_threads: Option<usize>,
    /// What the workers' capture slots record, and whether job panics reach
    /// the previous panic hook (`forensics.rs`).
    pub(crate) forensics: Settings,
    pub(crate) on_panic: Option<PanicCallback>,
    /// Receives tracked jobs' transitions (`observer.rs`).
    pub(crate) observer: Option<Arc<dyn JobObserver>>,
    /// Jobs with unobserved transitions the buffer holds before it
    /// overflows.
    pub(crate) observer_capacity: usize,
    /// How long shutdown waits for the observer's final drain.
    pub(crate) observer_shutdown_timeout: Duration,
}

/// The default number of finished job records kept for status queries.
pub const DEFAULT_RETAIN_FINISHED: usize = 10_000;

/// The default capacity of the observer's buffer, in jobs
/// ([`Builder::observer_capacity`]).
const DEFAULT_OBSERVER_CAPACITY: usize = 65_536;

/// How long shutdown waits for the observer by default
/// ([`Builder::observer_shutdown_timeout`]).
const DEFAULT_OBSERVER_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures and builds a [`Pool`].
///
/// Setters take and return the builder by value, like
/// [`std::thread::Builder`]. Nothing is checked until [`build`](Self::build),
/// which validates every setting and reports a bad one as a [`BuildError`]
/// naming it, rather than panicking, aborting or silently ignoring it.
///
/// | setting | default | accepted |
/// |---|---|---|
/// | [`workers`](Self::workers) | [`std::thread::available_parallelism`] (1 if unknown), at most [`MAX_WORKERS`](Self::MAX_WORKERS) | 1 to [`MAX_WORKERS`](Self::MAX_WORKERS) (4096) |
/// | [`thread_name`](Self::thread_name) | `"harbor-worker"` | any string without a NUL byte |
/// | [`stack_size`](Self::stack_size) | the standard library's default | [`MIN_STACK_SIZE`](Self::MIN_STACK_SIZE) (64 KiB) to [`MAX_STACK_SIZE`](Self::MAX_STACK_SIZE) (1 GiB) |
/// | [`queue_capacity`](Self::queue_capacity) | unbounded | 1 to `usize::MAX`; nothing is allocated up front |
/// | [`retain_finished`](Self::retain_finished) | 10 000 records | any |
/// | [`latency_metrics`](Self::latency_metrics) | on | on or off |
/// | [`restart_limit`](Self::restart_limit) | 10 restarts per 60 s | any limit; a window above zero |
/// | [`restart_backoff`](Self::restart_backoff) | 100 ms, doubling up to 10 s | `0 < initial <= max <=` [`MAX_RESTART_BACKOFF`](Self::MAX_RESTART_BACKOFF) (1 h) |
/// | [`abandon_after`](Self::abandon_after) | off | any grace |
/// | [`max_stray_threads`](Self::max_stray_threads) | as many as `workers` | 0 to [`MAX_WORKERS`](Self::MAX_WORKERS) |
/// | [`capture_panics`](Self::capture_panics) | [`CapturePanics::Off`] | any |
/// | [`quiet_panics`](Self::quiet_panics) | `false` | any |
/// | [`on_panic`](Self::on_panic) | none | any callback |
/// | [`observer`](Self::observer) | none | any [`JobObserver`] |
/// | [`observer_capacity`](Self::observer_capacity) | 65 536 jobs | 1 to [`MAX_OBSERVER_CAPACITY`](Self::MAX_OBSERVER_CAPACITY) (2^24); nothing is allocated up front |
/// | [`observer_shutdown_timeout`](Self::observer_shutdown_timeout) | 5 s | any |
///
/// # Examples
///
/// ```
/// use harbor_pool::Pool;
/// use std::time::Duration;
///
/// let pool = Pool::builder()
///     .workers(4)
///     .thread_name("ingest")
///     .queue_capacity(1_000)
///     .retain_finished(5_000)
///     .restart_limit(10, Duration::from_secs(60))
///     .on_thread_start(|index| log::debug!("worker {index} up"))
///     .build()
///     .unwrap();
/// assert_eq!(pool.stats().workers, 4);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    config: Config,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// The most worker threads a pool may have: 4096.
    ///
    /// Each worker is an OS thread with a stack of its own, and a counter
    /// line of its own that [`Pool::stats`] and [`Pool::join`] sum over
    /// every worker. A few thousand threads is already far more than a
    /// machine has cores, even for blocking work; beyond that, threads
    /// cost more in memory and scheduling than they return.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Builder};
    /// let err = Builder::new().workers(Builder::MAX_WORKERS + 1).build().unwrap_err();
    /// assert!(matches!(err, BuildError::TooManyWorkers { requested: 4097, max: 4096 }));
    /// ```
    pub const MAX_WORKERS: usize = 4096;

    /// The smallest worker stack size accepted: 64 KiB.
    ///
    /// The standard library raises a smaller size (even zero) to the
    /// platform's minimum, often 16 KiB, and such a stack overflows while a
    /// panicking job unwinds (the panic machinery alone takes about 32 KiB).
    /// A stack overflow aborts the whole process; nothing can catch it.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Builder};
    /// let err = Builder::new().stack_size(0).build().unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidStackSize { requested: 0, .. }));
    /// let pool = Builder::new().workers(1).stack_size(Builder::MIN_STACK_SIZE).build().unwrap();
    /// assert_eq!(pool.submit(|_| Ok(2)).unwrap().join().unwrap(), 2);
    /// ```
    pub const MIN_STACK_SIZE: usize = 64 << 10;

    /// The largest observer buffer accepted: 2^24 (16 777 216) jobs.
    ///
    /// The buffer allocates as it fills, about 16 bytes per job, and each
    /// job in it keeps its record alive until the observer drains it; past
    /// millions of jobs waiting, the observer is not keeping up and memory,
    /// not the buffer, would be the limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Builder};
    /// let err = Builder::new()
    ///     .observer_capacity(Builder::MAX_OBSERVER_CAPACITY + 1)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidObserverCapacity { max: 16_777_216, .. }));
    /// ```
    pub const MAX_OBSERVER_CAPACITY: usize = 1 << 24;

    /// The largest worker stack size accepted: 1 GiB.
    ///
    /// Every worker reserves its whole stack when it starts; far larger
    /// sizes make the OS refuse the thread (`usize::MAX` is simply invalid).
    /// Work that needs more than 1 GiB of stack belongs on a thread of its
    /// own.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Builder};
    /// let err = Builder::new().stack_size(Builder::MAX_STACK_SIZE + 1).build().unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidStackSize { .. }));
    /// ```
    pub const MAX_STACK_SIZE: usize = 1 << 30;

    /// The longest restart backoff accepted: one hour.
    ///
    /// A worker left dead for longer than that is a pool that has stopped
    /// serving; the cap also keeps the supervisor's deadline arithmetic far
    /// from overflow.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Builder};
    /// use std::time::Duration;
    /// let err = Builder::new()
    ///     .restart_backoff(Duration::from_secs(1), Builder::MAX_RESTART_BACKOFF * 2)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidBackoff));
    /// ```
    pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(3600);

    /// A builder with the defaults listed above.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Builder::new().workers(1).build().unwrap();
    /// assert_eq!(pool.stats().workers, 1);
    /// ```
    pub fn new() -> Self {
        Builder {
            config: Config {
                workers: std::thread::available_parallelism()
                    .map_or(1, usize::from)
                    .min(Self::MAX_WORKERS),
                thread_name: "harbor-worker".to_owned(),
                stack_size: None,
                queue_capacity: None,
                retain_finished: DEFAULT_RETAIN_FINISHED,
                latency_metrics: true,
                restart_limit: 10,
                restart_window: Duration::from_secs(60),
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(10),
                on_thread_start: None,
                on_thread_stop: None,
                abandon_after: None,
                max_stray_threads: None,
                forensics: Settings::default(),
                on_panic: None,
                observer: None,
                observer_capacity: DEFAULT_OBSERVER_CAPACITY,
                observer_shutdown_timeout: DEFAULT_OBSERVER_SHUTDOWN_TIMEOUT,
            },
        }
    }

    /// The number of worker threads. `build` refuses zero
    /// ([`BuildError::ZeroWorkers`]) and more than
    /// [`MAX_WORKERS`](Self::MAX_WORKERS)
    /// ([`BuildError::TooManyWorkers`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Pool};
    /// assert!(matches!(Pool::builder().workers(0).build(), Err(BuildError::ZeroWorkers)));
    /// assert!(matches!(
    ///     Pool::builder().workers(usize::MAX).build(),
    ///     Err(BuildError::TooManyWorkers { .. })
    /// ));
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers;
        self
    }

    /// The worker threads' name prefix: workers are `"{name}-0"`,
    /// `"{name}-1"`, ..., a respawned worker keeps its name, and the
    /// supervisor is `"{name}-supervisor"`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::builder().thread_name("io").workers(1).build().unwrap();
    /// let handle = pool.submit(|_| Ok(std::thread::current().name().map(str::to_owned))).unwrap();
    /// assert_eq!(handle.join().unwrap().as_deref(), Some("io-0"));
    /// ```
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.config.thread_name = name.into();
        self
    }

    /// The stack size of each worker thread, in bytes. `build` refuses a
    /// size below [`MIN_STACK_SIZE`](Self::MIN_STACK_SIZE) (64 KiB) or above
    /// [`MAX_STACK_SIZE`](Self::MAX_STACK_SIZE) (1 GiB)
    /// ([`BuildError::InvalidStackSize`]). The stack must also hold what
    /// your jobs need: a job that overflows it aborts the process.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::builder().stack_size(4 << 20).workers(1).build().unwrap();
    /// assert_eq!(pool.submit(|_| Ok(1)).unwrap().join().unwrap(), 1);
    /// assert!(harbor_pool::Pool::builder().stack_size(0).build().is_err());
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.config.stack_size = Some(bytes);
        self
    }

    /// Bounds the queue of jobs waiting for a worker. When it is full,
    /// [`Pool::submit`] and [`Pool::execute`] block until there is room (or
    /// the pool shuts down) and the `try_` methods return
    /// [`SubmitError::QueueFull`](crate::SubmitError::QueueFull); called on
    /// one of the pool's own threads, the blocking methods return
    /// `QueueFull` too rather than wait for room only that thread could
    /// make.
    ///
    /// A job holds its slot while it is pending: a worker starting it, or a
    /// cancel (by id, deadline or shutdown) while it is still queued, frees
    /// the slot at once.
    ///
    /// Any capacity from 1 to `usize::MAX` is accepted, and none allocates
    /// anything up front: the queue grows with the jobs actually queued.
    /// `build` refuses zero ([`BuildError::ZeroQueueCapacity`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Pool};
    /// assert!(matches!(
    ///     Pool::builder().queue_capacity(0).build(),
    ///     Err(BuildError::ZeroQueueCapacity)
    /// ));
    /// let pool = Pool::builder().queue_capacity(usize::MAX).build().unwrap();
    /// assert_eq!(pool.submit(|_| Ok(1)).unwrap().join().unwrap(), 1);
    /// ```
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.queue_capacity = Some(capacity);
        self
    }

    /// How many finished job records the pool keeps for
    /// [`status`](Pool::status), [`info`](Pool::info) and
    /// [`wait`](Pool::wait). Beyond that, the oldest finished records are
    /// forgotten and their ids answer `None`. They are forgotten in batches
    /// (of at most a sixteenth of `records`, and at most 512), so the count
    /// kept moves between `records` minus one batch and `records`; once
    /// [`Pool::join`] returns, it has been applied to every finished job.
    /// Pending and running jobs are never forgotten, and a
    /// [`JobHandle`](crate::JobHandle) keeps working regardless. Zero keeps
    /// no finished record at all.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::builder().retain_finished(1).workers(1).build().unwrap();
    /// let first = pool.submit(|_| Ok(())).unwrap();
    /// let id = first.id();
    /// first.join().unwrap();
    /// pool.submit(|_| Ok(())).unwrap().join().unwrap();
    /// // A handle's join can return just before its record is retired;
    /// // the pool's join waits for that bookkeeping too.
    /// pool.join();
    /// assert_eq!(pool.status(id), None); // forgotten
    /// ```
    pub fn retain_finished(mut self, records: usize) -> Self {
        self.config.retain_finished = records;
        self
    }

    /// Whether to keep the latency histograms of
    /// [`Pool::metrics`](Pool::metrics) (queue wait and run time of every
    /// job). On by default.
    ///
    /// For an untracked job they cost two clock reads (about 11 ns each
    /// where the CPU has an invariant TSC), one on the submitting thread and
    /// one on the worker between two jobs (a third when the worker was
    /// idle), plus two bucket updates: a noticeable share of an empty
    /// untracked job (see `docs/benchmarks.md`). A tracked job reads the
    /// same clock for its [`Pool::info`] times anyway, so for it only the
    /// bucket updates remain. Off, no clock is read for the histograms and
    /// `metrics()` returns empty histograms; job progress and `info`'s
    /// times are unaffected.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Pool;
    ///
    /// let pool = Pool::builder().workers(1).latency_metrics(false).build().unwrap();
    /// pool.execute(|| ()).unwrap();
    /// pool.join();
    /// assert_eq!(pool.metrics().run_time.count(), 0);
    /// assert_eq!(pool.stats().completed, 1);
    /// ```
    pub fn latency_metrics(mut self, on: bool) -> Self {
        self.config.latency_metrics = on;
        self
    }

    /// Restart-storm threshold: once more than `restarts` worker respawns
    /// happen within `window`, further respawns are delayed with capped
    /// exponential backoff (see [`restart_backoff`](Self::restart_backoff))
    /// and logged at error level. A limit of zero delays every respawn.
    ///
    /// Respawns run at most `restarts` per `window` before the backoff
    /// applies, so the window should be long next to a thread start (tens
    /// of microseconds). `build` refuses a zero window
    /// ([`BuildError::ZeroRestartWindow`]): no respawn would ever count, and
    /// the pool would respawn as fast as it can.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = harbor_pool::Pool::builder()
    ///     .restart_limit(3, Duration::from_secs(10))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.stats().restarts, 0);
    /// ```
    pub fn restart_limit(mut self, restarts: u32, window: std::time::Duration) -> Self {
        self.config.restart_limit = restarts;
        self.config.restart_window = window;
        self
    }

    /// The backoff applied during a restart storm: the first delayed respawn
    /// waits `initial`, each further one twice as long, up to `max`. The
    /// delay resets once a respawn happens within the limit again. `build`
    /// refuses a zero `initial`, an `initial` above `max`, or a `max` above
    /// [`MAX_RESTART_BACKOFF`](Self::MAX_RESTART_BACKOFF) (one hour)
    /// ([`BuildError::InvalidBackoff`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let bad = harbor_pool::Pool::builder()
    ///     .restart_backoff(Duration::from_secs(2), Duration::from_secs(1))
    ///     .build();
    /// assert!(bad.is_err());
    /// ```
    pub fn restart_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max;
        self
    }

    /// Runs `hook(index)` on each worker thread when it starts, before it
    /// takes jobs (also on respawned workers). If the hook panics, the
    /// thread dies and the supervisor respawns it, subject to the restart
    /// limit. [`build`](Self::build) waits until every worker's first hook
    /// call has returned or panicked (not for respawns), so a hook that
    /// never returns keeps `build` from returning. The thread is not a
    /// worker yet while its hook runs: a hook that joins a job of its own
    /// pool waits for another worker to run it (a job joining one does not
    /// run it inline there).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let started = Arc::new(AtomicUsize::new(0));
    /// let seen = Arc::clone(&started);
    /// let pool = harbor_pool::Pool::builder()
    ///     .workers(2)
    ///     .on_thread_start(move |_index| {
    ///         seen.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// pool.shutdown();
    /// assert_eq!(started.load(Ordering::SeqCst), 2);
    /// ```
    pub fn on_thread_start<F>(mut self, hook: F) -> Self
    where
        F: Fn(usize) + Send + Sync + 'static,
    {
        self.config.on_thread_start = Some(Arc::new(hook));
        self
    }

    /// Runs `hook(index)` on each worker thread as it exits at shutdown.
    /// It does not run on a thread that dies by panicking.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let stopped = Arc::new(AtomicUsize::new(0));
    /// let seen = Arc::clone(&stopped);
    /// let pool = harbor_pool::Pool::builder()
    ///     .workers(3)
    ///     .on_thread_stop(move |_index| {
    ///         seen.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// drop(pool);
    /// assert_eq!(stopped.load(Ordering::SeqCst), 3);
    /// ```
    pub fn on_thread_stop<F>(mut self, hook: F) -> Self
    where
        F: Fn(usize) + Send + Sync + 'static,
    {
        self.config.on_thread_stop = Some(Arc::new(hook));
        self
    }

    /// What the pool records about a job's panic beyond its message and
    /// worker: nothing ([`CapturePanics::Off`], the default), where it
    /// panicked ([`CapturePanics::Location`]), or that and a backtrace
    /// ([`CapturePanics::LocationAndBacktrace`]). It shows in
    /// [`JobInfo::panic`](crate::JobInfo::panic), in the pool's log line for
    /// the panic, and in [`on_panic`](Self::on_panic)'s report.
    ///
    /// Capturing needs a panic hook, which [`build`](Self::build) installs
    /// the first time a pool asks for one, once per process. That hook
    /// chains to the hook installed before it (the default one, which
    /// prints panics, or yours): every panic it is not told to silence
    /// reaches that hook unchanged. It records only panics of jobs running
    /// on the workers of a pool whose settings ask for it, with that pool's
    /// settings: another pool in the same process, with other settings or
    /// `Off`, behaves as if the hook were not there. Install your own hook
    /// before building such a pool; a hook set afterwards with
    /// [`std::panic::set_hook`] replaces the pool's, and capturing stops
    /// (unless it chains to the hook it got from [`std::panic::take_hook`]).
    ///
    /// The location (and backtrace) is that of the last panic raised while
    /// the job ran whose message is the job's panic message, so a panic the
    /// job caught itself before panicking again is not mistaken for the
    /// one that ended it.
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
    /// let job = pool
    ///     .submit(|_| -> harbor_pool::JobResult<()> { std::panic::panic_any(17_u32) })
    ///     .unwrap();
    /// job.wait(std::time::Duration::from_secs(30));
    /// let panic = pool.info(job.id()).unwrap().panic.unwrap();
    /// assert!(panic.location.as_ref().unwrap().file.ends_with(".rs")); // any payload has one
    /// ```
    pub fn capture_panics(mut self, capture: CapturePanics) -> Self {
        self.config.forensics.capture = capture;
        self
    }

    /// Keeps this pool's job panics from the panic hook installed before
    /// the pool's (the default hook prints every panic to stderr, with
    /// `thread '...' panicked at ...`): the pool's own `log` warning (job
    /// id, worker, location when captured, message) is then their only
    /// report. Like [`capture_panics`](Self::capture_panics), this installs
    /// the pool's panic hook (once per process), which silences only panics
    /// raised while a job of this pool runs on one of its workers (also a
    /// panic the job catches itself). Panics anywhere else, including a
    /// worker's start hook and the [`on_panic`](Self::on_panic) callback,
    /// still reach the previous hook. Default `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobStatus, Pool};
    ///
    /// let pool = Pool::builder().workers(1).quiet_panics(true).build().unwrap();
    /// let job = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("not on stderr") }).unwrap();
    /// assert_eq!(
    ///     job.wait(std::time::Duration::from_secs(30)),
    ///     Some(JobStatus::Failed("not on stderr".into()))
    /// );
    /// ```
    pub fn quiet_panics(mut self, quiet: bool) -> Self {
        self.config.forensics.quiet = quiet;
        self
    }

    /// Calls `callback` for every job that panics, tracked or untracked
    /// ([`Pool::execute`]), with a [`PanicReport`]: the job's id when it
    /// has one, the worker, the message, and the location and backtrace when
    /// [`capture_panics`](Self::capture_panics) captured them. For alerting
    /// and metrics.
    ///
    /// It runs on the worker that ran the job, after the job's bookkeeping
    /// (its status is already terminal and counted, its waiters woken) and
    /// before the pool logs the panic, with no lock of the pool held. A slow
    /// callback delays only that worker's next job. A panic in the callback
    /// is caught and logged; it reaches the process's panic hook like any
    /// panic outside a job.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Pool;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let panics = Arc::new(AtomicUsize::new(0));
    /// let seen = Arc::clone(&panics);
    /// let pool = Pool::builder()
    ///     .workers(1)
    ///     .on_panic(move |report| {
    ///         assert_eq!(report.panic.message, "boom");
    ///         seen.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// pool.execute(|| panic!("boom")).unwrap();
    /// let job = pool.submit(|_| -> harbor_pool::JobResult<()> { panic!("boom") }).unwrap();
    /// let _ = job.join();
    /// pool.shutdown(); // joins the worker: its callbacks are over
    /// assert_eq!(panics.load(Ordering::SeqCst), 2);
    /// ```
    pub fn on_panic<F>(mut self, callback: F) -> Self
    where
        F: Fn(&PanicReport) + Send + Sync + 'static,
    {
        self.config.on_panic = Some(Arc::new(callback));
        self
    }

    /// Starts a pool without validating the settings: lets the unit tests
    /// check that the machinery itself survives values `build` refuses.
    #[cfg(test)]
    pub(crate) fn build_unchecked(self) -> Result<Pool, BuildError> {
        Pool::start(self.config)
    }

    /// Abandons a running job that has not returned `grace` after the pool
    /// cancelled its token (by id with [`Pool::cancel`], by its deadline,
    /// or by [`Pool::shutdown_now`]). Off by default: a job that never
    /// returns then keeps its worker for good.
    ///
    /// An abandoned job ends [`JobStatus::Abandoned`](crate::JobStatus::Abandoned)
    /// at once (status, `wait`, `join` and await see it), and its worker
    /// thread, still stuck in the job, is detached and replaced by a new
    /// thread under the same index and name, so the pool's capacity is
    /// restored. If the stuck job ever returns, its value is dropped and the
    /// detached thread exits without taking another job. Jobs running
    /// inline on that thread (a job that joined a pending job of its own
    /// pool) are abandoned with it. A job's own
    /// [`JobOptions::abandon_after`](crate::JobOptions::abandon_after)
    /// overrides this. One timer (the supervisor) drives every grace.
    ///
    /// A token cancelled by other code ([`CancelToken::cancel`](crate::CancelToken::cancel)
    /// on a clone) does not start the grace.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobError, JobOptions, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::builder()
    ///     .workers(1)
    ///     .abandon_after(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// // Ignores its token: blocks until the channel closes.
    /// let stuck = pool
    ///     .submit_with(JobOptions::new().timeout(Duration::from_millis(10)), move |_| {
    ///         let _ = rx.recv();
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// assert!(matches!(stuck.join(), Err(JobError::Abandoned)));
    /// // The pool still serves jobs, on a replacement thread.
    /// assert_eq!(pool.submit(|_| Ok(1)).unwrap().join().unwrap(), 1);
    /// assert_eq!(pool.stats().stray_threads, 1);
    /// drop(tx); // the stuck job returns; its thread exits
    /// ```
    pub fn abandon_after(mut self, grace: Duration) -> Self {
        self.config.abandon_after = Some(grace);
        self
    }

    /// The most detached (abandoned) worker threads that may be alive at
    /// once; by default as many as `workers`. Past it, a stuck job is still
    /// abandoned, but its thread stays in its place (no replacement starts,
    /// logged at error level) until a detached thread exits. Zero never
    /// replaces a stuck worker. `build` refuses more than
    /// [`MAX_WORKERS`](Self::MAX_WORKERS).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::builder().max_stray_threads(2).build().unwrap();
    /// assert_eq!(pool.stats().stray_threads, 0);
    /// ```
    pub fn max_stray_threads(mut self, threads: usize) -> Self {
        self.config.max_stray_threads = Some(threads);
        self
    }

    /// Attaches an observer that receives every tracked job's transitions
    /// (submitted, started, progress, ended) in coalesced batches, on a
    /// thread of the pool's own (`{thread_name}-observer`), never on a
    /// worker: see [`JobObserver`] for what is delivered and guaranteed.
    /// Untracked jobs ([`Pool::execute`]) are not observed.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobInfo, JobObserver, Pool};
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// #[derive(Default)]
    /// struct Count(AtomicUsize);
    /// impl JobObserver for Count {
    ///     fn observe(&self, batch: &[JobInfo]) {
    ///         self.0.fetch_add(batch.iter().filter(|i| i.status.is_terminal()).count(), Ordering::SeqCst);
    ///     }
    /// }
    ///
    /// let count = Arc::new(Count::default());
    /// let pool = Pool::builder().observer(count.clone()).build().unwrap();
    /// pool.submit(|_| Ok(())).unwrap();
    /// pool.execute(|| ()).unwrap(); // untracked: not observed
    /// pool.shutdown();
    /// assert_eq!(count.0.load(Ordering::SeqCst), 1);
    /// ```
    pub fn observer(mut self, observer: Arc<dyn JobObserver>) -> Self {
        self.config.observer = Some(observer);
        self
    }

    /// How many jobs with unobserved changes may wait for the observer
    /// before the buffer overflows; 65 536 by default. A job counts once
    /// however many transitions it makes while it waits (they coalesce).
    /// A transition that finds the buffer full is not delivered: it is
    /// counted in [`PoolStats::observer_overflows`](crate::PoolStats::observer_overflows)
    /// and logged (at most once a second), and the worker goes on; it never
    /// waits. `build` refuses 0 and more than
    /// [`MAX_OBSERVER_CAPACITY`](Self::MAX_OBSERVER_CAPACITY)
    /// ([`BuildError::InvalidObserverCapacity`]). Nothing is allocated up
    /// front.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Pool};
    /// let pool = Pool::builder().observer_capacity(1_024).build().unwrap();
    /// assert_eq!(pool.stats().observer_overflows, 0);
    /// assert!(matches!(
    ///     Pool::builder().observer_capacity(0).build(),
    ///     Err(BuildError::InvalidObserverCapacity { requested: 0, .. })
    /// ));
    /// ```
    pub fn observer_capacity(mut self, jobs: usize) -> Self {
        self.config.observer_capacity = jobs;
        self
    }

    /// How long a shutdown waits for the observer to deliver the last
    /// transitions once every worker has stopped; 5 s by default. An
    /// `observe` still running past it is left to finish on its detached
    /// thread (logged at error level, and counted in
    /// [`PoolStats::stray_threads`](crate::PoolStats::stray_threads) until it
    /// returns), and what was still buffered is not delivered: a blocked
    /// observer never makes a shutdown hang. Before that, a shutdown also
    /// waits up to this long for jobs cancelled on other threads to be
    /// counted, so their final states reach the buffer (at once, unless a
    /// job is stuck on a detached thread).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobInfo, JobObserver, Pool};
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    ///
    /// struct Stuck(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);
    /// impl JobObserver for Stuck {
    ///     fn observe(&self, _: &[JobInfo]) {
    ///         let _ = self.0.lock().unwrap().recv(); // blocks until released
    ///     }
    /// }
    ///
    /// let (release, blocked) = std::sync::mpsc::channel();
    /// let pool = Pool::builder()
    ///     .observer(Arc::new(Stuck(std::sync::Mutex::new(blocked))))
    ///     .observer_shutdown_timeout(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// pool.submit(|_| Ok(())).unwrap();
    /// let started = Instant::now();
    /// pool.shutdown(); // returns although `observe` is stuck
    /// assert!(started.elapsed() < Duration::from_secs(30));
    /// drop(release); // the observer returns; its thread exits
    /// ```
    pub fn observer_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.observer_shutdown_timeout = timeout;
        self
    }

    /// Validates the configuration and starts the pool's threads.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first setting outside the limits in the
    /// table above (checked in that order), or [`BuildError::Spawn`] for a
    /// thread the OS refused to start (threads already started are stopped
    /// first).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{BuildError, Pool};
    /// let err = Pool::builder().thread_name("a\0b").build().unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidThreadName));
    /// ```
    pub fn build(self) -> Result<Pool, BuildError> {
        let config = self.config;
        if config.workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        if config.workers > Self::MAX_WORKERS {
            return Err(BuildError::TooManyWorkers {
                requested: config.workers,
                max: Self::MAX_WORKERS,
            });
        }
        if config.thread_name.contains('\0') {
            return Err(BuildError::InvalidThreadName);
        }
        if let Some(bytes) = config.stack_size
            && !(Self::MIN_STACK_SIZE..=Self::MAX_STACK_SIZE).contains(&bytes)
        {
            return Err(BuildError::InvalidStackSize {
                requested: bytes,
                min: Self::MIN_STACK_SIZE,
                max: Self::MAX_STACK_SIZE,
            });
        }
        // Any other capacity is fine: the queue allocates per job, not per
        // slot (see `slots.rs`).
        if config.queue_capacity == Some(0) {
            return Err(BuildError::ZeroQueueCapacity);
        }
        if config.restart_window.is_zero() {
            return Err(BuildError::ZeroRestartWindow);
        }
        if config.backoff_initial.is_zero()
            || config.backoff_initial > config.backoff_max
            || config.backoff_max > Self::MAX_RESTART_BACKOFF
        {
            return Err(BuildError::InvalidBackoff);
        }
        if let Some(strays) = config.max_stray_threads
            && strays > Self::MAX_WORKERS
        {
            return Err(BuildError::TooManyStrayThreads {
                requested: strays,
                max: Self::MAX_WORKERS,
            });
        }
        if !(1..=Self::MAX_OBSERVER_CAPACITY).contains(&config.observer_capacity) {
            return Err(BuildError::InvalidObserverCapacity {
                requested: config.observer_capacity,
                max: Self::MAX_OBSERVER_CAPACITY,
            });
        }
        if config.forensics.needs_hook() {
            forensics::install();
        }
        Pool::start(config)
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("Builder")
            .field("workers", &c.workers)
            .field("thread_name", &c.thread_name)
            .field("stack_size", &c.stack_size)
            .field("queue_capacity", &c.queue_capacity)
            .field("retain_finished", &c.retain_finished)
            .field("latency_metrics", &c.latency_metrics)
            .field("restart_limit", &(c.restart_limit, c.restart_window))
            .field("restart_backoff", &(c.backoff_initial, c.backoff_max))
            .field("on_thread_start", &c.on_thread_start.is_some())
            .field("on_thread_stop", &c.on_thread_stop.is_some())
            .field("abandon_after", &c.abandon_after)
            .field("max_stray_threads", &c.max_stray_threads)
            .field("capture_panics", &c.forensics.capture)
            .field("quiet_panics", &c.forensics.quiet)
            .field("on_panic", &c.on_panic.is_some())
            .field("observer", &c.observer.is_some())
            .field("observer_capacity", &c.observer_capacity)
            .field("observer_shutdown_timeout", &c.observer_shutdown_timeout)
            .finish()
    }
}
