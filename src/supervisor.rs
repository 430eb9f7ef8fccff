//! The supervisor thread: owns the workers' `JoinHandle`s, joins and
//! respawns dead workers under a restart limit with backoff, fires job
//! deadlines, and carries out the shutdown protocol.
//!
//! See `docs/design.md` for the restart policy and shutdown protocol.
//!
//! Where it lives: this file holds what the rest of the pool uses
//! ([`Event`] and [`start`]), the supervisor thread's start-up and final
//! stop, and the supervisor's state. Each child adds an `impl Supervisor`
//! block: `supervisor/run.rs` the loop, its event handling (the `Shutdown`
//! and `Abort` events among them) and its survival of its own panics;
//! `supervisor/restart.rs` the restart policy and backoff;
//! `supervisor/abandon.rs` abandonment and detached threads;
//! `supervisor/shutdown.rs` the last steps of a pool's end (cancelling what
//! no worker is left to run, giving up after [`MAX_FAULTS`] panics). The
//! invariants below span them all, so they stay here; the children refer to
//! them by number.
//!
//! Invariants:
//!
//! 1. The supervisor learns of every worker exit through [`Event::Exited`],
//!    sent by the worker's drop guard, so it blocks on its event channel
//!    instead of polling handles. It always joins the exited thread.
//! 2. A dead worker is replaced under the same index and name: at once while
//!    at most `restart_limit` respawns happened within the window, later with
//!    a delay that doubles up to the backoff cap. The supervisor never spins:
//!    it sleeps on its channel until the next event, deadline or due respawn.
//! 3. Once shutdown has begun, a worker that exits is not replaced, unless it
//!    died while jobs remain queued and no restart storm is under way. When
//!    the last worker is gone, anything still queued is cancelled (never
//!    silently dropped), and only then is the pool marked done.
//! 4. User code that reaches this thread (a dead thread's panic payload, a
//!    queued closure dropped once no worker is left) is dropped under
//!    `catch_unwind`. The timer path runs none (timer invariant 1), and
//!    neither does `shutdown_now`'s sweep of the queued jobs, which marks
//!    them `Cancelled` through the registry and leaves their closures to
//!    the workers draining the queue.
//! 5. Every instant is computed without overflow (`far_after`): a backoff
//!    of `Duration::MAX` means "not in this process's lifetime", not a
//!    panic.
//! 6. A panic in the supervisor itself (a bug) is caught; the supervisor
//!    puts any worker slot left empty back on the respawn schedule and
//!    resumes. After [`MAX_FAULTS`] such panics it stops the pool as
//!    `shutdown_now` would and waits for every worker before the pool is
//!    marked done: "done" never means "some thread of the pool may still
//!    run". (Detached threads, invariant 7, are the one documented
//!    exception: giving up detaches held positions and abandons jobs past
//!    their grace as `shutdown_now` does; if that fails too, it joins
//!    every thread still running.)
//! 7. Abandonment: when the pool cancels a running job's token and the job
//!    has a grace, the supervisor is told ([`Event::Interrupted`]); if the
//!    job is still running when the grace ends, it and every other job
//!    running on that worker's thread end `Abandoned`, and the thread is
//!    detached (worker invariant 8) and replaced under the same index and
//!    name, so capacity is restored. At most `max_stray_threads` detached
//!    threads are kept; past that a stuck position is *held* (not replaced)
//!    until a detached thread exits. Shutdown detaches held positions and
//!    never waits for a detached thread.
//! 8. The observer thread, if the pool has an observer, starts before any
//!    worker and is stopped after every worker was joined and the queue
//!    emptied, so every job's final state is noted before it drains for
//!    the last time. Stopping it waits at most `observer_shutdown_timeout`
//!    for the pool to be idle (cancellers on other threads note first),
//!    then as long again for the observer (observer invariant 6), then
//!    "done" follows.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::error::BuildError;
use crate::job::Tracked;
use crate::observer;
use crate::shared::{Mode, Shared};
use crate::timer::Deadlines;
use crate::worker;

mod abandon;
mod restart;
mod run;
mod shutdown;

use abandon::Stray;

/// How many panics of its own the supervisor survives (invariant 6).
pub(crate) const MAX_FAULTS: u32 = 3;

/// What the supervisor is told.
pub(crate) enum Event {
    /// A worker thread ended; `died` if it was unwinding. `generation` is
    /// its position's generation when it started: an older one than the
    /// position's now means a detached (stray) thread.
    Exited {
        index: usize,
        generation: u64,
        died: bool,
    },
    /// The pool cancelled a running job's token; abandon it at this instant
    /// if it has not returned (invariant 7).
    Interrupted(Instant, Weak<dyn Tracked>),
    /// A job with a deadline was queued.
    Deadline(Instant, Weak<dyn Tracked>),
    /// Enough jobs with deadlines ended: sweep the heap (timer invariant 2).
    Compact,
    /// Intake is closed and workers were told to stop.
    Shutdown,
    /// `shutdown_now`: cancel whatever is queued.
    Abort,
    /// Test seam: report the number of pending deadlines.
    #[cfg(test)]
    Probe(Sender<usize>),
    /// Test seam: panic inside the supervisor's loop, as a bug would.
    #[cfg(test)]
    Fault,
}

/// Starts the supervisor, which starts the workers. Returns once every worker
/// has started and finished its start hook (returned or panicked), or after
/// cleaning up if one could not start.
pub(crate) fn start(
    shared: Arc<Shared>,
    events: Receiver<Event>,
) -> Result<JoinHandle<()>, BuildError> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let name = shared.supervisor_name.clone();
    let thread = thread::Builder::new()
        .name(name.clone())
        .spawn(move || supervise(shared, events, ready_tx))
        .map_err(|source| BuildError::Spawn { name, source })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let name = thread.thread().name().unwrap_or_default().to_owned();
            let _ = thread.join();
            Err(BuildError::Spawn {
                name,
                source: io::Error::other("the supervisor failed while starting workers"),
            })
        }
    }
}

fn supervise(shared: Arc<Shared>, events: Receiver<Event>, ready: Sender<Result<(), BuildError>>) {
    // The supervisor drops user closures (cancelled and expired jobs); one
    // may hold the pool's last `Arc`, and the pool's `Drop` must then not
    // wait for this very thread.
    worker::mark_own_thread(shared.id, None);
    // Whatever happens below (even a panicking logger), waiters on `done`
    // are released.
    let done = DoneGuard(Arc::clone(&shared));
    let mut supervisor = Supervisor {
        workers: Vec::with_capacity(shared.config.workers),
        shared,
        events,
        recent_restarts: VecDeque::new(),
        backoff: None,
        deadlines: Deadlines::default(),
        graces: Deadlines::default(),
        strays: Vec::new(),
        held: VecDeque::new(),
        stopping: false,
    };
    let mut failure = None;
    // Before any worker, so no transition happens without it (invariant 8).
    let observer = observer::start(&supervisor.shared).unwrap_or_else(|error| {
        failure = Some(error);
        None
    });
    let workers = if failure.is_some() {
        0
    } else {
        supervisor.shared.config.workers
    };
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    for index in 0..workers {
        match worker::spawn(&supervisor.shared, index, Some(started_tx.clone())) {
            Ok(handle) => supervisor.workers.push(Slot::Running(handle)),
            Err(source) => {
                failure = Some(BuildError::Spawn {
                    name: supervisor.shared.names[index].to_string(),
                    source,
                });
                break;
            }
        }
    }
    drop(started_tx);
    if failure.is_some() {
        // Stop the workers that did start; `run` joins them.
        supervisor.shared.begin_shutdown(Mode::Graceful);
    } else {
        // Worker invariant 5: each worker reports once its start hook is
        // over (its drop guard reports for it if the hook panicked). Bounded
        // by the hooks themselves; a worker that reported respawns later,
        // in `run`, so a storm is never waited for.
        for _ in 0..supervisor.workers.len() {
            if started_rx.recv().is_err() {
                break;
            }
        }
        log_quietly!(log::info!(
            "pool {} started with {} workers",
            supervisor.shared.config.thread_name,
            supervisor.workers.len()
        ));
        let _ = ready.send(Ok(()));
    }
    drop(started_rx);
    let shared = Arc::clone(&supervisor.shared);
    supervisor.run_resilient();
    drop(supervisor);
    // Every worker was joined and nothing is left queued: the observer's
    // final drain delivers every job's last state (invariant 8).
    if let Some(observer) = observer {
        observer.stop(&shared);
    }
    // The last log line comes before "done": a slow logger must not keep a
    // thread running after the pool said it was done (and make a
    // `shutdown_timeout` caller wait past its timeout to join it).
    if failure.is_none() {
        log_quietly!(log::info!("pool {} stopped", shared.config.thread_name));
    }
    drop(done);
    if let Some(error) = failure {
        let _ = ready.send(Err(error));
    }
}

/// Calls `Shared::mark_done` when dropped.
struct DoneGuard(Arc<Shared>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.mark_done();
    }
}

/// One worker position.
enum Slot {
    Running(JoinHandle<()>),
    /// Dead; to be respawned at this instant.
    Waiting(Instant),
    /// Stopped for good (shutdown).
    Gone,
}

struct Supervisor {
    shared: Arc<Shared>,
    events: Receiver<Event>,
    workers: Vec<Slot>,
    /// Respawn times within the restart window, oldest first.
    recent_restarts: VecDeque<Instant>,
    /// The last delay used in the current storm; `None` when calm.
    backoff: Option<Duration>,
    deadlines: Deadlines,
    /// When running jobs whose tokens the pool cancelled are due to be
    /// abandoned (invariant 7).
    graces: Deadlines,
    /// Detached threads, each stuck in an abandoned job.
    strays: Vec<Stray>,
    /// Positions whose thread is stuck in an abandoned job but could not be
    /// detached (the stray cap), with the jobs it was running.
    held: VecDeque<(usize, Vec<Arc<dyn Tracked>>)>,
    stopping: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::Event;
    use crate::job::{Message, test_cell};
    use crate::sync::{PATIENCE, eventually};
    use crate::tests::{held, running_held_job};
    use crate::{JobOptions, JobStatus, Pool};

    /// The number of deadlines the supervisor holds, or `None` if it does
    /// not answer (it is gone).
    fn deadlines(pool: &Pool) -> Option<usize> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        pool.shared.events.send(Event::Probe(tx)).ok()?;
        rx.recv_timeout(PATIENCE).ok()
    }

    /// Kills worker threads of `pool` as a bug would: `count` poisoned jobs.
    fn kill_workers(pool: &Pool, count: usize) {
        for _ in 0..count {
            let (cell, handle) = test_cell(|_| Ok(()), &pool.shared);
            pool.shared.accept(Message::Poison(cell), true).unwrap();
            assert!(handle.wait(PATIENCE).is_some());
        }
    }

    #[test]
    fn deadlines_of_finished_jobs_do_not_pile_up() {
        // Bounded queue: the submitter cannot run far ahead of the workers,
        // so few jobs are live at any time (and compaction is measured
        // against the live ones).
        let pool = Pool::builder()
            .workers(2)
            .queue_capacity(64)
            .build()
            .unwrap();
        let options = JobOptions::new().timeout(Duration::from_secs(3600));
        for _ in 0..5_000 {
            pool.submit_with(options, |_| Ok(())).unwrap();
        }
        assert!(pool.join_timeout(PATIENCE));
        // The supervisor swept finished jobs' deadlines as they piled up.
        // Fewer than a compaction's worth may stay stale (timer invariant
        // 2), plus what was live at the last sweep; a loaded supervisor that
        // pushed entries late adds to that, so the bound is loose: without
        // any sweep all 5,000 would stay.
        let len = deadlines(&pool).unwrap();
        assert!(len < 4 * crate::timer::MIN_COMPACT, "{len}");
    }

    #[test]
    fn deadlines_of_a_finished_burst_are_swept_without_new_pushes() {
        // Every deadline is pushed while the jobs pile up behind a blocked
        // worker; none is pushed after they finish. The entries must still
        // go (each pins its job's allocation) once the jobs end.
        let pool = Pool::builder().workers(1).build().unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        pool.execute(move || {
            let _ = release_rx.recv_timeout(PATIENCE);
        })
        .unwrap();
        let options = JobOptions::new().timeout(Duration::from_secs(3600));
        let jobs = 20_000;
        for _ in 0..jobs {
            pool.submit_with(options, |_| Ok(())).unwrap();
        }
        assert!(eventually(|| deadlines(&pool) == Some(jobs)));
        drop(release_tx);
        assert!(pool.join_timeout(PATIENCE));
        assert!(
            eventually(|| deadlines(&pool).unwrap() <= crate::timer::MIN_COMPACT),
            "{:?}",
            deadlines(&pool)
        );
    }

    #[test]
    fn a_backoff_too_large_for_an_instant_does_not_kill_the_supervisor() {
        // No free restart and a backoff of "forever": the first death is a
        // storm whose respawn is due beyond any `Instant`. (`build` refuses
        // such a backoff; the supervisor must survive it anyway.)
        let pool = Pool::builder()
            .workers(1)
            .thread_name("sup-max")
            .restart_limit(0, Duration::from_secs(60))
            .restart_backoff(Duration::MAX, Duration::MAX)
            .build_unchecked()
            .unwrap();
        kill_workers(&pool, 1);
        let queued = pool.submit(|_| Ok(())).unwrap();
        // The supervisor is alive and still holds the respawn back.
        assert_eq!(deadlines(&pool), Some(0));
        assert_eq!(pool.stats().restarts, 0);
        assert_eq!(queued.status(), JobStatus::Pending);
        // Shutdown abandons the held-back respawn and cancels what no worker
        // is left to run; nothing is left pending, no thread behind.
        pool.shutdown();
        assert_eq!(queued.wait(PATIENCE), Some(JobStatus::Cancelled));
        assert!(threads_gone("sup-max"));
    }

    #[test]
    fn the_supervisor_survives_a_panic_of_its_own() {
        let pool = Pool::builder()
            .workers(2)
            .thread_name("sup-fault")
            .build()
            .unwrap();
        pool.shared.events.send(Event::Fault).unwrap();
        // Still answering, still respawning, still serving.
        assert_eq!(deadlines(&pool), Some(0));
        kill_workers(&pool, 1);
        assert!(eventually(|| {
            let stats = pool.stats();
            stats.restarts == 1 && stats.alive == 2
        }));
        assert_eq!(pool.submit(|_| Ok(7)).unwrap().join().unwrap(), 7);
        assert!(!pool.is_shutdown());
    }

    #[test]
    fn a_supervisor_that_keeps_failing_stops_the_pool_and_joins_every_thread() {
        let pool = Pool::builder()
            .workers(1)
            .thread_name("sup-gone")
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let running = pool
            .submit(move |token| {
                started_tx.send(()).unwrap();
                token.sleep(PATIENCE)?;
                Ok(())
            })
            .unwrap();
        started_rx.recv_timeout(PATIENCE).unwrap();
        let queued = pool.submit(|_| Ok(())).unwrap();
        fail_supervisor(&pool);
        // The failure is impossible to miss: the pool is shut down, the
        // running job's token cancelled, the queued job cancelled...
        assert_eq!(running.wait(PATIENCE), Some(JobStatus::Cancelled));
        assert_eq!(queued.wait(PATIENCE), Some(JobStatus::Cancelled));
        assert!(pool.is_shutdown());
        // ...and "done" came only after every thread was joined.
        assert!(
            pool.shared
                .wait_done(Some(std::time::Instant::now() + PATIENCE))
        );
        assert_eq!(pool.stats().alive, 0);
        pool.shutdown();
        assert!(threads_gone("sup-gone"));
    }

    /// Whether every thread named with `prefix` ends (bounded).
    fn threads_gone(prefix: &str) -> bool {
        eventually(|| {
            crate::tests::thread_names()
                .iter()
                .all(|name| !name.starts_with(prefix))
        })
    }

    /// Whether `pool` is marked done well within a held job's wait
    /// (PATIENCE): giving up did not wait for that job.
    fn done_soon(pool: &Pool) -> bool {
        pool.shared
            .wait_done(Some(std::time::Instant::now() + PATIENCE / 2))
    }

    /// Gives `pool`'s supervisor its last fault: it gives up.
    fn fail_supervisor(pool: &Pool) {
        for _ in 0..super::MAX_FAULTS {
            pool.shared.events.send(Event::Fault).unwrap();
        }
    }

    /// A supervisor that gives up treats a job that ignores its cancellation
    /// as any shutdown does (invariants 6 and 7): abandoned after its grace,
    /// its thread detached, and "done" does not wait for it. Before, giving
    /// up joined that thread, so "done" waited for the job (here until the
    /// test released it; a job that never returns, forever).
    #[test]
    fn a_supervisor_that_gives_up_abandons_a_job_that_ignores_its_cancel() {
        let pool = Pool::builder()
            .workers(1)
            .thread_name("gave-up-stuck")
            .abandon_after(Duration::from_millis(20))
            .build()
            .unwrap();
        let (stuck, release) = running_held_job(&pool);
        fail_supervisor(&pool);
        // The held job waits up to PATIENCE: "done" must come well before.
        let done = done_soon(&pool);
        // Read before the job is released: its thread then exits.
        let (status, strays) = (pool.status(stuck.id()), pool.stats().stray_threads);
        release.send(()).unwrap();
        assert!(done, "giving up waited for a job that ignores its cancel");
        assert_eq!(status, Some(JobStatus::Abandoned));
        assert_eq!(strays, 1);
        pool.shutdown();
        // The detached thread exits once its job returns.
        assert!(threads_gone("gave-up-stuck"));
    }

    /// The same for a position held at the stray cap (its job abandoned,
    /// its thread kept in place): giving up detaches it, as any shutdown
    /// does, instead of joining it.
    #[test]
    fn a_supervisor_that_gives_up_detaches_a_held_position() {
        let pool = Pool::builder()
            .workers(1)
            .thread_name("gave-up-held")
            .abandon_after(Duration::from_millis(1))
            .max_stray_threads(0)
            .build()
            .unwrap();
        let (stuck, release) = running_held_job(&pool);
        assert!(matches!(stuck.cancel(), crate::CancelOutcome::Requested));
        // Abandoned, but held: no stray thread allowed.
        assert_eq!(stuck.wait(PATIENCE), Some(JobStatus::Abandoned));
        assert_eq!(pool.stats().stray_threads, 0);
        fail_supervisor(&pool);
        let done = done_soon(&pool);
        release.send(()).unwrap();
        assert!(done, "giving up joined a held position's thread");
        pool.shutdown();
        assert!(threads_gone("gave-up-held"));
    }

    /// A supervisor whose last failure took a worker's `Exited` event off
    /// its channel before handling it still finds that thread finished
    /// while giving up. Without the direct check it waited for the lost
    /// event, and the pool was never marked done.
    #[test]
    fn a_supervisor_that_gives_up_joins_a_thread_whose_exit_it_lost() {
        let pool = Pool::builder()
            .workers(1)
            .thread_name("gave-up-lost")
            .restart_limit(0, Duration::from_secs(60))
            .build()
            .unwrap();
        for _ in 1..super::MAX_FAULTS {
            pool.shared.events.send(Event::Fault).unwrap();
        }
        assert_eq!(deadlines(&pool), Some(0), "survived the first faults");
        super::run::BEFORE_EXIT.set(pool.shared.id, || panic!("lost an exit"));
        kill_workers(&pool, 1);
        let done = pool
            .shared
            .wait_done(Some(std::time::Instant::now() + PATIENCE));
        if !done {
            // Dropping the pool would wait for "done" for good.
            std::mem::forget(pool);
            panic!("giving up waited for an exit event it had lost");
        }
        assert_eq!(pool.stats().alive, 0);
        assert!(threads_gone("gave-up-lost"));
    }

    /// Giving up cancels the queued jobs at once, as `shutdown_now` does,
    /// even while a job that ignores its cancellation keeps its worker: it
    /// handles the `Abort` event. Before, a job queued behind the stuck one
    /// stayed `Pending` until the stuck one returned.
    #[test]
    fn a_supervisor_that_gives_up_cancels_the_queued_jobs_at_once() {
        let pool = Pool::builder()
            .workers(1)
            .thread_name("gave-up-queued")
            .build()
            .unwrap();
        let (stuck, release) = running_held_job(&pool);
        let queued = pool.submit(|_| Ok(())).unwrap();
        fail_supervisor(&pool);
        // Bounded well below the stuck job's own PATIENCE.
        let status = queued.wait(PATIENCE / 2);
        release.send(()).unwrap();
        assert_eq!(status, Some(JobStatus::Cancelled));
        assert!(stuck.wait(PATIENCE).is_some());
    }

    /// A stuck job that joins a job of its own pool just after the
    /// supervisor listed its thread's jobs runs it inline, on the thread
    /// about to be detached. That inline job, once its own grace runs out,
    /// is abandoned on the detached thread; it must not detach the
    /// position's replacement, nor end the replacement's job (which was
    /// never cancelled) `Abandoned`.
    #[test]
    fn a_job_a_detached_thread_started_never_detaches_its_replacement() {
        use std::sync::Arc;

        use crate::CancelOutcome;

        let pool = Arc::new(
            Pool::builder()
                .workers(1)
                .abandon_after(Duration::from_millis(20))
                .max_stray_threads(4)
                .build()
                .unwrap(),
        );
        let (go, gone) = mpsc::channel::<()>();
        let (b_running, b_runs) = mpsc::channel::<()>();
        let (release_b, b_released) = mpsc::channel::<()>();
        let (b_id_tx, b_id) = mpsc::channel();
        let (a_running, a_runs) = mpsc::channel::<()>();
        let inner = Arc::clone(&pool);
        // A ignores its cancellation; once let go it joins B, which runs
        // inline on A's thread.
        let a = pool
            .submit(move |_| {
                a_running.send(()).unwrap();
                gone.recv_timeout(PATIENCE).unwrap();
                let b = inner.submit(held(b_running, b_released)).unwrap();
                b_id_tx.send(b.id()).unwrap();
                let _ = b.join();
                Ok(())
            })
            .unwrap();
        a_runs.recv_timeout(PATIENCE).unwrap();
        // Between the listing of A's thread's jobs and the detachment: A
        // starts B inline.
        super::abandon::AFTER_LISTING.set(pool.shared.id, move || {
            go.send(()).unwrap();
            b_runs.recv_timeout(PATIENCE).unwrap();
        });
        assert_eq!(a.cancel(), CancelOutcome::Requested);
        assert!(eventually(|| a.status() == JobStatus::Abandoned));
        let b = b_id.recv_timeout(PATIENCE).unwrap();
        assert_eq!(pool.status(b), Some(JobStatus::Running));
        // The replacement runs C.
        let (c, release_c) = running_held_job(&pool);
        // B, on the detached thread, is cancelled and ignores it too.
        assert_eq!(pool.cancel(b), CancelOutcome::Requested);
        assert!(eventually(|| pool.status(b) == Some(JobStatus::Abandoned)));
        assert_eq!(c.status(), JobStatus::Running, "the replacement's job");
        assert_eq!(pool.stats().stray_threads, 1);
        release_c.send(()).unwrap();
        assert_eq!(c.join().ok(), Some(()));
        release_b.send(()).unwrap();
        assert!(eventually(|| pool.stats().stray_threads == 0));
    }

    /// A thread detached between claiming a job and starting to run it
    /// (its grace ran out there) must not raise the busy flag, which is its
    /// replacement's by then: an idle pool reads `busy: 0` after `join`.
    #[test]
    fn a_stray_never_raises_its_replacements_busy_flag() {
        let pool = Pool::builder()
            .workers(1)
            .abandon_after(Duration::from_millis(1))
            .build()
            .unwrap();
        let (claimed, go_tx) = crate::worker::AFTER_CLAIM.pause(pool.shared.id);
        let a = pool.submit(|_| Ok(())).unwrap();
        claimed.recv_timeout(PATIENCE).unwrap();
        assert_eq!(a.status(), JobStatus::Running);
        assert_eq!(a.cancel(), crate::CancelOutcome::Requested);
        assert!(eventually(|| a.status() == JobStatus::Abandoned));
        assert!(eventually(|| pool.stats().alive == 1));
        go_tx.send(()).unwrap();
        assert!(eventually(|| pool.stats().stray_threads == 0));
        assert!(pool.join_timeout(PATIENCE));
        let stats = pool.stats();
        assert_eq!((stats.busy, stats.alive), (0, 1), "{stats:?}");
    }
}
