//! Abandonment: a running job whose grace ran out after its token was
//! cancelled ends `Abandoned`, its thread is detached and replaced, and
//! detached threads are joined when they exit.
//!
//! The invariants are numbered in the parent module's docs
//! (`supervisor.rs`); this file keeps 7, and 1 and 5 for the threads it
//! detaches and replaces.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

use super::{Slot, Supervisor};
use crate::job::Tracked;
use crate::timer::far_after;
use crate::unwind;
use crate::worker;

/// A detached worker thread (invariant 7).
pub(super) struct Stray {
    index: usize,
    generation: u64,
    handle: JoinHandle<()>,
}

impl Supervisor {
    /// The position's current generation (worker invariant 8).
    pub(super) fn generation(&self, index: usize) -> u64 {
        self.shared.counters.workers[index]
            .generation
            .load(Ordering::Acquire)
    }

    /// Abandons the jobs whose grace ran out while still running
    /// (invariant 7).
    pub(super) fn fire_graces(&mut self, now: Instant) {
        while let Some(job) = self.graces.pop_due(now) {
            if job.record().status() == crate::job::JobStatus::Running {
                self.abandon(&job);
            }
        }
    }

    /// Ends `job` and every other job running on its worker's thread (jobs
    /// it runs inline, or that run it inline) `Abandoned`, and detaches that
    /// thread, within the stray cap (invariant 7).
    fn abandon(&mut self, job: &Arc<dyn Tracked>) {
        let Some((index, generation)) = job.record().worker() else {
            return;
        };
        // The running jobs of the thread that started this one: same
        // position, same generation. A job a stray started inline after
        // its detachment was snapshotted is of an older generation than its
        // position's replacement, and is never taken for one of its jobs.
        let on_thread: Vec<Arc<dyn Tracked>> = self
            .shared
            .registry
            .running()
            .into_iter()
            .filter(|other| other.record().worker() == Some((index, generation)))
            .collect();
        if on_thread.is_empty() {
            return;
        }
        #[cfg(test)]
        AFTER_LISTING.run(self.shared.id);
        // A thread detached already (a job it ran inline when it was listed
        // for another): end its jobs, detach nothing.
        let on_a_stray = generation != self.generation(index);
        if !on_a_stray {
            // Detach first, then mark: whoever sees a job `Abandoned` also
            // sees its replacement started and the stray counted. (If the
            // job returns in between, it keeps its real outcome and its
            // detached thread just exits.)
            let cap = self
                .shared
                .config
                .max_stray_threads
                .unwrap_or(self.shared.config.workers);
            if self.strays.len() >= cap && !self.stopping {
                log_quietly!(log::error!(
                    "pool {}: {} stray threads (the limit); {} stays stuck until one exits",
                    self.shared.config.thread_name,
                    self.strays.len(),
                    self.shared.names[index]
                ));
                self.held.push_back((index, on_thread.clone()));
            } else {
                self.detach(index, &on_thread);
            }
        }
        let abandoned = on_thread
            .iter()
            .filter(|other| self.shared.abandon(other))
            .count();
        if abandoned > 0 {
            log_quietly!(log::error!(
                "job {} did not return within its grace after being cancelled; \
                 abandoned it ({abandoned} job(s) on {}{})",
                job.record().id,
                if on_a_stray {
                    "a detached thread of "
                } else {
                    ""
                },
                self.shared.names[index]
            ));
        }
    }

    /// Detaches position `index`'s thread if it is still inside one of
    /// `jobs` (registry invariant 6), and starts its replacement. Returns
    /// whether it did.
    pub(super) fn detach(&mut self, index: usize, jobs: &[Arc<dyn Tracked>]) -> bool {
        let generation = self.generation(index);
        let tally = &self.shared.counters.workers[index];
        let detached = jobs.iter().any(|job| {
            job.record().detach_if_not_returned(|started| {
                // Only the thread of the generation the job started in: a
                // job of an older one never detaches its replacement.
                tally
                    .generation
                    .compare_exchange(started, started + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
        });
        if !detached {
            // It returned on its own meanwhile, and goes on as a worker.
            return false;
        }
        let Slot::Running(handle) = std::mem::replace(&mut self.workers[index], Slot::Gone) else {
            // Unreachable: a thread inside a job holds its position.
            return true;
        };
        self.strays.push(Stray {
            index,
            generation,
            handle,
        });
        // Relaxed: statistics (worker invariant 8 keeps them exact). The
        // stray no longer writes its position's busy flag.
        tally.busy.store(false, Ordering::Relaxed);
        self.shared.counters.alive.fetch_sub(1, Ordering::Relaxed);
        self.shared.counters.strays.fetch_add(1, Ordering::Relaxed);
        let name = Arc::clone(&self.shared.names[index]);
        // While stopping, only to drain a queue no live worker would.
        let replace = !self.stopping
            || (!self.shared.jobs_rx.is_empty() && !self.shared.abort.load(Ordering::Acquire));
        if replace {
            log_quietly!(log::warn!(
                "detached stuck worker {name}; starting a replacement"
            ));
            match worker::spawn(&self.shared, index, None) {
                Ok(handle) => self.workers[index] = Slot::Running(handle),
                Err(error) => {
                    let delay = self.next_backoff();
                    log_quietly!(log::error!(
                        "failed to start a replacement for {name}: {error}; retrying in {delay:?}"
                    ));
                    self.workers[index] = Slot::Waiting(far_after(Instant::now(), delay));
                }
            }
        } else {
            log_quietly!(log::warn!("detached stuck worker {name} during shutdown"));
        }
        true
    }

    /// A detached thread's job returned and it exited: join it, and detach a
    /// held position in its place (invariant 7).
    pub(super) fn on_stray_exit(&mut self, index: usize, generation: u64) {
        if let Some(at) = self
            .strays
            .iter()
            .position(|stray| stray.index == index && stray.generation == generation)
        {
            let stray = self.strays.swap_remove(at);
            // Invariant 1: it finished its drop guard, so this is prompt.
            if let Err(payload) = stray.handle.join() {
                unwind::dispose(payload);
            }
        }
        // A held thread whose job returned meanwhile is a worker again:
        // skip it.
        while let Some((index, jobs)) = self.held.pop_front() {
            if self.detach(index, &jobs) {
                break;
            }
        }
    }
}

/// Runs once `abandon` has listed a thread's jobs (tests widen that
/// window to start a job inline there).
#[cfg(test)]
pub(crate) static AFTER_LISTING: crate::sync::Hooks = crate::sync::Hooks::new();
