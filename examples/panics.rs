//! Deliberate panics of every kind: each job ends `Failed` with its message, no panic costs a worker, and the supervisor restores workers whose start hook panicked.

use std::error::Error;
use std::panic;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    // Every panic still reaches the process's panic hook; keep it to one
    // line each instead of the default report.
    panic::set_hook(Box::new(|info| {
        let thread = thread::current();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<a non-string payload>");
        eprintln!(
            "panic hook: thread '{}' panicked: {message}",
            thread.name().unwrap_or("<unnamed>")
        );
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
    // Untracked jobs panic safely too; only the counters see them.
    pool.execute(|| panic!("an untracked job panicked"))?;

    for (what, handle) in &jobs {
        let status = handle.wait(TIMEOUT).ok_or("a job did not finish in time")?;
        println!("{what:<28} -> {status}");
    }
    let statuses: Vec<JobStatus> = jobs.iter().map(|(_, handle)| handle.status()).collect();
    assert!(matches!(&statuses[0], JobStatus::Failed(m) if m == "a &str payload"));
    assert!(matches!(&statuses[3], JobStatus::Failed(_)));
    assert_eq!(statuses[5], JobStatus::Completed);

    // 3. The counters, and the workers: no job panic cost a thread.
    if !pool.join_timeout(TIMEOUT) {
        return Err("the pool did not become idle".into());
    }
    let stats = pool.stats();
    println!(
        "stats: submitted {}, completed {}, failed {} ({} of them panicked), cancelled {}",
        stats.submitted, stats.completed, stats.failed, stats.panicked, stats.cancelled
    );
    println!(
        "workers alive: {} of {}; restarts: {} (all from the start hook)",
        stats.alive, stats.workers, stats.restarts
    );
    assert_eq!((stats.panicked, stats.failed, stats.completed), (5, 6, 1));
    assert_eq!(stats.alive, WORKERS);
    assert_eq!(stats.restarts, HOOK_PANICS as u64);
    pool.shutdown();
    Ok(())
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
