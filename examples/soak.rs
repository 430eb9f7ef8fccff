//! A soak run: a random mix of every kind of job, from several threads, for
//! a given time, checking the pool's promises as it goes.
//!
//! ```sh
//! cargo run --release --example soak -- --seconds 60 --threads 4
//! ```
//!
//! Options: `--seconds N` (default 60), `--threads T` submitter threads
//! (default 4), `--workers W` pool workers (default 4), `--seed S` (default:
//! from the clock; printed first, so a failing run can be repeated with the
//! same mix of jobs, though not the same timing).
//!
//! The run is a sequence of phases. In each, every submitter submits
//! [`JOBS_PER_PHASE`] jobs of random kinds to one long-lived pool: tracked
//! jobs that return a value, untracked ones, jobs that panic or return `Err`,
//! jobs cancelled by id (while pending and while running), jobs with a
//! deadline that expires or is met, and nested jobs (a job that submits
//! another and joins it). A submitter sometimes also builds a short-lived
//! pool and shuts it down in one of four ways. After a phase it checks:
//!
//! * every job ended as it was meant to (its value, panic message, error or
//!   cancellation; a job cancelled while pending never ran);
//! * once the pool is joined, `submitted == completed + failed + cancelled`,
//!   and each counter moved by exactly what the phase's jobs account for;
//! * every worker is alive, none was restarted, and the short-lived pools'
//!   threads are gone;
//! * memory is flat: the resident set size after the first third of the run
//!   stays within [`RSS_SLACK`] of the largest seen in that first third.
//!
//! Any violation prints `soak: violation: ...` and exits with status 1. At the
//! end it prints the throughput, the job count and the peak RSS.
//!
//! The panic hook is silent on the pool's threads (the soak panics on purpose
//! there, and the pool logs each panic through `log`); logging defaults to
//! errors only (`RUST_LOG=warn` shows every job panic).

use std::error::Error;
use std::fmt::Display;
use std::process;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harbor_pool::{
    CancelOutcome, JobError, JobHandle, JobOptions, JobResult, JobStatus, Pool, PoolStats,
    SubmitError,
};

/// Jobs each submitter submits per phase.
const JOBS_PER_PHASE: usize = 1_000;
/// The bound on every wait: a job that has not ended by then is a violation.
const BOUND: Duration = Duration::from_secs(60);
/// How long a job that waits for its cancellation sleeps at most; it
/// completes (a violation) if no cancellation arrives.
const UNTIL_CANCELLED: Duration = Duration::from_secs(30);
/// The deadline of a job meant to finish well within it.
const GENEROUS_DEADLINE: Duration = Duration::from_secs(10);
/// How far the RSS may rise above its maximum in the first third of the run.
const RSS_SLACK: u64 = 32 << 20;
/// Prefix of every thread name of the soak's pools.
const PREFIX: &str = "soak";

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("soak: {message}\n{USAGE}");
            process::exit(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    // Silent on the pool's threads, which panic on purpose; a panic anywhere
    // else is a bug in the soak and is reported as usual.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = thread::current();
        if !thread.name().is_some_and(|name| name.starts_with(PREFIX)) {
            report(info);
        }
    }));
    if let Err(err) = run(&args) {
        fail(err);
    }
}

const USAGE: &str = "usage: soak [--seconds N] [--threads T] [--workers W] [--seed S]";

/// Command-line options.
struct Args {
    seconds: u64,
    threads: usize,
    workers: usize,
    seed: u64,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args {
            seconds: 60,
            threads: 4,
            workers: 4,
            seed: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        };
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            let number: u64 = value
                .parse()
                .map_err(|_| format!("{flag}: not a number: {value:?}"))?;
            let count = || {
                usize::try_from(number)
                    .ok()
                    .filter(|&n| (1..=256).contains(&n))
                    .ok_or(format!("{flag} must be between 1 and 256"))
            };
            match flag.as_str() {
                "--seconds" => parsed.seconds = number,
                "--threads" => parsed.threads = count()?,
                "--workers" => parsed.workers = count()?,
                "--seed" => parsed.seed = number,
                _ => return Err(format!("unknown option {flag:?}")),
            }
        }
        Ok(parsed)
    }
}

/// Prints the violation and exits with status 1, from any thread.
fn fail(message: impl Display) -> ! {
    eprintln!("soak: violation: {message}");
    process::exit(1);
}

/// xorshift64*: small, fast, and good enough to pick job kinds.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Never zero, the one state xorshift cannot leave.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` for `n` far below 2^64.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the jobs of a phase (or the run) account for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    // What the long-lived pool's counters must have moved by.
    submitted: u64,
    completed: u64,
    failed: u64,
    panicked: u64,
    cancelled: u64,
    // What happened, for the report.
    untracked: u64,
    cancelled_pending: u64,
    cancelled_running: u64,
    expired: u64,
    nested: u64,
    extra_pools: u64,
    extra_jobs: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.submitted += other.submitted;
        self.completed += other.completed;
        self.failed += other.failed;
        self.panicked += other.panicked;
        self.cancelled += other.cancelled;
        self.untracked += other.untracked;
        self.cancelled_pending += other.cancelled_pending;
        self.cancelled_running += other.cancelled_running;
        self.expired += other.expired;
        self.nested += other.nested;
        self.extra_pools += other.extra_pools;
        self.extra_jobs += other.extra_jobs;
    }

    /// Counts one job on the long-lived pool that must end as `want`.
    fn expect(&mut self, want: &Want) {
        self.submitted += 1;
        match want {
            Want::Value(_) => self.completed += 1,
            Want::Panicked(_) => {
                self.failed += 1;
                self.panicked += 1;
            }
            Want::Failed(_) => self.failed += 1,
            Want::Cancelled => self.cancelled += 1,
        }
    }
}

/// How a tracked job must end.
#[derive(Debug)]
enum Want {
    Value(u64),
    Panicked(String),
    Failed(String),
    Cancelled,
}

/// A tracked job in flight and how it must end.
struct InFlight {
    what: &'static str,
    handle: JobHandle<u64>,
    want: Want,
    /// For a job cancelled by id: whether its closure ran, and whether it
    /// had to (cancelled running) or must not have (cancelled pending).
    ran: Option<(Arc<AtomicBool>, bool)>,
}

/// What every submitter shares.
struct Context {
    pool: Arc<Pool>,
    /// Untracked jobs that ran to the end.
    untracked_ran: Arc<AtomicU64>,
    /// Numbers the jobs, so each panic and error message is unique.
    sequence: AtomicU64,
}

impl Context {
    fn next_number(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed)
    }
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    println!(
        "soak: seed {}, {} s, {} submitter threads, {} workers",
        args.seed, args.seconds, args.threads, args.workers
    );
    let pool = Arc::new(
        Pool::builder()
            .workers(args.workers)
            .thread_name(PREFIX)
            .build()?,
    );
    let ctx = Context {
        pool: Arc::clone(&pool),
        untracked_ran: Arc::new(AtomicU64::new(0)),
        sequence: AtomicU64::new(0),
    };
    await_condition("every worker to start", || {
        pool.stats().alive == args.workers
    });
    let threads_before = thread_count();

    let start = Instant::now();
    let run_for = Duration::from_secs(args.seconds);
    let mut total = Tally::default();
    let mut phase = 0_u64;
    let mut rss_early = 0; // the largest RSS in the first third of the run
    let mut rss_max = 0;
    let mut rss_last = 0;
    let mut next_progress = Duration::from_secs(10);
    let mut seen = pool.stats();
    while start.elapsed() < run_for {
        let tally = run_phase(&ctx, args, phase);
        if !pool.join_timeout(BOUND) {
            fail(format!("phase {phase}: the pool did not become idle"));
        }
        let now = pool.stats();
        check_stats(&pool, phase, &seen, &now, &tally, args.workers);
        total.add(&tally);
        let ran = ctx.untracked_ran.load(Ordering::SeqCst);
        if ran != total.untracked {
            fail(format!(
                "phase {phase}: {ran} untracked jobs ran, {} were submitted to run",
                total.untracked
            ));
        }
        if !eventually(|| thread_count() == threads_before) {
            fail(format!(
                "phase {phase}: {} threads, {threads_before} before the run: a pool's threads outlived it",
                thread_count()
            ));
        }
        seen = now;
        phase += 1;

        rss_last = status_bytes("VmRSS:");
        rss_max = rss_max.max(rss_last);
        if start.elapsed() < run_for / 3 {
            rss_early = rss_early.max(rss_last);
        } else if rss_early > 0 && rss_last > rss_early + RSS_SLACK {
            fail(format!(
                "memory is not flat: RSS {} MiB, at most {} MiB in the first third of the run",
                mib(rss_last),
                mib(rss_early)
            ));
        }
        if start.elapsed() >= next_progress {
            println!(
                "{:>5} s: {} jobs, {} phases, RSS {} MiB",
                next_progress.as_secs(),
                total.submitted + total.extra_jobs,
                phase,
                mib(rss_last)
            );
            next_progress += Duration::from_secs(10);
        }
    }
    let elapsed = start.elapsed();
    pool.shutdown();
    let end = pool.stats();
    if end.alive != 0 || end.submitted != end.completed + end.failed + end.cancelled {
        fail(format!("after shutdown: {end:?}"));
    }

    let jobs = total.submitted + total.extra_jobs;
    println!(
        "jobs: {jobs} in {:.1} s, {:.0} jobs/s, {phase} phases",
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
    println!(
        "outcomes: completed {}, failed {} ({} panicked), cancelled {} (by id: {} pending, {} running; {} deadlines expired)",
        total.completed,
        total.failed,
        total.panicked,
        total.cancelled,
        total.cancelled_pending,
        total.cancelled_running,
        total.expired
    );
    println!(
        "also: {} untracked, {} nested pairs, {} short-lived pools running {} jobs",
        total.untracked, total.nested, total.extra_pools, total.extra_jobs
    );
    println!(
        "RSS: max {} MiB, last {} MiB, max in the first third {} MiB; peak (VmHWM) {} MiB",
        mib(rss_max),
        mib(rss_last),
        mib(rss_early),
        mib(status_bytes("VmHWM:"))
    );
    println!("soak: ok");
    Ok(())
}

/// One phase: every submitter submits and checks its jobs; returns what they
/// account for on the long-lived pool.
fn run_phase(ctx: &Context, args: &Args, phase: u64) -> Tally {
    thread::scope(|scope| {
        let submitters: Vec<_> = (0..args.threads)
            .map(|index| {
                let seed = args.seed ^ (phase << 32) ^ (index as u64).wrapping_mul(0x9e37_79b9);
                scope.spawn(move || submitter(ctx, index, Rng::new(seed)))
            })
            .collect();
        let mut tally = Tally::default();
        for submitter in submitters {
            match submitter.join() {
                Ok(part) => tally.add(&part),
                Err(_) => fail("a submitter thread panicked"),
            }
        }
        tally
    })
}

/// The counters after a joined phase add up, and moved by the phase's tally.
fn check_stats(
    pool: &Pool,
    phase: u64,
    before: &PoolStats,
    now: &PoolStats,
    tally: &Tally,
    workers: usize,
) {
    let ended = now.completed + now.failed + now.cancelled;
    if now.submitted != ended {
        fail(format!(
            "phase {phase}: submitted {} but {ended} ended: {now:?}",
            now.submitted
        ));
    }
    let moved = Tally {
        submitted: now.submitted - before.submitted,
        completed: now.completed - before.completed,
        failed: now.failed - before.failed,
        panicked: now.panicked - before.panicked,
        cancelled: now.cancelled - before.cancelled,
        ..*tally
    };
    if moved != *tally {
        fail(format!(
            "phase {phase}: the counters moved by {moved:?}, the jobs account for {tally:?}"
        ));
    }
    if now.alive != workers || now.restarts != 0 {
        fail(format!(
            "phase {phase}: {} of {workers} workers alive, {} restarts",
            now.alive, now.restarts
        ));
    }
    // An idle pool's queue may still hold entries of jobs that already
    // ended (cancelled while queued, or run inline by a job that joined
    // them); the workers skip them at once.
    await_condition("the workers to skip finished jobs' queue entries", || {
        pool.stats().queued == 0
    });
}

/// One submitter's share of a phase.
fn submitter(ctx: &Context, index: usize, mut rng: Rng) -> Tally {
    let mut tally = Tally::default();
    let mut jobs = Vec::with_capacity(JOBS_PER_PHASE);
    for _ in 0..JOBS_PER_PHASE {
        submit_one(ctx, &mut rng, &mut tally, &mut jobs);
    }
    for job in jobs {
        check(ctx, job);
    }
    if rng.below(3) == 0 {
        short_lived_pool(index, &mut rng, &mut tally);
    }
    tally
}

/// Submits one job of a random kind to the long-lived pool.
fn submit_one(ctx: &Context, rng: &mut Rng, tally: &mut Tally, jobs: &mut Vec<InFlight>) {
    let pool = &*ctx.pool;
    let n = ctx.next_number();
    let submitted = |result: Result<JobHandle<u64>, SubmitError>| {
        result.unwrap_or_else(|err| fail(format!("submit refused: {err}")))
    };
    let mut track = |what, handle, want: Want, ran, tally: &mut Tally| {
        tally.expect(&want);
        jobs.push(InFlight {
            what,
            handle,
            want,
            ran,
        });
    };
    match rng.below(100) {
        // A tracked job that returns a value.
        0..30 => {
            let value = rng.next();
            let handle = submitted(pool.submit(move |_| Ok(value)));
            track("value", handle, Want::Value(value), None, tally);
        }
        // An untracked job.
        30..45 => {
            let ran = Arc::clone(&ctx.untracked_ran);
            pool.execute(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap_or_else(|err| fail(format!("execute refused: {err}")));
            tally.submitted += 1;
            tally.completed += 1;
            tally.untracked += 1;
        }
        // An untracked job that panics.
        45..50 => {
            pool.execute(move || panic!("soak untracked panic {n}"))
                .unwrap_or_else(|err| fail(format!("execute refused: {err}")));
            tally.submitted += 1;
            tally.failed += 1;
            tally.panicked += 1;
        }
        // A tracked job that panics.
        50..60 => {
            let handle =
                submitted(pool.submit(move |_| -> JobResult<u64> { panic!("soak panic {n}") }));
            let want = Want::Panicked(format!("soak panic {n}"));
            track("panic", handle, want, None, tally);
        }
        // A tracked job that returns `Err`.
        60..70 => {
            let handle = submitted(pool.submit(move |_| Err(format!("soak error {n}").into())));
            let want = Want::Failed(format!("soak error {n}"));
            track("error", handle, want, None, tally);
        }
        // Cancelled by id at once: pending, or running if a worker was quicker.
        70..78 => {
            let ran = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&ran);
            let handle = submitted(pool.submit(move |token| {
                flag.store(true, Ordering::SeqCst);
                token.sleep(UNTIL_CANCELLED)?;
                Ok(0)
            }));
            let must_have_run = match pool.cancel(handle.id()) {
                CancelOutcome::Cancelled => {
                    tally.cancelled_pending += 1;
                    false
                }
                CancelOutcome::Requested => {
                    tally.cancelled_running += 1;
                    true
                }
                other => fail(format!("cancel of a fresh job answered {other:?}")),
            };
            let ran = Some((ran, must_have_run));
            track("cancelled by id", handle, Want::Cancelled, ran, tally);
        }
        // Cancelled by id once it is running.
        78..80 => {
            let (started_tx, started_rx) = mpsc::channel();
            let handle = submitted(pool.submit(move |token| {
                let _ = started_tx.send(());
                token.sleep(UNTIL_CANCELLED)?;
                Ok(0)
            }));
            if started_rx.recv_timeout(BOUND).is_err() {
                fail(format!(
                    "job {} did not start within {BOUND:?}",
                    handle.id()
                ));
            }
            match pool.cancel(handle.id()) {
                CancelOutcome::Requested => tally.cancelled_running += 1,
                other => fail(format!("cancel of a running job answered {other:?}")),
            }
            track("cancelled running", handle, Want::Cancelled, None, tally);
        }
        // A deadline that expires (while pending or running).
        80..85 => {
            let timeout = Duration::from_micros(rng.below(3_000));
            let handle = submitted(
                pool.submit_with(JobOptions::new().timeout(timeout), |token| {
                    token.sleep(UNTIL_CANCELLED)?;
                    Ok(0)
                }),
            );
            tally.expired += 1;
            track("deadline expires", handle, Want::Cancelled, None, tally);
        }
        // A deadline that is met.
        85..90 => {
            let value = rng.next();
            let options = JobOptions::new().timeout(GENEROUS_DEADLINE);
            let handle = submitted(pool.submit_with(options, move |_| Ok(value)));
            track("deadline met", handle, Want::Value(value), None, tally);
        }
        // A job that submits another and joins it. Every worker may be
        // running one: a worker that joins a pending job runs it inline.
        _ => {
            let value = rng.next() >> 1;
            let inner_pool = Arc::clone(&ctx.pool);
            let handle = submitted(pool.submit(move |_| {
                let inner = inner_pool.submit(move |_| Ok(value + 1))?;
                match inner.join_timeout(BOUND) {
                    Ok(result) => Ok(result?),
                    Err(_) => Err(format!("inner job not finished within {BOUND:?}").into()),
                }
            }));
            // The inner job, which must complete too.
            tally.submitted += 1;
            tally.completed += 1;
            tally.nested += 1;
            track("nested", handle, Want::Value(value + 1), None, tally);
        }
    }
}

/// Waits for `job` and checks that it ended as wanted.
fn check(ctx: &Context, job: InFlight) {
    let id = job.handle.id();
    let what = job.what;
    let result = job
        .handle
        .join_timeout(BOUND)
        .unwrap_or_else(|_| fail(format!("job {id} ({what}) did not end within {BOUND:?}")));
    let (ok, status) = match (&job.want, &result) {
        (Want::Value(want), Ok(got)) => (want == got, JobStatus::Completed),
        (Want::Panicked(want), Err(JobError::Panicked(got))) => {
            (want == got, JobStatus::Failed(want.clone()))
        }
        (Want::Failed(want), Err(JobError::Failed(got))) => {
            (*want == got.to_string(), JobStatus::Failed(want.clone()))
        }
        (Want::Cancelled, Err(JobError::Cancelled)) => (true, JobStatus::Cancelled),
        _ => (false, JobStatus::Pending),
    };
    if !ok {
        fail(format!(
            "job {id} ({what}) ended {result:?}, wanted {:?}",
            job.want
        ));
    }
    // The record may already be forgotten (retention), never different.
    if let Some(recorded) = ctx.pool.status(id)
        && recorded != status
    {
        fail(format!(
            "job {id} ({what}) is recorded {recorded}, ended {status}"
        ));
    }
    if let Some((ran, must_have_run)) = job.ran
        && ran.load(Ordering::SeqCst) != must_have_run
    {
        fail(format!(
            "job {id} ({what}): its closure ran: {}, but cancel said it was {}",
            !must_have_run,
            if must_have_run { "running" } else { "pending" }
        ));
    }
}

/// Builds a small pool, gives it a few jobs and shuts it down one of four
/// ways; checks how each job ended and that the pool's threads are gone.
fn short_lived_pool(index: usize, rng: &mut Rng, tally: &mut Tally) {
    let workers = 1 + rng.below(2) as usize;
    let pool = Pool::builder()
        .workers(workers)
        .thread_name(format!("{PREFIX}x{index}"))
        .build()
        .unwrap_or_else(|err| fail(format!("build a short-lived pool: {err}")));
    // 0: shutdown, 1: drop, 2: shutdown_now, 3: shutdown_timeout.
    let how = rng.below(4);
    // Graceful ways wait for every job, so they get no job that waits for
    // its cancellation.
    let sleepers = how >= 2;
    let count = 1 + rng.below(8);
    let jobs: Vec<(JobHandle<u64>, Option<u64>)> = (0..count)
        .map(|_| {
            let submitted = if sleepers && rng.below(2) == 0 {
                pool.submit(|token| {
                    token.sleep(UNTIL_CANCELLED)?;
                    Ok(0)
                })
                .map(|handle| (handle, None))
            } else {
                let value = rng.next();
                pool.submit(move |_| Ok(value))
                    .map(|handle| (handle, Some(value)))
            };
            submitted.unwrap_or_else(|err| fail(format!("short-lived pool refused: {err}")))
        })
        .collect();
    let pool = match how {
        0 => {
            pool.shutdown();
            Some(pool)
        }
        1 => {
            drop(pool);
            None
        }
        2 => {
            pool.shutdown_now();
            Some(pool)
        }
        _ => {
            // `false` only says that not every thread was joined within the
            // 20 ms (a loaded machine); the threads must still finish on
            // their own, which the waits below and the phase's thread count
            // require.
            let _ = pool.shutdown_timeout(Duration::from_millis(20));
            Some(pool)
        }
    };
    let mut completed = 0;
    for (handle, value) in jobs {
        let id = handle.id();
        let result = handle
            .join_timeout(BOUND)
            .unwrap_or_else(|_| fail(format!("job {id} of a shut-down pool never ended")));
        match (value, result) {
            (Some(want), Ok(got)) if want == got => completed += 1,
            // Only an immediate shutdown cancels a job that does not wait.
            (Some(_), Err(JobError::Cancelled)) if how >= 2 => {}
            (None, Err(JobError::Cancelled)) => {}
            (want, got) => fail(format!(
                "job {id} of a short-lived pool (shutdown {how}) ended {got:?}, wanted {want:?}"
            )),
        }
    }
    if let Some(pool) = pool {
        // `shutdown` and `shutdown_now` return once every thread is joined.
        if how == 3 {
            await_condition("a short-lived pool's workers to exit", || {
                pool.stats().alive == 0
            });
        }
        let stats = pool.stats();
        let ended = stats.completed + stats.failed + stats.cancelled;
        if stats.alive != 0
            || stats.submitted != count
            || ended != count
            || stats.completed != completed
        {
            fail(format!(
                "short-lived pool (shutdown {how}): {count} jobs, {completed} completed, {stats:?}"
            ));
        }
        if !matches!(pool.submit(|_| Ok(())), Err(SubmitError::Shutdown)) {
            fail(format!(
                "a short-lived pool (shutdown {how}) accepted a job after shutdown"
            ));
        }
    }
    tally.extra_pools += 1;
    tally.extra_jobs += count;
}

/// Waits up to [`BOUND`] for `condition`; a violation if it never holds.
fn await_condition(what: &str, condition: impl FnMut() -> bool) {
    if !eventually(condition) {
        fail(format!("timed out waiting for {what}"));
    }
}

/// Whether `condition` holds within [`BOUND`], checking every millisecond.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + BOUND;
    // Bounded by `deadline`: awaits an eventual state (a thread leaving
    // /proc, workers starting), for which there is no event to wait on.
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// A size field of `/proc/self/status` (such as `VmRSS:`), in bytes; 0 where
/// there is no such file.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}
