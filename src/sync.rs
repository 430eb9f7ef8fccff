//! Synchronisation primitives for the modelled rooms, and lock helpers that
//! ignore poisoning.
//!
//! # The loom facade
//!
//! The rooms whose protocols are checked with [loom] (the idle gate in
//! `idle.rs`, a job's `Record` in `registry/record.rs`, a token's `TokenState` in
//! `cancel/state.rs`, a job's `ProgressCell` in `progress.rs`) take their `Mutex`, `Condvar` and atomics from here rather
//! than from `std::sync`. A normal build re-exports std's types, so this
//! costs nothing. A test build with `RUSTFLAGS="--cfg loom"` re-exports
//! loom's instead, and the `loom_tests` beside each room explore every
//! interleaving of a named race (see "Verification" in `docs/design.md`).
//!
//! The switch is `cfg(all(test, loom))`, not `cfg(loom)` alone: loom is a
//! dev-dependency, so a build of the library itself (for instance as a
//! dependency of a crate that sets `--cfg loom` for its own models) keeps
//! std's types and still compiles.
//!
//! The other rooms keep std's types; [`lock`] and [`wait_until`] accept
//! both kinds.
//!
//! # Poisoning
//!
//! The pool never runs user code while it holds one of its own locks, so a
//! poisoned lock can only mean a bug in this crate that already unwound. The
//! data behind every lock is kept consistent at each step, so the right
//! reaction is to keep going rather than to spread the panic to every thread
//! that touches the pool.
//!
//! [loom]: https://docs.rs/loom

use std::sync::PoisonError;
use std::time::{Duration, Instant};

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{Condvar, Mutex};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::{Condvar, Mutex};

/// Atomics for the modelled rooms (std's, or loom's under `cfg(loom)`).
pub(crate) mod atomic {
    #[cfg(not(all(test, loom)))]
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
    };

    #[cfg(all(test, loom))]
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
    };
}

/// Orders a `SeqCst` read-modify-write before a later `SeqCst` load of
/// another location, in loom's model; does nothing in a real build.
///
/// The Dekker-style handshakes here (a joiner registers and then sums the
/// counters; a finisher counts and then looks for joiners) rely on every
/// `SeqCst` access sitting in one total order, which excludes the
/// "store buffering" outcome where both sides read the old value. loom
/// models `SeqCst` *accesses* as `AcqRel` only (its README, "Unsupported
/// features") and would report that outcome as a lost wake-up that cannot
/// happen. It does model `fence(SeqCst)`, which excludes the same outcome,
/// so the model gets the fence and the real build keeps its plain `SeqCst`
/// accesses (a fence there would cost a serialising instruction per job).
#[inline(always)]
pub(crate) fn seq_cst_handshake() {
    #[cfg(all(test, loom))]
    loom::sync::atomic::fence(atomic::Ordering::SeqCst);
}

/// A mutex [`lock`] can take: std's, and loom's in a loom build.
pub(crate) trait Lock {
    /// The guard `lock` returns.
    type Guard<'a>
    where
        Self: 'a;

    /// Locks, ignoring poisoning.
    fn lock_ignoring_poison(&self) -> Self::Guard<'_>;
}

impl<T: ?Sized> Lock for std::sync::Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        Self: 'a;

    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(all(test, loom))]
impl<T: ?Sized> Lock for loom::sync::Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        Self: 'a;

    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A condition variable [`wait_until`] can wait on with a guard `G`.
pub(crate) trait Wait<G> {
    /// Waits for a notification, ignoring poisoning.
    fn wait_ignoring_poison(&self, guard: G) -> G;

    /// Waits for a notification or `timeout`, ignoring poisoning.
    fn wait_timeout_ignoring_poison(&self, guard: G, timeout: Duration) -> G;
}

impl<'a, T> Wait<std::sync::MutexGuard<'a, T>> for std::sync::Condvar {
    fn wait_ignoring_poison(
        &self,
        guard: std::sync::MutexGuard<'a, T>,
    ) -> std::sync::MutexGuard<'a, T> {
        self.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    fn wait_timeout_ignoring_poison(
        &self,
        guard: std::sync::MutexGuard<'a, T>,
        timeout: Duration,
    ) -> std::sync::MutexGuard<'a, T> {
        self.wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// loom has no clock: its `wait_timeout` waits like `wait`. The models only
/// use the paths without a deadline.
#[cfg(all(test, loom))]
impl<'a, T> Wait<loom::sync::MutexGuard<'a, T>> for loom::sync::Condvar {
    fn wait_ignoring_poison(
        &self,
        guard: loom::sync::MutexGuard<'a, T>,
    ) -> loom::sync::MutexGuard<'a, T> {
        self.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    fn wait_timeout_ignoring_poison(
        &self,
        guard: loom::sync::MutexGuard<'a, T>,
        timeout: Duration,
    ) -> loom::sync::MutexGuard<'a, T> {
        self.wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// Locks `mutex`, ignoring poisoning.
pub(crate) fn lock<M: Lock + ?Sized>(mutex: &M) -> M::Guard<'_> {
    mutex.lock_ignoring_poison()
}

/// Waits on `cond` until notified or until `deadline` (if any) passes,
/// ignoring poisoning.
///
/// Returns the guard and whether the deadline has passed. Spurious wake-ups
/// are possible, so every caller re-checks its condition in a loop.
pub(crate) fn wait_until<C: Wait<G> + ?Sized, G>(
    cond: &C,
    guard: G,
    deadline: Option<Instant>,
) -> (G, bool) {
    match deadline {
        None => (cond.wait_ignoring_poison(guard), false),
        Some(deadline) => {
            let now = Instant::now();
            if now >= deadline {
                return (guard, true);
            }
            let guard = cond.wait_timeout_ignoring_poison(guard, deadline - now);
            (guard, Instant::now() >= deadline)
        }
    }
}

/// `now + timeout`, or `None` (wait forever) when that overflows `Instant`.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Runs a loom model of `f` over every interleaving, with loom's defaults
/// (its `LOOM_*` environment variables) except for the preemption bound:
/// at most 3 preemptions unless `LOOM_MAX_PREEMPTIONS` says otherwise,
/// which covers each race here and keeps the run in seconds.
#[cfg(all(test, loom))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// The unit tests' bound for anything that should happen "soon" on a loaded
/// 2-core CI machine (the integration tests' `common::PATIENCE`).
#[cfg(test)]
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

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
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Test-only pause points in the pool's own threads, one-shot, by pool id:
/// a test widens the window between two steps to force an interleaving
/// (std's `Mutex`, also under loom: it only orders the test's own setup).
#[cfg(test)]
pub(crate) struct Hooks(std::sync::Mutex<Vec<(usize, Hook)>>);

/// A test's pause point: what a pool's thread runs there.
#[cfg(test)]
type Hook = Box<dyn FnOnce() + Send>;

#[cfg(test)]
impl Hooks {
    pub(crate) const fn new() -> Self {
        Hooks(std::sync::Mutex::new(Vec::new()))
    }

    /// Runs `hook` the next time pool `pool`'s thread passes this point.
    pub(crate) fn set(&self, pool: usize, hook: impl FnOnce() + Send + 'static) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((pool, Box::new(hook)));
    }

    /// Pauses pool `pool`'s thread the next time it passes this point:
    /// the receiver hears when it got there, and the thread goes on once
    /// the sender sends (or is dropped), or after [`PATIENCE`].
    pub(crate) fn pause(
        &self,
        pool: usize,
    ) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (reached_tx, reached) = std::sync::mpsc::channel();
        let (go, gone) = std::sync::mpsc::channel::<()>();
        self.set(pool, move || {
            let _ = reached_tx.send(());
            let _ = gone.recv_timeout(PATIENCE);
        });
        (reached, go)
    }

    /// Runs pool `pool`'s hook here, if it has one (outside the lock).
    pub(crate) fn run(&self, pool: usize) {
        let hook = {
            let mut hooks = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let at = hooks.iter().position(|(id, _)| *id == pool);
            at.map(|at| hooks.swap_remove(at).1)
        };
        if let Some(hook) = hook {
            hook();
        }
    }
}
