//! Issue 11: harbor at the floor of its design, side by side in one run.
//!
//! Every job clones an `Arc` (on the submitting thread, into the closure)
//! and bumps a shared counter; the job that brings the counter to the job
//! count wakes the benchmark thread, which waits on a condition variable
//! (the same for every pool, bounded by a deadline).
//!
//! Groups (criterion; `JOBS` jobs per iteration, throughput declared, so
//! every figure compares time *per job*):
//!
//! * `i11_untracked_1` / `i11_untracked_4`: one and four submitting threads:
//!   * `floor`: a bare crossbeam channel of boxed closures, each run under
//!     `catch_unwind` by one of `cores()` threads: the floor of this design;
//!   * `harbor_execute`: [`Pool::execute`];
//!   * `harbor_execute_metrics_off`: the same without latency histograms
//!     (`Builder::latency_metrics(false)`: no clock read per job);
//!   * `threadpool`: the `threadpool` crate's `execute`.
//! * `i11_tracked`: one submitter, against `harbor_execute` in the same
//!   group: `harbor_submit_join` (submit, keep the handle, join every handle
//!   at the end; default retention of 10,000 records) and
//!   `harbor_submit_join_retained` (the same with `retain_finished` above
//!   the job count: every record kept).
//! * `i11_many_workers`: 16 submitting threads, 2 against 64 workers
//!   (oversubscribed on purpose on this 2-core machine), untracked and
//!   tracked; `..._joiner`: the same with one more thread calling
//!   `Pool::join` during the whole run, once per 1,000 submitted jobs (each
//!   call blocks until the pool is idle, so a joiner is registered for most
//!   of the run).
//! * `i11_features`: one submitter; latency histograms on (the default) or
//!   off (`Builder::latency_metrics(false)`), and tracked jobs that report
//!   progress once (`set_progress`) or not.
//!
//! After criterion, `main` prints the submit-to-start latency of an idle
//! pool (harbor and threadpool, `LATENCY_SAMPLES` samples each, interleaved,
//! 1 ms apart so the workers are parked again): median, p90 and p99.
//!
//! ```text
//! cargo bench --bench floor
//! cargo bench --bench floor -- --latency-only   # just the latency report
//! ```

use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use harbor_pool::Pool;

/// Jobs per iteration.
const JOBS: usize = 100_000;
/// Submitting threads in the many-workers group.
const MANY_SUBMITTERS: usize = 16;
/// Workers in the many-workers group.
const MANY_WORKERS: usize = 64;
/// A lost job fails the run instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Samples of the latency report, per pool.
const LATENCY_SAMPLES: usize = 2_000;

fn cores() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// The counter every job bumps; the job that brings it to `JOBS` wakes the
/// waiting thread (a condition variable, so nothing polls while the pool
/// runs). Reset per iteration.
struct Counter(Arc<CounterState>);

struct CounterState {
    count: AtomicUsize,
    done: Mutex<bool>,
    cond: Condvar,
}

impl Counter {
    fn new() -> Self {
        Counter(Arc::new(CounterState {
            count: AtomicUsize::new(0),
            done: Mutex::new(false),
            cond: Condvar::new(),
        }))
    }

    /// The job: an `Arc` clone moved into the closure, and a bump.
    fn job(&self) -> impl FnOnce() + Send + 'static {
        let state = Arc::clone(&self.0);
        move || {
            if state.count.fetch_add(1, Ordering::AcqRel) + 1 == JOBS {
                *state.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
                state.cond.notify_all();
            }
        }
    }

    /// Waits until `JOBS` jobs ran since the last reset, then resets.
    fn wait(&self) {
        let deadline = Instant::now() + TIMEOUT;
        let mut done = self.0.done.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded by `deadline`; re-checks after every (possibly spurious) wake.
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "jobs lost");
            done = self
                .0
                .cond
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *done = false;
        self.0.count.store(0, Ordering::Release);
    }
}

/// One way to run the job, from any submitting thread.
trait Runner: Sync {
    fn run(&self, counter: &Counter);
    /// Called on each submitting thread after its last `run`.
    fn finish(&self) {}
}

/// The floor: a crossbeam channel, a box per job, `catch_unwind` per job.
struct Floor {
    tx: crossbeam_channel::Sender<Box<dyn FnOnce() + Send>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Floor {
    fn new(workers: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
        let threads = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                })
            })
            .collect();
        Floor { tx, threads }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let (tx, _) = crossbeam_channel::unbounded();
        drop(std::mem::replace(&mut self.tx, tx));
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
    }
}

impl Runner for Floor {
    fn run(&self, counter: &Counter) {
        self.tx.send(Box::new(counter.job())).unwrap();
    }
}

struct Execute(Pool);

impl Runner for Execute {
    fn run(&self, counter: &Counter) {
        self.0.execute(counter.job()).unwrap();
    }
}

struct Threadpool(threadpool::ThreadPool);

impl Runner for Threadpool {
    fn run(&self, counter: &Counter) {
        self.0.execute(counter.job());
    }
}

/// `submit`, keeping the handle; every handle is joined by `finish`.
struct SubmitJoin {
    pool: Pool,
    progress: bool,
}

thread_local! {
    static HANDLES: std::cell::RefCell<Vec<harbor_pool::JobHandle<()>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Runner for SubmitJoin {
    fn run(&self, counter: &Counter) {
        let job = counter.job();
        let progress = self.progress;
        let handle = self
            .pool
            .submit(move |token| {
                job();
                if progress {
                    token.set_progress(1, Some(1));
                }
                Ok(())
            })
            .unwrap();
        HANDLES.with(|handles| handles.borrow_mut().push(handle));
    }

    fn finish(&self) {
        for handle in HANDLES.with(|handles| std::mem::take(&mut *handles.borrow_mut())) {
            handle.join().unwrap();
        }
    }
}

/// A contender that submits tracked jobs to `pool` and joins them.
fn submit_join(pool: Pool, progress: bool) -> Box<dyn Runner> {
    Box::new(SubmitJoin { pool, progress })
}

/// Submitted jobs between two of the joiner's `join` calls.
const JOBS_PER_JOIN: usize = 1_000;

/// Runs `JOBS` jobs from `submitters` threads and waits for all. With a
/// `joiner`, one more thread calls `Pool::join` on it during the run, once
/// per `JOBS_PER_JOIN` submitted jobs: each call blocks until the pool is
/// idle, so a joiner is registered for most of the run and every finish
/// pays the idle check, without the joiner spinning on an idle pool.
fn run_all(runner: &dyn Runner, counter: &Counter, submitters: usize, joiner: Option<&Pool>) {
    let (tick, ticks) = mpsc::channel::<()>();
    thread::scope(|scope| {
        if let Some(pool) = joiner {
            scope.spawn(move || {
                // Ends when every submitter dropped its sender; each join is
                // bounded.
                while ticks.recv().is_ok() {
                    black_box(pool.join_timeout(TIMEOUT));
                }
            });
        }
        let joining = joiner.is_some();
        let submit = move |share: std::iter::StepBy<std::ops::Range<usize>>,
                           tick: mpsc::Sender<()>| {
            for (n, _) in share.enumerate() {
                if joining && n % JOBS_PER_JOIN == 0 {
                    let _ = tick.send(());
                }
                runner.run(counter);
            }
            runner.finish();
        };
        if submitters == 1 {
            submit((0..JOBS).step_by(1), tick);
        } else {
            let submitting: Vec<_> = (0..submitters)
                .map(|s| {
                    let tick = tick.clone();
                    scope.spawn(move || submit((s..JOBS).step_by(submitters), tick))
                })
                .collect();
            drop(tick);
            for thread in submitting {
                thread.join().unwrap();
            }
        }
        counter.wait();
    });
}

fn harbor(workers: usize) -> Pool {
    Pool::new(workers).unwrap()
}

/// A contender: its name and how to build it (one at a time, so only the
/// pool being measured has threads).
type Contender = (&'static str, Box<dyn Fn() -> Box<dyn Runner>>);

fn group(c: &mut Criterion, name: &str, submitters: usize, contenders: Vec<Contender>) {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(JOBS as u64));
    let counter = Counter::new();
    for (label, build) in contenders {
        let runner = build();
        group.bench_function(label, |b| {
            b.iter(|| run_all(&*runner, &counter, submitters, None));
        });
    }
    group.finish();
}

fn untracked(c: &mut Criterion) {
    for (name, submitters) in [("i11_untracked_1", 1), ("i11_untracked_4", 4)] {
        group(
            c,
            name,
            submitters,
            vec![
                ("floor", Box::new(|| Box::new(Floor::new(cores())))),
                (
                    "harbor_execute",
                    Box::new(|| Box::new(Execute(harbor(cores())))),
                ),
                (
                    "harbor_execute_metrics_off",
                    Box::new(|| Box::new(Execute(metrics_off()))),
                ),
                (
                    "threadpool",
                    Box::new(|| Box::new(Threadpool(threadpool::ThreadPool::new(cores())))),
                ),
            ],
        );
    }
}

/// A harbor pool without latency histograms (`Builder::latency_metrics`).
fn metrics_off() -> Pool {
    Pool::builder()
        .workers(cores())
        .latency_metrics(false)
        .build()
        .unwrap()
}

fn tracked(c: &mut Criterion) {
    group(
        c,
        "i11_tracked",
        1,
        vec![
            (
                "harbor_execute",
                Box::new(|| Box::new(Execute(harbor(cores())))),
            ),
            (
                "harbor_submit_join",
                Box::new(|| submit_join(harbor(cores()), false)),
            ),
            (
                "harbor_submit_join_retained",
                Box::new(|| {
                    let pool = Pool::builder()
                        .workers(cores())
                        .retain_finished(2 * JOBS)
                        .build()
                        .unwrap();
                    submit_join(pool, false)
                }),
            ),
        ],
    );
}

fn many_workers(c: &mut Criterion) {
    let mut group = c.benchmark_group("i11_many_workers");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(JOBS as u64));
    let counter = Counter::new();
    for workers in [cores(), MANY_WORKERS] {
        for joiner in [false, true] {
            let suffix = if joiner { "_joiner" } else { "" };
            let pool = harbor(workers);
            let execute = Execute(pool);
            group.bench_function(format!("execute_{workers}w{suffix}"), |b| {
                b.iter(|| {
                    run_all(
                        &execute,
                        &counter,
                        MANY_SUBMITTERS,
                        joiner.then_some(&execute.0),
                    )
                });
            });
            drop(execute);
            let submit = SubmitJoin {
                pool: harbor(workers),
                progress: false,
            };
            group.bench_function(format!("submit_{workers}w{suffix}"), |b| {
                b.iter(|| {
                    run_all(
                        &submit,
                        &counter,
                        MANY_SUBMITTERS,
                        joiner.then_some(&submit.pool),
                    )
                });
            });
        }
    }
    group.finish();
}

fn features(c: &mut Criterion) {
    group(
        c,
        "i11_features",
        1,
        vec![
            (
                "execute_metrics_on",
                Box::new(|| Box::new(Execute(harbor(cores())))),
            ),
            (
                "execute_metrics_off",
                Box::new(|| Box::new(Execute(metrics_off()))),
            ),
            (
                "submit_join_metrics_on",
                Box::new(|| submit_join(harbor(cores()), false)),
            ),
            (
                "submit_join_metrics_off",
                Box::new(|| submit_join(metrics_off(), false)),
            ),
            (
                "submit_join_progress",
                Box::new(|| submit_join(harbor(cores()), true)),
            ),
        ],
    );
}

/// Submit-to-start latency of an idle pool: for each sample, note the
/// time, hand the pool a job that sends the time it starts, and take the
/// difference; 1 ms between samples lets the workers park again.
fn latency_report() {
    let harbor = harbor(cores());
    let peer = threadpool::ThreadPool::new(cores());
    let (tx, rx) = mpsc::channel::<Instant>();
    let mut harbor_ns = Vec::with_capacity(LATENCY_SAMPLES);
    let mut peer_ns = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        for (pool, samples) in [(0, &mut harbor_ns), (1, &mut peer_ns)] {
            thread::sleep(Duration::from_millis(1));
            let tx = tx.clone();
            let job = move || tx.send(Instant::now()).unwrap();
            let submitted = Instant::now();
            if pool == 0 {
                harbor.execute(job).unwrap();
            } else {
                peer.execute(job);
            }
            let started = rx.recv_timeout(TIMEOUT).unwrap();
            samples.push(started.saturating_duration_since(submitted).as_nanos() as u64);
        }
    }
    println!("\nidle submit-to-start latency, {LATENCY_SAMPLES} samples each (µs)");
    println!("| pool | median | p90 | p99 |");
    println!("|---|---:|---:|---:|");
    for (name, samples) in [("harbor", &mut harbor_ns), ("threadpool", &mut peer_ns)] {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            at(0.5),
            at(0.9),
            at(0.99)
        );
    }
}

fn main() {
    let latency_only = std::env::args().any(|arg| arg == "--latency-only");
    if !latency_only {
        let mut c = Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .without_plots()
            .configure_from_args();
        untracked(&mut c);
        tracked(&mut c);
        many_workers(&mut c);
        features(&mut c);
        c.final_summary();
    }
    let listing = std::env::args().any(|arg| arg == "--list" || arg == "--test");
    if !listing {
        latency_report();
    }
}
