//! `CancelToken::on_cancel`: callbacks that run once when a token is
//! cancelled, on the cancelling thread, contained when they panic, and
//! never run once unregistered; and unblocking a blocking TCP read with one.

mod common;

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::PATIENCE;
use harbor_pool::{
    CancelOutcome, CancelRegistration, CancelToken, JobOptions, JobResult, JobStatus, Pool,
};

/// The message of every deliberate panic here; `quiet_deliberate_panics`
/// keeps them off stderr.
const DELIBERATE: &str = "deliberate panic in a cancel callback";

/// Silences the panics this file causes on purpose (whatever thread they
/// happen on: a deadline's callback runs on the pool's supervisor), and
/// reports every other panic, such as a failing assertion, as usual.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message != Some(DELIBERATE) {
                report(info);
            }
        }));
    });
}

/// A callback that counts its runs.
fn counting(runs: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
    let runs = Arc::clone(runs);
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs `f` on its own thread and fails the test if it does not return
/// within `PATIENCE` (a deadlock fails instead of hanging the suite).
fn within_patience<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .expect("did not return within PATIENCE: deadlocked, or it panicked")
}

#[test]
fn a_callback_runs_exactly_once_however_many_cancel() {
    for _ in 0..200 {
        let token = CancelToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let _registration = token.on_cancel(counting(&runs));
        let start = Arc::new(Barrier::new(4));
        let cancellers: Vec<_> = (0..4)
            .map(|_| {
                let token = token.clone();
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    token.cancel();
                })
            })
            .collect();
        for canceller in cancellers {
            canceller.join().unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        token.cancel();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn callbacks_run_on_the_cancelling_thread_in_registration_order() {
    let token = CancelToken::new();
    let seen: Arc<Mutex<Vec<(usize, ThreadId)>>> = Arc::default();
    let registrations: Vec<CancelRegistration> = (0..5)
        .map(|i| {
            let seen = Arc::clone(&seen);
            token.on_cancel(move || seen.lock().unwrap().push((i, thread::current().id())))
        })
        .collect();
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing runs before a cancel"
    );

    let canceller = {
        let token = token.clone();
        thread::spawn(move || {
            token.cancel();
            thread::current().id()
        })
    };
    let canceller_id = canceller.thread().id();
    canceller.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        (0..5).map(|i| (i, canceller_id)).collect::<Vec<_>>(),
        "every callback ran once, in order, on the canceller, before cancel returned"
    );
    drop(registrations);
}

#[test]
fn a_callback_registered_after_the_cancel_runs_at_once_on_the_registering_thread() {
    let token = CancelToken::new();
    token.cancel();
    let ran_on = Arc::new(Mutex::new(None));
    let registration = {
        let ran_on = Arc::clone(&ran_on);
        token.on_cancel(move || *ran_on.lock().unwrap() = Some(thread::current().id()))
    };
    // Before `on_cancel` returned, on this thread.
    assert_eq!(*ran_on.lock().unwrap(), Some(thread::current().id()));
    drop(registration);

    // From a callback of the same token, while the cancel runs: at once too.
    let token = CancelToken::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let seen_inside = Arc::new(AtomicUsize::new(usize::MAX));
    let _outer = {
        let token = token.clone();
        let (runs, seen_inside) = (Arc::clone(&runs), Arc::clone(&seen_inside));
        token.clone().on_cancel(move || {
            let inner = token.on_cancel(counting(&runs));
            seen_inside.store(runs.load(Ordering::SeqCst), Ordering::SeqCst);
            drop(inner);
        })
    };
    within_patience(move || token.cancel());
    assert_eq!(
        seen_inside.load(Ordering::SeqCst),
        1,
        "ran inside on_cancel"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_dropped_registration_never_runs() {
    let token = CancelToken::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let kept = token.on_cancel(counting(&runs));
    drop(token.on_cancel(counting(&runs)));
    token.cancel();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the kept one ran");
    drop(kept);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A cancel takes every callback registered by then at once: one whose
/// registration an earlier callback drops still runs (the drop came after
/// the cancel began).
#[test]
fn a_cancel_runs_every_callback_registered_when_it_began() {
    let token = CancelToken::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let later: Arc<Mutex<Option<CancelRegistration>>> = Arc::default();
    let _first = {
        let later = Arc::clone(&later);
        token.on_cancel(move || drop(later.lock().unwrap().take()))
    };
    *later.lock().unwrap() = Some(token.on_cancel(counting(&runs)));
    within_patience(move || token.cancel());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(later.lock().unwrap().is_none());
}

/// Drop vs cancel from two threads, many times: the callback runs at most
/// once, and never when the drop returned before the cancel began, or when
/// the token was still not cancelled after the drop.
#[test]
fn drop_racing_cancel_runs_the_callback_at_most_once_and_never_after_the_drop() {
    const ROUNDS: usize = 5_000;
    let counts = within_patience(|| {
        let mut ran = 0;
        let mut dropped_first = 0;
        for _ in 0..ROUNDS {
            let token = CancelToken::new();
            let runs = Arc::new(AtomicUsize::new(0));
            let dropped = Arc::new(AtomicBool::new(false));
            let registration = token.on_cancel(counting(&runs));
            let start = Arc::new(Barrier::new(2));
            let dropper = {
                let (token, dropped, start) =
                    (token.clone(), Arc::clone(&dropped), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    drop(registration);
                    dropped.store(true, Ordering::SeqCst);
                    token.is_cancelled()
                })
            };
            start.wait();
            let dropped_before_cancel = dropped.load(Ordering::SeqCst);
            token.cancel();
            let cancelled_after_drop = dropper.join().unwrap();
            let runs = runs.load(Ordering::SeqCst);
            assert!(runs <= 1, "ran {runs} times");
            if dropped_before_cancel || !cancelled_after_drop {
                assert_eq!(runs, 0, "ran after its registration was dropped");
            }
            ran += runs;
            dropped_first += usize::from(dropped_before_cancel);
        }
        (ran, dropped_first)
    });
    // Not asserted (it depends on scheduling), but shows both orders happen.
    eprintln!(
        "{ROUNDS} rounds: the callback ran in {}, the drop came first in {}",
        counts.0, counts.1
    );
}

#[test]
fn a_panicking_callback_is_contained_and_the_others_still_run() {
    quiet_deliberate_panics();
    let token = CancelToken::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let _a = token.on_cancel(counting(&runs));
    let _b = token.on_cancel(|| panic!("{}", DELIBERATE));
    let _c = token.on_cancel(counting(&runs));
    let canceller = token.clone();
    // `within_patience` fails the test if the canceller panics.
    within_patience(move || canceller.cancel());
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // Registered after the cancel: run at once, and contained there too.
    let registering = token.clone();
    within_patience(move || {
        let _late = registering.on_cancel(|| panic!("{}", DELIBERATE));
    });
    assert!(token.is_cancelled());
}

/// Dropping a registration inside its own callback returns: it does not
/// wait for the callback it is called from.
#[test]
fn a_registration_dropped_inside_its_own_callback_does_not_deadlock() {
    let token = CancelToken::new();
    let slot: Arc<Mutex<Option<CancelRegistration>>> = Arc::default();
    let (done_tx, done_rx) = mpsc::channel();
    let registration = {
        let slot = Arc::clone(&slot);
        token.on_cancel(move || {
            drop(slot.lock().unwrap().take());
            done_tx.send(()).unwrap();
        })
    };
    *slot.lock().unwrap() = Some(registration);
    within_patience(move || token.cancel());
    done_rx.recv_timeout(PATIENCE).unwrap();
    assert!(slot.lock().unwrap().is_none());
}

/// A job that holds a lock its callback takes can drop its registration
/// while that callback runs: the drop does not wait for it.
#[test]
fn dropping_a_registration_while_its_callback_runs_does_not_wait_for_it() {
    let token = CancelToken::new();
    let shared = Arc::new(Mutex::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let registration = {
        let shared = Arc::clone(&shared);
        token.on_cancel(move || {
            started_tx.send(()).unwrap();
            *shared.lock().unwrap() += 1;
        })
    };
    let guard = shared.lock().unwrap();
    let canceller = {
        let token = token.clone();
        thread::spawn(move || token.cancel())
    };
    started_rx.recv_timeout(PATIENCE).unwrap();
    // The callback is blocked on `shared`, which this thread holds.
    within_patience(move || drop(registration));
    drop(guard);
    within_patience(move || canceller.join().unwrap());
    assert_eq!(*shared.lock().unwrap(), 1);
}

/// A registration holds the job's token, so it outlives the job (and the
/// pool) and still unregisters cleanly.
#[test]
fn a_registration_outlives_its_job_and_pool() {
    let pool = Pool::new(1).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let callback = counting(&runs);
    let job = pool
        .submit(move |token| Ok(token.on_cancel(callback)))
        .unwrap();
    let registration = job.join().unwrap();
    pool.shutdown();
    drop(pool);
    drop(registration);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a completed job's token is never cancelled"
    );
}

/// A connected pair on 127.0.0.1: the stream a job reads from, and its peer,
/// which never writes (the read blocks until something unblocks it).
fn silent_connection() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    (stream, peer)
}

/// A job blocked in `TcpStream::read` whose callback shuts the socket down.
/// It reports when it has registered the callback, and the thread the
/// callback ran on.
fn blocking_read_job(
    mut stream: TcpStream,
    registered: mpsc::Sender<()>,
    ran_on: mpsc::Sender<ThreadId>,
) -> impl FnOnce(&CancelToken) -> JobResult<usize> + Send + 'static {
    move |token| {
        let socket = stream.try_clone()?;
        let _unblock = token.on_cancel(move || {
            let _ = socket.shutdown(Shutdown::Both);
            let _ = ran_on.send(thread::current().id());
        });
        let _ = registered.send(());
        let mut buf = [0_u8; 16];
        // Blocks: the peer never writes. Returns 0 once shut down.
        let read = stream.read(&mut buf)?;
        token.check()?;
        Ok(read)
    }
}

#[test]
fn a_callback_that_shuts_the_socket_unblocks_a_read_cancelled_by_id() {
    let pool = Pool::new(1).unwrap();
    let (stream, _peer) = silent_connection();
    let (registered_tx, registered_rx) = mpsc::channel();
    let (ran_tx, ran_rx) = mpsc::channel();
    let job = pool
        .submit(blocking_read_job(stream, registered_tx, ran_tx))
        .unwrap();
    registered_rx.recv_timeout(PATIENCE).unwrap();
    let started = Instant::now();
    assert_eq!(pool.cancel(job.id()), CancelOutcome::Requested);
    // The callback ran inside `cancel`, on this thread.
    assert_eq!(ran_rx.try_recv(), Ok(thread::current().id()));
    assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));
    eprintln!("read unblocked {:?} after the cancel", started.elapsed());
    pool.shutdown();
}

#[test]
fn a_callback_that_shuts_the_socket_unblocks_a_read_past_its_deadline() {
    let pool = Pool::new(1).unwrap();
    let (stream, _peer) = silent_connection();
    let (registered_tx, registered_rx) = mpsc::channel();
    let (ran_tx, ran_rx) = mpsc::channel();
    // Long enough for the job to start and register first.
    let options = JobOptions::new().timeout(Duration::from_millis(300));
    let job = pool
        .submit_with(options, blocking_read_job(stream, registered_tx, ran_tx))
        .unwrap();
    registered_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));
    // The deadline's canceller: the pool's supervisor thread.
    let ran_on = ran_rx.recv_timeout(PATIENCE).unwrap();
    assert_ne!(ran_on, thread::current().id());
    pool.shutdown();
}

#[test]
fn a_callback_that_shuts_the_socket_unblocks_a_read_on_shutdown_now() {
    let pool = Pool::new(1).unwrap();
    let (stream, _peer) = silent_connection();
    let (registered_tx, registered_rx) = mpsc::channel();
    let (ran_tx, ran_rx) = mpsc::channel();
    let job = pool
        .submit(blocking_read_job(stream, registered_tx, ran_tx))
        .unwrap();
    registered_rx.recv_timeout(PATIENCE).unwrap();
    // Returns once every thread is joined, so the read was unblocked.
    within_patience(move || pool.shutdown_now());
    ran_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));
}

/// A callback panicking on the pool's supervisor (a deadline) costs the
/// pool nothing: the job still ends, and later deadlines still fire.
#[test]
fn a_panicking_callback_on_a_deadline_leaves_the_supervisor_working() {
    quiet_deliberate_panics();
    let pool = Pool::new(1).unwrap();
    for _ in 0..2 {
        let (ran_tx, ran_rx) = mpsc::channel();
        let options = JobOptions::new().timeout(Duration::from_millis(200));
        let job = pool
            .submit_with(options, move |token| {
                let _boom = token.on_cancel(|| panic!("{}", DELIBERATE));
                let _after = token.on_cancel(move || ran_tx.send(()).unwrap());
                token.sleep(PATIENCE)?;
                Ok(())
            })
            .unwrap();
        assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));
        // The callback after the panicking one ran too.
        ran_rx.recv_timeout(PATIENCE).unwrap();
    }
    assert_eq!(pool.stats().alive, 1);
    pool.shutdown();
}
