//! What ends a pool on the supervisor's side: cancelling the jobs no
//! worker is left to run, and giving up on a pool whose supervisor keeps
//! failing.
//!
//! The invariants are numbered in the parent module's docs
//! (`supervisor.rs`); this file keeps 3, 4 and 6.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::{Event, MAX_FAULTS, Slot, Supervisor};
use crate::shared::Mode;
use crate::stats::Ending;
use crate::unwind;

/// While giving up, how often the supervisor also checks its positions'
/// threads directly: an `Exited` event the failed loop took off the channel
/// before handling it is lost, and that thread's slot would otherwise stay
/// `Running` for good. Only on this path, after the supervisor failed
/// `MAX_FAULTS` times.
const REAP_EVERY: Duration = Duration::from_millis(100);

impl Supervisor {
    /// The supervisor cannot be trusted to keep the pool going: stop it as
    /// `shutdown_now` does, and wait for every worker before the pool is
    /// marked done (invariant 6). As `shutdown_now` does (invariant 7), it
    /// detaches a held position, and abandons a job that ignores its
    /// cancellation past its grace (if it has one) and detaches its thread.
    pub(super) fn give_up(&mut self) {
        log_quietly!(log::error!(
            "pool {}: its supervisor failed {MAX_FAULTS} times; shutting the pool down",
            self.shared.config.thread_name
        ));
        self.shared.begin_shutdown(Mode::Now);
        // The same steps as the loop's, few of them: if one fails again,
        // fall back to joining every thread still running (the last resort
        // waits for a job that never returns, but never leaves a thread
        // behind).
        if let Err(message) = unwind::catch(|| self.wind_down()) {
            log_quietly!(log::error!(
                "pool {}: its supervisor failed while giving up: {message}; \
                 joining the workers",
                self.shared.config.thread_name
            ));
        }
        for slot in &mut self.workers {
            if let Slot::Running(handle) = std::mem::replace(slot, Slot::Gone) {
                // Unbounded if its job ignores its cancellation: the last
                // resort, after `wind_down` failed too.
                if let Err(payload) = handle.join() {
                    unwind::dispose(payload);
                }
            }
        }
        self.cancel_queued();
    }

    /// Waits for every worker to exit, as the loop does while stopping
    /// after `shutdown_now`: the queued jobs cancelled (`Abort`), held
    /// positions detached at once, jobs past their grace abandoned
    /// (invariant 7). Nothing is respawned (`abort` is set), and there are
    /// no deadlines and no delayed respawns. A thread whose exit the failed
    /// loop took off the channel is found finished within [`REAP_EVERY`].
    fn wind_down(&mut self) {
        self.stop();
        loop {
            self.reap_finished();
            if !self
                .workers
                .iter()
                .any(|slot| matches!(slot, Slot::Running(_)))
            {
                return;
            }
            let reap = Instant::now() + REAP_EVERY;
            let wake = self.graces.next().map_or(reap, |at| at.min(reap));
            match self.next_event(Some(wake)) {
                // As the loop handles them.
                Ok(event @ (Event::Exited { .. } | Event::Interrupted(..) | Event::Abort)) => {
                    self.handle(event);
                }
                // Deadlines, compaction, shutdown: the pool is stopping
                // already.
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                // Unreachable: `shared` holds a sender.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.fire_graces(Instant::now());
        }
    }

    /// Joins every position whose thread has finished, as its `Exited`
    /// event would have (`wind_down`).
    fn reap_finished(&mut self) {
        for index in 0..self.workers.len() {
            if matches!(&self.workers[index], Slot::Running(handle) if handle.is_finished()) {
                self.on_exit(index, false);
            }
        }
    }

    /// Cancels every job still in the queue, dropping their closures here;
    /// returns how many there were. Only once no worker is left to drain the
    /// queue (or the supervisor gave up).
    pub(super) fn cancel_queued(&self) -> usize {
        let mut count = 0;
        while let Ok(message) = self.shared.jobs_rx.try_recv() {
            count += 1;
            // The supervisor is the only thread that takes entries for
            // `others` (stats `Tally::took`).
            self.shared.counters.others.took();
            if let Some(job) = message.tracked() {
                // Drops its closure and frees its slot if it was still
                // pending.
                self.shared.cancel(job);
                // Cancelled earlier by the timer or `shutdown_now`'s sweep,
                // which left the closure (worker invariant 6) and its slot.
                if !job.record().was_started() {
                    self.shared.discard(job);
                }
            } else {
                // Off the queue: its slot is free (shared invariant 5).
                self.shared.release_slot();
                self.shared.report.untracked_dropped();
                self.shared.counters.others.count(Ending::Cancelled);
                // Invariant 4.
                unwind::drop_quietly(message);
            }
        }
        // Once for every untracked job counted above.
        self.shared.check_idle();
        count
    }
}
