//! The shutdown machinery behind [`Pool`]'s shutdown operations: waiting
//! until every thread of the pool was joined, `shutdown_timeout`'s
//! escalation (graceful, then immediate, then leaving the threads to finish
//! on their own), and the supervisor's join-once handle. The protocol that
//! stops the threads is `Shared::begin_shutdown` and the supervisor's (see
//! "Shutdown protocol" in `docs/design.md`).

use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Pool;
use crate::report::ShutdownReport;
use crate::shared::Mode;
use crate::sync::{deadline_after, lock, wait_until};

impl Pool {
    /// Returns whether this call saw every thread joined.
    pub(super) fn shutdown_inner(&self, mode: Mode) -> bool {
        self.shared.begin_shutdown(mode);
        if self.on_own_worker("shutdown") || self.detached.load(Ordering::SeqCst) {
            return false;
        }
        self.shared.wait_done(None);
        self.supervisor.join(None)
    }

    pub(super) fn shutdown_timeout_inner(&self, timeout: Duration) -> bool {
        self.shared.begin_shutdown(Mode::Graceful);
        if self.on_own_worker("shutdown_timeout") {
            return false;
        }
        let deadline = deadline_after(timeout);
        if self.shared.wait_done(deadline) {
            return self.supervisor.join(deadline);
        }
        log_quietly!(log::warn!(
            "pool {}: graceful shutdown took longer than {timeout:?}; cancelling jobs",
            self.shared.config.thread_name
        ));
        self.shared.begin_shutdown(Mode::Now);
        let deadline = deadline_after(timeout);
        if self.shared.wait_done(deadline) {
            return self.supervisor.join(deadline);
        }
        log_quietly!(log::error!(
            "pool {}: jobs ignored cancellation for {timeout:?}; leaving their threads to finish",
            self.shared.config.thread_name
        ));
        self.detached.store(true, Ordering::SeqCst);
        false
    }

    pub(super) fn report(&self, joined: bool) -> ShutdownReport {
        // Relaxed: a statistic.
        let strays = self.shared.counters.strays.load(Ordering::Relaxed);
        self.shared.report.report(strays, joined)
    }
}

/// The supervisor's `JoinHandle`, joined once by whichever shutdown caller
/// takes it; every other caller waits until that join is over, so no caller
/// returns while the supervisor thread still runs.
pub(super) struct SupervisorThread {
    state: Mutex<Joining>,
    joined: Condvar,
}

struct Joining {
    handle: Option<JoinHandle<()>>,
    joined: bool,
}

impl SupervisorThread {
    pub(super) fn new(handle: JoinHandle<()>) -> Self {
        SupervisorThread {
            state: Mutex::new(Joining {
                handle: Some(handle),
                joined: false,
            }),
            joined: Condvar::new(),
        }
    }

    /// Joins the supervisor (it marked the pool done as its last act, so
    /// this is prompt), or waits for the caller that does, until `deadline`.
    /// Returns whether the supervisor thread is gone.
    fn join(&self, deadline: Option<Instant>) -> bool {
        let mut state = lock(&self.state);
        if let Some(handle) = state.handle.take() {
            // Not under the lock: the supervisor may still run a logger.
            drop(state);
            let panicked = handle.join().is_err();
            state = lock(&self.state);
            state.joined = true;
            drop(state);
            self.joined.notify_all();
            if panicked {
                log_quietly!(log::error!("the supervisor thread panicked"));
            }
            return true;
        }
        // Bounded by `deadline`; re-checks after every (spurious) wake.
        loop {
            if state.joined {
                return true;
            }
            let (next, timed_out) = wait_until(&self.joined, state, deadline);
            state = next;
            if timed_out {
                return state.joined;
            }
        }
    }
}
