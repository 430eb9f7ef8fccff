//! One shard's records, indexed by their number in the shard.
//!
//! A job's id carries its shard and its number there (`super::Registry::number`),
//! so finding a record is an index into a ring, not a hash probe. Numbers
//! are handed out in order, so inserts land at the ring's back, next to the
//! last one, and evictions (oldest retired first, which is mostly oldest
//! submitted) at its front: a submitter and the workers retiring jobs touch
//! different cache lines. A hash map put each insert on a random line of a
//! table the evicting workers had just written.
//!
//! Invariants (all under the shard's lock):
//!
//! 1. `slots[i]` holds the record numbered `base + i`, if it is in the ring.
//!    A record numbered below `base` is in `overflow`: its slot left the ring
//!    before the record arrived (its submitter took the number, and the
//!    ring's front passed it before the insert) or while it was held (rule
//!    3). A number at or above every one handed out (`Ring::insert`'s
//!    `reserved`) is not this registry's and goes to `overflow` too, so no
//!    id can make the ring grow beyond the numbers handed out.
//! 2. A lookup confirms the whole id against the record it finds: an id
//!    that is not this registry's, or a forged one with a known record's
//!    number, finds nothing.
//! 3. Bounded by what it holds. An insert lands inside the ring or at its
//!    back; one a little ahead of the back (numbers taken by submitters that
//!    have not inserted yet) leaves empty slots, and then the ring is
//!    trimmed as after a removal. An insert far ahead (more than the bound
//!    below: numbers taken and never used) first empties the ring: its
//!    records move to `overflow` and the ring starts again at the new
//!    number. After a removal, empty slots at the front are dropped, and
//!    while the ring is longer than four slots per record held plus
//!    [`SLACK`] its front record moves to `overflow`, at most [`MOVES`] per
//!    operation (that bound taken before the moves): a long run of records
//!    that stay leaves over the next operations, each moving a few, while
//!    the ring grows by one slot per insert, so it stays within a constant
//!    factor of the bound. So one record that stays (a job running for
//!    hours) costs one `overflow` entry, not a slot for every job submitted
//!    since. Each record moves at most once. The ring's buffer gives capacity back like
//!    the maps it replaced (registry invariant 5).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::job::{JobId, Tracked};

/// Slots a ring may keep beyond four per record it holds (invariant 3):
/// small rings never move records to `overflow`.
pub(super) const SLACK: usize = 64;

/// The most records one insert or removal moves out of a sparse ring
/// (invariant 3): a long run of them leaves over several operations, not
/// in one long stop under the shard's lock.
const MOVES: usize = 4;

/// A shard's records by number (module docs).
#[derive(Default)]
pub(super) struct Ring {
    /// The number of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<Arc<dyn Tracked>>>,
    /// Records in `slots`.
    held: usize,
    /// Records numbered below `base`, or above every reserved number
    /// (invariant 1).
    overflow: BTreeMap<u64, Arc<dyn Tracked>>,
}

impl Ring {
    /// Adds `job`, numbered `number` here; `reserved` is one past the
    /// highest number handed out so far (invariant 1). Returns a record it
    /// displaced, to be dropped unlocked: none, since numbers are unique in
    /// a shard (until they wrap, registry invariant 9).
    pub(super) fn insert(
        &mut self,
        number: u64,
        reserved: u64,
        job: Arc<dyn Tracked>,
    ) -> Option<Arc<dyn Tracked>> {
        if number >= reserved {
            return self.overflow.insert(number, job);
        }
        let index = number
            .checked_sub(self.base)
            .and_then(|index| usize::try_from(index).ok());
        let index = match index {
            // Inside the ring (a late insert), at its back (in order), or a
            // little ahead (numbers taken by submitters not yet here, or
            // never used).
            Some(index) if index <= self.slots.len() + self.bound(self.held + 1) => index,
            // Behind the front (a late insert, or numbers that wrapped) with
            // records held: the overflow.
            None if self.held > 0 => return self.overflow.insert(number, job),
            // Far ahead, or behind an empty ring: start again here
            // (invariant 3).
            _ => {
                self.restart_at(number);
                0
            }
        };
        let leaves_a_gap = index > self.slots.len();
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        let displaced = self.slots[index].replace(job);
        if displaced.is_none() {
            self.held += 1;
        }
        if leaves_a_gap {
            // The gap's slots count against the bound like any other.
            self.trim(self.bound(self.held));
        }
        displaced
    }

    /// The longest the ring may be while it holds `held` records
    /// (invariant 3).
    fn bound(&self, held: usize) -> usize {
        held.saturating_mul(4).saturating_add(SLACK)
    }

    /// Moves every record in the ring to `overflow` and starts the ring
    /// again, empty, at `number` (invariant 3).
    fn restart_at(&mut self, number: u64) {
        for (index, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if let Some(job) = slot {
                self.overflow.insert(self.base + index as u64, job);
            }
        }
        self.held = 0;
        self.base = number;
    }

    /// The ring index of number `number`, if the ring spans it.
    fn index(&self, number: u64) -> Option<usize> {
        let index = usize::try_from(number.checked_sub(self.base)?).ok()?;
        (index < self.slots.len()).then_some(index)
    }

    /// The record numbered `number` if its id is `id` (invariant 2).
    pub(super) fn get(&self, number: u64, id: JobId) -> Option<&Arc<dyn Tracked>> {
        let is_it = |job: &&Arc<dyn Tracked>| job.record().id == id;
        self.index(number)
            .and_then(|index| self.slots[index].as_ref())
            .filter(is_it)
            .or_else(|| self.overflow.get(&number).filter(is_it))
    }

    /// Takes out the record numbered `number` if its id is `id`.
    pub(super) fn remove(&mut self, number: u64, id: JobId) -> Option<Arc<dyn Tracked>> {
        let is_it = |job: &Arc<dyn Tracked>| job.record().id == id;
        if let Some(index) = self.index(number)
            && self.slots[index].as_ref().is_some_and(is_it)
        {
            let job = self.slots[index].take();
            self.held -= 1;
            self.tidy();
            return job;
        }
        if self.overflow.get(&number).is_some_and(is_it) {
            return self.overflow.remove(&number);
        }
        None
    }

    /// Drops empty front slots and moves front records out of a sparse ring,
    /// then gives back capacity (invariant 3).
    fn tidy(&mut self) {
        // Taken once, before any move: each record moved lowers `held`, and
        // a bound that fell with it would move a whole run of records.
        self.trim(self.bound(self.held));
        let capacity = self.slots.capacity();
        if capacity > super::SHRINK_FLOOR && capacity / 4 > self.slots.len() {
            self.slots
                .shrink_to((self.slots.len() * 2).max(super::SHRINK_FLOOR / 2));
            #[cfg(test)]
            super::tests::SHRINKS.with(|shrinks| shrinks.set(shrinks.get() + 1));
        }
    }

    /// Drops empty front slots, and moves up to [`MOVES`] front records to
    /// `overflow` while the ring is longer than `bound` (invariant 3).
    fn trim(&mut self, bound: usize) {
        let mut moves = 0;
        while let Some(front) = self.slots.front() {
            if front.is_some() && (self.slots.len() <= bound || moves == MOVES) {
                break;
            }
            if let Some(job) = self.slots.pop_front().flatten() {
                self.held -= 1;
                self.overflow.insert(self.base, job);
                moves += 1;
            }
            self.base += 1;
        }
    }

    /// Every record held.
    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<dyn Tracked>> {
        self.slots.iter().flatten().chain(self.overflow.values())
    }

    /// Records held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.held + self.overflow.len()
    }

    /// Slots the ring's buffer has room for.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Slots in the ring, held or empty.
    #[cfg(test)]
    pub(super) fn span(&self) -> usize {
        self.slots.len()
    }

    /// Records in the ring itself.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Records in `overflow`.
    #[cfg(test)]
    pub(super) fn overflowed(&self) -> usize {
        self.overflow.len()
    }
}
