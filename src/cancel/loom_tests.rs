//! The invariants these models check are numbered in the parent module's
//! docs (`cancel.rs`).

use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

use super::{CancelToken, Cancelled, TokenState};
use crate::sync::{lock, model};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Cancel vs sleep: the sleeper sees the flag or is woken by the cancel
/// (invariant 2).
#[test]
fn loom_cancel_vs_sleep() {
    model(|| {
        let state = Arc::new(TokenState::default());
        let sleeper = {
            let state = Arc::clone(&state);
            thread::spawn(move || state.sleep(Duration::MAX))
        };
        state.cancel();
        assert_eq!(sleeper.join().unwrap(), Err(Cancelled));
    });
}

/// Cancel twice, from two threads, with a sleeper: only the first
/// cancel notifies, and that is enough; the flag stays set.
#[test]
fn loom_cancel_twice() {
    model(|| {
        let state = Arc::new(TokenState::default());
        let sleeper = {
            let state = Arc::clone(&state);
            thread::spawn(move || state.sleep(Duration::MAX))
        };
        let other = {
            let state = Arc::clone(&state);
            thread::spawn(move || state.cancel())
        };
        state.cancel();
        other.join().unwrap();
        assert!(state.is_cancelled());
        assert_eq!(sleeper.join().unwrap(), Err(Cancelled));
    });
}

/// Register vs cancel: the callback runs exactly once, taken by the
/// canceller or run at once by the registering thread, never both and
/// never neither (invariant 3); the token keeps no entry.
#[test]
fn loom_register_vs_cancel() {
    model(|| {
        let token = CancelToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let registrar = {
            let token = token.clone();
            let runs = Arc::clone(&runs);
            thread::spawn(move || {
                token.on_cancel(move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                })
            })
        };
        token.cancel();
        let registration = registrar.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        drop(registration);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(lock(&token.state().lock).is_empty());
    });
}

/// Dropping a registration vs cancel: the callback runs at most once,
/// and not at all if the drop returned before the cancel began or the
/// flag was unset after the drop (invariant 5).
#[test]
fn loom_drop_vs_cancel() {
    model(|| {
        let token = CancelToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let registration = {
            let runs = Arc::clone(&runs);
            token.on_cancel(move || {
                runs.fetch_add(1, Ordering::SeqCst);
            })
        };
        let dropper = {
            let dropped = Arc::clone(&dropped);
            let token = token.clone();
            thread::spawn(move || {
                drop(registration);
                dropped.store(true, Ordering::SeqCst);
                token.is_cancelled()
            })
        };
        let dropped_before_cancel = dropped.load(Ordering::SeqCst);
        token.cancel();
        let cancelled_after_drop = dropper.join().unwrap();
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs <= 1);
        if dropped_before_cancel || !cancelled_after_drop {
            assert_eq!(runs, 0);
        }
        assert!(lock(&token.state().lock).is_empty());
    });
}

/// A pending `cancelled()` future vs cancel: the future sees the flag
/// or its waker is taken and woken (invariant 3). A lost wake-up shows
/// as loom's deadlock report.
#[test]
fn loom_future_vs_cancel() {
    model(|| {
        let token = CancelToken::new();
        let waiter = {
            let token = token.clone();
            thread::spawn(move || loom::future::block_on(token.cancelled()))
        };
        token.cancel();
        waiter.join().unwrap();
        assert!(lock(&token.state().lock).is_empty());
    });
}
