//! The supervisor thread: owns the workers' `JoinHandle`s, joins and
//! respawns dead workers under a restart limit with backoff, fires job
//! deadlines, and carries out the shutdown protocol.
//!
//! See `docs/design.md` for the restart policy and shutdown protocol.
//!
//! Invariants:
//!
//! 1. The supervisor learns of every worker exit through [`Event::Exited`],
//!    sent by the worker's drop guard, so it blocks on its event channel
//!    instead of polling handles. It always joins the exited thread.
//! 2. A dead worker is replaced under the same index and name: at once while
//!    at most `restart_limit` respawns happened within the window, later with
//!    a delay that doubles up to the backoff cap. The supervisor never spins:
//!    it sleeps on its channel until the next event, deadline or due respawn.
//! 3. Once shutdown has begun, a worker that exits is not replaced, unless it
//!    died while jobs remain queued and no restart storm is under way. When
//!    the last worker is gone, anything still queued is cancelled (never
//!    silently dropped), and only then is the pool marked done.
//! 4. User code that reaches this thread (a dead thread's panic payload, a
//!    queued closure dropped at shutdown) is dropped under `catch_unwind`.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::BuildError;
use crate::job::Tracked;
use crate::shared::{Mode, Shared};
use crate::stats::Ending;
use crate::unwind;
use crate::worker;

/// What the supervisor is told.
pub(crate) enum Event {
    /// A worker thread ended; `died` if it was unwinding.
    Exited { index: usize, died: bool },
    /// A job with a deadline was queued.
    Deadline(Instant, Weak<dyn Tracked>),
    /// Intake is closed and workers were told to stop.
    Shutdown,
    /// `shutdown_now`: cancel whatever is queued.
    Abort,
    /// Test seam: report the number of pending deadlines.
    #[cfg(test)]
    Probe(Sender<usize>),
}

/// Starts the supervisor, which starts the workers. Returns once every worker
/// has started, or after cleaning up if one could not.
pub(crate) fn start(
    shared: Arc<Shared>,
    events: Receiver<Event>,
) -> Result<JoinHandle<()>, BuildError> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let name = shared.supervisor_name.clone();
    let thread = thread::Builder::new()
        .name(name.clone())
        .spawn(move || supervise(shared, events, ready_tx))
        .map_err(|source| BuildError::Spawn { name, source })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let name = thread.thread().name().unwrap_or_default().to_owned();
            let _ = thread.join();
            Err(BuildError::Spawn {
                name,
                source: io::Error::other("the supervisor failed while starting workers"),
            })
        }
    }
}

fn supervise(shared: Arc<Shared>, events: Receiver<Event>, ready: Sender<Result<(), BuildError>>) {
    // The supervisor drops user closures (cancelled and expired jobs); one
    // may hold the pool's last `Arc`, and the pool's `Drop` must then not
    // wait for this very thread.
    worker::mark_own_thread(shared.id);
    // Whatever happens below (even a panicking logger), waiters on `done`
    // are released.
    let done = DoneGuard(Arc::clone(&shared));
    let mut supervisor = Supervisor {
        workers: Vec::with_capacity(shared.config.workers),
        shared,
        events,
        recent_restarts: VecDeque::new(),
        backoff: None,
        deadlines: BinaryHeap::new(),
        compact_at: MIN_COMPACT_AT,
        stopping: false,
    };
    let mut failure = None;
    for index in 0..supervisor.shared.config.workers {
        match worker::spawn(&supervisor.shared, index) {
            Ok(handle) => supervisor.workers.push(Slot::Running(handle)),
            Err(source) => {
                failure = Some(BuildError::Spawn {
                    name: supervisor.shared.names[index].to_string(),
                    source,
                });
                break;
            }
        }
    }
    if failure.is_some() {
        // Stop the workers that did start; `run` joins them.
        supervisor.shared.begin_shutdown(Mode::Graceful);
    } else {
        log_quietly!(log::info!(
            "pool {} started with {} workers",
            supervisor.shared.config.thread_name,
            supervisor.workers.len()
        ));
        let _ = ready.send(Ok(()));
    }
    let shared = Arc::clone(&supervisor.shared);
    if let Err(message) = unwind::catch(move || supervisor.run()) {
        log_quietly!(log::error!(
            "the supervisor of pool {} panicked: {message}",
            shared.config.thread_name
        ));
    }
    drop(done);
    match failure {
        Some(error) => {
            let _ = ready.send(Err(error));
        }
        None => {
            log_quietly!(log::info!("pool {} stopped", shared.config.thread_name));
        }
    }
}

/// Calls `Shared::mark_done` when dropped.
struct DoneGuard(Arc<Shared>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.mark_done();
    }
}

/// One worker position.
enum Slot {
    Running(JoinHandle<()>),
    /// Dead; to be respawned at this instant.
    Waiting(Instant),
    /// Stopped for good (shutdown).
    Gone,
}

struct Deadline {
    at: Instant,
    job: Weak<dyn Tracked>,
}

// Ordered by `at`, reversed: `BinaryHeap` is a max-heap.
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.at.cmp(&self.at)
    }
}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Deadline {}

struct Supervisor {
    shared: Arc<Shared>,
    events: Receiver<Event>,
    workers: Vec<Slot>,
    /// Respawn times within the restart window, oldest first.
    recent_restarts: VecDeque<Instant>,
    /// The last delay used in the current storm; `None` when calm.
    backoff: Option<Duration>,
    deadlines: BinaryHeap<Deadline>,
    /// Heap size at which finished jobs' deadlines are swept out.
    compact_at: usize,
    stopping: bool,
}

const MIN_COMPACT_AT: usize = 1024;

impl Supervisor {
    fn run(&mut self) {
        // Each pass blocks on the event channel until an event, the next
        // deadline or the next due respawn (invariant 2): no busy polling.
        loop {
            if self.stopping && self.workers.iter().all(|slot| matches!(slot, Slot::Gone)) {
                break;
            }
            let event = match self.next_wake() {
                Some(at) => self.events.recv_deadline(at),
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                // Unreachable: `shared` holds a sender.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            self.fire_deadlines(now);
            self.respawn_due(now);
        }
        // Invariant 3: nothing is left queued unaccounted for.
        let cancelled = self.cancel_queued();
        if cancelled > 0 {
            log_quietly!(log::error!(
                "pool {}: no worker left to run {cancelled} queued jobs; cancelled them",
                self.shared.config.thread_name
            ));
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let respawn = self
            .workers
            .iter()
            .filter_map(|slot| match slot {
                Slot::Waiting(at) => Some(*at),
                _ => None,
            })
            .min();
        let deadline = self.deadlines.peek().map(|d| d.at);
        match (respawn, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Exited { index, died } => self.on_exit(index, died),
            Event::Deadline(at, job) => {
                self.deadlines.push(Deadline { at, job });
                self.compact_deadlines();
            }
            Event::Shutdown => {
                self.stopping = true;
                for slot in &mut self.workers {
                    if matches!(slot, Slot::Waiting(_)) {
                        // Invariant 3: a respawn held back by a storm is
                        // abandoned; the live workers drain the queue.
                        *slot = Slot::Gone;
                    }
                }
            }
            #[cfg(test)]
            Event::Probe(reply) => {
                let _ = reply.send(self.deadlines.len());
            }
            Event::Abort => {
                let cancelled = self.cancel_queued();
                log_quietly!(log::info!(
                    "pool {}: cancelled {cancelled} queued jobs",
                    self.shared.config.thread_name
                ));
            }
        }
    }

    fn on_exit(&mut self, index: usize, died: bool) {
        let name = Arc::clone(&self.shared.names[index]);
        if let Slot::Running(handle) = std::mem::replace(&mut self.workers[index], Slot::Gone) {
            // Invariant 1: always join. The thread has finished its drop guard,
            // so this returns promptly.
            if let Err(payload) = handle.join() {
                let message = unwind::message(&*payload);
                unwind::dispose(payload);
                log_quietly!(log::error!("worker {name} died: {message}"));
            }
        }
        if !self.stopping {
            if !died {
                log_quietly!(log::error!(
                    "worker {name} exited while the pool was running"
                ));
            }
            self.respawn_or_delay(index);
        } else if died
            && !self.shared.jobs_rx.is_empty()
            && !self.shared.abort.load(Ordering::Acquire)
        {
            // Invariant 3: replace it so the queue still drains, unless storming.
            self.respawn_or_delay(index);
            if matches!(self.workers[index], Slot::Waiting(_)) {
                log_quietly!(log::error!(
                    "not respawning {name} during shutdown: restart storm"
                ));
                self.workers[index] = Slot::Gone;
            }
        }
    }

    /// Invariant 2: respawns now, or schedules the respawn after a backoff.
    fn respawn_or_delay(&mut self, index: usize) {
        let now = Instant::now();
        let window = self.shared.config.restart_window;
        while let Some(&oldest) = self.recent_restarts.front() {
            if now.duration_since(oldest) > window {
                self.recent_restarts.pop_front();
            } else {
                break;
            }
        }
        let limit = self.shared.config.restart_limit as usize;
        if self.recent_restarts.len() < limit {
            self.backoff = None;
            self.respawn(index, now);
        } else {
            let delay = self.next_backoff();
            log_quietly!(log::error!(
                "restart storm in pool {}: {} restarts within {window:?} (limit {limit}); \
                 respawning {} in {delay:?}",
                self.shared.config.thread_name,
                self.recent_restarts.len(),
                self.shared.names[index]
            ));
            self.workers[index] = Slot::Waiting(now + delay);
        }
    }

    fn next_backoff(&mut self) -> Duration {
        let config = &self.shared.config;
        let delay = match self.backoff {
            None => config.backoff_initial,
            Some(last) => last.saturating_mul(2).min(config.backoff_max),
        };
        self.backoff = Some(delay);
        delay
    }

    fn respawn(&mut self, index: usize, now: Instant) {
        let name = Arc::clone(&self.shared.names[index]);
        match worker::spawn(&self.shared, index) {
            Ok(handle) => {
                self.workers[index] = Slot::Running(handle);
                self.recent_restarts.push_back(now);
                // Relaxed: a statistic.
                self.shared
                    .counters
                    .restarts
                    .fetch_add(1, Ordering::Relaxed);
                log_quietly!(log::info!("respawned worker {name}"));
            }
            Err(error) => {
                let delay = self.next_backoff();
                log_quietly!(log::error!(
                    "failed to respawn worker {name}: {error}; retrying in {delay:?}"
                ));
                self.workers[index] = Slot::Waiting(now + delay);
            }
        }
    }

    fn respawn_due(&mut self, now: Instant) {
        for index in 0..self.workers.len() {
            if matches!(self.workers[index], Slot::Waiting(at) if at <= now) {
                self.respawn(index, now);
            }
        }
    }

    /// Drops the deadlines of jobs that already finished once they make up
    /// most of the heap, so a stream of short jobs with long timeouts does
    /// not pin memory until each timeout passes. Amortised O(1) per push.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() < self.compact_at {
            return;
        }
        self.deadlines.retain(|d| {
            d.job
                .upgrade()
                .is_some_and(|job| !job.record().is_terminal())
        });
        self.compact_at = (self.deadlines.len() * 2).max(MIN_COMPACT_AT);
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while self.deadlines.peek().is_some_and(|d| d.at <= now) {
            let Some(deadline) = self.deadlines.pop() else {
                break;
            };
            if let Some(job) = deadline.job.upgrade() {
                let outcome = self.shared.cancel(&*job);
                log_quietly!(log::debug!(
                    "job {} passed its deadline: {outcome}",
                    job.record().id
                ));
            }
        }
    }

    /// Cancels every job still in the queue; returns how many there were.
    fn cancel_queued(&self) -> usize {
        let mut count = 0;
        while let Ok(message) = self.shared.jobs_rx.try_recv() {
            count += 1;
            if let Some(job) = message.tracked() {
                // Releases its slot if it was still pending.
                self.shared.cancel(&**job);
            } else {
                // Off the queue: its slot is free (shared invariant 5).
                self.shared.release_slot();
                self.shared.counters.others.count(Ending::Cancelled);
                // Invariant 4.
                unwind::drop_quietly(message);
            }
        }
        // Once for every untracked job counted above.
        self.shared.check_idle();
        count
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{JobOptions, Pool};

    #[test]
    fn deadlines_of_finished_jobs_do_not_pile_up() {
        // Bounded queue: the submitter cannot run far ahead of the workers,
        // so few jobs are live at any time (and compaction is measured
        // against the live ones).
        let pool = Pool::builder()
            .workers(2)
            .queue_capacity(64)
            .build()
            .unwrap();
        let options = JobOptions::new().timeout(Duration::from_secs(3600));
        for _ in 0..5_000 {
            pool.submit_with(options, |_| Ok(())).unwrap();
        }
        assert!(pool.join_timeout(crate::sync::PATIENCE));
        // The supervisor swept finished jobs' deadlines as they piled up: the
        // heap holds at most about twice the live ones plus the minimum.
        let (tx, rx) = crossbeam_channel::bounded(1);
        pool.shared.events.send(super::Event::Probe(tx)).unwrap();
        let len = rx.recv_timeout(crate::sync::PATIENCE).unwrap();
        assert!(len < 2 * super::MIN_COMPACT_AT, "{len}");
    }
}
