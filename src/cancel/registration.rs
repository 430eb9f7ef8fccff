//! The handles that hold an entry in a token: [`WaitForCancel`] (a waker)
//! and [`CancelRegistration`] (a callback); each removes its entry when
//! dropped. The invariants are numbered in the parent module's docs
//! (`cancel.rs`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::CancelToken;

/// The future returned by [`CancelToken::cancelled`]: completes once the
/// token is cancelled.
///
/// Dropping it before then removes its waker from the token.
///
/// # Examples
///
/// ```
/// use harbor_pool::CancelToken;
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
///
/// let token = CancelToken::new();
/// let mut future = pin!(token.cancelled());
/// let mut cx = Context::from_waker(Waker::noop());
/// assert_eq!(future.as_mut().poll(&mut cx), Poll::Pending);
/// token.cancel();
/// assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(()));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct WaitForCancel {
    pub(super) token: CancelToken,
    /// Its entry in the token, once a poll stored a waker.
    pub(super) key: Option<u64>,
}

impl Future for WaitForCancel {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.token.state().poll_cancelled(&mut this.key, cx.waker())
    }
}

impl Drop for WaitForCancel {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // The waker is dropped here, with the lock released (invariant 4).
            drop(self.token.state().deregister(key));
        }
    }
}

impl fmt::Debug for WaitForCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancel")
            .field("cancelled", &self.token.is_cancelled())
            .finish()
    }
}

/// A callback registered with [`CancelToken::on_cancel`]; dropping it
/// unregisters the callback.
///
/// Dropping it removes the callback unless a cancel has already taken it
/// to run:
///
/// * a cancel that begins after the drop returned never runs the callback;
///   nor does any cancel if [`is_cancelled`](CancelToken::is_cancelled) is
///   still `false` after the drop;
/// * if a cancel had already begun, it took the callback with every other
///   one registered by then, and runs it (or ran it) on the cancelling
///   thread; `drop` **does not wait** for it to finish. So
///   dropping a registration inside its own callback, or while holding a
///   lock that the callback takes, cannot deadlock, and a callback running
///   on the pool's supervisor (a deadline) never holds up a job's drop.
///
/// A registration whose callback already ran (or ran at once because the
/// token was cancelled) does nothing when dropped.
///
/// # Examples
///
/// ```
/// use harbor_pool::CancelToken;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// let token = CancelToken::new();
/// let runs = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&runs);
/// let registration = token.on_cancel(move || {
///     counter.fetch_add(1, Ordering::SeqCst);
/// });
/// drop(registration); // unregistered: the cancel below does not run it
/// token.cancel();
/// assert_eq!(runs.load(Ordering::SeqCst), 0);
/// ```
#[must_use = "dropping the registration unregisters the callback at once"]
pub struct CancelRegistration {
    /// The token and the callback's key, while it may still be registered.
    pub(super) entry: Option<(CancelToken, u64)>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        if let Some((token, key)) = self.entry.take() {
            // Never waits (invariant 5). The callback's captures are dropped
            // here, with the lock released (invariant 4).
            drop(token.state().deregister(key));
        }
    }
}

impl fmt::Debug for CancelRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelRegistration")
            .field("token", &self.entry.as_ref().map(|(token, _)| token))
            .finish()
    }
}
