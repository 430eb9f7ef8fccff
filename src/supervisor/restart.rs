//! The restart policy: a dead worker is joined and respawned under the
//! same index and name, at once within the restart limit, after a
//! doubling backoff in a storm.
//!
//! The invariants are numbered in the parent module's docs
//! (`supervisor.rs`); this file keeps 1 to 3, and 5 for the respawns it
//! schedules.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Slot, Supervisor};
use crate::events;
use crate::timer::far_after;
use crate::unwind;
use crate::worker;

impl Supervisor {
    pub(super) fn on_exit(&mut self, index: usize, died: bool) {
        let name = Arc::clone(&self.shared.names[index]);
        if let Slot::Running(handle) = std::mem::replace(&mut self.workers[index], Slot::Gone) {
            // Invariant 1: always join. The thread has finished its drop guard,
            // so this returns promptly.
            if let Err(payload) = handle.join() {
                let message = unwind::message(&*payload);
                unwind::dispose(payload);
                log_quietly!(events::worker_died(&name, &message));
            }
        }
        if !self.stopping {
            if !died {
                log_quietly!(log::error!(
                    "worker {name} exited while the pool was running"
                ));
            }
            self.respawn_or_delay(index);
        } else if died
            && !self.shared.jobs_rx.is_empty()
            && !self.shared.abort.load(Ordering::Acquire)
        {
            // Invariant 3: replace it so the queue still drains, unless storming.
            self.respawn_or_delay(index);
            if matches!(self.workers[index], Slot::Waiting(_)) {
                log_quietly!(log::error!(
                    "not respawning {name} during shutdown: restart storm"
                ));
                self.workers[index] = Slot::Gone;
            }
        }
    }

    /// Invariant 2: respawns now, or schedules the respawn after a backoff.
    fn respawn_or_delay(&mut self, index: usize) {
        let now = Instant::now();
        let window = self.shared.config.restart_window;
        while let Some(&oldest) = self.recent_restarts.front() {
            if now.duration_since(oldest) > window {
                self.recent_restarts.pop_front();
            } else {
                break;
            }
        }
        let limit = self.shared.config.restart_limit as usize;
        if self.recent_restarts.len() < limit {
            self.backoff = None;
            self.respawn(index, now);
        } else {
            let delay = self.next_backoff();
            log_quietly!(log::error!(
                "restart storm in pool {}: {} restarts within {window:?} (limit {limit}); \
                 respawning {} in {delay:?}",
                self.shared.config.thread_name,
                self.recent_restarts.len(),
                self.shared.names[index]
            ));
            self.workers[index] = Slot::Waiting(far_after(now, delay));
        }
    }

    pub(super) fn next_backoff(&mut self) -> Duration {
        let config = &self.shared.config;
        let delay = match self.backoff {
            None => config.backoff_initial,
            Some(last) => last.saturating_mul(2).min(config.backoff_max),
        };
        self.backoff = Some(delay);
        delay
    }

    fn respawn(&mut self, index: usize, now: Instant) {
        let name = Arc::clone(&self.shared.names[index]);
        // Counted before the thread exists, so a reader who sees the new
        // worker in `alive` also sees its restart (it may count itself
        // alive before `spawn` returns here); taken back if it fails.
        // Relaxed: a statistic.
        let restarts = &self.shared.counters.restarts;
        restarts.fetch_add(1, Ordering::Relaxed);
        match worker::spawn(&self.shared, index, None) {
            Ok(handle) => {
                self.workers[index] = Slot::Running(handle);
                self.recent_restarts.push_back(now);
                log_quietly!(events::restarted(&name));
            }
            Err(error) => {
                restarts.fetch_sub(1, Ordering::Relaxed);
                let delay = self.next_backoff();
                log_quietly!(log::error!(
                    "failed to respawn worker {name}: {error}; retrying in {delay:?}"
                ));
                self.workers[index] = Slot::Waiting(far_after(now, delay));
            }
        }
    }

    pub(super) fn respawn_due(&mut self, now: Instant) {
        for index in 0..self.workers.len() {
            if matches!(self.workers[index], Slot::Waiting(at) if at <= now) {
                self.respawn(index, now);
            }
        }
    }
}
