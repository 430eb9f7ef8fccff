//! `Builder::on_panic`: called for every job panic, tracked or untracked,
//! once the job's bookkeeping is done; a panic in it is contained.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};

use harbor_pool::{CapturePanics, JobResult, JobStatus, PanicReport, Pool};

#[test]
fn tracked_and_untracked_panics_reach_the_callback() {
    common::quiet_panics();
    let (tx, rx) = mpsc::channel::<PanicReport>();
    let pool = Pool::builder()
        .workers(2)
        .thread_name("report")
        .capture_panics(CapturePanics::Location)
        .on_panic(move |report| tx.send(report.clone()).unwrap())
        .build()
        .unwrap();

    let line = line!() + 1;
    pool.execute(|| panic!("untracked")).unwrap();
    let report = rx.recv_timeout(common::PATIENCE).unwrap();
    assert_eq!(report.job_id, None);
    assert_eq!(report.panic.message, "untracked");
    assert!(
        report.panic.thread.starts_with("report-"),
        "{}",
        report.panic.thread
    );
    let location = report.panic.location.clone().expect("captured");
    assert_eq!((location.file.as_str(), location.line), (file!(), line));

    let job = pool
        .submit(|_| -> JobResult<()> { panic!("tracked {}", 1) })
        .unwrap();
    let report = rx.recv_timeout(common::PATIENCE).unwrap();
    assert_eq!(report.job_id, Some(job.id()));
    assert_eq!(report.panic.message, "tracked 1");
    // The report and the job's record share the one allocation.
    let recorded = pool.info(job.id()).unwrap().panic.unwrap();
    assert!(Arc::ptr_eq(&report.panic, &recorded));

    // Jobs that end any other way do not call it.
    pool.submit(|_| Ok(())).unwrap();
    pool.submit(|_| -> JobResult<()> { Err("plain error".into()) })
        .unwrap();
    pool.execute(|| ()).unwrap();
    common::join(&pool);
    pool.shutdown(); // joins the workers: any callback is over
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.failed), (2, 3));
}

#[test]
fn a_slow_callback_does_not_hold_back_the_jobs_status() {
    common::quiet_panics();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let pool = Pool::builder()
        .workers(1)
        .on_panic(move |report| {
            entered_tx.send(report.job_id).unwrap();
            let _ = release_rx.lock().unwrap().recv_timeout(common::PATIENCE);
        })
        .build()
        .unwrap();
    let job = pool
        .submit(|_| -> JobResult<()> { panic!("slow callback") })
        .unwrap();
    assert_eq!(
        entered_rx.recv_timeout(common::PATIENCE).unwrap(),
        Some(job.id())
    );
    // The callback is blocked now; the job was terminal and counted before
    // it was called (no wait needed here).
    assert_eq!(job.status(), JobStatus::Failed("slow callback".into()));
    assert_eq!(pool.stats().panicked, 1);
    assert!(pool.join_timeout(common::PATIENCE));
    release_tx.send(()).unwrap();
    // The worker takes jobs again once the callback returns.
    let next = pool.submit(|_| Ok(2)).unwrap();
    assert_eq!(
        next.join_timeout(common::PATIENCE).ok().unwrap().unwrap(),
        2
    );
}

#[test]
fn a_panicking_callback_is_contained() {
    common::quiet_panics();
    common::init_logging();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let pool = Pool::builder()
        .workers(1)
        .thread_name("bad-callback")
        .on_panic(move |report| {
            counted.fetch_add(1, Ordering::SeqCst);
            panic!("the callback failed on {}", report.panic.message)
        })
        .build()
        .unwrap();
    let mut jobs = Vec::new();
    for i in 0..3 {
        pool.execute(move || panic!("untracked {i}")).unwrap();
        jobs.push(
            pool.submit(move |_| -> JobResult<()> { panic!("tracked {i}") })
                .unwrap(),
        );
    }
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(
            job.wait(common::PATIENCE),
            Some(JobStatus::Failed(format!("tracked {i}")))
        );
    }
    common::join(&pool);
    // The worker survived every callback panic and still serves jobs.
    let next = pool.submit(|_| Ok(7)).unwrap();
    assert_eq!(
        next.join_timeout(common::PATIENCE).ok().unwrap().unwrap(),
        7
    );
    let stats = pool.stats();
    assert_eq!((stats.alive, stats.restarts), (1, 0), "{stats:?}");
    assert_eq!((stats.panicked, stats.completed), (6, 1), "{stats:?}");
    pool.shutdown(); // joins the worker: every callback is over
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}
