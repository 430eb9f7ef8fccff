//! Deliberate panics of every kind: each job ends `Failed` with its message, no panic costs a worker, and the supervisor restores workers whose start hook panicked.
//!
//! Every job submitted is listed with its outcome, and the pool's counters
//! add up to that list.
//!
//! The example installs a panic hook that is silent on the pool's threads,
//! as a service using the pool would: the pool already reports each panic it
//! catches once, through `log` (warn for a job, error for a worker death), so
//! the default hook's report would only repeat it. That log goes to stderr
//! (`RUST_LOG=off` hides it, `RUST_LOG=debug` shows every job's lifecycle).
//! A panic on any other thread, such as a failed check in `main`, still
//! reaches the default hook.

use std::error::Error;
use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use harbor_pool::{JobHandle, JobResult, JobStatus, Pool};

const WORKERS: usize = 2;
/// How many times the start hook panics before it lets workers start.
const HOOK_PANICS: usize = 3;
/// The bound on every wait in this example.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A panic payload that is neither `&str` nor `String`.
#[derive(Debug)]
struct CustomPayload {
    #[allow(dead_code)] // only ever seen through `Debug`, if at all
    code: u32,
}

/// A panic payload whose own `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the Bomb payload exploded while being dropped");
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // Silent on the pool's threads: the pool logs each panic it catches
    // there (see the doc comment above).
    let report = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let thread = thread::current();
        if !thread
            .name()
            .is_some_and(|name| name.starts_with("panics-"))
        {
            report(info);
        }
    }));

    // 1. A start hook that panics: the worker thread dies before taking any
    //    job, and the supervisor respawns it.
    let hook_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&hook_calls);
    let pool = Pool::builder()
        .workers(WORKERS)
        .thread_name("panics")
        .on_thread_start(move |index| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            if call < HOOK_PANICS {
                panic!("start hook refuses worker {index} (call {call})");
            }
        })
        .build()?;
    let stats = wait_for("the supervisor to restore every worker", || {
        let stats = pool.stats();
        (stats.alive == WORKERS && stats.restarts == HOOK_PANICS as u64).then_some(stats)
    })?;
    println!(
        "start hook panicked {HOOK_PANICS} times; the supervisor respawned {} workers; {} of {} alive",
        stats.restarts, stats.alive, stats.workers
    );

    // 2. Jobs that panic with every kind of payload, and two that do not.
    let jobs: Vec<(&str, JobHandle<()>)> = vec![
        (
            "a &str payload",
            pool.submit(|_| -> JobResult<()> { panic!("a &str payload") })?,
        ),
        (
            "a String payload",
            pool.submit(|_| -> JobResult<()> {
                let line = 3;
                panic::panic_any(format!("a String payload: bad input on line {line}"))
            })?,
        ),
        (
            "a custom payload",
            pool.submit(|_| -> JobResult<()> { panic::panic_any(CustomPayload { code: 7 }) })?,
        ),
        (
            "a payload whose Drop panics",
            pool.submit(|_| -> JobResult<()> { panic::panic_any(Bomb) })?,
        ),
        (
            "an Err (not a panic)",
            pool.submit(|_| Err("returned an error".into()))?,
        ),
        ("a job that succeeds", pool.submit(|_| Ok(()))?),
    ];
    // An untracked job panics safely too. It has no id and no status, so it
    // reports through a guard that its closure drops while unwinding.
    let (unwound_tx, unwound_rx) = mpsc::channel();
    pool.execute(move || {
        let _guard = OnUnwind(unwound_tx);
        panic!("an untracked job panicked")
    })?;

    // 3. Every job's outcome, once the pool is idle.
    if !pool.join_timeout(TIMEOUT) {
        return Err("the pool did not become idle".into());
    }
    let mut statuses = Vec::new();
    for (what, handle) in &jobs {
        let status = handle.wait(TIMEOUT).ok_or("a job did not finish in time")?;
        println!("{what:<28} -> {status}");
        statuses.push(status);
    }
    assert!(matches!(&statuses[0], JobStatus::Failed(m) if m == "a &str payload"));
    assert!(matches!(&statuses[3], JobStatus::Failed(_)));
    assert_eq!(statuses[5], JobStatus::Completed);
    unwound_rx
        .recv_timeout(TIMEOUT)
        .map_err(|_| "the untracked job did not unwind")?;
    println!(
        "{:<28} -> failed: panicked (untracked: no id or status, only counted)",
        "an untracked job"
    );

    // 4. The counters add up to the outcomes above, and no job panic cost a
    //    thread.
    let stats = pool.stats();
    println!(
        "stats: submitted {}, completed {}, failed {} ({} of them panicked), cancelled {}",
        stats.submitted, stats.completed, stats.failed, stats.panicked, stats.cancelled
    );
    println!(
        "workers alive: {} of {}; restarts: {} (all from the start hook)",
        stats.alive, stats.workers, stats.restarts
    );
    let count = |wanted: fn(&JobStatus) -> bool| statuses.iter().filter(|s| wanted(s)).count();
    let rows = statuses.len() + 1; // and the untracked job, which failed
    let failed = count(|s| matches!(s, JobStatus::Failed(_))) + 1;
    let completed = count(|s| *s == JobStatus::Completed);
    let cancelled = count(|s| *s == JobStatus::Cancelled);
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.failed,
            stats.cancelled
        ),
        (
            rows as u64,
            completed as u64,
            failed as u64,
            cancelled as u64
        ),
        "the counters disagree with the outcomes listed"
    );
    // Every failure but the `Err` one is a panic.
    assert_eq!(stats.panicked, failed as u64 - 1);
    assert_eq!(stats.alive, WORKERS);
    assert_eq!(stats.restarts, HOOK_PANICS as u64);
    pool.shutdown();
    Ok(())
}

/// Reports on its channel when it is dropped by a panic unwinding.
struct OnUnwind(mpsc::Sender<()>);

impl Drop for OnUnwind {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.send(());
        }
    }
}

/// Polls `check` until it returns `Some`, for at most [`TIMEOUT`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + TIMEOUT;
    // Bounded by `deadline`; the pool offers no event for "workers are up".
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(5));
    }
}
