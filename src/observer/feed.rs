//! The observer's machinery: the feed (a bounded, coalescing buffer of jobs
//! with unobserved transitions) and the observer thread that drains it.
//! The public side, [`JobObserver`], is in the parent
//! module.
//!
//! See "The observer" in `docs/design.md` for the protocol and what it
//! guarantees. The tests and loom models are in `feed/tests.rs` and
//! `feed/loom_tests.rs`.
//!
//! Every tracked job of a pool with an observer carries a [`Mark`] in its
//! record: the pool's [`Feed`] and a `dirty` flag. A transition (submitted,
//! started, progress, terminal) is made in the record first, then *noted*:
//! the noting thread sets `dirty`, and only if it was clear pushes the job
//! (an `Arc`, so retention cannot forget it first) into the feed's buffer.
//! The observer thread pops jobs, clears their flag, then takes a snapshot
//! of each ([`JobInfo`], read from the record at that moment) and hands the
//! batch to [`JobObserver::observe`].
//!
//! Invariants:
//!
//! 1. A job is in the buffer at most once: `dirty` is set while it is (or
//!    is about to be) there, and only the thread that set it pushes it.
//! 2. Every transition is followed by a snapshot taken after it, unless the
//!    buffer overflowed. The noting thread's `swap(true)` and the observer's
//!    `swap(false)` are read-modify-writes of one flag, so they are totally
//!    ordered: if the note comes first and finds the flag set, the clear
//!    reads from it (a release sequence, `AcqRel` both sides) and the
//!    snapshot that follows the clear sees the transition; if the clear
//!    comes first, the note finds the flag clear and pushes the job again.
//!    This holds for the progress numbers too, which are written without
//!    the record's lock (loom: `loom_note_vs_drain`).
//! 3. One thread takes every snapshot and the record only moves forward
//!    (registry invariant 1), so the states a job is seen in never go
//!    back. A terminal state is delivered once (`delivered`, touched by the
//!    observer thread alone); nothing about a job is delivered after it.
//! 4. The buffer holds at most `capacity` jobs (`queued` counts them). A
//!    note that finds it full clears `dirty` again (so a later transition
//!    can get in), counts an overflow and returns: a note never blocks and
//!    never waits for the observer.
//! 5. The observer thread runs no pool lock while calling `observe`, and
//!    catches its panics (logged; the batch is not redelivered). It holds
//!    no lock of the pool's at all: a snapshot takes a record's state lock
//!    briefly, as `Pool::info` does.
//! 6. Shutdown: the supervisor stops the observer only once every worker was
//!    joined and nothing is left queued, so every job is terminal. Not
//!    every one is noted yet: a pending job cancelled by id on another
//!    thread turns terminal before that thread notes it, and a worker may
//!    skip the job and exit in between. So the supervisor first waits for
//!    the pool to be idle (every job counted finished, which each thread
//!    does after its note), up to `observer_shutdown_timeout`; only then is
//!    every job terminal *and noted*, and it signals the stop. The observer
//!    then drains what the buffer holds (a final drain) and exits. The
//!    supervisor waits for that up to `observer_shutdown_timeout` again;
//!    past it the thread is detached, logged at error level and counted in
//!    `PoolStats::stray_threads` until it exits. A note after the observer
//!    exited finds the buffer closed and changes nothing.
//!
//! Lock order: none of its own. `dirty`, `delivered` and the counters are
//! atomics; the buffer is a channel; `exit` is a leaf taken alone.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};

use super::{JobObserver, MAX_BATCH};
use crate::error::BuildError;
use crate::job::{JobInfo, Tracked};
use crate::shared::Shared;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{deadline_after, lock};
use crate::{unwind, worker};

/// How long the observer thread waits after a batch before draining again,
/// so that under load transitions gather into batches and noting threads
/// find it awake (no wake-up to pay). An idle observer blocks instead.
const LINGER: Duration = Duration::from_millis(1);

/// At most one overflow warning per this interval (invariant 4).
const WARN_EVERY: Duration = Duration::from_secs(1);

/// A tracked job's part in the protocol, in its record.
#[derive(Default)]
pub(crate) struct Mark {
    /// The pool's feed; `None` without an observer (then nothing is noted).
    feed: Option<Arc<Feed>>,
    /// Set while the job is in the buffer, or about to be (invariant 1).
    dirty: AtomicBool,
    /// Its terminal state was delivered (invariant 3); observer thread only.
    delivered: AtomicBool,
}

impl Mark {
    /// A mark for a job of a pool with `feed` (or without an observer).
    pub(crate) fn new(feed: Option<Arc<Feed>>) -> Self {
        Mark {
            feed,
            ..Mark::default()
        }
    }

    /// Sets `dirty`; `true` if it was clear and the caller must push the job
    /// (invariants 1 and 2).
    fn claim(&self) -> bool {
        // AcqRel: the release half publishes the transition made before it
        // to the clear that reads from it; the acquire half orders a push
        // after the clear it found (invariant 2).
        !self.dirty.swap(true, Ordering::AcqRel)
    }

    /// Gives a claim back without pushing: the buffer was full or closed.
    fn unclaim(&self) {
        self.dirty.store(false, Ordering::Release);
    }

    /// Clears `dirty` before the job's snapshot (invariant 2).
    fn clear(&self) {
        // AcqRel, a read-modify-write: it reads from the latest claim, so
        // the snapshot taken after it sees that claim's transition.
        self.dirty.swap(false, Ordering::AcqRel);
    }

    /// `true` the first time the job's terminal state is seen (invariant 3).
    fn first_final(&self) -> bool {
        // Relaxed: only the observer thread touches it.
        !self.delivered.swap(true, Ordering::Relaxed)
    }
}

/// Notes a transition of `job`, made in its record just before: queues the
/// job for the observer unless it is queued already. Nothing without an
/// observer. Never blocks (invariant 4).
#[inline]
pub(crate) fn note(job: &Arc<dyn Tracked>) {
    let mark = &job.record().mark;
    if let Some(feed) = &mark.feed {
        feed.note(job, mark);
    }
}

/// A pool's buffer of jobs with unobserved transitions.
pub(crate) struct Feed {
    tx: Sender<Arc<dyn Tracked>>,
    /// Taken once, by the observer thread; the buffer closes when that
    /// thread drops it (a later send fails).
    rx: Mutex<Option<Receiver<Arc<dyn Tracked>>>>,
    /// Jobs in the buffer, or being pushed (invariant 4).
    queued: AtomicUsize,
    capacity: usize,
    overflows: AtomicU64,
    /// Milliseconds after `born` of the last overflow warning, plus one
    /// (0: never warned).
    warned: AtomicU64,
    born: Instant,
    pool: String,
    /// The observer thread's end, for a detached thread's count.
    exit: Mutex<Exit>,
}

#[derive(Default)]
struct Exit {
    exited: bool,
    detached: bool,
}

impl Feed {
    pub(crate) fn new(capacity: usize, pool: &str) -> Self {
        // Unbounded underneath: `queued` enforces the capacity, so nothing
        // is allocated per slot up front (any capacity up to 1 << 24 is
        // fine).
        let (tx, rx) = crossbeam_channel::unbounded();
        Feed {
            tx,
            rx: Mutex::new(Some(rx)),
            queued: AtomicUsize::new(0),
            capacity,
            overflows: AtomicU64::new(0),
            warned: AtomicU64::new(0),
            born: Instant::now(),
            pool: pool.to_owned(),
            exit: Mutex::default(),
        }
    }

    /// Transitions lost to a full buffer so far.
    pub(crate) fn overflows(&self) -> u64 {
        self.overflows.load(Relaxed)
    }

    fn note(&self, job: &Arc<dyn Tracked>, mark: &Mark) {
        if !mark.claim() {
            // Queued already: the snapshot will show this transition
            // (invariant 2).
            return;
        }
        // Relaxed: a count, not a publication (the channel orders the job).
        if self.queued.fetch_add(1, Relaxed) >= self.capacity {
            self.queued.fetch_sub(1, Relaxed);
            mark.unclaim();
            self.overflowed();
            return;
        }
        if self.tx.send(Arc::clone(job)).is_err() {
            // The observer thread is gone (after shutdown): nothing to tell.
            self.queued.fetch_sub(1, Relaxed);
            mark.unclaim();
        }
    }

    /// Counts an overflow and warns, at most once per [`WARN_EVERY`].
    #[cold]
    fn overflowed(&self) {
        let total = self.overflows.fetch_add(1, Relaxed) + 1;
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.warned.load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        // Relaxed: only decides which thread logs.
        if due
            && self
                .warned
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            // A note runs on workers and submitters: the logger is contained.
            log_quietly!(log::warn!(
                "pool {}: the observer's buffer of {} jobs is full; {total} transitions not observed so far",
                self.pool,
                self.capacity
            ));
        }
    }
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("queued", &self.queued.load(Relaxed))
            .field("capacity", &self.capacity)
            .field("overflows", &self.overflows())
            .finish_non_exhaustive()
    }
}

/// The running observer thread, owned by the supervisor.
pub(crate) struct ObserverThread {
    handle: JoinHandle<()>,
    /// Dropped to stop the thread (invariant 6).
    stop: Sender<()>,
    /// Disconnected once the thread has drained and is exiting.
    exited: Receiver<()>,
    feed: Arc<Feed>,
}

/// Starts the observer thread of `shared`'s pool, if it has an observer.
pub(crate) fn start(shared: &Arc<Shared>) -> Result<Option<ObserverThread>, BuildError> {
    let (Some(observer), Some(feed)) = (shared.config.observer.clone(), shared.feed.clone()) else {
        return Ok(None);
    };
    let Some(rx) = lock(&feed.rx).take() else {
        return Ok(None);
    };
    let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let (exited_tx, exited) = crossbeam_channel::bounded::<()>(0);
    let name = format!("{}-observer", shared.config.thread_name);
    let mut drain = Drain {
        shared: Arc::clone(shared),
        feed: Arc::clone(&feed),
        observer,
        rx,
        jobs: Vec::new(),
        batch: Vec::new(),
    };
    let handle = thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let _exiting = Exiting {
                shared: Arc::clone(&drain.shared),
                _exited: exited_tx,
            };
            drain.run(&stop_rx);
        })
        .map_err(|source| BuildError::Spawn { name, source })?;
    Ok(Some(ObserverThread {
        handle,
        stop,
        exited,
        feed,
    }))
}

impl ObserverThread {
    /// Stops the thread after its final drain (invariant 6). Called by the
    /// supervisor once every worker was joined and the queue emptied.
    ///
    /// First waits, up to the pool's `observer_shutdown_timeout`, for the
    /// pool to be idle: a job cancelled by id on another thread turns
    /// terminal before that thread notes it and counts it, so the last
    /// terminal notes may still be on their way (invariant 6). Then waits
    /// up to `observer_shutdown_timeout` again for the thread's final
    /// drain; detaches it past that.
    pub(crate) fn stop(self, shared: &Shared) {
        let grace = shared.config.observer_shutdown_timeout;
        // Bounded by the grace. Prompt unless a canceller is between its
        // transition and its note, or a job is stuck on a detached thread
        // (an untracked job that joined an abandoned one).
        if !shared.wait_idle(deadline_after(grace)) {
            log_quietly!(log::warn!(
                "pool {}: jobs still not counted finished {grace:?} into the observer's \
                 shutdown; their final states may not be delivered",
                shared.config.thread_name
            ));
        }
        drop(self.stop);
        // Bounded by the grace; the thread disconnects `exited` as it ends.
        let exited = match deadline_after(grace) {
            Some(at) => !matches!(
                self.exited.recv_deadline(at),
                Err(RecvTimeoutError::Timeout)
            ),
            None => {
                let _ = self.exited.recv();
                true
            }
        };
        let detached = !exited && {
            let mut exit = lock(&self.feed.exit);
            // It may have finished since the timeout: then join it.
            if !exit.exited {
                exit.detached = true;
                shared.counters.strays.fetch_add(1, Relaxed);
            }
            exit.detached
        };
        if detached {
            log_quietly!(log::error!(
                "pool {}: the observer did not finish within {grace:?} of shutdown; \
                 detached its thread, undelivered transitions are lost",
                shared.config.thread_name
            ));
            return;
        }
        // It is past its drain and only exiting: prompt.
        if let Err(payload) = self.handle.join() {
            unwind::dispose(payload);
        }
    }
}

/// Marks the observer thread exited (and uncounts it if it was detached),
/// then disconnects `exited`, however the thread ends (invariant 6).
struct Exiting {
    shared: Arc<Shared>,
    _exited: Sender<()>,
}

impl Drop for Exiting {
    fn drop(&mut self) {
        let Some(feed) = &self.shared.feed else {
            return;
        };
        let mut exit = lock(&feed.exit);
        exit.exited = true;
        if exit.detached {
            self.shared.counters.strays.fetch_sub(1, Relaxed);
        }
    }
}

/// The observer thread's state.
struct Drain {
    shared: Arc<Shared>,
    feed: Arc<Feed>,
    observer: Arc<dyn JobObserver>,
    rx: Receiver<Arc<dyn Tracked>>,
    jobs: Vec<Arc<dyn Tracked>>,
    batch: Vec<JobInfo>,
}

impl Drain {
    fn run(&mut self, stop: &Receiver<()>) {
        // A shutdown called from `observe`, or the pool's last `Arc`
        // dropped here, must not wait for this very thread.
        worker::mark_own_thread(self.shared.id, None);
        // Each pass drains, then lingers (after a batch) or blocks (when
        // idle) until a job or the stop signal: no busy polling.
        loop {
            let drained = self.drain(None, MAX_BATCH);
            if drained == MAX_BATCH {
                continue;
            }
            if drained > 0 {
                match stop.recv_timeout(LINGER) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            select! {
                recv(self.rx) -> job => {
                    if let Ok(job) = job {
                        self.drain(Some(job), MAX_BATCH);
                    }
                }
                recv(stop) -> _ => break,
            }
        }
        // The final drain (invariant 6): every job is terminal and noted by
        // now; what arrives later (progress reported after the end) is not
        // delivered anyway (invariant 3), so this ends.
        let mut left = self.rx.len();
        while left > 0 {
            let drained = self.drain(None, left.min(MAX_BATCH));
            if drained == 0 {
                break;
            }
            left -= drained;
        }
    }

    /// Takes up to `limit` jobs off the buffer (`first`, then what is
    /// there), snapshots them and hands the batch to the observer. Returns
    /// how many jobs it took.
    fn drain(&mut self, first: Option<Arc<dyn Tracked>>, limit: usize) -> usize {
        self.jobs.extend(first);
        let room = limit.saturating_sub(self.jobs.len());
        self.jobs.extend(self.rx.try_iter().take(room));
        let taken = self.jobs.len();
        if taken == 0 {
            return 0;
        }
        self.feed.queued.fetch_sub(taken, Relaxed);
        for job in &self.jobs {
            let record = job.record();
            // Invariant 2: clear, then snapshot.
            record.mark.clear();
            let info = record.info(&self.shared.names);
            // Invariant 3.
            if info.status.is_terminal() && !record.mark.first_final() {
                continue;
            }
            self.batch.push(info);
        }
        if !self.batch.is_empty() {
            let batch = &self.batch;
            let observer = &self.observer;
            // Invariant 5: no lock held; a panic is contained.
            if let Err(message) = unwind::catch(|| observer.observe(batch)) {
                log_quietly!(log::error!(
                    "pool {}: the observer panicked on a batch of {} jobs: {message}",
                    self.shared.config.thread_name,
                    batch.len()
                ));
            }
            self.batch.clear();
        }
        // The last reference to a job may be this one: its drop may run
        // user code (a span's subscriber, a closure never run). Contained
        // one job at a time: a second panic while the first unwinds
        // through a `Vec`'s drop would abort the process. `jobs` keeps its
        // capacity (at most `MAX_BATCH` pointers) for the next batch.
        for job in self.jobs.drain(..) {
            if let Some(message) = unwind::drop_quietly(job) {
                log_quietly!(log::warn!(
                    "pool {}: dropping an observed job panicked: {message}",
                    self.shared.config.thread_name
                ));
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests;

/// loom models of the observer protocol (see "Verification" in
/// `docs/design.md`).
#[cfg(all(test, loom))]
mod loom_tests;
