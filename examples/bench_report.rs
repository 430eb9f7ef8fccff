//! The figures of issue 4 that criterion does not fit: submit-to-start
//! latency on an idle pool, and peak memory under retention.
//!
//! ```text
//! cargo run --release --example bench_report
//! ```
//!
//! * Memory: one harbor pool with `retain_finished(10_000)` (and a bounded
//!   queue of 1,024, so the backlog of *pending* jobs stays bounded too)
//!   runs 1,000,000 tracked jobs, their handles dropped at once. Peak
//!   resident memory (`VmHWM` in `/proc/self/status`) is read after 100,000,
//!   500,000 and 1,000,000 jobs; flat means retention bounds the registry.
//!   Measured first, before anything else in the process allocates much.
//! * Latency: for each pool sized to the machine's cores, `SAMPLES` times:
//!   note the time, hand the pool one job that notes the time it starts,
//!   and take the difference. Between samples the process pauses 1 ms so
//!   the pool's threads go back to sleep: the figure is for an *idle* pool
//!   (a wake-up included), which is what a lightly loaded server sees.
//!
//! The crate's benchmarks (`cargo bench`) cover throughput.

use std::collections::VecDeque;
use std::fs;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use harbor_pool::Pool;
use harbor_pool::compat::{NaiveThreadPool, ThreadPool as _};

const SAMPLES: usize = 2_000;
const RETAIN: usize = 10_000;
const MEMORY_CHECKPOINTS: [usize; 3] = [100_000, 500_000, 1_000_000];
const TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let cores = thread::available_parallelism().map_or(1, usize::from);
    println!("harbor-pool bench report ({cores} cores)\n");
    memory(cores);
    println!();
    latency(cores);
}

/// A field of `/proc/self/status` in KiB (Linux only).
fn status_kib(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |kib| format!("{:.1}", kib as f64 / 1024.0),
    )
}

fn memory(cores: usize) {
    // The ids of the latest jobs, to count the records the pool still
    // knows; allocated before the first reading.
    let mut recent = VecDeque::with_capacity(2 * RETAIN);
    println!("## Peak memory, tracked jobs, retain_finished({RETAIN})\n");
    println!("| tracked jobs run | VmHWM (MiB) | VmRSS (MiB) | records still known | seconds |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| 0 (before the pool) | {} | {} | 0 | 0.0 |",
        mib(status_kib("VmHWM:")),
        mib(status_kib("VmRSS:"))
    );
    let pool = Pool::builder()
        .workers(cores)
        .retain_finished(RETAIN)
        .queue_capacity(1_024)
        .build()
        .expect("a pool");
    let start = Instant::now();
    let mut done = 0;
    for checkpoint in MEMORY_CHECKPOINTS {
        while done < checkpoint {
            // The handle is dropped at once: the job is detached.
            let id = pool.submit(|_| Ok(())).expect("accepted").id();
            if recent.len() == 2 * RETAIN {
                recent.pop_front();
            }
            recent.push_back(id);
            done += 1;
        }
        pool.join();
        // Of the latest 2 * RETAIN jobs, the pool should know RETAIN.
        let known = recent
            .iter()
            .filter(|id| pool.status(**id).is_some())
            .count();
        println!(
            "| {checkpoint} | {} | {} | {known} | {:.1} |",
            mib(status_kib("VmHWM:")),
            mib(status_kib("VmRSS:")),
            start.elapsed().as_secs_f64()
        );
    }
    assert_eq!(pool.stats().completed, done as u64);
}

/// Hands one job to a pool, as each contender does it.
trait Contender {
    fn run(&self, job: impl FnOnce() + Send + 'static);
}

struct HarborExecute(Pool);
struct HarborSubmit(Pool);
struct Threadpool(threadpool::ThreadPool);
struct Rayon(rayon::ThreadPool);
struct Naive(NaiveThreadPool);

impl Contender for HarborExecute {
    fn run(&self, job: impl FnOnce() + Send + 'static) {
        self.0.execute(job).expect("accepted");
    }
}

impl Contender for HarborSubmit {
    fn run(&self, job: impl FnOnce() + Send + 'static) {
        // The handle is dropped: only submit-to-start is measured.
        self.0
            .submit(move |_| {
                job();
                Ok(())
            })
            .expect("accepted");
    }
}

impl Contender for Threadpool {
    fn run(&self, job: impl FnOnce() + Send + 'static) {
        self.0.execute(job);
    }
}

impl Contender for Rayon {
    fn run(&self, job: impl FnOnce() + Send + 'static) {
        self.0.spawn(job);
    }
}

impl Contender for Naive {
    fn run(&self, job: impl FnOnce() + Send + 'static) {
        self.0.spawn(job);
    }
}

/// Submit-to-start times of `SAMPLES` jobs on an idle pool, sorted.
fn sample(pool: &impl Contender) -> Vec<Duration> {
    let (tx, rx) = mpsc::channel();
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        // Not synchronisation: lets the pool's threads fall asleep, so each
        // sample measures an idle pool.
        thread::sleep(Duration::from_millis(1));
        let tx = tx.clone();
        let submitted = Instant::now();
        pool.run(move || {
            let _ = tx.send(Instant::now());
        });
        let started = rx.recv_timeout(TIMEOUT).expect("the job ran");
        samples.push(started.saturating_duration_since(submitted));
    }
    samples.sort_unstable();
    samples
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn latency(cores: usize) {
    println!("## Submit-to-start latency on an idle pool ({SAMPLES} samples each)\n");
    println!("| pool | median (us) | p99 (us) | max (us) |");
    println!("|---|---:|---:|---:|");
    let report = |name: &str, samples: Vec<Duration>| {
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            micros(at(0.5)),
            micros(at(0.99)),
            micros(at(1.0))
        );
    };
    report(
        "harbor_execute",
        sample(&HarborExecute(Pool::new(cores).expect("a pool"))),
    );
    report(
        "harbor_submit",
        sample(&HarborSubmit(Pool::new(cores).expect("a pool"))),
    );
    report(
        "threadpool",
        sample(&Threadpool(threadpool::ThreadPool::new(cores))),
    );
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .build()
        .expect("a rayon pool");
    report("rayon", sample(&Rayon(rayon)));
    report(
        "naive",
        sample(&Naive(NaiveThreadPool::new(1).expect("a pool"))),
    );
}
