//! `Pool::join` cannot be starved: every thread waiting when the pool goes
//! idle returns, even if new work arrives before it wakes.

mod common;

use std::sync::Arc;
use std::sync::mpsc;

use common::PATIENCE;
use harbor_pool::{CancelOutcome, Pool};

/// Joiners per wave.
const JOINERS: usize = 6;
/// Waves, as in threadpool's test: each wave's joiners are released by one
/// idle instant, and their new work must not hold back any of them.
const WAVES: usize = 3;

/// Ported from the `threadpool` crate's `test_join_wavesurfer`: several
/// threads join a busy pool; when it goes idle, each one that returns
/// submits new work at once. With a join that re-checks the counters one
/// waiter at a time, the first to wake submits before the others re-check,
/// and they go back to sleep behind its work (on a service that never stops
/// receiving work, forever). Every joiner of the wave must return `true`
/// while that new work is still held.
///
/// threadpool orders its waves with a clock thread and sleeps; here each
/// joiner is known to be blocked in `join` before the pool is released (see
/// `blocked`), and the new work is held by channels until the wave is over,
/// so the outcome does not depend on timing.
#[test]
#[cfg(target_os = "linux")] // `blocked` reads /proc
fn join_wavesurfer_every_waiter_of_an_idle_instant_returns() {
    let pool = Arc::new(Pool::builder().workers(1).build().unwrap());
    for wave in 0..WAVES {
        let release = common::block_worker(&pool);
        let (joined_tx, joined_rx) = mpsc::channel();
        for i in 0..JOINERS {
            let name = format!("surfer-{wave}-{i}");
            let (ready_tx, ready_rx) = mpsc::channel();
            let pool = Arc::clone(&pool);
            let joined_tx = joined_tx.clone();
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    ready_tx.send(()).unwrap();
                    // Longer than the test waits, so a starved join shows as
                    // a join that does not return in time.
                    let idle = pool.join_timeout(3 * PATIENCE);
                    // New work at once, held until the wave is over.
                    let (hold_tx, hold_rx) = mpsc::channel::<()>();
                    let submitted = pool.execute(move || {
                        let _ = hold_rx.recv_timeout(PATIENCE);
                    });
                    let _ = joined_tx.send((i, idle, submitted.is_ok(), hold_tx));
                })
                .unwrap();
            ready_rx.recv_timeout(PATIENCE).unwrap();
            // One joiner at a time, so the gate's lock is free and a blocked
            // joiner is one asleep in `join`, not one queued on that lock.
            assert!(
                common::eventually(|| blocked(&name)),
                "joiner {name} never blocked in join"
            );
        }
        drop(release);
        let mut holds = Vec::new();
        for _ in 0..JOINERS {
            match joined_rx.recv_timeout(PATIENCE) {
                Ok((i, idle, submitted, hold)) => {
                    assert!(idle, "wave {wave}: joiner {i} saw no idle pool");
                    assert!(submitted, "wave {wave}: joiner {i} could not submit");
                    holds.push(hold);
                }
                Err(_) => panic!(
                    "wave {wave}: {} of {JOINERS} joiners returned; the others were \
                     starved by the work submitted after the pool went idle",
                    holds.len()
                ),
            }
        }
        // Release the new work: the pool goes idle for the next wave.
        drop(holds);
        common::join(&pool);
    }
    assert_eq!(pool.stats().completed, (WAVES * (JOINERS + 1)) as u64);
}

/// A join waiting while the queue holds only entries of jobs that already
/// ended (cancelled while queued) returns once the running job ends. The
/// job's finisher sees the queue non-empty and skips summing the counters;
/// the worker that then takes those entries off (and skips them) must check
/// again, or the join sleeps through the idle pool (idle invariant 6).
#[test]
#[cfg(target_os = "linux")] // `blocked` reads /proc
fn a_join_behind_entries_of_cancelled_jobs_returns() {
    let pool = Arc::new(Pool::builder().workers(1).build().unwrap());
    for round in 0..10 {
        let release = common::block_worker(&pool);
        for _ in 0..5 {
            let handle = pool.submit(|_| Ok(())).unwrap();
            assert_eq!(handle.cancel(), CancelOutcome::Cancelled);
        }
        let name = format!("stale-joiner-{round}");
        let (joined_tx, joined_rx) = mpsc::channel();
        let joiner = {
            let pool = Arc::clone(&pool);
            std::thread::Builder::new()
                .name(name.clone())
                // Its own timeout ends with a look at the counters, which
                // would hide the lost wake-up: longer than the wait below.
                .spawn(move || joined_tx.send(pool.join_timeout(PATIENCE * 3)).unwrap())
                .unwrap()
        };
        // Asleep in `join` before the blocker ends, so the blocker's finish
        // is the one that sees the joiner.
        assert!(common::eventually(|| blocked(&name)));
        release.send(()).unwrap();
        assert_eq!(
            joined_rx.recv_timeout(PATIENCE),
            Ok(true),
            "round {round}: the join slept through the idle pool"
        );
        joiner.join().unwrap();
    }
    assert_eq!(pool.stats().cancelled, 50);
}

/// Whether this process's thread named `name` is asleep (state `S` in
/// `/proc/self/task/*/stat`).
#[cfg(target_os = "linux")]
fn blocked(name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    tasks.flatten().any(|task| {
        let path = task.path();
        let named =
            std::fs::read_to_string(path.join("comm")).is_ok_and(|comm| comm.trim_end() == name);
        // The state is the field after the parenthesised command name.
        named
            && std::fs::read_to_string(path.join("stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
            })
    })
}

/// `join` returns once the pool has been idle: its stats say so too. A
/// worker used to clear its busy flag only after counting its tracked job,
/// so a `join` woken by that count could read `busy: 1`.
#[test]
fn after_join_no_worker_is_busy() {
    let pool = Pool::new(2).unwrap();
    for round in 0..2_000 {
        let handles: Vec<_> = (0..2).map(|_| pool.submit(|_| Ok(())).unwrap()).collect();
        assert!(pool.join_timeout(common::PATIENCE), "round {round}");
        let stats = pool.stats();
        assert_eq!(
            (stats.busy, stats.queued),
            (0, 0),
            "round {round}: {stats:?}"
        );
        for handle in handles {
            handle.join().unwrap();
        }
    }
}
