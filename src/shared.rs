//! The state every part of a pool shares: the queue, the intake gate, the
//! registry, the counters and the shutdown signals.
//!
//! See `docs/design.md` for the shutdown protocol. The tests are in
//! `shared/tests.rs`.
//!
//! Invariants:
//!
//! 1. Intake: a job enters the queue only while its submitter holds an
//!    intake permit, and no permit is granted once shutdown has closed the
//!    intake. Shutdown waits until every permit granted before it closed
//!    has queued its job (its entry is in the queue or was taken off it) or
//!    was withdrawn (`Intake::close_and_drain`), so after
//!    [`Shared::begin_shutdown`] has closed the intake, nothing is ever added
//!    to the queue again.
//! 2. Workers are told to stop (the `stop` signal) only after 1 holds, so a
//!    worker that finds the queue empty after the signal may exit: no job can
//!    arrive behind it.
//! 3. A job is counted `submitted` before it is queued (and counted
//!    `refused` if the queue then refuses it), and counted finished in a
//!    tally when it ends. So `submitted - refused - finished` never drops
//!    below the number of jobs still pending or running, and
//!    [`Shared::wait_idle`] returning means the counters added up at some
//!    instant after it began (the idle gate's guarantee, `idle.rs`). Every
//!    thread that counts a finish or a refusal calls [`Shared::check_idle`]
//!    afterwards; nothing else changes the sum. (A submitter unwinding
//!    while it holds a permit would count a refusal without the check;
//!    nothing between `enter` and the send can unwind.) There is no
//!    shared "outstanding" counter: it would put a cache line written by
//!    submitters and workers alike on every job's path.
//! 4. Lock order: `phase`, then a registry shard, then a record's state.
//!    The idle gate's lock, `done` and the slots' `room` are leaves. No
//!    user code runs under any of them.
//! 5. Bounded queue: a job takes a slot ([`Slots`]) before it enters the
//!    registry or the queue, so a job can be cancelled by id only while it
//!    holds one. The slot is released exactly once, by
//!    [`Shared::release_slot`], when the queue stops holding the job's
//!    closure: for an untracked job when it is taken off the queue (by a
//!    worker, or by the supervisor draining the queue); for a tracked job
//!    when a worker starts it (the closure is taken to run, at most once) or
//!    when its closure is dropped unrun ([`Shared::discard`]; the closure
//!    goes once). So a cancel by id frees its slot at once (its canceller
//!    drops the closure); a job cancelled by its deadline or by
//!    `shutdown_now`'s sweep, which leave the closure to the worker that
//!    dequeues it (worker invariant 6), keeps its slot until then: the
//!    capacity bounds the closures the queue holds, so a bounded queue
//!    bounds memory even when every worker is stuck.
//! 6. A thread of the pool never waits for a slot (it could be waiting for
//!    itself): a blocking submission from one refuses with
//!    [`SubmitError::QueueFull`] instead.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, SendError, Sender};

use crate::builder::Config;
use crate::error::SubmitError;
use crate::idle::{Counts, IdleGate};
use crate::job::{CancelOutcome, Message, Tracked};
use crate::observer::{self, Feed};
use crate::registry::{CancelStep, Notify, Registry};
use crate::report::ReportLog;
use crate::slots::Slots;
use crate::stats::{Counters, Ending, Tally};
use crate::supervisor::Event;
use crate::sync::{lock, wait_until};
use crate::timer::{Stale, far_after};
use crate::worker;

/// How a shutdown treats queued and running jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Run everything queued, then stop.
    Graceful,
    /// Cancel everything queued and every running job's token, then stop.
    Now,
}

#[repr(align(128))]
pub(crate) struct Shared {
    /// Unique per pool in this process; tells a worker thread its own pool.
    pub(crate) id: usize,
    pub(crate) config: Config,
    pub(crate) names: Box<[Arc<str>]>,
    pub(crate) supervisor_name: String,
    pub(crate) jobs_tx: Sender<Message>,
    pub(crate) jobs_rx: Receiver<Message>,
    pub(crate) registry: Registry,
    /// The observer's buffer, if the pool has an observer (`observer.rs`).
    pub(crate) feed: Option<Arc<Feed>>,
    pub(crate) counters: Counters,
    pub(crate) events: Sender<Event>,
    /// Finished jobs whose deadline entries are still in the timer's heap.
    pub(crate) stale: Stale,
    /// What `shutdown_now` ended, for its report (logged only once `abort`
    /// is set).
    pub(crate) report: ReportLog,
    /// Set by `shutdown_now`: workers cancel what they dequeue instead of
    /// running it.
    pub(crate) abort: AtomicBool,
    /// The bounded queue's slots (invariant 5); `None` when unbounded.
    /// Closed when shutdown begins, which wakes submitters waiting for room.
    slots: Option<Slots>,
    /// Raised once intake is drained (invariant 2); workers exit when the
    /// queue is empty.
    pub(crate) stop: Signal,
    phase: Mutex<Phase>,
    /// Where `join` waits; finishers check it (invariant 3).
    pub(crate) idle: IdleGate,
    /// Set by the supervisor when every thread of the pool has been joined.
    done: Mutex<bool>,
    done_cond: Condvar,
}

/// The pool's counters as the idle gate reads them (`idle.rs`).
impl Counts for Shared {
    /// The queue holds an entry, so a worker (or the supervisor, draining
    /// it) will take it off and check again (idle invariant 6).
    fn pending(&self) -> bool {
        // Idle invariant 6: between this thread's count, dequeue or
        // registration and its look at the queue.
        fence(Ordering::SeqCst);
        !self.jobs_rx.is_empty()
    }

    fn accepted(&self) -> u64 {
        self.counters.intake.accepted()
    }

    fn outstanding(&self) -> (u64, u64) {
        self.counters.outstanding()
    }
}

#[derive(Default)]
struct Phase {
    closed: bool,
    aborted: bool,
}

impl Shared {
    pub(crate) fn new(config: Config, events: Sender<Event>) -> Self {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        // Unbounded even for a bounded queue: `slots` enforces the capacity
        // (invariant 5), so nothing is allocated per slot up front.
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let slots = config.queue_capacity.map(Slots::new);
        Shared {
            // Relaxed: only uniqueness matters.
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            names: (0..config.workers)
                .map(|i| Arc::from(format!("{}-{i}", config.thread_name)))
                .collect(),
            supervisor_name: format!("{}-supervisor", config.thread_name),
            registry: Registry::new(config.retain_finished),
            feed: config
                .observer
                .as_ref()
                .map(|_| Arc::new(Feed::new(config.observer_capacity, &config.thread_name))),
            counters: Counters::new(config.workers, config.latency_metrics),
            config,
            jobs_tx,
            jobs_rx,
            events,
            stale: Stale::default(),
            report: ReportLog::default(),
            abort: AtomicBool::new(false),
            slots,
            stop: Signal::new(),
            phase: Mutex::default(),
            idle: IdleGate::new(),
            done: Mutex::new(false),
            done_cond: Condvar::new(),
        }
    }

    /// Accepts one job into the queue, blocking on a full bounded queue if
    /// `blocking` (unless called on one of the pool's own threads:
    /// invariant 6). On error the job was not queued; it is dropped by the
    /// caller's thread after this returns.
    pub(crate) fn accept(&self, message: Message, blocking: bool) -> Result<(), SubmitError> {
        self.accept_with(blocking, || (message, ()))
    }

    /// [`accept`](Self::accept) a message made by `make` only once it has
    /// its permit and its slot, and hand back what `make` returns beside it.
    /// A tracked job takes its id there: its number in a registry shard
    /// (registry invariant 9) is taken only by a job that will be queued,
    /// so refused submissions leave no gaps in the shard's ring. `make`
    /// must run no user code (a slot and a permit are held); if refused
    /// before it runs, it is dropped (with the job it holds) after the
    /// permit is given back.
    pub(crate) fn accept_with<R>(
        &self,
        blocking: bool,
        make: impl FnOnce() -> (Message, R),
    ) -> Result<R, SubmitError> {
        // Invariant 1: no permit, no entry.
        let Some(permit) = self.counters.intake.enter() else {
            // See `Intake::enter`.
            self.check_idle();
            return Err(SubmitError::Shutdown);
        };
        // Invariant 5: the slot before the registry, so a job that can be
        // cancelled by id always has a slot to give back.
        let refused = match self.take_slot(blocking) {
            Ok(()) => {
                let (message, made) = make();
                if let Some(job) = message.tracked() {
                    self.registry.insert(Arc::clone(job));
                    // Submitted: `Pending` (observer invariant 2).
                    observer::note(job);
                }
                // Invariant 3: the permit counted the job as submitted before
                // it can finish.
                match self.jobs_tx.send(message) {
                    Ok(()) => {
                        permit.queued();
                        return Ok(made);
                    }
                    // Unreachable while `self` holds a receiver; refuse
                    // safely anyway.
                    Err(SendError(message)) => {
                        if let Some(job) = message.tracked() {
                            self.registry.remove(job.record().id);
                        }
                        self.release_slot();
                        (SubmitError::Shutdown, Some((message, made)))
                    }
                }
            }
            Err(error) => (error, None),
        };
        // Refused and out of the intake before the job's `Drop` runs (an
        // unmade job's `make` is dropped on return, after this too).
        drop(permit);
        self.check_idle();
        let (error, made) = refused;
        drop(made);
        Err(error)
    }

    /// Takes a slot of a bounded queue, waiting for one if `blocking`
    /// (invariants 5 and 6). Free for an unbounded queue.
    fn take_slot(&self, blocking: bool) -> Result<(), SubmitError> {
        let Some(slots) = &self.slots else {
            return Ok(());
        };
        if slots.try_acquire() {
            return Ok(());
        }
        // Invariant 6, checked only once the queue is full: a job (or a
        // closure the supervisor drops) waiting for room in its own pool's
        // queue could be waiting for its own worker, which then never
        // frees a slot.
        if !blocking || worker::is_own_thread(self.id) {
            return Err(SubmitError::QueueFull);
        }
        // Wait for room, or for shutdown to begin (so a shutdown never waits
        // on a submitter stuck behind a full queue).
        if slots.acquire() {
            Ok(())
        } else {
            Err(SubmitError::Shutdown)
        }
    }

    /// Gives back the queue slot of a job that left `Pending` or the queue
    /// (invariant 5). Call exactly once per accepted job, from the thread
    /// that won that transition. Free for an unbounded queue.
    pub(crate) fn release_slot(&self) {
        if let Some(slots) = &self.slots {
            slots.release();
        }
    }

    /// Cancels a tracked job: a pending one becomes `Cancelled` and will
    /// never run (its closure is dropped here, on the caller's thread); a
    /// running one has its token cancelled.
    pub(crate) fn cancel(&self, job: &Arc<dyn Tracked>) -> CancelOutcome {
        let outcome = self.cancel_keeping_closure(job);
        if outcome == CancelOutcome::Cancelled {
            // User `Drop` of the closure: no lock held here.
            self.discard(job);
        }
        outcome
    }

    /// Drops a tracked job's closure unrun, if it still has one, and gives
    /// its queue slot back (invariant 5).
    pub(crate) fn discard(&self, job: &Arc<dyn Tracked>) {
        if job.discard() {
            self.release_slot();
        }
    }

    /// As [`cancel`](Self::cancel), but a pending job keeps its closure
    /// for the worker that dequeues it: for threads that must run no user
    /// code (the supervisor, timer invariant 1).
    pub(crate) fn cancel_keeping_closure(&self, job: &Arc<dyn Tracked>) -> CancelOutcome {
        let record = job.record();
        match record.cancel() {
            CancelStep::Cancelled(notify) => {
                // The slot is given back with the closure (invariant 5).
                if self.is_aborting() {
                    self.report.cancelled(record.id);
                }
                self.ended(job, notify, &self.counters.others, Ending::Cancelled, false);
                log_quietly!(log::debug!("job {} cancelled before it started", record.id));
                CancelOutcome::Cancelled
            }
            CancelStep::Running => {
                self.interrupt(job);
                log_quietly!(log::debug!("job {}: cancellation requested", record.id));
                CancelOutcome::Requested
            }
            CancelStep::Finished => CancelOutcome::AlreadyFinished,
        }
    }

    /// The bookkeeping of every terminal transition, in order: note it for
    /// the observer, retire the record (so once `Pool::join` returns or a
    /// sleeping waiter wakes, retention has been applied; a
    /// `JobHandle::join` that finds its job already over can return
    /// before this record's retirement), count it in
    /// `tally`, mark its timer entry stale, wake its waiters, then release
    /// `join` if the pool became idle. `tally`: the worker's that ran the
    /// job, or the shared one. `dequeues_next`: a worker that goes straight
    /// back to the queue afterwards (see [`check_idle_before_dequeue`]).
    ///
    /// [`check_idle_before_dequeue`]: Self::check_idle_before_dequeue
    pub(crate) fn ended(
        &self,
        job: &Arc<dyn Tracked>,
        notify: Notify,
        tally: &Tally,
        ending: Ending,
        dequeues_next: bool,
    ) {
        let record = job.record();
        // The observer holds the job itself, so retention cannot forget it
        // first (observer invariant 2).
        observer::note(job);
        self.registry.retire(record.id);
        tally.count(ending);
        // A job with a deadline leaves a stale timer entry (timer invariant 2).
        if record.deadline().is_some() && self.stale.note() {
            let _ = self.events.send(Event::Compact);
        }
        notify.send(record);
        if dequeues_next {
            self.check_idle_before_dequeue();
        } else {
            self.check_idle();
        }
    }

    /// Cancels a running job's token on the pool's behalf (by id, deadline,
    /// `shutdown_now`); if that cancelled it and the job has a grace, the
    /// supervisor abandons it should it not return in time (supervisor
    /// invariant 7).
    pub(crate) fn interrupt(&self, job: &Arc<dyn Tracked>) {
        let record = job.record();
        if record.cancel.cancel()
            && let Some(grace) = record.abandon_after().or(self.config.abandon_after)
        {
            let due = far_after(Instant::now(), grace);
            let _ = self
                .events
                .send(Event::Interrupted(due, Arc::downgrade(job)));
        }
    }

    /// As [`interrupt`](Self::interrupt), for `shutdown_now`, noted in its
    /// report.
    pub(crate) fn interrupt_for_shutdown(&self, job: &Arc<dyn Tracked>) {
        self.report.interrupted(job);
        self.interrupt(job);
    }

    /// `true` once `shutdown_now` began.
    pub(crate) fn is_aborting(&self) -> bool {
        // Acquire: pairs with the store in `begin_shutdown`.
        self.abort.load(Ordering::Acquire)
    }

    /// Ends a running job `Abandoned` (supervisor invariant 7): counted,
    /// retired and its waiters woken like any terminal transition; its
    /// result slot refuses whatever it returns later. Returns `false` if it
    /// was no longer running.
    pub(crate) fn abandon(&self, job: &Arc<dyn Tracked>) -> bool {
        let record = job.record();
        // The record decides first: a job that finished meanwhile keeps its
        // real result.
        let Some(notify) = record.abandon() else {
            return false;
        };
        job.abandon();
        if self.is_aborting() {
            self.report.abandoned(record.id);
        }
        self.ended(job, notify, &self.counters.others, Ending::Abandoned, false);
        true
    }

    /// Marks every pending tracked job `Cancelled`, leaving the closures to
    /// the workers that drain the queue (supervisor invariant 4). Returns
    /// how many it cancelled.
    pub(crate) fn cancel_pending(&self) -> usize {
        self.registry
            .pending()
            .iter()
            .filter(|job| self.cancel_keeping_closure(job) == CancelOutcome::Cancelled)
            .count()
    }

    /// Called after a job was counted finished (or refused), and after a
    /// thread took queue entries off without running them: releases
    /// `wait_idle` callers if the pool is idle (invariant 3). Costs one
    /// load of a read-mostly line unless someone is waiting, and then a sum
    /// over every worker's tally.
    pub(crate) fn check_idle(&self) {
        self.idle.check(self);
    }

    /// As [`check_idle`](Self::check_idle), for a worker that counted a
    /// finish (or skipped a queue entry whose job had already ended) and now
    /// goes straight back to the queue: while the queue holds an entry it
    /// skips the sum, since whoever takes the entry off checks again (idle
    /// invariant 6).
    ///
    /// The queue may hold entries of jobs that already ended (cancelled
    /// while queued, or run inline by a job that joined them), so "the
    /// queue is non-empty" does not mean "not idle": it means a worker will
    /// take an entry off and check again. A shortcut on it without that
    /// second check once lost wake-ups; a shortcut taken by a thread that
    /// is not going back to the queue could too (its only worker may be
    /// stuck).
    pub(crate) fn check_idle_before_dequeue(&self) {
        self.idle.check_before_dequeue(self);
    }

    /// Blocks until no accepted job was pending or running at some instant
    /// after the call began, or `deadline` passes. Returns whether that
    /// happened. O(1) on a pool that was seen idle and has accepted nothing
    /// since (idle invariant 7), and while the queue holds an entry (idle
    /// invariant 6); otherwise a sum over every worker's tally.
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        self.idle.wait(self, deadline)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.counters.intake.is_closed()
    }

    /// Starts (or escalates) shutdown. Idempotent per mode; never blocks on
    /// jobs, only on submitters leaving the intake, which they do promptly.
    pub(crate) fn begin_shutdown(&self, mode: Mode) {
        let mut phase = lock(&self.phase);
        if mode == Mode::Now {
            // Before `stop` is raised, so draining workers see it.
            self.abort.store(true, Ordering::SeqCst);
        }
        let closing = !phase.closed;
        if closing {
            phase.closed = true;
            // Submitters waiting for room hold permits: wake them (they
            // refuse) before draining the permits, so the drain ends.
            if let Some(slots) = &self.slots {
                slots.close();
            }
            self.counters
                .intake
                .close_and_drain(|| self.counters.taken() + self.jobs_rx.len() as u64);
            // The supervisor hears of the shutdown before any worker can exit
            // because of it (one FIFO channel), so it never mistakes a
            // stopping worker for a dead one.
            let _ = self.events.send(Event::Shutdown);
            // Invariant 2.
            self.stop.raise();
        }
        let aborting = mode == Mode::Now && !phase.aborted;
        phase.aborted |= aborting;
        // The logger is user code: never under `phase` (invariant 4).
        drop(phase);
        if aborting {
            // Before logging: a logger that calls back into the pool (a
            // nested shutdown waits for the threads) must find every running
            // token already cancelled.
            for job in self.registry.running() {
                self.interrupt_for_shutdown(&job);
            }
            // The supervisor cancels whatever is still queued.
            let _ = self.events.send(Event::Abort);
        }
        if closing {
            log_quietly!(log::info!(
                "pool {}: shutting down ({mode:?})",
                self.config.thread_name
            ));
        }
    }

    /// Called by the supervisor as its last act.
    pub(crate) fn mark_done(&self) {
        *lock(&self.done) = true;
        self.done_cond.notify_all();
    }

    /// Waits until every thread of the pool was joined, or `deadline` passes.
    pub(crate) fn wait_done(&self, deadline: Option<Instant>) -> bool {
        let mut done = lock(&self.done);
        // Bounded by `deadline`; re-checks after every wake.
        loop {
            if *done {
                return true;
            }
            let (next, timed_out) = wait_until(&self.done_cond, done, deadline);
            done = next;
            if timed_out {
                return *done;
            }
        }
    }
}

/// A one-shot broadcast: a channel that never carries a message and is
/// "raised" by dropping its only sender, which wakes every receiver.
pub(crate) struct Signal {
    sender: Mutex<Option<Sender<()>>>,
    receiver: Receiver<()>,
}

impl Signal {
    fn new() -> Self {
        let (sender, receiver) = crossbeam_channel::bounded(0);
        Signal {
            sender: Mutex::new(Some(sender)),
            receiver,
        }
    }

    fn raise(&self) {
        drop(lock(&self.sender).take());
    }

    /// Ready (disconnected) once raised.
    pub(crate) fn receiver(&self) -> &Receiver<()> {
        &self.receiver
    }
}

#[cfg(test)]
mod tests;
