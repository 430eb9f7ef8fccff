//! harbor against its peers, on the workloads of issue 4.
//!
//! Pools compared in the same run, each sized to the machine's cores:
//!
//! * `harbor_execute`: [`Pool::execute`], untracked;
//! * `harbor_submit`: [`Pool::submit`], tracked, the handle kept until the
//!   end of the iteration;
//! * `threadpool`: the `threadpool` crate's `execute`;
//! * `rayon`: `rayon::ThreadPool::spawn` (with a silent panic handler, which
//!   rayon needs to survive a panicking job at all);
//! * `naive`: [`NaiveThreadPool`], one OS thread per job. Spawning 100,000
//!   threads takes seconds, so it runs `NAIVE_JOBS` jobs instead; every
//!   benchmark declares its job count as its throughput, so criterion (and
//!   `docs/benchmarks.md`) compare time *per job*.
//!
//! Workloads (groups):
//!
//! 1. `w1_one_submitter`: 100,000 empty jobs from one thread, then wait for all;
//! 2. `w2_four_submitters`: the same 100,000 split over 4 submitting threads;
//! 3. `w3_panic_heavy`: every tenth job panics, under a silent panic hook
//!    installed for the whole group (the same for every pool);
//! 5. `w5_tracking`: `submit` + `status` + `join` per job against `execute`.
//!
//! Workload 4 (latency) and the memory figures are in
//! `examples/bench_report.rs`.
//!
//! Every pool waits for its jobs the same way: each job holds a [`Done`]
//! guard that counts down one shared [`Latch`] when dropped, also while
//! unwinding, and the iteration ends when the latch reaches zero.

use std::hint::black_box;
use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use harbor_pool::Pool;
use harbor_pool::compat::{NaiveThreadPool, ThreadPool as _};

/// Jobs per iteration for the real pools.
const JOBS: usize = 100_000;
/// Jobs per iteration for the thread-per-job pool.
const NAIVE_JOBS: usize = 2_000;
/// Submitting threads in workload 2.
const SUBMITTERS: usize = 4;
/// Every `PANIC_EVERY`-th job panics in workload 3 (10%).
const PANIC_EVERY: usize = 10;
/// A lost job fails the run instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Counts jobs down to zero; the benchmark thread waits for zero.
struct Latch {
    remaining: AtomicUsize,
    done: Mutex<bool>,
    cond: Condvar,
}

/// One latch for every benchmark: they run one at a time.
static LATCH: Latch = Latch {
    remaining: AtomicUsize::new(0),
    done: Mutex::new(false),
    cond: Condvar::new(),
};

impl Latch {
    fn arm(&self, jobs: usize) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.remaining.store(jobs, Ordering::SeqCst);
    }

    fn count_down(&self) {
        // AcqRel: the last job sees every other job's decrement.
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Poisoning is ignored: a job unwinding through its `Done` guard
            // poisons the lock, which means nothing here.
            *self.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
            self.cond.notify_all();
        }
    }

    fn wait(&self) {
        let deadline = Instant::now() + TIMEOUT;
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded by `deadline`; re-checks after every (possibly spurious) wake.
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "jobs lost: the latch never reached zero");
            done = self
                .cond
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Held by every job; counts the latch down when dropped, even by a panic.
struct Done;

impl Drop for Done {
    fn drop(&mut self) {
        LATCH.count_down();
    }
}

/// The job of workloads 1, 2 and 3: empty, or a panic for every tenth one
/// when `panics` is set.
fn job(index: usize, panics: bool) -> impl FnOnce() + Send + 'static {
    let panics = panics && index.is_multiple_of(PANIC_EVERY);
    move || {
        let _done = Done;
        if panics {
            panic!("benchmark panic");
        }
    }
}

/// One way to run a job, shared by every submitting thread.
trait Runner: Sync {
    fn run(&self, index: usize, panics: bool);
}

struct HarborExecute(Pool);
struct HarborSubmit(Pool);
struct Threadpool(threadpool::ThreadPool);
struct Rayon(rayon::ThreadPool);
struct Naive(NaiveThreadPool);

impl Runner for HarborExecute {
    fn run(&self, index: usize, panics: bool) {
        self.0.execute(job(index, panics)).unwrap();
    }
}

impl Runner for HarborSubmit {
    fn run(&self, index: usize, panics: bool) {
        let job = job(index, panics);
        let handle = self
            .0
            .submit(move |_| {
                job();
                Ok(())
            })
            .unwrap();
        // Kept until the iteration's end, as a caller holding handles would.
        HANDLES.with(|handles| handles.borrow_mut().push(handle));
    }
}

thread_local! {
    static HANDLES: std::cell::RefCell<Vec<harbor_pool::JobHandle<()>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Runner for Threadpool {
    fn run(&self, index: usize, panics: bool) {
        self.0.execute(job(index, panics));
    }
}

impl Runner for Rayon {
    fn run(&self, index: usize, panics: bool) {
        self.0.spawn(job(index, panics));
    }
}

impl Runner for Naive {
    fn run(&self, index: usize, panics: bool) {
        self.0.spawn(job(index, panics));
    }
}

fn cores() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// A pool under test: its name, its job count, and how to build it.
type Contender = (&'static str, usize, fn() -> Box<dyn Runner>);

/// The pools under test, built one at a time so that only the pool being
/// measured has threads.
fn pools() -> Vec<Contender> {
    vec![
        ("harbor_execute", JOBS, || {
            Box::new(HarborExecute(Pool::new(cores()).unwrap()))
        }),
        ("harbor_submit", JOBS, || {
            Box::new(HarborSubmit(Pool::new(cores()).unwrap()))
        }),
        ("threadpool", JOBS, || {
            Box::new(Threadpool(threadpool::ThreadPool::new(cores())))
        }),
        ("rayon", JOBS, || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(cores())
                // Without a handler rayon aborts the process on a panic.
                .panic_handler(drop)
                .build()
                .unwrap();
            Box::new(Rayon(pool))
        }),
        ("naive", NAIVE_JOBS, || {
            Box::new(Naive(NaiveThreadPool::new(1).unwrap()))
        }),
    ]
}

/// Runs `jobs` jobs from `submitters` threads and waits for all of them.
fn run_all(runner: &dyn Runner, jobs: usize, submitters: usize, panics: bool) {
    LATCH.arm(jobs);
    if submitters == 1 {
        for index in 0..jobs {
            runner.run(index, panics);
        }
    } else {
        thread::scope(|scope| {
            for submitter in 0..submitters {
                scope.spawn(move || {
                    for index in (submitter..jobs).step_by(submitters) {
                        runner.run(index, panics);
                    }
                    HANDLES.with(|handles| handles.borrow_mut().clear());
                });
            }
        });
    }
    LATCH.wait();
    // Dropping the handles is part of the tracked path's cost.
    HANDLES.with(|handles| handles.borrow_mut().clear());
}

fn throughput_group(c: &mut Criterion, name: &str, submitters: usize, panics: bool) {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat);
    for (pool, jobs, build) in pools() {
        let runner = build();
        group.throughput(Throughput::Elements(jobs as u64));
        group.bench_function(pool, |b| {
            b.iter(|| run_all(&*runner, jobs, submitters, panics));
        });
    }
    group.finish();
}

/// Workload 1: 100,000 empty jobs from one submitting thread.
fn one_submitter(c: &mut Criterion) {
    throughput_group(c, "w1_one_submitter", 1, false);
}

/// Workload 2: the same jobs from 4 submitting threads.
fn four_submitters(c: &mut Criterion) {
    throughput_group(c, "w2_four_submitters", SUBMITTERS, false);
}

/// Workload 3: every tenth job panics; a silent hook for every pool.
fn panic_heavy(c: &mut Criterion) {
    let default = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    throughput_group(c, "w3_panic_heavy", 1, true);
    panic::set_hook(default);
}

/// Workload 5: what tracking costs per job: `submit`, one `status` query
/// and `join` on every handle, against `execute` and the latch.
fn tracking(c: &mut Criterion) {
    let mut group = c.benchmark_group("w5_tracking");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(JOBS as u64));
    let pool = Pool::new(cores()).unwrap();
    group.bench_function("harbor_execute", |b| {
        b.iter(|| {
            LATCH.arm(JOBS);
            for index in 0..JOBS {
                pool.execute(job(index, false)).unwrap();
            }
            LATCH.wait();
        });
    });
    group.bench_function("harbor_submit_status_join", |b| {
        b.iter(|| {
            let mut handles = Vec::with_capacity(JOBS);
            for _ in 0..JOBS {
                let handle = pool.submit(|_| Ok(())).unwrap();
                black_box(pool.status(handle.id()));
                handles.push(handle);
            }
            for handle in handles {
                handle.join().unwrap();
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Sized to keep the whole run within a few minutes on 2 cores; every
    // iteration runs thousands of jobs, so 20 samples are plenty.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .without_plots();
    targets = one_submitter, four_submitters, panic_heavy, tracking
}
criterion_main!(benches);
