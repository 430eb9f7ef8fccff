//! The observer seam: tracked jobs' transitions delivered, coalesced and in
//! batches, to a [`JobObserver`] on the pool's observer thread, off the
//! workers' path.
//!
//! This module is the public side: the trait and what it guarantees. The
//! machinery (the feed each transition is noted in, the observer thread
//! that drains it, and the protocol's numbered invariants) is in `feed.rs`
//! beside it. See "The observer" in `docs/design.md`.

mod feed;

pub(crate) use feed::{Feed, Mark, note, start};

use crate::job::JobInfo;

/// Receives tracked jobs' transitions off the hot path, on the pool's
/// observer thread.
///
/// Attach one with [`Builder::observer`](crate::Builder::observer). The
/// pool then reports every tracked job (untracked ones,
/// [`Pool::execute`](crate::Pool::execute), have no id and are not
/// observed) as it is submitted (`Pending`), started (`Running`), reports
/// progress through its token, and ends (`Completed`, `Failed` with its
/// error text, `Cancelled`, `Abandoned`).
///
/// What is guaranteed:
///
/// * **Coalesced.** A job appears at most once per batch, in its latest
///   state when the batch was made: a job may go `Pending -> Completed`
///   between two calls and appear once, as `Completed`. Progress is
///   coalesced the same way: the observer sees the latest report, not
///   every call.
/// * **In order.** The states a job is seen in never go back, and its
///   terminal state is delivered exactly once, after which the job is not
///   seen again. A non-terminal state may repeat across batches (a
///   transition that raced the previous batch).
/// * **Final states.** Every job's terminal state is delivered, also at
///   shutdown (the observer thread drains what is left before the pool is
///   done), unless the buffer overflowed.
/// * **Never blocks a worker.** Transitions wait in a bounded buffer of
///   jobs ([`Builder::observer_capacity`](crate::Builder::observer_capacity));
///   one that finds it full is dropped and counted in
///   [`PoolStats::observer_overflows`](crate::PoolStats::observer_overflows)
///   (and logged, at most once a second), never waited for.
///
/// `observe` runs on one thread, `{thread_name}-observer`, with none of the
/// pool's locks held: it may call the pool (`info`, `cancel`, `submit`).
/// That thread counts as one of the pool's own, so a blocking `submit` from
/// it into a full bounded queue returns `SubmitError::QueueFull` instead of
/// waiting (as from a worker: waiting could deadlock the pool). A
/// slow `observe` delays only the next batch (and fills the buffer). A
/// panic in it is caught and logged at error level; that batch is not
/// delivered again, and the thread goes on. At shutdown the pool waits up
/// to [`Builder::observer_shutdown_timeout`](crate::Builder::observer_shutdown_timeout)
/// for the last batches (after the last jobs cancelled on other threads
/// were counted, which is bounded by that timeout too); an `observe` that
/// takes longer is left running on its detached thread (logged, and counted in
/// [`PoolStats::stray_threads`](crate::PoolStats::stray_threads) until it
/// returns), and the transitions still buffered are not delivered.
///
/// Keep a [`Weak`](std::sync::Weak) to the pool in an observer that needs
/// it: the pool holds its observer, so an `Arc` would keep the pool alive.
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobInfo, JobObserver, JobStatus, Pool};
/// use std::sync::{Arc, Mutex};
///
/// /// Keeps each job's latest status, as a store would.
/// #[derive(Default)]
/// struct Latest(Mutex<std::collections::HashMap<harbor_pool::JobId, JobStatus>>);
///
/// impl JobObserver for Latest {
///     fn observe(&self, batch: &[JobInfo]) {
///         let mut latest = self.0.lock().unwrap();
///         for info in batch {
///             latest.insert(info.id, info.status.clone());
///         }
///     }
/// }
///
/// let latest = Arc::new(Latest::default());
/// let pool = Pool::builder().workers(2).observer(latest.clone()).build().unwrap();
/// let ok = pool.submit(|_| Ok(())).unwrap().id();
/// let bad = pool.submit(|_| -> harbor_pool::JobResult<()> { Err("no disk".into()) }).unwrap().id();
/// pool.shutdown(); // delivers the last states before it returns
/// let latest = latest.0.lock().unwrap();
/// assert_eq!(latest[&ok], JobStatus::Completed);
/// assert_eq!(latest[&bad], JobStatus::Failed("no disk".into()));
/// ```
pub trait JobObserver: Send + Sync + 'static {
    /// A batch of the latest snapshots of tracked jobs that changed since
    /// the previous call, coalesced: at most one entry per job, its latest
    /// state (a job may go `Pending -> Completed` between two calls and
    /// appear once as `Completed`). Called on the pool's observer thread.
    ///
    /// A batch is never empty and holds at most [`MAX_BATCH`] jobs.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{JobInfo, JobObserver, Pool};
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// #[derive(Default)]
    /// struct Finished(AtomicUsize);
    /// impl JobObserver for Finished {
    ///     fn observe(&self, batch: &[JobInfo]) {
    ///         assert!(!batch.is_empty() && batch.len() <= harbor_pool::MAX_BATCH);
    ///         let ended = batch.iter().filter(|info| info.status.is_terminal()).count();
    ///         self.0.fetch_add(ended, Ordering::SeqCst);
    ///     }
    /// }
    ///
    /// let finished = Arc::new(Finished::default());
    /// let pool = Pool::builder().observer(finished.clone()).build().unwrap();
    /// for _ in 0..100 {
    ///     pool.submit(|_| Ok(())).unwrap();
    /// }
    /// pool.shutdown();
    /// assert_eq!(finished.0.load(Ordering::SeqCst), 100); // each ended once
    /// ```
    fn observe(&self, batch: &[JobInfo]);
}

/// The most jobs one [`JobObserver::observe`] call receives: 4096.
///
/// # Examples
///
/// ```
/// assert_eq!(harbor_pool::MAX_BATCH, 4096);
/// ```
pub const MAX_BATCH: usize = 4096;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::JobObserver;
    use crate::job::{JobInfo, JobStatus, Message, new_cell};
    use crate::sync::PATIENCE;
    use crate::{CancelToken, JobError, JobId, JobOptions, Pool};

    #[derive(Default)]
    struct Last(Mutex<Vec<JobInfo>>);

    impl JobObserver for Last {
        fn observe(&self, batch: &[JobInfo]) {
            self.0.lock().unwrap().extend_from_slice(batch);
        }
    }

    /// A job whose worker thread dies under it (a bug, not a job panic) is
    /// seen `Failed` with the worker's message, from the drop guard.
    #[test]
    fn a_job_whose_worker_died_is_seen_failed() {
        let seen = Arc::new(Last::default());
        let pool = Pool::builder()
            .workers(1)
            .thread_name("obs-die")
            .observer(seen.clone())
            .build()
            .unwrap();
        // Marked with the pool's feed, as `submit` does.
        let (cell, parts) = new_cell(
            JobId::new(),
            JobOptions::default(),
            pool.shared.feed.clone(),
            |_: &CancelToken| Ok(()),
        );
        let handle = parts.into_handle(Arc::downgrade(&pool.shared), pool.shared.id);
        let id = handle.id();
        pool.shared.accept(Message::Poison(cell), true).unwrap();
        let message = match handle.join() {
            Err(JobError::WorkerDied(message)) => message,
            other => panic!("unexpected {other:?}"),
        };
        assert!(pool.shutdown_timeout(PATIENCE).joined());
        let seen = seen.0.lock().unwrap();
        let last = seen.iter().rfind(|info| info.id == id).unwrap();
        assert_eq!(last.status, JobStatus::Failed(message));
        assert_eq!(
            seen.iter()
                .filter(|info| info.id == id && info.status.is_terminal())
                .count(),
            1
        );
    }
}
