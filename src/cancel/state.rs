//! A token's state: its flag, and the entries (wakers and callbacks) run
//! when it is cancelled. The invariants and the lock order are numbered in
//! the parent module's docs (`cancel.rs`); the code here keeps them.

use std::mem;
use std::task::{Poll, Waker};
use std::time::Duration;

use super::Cancelled;
// The loom facade: `TokenState` is modelled (`loom_tests.rs`).
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Condvar, Mutex, deadline_after, lock, wait_until};

/// The shared state behind every clone of one token.
#[derive(Default)]
pub(crate) struct TokenState {
    cancelled: AtomicBool,
    /// The wakers and callbacks to run on cancel (invariants 3 to 5); also
    /// pairs with `wake` so sleepers do not miss a cancel (invariant 2).
    pub(super) lock: Mutex<Entries>,
    wake: Condvar,
}

/// What a token runs when it is cancelled, under keys never reused.
/// Boxed, and nothing until the first entry: most tokens never get one,
/// and a job's token lives in its record, whose size every job pays for.
#[derive(Default)]
pub(super) struct Entries(Option<Box<Listed>>);

#[derive(Default)]
struct Listed {
    next_key: u64,
    /// In registration order (invariant 5).
    list: Vec<(u64, Entry)>,
}

/// One thing to run on cancel.
pub(super) enum Entry {
    /// The waker of a pending [`WaitForCancel`](super::WaitForCancel).
    Waker(Waker),
    /// A callback given to [`CancelToken::on_cancel`](super::CancelToken::on_cancel).
    Callback(Box<dyn FnOnce() + Send>),
}

impl Entries {
    /// Adds `entry` last; returns its key.
    fn push(&mut self, entry: Entry) -> u64 {
        let listed = self.0.get_or_insert_with(Box::default);
        let key = listed.next_key;
        listed.next_key += 1;
        listed.list.push((key, entry));
        key
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut Entry> {
        self.0
            .as_mut()?
            .list
            .iter_mut()
            .find(|(k, _)| *k == key)
            .map(|(_, entry)| entry)
    }

    fn remove(&mut self, key: u64) -> Option<Entry> {
        let list = &mut self.0.as_mut()?.list;
        let at = list.iter().position(|(k, _)| *k == key)?;
        Some(list.remove(at).1)
    }

    /// Takes every entry, in registration order; keys stay unused.
    fn take_all(&mut self) -> Vec<(u64, Entry)> {
        self.0
            .as_mut()
            .map(|listed| mem::take(&mut listed.list))
            .unwrap_or_default()
    }

    /// Whether no entry is registered (the loom models check).
    #[cfg(all(test, loom))]
    pub(super) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|listed| listed.list.is_empty())
    }
}

impl Entry {
    /// Runs the callback or wakes the waker, containing a panic. Called with
    /// no lock held (invariant 4).
    pub(super) fn fire(self) {
        match self {
            Entry::Waker(waker) => {
                if let Err(message) = crate::unwind::catch(move || waker.wake()) {
                    log_quietly!(log::warn!(
                        "a waker panicked when woken by a cancel: {message}"
                    ));
                }
            }
            Entry::Callback(callback) => run_callback(callback),
        }
    }
}

/// Runs an [`CancelToken::on_cancel`](super::CancelToken::on_cancel)
/// callback, containing a panic. Called with no lock held (invariant 4).
pub(super) fn run_callback(callback: impl FnOnce()) {
    if let Err(message) = crate::unwind::catch(callback) {
        log_quietly!(log::warn!("a cancel callback panicked: {message}"));
    }
}

impl TokenState {
    /// Sets the flag, wakes every sleeper and every pending
    /// [`WaitForCancel`](super::WaitForCancel), and runs every registered
    /// callback (see [`CancelToken::cancel`](super::CancelToken::cancel)).
    /// Must be called with no lock held: it runs user code (invariant 4).
    /// Returns `true` if this call cancelled it (it was not cancelled
    /// before).
    pub(crate) fn cancel(&self) -> bool {
        // SeqCst pairs with the loads in `sleep` and `register`, which happen
        // under `lock` (invariants 2 and 3); the mutex below orders the
        // notification and the taking of entries after it.
        if self.cancelled.swap(true, Ordering::SeqCst) {
            return false; // invariant 1: the first canceller did all the rest
        }
        let taken = {
            let mut entries = lock(&self.lock);
            self.wake.notify_all();
            // Every entry, at once; none is added from now on (invariant 3).
            entries.take_all()
        };
        // Invariant 4: the entries run with the lock released, in
        // registration order (invariant 5).
        for (_, entry) in taken {
            entry.fire();
        }
        true
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        // Acquire: whatever the canceller did before cancelling is visible to
        // a job that sees the flag.
        self.cancelled.load(Ordering::Acquire)
    }

    pub(super) fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        let deadline = deadline_after(duration);
        let mut guard = lock(&self.lock);
        // Bounded by `deadline` (or by a cancel when there is none); each
        // pass re-checks the flag because wake-ups can be spurious.
        loop {
            // Checked under `lock`: keeps invariant 2.
            if self.is_cancelled() {
                return Err(Cancelled);
            }
            let (next, timed_out) = wait_until(&self.wake, guard, deadline);
            guard = next;
            if timed_out {
                return if self.is_cancelled() {
                    Err(Cancelled)
                } else {
                    Ok(())
                };
            }
        }
    }

    /// Adds `entry` unless the token is cancelled; gives it back then, for
    /// the caller to handle once the lock is released (invariant 3).
    pub(super) fn register(&self, entry: Entry) -> Result<u64, Entry> {
        let mut entries = lock(&self.lock);
        // Checked under `lock`: keeps invariant 3.
        if self.is_cancelled() {
            return Err(entry);
        }
        Ok(entries.push(entry))
    }

    /// Removes the entry `key` if the canceller has not taken it. The
    /// caller drops what is returned, with the lock released (invariant 4).
    pub(super) fn deregister(&self, key: u64) -> Option<Entry> {
        lock(&self.lock).remove(key)
    }

    /// [`WaitForCancel`](super::WaitForCancel)'s poll: `key` is its entry, if it made one.
    pub(super) fn poll_cancelled(&self, key: &mut Option<u64>, waker: &Waker) -> Poll<()> {
        if self.is_cancelled() {
            return Poll::Ready(());
        }
        if let Some(key) = *key {
            let mut entries = lock(&self.lock);
            if self.is_cancelled() {
                return Poll::Ready(());
            }
            // `will_wake` compares pointers; it runs no user code.
            if let Some(Entry::Waker(stored)) = entries.get_mut(key)
                && stored.will_wake(waker)
            {
                return Poll::Pending;
            }
        }
        // A waker's `clone` and `drop` are user code: neither under the
        // lock (invariant 4).
        let fresh = waker.clone();
        let mut entries = lock(&self.lock);
        // Checked under `lock`: keeps invariant 3.
        if self.is_cancelled() {
            drop(entries);
            drop(fresh);
            return Poll::Ready(());
        }
        let replaced = match key.and_then(|key| entries.get_mut(key)) {
            Some(stored) => Some(mem::replace(stored, Entry::Waker(fresh))),
            None => {
                *key = Some(entries.push(Entry::Waker(fresh)));
                None
            }
        };
        drop(entries);
        drop(replaced);
        Poll::Pending
    }
}
