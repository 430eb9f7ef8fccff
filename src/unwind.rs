//! Panic handling, in one place.
//!
//! This is the only module that calls [`std::panic::catch_unwind`].
//!
//! # Why the pool catches panics
//!
//! A worker could instead let a panicking job kill its thread and have the
//! supervisor spawn a new one (that is what the `threadpool` crate does).
//! Catching is better for the people running the pool:
//!
//! 1. A thread spawn costs tens of microseconds, a fresh stack and the loss
//!    of every thread-local cache; a burst of bad input would turn into a burst
//!    of thread creation.
//! 2. The panic message is kept and recorded as the job's `Failed` status,
//!    where a dead thread's payload would only reach whoever joins it.
//! 3. The job's state transition happens on the thread that ran it, in order,
//!    with no window in which the job looks `Running` on a dead thread.
//!
//! The supervisor still exists for what cannot be caught here: a panicking
//! start hook, a bug, or anything that unwinds outside a job.
//!
//! # Payloads whose `Drop` panics
//!
//! A panic payload is a `Box<dyn Any + Send>` chosen by the code that panicked;
//! its `Drop` may panic in turn. Dropping it carelessly would unwind the worker
//! (or abort the process if it happens during unwinding), so payloads are
//! disposed of by [`dispose`]: dropped under `catch_unwind`, and a second
//! payload from that drop is leaked with [`std::mem::forget`] rather than
//! dropped, which ends the chain.
//!
//! Under `panic = "abort"` none of this runs: the process aborts at the first
//! panic, as it would with any pool.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

/// The text recorded for a panic whose payload is neither `&str` nor `String`.
pub(crate) const NON_STRING_PAYLOAD: &str = "job panicked with a non-string payload";

/// Runs `f`, turning a panic into its message.
///
/// The payload is disposed of safely, even when its `Drop` panics.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    // AssertUnwindSafe: whatever `f` captured is dropped or poisoned-through by
    // the caller; the pool's own state is never borrowed by `f`.
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = message(&*payload);
        dispose(payload);
        message
    })
}

/// The human-readable message of a panic payload.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        NON_STRING_PAYLOAD.to_owned()
    }
}

/// Drops a panic payload without letting a panic in its `Drop` escape.
pub(crate) fn dispose(payload: Box<dyn Any + Send>) {
    if let Err(second) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // Dropping `second` could panic again; leaking it ends the chain.
        std::mem::forget(second);
        // Not through `catch`/`log_quietly!`, which dispose of payloads here:
        // a logger that panics is contained and its payload leaked too.
        let logged = panic::catch_unwind(|| {
            log::warn!("a panic payload panicked while being dropped; leaking the second payload");
        });
        if let Err(third) = logged {
            std::mem::forget(third);
        }
    }
}

/// Drops `value` (which may run user code), containing any panic.
///
/// Returns the panic message if its `Drop` panicked.
pub(crate) fn drop_quietly<T>(value: T) -> Option<String> {
    catch(move || drop(value)).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop panicked");
        }
    }

    #[test]
    fn messages_for_each_payload_kind() {
        assert_eq!(
            catch(|| panic!("static")),
            Err::<(), _>("static".to_owned())
        );
        let owned = String::from("owned");
        assert_eq!(
            catch(move || std::panic::panic_any(owned)),
            Err::<(), _>("owned".to_owned())
        );
        assert_eq!(
            catch(|| std::panic::panic_any(17_u32)),
            Err::<(), _>(NON_STRING_PAYLOAD.to_owned())
        );
        assert_eq!(catch(|| 5), Ok(5));
    }

    #[test]
    fn payload_whose_drop_panics_is_contained() {
        let r = catch(|| std::panic::panic_any(PanicOnDrop));
        assert_eq!(r, Err(NON_STRING_PAYLOAD.to_owned()));
    }

    #[test]
    fn drop_quietly_reports_a_panicking_drop() {
        assert_eq!(drop_quietly(PanicOnDrop), Some("drop panicked".to_owned()));
        assert_eq!(drop_quietly(5_u8), None);
    }
}
