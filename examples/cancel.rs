//! Cancelling jobs by id while pending and while running, by deadline, and what a job does with its token (`token.sleep`, `token.check()?`).

use std::error::Error;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use harbor_pool::{CancelOutcome, JobId, JobOptions, JobStatus, Pool};

/// The bound on every wait in this example.
const TIMEOUT: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // One worker, so a second job is certainly pending behind the first.
    let pool = Pool::builder().workers(1).thread_name("cancel").build()?;

    // 1. A long job that waits with `token.sleep`, and a job queued behind it.
    println!("-- by id, while running and while pending");
    let (started_tx, started_rx) = mpsc::channel();
    let sleeper = pool.submit(move |token| {
        let _ = started_tx.send(());
        token.sleep(HOUR)?; // wakes early when cancelled
        Ok("slept a whole hour")
    })?;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let queued = pool.submit(move |_| {
        flag.store(true, Ordering::SeqCst);
        Ok("ran")
    })?;
    started_rx.recv_timeout(TIMEOUT)?;
    println!(
        "sleeper is {}, queued is {}",
        status(&pool, sleeper.id()),
        status(&pool, queued.id())
    );

    let outcome = pool.cancel(queued.id());
    println!("cancel(queued)  -> {outcome}");
    assert_eq!(outcome, CancelOutcome::Cancelled);
    let outcome = pool.cancel(sleeper.id());
    println!("cancel(sleeper) -> {outcome}");
    assert_eq!(outcome, CancelOutcome::Requested);

    let ended = pool
        .wait(sleeper.id(), TIMEOUT)
        .ok_or("sleeper still running")?;
    println!(
        "sleeper ended {ended}; join: {:?}",
        sleeper.join().map_err(|e| e.to_string())
    );
    let ended = pool
        .wait(queued.id(), TIMEOUT)
        .ok_or("queued job not finished")?;
    println!(
        "queued ended {ended}; its closure ran: {}",
        ran.load(Ordering::SeqCst)
    );
    assert_eq!(ended, JobStatus::Cancelled);
    assert!(!ran.load(Ordering::SeqCst));

    // 2. A CPU-bound job that checks its token between chunks of work.
    println!("-- a CPU-bound job with token.check()?");
    let chunks = Arc::new(AtomicU64::new(0));
    let progress = Arc::clone(&chunks);
    let counter = pool.submit(move |token| {
        let mut sum = 0_u64;
        for _ in 0..1_000_000_000_u64 {
            token.check()?; // returns Err(Cancelled) once cancelled
            for i in 0..10_000_u64 {
                sum = sum.wrapping_add(black_box(i));
            }
            // Relaxed: a progress report only.
            progress.fetch_add(1, Ordering::Relaxed);
        }
        Ok(sum)
    })?;
    wait_for("the counter to make progress", || {
        chunks.load(Ordering::Relaxed) >= 3
    })?;
    println!("cancel(counter) -> {}", pool.cancel(counter.id()));
    let ended = counter.wait(TIMEOUT).ok_or("counter still running")?;
    println!(
        "counter ended {ended} after {} chunks of work",
        chunks.load(Ordering::Relaxed)
    );
    assert_eq!(ended, JobStatus::Cancelled);

    // 3. A deadline: the token is cancelled 100 ms after submission.
    println!("-- a deadline");
    let options = JobOptions::new().timeout(Duration::from_millis(100));
    let submitted = Instant::now();
    let late = pool.submit_with(options, |token| {
        token.sleep(HOUR)?;
        Ok(())
    })?;
    let ended = late.wait(TIMEOUT).ok_or("deadline job still running")?;
    println!(
        "job with a 100 ms timeout ended {ended} after about {} ms",
        submitted.elapsed().as_millis() / 10 * 10
    );
    assert_eq!(ended, JobStatus::Cancelled);

    // 4. Cancellation is cooperative: a job that returns Ok anyway completes.
    println!("-- a job that ignores its token");
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let stubborn = pool.submit(move |_token| {
        let _ = started_tx.send(());
        let _ = go_rx.recv_timeout(TIMEOUT); // never looks at the token
        Ok("finished anyway")
    })?;
    started_rx.recv_timeout(TIMEOUT)?;
    println!("cancel(stubborn) -> {}", pool.cancel(stubborn.id()));
    go_tx.send(())?;
    let stubborn_id = stubborn.id();
    let value = stubborn.join()?;
    println!("stubborn ended {}: {value:?}", status(&pool, stubborn_id));
    assert_eq!(pool.status(stubborn_id), Some(JobStatus::Completed));

    // 5. Cancelling what is already over, or was never there.
    println!("-- nothing to cancel");
    println!("cancel(finished job) -> {}", pool.cancel(late.id()));
    let unknown: JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse()?;
    println!("cancel(unknown id)   -> {}", pool.cancel(unknown));

    if !pool.join_timeout(TIMEOUT) {
        return Err("the pool did not become idle".into());
    }
    let stats = pool.stats();
    println!(
        "stats: completed {}, cancelled {}, failed {}",
        stats.completed, stats.cancelled, stats.failed
    );
    assert_eq!((stats.completed, stats.cancelled, stats.failed), (1, 4, 0));
    Ok(())
}

fn status(pool: &Pool, id: JobId) -> String {
    pool.status(id)
        .map_or_else(|| "unknown".to_owned(), |status| status.to_string())
}

/// Polls `done` until it is true, for at most [`TIMEOUT`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + TIMEOUT;
    // Bounded by `deadline`.
    while !done() {
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
