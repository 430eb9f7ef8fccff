//! The room in a bounded queue: a count of occupied slots that harbor keeps
//! itself, over an unbounded channel.
//!
//! A bounded crossbeam channel allocates every slot up front, so a large
//! `queue_capacity` cost its whole size in memory at `build`, and a queued
//! job kept its slot until a worker took it off the channel, even after it
//! was cancelled. Counting slots apart from the channel allocates nothing
//! up front and lets a cancelled job give its slot back at once.
//!
//! See `docs/design.md` for when a job takes and gives back its slot.
//!
//! Invariants:
//!
//! 1. `occupied` never exceeds `capacity`: a slot is only taken by a
//!    compare-and-swap from a value below it.
//! 2. Every slot taken is released exactly once (the callers' side: see
//!    `Shared::release_slot`), so `occupied` never drops below zero and is
//!    zero whenever no job is pending.
//! 3. No lost wake-up: a waiter registers in `waiters` and then, holding
//!    `room`, tries to take a slot before each sleep; a releaser decrements
//!    `occupied` and then loads `waiters`, and if there is a waiter, notifies
//!    while holding `room`. All of it is `SeqCst`, so either the waiter's
//!    try sees the release, or the releaser sees the waiter; and then the
//!    notification comes after the waiter is asleep, because the waiter
//!    holds `room` from its try until it sleeps.
//! 4. No waiter sleeps through closing: `close` sets the flag under `room`
//!    and wakes every waiter; a waiter checks the flag under `room` before
//!    each sleep.
//! 5. Only waiting costs a lock: taking a free slot is one compare-and-swap,
//!    releasing one is a subtraction and a load, on one cache line, and
//!    `room` is touched only while someone waits.
//! 6. `room` is a leaf lock; no user code runs under it.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};

use crate::sync::lock;

/// Tries before a submitter waiting for a slot sleeps: the first
/// `SPIN_ONLY_STEPS` spin (1, 2, 4, ... iterations), the rest yield the CPU
/// (as an idle worker does before it parks).
const SPIN_STEPS: u32 = 16;
const SPIN_ONLY_STEPS: u32 = 7;

/// The occupied slots of a bounded queue, and the submitters waiting for one.
///
/// On a cache line of its own: submitters and workers write `occupied` for
/// every job, and it must not share a line with the read-mostly fields of
/// `Shared`.
#[repr(align(128))]
pub(crate) struct Slots {
    capacity: usize,
    occupied: AtomicUsize,
    /// Submitters registered to wait for a slot (invariant 3).
    waiters: AtomicUsize,
    /// `true` once closed (invariant 4).
    room: Mutex<bool>,
    freed: Condvar,
}

impl Slots {
    /// Room for `capacity` jobs. Allocates nothing per slot.
    pub(crate) fn new(capacity: usize) -> Self {
        Slots {
            capacity,
            occupied: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            room: Mutex::new(false),
            freed: Condvar::new(),
        }
    }

    /// Takes a slot if one is free; never blocks.
    pub(crate) fn try_acquire(&self) -> bool {
        // SeqCst: this load and the exchange below are the waiter's "try"
        // of invariant 3.
        let mut occupied = self.occupied.load(SeqCst);
        // Bounded: each retry means another thread took or released a slot.
        loop {
            // Invariant 1.
            if occupied >= self.capacity {
                return false;
            }
            match self
                .occupied
                .compare_exchange_weak(occupied, occupied + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => occupied = now,
            }
        }
    }

    /// Takes a slot, waiting for one to be released. Returns `false`, having
    /// taken nothing, once [`close`](Self::close) was called.
    pub(crate) fn acquire(&self) -> bool {
        // A short spin, then a few yields, before sleeping: on a full queue
        // that workers drain quickly a slot is freed within a job's time,
        // and catching it here spares both sides a futex call. Bounded:
        // SPIN_STEPS tries.
        for step in 0..SPIN_STEPS {
            if self.try_acquire() {
                return true;
            }
            if step < SPIN_ONLY_STEPS {
                for _ in 0..1 << step {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        }
        // Invariant 3: registered before the try below (SeqCst).
        self.waiters.fetch_add(1, SeqCst);
        let mut closed = lock(&self.room);
        // Ends when a slot is taken or the slots are closed; every sleep is
        // preceded by both checks under `room` (invariants 3 and 4).
        let acquired = loop {
            if *closed {
                break false;
            }
            if self.try_acquire() {
                break true;
            }
            closed = self
                .freed
                .wait(closed)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        };
        drop(closed);
        self.waiters.fetch_sub(1, SeqCst);
        acquired
    }

    /// Gives one slot back (invariant 2) and wakes a waiter, if any.
    pub(crate) fn release(&self) {
        // SeqCst: the release precedes the load of `waiters` (invariant 3).
        let before = self.occupied.fetch_sub(1, SeqCst);
        debug_assert!(before > 0, "a queue slot was released twice");
        if self.waiters.load(SeqCst) > 0 {
            // Taken so the notification reaches a waiter that tried before
            // this release only once it sleeps (invariant 3). One slot
            // frees one waiter: a woken waiter that finds the slot taken by
            // a `try_` submitter sleeps again, and that submitter's slot
            // wakes one in turn when it is released.
            let _room = lock(&self.room);
            self.freed.notify_one();
        }
    }

    /// Refuses every waiter from now on and wakes them all (invariant 4).
    pub(crate) fn close(&self) {
        *lock(&self.room) = true;
        self.freed.notify_all();
    }

    /// Slots taken right now.
    #[cfg(test)]
    pub(crate) fn occupied(&self) -> usize {
        self.occupied.load(SeqCst)
    }

    /// Submitters waiting for a slot right now.
    #[cfg(test)]
    pub(crate) fn waiters(&self) -> usize {
        self.waiters.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Barrier};

    use super::Slots;
    use crate::sync::{PATIENCE, eventually};

    #[test]
    fn capacity_is_never_exceeded_and_release_makes_room() {
        let slots = Slots::new(2);
        assert!(slots.try_acquire() && slots.try_acquire());
        assert!(!slots.try_acquire());
        slots.release();
        assert!(slots.try_acquire());
        assert_eq!(slots.occupied(), 2);
    }

    #[test]
    fn the_largest_capacity_allocates_nothing_and_counts_up() {
        let slots = Slots::new(usize::MAX);
        for _ in 0..1_000 {
            assert!(slots.try_acquire());
        }
        assert_eq!(slots.occupied(), 1_000);
    }

    #[test]
    fn a_waiter_takes_the_released_slot() {
        let slots = Arc::new(Slots::new(1));
        assert!(slots.try_acquire());
        let (tx, rx) = mpsc::channel();
        let waiter = Arc::clone(&slots);
        let thread = std::thread::spawn(move || tx.send(waiter.acquire()).unwrap());
        assert!(eventually(|| slots.waiters() == 1));
        slots.release();
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(true));
        thread.join().unwrap();
        assert_eq!((slots.occupied(), slots.waiters()), (1, 0));
    }

    #[test]
    fn close_refuses_every_waiter() {
        let slots = Arc::new(Slots::new(1));
        assert!(slots.try_acquire());
        let (tx, rx) = mpsc::channel();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (slots, tx) = (Arc::clone(&slots), tx.clone());
                std::thread::spawn(move || tx.send(slots.acquire()).unwrap())
            })
            .collect();
        assert!(eventually(|| slots.waiters() == 3));
        slots.close();
        for _ in 0..3 {
            assert_eq!(rx.recv_timeout(PATIENCE), Ok(false));
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!((slots.occupied(), slots.waiters()), (1, 0));
    }

    /// Invariant 3, by repetition: waiters and releasers racing on a small
    /// capacity never lose a wake-up (a lost one leaves a waiter asleep and
    /// the test times out) and every slot comes back.
    #[test]
    fn racing_waiters_and_releasers_lose_no_wake_up() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 2_000;
        const HOLD_YIELDS: usize = 8;
        let slots = Arc::new(Slots::new(2));
        let start = Arc::new(Barrier::new(THREADS));
        let (done_tx, done_rx) = mpsc::channel();
        for _ in 0..THREADS {
            let (slots, start, done_tx) = (Arc::clone(&slots), Arc::clone(&start), done_tx.clone());
            std::thread::spawn(move || {
                start.wait();
                for round in 0..ROUNDS {
                    let taken = if round % 3 == 0 {
                        slots.try_acquire()
                    } else {
                        slots.acquire()
                    };
                    if taken {
                        // Held for a few yields, so that waiters outlast
                        // their spin and sleep (thousands of sleeps a run).
                        for _ in 0..HOLD_YIELDS {
                            std::thread::yield_now();
                        }
                        slots.release();
                    }
                }
                done_tx.send(()).unwrap();
            });
        }
        for _ in 0..THREADS {
            done_rx
                .recv_timeout(PATIENCE)
                .expect("a waiter slept through a release");
        }
        assert_eq!((slots.occupied(), slots.waiters()), (0, 0));
    }
}
