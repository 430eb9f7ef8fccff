//! The worker loop: take a job, run it under `catch_unwind`, record how it
//! ended; and the drop guard that tells the supervisor when the thread ends.
//!
//! See `docs/design.md` for the job state machine.
//!
//! Invariants:
//!
//! 1. A worker that sees the pool's `abort` flag set when it dequeues a job
//!    cancels the job instead of running it. (A job dequeued at the moment
//!    the flag is set may still start; a tracked one then has its token
//!    cancelled at once.)
//! 2. Whatever ends the thread (a clean exit at shutdown, a panicking start
//!    or stop hook, a panicking logger, a bug), [`Worker`]'s `Drop` runs on
//!    it: the job it was running (if any) ends `Failed` with a message naming
//!    the worker, and the supervisor receives [`Event::Exited`]. Logging
//!    (and the `on_panic` callback) after a job ran comes after its
//!    bookkeeping, so a panicking logger there cannot change how the job
//!    ended.
//! 3. Each worker writes only its own [`Tally`] and latency histograms, so
//!    no two threads contend on a counter line while running jobs. (A job
//!    run inline, invariant 7, is counted in the tally and histograms of the
//!    worker whose thread ran it.)
//! 4. A worker's thread stays marked as one of its pool's threads until it
//!    is gone, also while its thread-locals are destroyed: a `Pool` dropped
//!    by a thread-local destructor there must not wait for the supervisor,
//!    which is joining this very thread.
//! 5. A worker started by `build` reports once its start hook is over,
//!    returned or panicked; `build` returns after every worker did, so
//!    `alive == workers` right after a normal build.
//! 6. A tracked job cancelled while queued by a thread that must not run
//!    user code (the supervisor's timer) keeps its closure; the worker that
//!    dequeues it drops it. Otherwise the closure is dropped by whoever
//!    cancels the job.
//! 7. [`run_inline`]: a worker that waits for a pending job of its own pool
//!    runs that job itself. `Record::start` lets exactly one thread take a
//!    job out of `Pending`, so the job runs once, wherever that is.
//! 8. Each worker position has a generation (in its [`Tally`]). When the
//!    supervisor detaches a thread stuck in an abandoned job, it bumps the
//!    generation (under that job's record lock, registry invariant 6) and
//!    starts a replacement, which reads the new generation. The stuck
//!    thread, once it returns, sees the change: it takes no other job and
//!    runs nothing inline, leaves `alive` and the busy flag to its
//!    replacement, and uncounts itself from the stray threads as it exits.
//!    A record keeps the generation its job started in, and the bump is a
//!    compare-and-swap from that generation: a job the stuck thread started
//!    inline just before it was detached (after the supervisor listed its
//!    jobs) can never detach the replacement, and once a replacement's job
//!    has returned nothing can detach its thread through it.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Sender, TryRecvError, select};

use crate::cancel::CancelToken;
use crate::events::{self, Span};
use crate::forensics::{self, Armed, JobPanic};
use crate::job::{JobStatus, Message, Tracked};
use crate::metrics::{self, JobTimer, Tick};
use crate::observer;
use crate::shared::Shared;
use crate::stats::{Ending, Tally};
use crate::supervisor::Event;
use crate::unwind;

/// Tries before an idle worker parks: the first `SPIN_ONLY_STEPS` spin
/// (1, 2, 4, ... iterations), the rest yield the CPU.
const SPIN_STEPS: u32 = 16;
const SPIN_ONLY_STEPS: u32 = 7;

thread_local! {
    /// Which pool this thread works for (0 on other threads), and which
    /// worker it is (`index + 1`, or 0 for the supervisor and for a worker
    /// past its loop). A `Cell` of plain integers with a `const` initialiser
    /// has no destructor, so it stays readable while the thread's other
    /// thread-locals are destroyed (invariant 4).
    static CURRENT: Cell<(usize, usize, u64)> = const { Cell::new((0, 0, 0)) };
}

/// `true` on a thread of the pool with this id: a worker (also while its
/// thread-locals are being destroyed), or the supervisor (which drops user
/// closures, so a pool's last `Arc` can be dropped there).
pub(crate) fn is_own_thread(pool: usize) -> bool {
    CURRENT
        .try_with(Cell::get)
        .is_ok_and(|(id, _, _)| id == pool)
}

/// `true` on a worker of the pool with this id, inside its job loop.
pub(crate) fn is_own_worker(pool: usize) -> bool {
    own_worker(pool).is_some()
}

/// The index and generation of the worker of pool `pool` running on this
/// thread, if this thread is one of its workers inside its job loop.
fn own_worker(pool: usize) -> Option<(usize, u64)> {
    match CURRENT.try_with(Cell::get) {
        Ok((id, slot, generation)) if id == pool && slot > 0 => Some((slot - 1, generation)),
        _ => None,
    }
}

/// Marks the current thread as one of the pool's own (see `is_own_thread`),
/// as worker `worker` (index and generation) if `Some`.
pub(crate) fn mark_own_thread(pool: usize, worker: Option<(usize, u64)>) {
    let (slot, generation) = worker.map_or((0, 0), |(index, generation)| (index + 1, generation));
    let _ = CURRENT.try_with(|cell| cell.set((pool, slot, generation)));
}

/// Starts worker `index` of the pool. If `started` is given, the worker
/// sends on it once its start hook is over, whether it returned or panicked
/// (`Builder::build` waits for that, invariant 5).
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    index: usize,
    started: Option<Sender<()>>,
) -> io::Result<JoinHandle<()>> {
    let mut builder = thread::Builder::new().name(shared.names[index].to_string());
    if let Some(size) = shared.config.stack_size {
        builder = builder.stack_size(size);
    }
    // Read here, on the supervisor: a replacement for a detached thread
    // starts with the generation that detached it.
    let generation = shared.counters.workers[index]
        .generation
        .load(Ordering::Acquire);
    let shared = Arc::clone(shared);
    builder.spawn(move || {
        Worker {
            shared,
            index,
            generation,
            up: false,
            started,
            current: Current::Idle,
            boundary: None,
        }
        .run();
    })
}

/// What the worker is doing, for the drop guard (invariant 2).
enum Current {
    Idle,
    Untracked,
    Tracked(Arc<dyn Tracked>),
}

struct Worker {
    shared: Arc<Shared>,
    index: usize,
    /// The position's generation when this thread started (invariant 8).
    generation: u64,
    /// Past the start hook and counted in `alive`.
    up: bool,
    /// Told once the start hook is over (invariant 5).
    started: Option<Sender<()>>,
    current: Current,
    /// The tick that ended the last job this thread ran, while it may
    /// start the next one: kept only if that job is taken on the first try
    /// (metrics invariant 5).
    boundary: Option<Tick>,
}

impl Worker {
    fn tally(&self) -> &Tally {
        &self.shared.counters.workers[self.index]
    }

    fn name(&self) -> &Arc<str> {
        &self.shared.names[self.index]
    }

    /// `true` once the supervisor detached this thread (invariant 8).
    fn is_stray(&self) -> bool {
        // Acquire: pairs with the supervisor's bump, made under the record
        // lock of the job this thread was stuck in (registry invariant 6).
        self.tally().generation.load(Ordering::Acquire) != self.generation
    }

    fn run(mut self) {
        // One of the pool's threads, not yet a worker: a start hook that
        // waits for a job of the pool waits for a worker to run it, and a
        // job can never be run inline, and then abandoned, on a thread that
        // is not counted as one (invariant 8).
        mark_own_thread(self.shared.id, None);
        if let Some(hook) = self.shared.config.on_thread_start.clone() {
            // A panic here unwinds the thread; `Drop` reports it (invariant 2).
            hook(self.index);
        }
        mark_own_thread(self.shared.id, Some((self.index, self.generation)));
        self.up = true;
        // Release: pairs with the Acquire in `Counters::snapshot`, so a
        // reader who sees this worker alive sees its restart counted (the
        // supervisor counts it before spawning); the send below orders it
        // before `build` returns.
        self.shared.counters.alive.fetch_add(1, Ordering::Release);
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        log::debug!("{} started", self.name());

        while let Some(message) = self.next() {
            // For a shutdown's drain (stats `Intake::close_and_drain`).
            self.tally().took();
            self.process(message);
            if self.is_stray() {
                // Invariant 8: its job was abandoned and a replacement took
                // its place; it takes no other job.
                break;
            }
        }

        // Past the loop: still one of the pool's threads (invariant 4), but
        // no longer a worker that may run a job inline.
        mark_own_thread(self.shared.id, None);
        self.up = false;
        // A stray was uncounted when it was detached (invariant 8).
        if !self.is_stray() {
            self.shared.counters.alive.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(hook) = self.shared.config.on_thread_stop.clone() {
            hook(self.index);
        }
        log::debug!("{} stopped", self.name());
    }

    /// The next job, or `None` once the pool is stopping and the queue is
    /// empty (shared invariant 2 makes that final).
    fn next(&mut self) -> Option<Message> {
        let jobs = &self.shared.jobs_rx;
        if let Ok(message) = jobs.try_recv() {
            // Taken at once: the last job's end is this one's start
            // (metrics invariant 5).
            return Some(message);
        }
        self.boundary = None;
        // A short spin, then a few yields, before parking: a submitter that
        // is slightly slower than the workers would otherwise pay a futex
        // wake-up (a syscall) for nearly every job. Bounded: SPIN_STEPS tries.
        for step in 0..SPIN_STEPS {
            match jobs.try_recv() {
                Ok(message) => return Some(message),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if step < SPIN_ONLY_STEPS {
                for _ in 0..1 << step {
                    std::hint::spin_loop();
                }
            } else {
                thread::yield_now();
            }
        }
        // Idle: block until a job arrives or the stop signal is raised.
        select! {
            recv(jobs) -> message => message.ok(),
            recv(self.shared.stop.receiver()) -> _ => jobs.try_recv().ok(),
        }
    }

    fn process(&mut self, message: Message) {
        match message {
            Message::Run(job, span, submitted) => self.run_untracked(job, &span, submitted),
            Message::Track(job) => self.run_tracked(job),
            #[cfg(test)]
            Message::Poison(job) => {
                assert!(job.record().start(self.index));
                self.shared.release_slot();
                self.current = Current::Tracked(job);
                panic!("poisoned worker");
            }
        }
    }

    fn run_untracked(&mut self, job: Box<dyn FnOnce() + Send>, span: &Span, submitted: Tick) {
        let boundary = self.boundary.take();
        // Indexed once: the tally is touched three times per job.
        let tally = &self.shared.counters.workers[self.index];
        // Off the queue: its slot is free (shared invariant 5).
        self.shared.release_slot();
        // Acquire: pairs with the store in `begin_shutdown` (invariant 1).
        if self.shared.abort.load(Ordering::Acquire) {
            self.shared.report.untracked_dropped();
            tally.count(Ending::Cancelled);
            unwind::drop_quietly(job);
            self.shared.check_idle_before_dequeue();
            return;
        }
        tally.busy.store(true, Ordering::Relaxed);
        self.current = Current::Untracked;
        // Contained (`Span::enter`).
        let _span = span.enter();
        // The capture slot is armed for the job alone (forensics invariant 2).
        let armed = forensics::arm(self.shared.config.forensics);
        let timer = self
            .shared
            .counters
            .latency
            .start(self.index, submitted, boundary);
        let result = unwind::catch(job);
        // Before counting it (metrics invariant 2).
        self.boundary = timer.map(JobTimer::stop);
        let caught = armed.and_then(Armed::disarm);
        // A job it ran inline may have been abandoned and this thread
        // detached meanwhile: the flag is then its replacement's
        // (invariant 8). Nothing can detach it from here on: every job it
        // ran inline has returned.
        if !self.is_stray() {
            tally.busy.store(false, Ordering::Relaxed);
        }
        let ending = match result {
            Ok(()) => Ending::Completed,
            Err(_) => Ending::Panicked,
        };
        tally.count(ending);
        self.current = Current::Idle;
        self.shared.check_idle_before_dequeue();
        // Reported after the bookkeeping, so a panicking logger (it would
        // end this thread) cannot leave the job uncounted.
        if let Err(message) = result {
            let panic = Arc::new(JobPanic::new(message, self.name(), caught));
            forensics::notify(self.shared.config.on_panic.as_ref(), None, &panic);
            events::panicked(None, &panic);
        }
    }

    fn run_tracked(&mut self, job: Arc<dyn Tracked>) {
        let Some(started) = claim(
            &self.shared,
            &job,
            (self.index, self.generation),
            self.boundary.take(),
            true,
        ) else {
            return;
        };
        // Before anything that could end the thread (even a log call: a
        // logger may panic), so the drop guard finishes the job (invariant 2).
        self.current = Current::Tracked(Arc::clone(&job));
        #[cfg(test)]
        AFTER_CLAIM.run(self.shared.id);
        let span = job.take_span();
        // Contained (`Span::enter`).
        let _span = span.enter();
        // Its busy flag is up (`claim`).
        let tally = &self.shared.counters.workers[self.index];
        let generation = self.generation;
        let (ended, at) = run_claimed(&self.shared, &job, self.index, started, true, || {
            // Not busy before the job is counted, so a `join` released by
            // the count sees no worker busy. The record says the thread
            // returned, so it can no longer be detached (registry invariant
            // 6: the loop's job is the thread's outermost, and any job it
            // ran inline has returned), and a stray must not clear its
            // replacement's flag.
            if tally.generation.load(Ordering::Acquire) == generation {
                tally.busy.store(false, Ordering::Relaxed);
            }
        });
        self.boundary = Some(at);
        self.current = Current::Idle;
        ended.report(&self.shared, &job);
    }
}

/// Runs once the worker's loop has claimed a tracked job (tests widen the
/// window before it runs).
#[cfg(test)]
pub(crate) static AFTER_CLAIM: crate::sync::Hooks = crate::sync::Hooks::new();

/// Runs as the worker's loop is about to start a tracked job it took off
/// the queue (tests pause a worker on an entry whose job ended already).
#[cfg(test)]
pub(crate) static BEFORE_START: crate::sync::Hooks = crate::sync::Hooks::new();

/// Takes a tracked job out of `Pending` on worker `index` in its generation
/// `generation` (at `boundary` if the worker has one, metrics invariant 5),
/// or ends it `Cancelled` if
/// the pool is aborting or its deadline passed. Returns the start tick if
/// the caller must now run it (with [`run_claimed`]). `dequeues_next`: the
/// caller is the worker's loop, which goes back to the queue if this
/// returns `None` (idle invariant 6), and whose busy flag this raises for a
/// job it runs.
fn claim(
    shared: &Shared,
    job: &Arc<dyn Tracked>,
    (index, generation): (usize, u64),
    boundary: Option<Tick>,
    dequeues_next: bool,
) -> Option<Tick> {
    let record = job.record();
    let expired = record.deadline().is_some_and(|d| Instant::now() >= d);
    // Acquire: pairs with the store in `begin_shutdown` (invariant 1).
    let aborting = shared.abort.load(Ordering::Acquire);
    // Read before the record's lock, and wasted only if the job is no longer
    // pending.
    let started = metrics::started(record.submitted, boundary);
    if aborting || expired {
        // A pending job whose deadline passed never starts. If it was
        // cancelled already (by id, by the deadline timer, by
        // `shutdown_now`'s sweep), this changes nothing: its canceller
        // counted it.
        shared.cancel(job);
    } else {
        #[cfg(test)]
        if dequeues_next {
            BEFORE_START.run(shared.id);
        }
        let won = record.start_at(index, generation, started, || {
            // The loop's busy flag goes up with the start, under the
            // record's lock: the supervisor detaches a thread only through
            // a running job, under the same lock, and lowers the flag
            // after; so a stray never raises its replacement's flag
            // (invariant 8), and an entry whose job ended already never
            // raises it at all.
            if dequeues_next {
                shared.counters.workers[index]
                    .busy
                    .store(true, Ordering::Relaxed);
            }
        });
        if won {
            // This thread won `Pending -> Running` (shared invariant 5).
            shared.release_slot();
            observer::note(job);
            // A `shutdown_now` that swept running tokens just before this
            // start missed this job: cancel its token here instead.
            if shared.abort.load(Ordering::SeqCst) {
                shared.interrupt_for_shutdown(job);
            }
            return Some(started);
        }
    }
    // Not this worker's to run: cancelled while queued, or run inline by a
    // worker that joined it. The timer and `shutdown_now`'s sweep leave a
    // cancelled job's closure in place (invariant 6): drop it here, on a
    // worker, unless a worker took it to run, and free its slot (shared
    // invariant 5). (Dropping twice is a no-op.)
    if !record.was_started() {
        shared.discard(job);
    }
    // Its entry is off the queue: a finisher that skipped its idle check
    // because of it relies on this one (idle invariant 6).
    if dequeues_next {
        shared.check_idle_before_dequeue();
    } else {
        shared.check_idle();
    }
    None
}

/// How a tracked job ended, kept to report it after the bookkeeping.
struct Ended {
    status: JobStatus,
    worker: usize,
    /// `Some` if it panicked.
    panic: Option<Arc<JobPanic>>,
}

impl Ended {
    /// Reported once the job is terminal (the `on_panic` callback and the
    /// logger are user code, even `log_enabled!`), like `run_untracked`.
    fn report(self, shared: &Shared, job: &Arc<dyn Tracked>) {
        let id = job.record().id;
        match self.panic {
            Some(panic) => {
                forensics::notify(shared.config.on_panic.as_ref(), Some(id), &panic);
                events::panicked(Some(id), &panic);
            }
            None => events::ended(id, &self.status, &shared.names[self.worker]),
        }
    }
}

/// Runs a job [`claim`] took at tick `started`, on worker `index`'s thread,
/// and records how it ended; returns that and the tick it ended at.
/// `dequeues_next` as for [`claim`]. `returned` runs once the record says
/// the thread returned from the job, before the job is counted (the
/// worker's loop lowers its busy flag there); it must run no user code.
/// Nothing here unwinds: the job runs under `catch_unwind`, and the only
/// log call is contained.
fn run_claimed(
    shared: &Shared,
    job: &Arc<dyn Tracked>,
    index: usize,
    started: Tick,
    dequeues_next: bool,
    returned: impl FnOnce(),
) -> (Ended, Tick) {
    let name = &shared.names[index];
    log_quietly!(events::started(job.record().id, name));
    // The capture slot is armed for the job alone (forensics invariant 2).
    let armed = forensics::arm(shared.config.forensics);
    // The token's state lives in the job's record: no allocation.
    let timer = shared
        .counters
        .latency
        .timer(index, job.record().submitted, started);
    let outcome = job.run(&CancelToken::for_job(Arc::clone(job)));
    // One reading for the record's end time and the histograms.
    let at = metrics::now();
    // Before the record turns terminal and the job is counted (metrics
    // invariant 2); on this worker's thread, inline or not (invariant 3).
    if let Some(timer) = timer {
        timer.stop_at(at);
    }
    let caught = armed.and_then(Armed::disarm);
    let panic = match &outcome.status {
        JobStatus::Failed(message) if outcome.panicked => {
            let panic = Arc::new(JobPanic::new(message.clone(), name, caught));
            // Before the record turns terminal (registry `set_panic`).
            job.record().set_panic(Arc::clone(&panic));
            Some(panic)
        }
        _ => None,
    };
    // Kept for the report; no allocation unless the job failed.
    let ended = Ended {
        status: outcome.status.clone(),
        worker: index,
        panic,
    };
    let ending = Ending::of(&outcome.status, outcome.panicked);
    let notify = job.record().finish_at(outcome.status, at);
    // The record now says the thread returned (registry invariant 6), and
    // the job is not counted yet.
    returned();
    // `None` if the supervisor abandoned it meanwhile (registry invariant 2).
    if let Some(notify) = notify {
        let tally = &shared.counters.workers[index];
        shared.ended(job, notify, tally, ending, dequeues_next);
    }
    (ended, at)
}

/// Runs the tracked job `job` on this thread, now, if this thread is one of
/// `shared`'s workers and the job is still pending: a job that joins a job
/// it submitted to its own pool would otherwise wait for a worker that may
/// never come (every worker waiting the same way). Invariant 7.
///
/// Returns once the job is terminal, or at once if it is not this call's to
/// run (running elsewhere, finished, or this is not a worker of its pool).
pub(crate) fn run_inline(shared: &Shared, job: &Arc<dyn Tracked>) {
    let Some((index, generation)) = own_worker(shared.id) else {
        return;
    };
    // A detached thread (invariant 8) runs nothing more for its pool.
    if shared.counters.workers[index]
        .generation
        .load(Ordering::Acquire)
        != generation
    {
        return;
    }
    if job.record().status() != JobStatus::Pending {
        return;
    }
    // Not after a boundary: the waiting job is still running.
    // Not back to the queue afterwards: into the job that joined this one.
    let Some(started) = claim(shared, job, (index, generation), None, false) else {
        return;
    };
    let span = job.take_span();
    // Contained (`Span::enter`).
    let _span = span.enter();
    // The worker stays busy: it goes back into the job that joined this one.
    let (ended, _) = run_claimed(shared, job, index, started, false, || ());
    // Contained: a panicking logger here would unwind into the job that
    // joined this one and change its outcome.
    log_quietly!(ended.report(shared, job));
}

impl Drop for Worker {
    /// Invariant 2. Runs during unwinding too, so nothing here may panic:
    /// the user code it can reach (the closure's and a result's `Drop`, the
    /// logger) is contained.
    fn drop(&mut self) {
        let died = thread::panicking();
        let current = std::mem::replace(&mut self.current, Current::Idle);
        let mut untracked = false;
        // A job still running ends first: its record then says the thread
        // returned (job invariant 2: the slot before the record), so the
        // supervisor can no longer detach this thread through it, and the
        // stray check below holds (registry invariant 6).
        let ended = match current {
            Current::Tracked(job) => {
                let message = format!(
                    "worker {} died while running job {}",
                    self.name(),
                    job.record().id
                );
                // Only if still running: the job may have ended, and its
                // result been stored, before something else ended the
                // thread.
                if job.record().status() == JobStatus::Running {
                    job.lose(&message);
                }
                // Always: for a job that ended already (abandoned, its
                // thread held at the stray cap) it changes nothing but
                // `returned`, so the position's next thread is never
                // detached through it.
                let notify = job
                    .record()
                    .finish_at(JobStatus::Failed(message.clone()), metrics::now());
                Some((job, notify, message))
            }
            Current::Idle => None,
            Current::Untracked => {
                untracked = true;
                None
            }
        };
        // Down before the job is counted, so whoever the count releases
        // sees it down; a stray's flag is its replacement's (invariant 8).
        if !self.is_stray() {
            self.tally().busy.store(false, Ordering::Relaxed);
        }
        // Bookkeeping first, logging last: a panicking logger must not leave
        // a job non-terminal or the supervisor uninformed.
        let lost = match ended {
            Some((job, notify, message)) => {
                let ended_here = notify.is_some();
                // Counted, and its waiters woken, before its closure (user
                // code, maybe slow) is dropped.
                if let Some(notify) = notify {
                    self.shared
                        .ended(&job, notify, self.tally(), Ending::Failed, false);
                }
                // Invariant 1 of `job`: a job that will never run drops its
                // closure (contained) now, not whenever its record goes.
                // It started, so its slot was freed then: no release here.
                let _ = job.discard();
                ended_here.then(|| (Some(job.record().id), message))
            }
            None if untracked => {
                self.tally().count(Ending::Failed);
                self.shared.check_idle();
                Some((
                    None,
                    format!("worker {} died while running an untracked job", self.name()),
                ))
            }
            None => None,
        };
        // Read after the closure's drop: user code there that joined a job
        // of the pool ran it inline on this thread, which may have been
        // detached through it; every such job has returned by now, so this
        // reading holds (invariant 8).
        if self.is_stray() {
            // Invariant 8: the supervisor counted it as a stray, not alive.
            self.shared.counters.strays.fetch_sub(1, Ordering::Relaxed);
        } else if self.up {
            self.shared.counters.alive.fetch_sub(1, Ordering::Relaxed);
        }
        // Stays one of the pool's threads while its thread-locals are
        // destroyed (invariant 4).
        mark_own_thread(self.shared.id, None);
        // The start hook is over (it panicked): `build` need not wait longer.
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        let _ = self.shared.events.send(Event::Exited {
            index: self.index,
            generation: self.generation,
            died,
        });
        if let Some((id, message)) = lost {
            // Contained: this may run during unwinding.
            log_quietly!(events::job_lost(self.name(), id, &message));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::job::{JobStatus, Message, test_cell};
    use crate::sync::eventually;
    use crate::{JobError, Pool};

    /// Runs its closure when dropped.
    struct OnDrop<F: FnMut()>(F);

    impl<F: FnMut()> Drop for OnDrop<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }

    /// A one-worker pool (grace 5 ms) whose only worker dies running a job
    /// whose closure holds `cleanup`: the dying worker's drop guard drops
    /// it, so `cleanup`'s `Drop` runs on the dying thread.
    fn dying_with(cleanup: impl Send + 'static) -> (Pool, crate::JobHandle<()>) {
        let pool = Pool::builder()
            .workers(1)
            .abandon_after(std::time::Duration::from_millis(5))
            .build()
            .unwrap();
        let (cell, handle) = test_cell(
            move |_| {
                let _cleanup = &cleanup;
                Ok(())
            },
            &pool.shared,
        );
        pool.shared.accept(Message::Poison(cell), true).unwrap();
        (pool, handle)
    }

    #[test]
    fn a_job_on_a_dying_worker_ends_failed_and_the_worker_is_replaced() {
        let pool = Pool::builder()
            .workers(2)
            .thread_name("die")
            .build()
            .unwrap();
        let (cell, handle) = test_cell(|_| Ok(()), &pool.shared);
        let id = handle.id();
        pool.shared.accept(Message::Poison(cell), true).unwrap();
        let message = match handle.join() {
            Err(JobError::WorkerDied(message)) => message,
            other => panic!("unexpected {other:?}"),
        };
        assert!(message.starts_with("worker die-"), "{message}");
        assert!(
            message.ends_with(&format!("died while running job {id}")),
            "{message}"
        );
        assert_eq!(pool.status(id), Some(JobStatus::Failed(message)));
        assert!(eventually(|| {
            let stats = pool.stats();
            stats.restarts == 1 && stats.alive == 2
        }));
        let stats = pool.stats();
        assert_eq!((stats.submitted, stats.failed, stats.panicked), (1, 1, 0));
        // The replacement serves jobs.
        for i in 0..10 {
            assert_eq!(pool.submit(move |_| Ok(i)).unwrap().join().unwrap(), i);
        }
    }

    /// A worker dying with a job running ends the job before it drops the
    /// job's closure (user code, which may take long): a grace running out
    /// meanwhile must not detach the dying thread through it (that counted
    /// it out of `alive` twice and left a stray counted forever).
    #[test]
    fn a_dying_worker_ends_its_job_before_dropping_the_closure() {
        use std::sync::mpsc;

        use crate::sync::PATIENCE;

        let (dropping_tx, dropping) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let (pool, handle) = dying_with(OnDrop(move || {
            let _ = dropping_tx.send(());
            let _ = released.recv_timeout(PATIENCE);
        }));
        // The drop guard is dropping the closure: the job is over, counted
        // and its waiters woken.
        dropping.recv_timeout(PATIENCE).unwrap();
        assert!(handle.status().is_terminal(), "{:?}", handle.status());
        assert_eq!(handle.cancel(), crate::CancelOutcome::AlreadyFinished);
        assert!(pool.join_timeout(PATIENCE));
        release.send(()).unwrap();
        assert!(eventually(|| {
            let stats = pool.stats();
            (stats.alive, stats.stray_threads, stats.restarts) == (1, 0, 1)
        }));
    }

    /// A worker taking an entry whose job ended while queued (cancelled)
    /// off the queue is not busy: `join` returns on the idle pool, and its
    /// caller reads `busy: 0`, while the worker is at that entry.
    #[test]
    fn a_worker_at_an_ended_jobs_entry_is_not_busy() {
        use crate::CancelOutcome;
        use crate::sync::PATIENCE;

        let pool = Pool::new(1).unwrap();
        let (blocker, release) = crate::tests::running_held_job(&pool);
        let ended = pool.submit(|_| Ok(())).unwrap();
        assert_eq!(ended.cancel(), CancelOutcome::Cancelled);
        let (paused, go) = super::BEFORE_START.pause(pool.shared.id);
        release.send(()).unwrap();
        blocker.join().unwrap();
        paused.recv_timeout(PATIENCE).unwrap();
        assert!(pool.join_timeout(PATIENCE));
        let stats = pool.stats();
        go.send(()).unwrap();
        assert_eq!(stats.busy, 0, "{stats:?}");
    }

    /// A job abandoned while its thread was held at the stray cap, and
    /// whose thread then died: its record says the thread returned, so the
    /// position's next thread is never detached through it.
    #[test]
    fn a_held_job_whose_thread_died_never_detaches_the_next_thread() {
        use std::sync::mpsc;
        use std::time::Duration;

        use crate::CancelOutcome;
        use crate::sync::PATIENCE;

        let pool = Pool::builder()
            .workers(1)
            .max_stray_threads(0)
            .abandon_after(Duration::from_millis(5))
            .build()
            .unwrap();
        let (claimed_tx, claimed) = mpsc::channel::<()>();
        let (die, dies) = mpsc::channel::<()>();
        super::AFTER_CLAIM.set(pool.shared.id, move || {
            claimed_tx.send(()).unwrap();
            let _ = dies.recv_timeout(PATIENCE);
            panic!("a worker dying between claim and run");
        });
        let job = pool.submit(|_| Ok(())).unwrap();
        claimed.recv_timeout(PATIENCE).unwrap();
        // Abandoned, but held: no stray may be made.
        assert_eq!(job.cancel(), CancelOutcome::Requested);
        assert!(eventually(|| job.status() == JobStatus::Abandoned));
        die.send(()).unwrap();
        assert!(eventually(|| {
            let stats = pool.stats();
            (stats.restarts, stats.alive) == (1, 1)
        }));
        let record = pool.shared.registry.get(job.id()).unwrap();
        assert!(
            !record.record().detach_if_not_returned(|_| true),
            "the dead thread's job can still detach its position's thread"
        );
    }

    /// A dying worker's guard drops its job's closure; a closure whose
    /// `Drop` joins a pending job of the pool runs it inline there, and
    /// that job may be abandoned and the dying thread detached through it:
    /// the thread is then counted out once, as a stray.
    #[test]
    fn a_job_run_inline_by_a_dying_workers_cleanup_keeps_the_counts() {
        use std::sync::mpsc;

        use crate::JobHandle;
        use crate::sync::PATIENCE;

        let (handles_tx, handles_rx) = mpsc::channel::<JobHandle<()>>();
        let (dropping_tx, dropping) = mpsc::channel();
        let (pool, _handle) = dying_with(OnDrop(move || {
            let _ = dropping_tx.send(());
            if let Ok(handle) = handles_rx.recv_timeout(PATIENCE) {
                let _ = handle.wait(PATIENCE);
            }
        }));
        dropping.recv_timeout(PATIENCE).unwrap();
        // The only worker is dying: B stays queued until its cleanup joins
        // it and runs it inline.
        let (started_tx, started) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let b = pool
            .submit(move |_| {
                started_tx.send(()).unwrap();
                let _ = released.recv_timeout(PATIENCE);
                Ok(())
            })
            .unwrap();
        let id = b.id();
        handles_tx.send(b).unwrap();
        started.recv_timeout(PATIENCE).unwrap();
        // Its grace runs out: abandoned, the dying thread detached.
        assert_eq!(pool.cancel(id), crate::CancelOutcome::Requested);
        assert!(eventually(|| pool.status(id) == Some(JobStatus::Abandoned)));
        release.send(()).unwrap();
        assert!(eventually(|| {
            let stats = pool.stats();
            (stats.alive, stats.stray_threads) == (1, 0)
        }));
    }

    /// A start hook runs on one of the pool's threads, not yet a worker: a
    /// job it joins is not run inline there (where, abandoned, it would get
    /// a thread detached that was never counted alive).
    #[test]
    fn a_start_hook_is_not_a_worker() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{OnceLock, mpsc};

        use crate::sync::PATIENCE;

        let pool_id = std::sync::Arc::new(OnceLock::new());
        let (seen_tx, seen) = mpsc::channel::<(bool, bool)>();
        let seen_tx = std::sync::Mutex::new(seen_tx);
        let calls = AtomicUsize::new(0);
        let id = std::sync::Arc::clone(&pool_id);
        let pool = Pool::builder()
            .workers(1)
            .on_thread_start(move |_| {
                // The first call is the initial thread's, during `build`.
                if calls.fetch_add(1, Ordering::SeqCst) == 1 {
                    let id = *id.get().unwrap();
                    let seen = (super::is_own_thread(id), super::is_own_worker(id));
                    seen_tx.lock().unwrap().send(seen).unwrap();
                }
            })
            .build()
            .unwrap();
        pool_id.set(pool.shared.id).unwrap();
        // Its only worker dies; the replacement's hook looks at itself.
        let (cell, handle) = test_cell(|_| Ok(()), &pool.shared);
        pool.shared.accept(Message::Poison(cell), true).unwrap();
        assert!(handle.wait(PATIENCE).is_some());
        let (own_thread, worker) = seen.recv_timeout(PATIENCE).unwrap();
        assert!(own_thread, "the hook runs on one of the pool's threads");
        assert!(!worker, "the hook's thread is not a worker yet");
        assert!(pool.join_timeout(PATIENCE));
    }
}
