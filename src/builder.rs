//! [`Builder`]: a pool's configuration, validated by [`Builder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::BuildError;
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
    pub(crate) restart_limit: u32,
    pub(crate) restart_window: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) on_thread_start: Option<Hook>,
    pub(crate) on_thread_stop: Option<Hook>,
}

/// The default number of finished job records kept for status queries.
pub const DEFAULT_RETAIN_FINISHED: usize = 10_000;

/// Configures and builds a [`Pool`].
///
/// Setters take and return the builder by value, like
/// [`std::thread::Builder`]. Nothing is checked until [`build`](Self::build),
/// which reports bad values as a [`BuildError`] rather than panicking.
///
/// | setting | default |
/// |---|---|
/// | [`workers`](Self::workers) | [`std::thread::available_parallelism`] (1 if unknown) |
/// | [`thread_name`](Self::thread_name) | `"harbor-worker"` |
/// | [`stack_size`](Self::stack_size) | the standard library's default |
/// | [`queue_capacity`](Self::queue_capacity) | unbounded |
/// | [`retain_finished`](Self::retain_finished) | 10 000 records |
/// | [`restart_limit`](Self::restart_limit) | 10 restarts per 60 s |
/// | [`restart_backoff`](Self::restart_backoff) | 100 ms, doubling up to 10 s |
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
                workers: std::thread::available_parallelism().map_or(1, usize::from),
                thread_name: "harbor-worker".to_owned(),
                stack_size: None,
                queue_capacity: None,
                retain_finished: DEFAULT_RETAIN_FINISHED,
                restart_limit: 10,
                restart_window: Duration::from_secs(60),
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(10),
                on_thread_start: None,
                on_thread_stop: None,
            },
        }
    }

    /// The number of worker threads. Zero is refused by `build`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(harbor_pool::Pool::builder().workers(0).build().is_err());
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

    /// The stack size of each worker thread, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::builder().stack_size(4 << 20).workers(1).build().unwrap();
    /// assert_eq!(pool.submit(|_| Ok(1)).unwrap().join().unwrap(), 1);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.config.stack_size = Some(bytes);
        self
    }

    /// Bounds the queue of jobs waiting for a worker. When it is full,
    /// [`Pool::submit`] and [`Pool::execute`] block until there is room (or
    /// the pool shuts down) and the `try_` methods return
    /// [`SubmitError::QueueFull`](crate::SubmitError::QueueFull). Zero is
    /// refused by `build`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(harbor_pool::Pool::builder().queue_capacity(0).build().is_err());
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
    /// assert_eq!(pool.status(id), None); // forgotten
    /// ```
    pub fn retain_finished(mut self, records: usize) -> Self {
        self.config.retain_finished = records;
        self
    }

    /// Restart-storm threshold: once more than `restarts` worker respawns
    /// happen within `window`, further respawns are delayed with capped
    /// exponential backoff (see [`restart_backoff`](Self::restart_backoff))
    /// and logged at error level.
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
    /// refuses a zero `initial` or an `initial` above `max`.
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
    /// never returns keeps `build` from returning.
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

    /// Validates the configuration and starts the pool's threads.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for zero workers, a zero queue capacity, a thread
    /// name with a NUL byte, an invalid backoff, or a thread the OS refused
    /// to start (threads already started are stopped first).
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
        if config.queue_capacity == Some(0) {
            return Err(BuildError::ZeroQueueCapacity);
        }
        if config.thread_name.contains('\0') {
            return Err(BuildError::InvalidThreadName);
        }
        if config.backoff_initial.is_zero() || config.backoff_initial > config.backoff_max {
            return Err(BuildError::InvalidBackoff);
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
            .field("restart_limit", &(c.restart_limit, c.restart_window))
            .field("restart_backoff", &(c.backoff_initial, c.backoff_max))
            .field("on_thread_start", &c.on_thread_start.is_some())
            .field("on_thread_stop", &c.on_thread_stop.is_some())
            .finish()
    }
}
