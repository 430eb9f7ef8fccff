//! A logger that blocks, or calls back into the pool, cannot deadlock or
//! cut short a shutdown. Alone in its own test binary: it installs the
//! process's logger, and its scenarios run one after another.

mod common;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use harbor_pool::{JobStatus, Pool};
use log::{LevelFilter, Log, Metadata, Record};

type Hook = Box<dyn FnOnce() + Send>;

/// Runs a one-shot hook on the first message that contains its text.
struct HookLogger;

static HOOK: Mutex<Option<(&'static str, Hook)>> = Mutex::new(None);

impl Log for HookLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let text = record.args().to_string();
        // Taken out before it runs: the hook may log, and call the pool.
        let hook = HOOK
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_if(|(trigger, _)| text.contains(*trigger));
        if let Some((_, hook)) = hook {
            hook();
        }
    }

    fn flush(&self) {}
}

fn on_message(trigger: &'static str, hook: impl FnOnce() + Send + 'static) {
    *HOOK.lock().unwrap_or_else(|e| e.into_inner()) = Some((trigger, Box::new(hook)));
}

/// Runs `f` on a thread of its own; its result arrives on the receiver.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

#[test]
fn a_logger_that_blocks_or_calls_back_into_the_pool() {
    log::set_logger(&HookLogger).unwrap();
    log::set_max_level(LevelFilter::Trace);

    // 1. The logger calls back into the pool while shutdown logs that it
    //    began: the shutdown's lock must not be held around the logger.
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .thread_name("log-again")
            .build()
            .unwrap(),
    );
    let (started_tx, started_rx) = mpsc::channel();
    let running = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(common::PATIENCE)?;
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();
    let queued = pool.submit(|_| Ok(())).unwrap();
    let inner = Arc::clone(&pool);
    on_message("shutting down", move || drop(inner.shutdown_now()));
    let outer = Arc::clone(&pool);
    let shutdown = spawn(move || outer.shutdown());
    assert!(
        shutdown.recv_timeout(common::PATIENCE).is_ok(),
        "shutdown deadlocked on a logger that calls back into the pool"
    );
    // The logger's `shutdown_now` took effect.
    assert_eq!(running.status(), JobStatus::Cancelled);
    assert_eq!(queued.status(), JobStatus::Cancelled);
    drop(pool);
    assert!(common::no_threads_named("log-again"));

    // 2. The logger blocks the supervisor's last words: no shutdown caller
    //    may return while the supervisor thread still runs.
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .thread_name("log-block")
            .build()
            .unwrap(),
    );
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (blocked_tx, blocked_rx) = mpsc::channel::<()>();
    on_message("pool log-block stopped", move || {
        blocked_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(common::PATIENCE);
    });
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let pool = Arc::clone(&pool);
            spawn(move || pool.shutdown())
        })
        .collect();
    // The supervisor's last log call, before it marks the pool done.
    blocked_rx.recv_timeout(common::PATIENCE).unwrap();
    // Every caller is still waiting: before the fix, all but the one that
    // joined returned at once.
    for caller in &callers {
        assert!(
            caller.recv_timeout(Duration::from_millis(200)).is_err(),
            "a shutdown returned while the supervisor thread still ran"
        );
    }
    // A time-bounded shutdown says it could not join every thread.
    let timed = Arc::clone(&pool);
    assert!(!timed.shutdown_timeout(Duration::from_millis(50)).joined());
    release_tx.send(()).unwrap();
    for caller in callers {
        assert!(caller.recv_timeout(common::PATIENCE).is_ok());
    }
    drop(pool);
    assert!(common::no_threads_named("log-block"));

    // 3. `shutdown_now` logs that it began; the logger starts a (graceful)
    //    shutdown of the same pool, which waits for the threads. The running
    //    job's token must already be cancelled by then, or both wait for the
    //    job to end on its own.
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .thread_name("log-now")
            .build()
            .unwrap(),
    );
    let (started_tx, started_rx) = mpsc::channel();
    let running = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            token.sleep(common::PATIENCE)?;
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(common::PATIENCE).unwrap();
    let inner = Arc::clone(&pool);
    on_message("shutting down (Now)", move || inner.shutdown());
    let outer = Arc::clone(&pool);
    let stopped = spawn(move || outer.shutdown_now());
    // Well before the job would end by itself (PATIENCE).
    assert!(
        stopped.recv_timeout(Duration::from_secs(10)).is_ok(),
        "shutdown_now waited for a job whose token it had not cancelled yet"
    );
    assert_eq!(running.status(), JobStatus::Cancelled);
    drop(pool);
    assert!(common::no_threads_named("log-now"));

    // 4. The supervisor's last log line is slow: a `shutdown_timeout` that
    //    joins the supervisor still returns within about twice its timeout,
    //    saying it could not join every thread.
    let pool = Pool::builder()
        .workers(1)
        .thread_name("log-slow")
        .build()
        .unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    on_message("pool log-slow stopped", move || {
        let _ = release_rx.recv_timeout(common::PATIENCE);
    });
    let pool = Arc::new(pool);
    let timed = Arc::clone(&pool);
    let report = spawn(move || timed.shutdown_timeout(Duration::from_millis(100)));
    match report.recv_timeout(Duration::from_secs(10)) {
        Ok(report) => assert!(!report.joined(), "{report:?}"),
        Err(_) => panic!("shutdown_timeout(100 ms) waited for a slow logger"),
    }
    release_tx.send(()).unwrap();
    drop(pool);
    assert!(common::no_threads_named("log-slow"));
}
