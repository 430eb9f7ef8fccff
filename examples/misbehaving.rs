//! Jobs that misbehave beyond panics, and what the pool does about them:
//!
//! 1. a job stuck in a loop that never checks its token is abandoned after
//!    its grace, its worker replaced, and the pool keeps serving;
//! 2. a panic is reported with its file, line and column (`capture_panics`)
//!    to an `on_panic` callback, and logged once, quietly (`quiet_panics`);
//! 3. a job blocked in a socket read is unblocked by an `on_cancel`
//!    callback that shuts the socket down, when it is cancelled by id;
//! 4. `shutdown_now` reports which jobs never ran, which were interrupted
//!    and how they ended, and which were abandoned.
//!
//! Every wait here is bounded. Run with `cargo run --example misbehaving`
//! (`RUST_LOG=info` shows the pool's own log lines; by default they are off).

use std::error::Error;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harbor_pool::{CapturePanics, JobError, JobOptions, JobResult, JobStatus, Pool};

/// The bound on every wait in this example.
const TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off")).init();
    let (panics_tx, panics_rx) = mpsc::channel();
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .thread_name("misbehaving")
            // Give up on a job 200 ms after its token was cancelled.
            .abandon_after(Duration::from_millis(200))
            // Record where jobs panic, and keep the default hook from
            // printing them: the pool reports each panic once.
            .capture_panics(CapturePanics::Location)
            .quiet_panics(true)
            .on_panic(move |report| {
                let _ = panics_tx.send(report.panic.clone());
            })
            .build()?,
    );

    // 1. A stuck job: it spins without ever looking at its token.
    println!("-- 1. a job that never returns");
    let release = Arc::new(AtomicBool::new(false));
    let spin = Arc::clone(&release);
    let stuck = pool.submit_with(
        JobOptions::new().timeout(Duration::from_millis(100)),
        move |_| {
            let until = Instant::now() + TIMEOUT;
            while !spin.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::yield_now();
            }
            Ok("finished at last")
        },
    )?;
    let status = stuck.wait(TIMEOUT);
    println!("  after its 100 ms deadline and 200 ms grace: {status:?}");
    assert_eq!(status, Some(JobStatus::Abandoned));
    let served = pool.submit(|_| Ok(21 * 2))?.join()?;
    // The replacement is started before the job is marked abandoned; await
    // its start hook (bounded), which no event announces.
    let until = Instant::now() + TIMEOUT;
    while pool.stats().alive < 2 {
        assert!(Instant::now() < until, "the replacement did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = pool.stats();
    println!(
        "  the pool still serves jobs ({served}); {} workers alive, {} stray thread",
        stats.alive, stats.stray_threads
    );
    assert_eq!((stats.alive, stats.stray_threads), (2, 1));
    assert!(matches!(stuck.join(), Err(JobError::Abandoned)));
    // Let it return: its value is dropped and its thread exits.
    release.store(true, Ordering::SeqCst);
    let until = Instant::now() + TIMEOUT;
    // Bounded: awaits the stray thread's exit, which no event announces.
    while pool.stats().stray_threads > 0 {
        assert!(Instant::now() < until, "the stray thread did not exit");
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("  released, the stuck job returned; its thread is gone");

    // 2. A panic, with its location.
    println!("-- 2. a panic, with where it happened");
    let bad = pool.submit(|_| -> JobResult<()> { panic!("index out of range") })?;
    let id = bad.id();
    assert!(bad.wait(TIMEOUT).is_some());
    let report = panics_rx.recv_timeout(TIMEOUT)?;
    let location = report
        .location
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), ToString::to_string);
    println!(
        "  on_panic: job {id} panicked on {} at {location}: {}",
        report.thread, report.message
    );
    let info = pool.info(id).ok_or("the job's record is gone")?;
    assert_eq!(info.status, JobStatus::Failed("index out of range".into()));
    assert!(info.panic.and_then(|p| p.location.clone()).is_some());

    // 3. A job blocked in a read, unblocked by its cancel callback.
    println!("-- 3. a blocking read, unblocked on cancel");
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (_server_side, _) = listener.accept()?; // kept open: the read blocks
    let (reading_tx, reading_rx) = mpsc::channel();
    let reader = pool.submit(move |token| {
        let socket = client.try_clone()?;
        // Shutting the socket down makes the blocked `read` return.
        let _unblock = token.on_cancel(move || {
            let _ = socket.shutdown(Shutdown::Both);
        });
        reading_tx.send(()).ok();
        let mut buffer = [0_u8; 16];
        let read = (&client).read(&mut buffer)?;
        token.check()?;
        Ok(read)
    })?;
    reading_rx.recv_timeout(TIMEOUT)?;
    let cancelled_at = Instant::now();
    println!("  cancel by id: {}", pool.cancel(reader.id()));
    let status = reader.wait(TIMEOUT);
    println!(
        "  the read returned and the job ended {status:?}, {} ms after the cancel",
        cancelled_at.elapsed().as_millis()
    );
    assert_eq!(status, Some(JobStatus::Cancelled));

    // 4. A shutdown that says what it did.
    println!("-- 4. shutdown_now, reported");
    let (started_tx, started_rx) = mpsc::channel();
    let cooperative = {
        let started = started_tx.clone();
        pool.submit(move |token| {
            started.send(()).ok();
            token.sleep(TIMEOUT)?;
            Ok(())
        })?
    };
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let ignores_token = pool.submit(move |_| {
        started_tx.send(()).ok();
        let _ = hold_rx.recv_timeout(TIMEOUT);
        Ok(())
    })?;
    for _ in 0..2 {
        started_rx.recv_timeout(TIMEOUT)?;
    }
    let queued = pool.submit(|_| Ok(()))?;
    pool.execute(|| println!("  never printed: dropped by shutdown_now"))?;
    let report = pool.shutdown_now();
    println!("  cancelled before running: {:?}", report.cancelled);
    for (id, status) in &report.interrupted {
        println!("  interrupted: {id} ended {status}");
    }
    println!("  abandoned: {:?}", report.abandoned);
    println!(
        "  untracked jobs dropped: {}, stray threads left: {}, every other thread joined: {}",
        report.untracked_dropped,
        report.stray_threads,
        report.joined()
    );
    assert_eq!(report.cancelled, vec![queued.id()]);
    assert!(report.abandoned.contains(&ignores_token.id()));
    assert!(
        report
            .interrupted
            .contains(&(cooperative.id(), JobStatus::Cancelled))
    );
    drop(hold_tx);
    Ok(())
}
