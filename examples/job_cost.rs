//! The cost of one job, phase by phase, for counting instructions under
//! valgrind (exact and repeatable on a noisy machine, unlike wall time).
//!
//! ```text
//! cargo build --release --example job_cost
//! valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/job_cost untracked 20000 on
//! ```
//!
//! Arguments: the kind of job (`floor`, `untracked`, `tracked`, `tracked-progress`),
//! how many jobs (N), and whether latency metrics are `on` or `off`.
//!
//! One worker, blocked by a first job until every job is queued: the
//! submitting thread (the main thread) pays the submissions, the worker the
//! runs, and neither spins waiting for the other. The main thread waits for
//! a last job's signal, not in `Pool::join` (a waiting joiner adds its own
//! cost to every finish), then joins the handles (tracked). Each job clones an `Arc`
//! and bumps a counter, the job of issue 11. The per-job cost of a thread is
//! (its instructions for N jobs - for 0 jobs) / N; `scripts/job_cost.sh` does
//! the subtraction.
//!
//! Natively (not under valgrind) it also prints the CPU time per job of
//! each phase, from `/proc/thread-self/schedstat` (nanoseconds on the CPU,
//! Linux only): `submit` on the submitting thread, `drain` on the worker,
//! measured inside the first and last jobs. A clock read is one instruction
//! to callgrind but 10 to 40 ns here, so both figures are needed.
//!
//! `floor` is the design's floor: a bare crossbeam channel of boxed closures
//! and a worker running each under `catch_unwind`, nothing else.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use harbor_pool::Pool;

const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map_or("untracked", String::as_str);
    let jobs: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let metrics = args.get(3).is_none_or(|on| on != "off");
    let counter = Arc::new(AtomicUsize::new(0));
    let (submit, drain) = match kind {
        "floor" => floor(jobs, &counter),
        "untracked" | "tracked" | "tracked-progress" => harbor(kind, jobs, metrics, &counter),
        other => panic!("unknown kind {other}: floor, untracked, tracked, tracked-progress"),
    };
    assert_eq!(counter.load(Ordering::SeqCst), jobs);
    if jobs > 0 {
        let per_job = |nanos: u64| nanos as f64 / jobs as f64;
        println!(
            "{kind} metrics={} cpu ns/job: submit {:.1} drain {:.1}",
            if metrics { "on" } else { "off" },
            per_job(submit),
            per_job(drain)
        );
    }
}

/// Nanoseconds this thread has spent on a CPU (0 where unavailable).
fn thread_cpu() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs the phases; returns the CPU nanoseconds of the submitting thread in
/// the submit phase and of the worker in the drain phase.
fn floor(jobs: usize, counter: &Arc<AtomicUsize>) -> (u64, u64) {
    type Job = Box<dyn FnOnce() + Send>;
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        release_rx.recv_timeout(TIMEOUT).unwrap();
        let start = thread_cpu();
        while let Ok(job) = rx.recv() {
            let _ = catch_unwind(AssertUnwindSafe(job));
        }
        thread_cpu() - start
    });
    let start = thread_cpu();
    for _ in 0..jobs {
        let counter = Arc::clone(counter);
        tx.send(Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }))
        .unwrap();
    }
    let submit = thread_cpu() - start;
    release_tx.send(()).unwrap();
    drop(tx);
    (submit, worker.join().unwrap())
}

fn harbor(kind: &str, jobs: usize, metrics: bool, counter: &Arc<AtomicUsize>) -> (u64, u64) {
    // Built on a thread of its own: the clock's calibration (with metrics
    // on) takes a varying number of instructions, which must not land on
    // the submitting thread's count.
    let pool = thread::spawn(move || {
        Pool::builder()
            .workers(1)
            .latency_metrics(metrics)
            .build()
            .unwrap()
    })
    .join()
    .unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<u64>();
    pool.execute(move || {
        release_rx.recv_timeout(TIMEOUT).unwrap();
        started_tx.send(thread_cpu()).unwrap();
    })
    .unwrap();
    let start = thread_cpu();
    let progress = kind == "tracked-progress";
    let mut handles = Vec::with_capacity(if kind == "untracked" { 0 } else { jobs });
    for _ in 0..jobs {
        let counter = Arc::clone(counter);
        if kind == "untracked" {
            pool.execute(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        } else {
            handles.push(
                pool.submit(move |token| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    if progress {
                        token.set_progress(1, Some(1));
                    }
                    Ok(())
                })
                .unwrap(),
            );
        }
    }
    // One worker runs jobs in order: this one ends the drain. Waiting for it
    // rather than in `Pool::join` keeps a joiner out of the measured phase
    // (a waiting joiner makes every finish look at the counters).
    let submit = thread_cpu() - start;
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    pool.execute(move || done_tx.send(thread_cpu()).unwrap())
        .unwrap();
    release_tx.send(()).unwrap();
    let drain_start = started_rx.recv_timeout(TIMEOUT).unwrap();
    let drain = done_rx.recv_timeout(TIMEOUT).unwrap() - drain_start;
    for handle in handles {
        handle.join().unwrap();
    }
    assert!(pool.join_timeout(TIMEOUT));
    (submit, drain)
}
