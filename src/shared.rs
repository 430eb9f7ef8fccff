//! The state every part of a pool shares: the queue, the intake gate, the
//! registry, the counters and the shutdown signals.
//!
//! See `docs/design.md` for the shutdown protocol.
//!
//! Invariants:
//!
//! 1. Intake: a job enters the queue only while its submitter holds an
//!    intake permit, and no permit is granted once shutdown has closed the
//!    intake. Shutdown waits for outstanding permits to be returned, so after
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
//!    The idle gate's lock and `done` are leaves. No user code runs under
//!    any of them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};

use crate::builder::Config;
use crate::error::SubmitError;
use crate::idle::IdleGate;
use crate::job::JobStatus;
use crate::job::{CancelOutcome, Message, Tracked};
use crate::registry::{CancelStep, Registry};
use crate::stats::{Counters, Ending, Tally};
use crate::supervisor::Event;
use crate::sync::{lock, wait_until};

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
    pub(crate) counters: Counters,
    pub(crate) events: Sender<Event>,
    /// Set by `shutdown_now`: workers cancel what they dequeue instead of
    /// running it.
    pub(crate) abort: AtomicBool,
    /// Raised when shutdown begins; wakes submitters blocked on a full queue.
    closing: Signal,
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

#[derive(Default)]
struct Phase {
    closed: bool,
    aborted: bool,
}

impl Shared {
    pub(crate) fn new(config: Config, events: Sender<Event>) -> Self {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let (jobs_tx, jobs_rx) = match config.queue_capacity {
            Some(capacity) => crossbeam_channel::bounded(capacity),
            None => crossbeam_channel::unbounded(),
        };
        Shared {
            // Relaxed: only uniqueness matters.
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            names: (0..config.workers)
                .map(|i| Arc::from(format!("{}-{i}", config.thread_name)))
                .collect(),
            supervisor_name: format!("{}-supervisor", config.thread_name),
            registry: Registry::new(config.retain_finished),
            counters: Counters::new(config.workers),
            config,
            jobs_tx,
            jobs_rx,
            events,
            abort: AtomicBool::new(false),
            closing: Signal::new(),
            stop: Signal::new(),
            phase: Mutex::default(),
            idle: IdleGate::new(),
            done: Mutex::new(false),
            done_cond: Condvar::new(),
        }
    }

    /// Accepts one job into the queue, blocking on a full bounded queue if
    /// `blocking`. On error the job was not queued; it is dropped by the
    /// caller's thread after this returns.
    pub(crate) fn accept(&self, message: Message, blocking: bool) -> Result<(), SubmitError> {
        // Invariant 1: no permit, no entry.
        let Some(permit) = self.counters.intake.enter() else {
            // See `Intake::enter`.
            self.check_idle();
            return Err(SubmitError::Shutdown);
        };
        if let Some(job) = message.tracked() {
            self.registry.insert(Arc::clone(job));
        }
        // Invariant 3: the permit counted the job as submitted before it
        // can finish.
        match self.send(message, blocking) {
            Ok(()) => {
                permit.queued();
                Ok(())
            }
            Err((error, message)) => {
                if let Some(job) = message.tracked() {
                    self.registry.remove(job.record().id);
                }
                // Refused and out of the intake before the job's `Drop` runs.
                drop(permit);
                self.check_idle();
                drop(message);
                Err(error)
            }
        }
    }

    fn send(&self, message: Message, blocking: bool) -> Result<(), (SubmitError, Message)> {
        match self.jobs_tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) if blocking => {
                // Wait for room, or for shutdown to begin (so a shutdown never
                // waits on a submitter stuck behind a full queue).
                let mut select = Select::new();
                let send = select.send(&self.jobs_tx);
                select.recv(self.closing.receiver());
                let operation = select.select();
                if operation.index() == send {
                    operation
                        .send(&self.jobs_tx, message)
                        .map_err(|e| (SubmitError::Shutdown, e.into_inner()))
                } else {
                    let _ = operation.recv(self.closing.receiver());
                    Err((SubmitError::Shutdown, message))
                }
            }
            Err(TrySendError::Full(message)) => Err((SubmitError::QueueFull, message)),
            // Unreachable while `self` holds a receiver; refuse safely anyway.
            Err(TrySendError::Disconnected(message)) => Err((SubmitError::Shutdown, message)),
        }
    }

    /// Cancels a tracked job: a pending one becomes `Cancelled` and will
    /// never run; a running one has its token cancelled.
    pub(crate) fn cancel(&self, job: &dyn Tracked) -> CancelOutcome {
        let record = job.record();
        match record.cancel() {
            CancelStep::Cancelled(notify) => {
                // Retire before counting and waking: once a join returns or
                // a sleeping waiter wakes, retention has been applied.
                self.registry.retire(record.id);
                self.counters.others.count(Ending::Cancelled);
                notify.send(record);
                self.check_idle();
                log_quietly!(log::debug!("job {} cancelled before it started", record.id));
                // User `Drop` of the closure: no lock held here.
                job.discard();
                CancelOutcome::Cancelled
            }
            CancelStep::Running => {
                record.cancel.cancel();
                log_quietly!(log::debug!("job {}: cancellation requested", record.id));
                CancelOutcome::Requested
            }
            CancelStep::Finished => CancelOutcome::AlreadyFinished,
        }
    }

    /// Records the end of a tracked job that `tally`'s worker ran.
    pub(crate) fn finish(
        &self,
        job: &dyn Tracked,
        status: JobStatus,
        panicked: bool,
        tally: &Tally,
    ) {
        let record = job.record();
        let ending = Ending::of(&status, panicked);
        // Always `Some` for the worker that started the job (registry
        // invariant 2).
        if let Some(notify) = record.finish(status) {
            // Retire before counting and waking, as in `cancel`.
            self.registry.retire(record.id);
            tally.count(ending);
            notify.send(record);
            self.check_idle();
        }
    }

    /// Called after a job was counted finished (or refused): releases
    /// `wait_idle` callers if that made the pool idle (invariant 3). Costs
    /// one load of a read-mostly line unless someone is waiting.
    ///
    /// No shortcut on the queue's length: a job cancelled while queued is
    /// counted when it is cancelled, so "the queue is non-empty" does not
    /// mean "not idle", and a shortcut on it once lost wake-ups.
    pub(crate) fn check_idle(&self) {
        self.idle.check(|| self.counters.outstanding());
    }

    /// Blocks until no accepted job was pending or running at some instant
    /// after the call began, or `deadline` passes. Returns whether that
    /// happened.
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        self.idle.wait(|| self.counters.outstanding(), deadline)
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
        if !phase.closed {
            phase.closed = true;
            log_quietly!(log::info!(
                "pool {}: shutting down ({mode:?})",
                self.config.thread_name
            ));
            // The closing signal must be raised while draining, so a
            // submitter blocked on a full queue leaves: raise it first.
            self.closing.raise();
            self.counters.intake.close_and_drain();
            // The supervisor hears of the shutdown before any worker can exit
            // because of it (one FIFO channel), so it never mistakes a
            // stopping worker for a dead one.
            let _ = self.events.send(Event::Shutdown);
            // Invariant 2.
            self.stop.raise();
        }
        if mode == Mode::Now && !phase.aborted {
            phase.aborted = true;
            drop(phase);
            for job in self.registry.running() {
                job.record().cancel.cancel();
            }
            // The supervisor cancels whatever is still queued.
            let _ = self.events.send(Event::Abort);
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
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::sync::{PATIENCE, eventually};
    use crate::{JobOptions, JobStatus, Pool};

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
}
