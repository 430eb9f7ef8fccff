//! The state every part of a pool shares: the queue, the intake gate, the
//! registry, the counters and the shutdown signals.
//!
//! See `docs/design.md` for the shutdown protocol.
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
use crate::job::JobStatus;
use crate::job::{CancelOutcome, Message, Tracked};
use crate::metrics::Tick;
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
                        return Ok(());
                    }
                    // Unreachable while `self` holds a receiver; refuse
                    // safely anyway.
                    Err(SendError(message)) => {
                        if let Some(job) = message.tracked() {
                            self.registry.remove(job.record().id);
                        }
                        self.release_slot();
                        (SubmitError::Shutdown, message)
                    }
                }
            }
            Err(error) => (error, message),
        };
        // Refused and out of the intake before the job's `Drop` runs.
        drop(permit);
        self.check_idle();
        let (error, message) = refused;
        drop(message);
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

    /// Records the end of a tracked job that `tally`'s worker ran, at tick
    /// `ended` (just read). `dequeues_next`: the worker goes straight back
    /// to the queue afterwards (see [`check_idle_before_dequeue`]).
    ///
    /// [`check_idle_before_dequeue`]: Self::check_idle_before_dequeue
    pub(crate) fn finish(
        &self,
        job: &Arc<dyn Tracked>,
        status: JobStatus,
        panicked: bool,
        tally: &Tally,
        ended: Tick,
        dequeues_next: bool,
    ) {
        let record = job.record();
        let ending = Ending::of(&status, panicked);
        // Always `Some` for the worker that started the job (registry
        // invariant 2).
        if let Some(notify) = record.finish_at(status, ended) {
            self.ended(job, notify, tally, ending, dequeues_next);
        }
    }

    /// The bookkeeping of every terminal transition, in order: note it for
    /// the observer, retire the record (so once `Pool::join` returns or a
    /// sleeping waiter wakes, retention has been applied; a
    /// `JobHandle::join` that finds its job already over can return
    /// before this record's retirement), count it in
    /// `tally`, mark its timer entry stale, wake its waiters, then release
    /// `join` if the pool became idle.
    fn ended(
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
mod tests {
    use std::sync::{Arc, Barrier, mpsc};
    use std::time::Duration;

    use crate::sync::{PATIENCE, eventually};
    use crate::{CancelOutcome, JobId, JobOptions, JobStatus, Pool, SubmitError};

    /// How the queued job gets cancelled, and who takes it off the queue.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Way {
        /// Its deadline passes; the worker sees the deadline when it
        /// dequeues it.
        Deadline,
        /// By id; the worker finds it cancelled when it dequeues it.
        ById,
        /// By id, then `shutdown_now`: the supervisor (or the worker, if it
        /// gets there first) drains it.
        ByIdThenAbort,
    }

    /// A job cancelled while queued is counted finished by whoever cancelled
    /// it; the thread that later takes it off the queue must still wake a
    /// `join` that began meanwhile, however it was cancelled.
    #[test]
    fn join_wakes_when_the_last_queued_job_was_cancelled_while_pending() {
        for way in [Way::Deadline, Way::ById, Way::ByIdThenAbort] {
            let pool = Pool::new(1).unwrap();
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let (started_tx, started_rx) = mpsc::channel::<()>();
            pool.execute(move || {
                started_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(PATIENCE);
            })
            .unwrap();
            started_rx.recv_timeout(PATIENCE).unwrap();

            let options = match way {
                Way::Deadline => JobOptions::new().timeout(Duration::from_millis(1)),
                Way::ById | Way::ByIdThenAbort => JobOptions::new(),
            };
            let job = pool.submit_with(options, |_| Ok(())).unwrap();
            if way != Way::Deadline {
                job.cancel();
            }
            assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));

            std::thread::scope(|scope| {
                let (joined_tx, joined_rx) = mpsc::channel();
                let pool = &pool;
                // Waits up to twice as long as the test does, so a missed
                // wake-up shows as a `join` that does not return in time
                // (on timeout it would report the, by then idle, pool as idle).
                scope.spawn(move || {
                    let _ = joined_tx.send(pool.join_timeout(2 * PATIENCE));
                });
                // The blocking job must end while `join` waits, with the
                // cancelled job still in the queue behind it (the shape of
                // the lost wake-up this test pins).
                assert!(eventually(|| pool.shared.idle.joiners() == 1));
                if way == Way::ByIdThenAbort {
                    // Starts the shutdown without waiting for it.
                    pool.shared.begin_shutdown(super::Mode::Now);
                }
                release_tx.send(()).unwrap();
                assert_eq!(
                    joined_rx.recv_timeout(PATIENCE),
                    Ok(true),
                    "join missed the wake-up ({way:?})"
                );
            });
        }
    }

    /// A one-worker pool that allows no stray thread, its only worker stuck
    /// in a job that has been abandoned (counted finished, but its thread is
    /// held in place, builder `max_stray_threads(0)`), and behind it the
    /// entry of a job cancelled while queued. By the counters the pool is
    /// idle; the entry stays queued until the stuck job returns (here: when
    /// the returned sender is used, at the latest after twice PATIENCE).
    fn idle_behind_a_held_abandoned_job(
        pool: &Pool,
        before_abandon: impl FnOnce(),
    ) -> mpsc::Sender<()> {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let options = JobOptions::new().abandon_after(Duration::from_millis(10));
        // Ignores its token.
        let stuck = pool
            .submit_with(options, move |_| {
                started_tx.send(()).unwrap();
                // Longer than the tests' wait for the join, so a join that
                // returns only because this job did fails them.
                let _ = release_rx.recv_timeout(2 * PATIENCE);
                Ok(())
            })
            .unwrap();
        started_rx.recv_timeout(PATIENCE).unwrap();
        let queued = pool.submit(|_| Ok(())).unwrap();
        assert_eq!(queued.cancel(), CancelOutcome::Cancelled);
        before_abandon();
        assert_eq!(stuck.cancel(), CancelOutcome::Requested);
        assert_eq!(stuck.wait(PATIENCE), Some(JobStatus::Abandoned));
        let stats = pool.stats();
        assert_eq!(
            (
                stats.submitted,
                stats.cancelled,
                stats.abandoned,
                stats.queued
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(stats.stray_threads, 0, "held in place, not detached");
        release_tx
    }

    /// Regression of idle invariant 6 extended to waiters: a join that
    /// begins once the pool is idle sees the queued entry, skips its sum and
    /// sleeps until the stuck job returns (forever, if it never does).
    #[test]
    fn a_join_of_an_idle_pool_is_not_held_by_an_entry_no_worker_takes() {
        let pool = Pool::builder()
            .workers(1)
            .max_stray_threads(0)
            .build()
            .unwrap();
        let release = idle_behind_a_held_abandoned_job(&pool, || {});
        std::thread::scope(|scope| {
            let (joined_tx, joined_rx) = mpsc::channel();
            let pool = &pool;
            scope.spawn(move || {
                pool.join();
                let _ = joined_tx.send(());
            });
            let joined = joined_rx.recv_timeout(PATIENCE);
            // Unsticks the worker, which takes the entry off and checks.
            release.send(()).unwrap();
            assert_eq!(joined, Ok(()), "join slept on an idle pool");
        });
    }

    /// The same with the join begun before the abandonment: the
    /// supervisor's check after counting the job `Abandoned` sees the queued
    /// entry and skips (finisher side of idle invariant 6, before a2371e1
    /// too).
    #[test]
    fn a_join_begun_before_an_abandonment_wakes_on_an_idle_pool() {
        let pool = Pool::builder()
            .workers(1)
            .max_stray_threads(0)
            .build()
            .unwrap();
        std::thread::scope(|scope| {
            let (joined_tx, joined_rx) = mpsc::channel();
            let pool = &pool;
            let release = idle_behind_a_held_abandoned_job(pool, || {
                scope.spawn(move || {
                    pool.join();
                    let _ = joined_tx.send(());
                });
                assert!(eventually(|| pool.shared.idle.joiners() == 1));
            });
            let joined = joined_rx.recv_timeout(PATIENCE);
            release.send(()).unwrap();
            assert_eq!(joined, Ok(()), "join slept on an idle pool");
        });
    }

    /// A one-worker pool with a full queue of `capacity` tracked jobs, its
    /// worker blocked until the returned sender is used.
    fn full(capacity: usize) -> (Arc<Pool>, mpsc::Sender<()>, Vec<JobId>) {
        let pool = Arc::new(
            Pool::builder()
                .workers(1)
                .queue_capacity(capacity)
                .build()
                .unwrap(),
        );
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        pool.execute(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(PATIENCE);
        })
        .unwrap();
        started_rx.recv_timeout(PATIENCE).unwrap();
        let ids = (0..capacity)
            .map(|_| pool.try_submit(|_| Ok(())).unwrap().id())
            .collect();
        (pool, release_tx, ids)
    }

    fn slots(pool: &Pool) -> &super::Slots {
        pool.shared.slots.as_ref().unwrap()
    }

    /// Invariant 5: a cancel by id releases the slot to a submitter already
    /// asleep waiting for one (the wake-up path, not the fast path).
    #[test]
    fn a_cancel_wakes_a_submitter_waiting_for_a_slot() {
        let (pool, release, ids) = full(2);
        let (result_tx, result_rx) = mpsc::channel();
        let submitter = Arc::clone(&pool);
        let thread = std::thread::spawn(move || {
            let _ = result_tx.send(submitter.submit(|_| Ok(())).map(|h| h.id()));
        });
        assert!(eventually(|| slots(&pool).waiters() == 1));
        assert_eq!(pool.cancel(ids[0]), CancelOutcome::Cancelled);
        let id = result_rx.recv_timeout(PATIENCE).unwrap().unwrap();
        assert_eq!(slots(&pool).occupied(), 2);
        release.send(()).unwrap();
        assert_eq!(pool.wait(id, PATIENCE), Some(JobStatus::Completed));
        thread.join().unwrap();
        assert!(pool.join_timeout(PATIENCE));
        assert_eq!((slots(&pool).occupied(), slots(&pool).waiters()), (0, 0));
    }

    /// Invariant 5 under every way a queued job can leave `Pending`: the
    /// deadline timer, a cancel by id, and `shutdown_now` (the supervisor's
    /// drain) each give the slot back exactly once.
    #[test]
    fn every_way_out_of_the_queue_gives_the_slot_back_once() {
        let (pool, release, ids) = full(3);
        let expiring = pool
            .try_submit_with(JobOptions::new().timeout(Duration::from_millis(1)), |_| {
                Ok(())
            })
            .map(drop);
        // Full: the deadline job was refused. Cancel one to let it in.
        assert_eq!(expiring, Err(SubmitError::QueueFull));
        assert_eq!(pool.cancel(ids[0]), CancelOutcome::Cancelled);
        // A second cancel of the same job changes nothing.
        assert_eq!(pool.cancel(ids[0]), CancelOutcome::AlreadyFinished);
        assert_eq!(slots(&pool).occupied(), 2);
        let expiring = pool
            .try_submit_with(JobOptions::new().timeout(Duration::from_millis(1)), |_| {
                Ok(())
            })
            .unwrap();
        assert_eq!(expiring.wait(PATIENCE), Some(JobStatus::Cancelled));
        // The timer leaves the closure to the worker that dequeues it, and
        // the slot with it: the capacity bounds the closures queued.
        assert_eq!(slots(&pool).occupied(), 3);
        assert_eq!(pool.try_execute(|| ()), Err(SubmitError::QueueFull));
        pool.shared.begin_shutdown(super::Mode::Now);
        release.send(()).unwrap();
        assert!(pool.shared.wait_done(crate::sync::deadline_after(PATIENCE)));
        assert_eq!(slots(&pool).occupied(), 0);
        let stats = pool.stats();
        assert_eq!((stats.submitted, stats.completed), (5, 1));
        assert_eq!(stats.cancelled, 4);
    }

    /// Invariant 5 by repetition: submitters (blocking and not, tracked and
    /// not, some with deadlines) race a canceller on a small bounded queue.
    /// After every round the slot count is back to zero and the counters
    /// add up; a release missed or doubled would show here (or trip the
    /// `debug_assert` in `Slots::release`).
    #[test]
    fn racing_submits_and_cancels_give_every_slot_back() {
        const ROUNDS: usize = 40;
        const SUBMITTERS: usize = 3;
        const JOBS: usize = 60;
        let pool = Arc::new(
            Pool::builder()
                .workers(2)
                .queue_capacity(3)
                .retain_finished(0)
                .build()
                .unwrap(),
        );
        let mut cancelled_queued = 0;
        for round in 0..ROUNDS {
            let (ids_tx, ids_rx) = mpsc::channel::<JobId>();
            let start = Arc::new(Barrier::new(SUBMITTERS + 1));
            let submitters: Vec<_> = (0..SUBMITTERS)
                .map(|s| {
                    let (pool, ids_tx, start) =
                        (Arc::clone(&pool), ids_tx.clone(), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        for n in 0..JOBS {
                            let options = if n % 5 == 0 {
                                JobOptions::new().timeout(Duration::from_micros(200))
                            } else {
                                JobOptions::new()
                            };
                            let job = move |token: &crate::CancelToken| {
                                token.sleep(Duration::from_micros(50))?;
                                Ok(())
                            };
                            let id = match (n + s + round) % 4 {
                                0 => pool.submit_with(options, job).map(|h| Some(h.id())),
                                1 => pool.try_submit_with(options, job).map(|h| Some(h.id())),
                                2 => pool.execute(|| ()).map(|()| None),
                                _ => pool.try_execute(|| ()).map(|()| None),
                            };
                            match id {
                                Ok(Some(id)) => {
                                    let _ = ids_tx.send(id);
                                }
                                Ok(None) | Err(SubmitError::QueueFull) => {}
                                Err(e) => panic!("unexpected refusal: {e}"),
                            }
                        }
                    })
                })
                .collect();
            drop(ids_tx);
            start.wait();
            // Cancels every tracked job it hears of, queued or running;
            // ends when every submitter has finished.
            loop {
                match ids_rx.recv_timeout(PATIENCE) {
                    Ok(id) => {
                        if pool.cancel(id) == CancelOutcome::Cancelled {
                            cancelled_queued += 1;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        panic!("round {round}: a submitter is stuck")
                    }
                }
            }
            for submitter in submitters {
                submitter.join().unwrap();
            }
            assert!(pool.join_timeout(PATIENCE), "round {round}: not idle");
            let stats = pool.stats();
            assert_eq!(
                stats.submitted,
                stats.completed + stats.failed + stats.cancelled,
                "round {round}: {stats:?}"
            );
            assert_eq!(
                (slots(&pool).occupied(), slots(&pool).waiters()),
                (0, 0),
                "round {round}"
            );
        }
        // The race reached the path under test: jobs cancelled while queued.
        assert!(cancelled_queued > 0);
        assert_eq!(pool.stats().restarts, 0);
    }
}
