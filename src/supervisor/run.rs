//! The supervision loop: it sleeps on its event channel until an event,
//! a deadline or a due respawn, handles what woke it, and survives panics
//! of its own.
//!
//! The invariants are numbered in the parent module's docs
//! (`supervisor.rs`); this file keeps 2 and 6, and 3, 4 and 7 where it
//! handles the `Shutdown` and `Abort` events.

use std::time::Instant;

use crossbeam_channel::RecvTimeoutError;

use super::{Event, MAX_FAULTS, Slot, Supervisor};
use crate::unwind;

impl Supervisor {
    /// Runs the loop, surviving panics of its own (invariant 6).
    pub(super) fn run_resilient(&mut self) {
        let mut faults = 0;
        loop {
            let Err(message) = unwind::catch(|| self.run()) else {
                return;
            };
            faults += 1;
            log_quietly!(log::error!(
                "the supervisor of pool {} panicked ({faults} of {MAX_FAULTS}): {message}",
                self.shared.config.thread_name
            ));
            if faults >= MAX_FAULTS {
                self.give_up();
                return;
            }
            self.recover();
        }
    }

    /// After a panic: a slot emptied mid-way (its worker joined, its
    /// replacement not yet started) goes back on the respawn schedule.
    fn recover(&mut self) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        for slot in &mut self.workers {
            if matches!(slot, Slot::Gone) {
                *slot = Slot::Waiting(now);
            }
        }
    }

    fn run(&mut self) {
        // Each pass blocks on the event channel until an event, the next
        // deadline or the next due respawn (invariant 2): no busy polling.
        loop {
            if self.stopping && self.workers.iter().all(|slot| matches!(slot, Slot::Gone)) {
                break;
            }
            match self.next_event(self.next_wake()) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                // Unreachable: `shared` holds a sender.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            self.fire_deadlines(now);
            self.fire_graces(now);
            self.respawn_due(now);
        }
        // Invariant 3: nothing is left queued unaccounted for.
        let cancelled = self.cancel_queued();
        if cancelled > 0 {
            log_quietly!(log::error!(
                "pool {}: no worker left to run {cancelled} queued jobs; cancelled them",
                self.shared.config.thread_name
            ));
        }
    }

    /// Shutdown has begun: detaches held positions and drops delayed
    /// respawns; the live workers drain the queue.
    pub(super) fn stop(&mut self) {
        self.stopping = true;
        // Invariant 7: shutdown never waits for a thread stuck in an
        // abandoned job, whatever the stray cap.
        while let Some((index, jobs)) = self.held.pop_front() {
            self.detach(index, &jobs);
        }
        for slot in &mut self.workers {
            if matches!(slot, Slot::Waiting(_)) {
                // Invariant 3: a respawn held back by a storm is abandoned.
                *slot = Slot::Gone;
            }
        }
    }

    /// The next event, waiting at most until `wake` (forever if `None`).
    pub(super) fn next_event(&self, wake: Option<Instant>) -> Result<Event, RecvTimeoutError> {
        match wake {
            Some(at) => self.events.recv_deadline(at),
            None => self
                .events
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let respawn = self
            .workers
            .iter()
            .filter_map(|slot| match slot {
                Slot::Waiting(at) => Some(*at),
                _ => None,
            })
            .min();
        [respawn, self.deadlines.next(), self.graces.next()]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn handle(&mut self, event: Event) {
        match event {
            Event::Exited {
                index,
                generation,
                died,
            } => {
                #[cfg(test)]
                BEFORE_EXIT.run(self.shared.id);
                if generation == self.generation(index) {
                    self.on_exit(index, died);
                } else {
                    self.on_stray_exit(index, generation);
                }
            }
            Event::Interrupted(at, job) => self.graces.push_uncounted(at, job),
            Event::Deadline(at, job) => self.deadlines.push(at, job, &self.shared.stale),
            Event::Compact => self.deadlines.compact(&self.shared.stale),
            Event::Shutdown => self.stop(),
            #[cfg(test)]
            Event::Probe(reply) => {
                let _ = reply.send(self.deadlines.len());
            }
            #[cfg(test)]
            Event::Fault => panic!("injected supervisor fault"),
            Event::Abort => {
                // Invariant 4: statuses only; the workers draining the queue
                // (with `abort` set) drop the closures.
                let cancelled = self.shared.cancel_pending();
                log_quietly!(log::info!(
                    "pool {}: cancelled {cancelled} queued jobs",
                    self.shared.config.thread_name
                ));
            }
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(job) = self.deadlines.pop_due(now) {
            // Timer invariant 1: no user code on this path.
            let outcome = self.shared.cancel_keeping_closure(&job);
            log_quietly!(log::debug!(
                "job {} passed its deadline: {outcome}",
                job.record().id
            ));
        }
    }
}

/// Runs when the loop has taken an `Exited` event off its channel, before
/// handling it (tests make the supervisor fail there).
#[cfg(test)]
pub(crate) static BEFORE_EXIT: crate::sync::Hooks = crate::sync::Hooks::new();
