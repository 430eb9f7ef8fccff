//! Job records, their legal transitions, and the id -> record map with
//! retention of finished records.
//!
//! See `docs/design.md` for the state machine diagram.
//!
//! Invariants:
//!
//! 1. A record's status only moves `Pending -> Running -> terminal` or
//!    `Pending -> terminal`. The first terminal state wins: once terminal, a
//!    record never changes again ([`Record::finish_at`] refuses).
//! 2. Only the worker that moved a record to `Running` moves it to a terminal
//!    state; other threads may only cancel a *pending* record. So a running
//!    job is never marked finished behind its worker's back. The one
//!    exception is abandonment ([`Record::abandon`]): the supervisor ends a
//!    job whose token the pool cancelled and whose worker did not return
//!    within its grace; the worker's own `finish` then changes nothing.
//! 3. A record leaves the registry only after it is terminal and retired, oldest
//!    retired first, once more than `retain` records are retired. Eviction
//!    works in batches of up to [`MAX_EVICTION_BATCH`] (at most a sixteenth of
//!    `retain`), so between `retain` minus one batch and `retain` finished
//!    records are kept. Retiring numbers a record (one counter for the
//!    registry) and queues it in its shard's FIFO, both under the FIFO's
//!    lock, so each FIFO is in number order; an eviction claims every number
//!    below a boundary, and for each shard pops them from the front of its
//!    FIFO and removes them from its ring, holding the FIFO's lock and then
//!    the ring's, and raises the shard's `oldest` only
//!    after the removal. So an eviction that returns has removed, or seen
//!    removed, every retired record below its boundary. (A record leaves a
//!    ring otherwise only when its submission fails, before it could be
//!    retired; a removal that finds nothing is harmless.) The FIFO and its
//!    lock sit on cache lines apart from the ring's, which the submitters'
//!    inserts take: a worker retiring a job and a submitter filing one do
//!    not pass a line back and forth. A shard's `oldest` (its FIFO's first
//!    number, `u64::MAX` if empty) lets the eviction skip it unlocked: a
//!    retirer finding the FIFO empty lowers `oldest` before it takes its
//!    number (all `SeqCst`), so an evictor whose boundary is above that
//!    number, taken after it, sees `oldest` below the boundary and locks
//!    the FIFO.
//! 4. Lock order: a map shard's FIFO, then its ring, then a record's state.
//!    Nothing takes a shard's lock while holding a record's state, nor a
//!    FIFO's while holding a ring's, and no user code runs under any of
//!    them (an evicted record is dropped after its shard is unlocked).
//! 5. A shard's ring gives capacity back after a burst: whenever records
//!    leave it and its capacity exceeds both [`SHRINK_FLOOR`] and four times
//!    its length, it shrinks to twice its length. A ring grows by doubling
//!    when full, so after growing it must lose half its slots before it
//!    shrinks, and after shrinking it must double before it grows: a steady
//!    load never reallocates back and forth. (Its overflow is a B-tree,
//!    which frees its nodes as they empty.)
//! 6. `returned` is set under the record's lock by the worker's `finish`
//!    when it comes back from the job, and the supervisor detaches a stuck
//!    worker's thread only under the same lock while `returned` is false
//!    ([`Record::detach_if_not_returned`]). So the detachment (the bump of
//!    the worker's generation) either happens before the worker returns,
//!    and the worker sees it as soon as it does, or not at all.
//! 7. Wakers of futures awaiting a record (`wake.rs`) live under its state
//!    lock. A future registers only while the record is not terminal (it
//!    checks under that lock), and the terminal transition takes every
//!    registered waker out under the same lock; so a future either sees the
//!    terminal status or is woken by the transition, and none registers
//!    after it. Wakers are woken by [`Notify::send`], after the lock is
//!    released, and cloned and dropped only outside the lock: a waker is
//!    user code (invariant 4).
//! 8. A record's progress numbers are written and read without its lock
//!    (a sequence lock, `progress.rs`); its progress message lives in its
//!    state, under the state lock, and no other lock is taken for it.
//! 9. An id names where its record lives. [`Registry::number`] makes a
//!    version 8 UUID of 69 random bits, the shard (5 random bits, so
//!    submitters spread evenly) and the record's number in that shard (48
//!    bits, handed out in order by the shard's counter, XORed with the
//!    registry's random salt), and the record is filed under that number in
//!    the shard's ring (`ring.rs`, its own invariants). A job takes its id
//!    only once it has its queue slot (`Shared::accept_with`), so refused
//!    submissions take no numbers. A lookup decodes the place and confirms
//!    the whole id, so an id of another pool or a guessed one finds nothing;
//!    the random bits keep ids unguessable, the salt keeps different pools'
//!    ids apart. Numbers wrap after 2^48 jobs in a shard (centuries at a
//!    million jobs a second): a record numbered below the ring's front goes
//!    to its overflow, and an empty ring starts again where the numbers are.
//! 10. A record's terminal status is also kept as a one-byte code
//!     (`Record::settle`), stored with `Release` by the terminal transition
//!     under the state lock. Whatever was written before the transition
//!     began (the job's result, stored in its slot before its worker's
//!     `finish_at`) is visible to a reader that loads a terminal code with
//!     `Acquire`; that reader learns the status without the lock (a `join`
//!     of a finished job: [`Record::wait`]; whether it is terminal at all:
//!     [`Record::is_terminal`]) and reads nothing else the
//!     transition writes (its end time, its waiters: those are read under
//!     the lock, which orders them). A `Failed` status carries a message,
//!     so its reader still takes the lock. An abandoned job's slot is
//!     marked after the lock is released; its handle answers `Abandoned`
//!     from the status alone. The code never changes once terminal
//!     (invariant 1).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::job::{JobId, JobStatus, Tracked};
use crate::sync::lock;

mod record;
mod ring;

pub(crate) use record::{CancelStep, Notify, Record, Submitted};
use ring::Ring;

const SHARDS: usize = 32;

/// Bits of an id that hold its number in its shard (invariant 9), and
/// where its shard sits above them.
const NUMBER_BITS: u32 = 48;
const NUMBER_MASK: u64 = (1 << NUMBER_BITS) - 1;
/// The UUID's version field, and version 8 (custom, RFC 9562).
const VERSION_MASK: u128 = 0xf << 76;
const VERSION_8: u128 = 0x8 << 76;

/// The random bits of a job's id, drawn before the job holds a queue slot
/// (drawing uses rand's thread-local generator, which can panic while a
/// thread is being torn down); [`Registry::number`] makes the id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Draw(u128);

impl Draw {
    pub(crate) fn new() -> Self {
        // A v4 UUID: 122 random bits, the variant already RFC 9562's.
        Draw(Uuid::new_v4().as_u128())
    }
}

/// Cache lines of its own per shard (one for its ring, one for its retired
/// FIFO), so workers finishing jobs in different shards do not contend on
/// one line.
#[repr(align(128))]
struct Shard {
    /// The shard's records (`ring.rs`).
    lock: Mutex<Ring>,
    /// The next number to hand out in this shard (invariant 9).
    next: AtomicU64,
    /// The shard's retired records, on lines of their own: a submitter
    /// filing a record and a worker retiring one touch different lines.
    retiring: Retiring,
}

/// One shard's retired records (invariant 3).
#[repr(align(128))]
struct Retiring {
    /// This shard's retired ids with their retirement numbers, oldest first.
    lock: Mutex<VecDeque<(u64, JobId)>>,
    /// The retirement number of the oldest entry, or `u64::MAX` when there
    /// is none: lets an eviction skip a shard with nothing old enough
    /// without locking it.
    oldest: AtomicU64,
}

/// The id -> record map, sharded by id, with bounded retention of finished
/// records.
pub(crate) struct Registry {
    shards: Box<[Shard]>,
    retain: usize,
    /// Retirement numbers and the eviction boundary (invariant 3). Written
    /// by every finishing job, so on a cache line of their own: sharing one
    /// with `shards` made every submitter's registry insert miss.
    numbers: Numbers,
    /// How many records one eviction removes.
    batch: usize,
    /// XORed into the numbers ids carry, so that ids of different pools
    /// (and replicas sharing a store) differ in more than their random bits
    /// (invariant 9).
    salt: u64,
}

/// The registry's retirement numbers, on cache lines of their own.
#[repr(align(128))]
struct Numbers {
    /// Records retired so far: the next retirement number.
    retired: AtomicU64,
    /// Every record with a retirement number below this is claimed for
    /// eviction.
    evicted: AtomicU64,
}

/// The largest eviction batch.
pub(crate) const MAX_EVICTION_BATCH: usize = 512;

impl Registry {
    pub(crate) fn new(retain: usize) -> Self {
        Registry {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    lock: Mutex::default(),
                    next: AtomicU64::new(0),
                    retiring: Retiring {
                        lock: Mutex::default(),
                        oldest: AtomicU64::new(u64::MAX),
                    },
                })
                .collect(),
            retain,
            numbers: Numbers {
                retired: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            },
            batch: (retain / 16).clamp(1, MAX_EVICTION_BATCH),
            salt: Uuid::new_v4().as_u128() as u64 & NUMBER_MASK,
        }
    }

    /// A new job id (tests: the pool draws first and numbers later).
    #[cfg(test)]
    pub(crate) fn new_id(&self) -> JobId {
        self.number(Draw::new())
    }

    /// A job id from `draw`: 69 random bits, a random shard and the
    /// record's number in that shard (invariant 9). Cannot unwind.
    pub(crate) fn number(&self, draw: Draw) -> JobId {
        let random = draw.0;
        // Bits 48 to 52 pick the shard, so concurrent submitters spread
        // evenly.
        let shard = (random as u64 >> NUMBER_BITS) as usize % SHARDS;
        // Relaxed: the number only has to be unique in its shard; the record
        // it names is published by the shard's lock when it is inserted.
        let number = self.shards[shard].next.fetch_add(1, Ordering::Relaxed) & NUMBER_MASK;
        let kept = random & !(VERSION_MASK | u128::from(NUMBER_MASK));
        JobId::from(Uuid::from_u128(
            kept | VERSION_8 | u128::from(number ^ self.salt),
        ))
    }

    /// The shard and number an id of this registry's names (invariant 9):
    /// any id decodes to some place; a lookup confirms the id there.
    fn place(&self, id: JobId) -> (usize, u64) {
        let low = id.as_uuid().as_u128() as u64;
        let shard = (low >> NUMBER_BITS) as usize % SHARDS;
        (shard, (low & NUMBER_MASK) ^ self.salt)
    }

    pub(crate) fn insert(&self, job: Arc<dyn Tracked>) {
        let (shard, number) = self.place(job.record().id);
        // Relaxed: a job's own thread took its number from this counter, so
        // it reads at least that; anyone else's later numbers only make the
        // bound looser (ring invariant 1).
        let reserved = self.shards[shard].next.load(Ordering::Relaxed);
        let displaced = lock(&self.shards[shard].lock).insert(number, reserved, job);
        // Unreachable (numbers are unique in a shard); dropped unlocked
        // anyway (invariant 4).
        drop(displaced);
    }

    /// Removes a record that never became visible (its submission failed).
    pub(crate) fn remove(&self, id: JobId) -> Option<Arc<dyn Tracked>> {
        let (shard, number) = self.place(id);
        lock(&self.shards[shard].lock).remove(number, id)
    }

    /// Runs `f` on the record for `id`, under its shard's lock.
    /// `f` must not run user code (invariant 4).
    pub(crate) fn with<R>(&self, id: JobId, f: impl FnOnce(&Record) -> R) -> Option<R> {
        let (shard, number) = self.place(id);
        lock(&self.shards[shard].lock)
            .get(number, id)
            .map(|job| f(job.record()))
    }

    pub(crate) fn get(&self, id: JobId) -> Option<Arc<dyn Tracked>> {
        let (shard, number) = self.place(id);
        lock(&self.shards[shard].lock).get(number, id).cloned()
    }

    /// Notes that `id` is terminal; once more than `retain` records are
    /// retired, evicts the oldest in a batch (invariant 3).
    pub(crate) fn retire(&self, id: JobId) {
        let numbers = &self.numbers;
        let (index, _) = self.place(id);
        let number = {
            let retiring = &self.shards[index].retiring;
            let mut retired = lock(&retiring.lock);
            if retired.is_empty() {
                // Invariant 3: published before the number is taken, so an
                // evictor whose boundary is above the number sees it.
                retiring.oldest.store(0, Ordering::SeqCst);
            }
            // Taken under the FIFO's lock, so each shard's FIFO is in
            // number order (invariant 3).
            let number = numbers.retired.fetch_add(1, Ordering::SeqCst);
            retired.push_back((number, id));
            if retired.len() == 1 {
                retiring.oldest.store(number, Ordering::SeqCst);
            }
            number
        };
        let retired = number + 1;
        let retain = self.retain as u64;
        // Claim the excess down to one batch below the limit, so evictions
        // (a lock per shard touched) happen once per batch, not per job.
        // Bounded: the CAS fails only when another retirer moved the
        // boundary.
        let mut evicted = numbers.evicted.load(Ordering::SeqCst);
        let boundary = loop {
            if retired.saturating_sub(evicted) <= retain {
                return;
            }
            let low = retain.saturating_sub(self.batch as u64 - 1);
            let boundary = retired - low;
            match numbers.evicted.compare_exchange_weak(
                evicted,
                boundary,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break boundary,
                Err(now) => evicted = now,
            }
        };
        self.evict(boundary);
    }

    /// Removes every retired record numbered below `boundary`, locking the
    /// FIFO and then the ring of each shard that holds one (invariant 3).
    fn evict(&self, boundary: u64) {
        let mut evicted = Vec::new();
        let mut ids = Vec::new();
        for shard in self.shards.iter() {
            // Invariant 3: a shard whose oldest is at or above the boundary
            // holds nothing to evict, and gets nothing below it later.
            if shard.retiring.oldest.load(Ordering::SeqCst) >= boundary {
                continue;
            }
            let mut retired = lock(&shard.retiring.lock);
            while let Some(&(number, id)) = retired.front() {
                if number >= boundary {
                    break;
                }
                retired.pop_front();
                ids.push(id);
            }
            if !ids.is_empty() {
                #[cfg(test)]
                MID_EVICTION.run(self.salt as usize);
                // Under the FIFO's lock, and `oldest` raised only after: an
                // evictor that skips this shard, or waits for its FIFO, finds
                // the records popped here gone from the ring (invariant 3).
                let mut ring = lock(&shard.lock);
                for id in ids.drain(..) {
                    evicted.extend(ring.remove(self.place(id).1, id));
                }
            }
            let oldest = retired.front().map_or(u64::MAX, |&(number, _)| number);
            shard.retiring.oldest.store(oldest, Ordering::SeqCst);
        }
        // Dropped outside the shard locks (invariant 4), contained: the last
        // reference to a record can hold user values (a detached job's
        // closure or result).
        if let Some(message) = crate::unwind::drop_quietly(evicted) {
            log_quietly!(log::warn!(
                "dropping forgotten job records panicked: {message}"
            ));
        }
    }

    /// Every record that is running now.
    pub(crate) fn running(&self) -> Vec<Arc<dyn Tracked>> {
        self.in_status(&JobStatus::Running)
    }

    /// Every record that is pending now.
    pub(crate) fn pending(&self) -> Vec<Arc<dyn Tracked>> {
        self.in_status(&JobStatus::Pending)
    }

    fn in_status(&self, status: &JobStatus) -> Vec<Arc<dyn Tracked>> {
        let mut found = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(&shard.lock);
            found.extend(
                shard
                    .values()
                    .filter(|job| job.record().status() == *status)
                    .cloned(),
            );
        }
        found
    }

    /// Number of records held (pending, running and retained finished).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.lock).len()).sum()
    }

    /// Records each shard's ring has room for now.
    #[cfg(test)]
    fn capacities(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| lock(&s.lock).capacity())
            .collect()
    }
}

/// Runs in an eviction between popping a shard's FIFO and removing from its
/// ring (tests pause an evictor there), keyed by the registry's salt.
#[cfg(test)]
pub(crate) static MID_EVICTION: crate::sync::Hooks = crate::sync::Hooks::new();

/// Capacity (in slots) below which a shard's ring is never shrunk: 4 KiB
/// per shard, small enough to keep, large enough that small rings do not
/// reallocate as they fill and drain (invariant 5).
pub(crate) const SHRINK_FLOOR: usize = 256;

#[cfg(test)]
mod tests;
