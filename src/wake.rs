//! [`Wakers`]: the futures waiting for one job, keyed so that each can
//! replace or withdraw its own waker.
//!
//! A record keeps its `Wakers` under its state lock (`registry/record.rs`), next to
//! the count of threads blocked on its condvar. This module only stores
//! wakers; it never clones, wakes or drops one on behalf of the record while
//! a lock is held: callers move wakers in and out here, under the lock, and
//! clone, wake or drop them after unlocking (a waker is user code).
//!
//! Invariants:
//!
//! 1. A key names one occupied entry from [`insert`](Wakers::insert) until
//!    [`remove`](Wakers::remove) with that key, or until the whole set is
//!    taken (`std::mem::take`). Only the future that got the key uses it, so
//!    no future can withdraw or replace another's waker.
//! 2. A vacant entry is on the free list and reused by the next `insert`, so
//!    the set holds at most as many entries as futures were registered at
//!    once; when the last one leaves, the entries are cleared. Futures that
//!    come and go against a long-running job never accumulate.
//! 3. A set nobody registered in owns no allocation and is one word (a
//!    null pointer): a job nobody awaits costs a word in its record and
//!    the move of that word when it ends.

use std::fmt;
use std::task::Waker;

/// The end of the free list.
const NONE: u32 = u32::MAX;

/// A future's registration in a [`Wakers`]: the index of its entry. Four
/// bytes, so that a `JobHandle` stays small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key(u32);

impl Key {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// The wakers of the futures awaiting one job: a small slab, allocated on
/// the first registration (invariant 3), so that the set is one word in
/// every record and taking it at the terminal transition moves one word.
#[derive(Default)]
pub(crate) struct Wakers(Option<Box<Slab>>);

struct Slab {
    entries: Vec<Entry>,
    /// Index of the first vacant entry, or [`NONE`] (invariant 2).
    free: u32,
    /// Occupied entries.
    len: u32,
}

enum Entry {
    Occupied(Waker),
    /// Vacant; the index of the next vacant entry, or [`NONE`].
    Vacant(u32),
}

impl Wakers {
    /// Stores `waker`; returns its key (invariant 1).
    pub(crate) fn insert(&mut self, waker: Waker) -> Key {
        let slab = self.0.get_or_insert_with(|| {
            Box::new(Slab {
                entries: Vec::new(),
                free: NONE,
                len: 0,
            })
        });
        slab.len += 1;
        match slab.entries.get_mut(slab.free as usize) {
            Some(entry) => {
                let key = Key(slab.free);
                let Entry::Vacant(next) = std::mem::replace(entry, Entry::Occupied(waker)) else {
                    unreachable!("the free list holds vacant entries only")
                };
                slab.free = next;
                key
            }
            None => {
                // Fewer than `u32::MAX` futures can await one job at once:
                // each holds a waker of 16 bytes here, so that many would
                // take 64 GiB.
                let key = Key(u32::try_from(slab.entries.len()).unwrap_or(NONE - 1));
                slab.entries.push(Entry::Occupied(waker));
                key
            }
        }
    }

    fn entry(&mut self, key: Key) -> Option<&mut Entry> {
        self.0.as_mut()?.entries.get_mut(key.index())
    }

    /// The waker stored under `key`, if any.
    pub(crate) fn get(&self, key: Key) -> Option<&Waker> {
        match self.0.as_ref()?.entries.get(key.index()) {
            Some(Entry::Occupied(waker)) => Some(waker),
            _ => None,
        }
    }

    /// Replaces the waker under `key` with `waker` and returns the old one;
    /// gives `waker` back if `key` holds none.
    pub(crate) fn replace(&mut self, key: Key, waker: Waker) -> Result<Waker, Waker> {
        match self.entry(key) {
            Some(Entry::Occupied(old)) => Ok(std::mem::replace(old, waker)),
            _ => Err(waker),
        }
    }

    /// Takes the waker under `key` out, leaving the entry vacant (or
    /// clearing the set if it was the last, invariant 2). `None` for a key
    /// that holds none, such as one whose set was taken since.
    pub(crate) fn remove(&mut self, key: Key) -> Option<Waker> {
        let slab = self.0.as_mut()?;
        let entry = slab.entries.get_mut(key.index())?;
        if matches!(entry, Entry::Vacant(_)) {
            return None;
        }
        let Entry::Occupied(waker) = std::mem::replace(entry, Entry::Vacant(slab.free)) else {
            unreachable!("checked above")
        };
        slab.free = key.0;
        slab.len -= 1;
        if slab.len == 0 {
            // Keeps the allocations: a job awaited again and again reuses
            // them. The terminal transition takes them away.
            slab.entries.clear();
            slab.free = NONE;
        }
        Some(waker)
    }

    /// How many wakers are stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |slab| slab.len as usize)
    }

    /// `true` when no waker is stored.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|slab| slab.len == 0)
    }

    /// Every stored waker, consuming the set.
    pub(crate) fn into_wakers(self) -> impl Iterator<Item = Waker> {
        self.0
            .into_iter()
            .flat_map(|slab| slab.entries)
            .filter_map(|entry| match entry {
                Entry::Occupied(waker) => Some(waker),
                Entry::Vacant(_) => None,
            })
    }

    /// Wakes every stored waker, consuming the set, each under
    /// `catch_unwind`: a waker is user code, and one that panics is logged
    /// (naming job `job`) and cannot stop the others or the caller. Call it
    /// with no lock held.
    ///
    /// A set nobody registered in costs a null check here; the rest is out
    /// of line.
    #[inline]
    pub(crate) fn wake_all(self, job: &dyn fmt::Display) {
        if self.0.is_some() {
            wake_each(self, job);
        }
    }
}

#[cold]
#[inline(never)]
fn wake_each(wakers: Wakers, job: &dyn fmt::Display) {
    for waker in wakers.into_wakers() {
        if let Err(message) = crate::unwind::catch(|| waker.wake()) {
            log_quietly!(log::warn!("a waker of job {job} panicked: {message}"));
        }
    }
}

impl fmt::Debug for Wakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.0.as_ref().map_or(0, |slab| slab.len);

        f.debug_struct("Wakers").field("len", &len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wakes.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        (Arc::clone(&counter), Waker::from(counter))
    }

    #[test]
    fn empty_set_owns_nothing() {
        let wakers = Wakers::default();
        assert!(wakers.is_empty());
        assert!(wakers.0.is_none());
        assert_eq!(size_of::<Wakers>(), size_of::<usize>());
        assert_eq!(wakers.into_wakers().count(), 0);
    }

    #[test]
    fn keys_are_reused_and_the_last_removal_clears() {
        let mut wakers = Wakers::default();
        let (_, waker) = counter();
        let a = wakers.insert(waker.clone());
        let b = wakers.insert(waker.clone());
        let c = wakers.insert(waker.clone());
        assert_eq!((a, b, c), (Key(0), Key(1), Key(2)));
        assert!(wakers.remove(b).is_some());
        assert!(wakers.remove(b).is_none(), "a key is removed once");
        assert!(wakers.get(b).is_none());
        assert_eq!(wakers.insert(waker.clone()), b, "a vacant entry is reused");
        for key in [a, b, c] {
            assert!(wakers.remove(key).is_some());
        }
        assert!(wakers.is_empty());
        assert!(
            wakers.0.as_ref().unwrap().entries.is_empty(),
            "the last removal clears"
        );
        assert_eq!(wakers.insert(waker), Key(0));
    }

    #[test]
    fn churn_never_grows_the_set() {
        let mut wakers = Wakers::default();
        let (_, waker) = counter();
        let kept = wakers.insert(waker.clone());
        for _ in 0..10_000 {
            let key = wakers.insert(waker.clone());
            assert!(wakers.remove(key).is_some());
        }
        assert_eq!(wakers.0.as_ref().unwrap().entries.len(), 2);
        assert_eq!(wakers.len(), 1);
        assert!(wakers.get(kept).is_some());
    }

    #[test]
    fn replace_swaps_only_an_occupied_entry() {
        let mut wakers = Wakers::default();
        let (first, old) = counter();
        let (second, new) = counter();
        let key = wakers.insert(old);
        let previous = wakers.replace(key, new.clone()).ok().unwrap();
        previous.wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        assert!(wakers.replace(Key(key.0 + 1), new).is_err());
        for waker in wakers.into_wakers() {
            waker.wake();
        }
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn into_wakers_skips_vacant_entries() {
        let mut wakers = Wakers::default();
        let (count, waker) = counter();
        let keys: Vec<Key> = (0..5).map(|_| wakers.insert(waker.clone())).collect();
        wakers.remove(keys[1]);
        wakers.remove(keys[3]);
        for waker in wakers.into_wakers() {
            waker.wake();
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
    }
}
