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
//!    after a job ran comes after its bookkeeping, so a panicking logger
//!    there cannot change how the job ended.
//! 3. Each worker writes only its own [`Tally`], so no
//!    two threads contend on a counter line while running jobs.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{TryRecvError, select};

use crate::cancel::CancelToken;
use crate::job::{JobStatus, Message, Tracked};
use crate::shared::Shared;
use crate::stats::{Ending, Tally};
use crate::supervisor::Event;
use crate::unwind;

/// Tries before an idle worker parks: the first `SPIN_ONLY_STEPS` spin
/// (1, 2, 4, ... iterations), the rest yield the CPU.
const SPIN_STEPS: u32 = 16;
const SPIN_ONLY_STEPS: u32 = 7;

thread_local! {
    /// The id of the pool this thread works for; 0 on other threads.
    static CURRENT_POOL: Cell<usize> = const { Cell::new(0) };
}

/// `true` on a thread of the pool with this id: a worker, or the
/// supervisor (which drops user closures, so a pool's last `Arc` can be
/// dropped there).
pub(crate) fn is_own_thread(pool: usize) -> bool {
    CURRENT_POOL.try_with(Cell::get).unwrap_or(0) == pool
}

/// Marks the current thread as one of the pool's own (see `is_own_thread`).
pub(crate) fn mark_own_thread(pool: usize) {
    let _ = CURRENT_POOL.try_with(|cell| cell.set(pool));
}

/// Starts worker `index` of the pool.
pub(crate) fn spawn(shared: &Arc<Shared>, index: usize) -> io::Result<JoinHandle<()>> {
    let mut builder = thread::Builder::new().name(shared.names[index].to_string());
    if let Some(size) = shared.config.stack_size {
        builder = builder.stack_size(size);
    }
    let shared = Arc::clone(shared);
    builder.spawn(move || {
        Worker {
            shared,
            index,
            up: false,
            current: Current::Idle,
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
    /// Past the start hook and counted in `alive`.
    up: bool,
    current: Current,
}

impl Worker {
    fn tally(&self) -> &Tally {
        &self.shared.counters.workers[self.index]
    }

    fn name(&self) -> &Arc<str> {
        &self.shared.names[self.index]
    }

    fn run(mut self) {
        mark_own_thread(self.shared.id);
        if let Some(hook) = self.shared.config.on_thread_start.clone() {
            // A panic here unwinds the thread; `Drop` reports it (invariant 2).
            hook(self.index);
        }
        self.up = true;
        // Relaxed: a statistic.
        self.shared.counters.alive.fetch_add(1, Ordering::Relaxed);
        log::debug!("{} started", self.name());

        while let Some(message) = self.next() {
            self.process(message);
        }

        self.up = false;
        self.shared.counters.alive.fetch_sub(1, Ordering::Relaxed);
        if let Some(hook) = self.shared.config.on_thread_stop.clone() {
            hook(self.index);
        }
        log::debug!("{} stopped", self.name());
    }

    /// The next job, or `None` once the pool is stopping and the queue is
    /// empty (shared invariant 2 makes that final).
    fn next(&self) -> Option<Message> {
        let jobs = &self.shared.jobs_rx;
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
            Message::Run(job) => self.run_untracked(job),
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

    fn run_untracked(&mut self, job: Box<dyn FnOnce() + Send>) {
        // Off the queue: its slot is free (shared invariant 5).
        self.shared.release_slot();
        // Acquire: pairs with the store in `begin_shutdown` (invariant 1).
        if self.shared.abort.load(Ordering::Acquire) {
            self.tally().count(Ending::Cancelled);
            unwind::drop_quietly(job);
            self.shared.check_idle();
            return;
        }
        self.tally().busy.store(true, Ordering::Relaxed);
        self.current = Current::Untracked;
        let result = unwind::catch(job);
        self.tally().busy.store(false, Ordering::Relaxed);
        let ending = match result {
            Ok(()) => Ending::Completed,
            Err(_) => Ending::Panicked,
        };
        self.tally().count(ending);
        self.current = Current::Idle;
        self.shared.check_idle();
        // Logged after the bookkeeping, so a panicking logger (it would end
        // this thread) cannot leave the job uncounted.
        if let Err(message) = result {
            log::warn!("untracked job panicked on {}: {message}", self.name());
        }
    }

    fn run_tracked(&mut self, job: Arc<dyn Tracked>) {
        let record = job.record();
        let expired = record.deadline.is_some_and(|d| Instant::now() >= d);
        if self.shared.abort.load(Ordering::Acquire) || expired {
            // A pending job whose deadline passed never starts. If it was
            // cancelled already (by id, or by the deadline timer), this
            // changes nothing: its canceller counted it.
            self.shared.cancel(&*job);
            return;
        }
        if !record.start(self.index) {
            // Cancelled while queued; whoever cancelled it counted it and
            // released its slot.
            return;
        }
        // This thread won `Pending -> Running` (shared invariant 5).
        self.shared.release_slot();
        // A `shutdown_now` that swept running tokens just before this start
        // missed this job: cancel its token here instead.
        if self.shared.abort.load(Ordering::SeqCst) {
            record.cancel.cancel();
        }
        // Before anything that could end the thread (even a log call: a
        // logger may panic), so the drop guard finishes the job (invariant 2).
        self.current = Current::Tracked(Arc::clone(&job));
        log::debug!("job {} started on {}", record.id, self.name());
        self.tally().busy.store(true, Ordering::Relaxed);
        // The token's state lives in the job's record: no allocation.
        let outcome = job.run(&CancelToken::for_job(Arc::clone(&job)));
        self.tally().busy.store(false, Ordering::Relaxed);
        // Kept for the log below; no allocation unless the job failed.
        let status = outcome.status.clone();
        self.shared
            .finish(&*job, outcome.status, outcome.panicked, self.tally());
        self.current = Current::Idle;
        // Logged once the job is terminal (the logger is user code too,
        // even `log_enabled!`), like `run_untracked`.
        match status {
            JobStatus::Failed(message) if outcome.panicked => {
                log::warn!("job {} panicked on {}: {message}", record.id, self.name());
            }
            status => log::debug!("job {} ended {status} on {}", record.id, self.name()),
        }
    }
}

impl Drop for Worker {
    /// Invariant 2. Runs during unwinding too, so nothing here may panic:
    /// the user code it can reach (the closure's and a result's `Drop`, the
    /// logger) is contained.
    fn drop(&mut self) {
        let died = thread::panicking();
        if self.up {
            self.shared.counters.alive.fetch_sub(1, Ordering::Relaxed);
        }
        self.tally().busy.store(false, Ordering::Relaxed);
        // Bookkeeping first, logging last: a panicking logger must not leave
        // a job non-terminal or the supervisor uninformed.
        let lost = match std::mem::replace(&mut self.current, Current::Idle) {
            // Only if still running: the job may have ended, and its result
            // been stored, before something else ended the thread.
            Current::Tracked(job) if job.record().status() == JobStatus::Running => {
                let message = format!(
                    "worker {} died while running job {}",
                    self.name(),
                    job.record().id
                );
                job.lose(&message);
                // Invariant 1 of `job`: a job that will never run drops its
                // closure (contained) now, not whenever its record goes.
                job.discard();
                self.shared.finish(
                    &*job,
                    JobStatus::Failed(message.clone()),
                    false,
                    self.tally(),
                );
                Some(message)
            }
            Current::Tracked(_) | Current::Idle => None,
            Current::Untracked => {
                self.tally().count(Ending::Failed);
                self.shared.check_idle();
                Some(format!(
                    "worker {} died while running an untracked job",
                    self.name()
                ))
            }
        };
        let _ = CURRENT_POOL.try_with(|pool| pool.set(0));
        let _ = self.shared.events.send(Event::Exited {
            index: self.index,
            died,
        });
        if let Some(message) = lost {
            // Contained: this may run during unwinding.
            log_quietly!(log::error!("{message}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::job::{JobStatus, Message, test_cell};
    use crate::sync::eventually;
    use crate::{JobError, Pool};

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
}
