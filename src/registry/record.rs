//! A tracked job's record: its state, its legal transitions, and how
//! waiters, futures and the observer learn of them. The invariants are
//! numbered in the parent module's docs (`registry.rs`): 1, 2, 6 to 8 and 10
//! are the record's, 4 (lock order) spans both. Its tests and loom models
//! are in `record/tests.rs` and `record/loom_tests.rs`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use crate::cancel::TokenState;
use crate::forensics::JobPanic;
use crate::job::{JobId, JobInfo, JobStatus};
use crate::metrics::{self, Tick};
use crate::observer::Mark;
use crate::progress::{self, Progress, ProgressCell};
use crate::sync::atomic::{AtomicU8, Ordering};
use crate::sync::{lock, wait_until};
use crate::wake::{Key, Wakers};

/// A record's lock and condvar come from the loom facade, so its
/// transitions can be modelled (`loom_tests`, in `record/loom_tests.rs`);
/// the map keeps std's.
type StateLock = crate::sync::Mutex<State>;
type DoneCondvar = crate::sync::Condvar;

/// The shared, type-erased part of a tracked job.
pub(crate) struct Record {
    pub(crate) id: JobId,
    /// The state of the job's [`CancelToken`](crate::CancelToken)s.
    pub(crate) cancel: TokenState,
    pub(crate) submitted_at: SystemTime,
    /// When it was submitted, on the latency histograms' clock. Its wall
    /// times (`submitted_at`, and the start and end ones) are derived from
    /// ticks (`metrics::wall_at`): a tracked job rarely reads the wall clock.
    pub(crate) submitted: Tick,
    /// Its timeout, deadline and grace, if it has any: boxed, so a job
    /// without them (most) pays one word for them in its record.
    limits: Option<Box<Limits>>,
    /// The numbers of the job's progress, set without a lock
    /// (`progress.rs`); its message is in `state`.
    pub(crate) progress: ProgressCell,
    /// Its part in the observer protocol (`observer.rs`); inert without an
    /// observer.
    pub(crate) mark: Mark,
    state: StateLock,
    /// Its terminal status as a [`Settled`] code, once it has one
    /// (invariant 10): lets a `join` of a finished job skip the lock.
    settled: AtomicU8,
    /// Signalled when the record becomes terminal, only if someone waits.
    done: DoneCondvar,
}

/// A record's terminal status as one byte (invariant 10), stored with
/// `Release` under the state lock by the transition that sets it.
struct Settled;

impl Settled {
    /// Not terminal yet.
    const NOT: u8 = 0;
    const COMPLETED: u8 = 1;
    const CANCELLED: u8 = 2;
    const ABANDONED: u8 = 3;
    /// Failed: the message is in the state, under its lock.
    const FAILED: u8 = 4;

    fn code(status: &JobStatus) -> u8 {
        match status {
            JobStatus::Pending | JobStatus::Running => Settled::NOT,
            JobStatus::Completed => Settled::COMPLETED,
            JobStatus::Cancelled => Settled::CANCELLED,
            JobStatus::Abandoned => Settled::ABANDONED,
            JobStatus::Failed(_) => Settled::FAILED,
        }
    }
}

/// How far after a known time a later one is derived from the ticks
/// between them ([`wall_after`]): no farther than a thread's wall-clock
/// anchor serves `metrics::wall_at`, so the error stays as small.
const NEAR_NANOS: u64 = 10_000_000;

/// The wall-clock time at tick `at`, given that it was `from_wall` at tick
/// `from`: `from_wall` plus the ticks since if `at` is near, without the
/// thread-local anchor or a clock read; else `metrics::wall_at`. Never
/// before `from_wall`, so a job's times stay in order even if the wall
/// clock stepped back, or `at` was read on another core.
fn wall_after(from: Tick, from_wall: SystemTime, at: Tick) -> SystemTime {
    let nanos = metrics::nanos_between(from, at);
    if nanos <= NEAR_NANOS {
        from_wall
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(from_wall)
    } else {
        metrics::wall_at(at).max(from_wall)
    }
}

/// A time no earlier than the record's `submitted_at`, as the nanoseconds
/// after it (half the size of an `Option<SystemTime>`: a record is read
/// and written whole on every job, and its size shows); `u64::MAX` for
/// none. Later than 584 years after the submission reads as none.
#[derive(Clone, Copy)]
struct Since(u64);

impl Since {
    const NONE: Since = Since(u64::MAX);

    /// `at`, after `base` (at `base` if it is earlier).
    fn at(base: SystemTime, at: SystemTime) -> Since {
        let nanos = at.duration_since(base).map_or(0, |after| after.as_nanos());
        Since(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn get(self, base: SystemTime) -> Option<SystemTime> {
        if self.0 == u64::MAX {
            return None;
        }
        base.checked_add(Duration::from_nanos(self.0))
    }

    fn is_some(self) -> bool {
        self.0 != u64::MAX
    }
}

/// A job's rarely set options, apart from its record.
struct Limits {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// How long the job may keep running once the pool cancelled its
    /// token, before it is abandoned, if it overrides the pool's.
    abandon_after: Option<Duration>,
}

struct State {
    status: JobStatus,
    /// When it started, after `submitted_at`.
    started_at: Since,
    /// The tick `started_at` was derived from (meaningless before).
    started: Tick,
    /// When it ended, after `submitted_at`.
    finished_at: Since,
    /// Index of the worker that started it (names live in the pool).
    worker: Option<u32>,
    /// That worker's generation when it started the job (worker invariant
    /// 8): tells a job of the position's current thread from one a
    /// detached thread started.
    generation: u64,
    /// Threads blocked in [`Record::wait`]; `finish` skips the notify
    /// (a syscall) when there are none.
    waiters: u32,
    /// The worker that ran the job has returned from it (invariant 6).
    returned: bool,
    /// Futures awaiting the record (invariant 7); empty, and allocating
    /// nothing, unless someone awaits it.
    wakers: Wakers,
    /// Its panic and progress message, rarely set: boxed, so a record
    /// without them pays one word.
    extra: Option<Box<Extra>>,
}

#[derive(Default)]
struct Extra {
    /// What its worker knows of its panic; set before it turns terminal.
    panic: Option<Arc<JobPanic>>,
    /// The job's last progress message, capped (`progress::cap_message`).
    message: Option<Box<str>>,
}

impl State {
    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_default()
    }

    fn message(&self) -> Option<&str> {
        self.extra
            .as_ref()
            .and_then(|extra| extra.message.as_deref())
    }
}

/// What [`Record::cancel`] found.
pub(crate) enum CancelStep {
    /// It was pending and is now `Cancelled`. Carries whether to notify.
    Cancelled(Notify),
    /// It is running; the caller cancels its token.
    Running,
    /// It was already terminal.
    Finished,
}

/// A terminal transition that may still owe waiters a notification; the
/// caller updates counters first, then calls [`Notify::send`].
#[must_use]
pub(crate) struct Notify {
    /// Whether threads were blocked in [`Record::wait`].
    waiters: bool,
    /// The wakers taken out of the record (invariant 7).
    wakers: Wakers,
}

impl Notify {
    /// Takes what `state`, now terminal, owes its waiters.
    fn taken_from(state: &mut State) -> Notify {
        Notify {
            waiters: state.waiters > 0,
            wakers: std::mem::take(&mut state.wakers),
        }
    }
}

/// When a job was submitted: read on the submitting thread as `submit` is
/// called, before any wait for a queue slot, so its queue wait and its
/// deadline count from the call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Submitted {
    tick: Tick,
    /// The wall-clock time at `tick`, derived at once (`wall_at` wants a
    /// tick just read).
    wall: SystemTime,
    /// `timeout` after the call, if the job has one.
    deadline: Option<Instant>,
}

impl Submitted {
    /// Now, for a job with `timeout`.
    pub(crate) fn now(timeout: Option<Duration>) -> Self {
        let tick = metrics::now();
        Submitted {
            tick,
            wall: metrics::wall_at(tick),
            deadline: timeout.and_then(crate::sync::deadline_after),
        }
    }
}

impl Record {
    #[cfg(test)]
    pub(crate) fn new(
        id: JobId,
        timeout: Option<Duration>,
        abandon_after: Option<Duration>,
    ) -> Self {
        Self::new_at(id, timeout, abandon_after, Submitted::now(timeout))
    }

    /// A pending record for job `id`, submitted `at`.
    pub(crate) fn new_at(
        id: JobId,
        timeout: Option<Duration>,
        abandon_after: Option<Duration>,
        at: Submitted,
    ) -> Self {
        let submitted = at.tick;
        let limits = (timeout.is_some() || abandon_after.is_some()).then(|| {
            Box::new(Limits {
                timeout,
                deadline: at.deadline,
                abandon_after,
            })
        });
        Record {
            id,
            cancel: TokenState::default(),
            submitted_at: at.wall,
            submitted,
            limits,
            progress: ProgressCell::default(),
            mark: Mark::default(),
            state: StateLock::new(State {
                status: JobStatus::Pending,
                started_at: Since::NONE,
                started: metrics::NOT_READ,
                finished_at: Since::NONE,
                worker: None,
                generation: 0,
                waiters: 0,
                returned: false,
                wakers: Wakers::default(),
                extra: None,
            }),
            settled: AtomicU8::new(Settled::NOT),
            done: DoneCondvar::new(),
        }
    }

    /// Makes `status`, terminal, the record's status (invariant 10); the
    /// caller holds the state lock and has checked the transition is legal.
    fn settle(&self, state: &mut State, status: JobStatus) {
        debug_assert!(status.is_terminal());
        let code = Settled::code(&status);
        state.status = status;
        // Release: whoever reads the code sees everything written before
        // the transition (the job's result, stored in its slot first).
        self.settled.store(code, Ordering::Release);
    }

    /// The terminal status if the record has one and it is not `Failed`,
    /// without the lock (invariant 10); else `None`, and the caller asks
    /// under the lock.
    fn settled(&self) -> Option<JobStatus> {
        match self.settled.load(Ordering::Acquire) {
            Settled::COMPLETED => Some(JobStatus::Completed),
            Settled::CANCELLED => Some(JobStatus::Cancelled),
            Settled::ABANDONED => Some(JobStatus::Abandoned),
            _ => None,
        }
    }

    /// The timeout it was submitted with, if any.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.limits.as_ref().and_then(|limits| limits.timeout)
    }

    /// When its timeout runs out, if it has one (and it is representable).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.limits.as_ref().and_then(|limits| limits.deadline)
    }

    /// Its own grace before abandonment, if it was submitted with one
    /// (the pool's applies otherwise).
    pub(crate) fn abandon_after(&self) -> Option<Duration> {
        self.limits.as_ref().and_then(|limits| limits.abandon_after)
    }

    /// `Pending -> Running` on `worker`, now. Returns `false` (and changes
    /// nothing) if the record is no longer pending.
    #[cfg(test)]
    pub(crate) fn start(&self, worker: usize) -> bool {
        self.start_at(worker, 0, metrics::now(), || ())
    }

    /// `Pending -> Running` on `worker` in its generation `generation`, at
    /// tick `at`, just read (or the worker's boundary tick, metrics
    /// invariant 5); runs `started` under the record's lock once it is
    /// (it must run no user code). Returns `false` (and changes nothing) if
    /// the record is no longer pending.
    pub(crate) fn start_at(
        &self,
        worker: usize,
        generation: u64,
        at: Tick,
        started: impl FnOnce(),
    ) -> bool {
        // Outside the lock.
        let started_at = wall_after(self.submitted, self.submitted_at, at);
        let mut state = lock(&self.state);
        if state.status != JobStatus::Pending {
            return false;
        }
        state.status = JobStatus::Running;
        state.started_at = Since::at(self.submitted_at, started_at);
        state.started = at;
        // A pool has far fewer than 2^32 workers (each is a thread).
        state.worker = Some(worker as u32);
        state.generation = generation;
        started();
        true
    }

    /// Moves to the terminal `status` now, unless already terminal
    /// (invariant 1).
    #[cfg(test)]
    pub(crate) fn finish(&self, status: JobStatus) -> Option<Notify> {
        self.finish_at(status, metrics::now())
    }

    /// Moves to the terminal `status` at tick `at`, just read, unless already
    /// terminal (invariant 1).
    pub(crate) fn finish_at(&self, status: JobStatus, at: Tick) -> Option<Notify> {
        debug_assert!(status.is_terminal());
        let mut state = lock(&self.state);
        // Invariant 6: from here on, the job's thread is no longer inside it.
        state.returned = true;
        if state.status.is_terminal() {
            return None;
        }
        self.settle(&mut state, status);
        // Under the lock, which guards the start it is derived from; no
        // user code, and a clock read at most once per 10 ms per thread.
        let finished_at = match state.started_at.get(self.submitted_at) {
            Some(started_at) => wall_after(state.started, started_at, at),
            None => metrics::wall_at(at),
        };
        state.finished_at = Since::at(self.submitted_at, finished_at);
        Some(Notify::taken_from(&mut state))
    }

    /// Keeps what is known of the job's panic, for [`info`](Self::info).
    /// Called by the job's worker before [`finish_at`](Self::finish_at), so a
    /// snapshot showing the failure shows the panic too.
    pub(crate) fn set_panic(&self, panic: Arc<JobPanic>) {
        lock(&self.state).extra().panic = Some(panic);
    }

    /// `Pending -> Cancelled`; reports what it found otherwise (invariant 2).
    pub(crate) fn cancel(&self) -> CancelStep {
        let mut state = lock(&self.state);
        match state.status {
            JobStatus::Pending => {
                self.settle(&mut state, JobStatus::Cancelled);
                // Never before its submission, which was derived from a
                // tick and an anchor that may be ahead of the wall clock.
                state.finished_at = Since::at(self.submitted_at, SystemTime::now());
                CancelStep::Cancelled(Notify::taken_from(&mut state))
            }
            JobStatus::Running => CancelStep::Running,
            _ => CancelStep::Finished,
        }
    }

    pub(crate) fn status(&self) -> JobStatus {
        lock(&self.state).status.clone()
    }

    /// `Running -> Abandoned`, for a job its worker has not returned from
    /// within its grace; `None` if it is not running any more.
    pub(crate) fn abandon(&self) -> Option<Notify> {
        let mut state = lock(&self.state);
        if state.status != JobStatus::Running {
            return None;
        }
        self.settle(&mut state, JobStatus::Abandoned);
        // Never before its start (see `cancel`).
        let floor = state.started_at.get(self.submitted_at);
        let floor = floor.unwrap_or(self.submitted_at);
        state.finished_at = Since::at(self.submitted_at, SystemTime::now().max(floor));
        Some(Notify::taken_from(&mut state))
    }

    /// Runs `detach` if the worker running this job has not returned from
    /// it, under the record's lock, and says whether it detached the thread
    /// (invariant 6). `detach` is handed the generation the job started in,
    /// says whether it detached, and must run no user code.
    pub(crate) fn detach_if_not_returned(&self, detach: impl FnOnce(u64) -> bool) -> bool {
        let state = lock(&self.state);
        if state.returned || state.worker.is_none() {
            return false;
        }
        detach(state.generation)
    }

    /// The index of the worker that started the job and its generation
    /// then, if one did.
    pub(crate) fn worker(&self) -> Option<(usize, u64)> {
        let state = lock(&self.state);
        state.worker.map(|index| (index as usize, state.generation))
    }

    /// `true` once a worker started the job (it may have finished since).
    pub(crate) fn was_started(&self) -> bool {
        lock(&self.state).started_at.is_some()
    }

    /// Without the lock (invariant 10): `JobHandle::is_finished` and the
    /// timer's sweep of every deadline ask this.
    pub(crate) fn is_terminal(&self) -> bool {
        self.settled.load(Ordering::Acquire) != Settled::NOT
    }

    /// Sets the progress message (`CancelToken::set_progress_message`);
    /// an empty one clears it. The previous one is freed after unlocking.
    pub(crate) fn set_progress_message(&self, message: String) {
        let message = (!message.is_empty()).then(|| progress::cap_message(message));
        let mut state = lock(&self.state);
        let previous = if message.is_none() && state.extra.is_none() {
            None
        } else {
            std::mem::replace(&mut state.extra().message, message)
        };
        drop(state);
        drop(previous);
    }

    /// The job's latest progress, or `None` if it never reported any.
    pub(crate) fn progress(&self) -> Option<Progress> {
        let message = lock(&self.state).message().map(str::to_owned);
        Self::progress_with(self.progress.get(), message)
    }

    fn progress_with(
        numbers: Option<(u64, Option<u64>)>,
        message: Option<String>,
    ) -> Option<Progress> {
        if numbers.is_none() && message.is_none() {
            return None;
        }
        let (done, total) = numbers.unwrap_or((0, None));
        Some(Progress {
            done,
            total,
            message,
        })
    }

    pub(crate) fn info(&self, names: &[Arc<str>]) -> JobInfo {
        // Lock-free, so outside the state lock.
        let numbers = self.progress.get();
        let state = lock(&self.state);
        JobInfo {
            id: self.id,
            status: state.status.clone(),
            submitted_at: self.submitted_at,
            started_at: state.started_at.get(self.submitted_at),
            finished_at: state.finished_at.get(self.submitted_at),
            worker: state
                .worker
                .and_then(|i| names.get(i as usize))
                .map(|n| n.to_string()),
            timeout: self.timeout(),
            panic: state.extra.as_ref().and_then(|extra| extra.panic.clone()),
            progress: Self::progress_with(numbers, state.message().map(str::to_owned)),
        }
    }

    /// Blocks until the record is terminal or `deadline` passes; returns the
    /// terminal status, or `None` on timeout.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<JobStatus> {
        if let Some(status) = self.settled() {
            // Already over, and not `Failed` (invariant 10): no lock.
            return Some(status);
        }
        let mut state = lock(&self.state);
        if state.status.is_terminal() {
            // Already over (a join after the job ended): no waiting.
            return Some(state.status.clone());
        }
        state.waiters += 1;
        // Bounded by `deadline`, or by the job reaching a terminal state.
        let result = loop {
            if state.status.is_terminal() {
                break Some(state.status.clone());
            }
            let (next, timed_out) = wait_until(&self.done, state, deadline);
            state = next;
            if timed_out && !state.status.is_terminal() {
                break None;
            }
        };
        state.waiters -= 1;
        result
    }

    /// Polls for the terminal status on behalf of a future whose
    /// registration is `key` (`None` until its first `Pending`): `Ready`
    /// once terminal, else `Pending` with `cx`'s waker registered under
    /// `key` (invariant 7). A waker that would wake the same task as the
    /// one stored is not replaced (`Waker::will_wake`). `key` is `None`
    /// again after `Ready`. The caller withdraws a registration it no
    /// longer needs with [`unregister`](Self::unregister).
    pub(crate) fn poll_terminal(
        &self,
        cx: &mut Context<'_>,
        key: &mut Option<Key>,
    ) -> Poll<JobStatus> {
        {
            let state = lock(&self.state);
            if state.status.is_terminal() {
                // The transition took our waker, if any (invariant 7).
                *key = None;
                return Poll::Ready(state.status.clone());
            }
            if let Some(stored) = *key
                && state
                    .wakers
                    .get(stored)
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                return Poll::Pending;
            }
        }
        // Cloned outside the lock: a waker is user code (invariant 4).
        let fresh = cx.waker().clone();
        let mut state = lock(&self.state);
        if state.status.is_terminal() {
            // It ended while we cloned: nobody will wake `fresh`.
            *key = None;
            let status = state.status.clone();
            drop(state);
            drop(fresh);
            return Poll::Ready(status);
        }
        let replaced = match *key {
            Some(stored) => match state.wakers.replace(stored, fresh) {
                Ok(old) => Some(old),
                // A key with nothing under it cannot happen before the
                // record is terminal (wake.rs invariant 1); register anew.
                Err(fresh) => {
                    *key = Some(state.wakers.insert(fresh));
                    None
                }
            },
            None => {
                *key = Some(state.wakers.insert(fresh));
                None
            }
        };
        drop(state);
        // The replaced waker is dropped outside the lock (invariant 4).
        drop(replaced);
        Poll::Pending
    }

    /// Withdraws the waker registered under `key` by
    /// [`poll_terminal`](Self::poll_terminal), if it is still there (the
    /// terminal transition takes them all). For a future's `Drop`.
    pub(crate) fn unregister(&self, key: Key) {
        let removed = lock(&self.state).wakers.remove(key);
        // Dropped outside the lock (invariant 4).
        drop(removed);
    }

    /// How many futures have a waker registered.
    #[cfg(test)]
    pub(crate) fn registered_wakers(&self) -> usize {
        lock(&self.state).wakers.len()
    }
}

impl Notify {
    /// Wakes the record's waiters if there were any when it became terminal:
    /// blocked threads first, then futures. The status was changed under the
    /// lock, so a waiter either saw it or is already waiting, and a future
    /// either saw it or had its waker taken (invariant 7): notifying after
    /// unlocking loses nothing.
    ///
    /// A waker is user code: each wake runs under `catch_unwind`, so a
    /// panicking one cannot stop the others or the caller's bookkeeping
    /// (this runs on workers, the supervisor and in a worker's drop guard).
    #[inline]
    pub(crate) fn send(self, record: &Record) {
        if self.waiters {
            record.done.notify_all();
        }
        self.wakers.wake_all(&record.id);
    }
}

#[cfg(test)]
mod tests;

/// loom models of a record's transitions, one per named race (see
/// "Verification" in `docs/design.md`). A lost wake-up shows as loom's
/// deadlock report.
#[cfg(all(test, loom))]
mod loom_tests;
