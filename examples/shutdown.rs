//! Graceful `shutdown` versus `shutdown_now` versus `shutdown_timeout`, and what happened to every job.

use std::error::Error;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use harbor_pool::{CancelToken, JobHandle, JobResult, JobStatus, Pool, SubmitError};

/// The bound on every wait in this example.
const TIMEOUT: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

type Jobs = Vec<(&'static str, JobHandle<()>)>;

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    graceful()?;
    now()?;
    timeout()?;
    timeout_with_a_stubborn_job()?;
    Ok(())
}

/// `shutdown` (and dropping a pool): refuse new jobs, run everything queued.
fn graceful() -> Result<(), Box<dyn Error>> {
    println!("-- shutdown(): graceful");
    let pool = one_worker("graceful")?;
    let jobs: Jobs = vec![
        ("running", pool.submit(nap(Duration::from_millis(50)))?),
        ("queued 1", pool.submit(nap(Duration::from_millis(50)))?),
        ("queued 2", pool.submit(nap(Duration::from_millis(50)))?),
    ];
    pool.shutdown();
    report(&jobs);
    let late = pool.submit(|_| Ok(()));
    match late {
        Ok(_) => println!("  submit after shutdown -> accepted (unexpected)"),
        Err(err) => println!("  submit after shutdown -> error: {err}"),
    }
    assert!(all(&jobs, &JobStatus::Completed));
    assert_eq!(pool.execute(|| ()), Err(SubmitError::Shutdown));
    Ok(())
}

/// `shutdown_now`: queued jobs never run; running jobs' tokens are cancelled.
fn now() -> Result<(), Box<dyn Error>> {
    println!("-- shutdown_now(): cancel everything");
    let pool = one_worker("now")?;
    let (started, running) = started_nap(&pool, HOUR)?;
    let jobs: Jobs = vec![
        ("running (1 h)", running),
        ("queued 1", pool.submit(nap(Duration::from_millis(50)))?),
        ("queued 2", pool.submit(nap(Duration::from_millis(50)))?),
    ];
    started.recv_timeout(TIMEOUT)?;
    pool.shutdown_now();
    report(&jobs);
    assert!(all(&jobs, &JobStatus::Cancelled));
    let stats = pool.stats();
    println!(
        "  stats: cancelled {}, alive {}",
        stats.cancelled, stats.alive
    );
    Ok(())
}

/// `shutdown_timeout`: graceful for a while, then as `shutdown_now`.
fn timeout() -> Result<(), Box<dyn Error>> {
    println!("-- shutdown_timeout(500 ms): graceful, then cancel");
    let pool = one_worker("timeout")?;
    let (started, short) = started_nap(&pool, Duration::from_millis(20))?;
    let jobs: Jobs = vec![
        ("short (20 ms)", short),
        ("long (1 h)", pool.submit(nap(HOUR))?),
        (
            "queued behind it",
            pool.submit(nap(Duration::from_millis(50)))?,
        ),
    ];
    started.recv_timeout(TIMEOUT)?;
    let clean = pool.shutdown_timeout(Duration::from_millis(500)).joined();
    report(&jobs);
    println!("  shutdown_timeout returned {clean}: every thread exited");
    assert!(clean);
    assert_eq!(jobs[0].1.status(), JobStatus::Completed);
    assert_eq!(jobs[1].1.status(), JobStatus::Cancelled);
    assert_eq!(jobs[2].1.status(), JobStatus::Cancelled);
    Ok(())
}

/// `shutdown_timeout` gives up on a job that ignores its token.
fn timeout_with_a_stubborn_job() -> Result<(), Box<dyn Error>> {
    println!("-- shutdown_timeout(100 ms) with a job that ignores its token");
    let pool = one_worker("stubborn")?;
    let (started_tx, started) = mpsc::channel();
    let stubborn = pool.submit(move |_token| {
        let _ = started_tx.send(());
        thread::sleep(Duration::from_secs(1)); // never looks at the token
        Ok(())
    })?;
    started.recv_timeout(TIMEOUT)?;
    let began = Instant::now();
    let clean = pool.shutdown_timeout(Duration::from_millis(100)).joined();
    println!(
        "  shutdown_timeout returned {clean} after about {} ms; the job was {}",
        began.elapsed().as_millis() / 100 * 100,
        stubborn.status()
    );
    assert!(!clean);
    // Its thread was left to finish on its own; dropping the pool does not
    // wait for it.
    drop(pool);
    let ended = stubborn
        .wait(TIMEOUT)
        .ok_or("the stubborn job never ended")?;
    println!("  the stubborn job finished later on its own: {ended}");
    assert_eq!(ended, JobStatus::Completed);
    Ok(())
}

fn one_worker(name: &str) -> Result<Pool, Box<dyn Error>> {
    Ok(Pool::builder().workers(1).thread_name(name).build()?)
}

/// A job that sleeps for `duration`, waking early when cancelled.
fn nap(duration: Duration) -> impl FnOnce(&CancelToken) -> JobResult<()> + Send + 'static {
    move |token| Ok(token.sleep(duration)?)
}

/// Submits a [`nap`] that reports when it starts.
fn started_nap(
    pool: &Pool,
    duration: Duration,
) -> Result<(Receiver<()>, JobHandle<()>), SubmitError> {
    let (started_tx, started) = mpsc::channel();
    let handle = pool.submit(move |token| {
        let _ = started_tx.send(());
        nap(duration)(token)
    })?;
    Ok((started, handle))
}

fn report(jobs: &Jobs) {
    for (what, handle) in jobs {
        println!("  {what:<18} {}", handle.status());
    }
}

fn all(jobs: &Jobs, status: &JobStatus) -> bool {
    jobs.iter().all(|(_, handle)| handle.status() == *status)
}
