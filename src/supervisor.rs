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
//!    queued closure dropped once no worker is left) is dropped under
//!    `catch_unwind`. The timer path runs none (timer invariant 1), and
//!    neither does `shutdown_now`'s sweep of the queued jobs, which marks
//!    them `Cancelled` through the registry and leaves their closures to
//!    the workers draining the queue.
//! 5. Every instant is computed without overflow (`far_after`): a backoff
//!    of `Duration::MAX` means "not in this process's lifetime", not a
//!    panic.
//! 6. A panic in the supervisor itself (a bug) is caught; the supervisor
//!    puts any worker slot left empty back on the respawn schedule and
//!    resumes. After [`MAX_FAULTS`] such panics it stops the pool as
//!    `shutdown_now` would and joins every worker before the pool is marked
//!    done: "done" never means "some thread of the pool may still run".
//!    (Detached threads, invariant 7, are the one documented exception.)
//! 7. Abandonment: when the pool cancels a running job's token and the job
//!    has a grace, the supervisor is told ([`Event::Interrupted`]); if the
//!    job is still running when the grace ends, it and every other job
//!    running on that worker's thread end `Abandoned`, and the thread is
//!    detached (worker invariant 8) and replaced under the same index and
//!    name, so capacity is restored. At most `max_stray_threads` detached
//!    threads are kept; past that a stuck position is *held* (not replaced)
//!    until a detached thread exits. Shutdown detaches held positions and
//!    never waits for a detached thread.
//! 8. The observer thread, if the pool has an observer, starts before any
//!    worker and is stopped after every worker was joined and the queue
//!    emptied, so every job's final state is noted before it drains for
//!    the last time. Stopping it waits at most `observer_shutdown_timeout`
//!    for the pool to be idle (cancellers on other threads note first),
//!    then as long again for the observer (observer invariant 6), then
//!    "done" follows.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::BuildError;
use crate::events;
use crate::job::Tracked;
use crate::observer;
use crate::shared::{Mode, Shared};
use crate::stats::Ending;
use crate::timer::{Deadlines, far_after};
use crate::unwind;
use crate::worker;

/// How many panics of its own the supervisor survives (invariant 6).
pub(crate) const MAX_FAULTS: u32 = 3;

/// What the supervisor is told.
pub(crate) enum Event {
    /// A worker thread ended; `died` if it was unwinding. `generation` is
    /// its position's generation when it started: an older one than the
    /// position's now means a detached (stray) thread.
    Exited {
        index: usize,
        generation: u64,
        died: bool,
    },
    /// The pool cancelled a running job's token; abandon it at this instant
    /// if it has not returned (invariant 7).
    Interrupted(Instant, Weak<dyn Tracked>),
    /// A job with a deadline was queued.
    Deadline(Instant, Weak<dyn Tracked>),
    /// Enough jobs with deadlines ended: sweep the heap (timer invariant 2).
    Compact,
    /// Intake is closed and workers were told to stop.
    Shutdown,
    /// `shutdown_now`: cancel whatever is queued.
    Abort,
    /// Test seam: report the number of pending deadlines.
    #[cfg(test)]
    Probe(Sender<usize>),
    /// Test seam: panic inside the supervisor's loop, as a bug would.
    #[cfg(test)]
    Fault,
}

/// Starts the supervisor, which starts the workers. Returns once every worker
/// has started and finished its start hook (returned or panicked), or after
/// cleaning up if one could not start.
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
    worker::mark_own_thread(shared.id, None);
    // Whatever happens below (even a panicking logger), waiters on `done`
    // are released.
    let done = DoneGuard(Arc::clone(&shared));
    let mut supervisor = Supervisor {
        workers: Vec::with_capacity(shared.config.workers),
        shared,
        events,
        recent_restarts: VecDeque::new(),
        backoff: None,
        deadlines: Deadlines::default(),
        graces: Deadlines::default(),
        strays: Vec::new(),
        held: VecDeque::new(),
        stopping: false,
    };
    let mut failure = None;
    // Before any worker, so no transition happens without it (invariant 8).
    let observer = observer::start(&supervisor.shared).unwrap_or_else(|error| {
        failure = Some(error);
        None
    });
    let workers = if failure.is_some() {
        0
    } else {
        supervisor.shared.config.workers
    };
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    for index in 0..workers {
        match worker::spawn(&supervisor.shared, index, Some(started_tx.clone())) {
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
    drop(started_tx);
    if failure.is_some() {
        // Stop the workers that did start; `run` joins them.
        supervisor.shared.begin_shutdown(Mode::Graceful);
    } else {
        // Worker invariant 5: each worker reports once its start hook is
        // over (its drop guard reports for it if the hook panicked). Bounded
        // by the hooks themselves; a worker that reported respawns later,
        // in `run`, so a storm is never waited for.
        for _ in 0..supervisor.workers.len() {
            if started_rx.recv().is_err() {
                break;
            }
        }
        log_quietly!(log::info!(
            "pool {} started with {} workers",
            supervisor.shared.config.thread_name,
            supervisor.workers.len()
        ));
        let _ = ready.send(Ok(()));
    }
    drop(started_rx);
    let shared = Arc::clone(&supervisor.shared);
    supervisor.run_resilient();
    drop(supervisor);
    // Every worker was joined and nothing is left queued: the observer's
    // final drain delivers every job's last state (invariant 8).
    if let Some(observer) = observer {
        observer.stop(&shared);
    }
    // The last log line comes before "done": a slow logger must not keep a
    // thread running after the pool said it was done (and make a
    // `shutdown_timeout` caller wait past its timeout to join it).
    if failure.is_none() {
        log_quietly!(log::info!("pool {} stopped", shared.config.thread_name));
    }
    drop(done);
    if let Some(error) = failure {
        let _ = ready.send(Err(error));
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

struct Supervisor {
    shared: Arc<Shared>,
    events: Receiver<Event>,
    workers: Vec<Slot>,
    /// Respawn times within the restart window, oldest first.
    recent_restarts: VecDeque<Instant>,
    /// The last delay used in the current storm; `None` when calm.
    backoff: Option<Duration>,
    deadlines: Deadlines,
    /// When running jobs whose tokens the pool cancelled are due to be
    /// abandoned (invariant 7).
    graces: Deadlines,
    /// Detached threads, each stuck in an abandoned job.
    strays: Vec<Stray>,
    /// Positions whose thread is stuck in an abandoned job but could not be
    /// detached (the stray cap), with the jobs it was running.
    held: VecDeque<(usize, Vec<Arc<dyn Tracked>>)>,
    stopping: bool,
}

/// A detached worker thread (invariant 7).
struct Stray {
    index: usize,
    generation: u64,
    handle: JoinHandle<()>,
}

impl Supervisor {
    /// Runs the loop, surviving panics of its own (invariant 6).
    fn run_resilient(&mut self) {
        let mut faults = 0;
        loop {
            let Err(message) = unwind::catch(|| self.run()) else {
                return;
            };
            faults += 1;
            log_quietly!(log::error!(
                "the supervisor of pool {} panicked ({faults} of {MAX_FAULTS}): {message}",
                self.shared.config.thread_name
            ));
            if faults >= MAX_FAULTS {
                self.give_up();
                return;
            }
            self.recover();
        }
    }

    /// After a panic: a slot emptied mid-way (its worker joined, its
    /// replacement not yet started) goes back on the respawn schedule.
    fn recover(&mut self) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        for slot in &mut self.workers {
            if matches!(slot, Slot::Gone) {
                *slot = Slot::Waiting(now);
            }
        }
    }

    /// The supervisor cannot be trusted to keep the pool going: stop it as
    /// `shutdown_now` does, and join every worker before the pool is marked
    /// done (invariant 6).
    fn give_up(&mut self) {
        log_quietly!(log::error!(
            "pool {}: its supervisor failed {MAX_FAULTS} times; shutting the pool down",
            self.shared.config.thread_name
        ));
        self.shared.begin_shutdown(Mode::Now);
        for slot in &mut self.workers {
            if let Slot::Running(handle) = std::mem::replace(slot, Slot::Gone) {
                // Bounded by the worker's current job, whose token is
                // cancelled; it exits once the queue is drained.
                if let Err(payload) = handle.join() {
                    unwind::dispose(payload);
                }
            }
        }
        self.cancel_queued();
    }

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
            self.fire_graces(now);
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
        [respawn, self.deadlines.next(), self.graces.next()]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Exited {
                index,
                generation,
                died,
            } => {
                if generation == self.generation(index) {
                    self.on_exit(index, died);
                } else {
                    self.on_stray_exit(index, generation);
                }
            }
            Event::Interrupted(at, job) => self.graces.push_uncounted(at, job),
            Event::Deadline(at, job) => self.deadlines.push(at, job, &self.shared.stale),
            Event::Compact => self.deadlines.compact(&self.shared.stale),
            Event::Shutdown => {
                self.stopping = true;
                // Invariant 7: shutdown never waits for a thread stuck in an
                // abandoned job, whatever the stray cap.
                while let Some((index, jobs)) = self.held.pop_front() {
                    self.detach(index, &jobs);
                }
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
            #[cfg(test)]
            Event::Fault => panic!("injected supervisor fault"),
            Event::Abort => {
                // Invariant 4: statuses only; the workers draining the queue
                // (with `abort` set) drop the closures.
                let cancelled = self.shared.cancel_pending();
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
                log_quietly!(events::worker_died(&name, &message));
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
            self.workers[index] = Slot::Waiting(far_after(now, delay));
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
        // Counted before the thread exists, so a reader who sees the new
        // worker in `alive` also sees its restart (it may count itself
        // alive before `spawn` returns here); taken back if it fails.
        // Relaxed: a statistic.
        let restarts = &self.shared.counters.restarts;
        restarts.fetch_add(1, Ordering::Relaxed);
        match worker::spawn(&self.shared, index, None) {
            Ok(handle) => {
                self.workers[index] = Slot::Running(handle);
                self.recent_restarts.push_back(now);
                log_quietly!(events::restarted(&name));
            }
            Err(error) => {
                restarts.fetch_sub(1, Ordering::Relaxed);
                let delay = self.next_backoff();
                log_quietly!(log::error!(
                    "failed to respawn worker {name}: {error}; retrying in {delay:?}"
                ));
                self.workers[index] = Slot::Waiting(far_after(now, delay));
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

    /// The position's current generation (worker invariant 8).
    fn generation(&self, index: usize) -> u64 {
        self.shared.counters.workers[index]
            .generation
            .load(Ordering::Acquire)
    }

    /// Abandons the jobs whose grace ran out while still running
    /// (invariant 7).
    fn fire_graces(&mut self, now: Instant) {
        while let Some(job) = self.graces.pop_due(now) {
            if job.record().status() == crate::job::JobStatus::Running {
                self.abandon(&job);
            }
        }
    }

    /// Ends `job` and every other job running on its worker's thread (jobs
    /// it runs inline, or that run it inline) `Abandoned`, and detaches that
    /// thread, within the stray cap (invariant 7).
    fn abandon(&mut self, job: &Arc<dyn Tracked>) {
        let Some(index) = job.record().worker_index() else {
            return;
        };
        // Running jobs of this position are all on its current thread: a
        // stray's jobs were all abandoned when it was detached, and a stray
        // runs nothing new (worker invariant 8).
        let on_thread: Vec<Arc<dyn Tracked>> = self
            .shared
            .registry
            .running()
            .into_iter()
            .filter(|other| other.record().worker_index() == Some(index))
            .collect();
        if on_thread.is_empty() {
            return;
        }
        // Detach first, then mark: whoever sees a job `Abandoned` also sees
        // its replacement started and the stray counted. (If the job returns
        // in between, it keeps its real outcome and its detached thread just
        // exits.)
        let cap = self
            .shared
            .config
            .max_stray_threads
            .unwrap_or(self.shared.config.workers);
        if self.strays.len() >= cap && !self.stopping {
            log_quietly!(log::error!(
                "pool {}: {} stray threads (the limit); {} stays stuck until one exits",
                self.shared.config.thread_name,
                self.strays.len(),
                self.shared.names[index]
            ));
            self.held.push_back((index, on_thread.clone()));
        } else {
            self.detach(index, &on_thread);
        }
        let abandoned = on_thread
            .iter()
            .filter(|other| self.shared.abandon(other))
            .count();
        if abandoned > 0 {
            log_quietly!(log::error!(
                "job {} did not return within its grace after being cancelled; \
                 abandoned it ({abandoned} job(s) on {})",
                job.record().id,
                self.shared.names[index]
            ));
        }
    }

    /// Detaches position `index`'s thread if it is still inside one of
    /// `jobs` (registry invariant 6), and starts its replacement. Returns
    /// whether it did.
    fn detach(&mut self, index: usize, jobs: &[Arc<dyn Tracked>]) -> bool {
        let generation = self.generation(index);
        let tally = &self.shared.counters.workers[index];
        let detached = jobs.iter().any(|job| {
            job.record().detach_if_not_returned(|| {
                tally.generation.fetch_add(1, Ordering::AcqRel);
            })
        });
        if !detached {
            // It returned on its own meanwhile, and goes on as a worker.
            return false;
        }
        let Slot::Running(handle) = std::mem::replace(&mut self.workers[index], Slot::Gone) else {
            // Unreachable: a thread inside a job holds its position.
            return true;
        };
        self.strays.push(Stray {
            index,
            generation,
            handle,
        });
        // Relaxed: statistics (worker invariant 8 keeps them exact). The
        // stray no longer writes its position's busy flag.
        tally.busy.store(false, Ordering::Relaxed);
        self.shared.counters.alive.fetch_sub(1, Ordering::Relaxed);
        self.shared.counters.strays.fetch_add(1, Ordering::Relaxed);
        let name = Arc::clone(&self.shared.names[index]);
        // While stopping, only to drain a queue no live worker would.
        let replace = !self.stopping
            || (!self.shared.jobs_rx.is_empty() && !self.shared.abort.load(Ordering::Acquire));
        if replace {
            log_quietly!(log::warn!(
                "detached stuck worker {name}; starting a replacement"
            ));
            match worker::spawn(&self.shared, index, None) {
                Ok(handle) => self.workers[index] = Slot::Running(handle),
                Err(error) => {
                    let delay = self.next_backoff();
                    log_quietly!(log::error!(
                        "failed to start a replacement for {name}: {error}; retrying in {delay:?}"
                    ));
                    self.workers[index] = Slot::Waiting(far_after(Instant::now(), delay));
                }
            }
        } else {
            log_quietly!(log::warn!("detached stuck worker {name} during shutdown"));
        }
        true
    }

    /// A detached thread's job returned and it exited: join it, and detach a
    /// held position in its place (invariant 7).
    fn on_stray_exit(&mut self, index: usize, generation: u64) {
        if let Some(at) = self
            .strays
            .iter()
            .position(|stray| stray.index == index && stray.generation == generation)
        {
            let stray = self.strays.swap_remove(at);
            // Invariant 1: it finished its drop guard, so this is prompt.
            if let Err(payload) = stray.handle.join() {
                unwind::dispose(payload);
            }
        }
        // A held thread whose job returned meanwhile is a worker again:
        // skip it.
        while let Some((index, jobs)) = self.held.pop_front() {
            if self.detach(index, &jobs) {
                break;
            }
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(job) = self.deadlines.pop_due(now) {
            // Timer invariant 1: no user code on this path.
            let outcome = self.shared.cancel_keeping_closure(&job);
            log_quietly!(log::debug!(
                "job {} passed its deadline: {outcome}",
                job.record().id
            ));
        }
    }

    /// Cancels every job still in the queue, dropping their closures here;
    /// returns how many there were. Only once no worker is left to drain the
    /// queue (or the supervisor gave up).
    fn cancel_queued(&self) -> usize {
        let mut count = 0;
        while let Ok(message) = self.shared.jobs_rx.try_recv() {
            count += 1;
            // The supervisor is the only thread that takes entries for
            // `others` (stats `Tally::took`).
            self.shared.counters.others.took();
            if let Some(job) = message.tracked() {
                // Drops its closure and frees its slot if it was still
                // pending.
                self.shared.cancel(job);
                // Cancelled earlier by the timer or `shutdown_now`'s sweep,
                // which left the closure (worker invariant 6) and its slot.
                if !job.record().was_started() {
                    self.shared.discard(job);
                }
            } else {
                // Off the queue: its slot is free (shared invariant 5).
                self.shared.release_slot();
                self.shared.report.untracked_dropped();
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
    use std::sync::mpsc;
    use std::time::Duration;

    use super::Event;
    use crate::job::{Message, test_cell};
    use crate::sync::{PATIENCE, eventually};
    use crate::{JobOptions, JobStatus, Pool};

    /// The number of deadlines the supervisor holds, or `None` if it does
    /// not answer (it is gone).
    fn deadlines(pool: &Pool) -> Option<usize> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        pool.shared.events.send(Event::Probe(tx)).ok()?;
        rx.recv_timeout(PATIENCE).ok()
    }

    /// Kills worker threads of `pool` as a bug would: `count` poisoned jobs.
    fn kill_workers(pool: &Pool, count: usize) {
        for _ in 0..count {
            let (cell, handle) = test_cell(|_| Ok(()), &pool.shared);
            pool.shared.accept(Message::Poison(cell), true).unwrap();
            assert!(handle.wait(PATIENCE).is_some());
        }
    }

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
        assert!(pool.join_timeout(PATIENCE));
        // The supervisor swept finished jobs' deadlines as they piled up.
        // Fewer than a compaction's worth may stay stale (timer invariant
        // 2), plus what was live at the last sweep; a loaded supervisor that
        // pushed entries late adds to that, so the bound is loose: without
        // any sweep all 5,000 would stay.
        let len = deadlines(&pool).unwrap();
        assert!(len < 4 * crate::timer::MIN_COMPACT, "{len}");
    }

    #[test]
    fn deadlines_of_a_finished_burst_are_swept_without_new_pushes() {
        // Every deadline is pushed while the jobs pile up behind a blocked
        // worker; none is pushed after they finish. The entries must still
        // go (each pins its job's allocation) once the jobs end.
        let pool = Pool::builder().workers(1).build().unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        pool.execute(move || {
            let _ = release_rx.recv_timeout(PATIENCE);
        })
        .unwrap();
        let options = JobOptions::new().timeout(Duration::from_secs(3600));
        let jobs = 20_000;
        for _ in 0..jobs {
            pool.submit_with(options, |_| Ok(())).unwrap();
        }
        assert!(eventually(|| deadlines(&pool) == Some(jobs)));
        drop(release_tx);
        assert!(pool.join_timeout(PATIENCE));
        assert!(
            eventually(|| deadlines(&pool).unwrap() <= crate::timer::MIN_COMPACT),
            "{:?}",
            deadlines(&pool)
        );
    }

    #[test]
    fn a_backoff_too_large_for_an_instant_does_not_kill_the_supervisor() {
        // No free restart and a backoff of "forever": the first death is a
        // storm whose respawn is due beyond any `Instant`. (`build` refuses
        // such a backoff; the supervisor must survive it anyway.)
        let pool = Pool::builder()
            .workers(1)
            .thread_name("sup-max")
            .restart_limit(0, Duration::from_secs(60))
            .restart_backoff(Duration::MAX, Duration::MAX)
            .build_unchecked()
            .unwrap();
        kill_workers(&pool, 1);
        let queued = pool.submit(|_| Ok(())).unwrap();
        // The supervisor is alive and still holds the respawn back.
        assert_eq!(deadlines(&pool), Some(0));
        assert_eq!(pool.stats().restarts, 0);
        assert_eq!(queued.status(), JobStatus::Pending);
        // Shutdown abandons the held-back respawn and cancels what no worker
        // is left to run; nothing is left pending, no thread behind.
        pool.shutdown();
        assert_eq!(queued.wait(PATIENCE), Some(JobStatus::Cancelled));
        assert!(eventually(|| {
            crate::tests::thread_names()
                .iter()
                .all(|name| !name.starts_with("sup-max"))
        }));
    }

    #[test]
    fn the_supervisor_survives_a_panic_of_its_own() {
        let pool = Pool::builder()
            .workers(2)
            .thread_name("sup-fault")
            .build()
            .unwrap();
        pool.shared.events.send(Event::Fault).unwrap();
        // Still answering, still respawning, still serving.
        assert_eq!(deadlines(&pool), Some(0));
        kill_workers(&pool, 1);
        assert!(eventually(|| {
            let stats = pool.stats();
            stats.restarts == 1 && stats.alive == 2
        }));
        assert_eq!(pool.submit(|_| Ok(7)).unwrap().join().unwrap(), 7);
        assert!(!pool.is_shutdown());
    }

    #[test]
    fn a_supervisor_that_keeps_failing_stops_the_pool_and_joins_every_thread() {
        let pool = Pool::builder()
            .workers(1)
            .thread_name("sup-gone")
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let running = pool
            .submit(move |token| {
                started_tx.send(()).unwrap();
                token.sleep(PATIENCE)?;
                Ok(())
            })
            .unwrap();
        started_rx.recv_timeout(PATIENCE).unwrap();
        let queued = pool.submit(|_| Ok(())).unwrap();
        for _ in 0..super::MAX_FAULTS {
            pool.shared.events.send(Event::Fault).unwrap();
        }
        // The failure is impossible to miss: the pool is shut down, the
        // running job's token cancelled, the queued job cancelled...
        assert_eq!(running.wait(PATIENCE), Some(JobStatus::Cancelled));
        assert_eq!(queued.wait(PATIENCE), Some(JobStatus::Cancelled));
        assert!(pool.is_shutdown());
        // ...and "done" came only after every thread was joined.
        assert!(
            pool.shared
                .wait_done(Some(std::time::Instant::now() + PATIENCE))
        );
        assert_eq!(pool.stats().alive, 0);
        pool.shutdown();
        assert!(eventually(|| {
            crate::tests::thread_names()
                .iter()
                .all(|name| !name.starts_with("sup-gone"))
        }));
    }
}
