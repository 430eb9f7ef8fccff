//! The join/idle handshake: [`IdleGate`].
//!
//! `Pool::join` waits here until no accepted job is pending or running;
//! every thread that counts a job finished (or a submission refused) checks
//! here afterwards. The gate knows nothing of the pool: it reads the pool's
//! counters through [`Counts`] (`Shared`'s implementation sums
//! `Counters`), so the handshake is modelled on its own (`loom_tests`, in
//! `idle/loom_tests.rs`; the tests are in `idle/tests.rs`).
//!
//! The guarantee: a wait returns `true` once the pool has been idle at some
//! instant after the wait began, as seen either by the waiter's own sum or by
//! a finishing thread's. Every thread waiting when a finishing thread sees
//! the pool idle returns, even if new work is submitted before it runs
//! again: the generation, not a second look at the counters, tells it.
//! Without that, a service that never stops receiving work could keep a
//! `join` asleep forever behind the first waiter to wake (threadpool's
//! `test_join_wavesurfer`).
//!
//! Invariants:
//!
//! 1. Handshake: a waiter registers in `joiners` and then sums; a finisher
//!    counts its finish and then loads `joiners` (all `SeqCst`). So either
//!    the waiter's sum sees the finish, or the finisher sees the waiter.
//! 2. A waiter registers and reads the generation in one critical section
//!    of `generation`'s lock. So a finisher that saw it (by 1) takes the
//!    lock after that section: every generation bump it makes is one the
//!    waiter counts.
//! 3. The generation is bumped by whoever sums zero *under the lock*: a
//!    finisher in `check`, or a waiter in `wait` (which then releases the
//!    others, or a waiter that sees the pool idle first and submits at once
//!    would leave them asleep). A bump therefore records an idle instant
//!    inside that critical section, after the start of every wait that
//!    counts it (by 2). A sum taken before the lock could predate a later
//!    waiter and release it while its pool was never idle, so it only
//!    decides whether to take the lock.
//! 4. A waiter returns `true` when the generation moved since it registered
//!    or its own sum (under the lock) is zero; it re-checks after every
//!    wake, spurious or not. With 1 to 3: no wake-up is lost, every waiter
//!    of an idle instant that a finisher or a waiter sees returns, and none
//!    returns `true` for an instant before it began.
//! 5. `generation`'s lock is a leaf: [`Counts`] must not take a lock, and
//!    no user code runs under it.
//! 6. A worker that counted a finish and goes straight back to the queue
//!    may skip the sum when [`Counts::pending`] says the queue holds an
//!    entry ([`IdleGate::check_before_dequeue`]): whoever takes that entry
//!    off checks afterwards (this worker, or another one after the job it
//!    ran, or after an entry it skipped, already ended; the supervisor
//!    after draining; if this worker is detached right after its job, its
//!    replacement, which the supervisor starts at once). The worker's count and its look at the queue are
//!    separated by a `SeqCst` fence; the taker's dequeue (a `SeqCst`
//!    compare-and-swap in crossbeam) comes before its own count and its
//!    `SeqCst` load of `joiners`. So either the finisher sees the entry
//!    gone or the taker's check sees the finish (and its waiter). Without
//!    it, every finish while someone joins would sum every worker's tally:
//!    O(workers) cache misses per job. No other thread may skip: a
//!    canceller, the supervisor (after abandoning a job), a dying worker, a
//!    worker that ran a job inline (it returns into the job that joined),
//!    and a waiter all sum. An entry in the queue does not prove that a
//!    taker is coming soon: the only worker may be stuck in an abandoned
//!    job that the pool was not allowed to replace
//!    (`Builder::max_stray_threads(0)`), with the pool idle by its counters.
//! 7. Idle mark: every sum that finds nothing outstanding stores the
//!    accepted count it read in `idle_mark`. A waiter that then reads the
//!    same accepted count ([`Counts::accepted`], O(1)) returns `true`
//!    without registering or summing: the sum read every finish before the
//!    accepted count, so when it saw zero, every submission entered up to
//!    that read had been refused or had finished; the accepted count only
//!    comes back to that value if every submission entered since was
//!    refused too (a refusal is counted after its own entry, and entries
//!    are read after refusals). So the pool is idle at the waiter's read,
//!    an instant after its wait began. Any idle sum's count serves, however
//!    old, so racing stores need no order. Without the mark, a thread
//!    that joins an idle pool over and over (a health check, a loop that
//!    joins between batches) would sum every worker's tally on every call.

use std::time::Instant;

use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Condvar, Mutex, lock, seq_cst_handshake, wait_until};

/// What the gate reads of the pool's counters.
pub(crate) trait Counts {
    /// O(1), no lock: the queue holds an entry, so that whoever takes it
    /// off will check the gate after the caller's count is visible to it
    /// (invariant 6). Puts a `SeqCst` fence before its look.
    fn pending(&self) -> bool;

    /// Submissions accepted so far (entered and not refused), O(1) and
    /// without a lock, read as invariant 7 requires: refusals, then entries.
    fn accepted(&self) -> u64;

    /// Accepted jobs not yet finished, and the accepted count this sum
    /// read (after every finish it read). May be O(workers); takes no lock
    /// (invariant 5).
    fn outstanding(&self) -> (u64, u64);
}

/// `idle_mark` before any sum saw the pool idle.
const NO_MARK: u64 = u64::MAX;

/// Where `join` waits for the pool to go idle (see the module docs).
pub(crate) struct IdleGate {
    /// Threads in [`IdleGate::wait`]; finishers skip the gate while it is 0,
    /// so a pool nobody joins pays one load per finish.
    joiners: AtomicUsize,
    /// The accepted count of the last sum that found the pool idle, or
    /// [`NO_MARK`] (invariant 7).
    idle_mark: AtomicU64,
    /// Idle instants seen by finishers while someone waited (invariant 3).
    /// Wraps; a waiter only compares it for equality.
    generation: Mutex<u64>,
    /// Notified, under `generation`'s lock, when it moves.
    idle: Condvar,
}

impl IdleGate {
    pub(crate) fn new() -> Self {
        IdleGate {
            joiners: AtomicUsize::new(0),
            idle_mark: AtomicU64::new(NO_MARK),
            generation: Mutex::new(0),
            idle: Condvar::new(),
        }
    }

    /// Called after a job was counted finished (or a submission refused):
    /// releases every waiter if nothing is outstanding now. Costs one load
    /// of a read-mostly line unless someone waits; then a sum of the
    /// counters.
    pub(crate) fn check(&self, counts: &impl Counts) {
        self.check_unless(counts, false);
    }

    /// As [`check`](Self::check), for a worker that counted a finish and
    /// now goes straight back to the queue: it skips the sum while
    /// [`Counts::pending`] says the queue holds an entry (invariant 6), so
    /// a busy pool with a waiter does not sum on every finish.
    pub(crate) fn check_before_dequeue(&self, counts: &impl Counts) {
        self.check_unless(counts, true);
    }

    fn check_unless(&self, counts: &impl Counts, pending_will_check: bool) {
        // The caller's count comes before this load (invariant 1; see
        // `seq_cst_handshake` for the model's fence). Of several finishing
        // threads, the last to count sees every finish in its sum.
        seq_cst_handshake();
        if self.joiners.load(Ordering::SeqCst) == 0 {
            return;
        }
        if pending_will_check && counts.pending() {
            return;
        }
        // A first look without the lock, so that a busy pool with a waiter
        // does not take the lock on every finish.
        if self.sum(counts) != 0 {
            return;
        }
        let mut generation = lock(&self.generation);
        // Invariant 3: only a sum under the lock may release waiters. If a
        // submission arrived since the look above, the pool was idle only
        // before the lock; the job just submitted ends with a check of its
        // own (its finish is counted after every current waiter registered).
        if self.sum(counts) == 0 {
            self.release(&mut generation, 0);
        }
    }

    /// Sums the counters; an idle sum leaves its accepted count as the
    /// mark (invariant 7).
    fn sum(&self, counts: &impl Counts) -> u64 {
        let (outstanding, accepted) = counts.outstanding();
        if outstanding == 0 {
            self.idle_mark.store(accepted, Ordering::SeqCst);
        }
        outstanding
    }

    /// Records an idle instant seen under `generation`'s lock (the caller
    /// holds it) and wakes every waiter (invariant 3). `caller_waits` is 1
    /// when the caller is itself a waiter.
    fn release(&self, generation: &mut u64, caller_waits: usize) {
        *generation = generation.wrapping_add(1);
        // Waiters register and leave under the lock the caller holds, so
        // this count is exact: skip the notification (a syscall) when no
        // one else waits.
        if self.joiners.load(Ordering::SeqCst) > caller_waits {
            self.idle.notify_all();
        }
    }

    /// Blocks until nothing has been outstanding at some instant after
    /// this call began (see the module docs), or `deadline` passes. Returns
    /// whether it was.
    pub(crate) fn wait(&self, counts: &impl Counts, deadline: Option<Instant>) -> bool {
        // Invariant 7: nothing accepted since an idle sum, so idle now.
        let mark = self.idle_mark.load(Ordering::SeqCst);
        if mark != NO_MARK && counts.accepted() == mark {
            return true;
        }
        let mut generation = lock(&self.generation);
        // Invariant 2: registered and the start read in one critical section.
        self.joiners.fetch_add(1, Ordering::SeqCst);
        let start = *generation;
        seq_cst_handshake();
        // Bounded by `deadline`: after a timeout, one last look and out.
        // Re-checks after every (possibly spurious) wake (invariant 4).
        let mut timed_out = false;
        let idle = loop {
            if *generation != start {
                break true;
            }
            if self.sum(counts) == 0 {
                // Invariant 3: this sighting releases the other waiters too.
                self.release(&mut generation, 1);
                break true;
            }
            if timed_out {
                break false;
            }
            (generation, timed_out) = wait_until(&self.idle, generation, deadline);
        };
        self.joiners.fetch_sub(1, Ordering::SeqCst);
        idle
    }

    /// Threads in [`wait`](Self::wait) now.
    #[cfg(test)]
    pub(crate) fn joiners(&self) -> usize {
        self.joiners.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests;

/// loom models of the handshake, one per named race. Run with
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib loom` (see
/// "Verification" in `docs/design.md`). A lost wake-up shows as loom's
/// deadlock report; a wrong answer as a failed assertion.
#[cfg(all(test, loom))]
mod loom_tests;
