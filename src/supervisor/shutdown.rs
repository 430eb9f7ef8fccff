//! What ends a pool on the supervisor's side: cancelling the jobs no
//! worker is left to run, and giving up on a pool whose supervisor keeps
//! failing.
//!
//! The invariants are numbered in the parent module's docs
//! (`supervisor.rs`); this file keeps 3, 4 and 6.

use std::time::Instant;

use crossbeam_channel::RecvTimeoutError;

use super::{Event, MAX_FAULTS, Slot, Supervisor};
use crate::shared::Mode;
use crate::stats::Ending;
use crate::unwind;

impl Supervisor {
    /// The supervisor cannot be trusted to keep the pool going: stop it as
    /// `shutdown_now` does, and wait for every worker before the pool is
    /// marked done (invariant 6). As at any shutdown (invariant 7), a held
    /// position is detached, and a job that ignores its cancellation past
    /// its grace is abandoned and its thread detached: giving up never
    /// waits for a thread any other shutdown would not wait for.
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
                // Bounded by the worker's current job, whose token is
                // cancelled; it exits once the queue is drained.
                if let Err(payload) = handle.join() {
                    unwind::dispose(payload);
                }
            }
        }
        self.cancel_queued();
    }

    /// Waits for every worker to exit, as the loop does while stopping:
    /// held positions detached at once, jobs past their grace abandoned
    /// (invariant 7), nothing respawned but a dead worker the queue still
    /// needs (invariant 3). No deadlines, no delayed respawns.
    fn wind_down(&mut self) {
        self.stopping = true;
        while let Some((index, jobs)) = self.held.pop_front() {
            self.detach(index, &jobs);
        }
        for slot in &mut self.workers {
            if matches!(slot, Slot::Waiting(_)) {
                *slot = Slot::Gone;
            }
        }
        while self
            .workers
            .iter()
            .any(|slot| matches!(slot, Slot::Running(_)))
        {
            match self.next_event(self.graces.next()) {
                Ok(Event::Exited {
                    index,
                    generation,
                    died,
                }) => {
                    if generation == self.generation(index) {
                        self.on_exit(index, died);
                    } else {
                        self.on_stray_exit(index, generation);
                    }
                }
                Ok(Event::Interrupted(at, job)) => self.graces.push_uncounted(at, job),
                // Deadlines, compaction, shutdown, abort: the pool is
                // stopping already.
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                // Unreachable: `shared` holds a sender.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.fire_graces(Instant::now());
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
