//! A minimal `ThreadPool` trait, so code written against it can swap pools.
//!
//! The trait is the one the PingCAP talent-plan key-value server course
//! uses: a constructor taking a thread count and a fire-and-forget `spawn`.
//! Three implementations are provided, so the same server can run on each
//! and be compared:
//!
//! | type | what it is |
//! |---|---|
//! | [`SharedQueueThreadPool`] | a harbor [`Pool`]: fixed workers, one shared queue, panics caught ([`Pool::execute`], the untracked fast path) |
//! | [`NaiveThreadPool`] | one new OS thread per job, the baseline the course starts from |
//! | `RayonThreadPool` | rayon's work-stealing pool (cargo feature `rayon`) |
//!
//! # Errors
//!
//! Construction reports a [`ThreadPoolError`], one concrete type for every
//! implementation rather than an associated type, so generic code can use
//! `P::new(n)?` without naming `P::Error` or adding bounds. It lives here
//! rather than in the crate's error module because it belongs to this
//! adapter layer only. Every implementation refuses zero threads with
//! [`ThreadPoolError::ZeroThreads`], even the naive pool that does not use
//! the number, so swapping pools never changes what is accepted.
//!
//! # `spawn` cannot fail loudly
//!
//! [`ThreadPool::spawn`] returns nothing, so a job that cannot be started
//! (the harbor pool was shut down through [`SharedQueueThreadPool::pool`],
//! or the OS refused the naive pool a thread) is **dropped without running**
//! and the loss is logged at error level through the [`log`] facade.
//! `spawn` never panics for it: a server's accept loop is the usual caller,
//! and a panic there would take the server down for one lost request. Code
//! that must know uses [`Pool::execute`] directly, which returns a
//! [`SubmitError`](crate::SubmitError).
//!
//! # Panics in jobs
//!
//! * [`SharedQueueThreadPool`] catches a panicking job, logs it at warn
//!   level and keeps the worker; the panic also reaches the process's panic
//!   hook.
//! * [`NaiveThreadPool`] runs each job on its own thread, so a panic ends
//!   only that thread; it reaches the panic hook and nothing else.
//! * `RayonThreadPool` installs a rayon panic handler that logs the panic
//!   at warn level (rayon's default is to abort the process).
//!
//! # Dropping a pool
//!
//! Dropping a [`SharedQueueThreadPool`] shuts the harbor pool down
//! gracefully: it waits for every queued job and joins its threads.
//! Dropping a [`NaiveThreadPool`] or a `RayonThreadPool` does not wait:
//! jobs already spawned finish on their own.
//!
//! # Examples
//!
//! A server generic over the pool it runs requests on:
//!
//! ```
//! use harbor_pool::compat::{NaiveThreadPool, SharedQueueThreadPool, ThreadPool, ThreadPoolError};
//! use std::sync::mpsc;
//!
//! /// Answers each request on a pool of its choosing.
//! struct Server<P: ThreadPool> {
//!     pool: P,
//! }
//!
//! impl<P: ThreadPool> Server<P> {
//!     fn new(threads: u32) -> Result<Self, ThreadPoolError> {
//!         Ok(Server { pool: P::new(threads)? })
//!     }
//!
//!     fn handle(&self, request: u64, reply: mpsc::Sender<u64>) {
//!         self.pool.spawn(move || {
//!             let _ = reply.send(request * 2);
//!         });
//!     }
//! }
//!
//! fn serve<P: ThreadPool>() -> Result<u64, ThreadPoolError> {
//!     let server = Server::<P>::new(2)?;
//!     let (reply, replies) = mpsc::channel();
//!     for request in 1..=10 {
//!         server.handle(request, reply.clone());
//!     }
//!     drop(reply);
//!     // Ends once every job has run and dropped its sender.
//!     Ok(replies.iter().sum())
//! }
//!
//! assert_eq!(serve::<SharedQueueThreadPool>()?, 110);
//! assert_eq!(serve::<NaiveThreadPool>()?, 110);
//! # #[cfg(feature = "rayon")]
//! # assert_eq!(serve::<harbor_pool::compat::RayonThreadPool>()?, 110);
//! # Ok::<(), ThreadPoolError>(())
//! ```

use std::thread;

use crate::error::BuildError;
use crate::pool::Pool;

/// A pool that runs fire-and-forget jobs, as the course's key-value server
/// uses it.
///
/// # Examples
///
/// ```
/// use harbor_pool::compat::{SharedQueueThreadPool, ThreadPool};
/// use std::sync::mpsc;
///
/// let pool = SharedQueueThreadPool::new(2).unwrap();
/// let (tx, rx) = mpsc::channel();
/// pool.spawn(move || tx.send(7).unwrap());
/// assert_eq!(rx.recv().unwrap(), 7);
/// ```
pub trait ThreadPool {
    /// A pool with `threads` threads.
    ///
    /// # Errors
    ///
    /// [`ThreadPoolError::ZeroThreads`] for zero; otherwise whatever stops
    /// the implementation from starting its threads.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::compat::{NaiveThreadPool, ThreadPool, ThreadPoolError};
    /// assert!(NaiveThreadPool::new(4).is_ok());
    /// assert!(matches!(NaiveThreadPool::new(0), Err(ThreadPoolError::ZeroThreads)));
    /// ```
    fn new(threads: u32) -> Result<Self, ThreadPoolError>
    where
        Self: Sized;

    /// Runs `job` on the pool, some time later.
    ///
    /// Never blocks on the job and never panics. A job that cannot be
    /// started is dropped without running and logged at error level (see
    /// the [module docs](self#spawn-cannot-fail-loudly)).
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::compat::{NaiveThreadPool, ThreadPool};
    /// use std::sync::mpsc;
    ///
    /// let pool = NaiveThreadPool::new(1).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// pool.spawn(move || tx.send("done").unwrap());
    /// assert_eq!(rx.recv().unwrap(), "done");
    /// ```
    fn spawn<F>(&self, job: F)
    where
        F: FnOnce() + Send + 'static;
}

/// Why a [`ThreadPool`] could not be created.
///
/// # Examples
///
/// ```
/// use harbor_pool::compat::{SharedQueueThreadPool, ThreadPool, ThreadPoolError};
/// let err = SharedQueueThreadPool::new(0).unwrap_err();
/// assert!(matches!(err, ThreadPoolError::ZeroThreads));
/// assert_eq!(err.to_string(), "a thread pool needs at least one thread");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThreadPoolError {
    /// Zero threads were asked for.
    #[error("a thread pool needs at least one thread")]
    ZeroThreads,
    /// The harbor pool could not be built (the OS refused a thread).
    #[error("failed to build the pool: {0}")]
    Build(#[from] BuildError),
    /// Rayon could not build its pool.
    #[cfg(feature = "rayon")]
    #[error("failed to build the rayon pool: {0}")]
    Rayon(#[from] rayon::ThreadPoolBuildError),
}

fn check_threads(threads: u32) -> Result<usize, ThreadPoolError> {
    if threads == 0 {
        return Err(ThreadPoolError::ZeroThreads);
    }
    // Lossless: every platform with threads in std has a usize of 32 bits or more.
    Ok(threads as usize)
}

/// A harbor [`Pool`] behind [`ThreadPool`]: fixed supervised workers on one
/// shared queue; `spawn` is [`Pool::execute`], the untracked fast path.
///
/// A panicking job is caught and logged; the worker survives. Dropping the
/// pool waits for every queued job (a graceful shutdown).
///
/// # Examples
///
/// ```
/// use harbor_pool::compat::{SharedQueueThreadPool, ThreadPool};
///
/// let pool = SharedQueueThreadPool::new(2).unwrap();
/// pool.spawn(|| panic!("contained"));
/// pool.spawn(|| ());
/// pool.pool().join();
/// let stats = pool.pool().stats();
/// assert_eq!((stats.alive, stats.completed, stats.panicked), (2, 1, 1));
/// ```
#[derive(Debug)]
pub struct SharedQueueThreadPool {
    pool: Pool,
}

impl SharedQueueThreadPool {
    /// The harbor pool underneath, for its statistics, `join` and shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::compat::{SharedQueueThreadPool, ThreadPool};
    /// let pool = SharedQueueThreadPool::new(3).unwrap();
    /// assert_eq!(pool.pool().stats().workers, 3);
    /// ```
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl From<Pool> for SharedQueueThreadPool {
    /// Wraps a pool configured with [`Pool::builder`]. With a bounded queue,
    /// `spawn` blocks while the queue is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Pool;
    /// use harbor_pool::compat::{SharedQueueThreadPool, ThreadPool};
    ///
    /// let pool = Pool::builder().workers(1).thread_name("kvs").build().unwrap();
    /// let pool = SharedQueueThreadPool::from(pool);
    /// pool.spawn(|| assert_eq!(std::thread::current().name(), Some("kvs-0")));
    /// pool.pool().join();
    /// assert_eq!(pool.pool().stats().completed, 1);
    /// ```
    fn from(pool: Pool) -> Self {
        SharedQueueThreadPool { pool }
    }
}

impl ThreadPool for SharedQueueThreadPool {
    /// A harbor pool with `threads` workers and the default settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::compat::{SharedQueueThreadPool, ThreadPool};
    /// let pool = SharedQueueThreadPool::new(2).unwrap();
    /// assert_eq!(pool.pool().stats().workers, 2);
    /// ```
    fn new(threads: u32) -> Result<Self, ThreadPoolError> {
        Ok(SharedQueueThreadPool {
            pool: Pool::new(check_threads(threads)?)?,
        })
    }

    /// [`Pool::execute`]. After the pool was shut down the job is dropped
    /// without running and the loss is logged at error level.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::compat::{SharedQueueThreadPool, ThreadPool};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let pool = SharedQueueThreadPool::new(1).unwrap();
    /// pool.pool().shutdown();
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let flag = Arc::clone(&ran);
    /// pool.spawn(move || flag.store(true, Ordering::SeqCst)); // dropped, logged
    /// assert!(!ran.load(Ordering::SeqCst));
    /// assert_eq!(Arc::strong_count(&ran), 1); // the job was dropped
    /// ```
    fn spawn<F>(&self, job: F)
    where
        F: FnOnce() + Send + 'static,
    {
        if let Err(error) = self.pool.execute(job) {
            log::error!("spawn: job dropped without running: {error}");
        }
    }
}

/// One new OS thread per job: no queue, no reuse, no limit. The baseline.
///
/// The thread count given to [`new`](ThreadPool::new) is only checked, not
/// used. A panicking job ends its own thread and reaches the panic hook;
/// nothing else notices. Dropping the pool does not wait for its threads.
///
/// # Examples
///
/// ```
/// use harbor_pool::compat::{NaiveThreadPool, ThreadPool};
/// use std::sync::mpsc;
///
/// let pool = NaiveThreadPool::new(1).unwrap();
/// let (tx, rx) = mpsc::channel();
/// for i in 0..4 {
///     let tx = tx.clone();
///     pool.spawn(move || tx.send(i).unwrap());
/// }
/// drop(tx);
/// assert_eq!(rx.iter().sum::<i32>(), 6);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NaiveThreadPool {
    _private: (),
}

impl ThreadPool for NaiveThreadPool {
    /// A naive pool; `threads` must not be zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::compat::{NaiveThreadPool, ThreadPool};
    /// assert!(NaiveThreadPool::new(8).is_ok());
    /// assert!(NaiveThreadPool::new(0).is_err());
    /// ```
    fn new(threads: u32) -> Result<Self, ThreadPoolError> {
        check_threads(threads)?;
        Ok(NaiveThreadPool { _private: () })
    }

    /// Starts a thread for `job`. If the OS refuses the thread, the job is
    /// dropped without running and the loss is logged at error level.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::compat::{NaiveThreadPool, ThreadPool};
    /// use std::sync::mpsc;
    ///
    /// let pool = NaiveThreadPool::new(1).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let here = std::thread::current().id();
    /// pool.spawn(move || tx.send(std::thread::current().id()).unwrap());
    /// assert_ne!(rx.recv().unwrap(), here);
    /// ```
    fn spawn<F>(&self, job: F)
    where
        F: FnOnce() + Send + 'static,
    {
        // The handle is dropped: the thread is detached.
        if let Err(error) = thread::Builder::new().spawn(job) {
            log::error!("spawn: job dropped without running: cannot start a thread: {error}");
        }
    }
}

#[cfg(feature = "rayon")]
pub use self::rayon_pool::RayonThreadPool;

#[cfg(feature = "rayon")]
mod rayon_pool {
    use super::{ThreadPool, ThreadPoolError, check_threads};
    use crate::unwind;

    /// rayon's work-stealing pool behind [`ThreadPool`] (cargo feature
    /// `rayon`); `spawn` is [`rayon::ThreadPool::spawn`].
    ///
    /// A panic handler is installed that logs a panicking job at warn level
    /// and keeps the worker (rayon's default would abort the process).
    /// Dropping the pool does not wait for queued jobs; they still run.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::compat::{RayonThreadPool, ThreadPool};
    /// use std::sync::mpsc;
    ///
    /// let pool = RayonThreadPool::new(2).unwrap();
    /// pool.spawn(|| panic!("contained"));
    /// let (tx, rx) = mpsc::channel();
    /// pool.spawn(move || tx.send(1).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 1);
    /// assert_eq!(pool.pool().current_num_threads(), 2);
    /// ```
    #[derive(Debug)]
    pub struct RayonThreadPool {
        pool: rayon::ThreadPool,
    }

    impl RayonThreadPool {
        /// The rayon pool underneath.
        ///
        /// # Examples
        ///
        /// ```
        /// use harbor_pool::compat::{RayonThreadPool, ThreadPool};
        /// let pool = RayonThreadPool::new(3).unwrap();
        /// assert_eq!(pool.pool().current_num_threads(), 3);
        /// ```
        pub fn pool(&self) -> &rayon::ThreadPool {
            &self.pool
        }
    }

    impl ThreadPool for RayonThreadPool {
        /// A rayon pool of `threads` threads named `rayon-{index}`.
        ///
        /// # Examples
        ///
        /// ```
        /// use harbor_pool::compat::{RayonThreadPool, ThreadPool};
        /// assert!(RayonThreadPool::new(0).is_err());
        /// assert_eq!(RayonThreadPool::new(2).unwrap().pool().current_num_threads(), 2);
        /// ```
        fn new(threads: u32) -> Result<Self, ThreadPoolError> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(check_threads(threads)?)
                .thread_name(|index| format!("rayon-{index}"))
                .panic_handler(|payload| {
                    log::warn!(
                        "job panicked on a rayon thread: {}",
                        unwind::message(&*payload)
                    );
                    // A payload whose `Drop` panics must not unwind out of
                    // rayon's handler (that would abort).
                    unwind::dispose(payload);
                })
                .build()?;
            Ok(RayonThreadPool { pool })
        }

        /// [`rayon::ThreadPool::spawn`]; never fails.
        ///
        /// # Examples
        ///
        /// ```
        /// use harbor_pool::compat::{RayonThreadPool, ThreadPool};
        /// use std::sync::mpsc;
        ///
        /// let pool = RayonThreadPool::new(1).unwrap();
        /// let (tx, rx) = mpsc::channel();
        /// pool.spawn(move || tx.send(5).unwrap());
        /// assert_eq!(rx.recv().unwrap(), 5);
        /// ```
        fn spawn<F>(&self, job: F)
        where
            F: FnOnce() + Send + 'static,
        {
            self.pool.spawn(job);
        }
    }
}
