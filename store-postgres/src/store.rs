//! The public handle and the state its threads share.
//!
//! Threads, each with its own connection: the writer (`writer.rs`), the
//! listener (`listener.rs`), the waiter (`wait.rs`) and maintenance
//! (`maintenance.rs`). Reads and cancels run on the caller's thread over a
//! few shared connections (`conn::Readers`).
//!
//! Shutdown protocol (`Store::shutdown`):
//!
//! 1. The buffer is closed: `record` drops what it is given from then on.
//! 2. The writer drains the buffer, retrying as always, until drained or
//!    the timeout; then `abort` is disconnected and it gives up.
//! 3. `stop` is disconnected: the listener, waiter and maintenance threads
//!    return (pending waits resolve `Shutdown`), and are joined.
//! 4. The stop is recorded: this replica's unfinished rows become `lost`
//!    (nothing will finish them) and its lease ends now with `stopped_at`.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use harbor_pool::{JobId, JobInfo};
use postgres::Client;

use crate::buffer::{Buffer, Recorded};
use crate::conn::{JOB_COLUMNS, JOB_FROM, MARK_LOST, Readers, connect, job_from_row};
use crate::job::{CancelRequest, StoredJob, StoredStatus, Transition};
use crate::listener::CANCEL_CHANNEL;
use crate::wait::{WaitFuture, WaitSlot};
use crate::{StoreConfig, StoreError, schema};

type Handler = Arc<dyn Fn(JobId) + Send + Sync>;

/// Counters, all `Relaxed`: each is read alone, for reporting.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) transitions: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) listens: AtomicU64,
    pub(crate) cancels_notified: AtomicU64,
    pub(crate) cancels_polled: AtomicU64,
    pub(crate) cancel_polls: AtomicU64,
    pub(crate) heartbeats: AtomicU64,
    pub(crate) purged: AtomicU64,
}

/// What the threads share.
pub(crate) struct Inner {
    pub(crate) config: StoreConfig,
    /// This run of the replica; a restart under the same id gets a new one.
    pub(crate) incarnation: uuid::Uuid,
    pub(crate) buffer: Buffer,
    pub(crate) readers: Readers,
    pub(crate) stats: Counters,
    handler: RwLock<Option<Handler>>,
    waits: Sender<Arc<WaitSlot>>,
    /// Relays `harbor_done` to the waiter thread; capacity 1, coalescing.
    pub(crate) poke: Sender<()>,
    /// Never sent on; disconnected when the threads must stop.
    pub(crate) stop: Receiver<()>,
    /// Never sent on; disconnected when the writer must give up.
    pub(crate) abort: Receiver<()>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("replica", &self.config.replica)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Whether the store is stopping (`stop` is disconnected).
    pub(crate) fn stopping(&self) -> bool {
        matches!(
            self.stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// Sleeps `d`, or less if the store stops; returns whether it stops.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        matches!(
            self.stop.recv_timeout(d),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    }

    pub(crate) fn cancel_handler(&self) -> Option<Handler> {
        self.handler
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Control {
    stop: Sender<()>,
    abort: Sender<()>,
    writer: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
}

/// A replica's connection to the shared job registry in PostgreSQL.
///
/// Open one per process with [`Store::open`]; give it every tracked job's
/// transitions ([`record`](Self::record)); read any replica's job by id
/// ([`job`](Self::job), [`wait`](Self::wait),
/// [`wait_async`](Self::wait_async)); cancel any replica's job by id
/// ([`cancel`](Self::cancel)); and set a handler that cancels this
/// replica's jobs when any replica asks
/// ([`set_cancel_handler`](Self::set_cancel_handler)). `Store` is `Send +
/// Sync`; share it in an `Arc`.
///
/// # Examples
///
/// ```no_run
/// use harbor_pool::Pool;
/// use harbor_store_postgres::{Store, StoreConfig, StoredStatus};
/// use std::sync::{Arc, Weak};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(Store::open(StoreConfig::new("postgres://localhost/harbor", "replica-a"))?);
/// let pool = Arc::new(Pool::new(4)?);
/// // Cancel requests from any replica cancel the job here.
/// let weak: Weak<Pool> = Arc::downgrade(&pool);
/// store.set_cancel_handler(move |id| {
///     if let Some(pool) = weak.upgrade() {
///         pool.cancel(id);
///     }
/// });
///
/// let handle = pool.submit(|_| Ok(()))?;
/// handle.wait(Duration::from_secs(10));
/// // The pool's observer does this for every tracked job's transitions.
/// store.record(&[pool.info(handle.id()).unwrap()]);
/// assert!(store.flush(Duration::from_secs(10)));
/// let job = store.job(handle.id())?.unwrap();
/// assert_eq!(job.status, StoredStatus::Completed);
/// assert_eq!(job.replica, "replica-a");
///
/// pool.shutdown();
/// assert!(store.shutdown(Duration::from_secs(10)));
/// # Ok(())
/// # }
/// ```
pub struct Store {
    inner: Arc<Inner>,
    control: Mutex<Option<Control>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("replica", &self.inner.config.replica)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counters of a [`Store`], from [`Store::stats`].
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use harbor_store_postgres::{Store, StoreConfig};
/// let store = Store::open(StoreConfig::new("postgres://localhost/harbor", "a"))?;
/// let stats = store.stats();
/// assert_eq!(stats.overflowed, 0);
/// assert!(stats.batches <= stats.transitions);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Jobs whose latest state waits in the buffer.
    pub buffered: usize,
    /// States dropped because the buffer was full.
    pub overflowed: u64,
    /// Batch statements written: one round trip each.
    pub batches: u64,
    /// Job states written by them (after coalescing).
    pub transitions: u64,
    /// Batch writes that failed (and were retried).
    pub write_errors: u64,
    /// Connections the writer opened (1 plus its reconnects).
    pub writer_connections: u64,
    /// Connections the listener opened (1 plus its reconnects).
    pub listener_connections: u64,
    /// Cancel requests handed to the handler after a notification.
    pub cancels_notified: u64,
    /// Cancel requests handed to the handler after a poll found them.
    pub cancels_polled: u64,
    /// Polls for cancel requests run.
    pub cancel_polls: u64,
    /// Lease renewals.
    pub heartbeats: u64,
    /// Finished rows deleted by retention.
    pub purged: u64,
}

impl Store {
    /// Connects, applies the schema's migrations, registers this replica
    /// (marking its previous run's unfinished jobs `lost`) and starts the
    /// store's threads. Fails if the config is bad or PostgreSQL cannot be
    /// reached now; after that, the store rides out outages.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_store_postgres::{Store, StoreConfig, StoreError};
    ///
    /// let err = Store::open(StoreConfig::new("host=localhost", "")).unwrap_err();
    /// assert!(matches!(err, StoreError::Config(_)));
    /// ```
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        config.validate()?;
        let mut client = connect(&config, "reader")?;
        schema::migrate(&mut client)?;
        let (waits, wait_rx) = crossbeam_channel::unbounded();
        let (poke, poke_rx) = crossbeam_channel::bounded(1);
        let (stop_tx, stop) = crossbeam_channel::bounded(0);
        let (abort_tx, abort) = crossbeam_channel::bounded(0);
        let inner = Arc::new(Inner {
            buffer: Buffer::new(config.buffer_capacity),
            readers: Readers::new(4),
            config,
            incarnation: uuid::Uuid::new_v4(),
            stats: Counters::default(),
            handler: RwLock::new(None),
            waits,
            poke,
            stop,
            abort,
        });
        let lost = register(&inner, &mut client)?;
        if lost > 0 {
            log::warn!(
                "replica {} restarted: {lost} unfinished jobs of its previous run are lost",
                inner.config.replica
            );
        }
        inner.readers.give(client);
        let spawn = |name: &str, f: fn(Arc<Inner>)| {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(inner))
                .map_err(|e| StoreError::Config(format!("cannot spawn a thread: {e}")))
        };
        let writer = spawn("harbor-store-w", crate::writer::run)?;
        let listener = spawn("harbor-store-l", crate::listener::run)?;
        let maintenance = spawn("harbor-store-m", crate::maintenance::run)?;
        let waiter = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("harbor-store-wait".into())
                .spawn(move || crate::wait::run(inner, wait_rx, poke_rx))
                .map_err(|e| StoreError::Config(format!("cannot spawn a thread: {e}")))?
        };
        log::info!(
            "store open: replica {} (run {})",
            inner.config.replica,
            inner.incarnation
        );
        Ok(Store {
            inner,
            control: Mutex::new(Some(Control {
                stop: stop_tx,
                abort: abort_tx,
                writer,
                others: vec![listener, maintenance, waiter],
            })),
        })
    }

    /// This replica's id.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a");
    /// let store = harbor_store_postgres::Store::open(config)?;
    /// assert_eq!(store.replica_id(), "a");
    /// # Ok(())
    /// # }
    /// ```
    pub fn replica_id(&self) -> &str {
        &self.inner.config.replica
    }

    /// Records the latest states of tracked jobs of this replica, as the
    /// pool's observer delivers them (one snapshot per job). Never blocks
    /// on the database: states are buffered and written in batches by the
    /// store's writer thread, one statement per batch, retried after an
    /// outage until written. See [`record_transitions`](Self::record_transitions).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use harbor_store_postgres::{Store, StoreConfig};
    /// let pool = harbor_pool::Pool::new(1)?;
    /// let store = Store::open(StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// let handle = pool.submit(|_| Ok(()))?;
    /// store.record(&[pool.info(handle.id()).unwrap()]);
    /// assert!(store.flush(std::time::Duration::from_secs(5)));
    /// assert!(store.job(handle.id())?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn record(&self, batch: &[JobInfo]) {
        self.record_transitions(batch.iter().map(Transition::from));
    }

    /// Records job states. A job's states may come in any order and any
    /// number of times: the store keeps the most advanced (pending, then
    /// running, then the first terminal state), both in its buffer and in
    /// the database, so a stale state never overwrites a later one and a
    /// terminal status is never replaced. When the buffer is full, states
    /// are dropped as [`StoreConfig::buffer_capacity`] says, counted and
    /// logged. After [`shutdown`](Self::shutdown), states are dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use harbor_pool::JobStatus;
    /// use harbor_store_postgres::{Store, StoreConfig, StoredStatus, Transition};
    /// use std::time::SystemTime;
    ///
    /// let store = Store::open(StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// let id: harbor_pool::JobId = uuid::Uuid::new_v4().into();
    /// let now = SystemTime::now();
    /// store.record_transitions([
    ///     Transition::new(id, JobStatus::Completed, now),
    ///     Transition::new(id, JobStatus::Running, now), // stale: ignored
    /// ]);
    /// assert!(store.flush(std::time::Duration::from_secs(5)));
    /// assert_eq!(store.job(id)?.unwrap().status, StoredStatus::Completed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn record_transitions(&self, transitions: impl IntoIterator<Item = Transition>) {
        for transition in transitions {
            let id = transition.id;
            if let Recorded::Overflowed(count) = self.inner.buffer.record(transition) {
                // Logged at the first drop and then at each power of two,
                // so a long overflow does not flood the log.
                if count.is_power_of_two() {
                    log::warn!(
                        "store buffer full ({} jobs): dropped a state of job {id}; {count} dropped so far",
                        self.inner.config.buffer_capacity
                    );
                }
            }
        }
    }

    /// Waits up to `timeout` until every state recorded so far is written;
    /// returns whether it was. While states keep arriving it may time out
    /// although each was written.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// assert!(store.flush(std::time::Duration::from_secs(1)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.buffer.wait_drained(timeout)
    }

    /// Reads a job of any replica by id: status (`lost` if its replica's
    /// lease has expired with the job unfinished), progress, error, owning
    /// replica and its address. `Ok(None)` if the store has no such job
    /// (yet: a replica writes its states within a batch's time). Blocks for
    /// one query (at most a connect timeout more if it must connect); from
    /// async code, run it on a blocking thread (tokio's `spawn_blocking`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// let unknown: harbor_pool::JobId = uuid::Uuid::new_v4().into();
    /// assert_eq!(store.job(unknown)?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn job(&self, id: JobId) -> Result<Option<StoredJob>, StoreError> {
        if self.is_shut_down() {
            return Err(StoreError::Shutdown);
        }
        let sql = format!("SELECT {JOB_COLUMNS} {JOB_FROM} WHERE j.id = $1");
        let row = self
            .inner
            .readers
            .with(&self.inner.config, |c| c.query_opt(&sql, &[id.as_uuid()]))?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Requests the cancel of a job of any replica, in one statement: it
    /// sets the row's `cancel_requested_at` (the first request's time is
    /// kept) and, if the job is pending or running, notifies its replica,
    /// whose handler ([`set_cancel_handler`](Self::set_cancel_handler))
    /// cancels it. If the notification is lost, that replica's poll finds
    /// the request within its `cancel_poll`. Blocks for one query.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use harbor_store_postgres::CancelRequest;
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "b"))?;
    /// let unknown: harbor_pool::JobId = uuid::Uuid::new_v4().into();
    /// assert_eq!(store.cancel(unknown)?, CancelRequest::NotFound);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cancel(&self, id: JobId) -> Result<CancelRequest, StoreError> {
        if self.is_shut_down() {
            return Err(StoreError::Shutdown);
        }
        let sql = format!(
            "WITH target AS (
                SELECT {JOB_COLUMNS} {JOB_FROM} WHERE j.id = $1
            ), request AS (
                UPDATE harbor_jobs j
                SET cancel_requested_at = coalesce(j.cancel_requested_at, now())
                WHERE j.id = $1
            )
            SELECT t.replica, t.status, t.error,
                   (SELECT count(*) FROM (
                        SELECT pg_notify('{CANCEL_CHANNEL}', t.id::text || ' ' || t.replica)
                        WHERE t.status IN ('pending', 'running')) n)
            FROM target t"
        );
        let row = self
            .inner
            .readers
            .with(&self.inner.config, |c| c.query_opt(&sql, &[id.as_uuid()]))?;
        let Some(row) = row else {
            return Ok(CancelRequest::NotFound);
        };
        let replica: String = row.get(0);
        let name: String = row.get(1);
        let status = StoredStatus::from_column(&name, row.get(2))
            .ok_or(StoreError::UnknownStatus { id, status: name })?;
        Ok(if status.is_terminal() {
            CancelRequest::Finished(status)
        } else {
            CancelRequest::Requested { replica }
        })
    }

    /// Sets the function that cancels this replica's jobs when a cancel is
    /// requested from any replica: typically `pool.cancel(id)`. It runs on
    /// the store's listener thread, once per request (more only if the
    /// store restarts), so keep it short; a panic in it is caught and
    /// logged. Requests that arrive before a handler is set are handed to
    /// it by the next poll. Replaces the previous handler.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// let pool = Arc::new(harbor_pool::Pool::new(2)?);
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// let weak = Arc::downgrade(&pool);
    /// store.set_cancel_handler(move |id| {
    ///     if let Some(pool) = weak.upgrade() {
    ///         pool.cancel(id);
    ///     }
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_cancel_handler(&self, handler: impl Fn(JobId) + Send + Sync + 'static) {
        *self
            .inner
            .handler
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(handler));
    }

    /// Blocks until a job of any replica ends or `timeout` passes. Returns
    /// the job once terminal; at the timeout its latest state, or `None` if
    /// the store has no such job. Woken by `NOTIFY` when any replica writes
    /// a terminal state, and re-reads every `wait_poll` (a job that becomes
    /// `lost` sends no notification). Returns `NoAnswer` if PostgreSQL
    /// could not be read at all before the timeout. From async code use
    /// [`wait_async`](Self::wait_async).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// let unknown: harbor_pool::JobId = uuid::Uuid::new_v4().into();
    /// assert_eq!(store.wait(unknown, Duration::from_millis(100))?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait(&self, id: JobId, timeout: Duration) -> Result<Option<StoredJob>, StoreError> {
        let slot = self.register_wait(id, timeout);
        // The waiter resolves every slot by its deadline plus one query
        // (wait.rs, invariant 2); the extra bound covers a query that
        // hangs on a dead network until the connect timeout.
        slot.block(timeout + self.inner.config.connect_timeout + Duration::from_secs(1))
    }

    /// [`wait`](Self::wait) as a future: polled by any executor, it blocks
    /// no thread; the store's waiter thread wakes it. Dropping it abandons
    /// the wait.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// let unknown: harbor_pool::JobId = uuid::Uuid::new_v4().into();
    /// let rt = tokio::runtime::Runtime::new()?;
    /// let found = rt.block_on(store.wait_async(unknown, Duration::from_millis(100)))?;
    /// assert_eq!(found, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_async(&self, id: JobId, timeout: Duration) -> WaitFuture {
        WaitFuture::new(self.register_wait(id, timeout))
    }

    fn register_wait(&self, id: JobId, timeout: Duration) -> Arc<WaitSlot> {
        let slot = WaitSlot::new(id, timeout);
        if self.is_shut_down() || self.inner.waits.send(Arc::clone(&slot)).is_err() {
            slot.resolve(Err(StoreError::Shutdown));
        }
        slot
    }

    /// Runs one retention pass now, whatever the schedule: deletes rows
    /// finished more than `keep` ago, in batches of the configured size.
    /// Returns how many it deleted.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// let deleted = store.purge_finished(std::time::Duration::from_secs(30 * 24 * 3600))?;
    /// println!("{deleted} old jobs deleted");
    /// # Ok(())
    /// # }
    /// ```
    pub fn purge_finished(&self, keep: Duration) -> Result<u64, StoreError> {
        let batch = self.inner.config.retention_batch;
        let n = self.inner.readers.with(&self.inner.config, |c| {
            crate::maintenance::purge(c, keep, batch)
        })?;
        self.inner.stats.purged.fetch_add(n, Relaxed);
        Ok(n)
    }

    /// The store's counters.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// assert_eq!(store.stats().buffered, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.stats;
        let (buffered, overflowed) = self.inner.buffer.counts();
        StoreStats {
            buffered,
            overflowed,
            batches: s.batches.load(Relaxed),
            transitions: s.transitions.load(Relaxed),
            write_errors: s.write_errors.load(Relaxed),
            writer_connections: s.reconnects.load(Relaxed),
            listener_connections: s.listens.load(Relaxed),
            cancels_notified: s.cancels_notified.load(Relaxed),
            cancels_polled: s.cancels_polled.load(Relaxed),
            cancel_polls: s.cancel_polls.load(Relaxed),
            heartbeats: s.heartbeats.load(Relaxed),
            purged: s.purged.load(Relaxed),
        }
    }

    fn is_shut_down(&self) -> bool {
        self.control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Stops the store cleanly (the protocol in this module's source):
    /// writes what is buffered, for up to `timeout`; stops the threads;
    /// records the stop, marking this replica's unfinished jobs `lost`.
    /// Shut the pool down first, so that its jobs' last states are
    /// recorded. Returns whether everything was written and the stop
    /// recorded; `false` leaves the rest to the lease (readers see the
    /// unfinished jobs as `lost` once it expires). Later calls return
    /// `false` at once. Dropping the store does this with a 5 s timeout.
    /// May be called from the cancel handler (it then leaves the listener
    /// thread, its caller, to return by itself).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let store = harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?;
    /// assert!(store.shutdown(Duration::from_secs(5)));
    /// assert!(!store.shutdown(Duration::from_secs(5)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let Some(control) = self
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        // Steps 1 and 2.
        self.inner.buffer.close();
        let drained = self.inner.buffer.wait_drained(timeout);
        drop(control.abort);
        join(control.writer);
        // Step 3.
        drop(control.stop);
        for thread in control.others {
            join(thread);
        }
        // Step 4: bounded by the connect timeout and two statements.
        let left = deadline.saturating_duration_since(Instant::now());
        let recorded = if drained || !left.is_zero() {
            match self.record_stop() {
                Ok(lost) => {
                    if lost > 0 {
                        log::warn!("store stopped with {lost} unfinished jobs: marked lost");
                    }
                    true
                }
                Err(err) => {
                    log::warn!("store stop not recorded (the lease will expire): {err}");
                    false
                }
            }
        } else {
            false
        };
        self.inner.readers.clear();
        log::info!("store stopped: replica {}", self.inner.config.replica);
        drained && recorded
    }

    fn record_stop(&self) -> Result<u64, StoreError> {
        let replica = &self.inner.config.replica;
        let incarnation = self.inner.incarnation;
        self.inner.readers.with(&self.inner.config, |c| {
            let mut tx = c.transaction()?;
            let ours = tx.execute(
                "UPDATE harbor_replicas SET stopped_at = now(), lease_expires_at = now()
                 WHERE id = $1 AND incarnation = $2",
                &[replica, &incarnation],
            )?;
            let lost = if ours == 1 {
                tx.execute(MARK_LOST, &[replica])?
            } else {
                0
            };
            tx.commit()?;
            Ok(lost)
        })
    }
}

/// Joins one of the store's threads, unless it is the caller: the cancel
/// handler runs on the listener thread and may shut the store down, and
/// that thread returns by itself once `stop` is disconnected.
fn join(thread: JoinHandle<()>) {
    if thread.thread().id() != std::thread::current().id() {
        let _ = thread.join();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(5));
    }
}

/// Registers this run of the replica: its previous run's unfinished jobs
/// become `lost` (nothing will finish them), then its row gets the new
/// incarnation and a fresh lease, in one transaction. Returns how many
/// jobs it marked lost.
pub(crate) fn register(inner: &Inner, client: &mut Client) -> Result<u64, StoreError> {
    let config = &inner.config;
    let mut tx = client.transaction().map_err(StoreError::from_pg)?;
    let lost = tx
        .execute(MARK_LOST, &[&config.replica])
        .map_err(StoreError::from_pg)?;
    tx.execute(
        "INSERT INTO harbor_replicas
             (id, incarnation, address, started_at, heartbeat_at, lease_expires_at)
         VALUES ($1, $2, $3, now(), now(), now() + make_interval(secs => $4))
         ON CONFLICT (id) DO UPDATE SET
             incarnation = excluded.incarnation, address = excluded.address,
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
             lease_expires_at = excluded.lease_expires_at, stopped_at = NULL",
        &[
            &config.replica,
            &inner.incarnation,
            &config.address,
            &config.lease.as_secs_f64(),
        ],
    )
    .map_err(StoreError::from_pg)?;
    tx.commit().map_err(StoreError::from_pg)?;
    Ok(lost)
}
