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
//! 3. A record leaves the map only after it is terminal and retired, oldest
//!    retired first, once more than `retain` records are retired. Eviction
//!    works in batches of up to [`MAX_EVICTION_BATCH`] (at most a sixteenth of
//!    `retain`), so between `retain` minus one batch and `retain` finished
//!    records are kept. Retiring numbers a record (one counter for the
//!    registry) and queues it in its shard's FIFO, both under the shard's
//!    lock, so each FIFO is in number order; an eviction claims every number
//!    below a boundary and pops them from the front of each FIFO. A shard's
//!    `oldest` (its FIFO's first number, `u64::MAX` if empty) lets the
//!    eviction skip it unlocked: a retirer finding the FIFO empty lowers
//!    `oldest` before it takes its number (all `SeqCst`), so an evictor whose
//!    boundary is above that number, taken after it, sees `oldest` below the
//!    boundary and locks the shard.
//! 4. Lock order: a map shard, then a record's state. Nothing takes a shard
//!    while holding a record's state, and no user code runs under either
//!    (an evicted record is dropped after its shard is unlocked).
//! 5. A shard's map gives capacity back after a burst: whenever records
//!    leave it and its capacity exceeds both [`SHRINK_FLOOR`] and four times
//!    its length, it shrinks to twice its length. A map grows by doubling
//!    when full, so after growing it must lose half its records before it
//!    shrinks, and after shrinking it must double before it grows: a steady
//!    load never reallocates back and forth.
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

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::job::{JobId, JobStatus, Tracked};
use crate::sync::lock;

mod record;

pub(crate) use record::{CancelStep, Notify, Record};

const SHARDS: usize = 32;

fn shard_index(id: JobId) -> usize {
    // The low bits of a v4 UUID are random.
    (id.as_uuid().as_u128() as usize) % SHARDS
}

type Map = HashMap<JobId, Arc<dyn Tracked>, BuildHasherDefault<IdHasher>>;

/// A cache line of its own per shard, so workers finishing jobs in different
/// shards do not contend on one line.
#[repr(align(128))]
struct Shard {
    lock: Mutex<ShardState>,
    /// The retirement number of the oldest entry in `retired`, or
    /// `u64::MAX` when it is empty (invariant 3): lets an eviction skip a
    /// shard with nothing old enough without locking it.
    oldest: AtomicU64,
}

#[derive(Default)]
struct ShardState {
    map: Map,
    /// This shard's retired ids with their retirement numbers, oldest first
    /// (invariant 3).
    retired: VecDeque<(u64, JobId)>,
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
                    oldest: AtomicU64::new(u64::MAX),
                })
                .collect(),
            retain,
            numbers: Numbers {
                retired: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            },
            batch: (retain / 16).clamp(1, MAX_EVICTION_BATCH),
        }
    }

    fn shard(&self, id: JobId) -> &Mutex<ShardState> {
        &self.shards[shard_index(id)].lock
    }

    pub(crate) fn insert(&self, job: Arc<dyn Tracked>) {
        let id = job.record().id;
        lock(self.shard(id)).map.insert(id, job);
    }

    /// Removes a record that never became visible (its submission failed).
    pub(crate) fn remove(&self, id: JobId) -> Option<Arc<dyn Tracked>> {
        let mut shard = lock(self.shard(id));
        let removed = shard.map.remove(&id);
        shrink_if_sparse(&mut shard.map);
        removed
    }

    /// Runs `f` on the record for `id`, under its shard's lock.
    /// `f` must not run user code (invariant 4).
    pub(crate) fn with<R>(&self, id: JobId, f: impl FnOnce(&Record) -> R) -> Option<R> {
        lock(self.shard(id)).map.get(&id).map(|job| f(job.record()))
    }

    pub(crate) fn get(&self, id: JobId) -> Option<Arc<dyn Tracked>> {
        lock(self.shard(id)).map.get(&id).cloned()
    }

    /// Notes that `id` is terminal; once more than `retain` records are
    /// retired, evicts the oldest in a batch (invariant 3).
    pub(crate) fn retire(&self, id: JobId) {
        let numbers = &self.numbers;
        let index = shard_index(id);
        let number = {
            let mut shard = lock(&self.shards[index].lock);
            if shard.retired.is_empty() {
                // Invariant 3: published before the number is taken, so an
                // evictor whose boundary is above the number sees it.
                self.shards[index].oldest.store(0, Ordering::SeqCst);
            }
            // Taken under the shard's lock, so each shard's FIFO is in
            // number order (invariant 3).
            let number = numbers.retired.fetch_add(1, Ordering::SeqCst);
            shard.retired.push_back((number, id));
            if shard.retired.len() == 1 {
                self.shards[index].oldest.store(number, Ordering::SeqCst);
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

    /// Removes every retired record numbered below `boundary`, one lock per
    /// shard that holds one (invariant 3).
    fn evict(&self, boundary: u64) {
        let mut evicted = Vec::new();
        for shard in self.shards.iter() {
            // Invariant 3: a shard whose oldest is at or above the boundary
            // holds nothing to evict, and gets nothing below it later.
            if shard.oldest.load(Ordering::SeqCst) >= boundary {
                continue;
            }
            let mut state = lock(&shard.lock);
            let ShardState { map, retired } = &mut *state;
            let before = evicted.len();
            while let Some(&(number, id)) = retired.front() {
                if number >= boundary {
                    break;
                }
                retired.pop_front();
                evicted.extend(map.remove(&id));
            }
            let oldest = retired.front().map_or(u64::MAX, |&(number, _)| number);
            shard.oldest.store(oldest, Ordering::SeqCst);
            if evicted.len() > before {
                shrink_if_sparse(map);
            }
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
                    .map
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
        self.shards.iter().map(|s| lock(&s.lock).map.len()).sum()
    }

    /// Records each shard's map has room for now.
    #[cfg(test)]
    fn capacities(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| lock(&s.lock).map.capacity())
            .collect()
    }
}

/// Capacity (in records) below which a shard's map is never shrunk: about
/// 9 KiB per shard, small enough to keep, large enough that small maps do
/// not reallocate as they fill and drain (invariant 5).
pub(crate) const SHRINK_FLOOR: usize = 256;

/// Shrinks `map` to twice its length if it has more than four times that
/// room and more than [`SHRINK_FLOOR`] (invariant 5). Runs under the shard's
/// lock; it moves `Arc`s and runs no user code (invariant 4). It rehashes the
/// map's records, paid for by the removals that made it sparse: at least
/// half of them left since the map last grew or shrank.
fn shrink_if_sparse(map: &mut Map) {
    let capacity = map.capacity();
    if capacity > SHRINK_FLOOR && capacity / 4 > map.len() {
        map.shrink_to((map.len() * 2).max(SHRINK_FLOOR / 2));
        #[cfg(test)]
        tests::SHRINKS.with(|shrinks| shrinks.set(shrinks.get() + 1));
    }
}

/// Hashes a [`JobId`] by folding its random bits.
///
/// Ids in the map are v4 UUIDs from a CSPRNG, so their bits are already
/// uniformly random and cannot be chosen by an attacker; SipHash's flood
/// protection buys nothing here and costs a noticeable share of a job.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0_u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::test_job;
    use std::cell::Cell;

    thread_local! {
        /// Shrinks done by this thread (each test runs on its own thread).
        pub(super) static SHRINKS: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn retention_evicts_oldest_first() {
        let registry = Registry::new(3);
        let ids: Vec<JobId> = (0..10)
            .map(|_| {
                let job = test_job();
                let id = job.record().id;
                registry.insert(job);
                id
            })
            .collect();
        for &id in &ids {
            registry.retire(id);
        }
        assert_eq!(registry.len(), 3);
        for &id in &ids[..7] {
            assert!(registry.get(id).is_none());
        }
        for &id in &ids[7..] {
            assert!(registry.get(id).is_some());
        }
    }

    #[test]
    fn large_retention_evicts_in_batches_within_bounds() {
        let retain = 64;
        let registry = Registry::new(retain);
        let batch = registry.batch;
        assert_eq!(batch, 4);
        let ids: Vec<JobId> = (0..1_000)
            .map(|_| {
                let job = test_job();
                let id = job.record().id;
                registry.insert(job);
                registry.retire(id);
                assert!(registry.len() <= retain, "never above the limit");
                id
            })
            .collect();
        let kept = registry.len();
        assert!(kept > retain - batch, "{kept}");
        // The newest are kept, the oldest gone.
        assert!(
            ids[ids.len() - kept..]
                .iter()
                .all(|&id| registry.get(id).is_some())
        );
        assert!(
            ids[..ids.len() - kept]
                .iter()
                .all(|&id| registry.get(id).is_none())
        );
    }

    #[test]
    fn concurrent_retirers_keep_within_bounds() {
        // Several threads retiring into shared shards: every eviction finds
        // what it claimed (none is skipped in a shard it read unlocked), so
        // the count ends within the bounds of invariant 3.
        for retain in [0, 1, 5, 64] {
            let registry = Registry::new(retain);
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| {
                        for _ in 0..5_000 {
                            let job = test_job();
                            let id = job.record().id;
                            registry.insert(job);
                            registry.retire(id);
                        }
                    });
                }
            });
            let kept = registry.len();
            assert!(kept <= retain, "{kept} kept of {retain}");
            assert!(kept + registry.batch > retain, "{kept} kept of {retain}");
            let queued: usize = registry
                .shards
                .iter()
                .map(|s| lock(&s.lock).retired.len())
                .sum();
            assert_eq!(queued, kept, "every kept record is queued once");
        }
    }

    /// Inserts a new pending record and returns its id.
    fn insert_new(registry: &Registry) -> JobId {
        let job = test_job();
        let id = job.record().id;
        registry.insert(job);
        id
    }

    #[test]
    fn shards_shrink_after_a_burst() {
        let retain = 64;
        let registry = Registry::new(retain);
        let ids: Vec<JobId> = (0..SHARDS * 2_000).map(|_| insert_new(&registry)).collect();
        let grown: usize = registry.capacities().iter().sum();
        assert!(grown >= ids.len());
        for &id in &ids {
            registry.retire(id);
        }
        assert!(registry.len() <= retain);
        // Every shard back at or below the floor: nothing is held for the
        // records that left.
        let capacities = registry.capacities();
        assert!(
            capacities.iter().all(|&c| c <= SHRINK_FLOOR),
            "{capacities:?} (grown to {grown} in all)"
        );
    }

    #[test]
    fn removing_failed_submissions_shrinks_too() {
        let registry = Registry::new(64);
        let ids: Vec<JobId> = (0..SHARDS * 2_000).map(|_| insert_new(&registry)).collect();
        for &id in &ids {
            assert!(registry.remove(id).is_some());
        }
        let capacities = registry.capacities();
        assert!(
            capacities.iter().all(|&c| c <= SHRINK_FLOOR),
            "{capacities:?}"
        );
    }

    #[test]
    fn steady_load_never_reallocates() {
        // Well above the floor in every shard: about 600 retained and 200
        // pending records each, the count moving by a batch as records are
        // evicted.
        let retain = SHARDS * 600;
        let registry = Registry::new(retain);
        let mut pending = std::collections::VecDeque::new();
        let mut step = || {
            pending.push_back(insert_new(&registry));
            if pending.len() > SHARDS * 200 {
                registry.retire(pending.pop_front().unwrap());
            }
        };
        for _ in 0..4 * retain {
            step();
        }
        let settled = SHRINKS.with(Cell::get);
        for _ in 0..4 * retain {
            step();
        }
        assert_eq!(SHRINKS.with(Cell::get), settled, "shrank at steady state");
    }

    #[test]
    fn id_hasher_spreads_bits() {
        let mut a = IdHasher::default();
        a.write(&[1, 2, 3]);
        let mut b = IdHasher::default();
        b.write(&[1, 2, 4]);
        assert_ne!(a.finish(), b.finish());
    }
}
