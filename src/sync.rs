//! Lock helpers that ignore poisoning.
//!
//! The pool never runs user code while it holds one of its own locks, so a
//! poisoned lock can only mean a bug in this crate that already unwound. The
//! data behind every lock is kept consistent at each step, so the right
//! reaction is to keep going rather than to spread the panic to every thread
//! that touches the pool.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Locks `mutex`, ignoring poisoning.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cond` until notified or until `deadline` (if any) passes,
/// ignoring poisoning.
///
/// Returns the guard and whether the deadline has passed. Spurious wake-ups
/// are possible, so every caller re-checks its condition in a loop.
pub(crate) fn wait_until<'a, T>(
    cond: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, T>, bool) {
    match deadline {
        None => (
            cond.wait(guard).unwrap_or_else(PoisonError::into_inner),
            false,
        ),
        Some(deadline) => {
            let now = Instant::now();
            if now >= deadline {
                return (guard, true);
            }
            let (guard, _) = cond
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner);
            (guard, Instant::now() >= deadline)
        }
    }
}

/// `now + timeout`, or `None` (wait forever) when that overflows `Instant`.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The unit tests' bound for anything that should happen "soon" on a loaded
/// 2-core CI machine (the integration tests' `common::PATIENCE`).
#[cfg(test)]
pub(crate) const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits until `condition` holds, checking every millisecond, for at most
/// [`PATIENCE`]. Returns whether it held. For tests that await an eventual
/// state; never used to order events.
#[cfg(test)]
pub(crate) fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
