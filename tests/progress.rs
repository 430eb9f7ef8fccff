//! Progress reported through a job's token, read by id and by handle.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Instant;

use common::PATIENCE;
use harbor_pool::{CancelOutcome, CancelToken, JobResult, JobStatus, Pool, Progress};

fn numbers(progress: &Option<Progress>) -> Option<(u64, Option<u64>)> {
    progress.as_ref().map(|p| (p.done, p.total))
}

#[test]
fn info_sees_progress_while_the_job_runs_and_after_it_ends() {
    let pool = Pool::new(1).unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (reported_tx, reported_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let handle = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(PATIENCE).unwrap();
            token.set_progress_message("phase one");
            token.set_progress(3, Some(10));
            reported_tx.send(()).unwrap();
            go_rx.recv_timeout(PATIENCE).unwrap();
            token.set_progress(10, Some(10));
            token.set_progress_message("done");
            Ok(())
        })
        .unwrap();
    let id = handle.id();

    started_rx.recv_timeout(PATIENCE).unwrap();
    let info = pool.info(id).unwrap();
    assert_eq!(info.status, JobStatus::Running);
    assert_eq!(info.progress, None, "nothing reported yet");
    assert_eq!(handle.progress(), None);

    go_tx.send(()).unwrap();
    reported_rx.recv_timeout(PATIENCE).unwrap();
    let info = pool.info(id).unwrap();
    assert_eq!(info.status, JobStatus::Running);
    let progress = info.progress.unwrap();
    assert_eq!((progress.done, progress.total), (3, Some(10)));
    assert_eq!(progress.message.as_deref(), Some("phase one"));
    assert_eq!(handle.progress(), Some(progress));

    go_tx.send(()).unwrap();
    assert_eq!(handle.wait(PATIENCE), Some(JobStatus::Completed));
    let info = pool.info(id).unwrap();
    let progress = info.progress.unwrap();
    assert_eq!((progress.done, progress.total), (10, Some(10)));
    assert_eq!(progress.message.as_deref(), Some("done"));
    assert_eq!(progress.fraction(), Some(1.0));
    // The handle reads the same record, also after join consumed nothing
    // of it.
    assert_eq!(handle.progress(), Some(progress));
    handle.join().unwrap();
}

#[test]
fn progress_survives_in_finished_records_of_every_ending() {
    common::quiet_panics();
    let pool = Pool::new(2).unwrap();
    let completed = pool
        .submit(|token| {
            token.set_progress(1, Some(1));
            Ok(())
        })
        .unwrap()
        .id(); // the handle is dropped: detached
    let failed = pool
        .submit(|token| -> JobResult<()> {
            token.set_progress(2, None);
            Err("bad input".into())
        })
        .unwrap()
        .id();
    let panicked = pool
        .submit(|token| -> JobResult<()> {
            token.set_progress_message("about to panic");
            panic!("boom")
        })
        .unwrap()
        .id();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let cancelled = pool
        .submit(move |token| {
            token.set_progress(5, Some(100));
            started_tx.send(()).unwrap();
            token.sleep(PATIENCE * 2)?;
            Ok(())
        })
        .unwrap()
        .id();
    started_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(pool.cancel(cancelled), CancelOutcome::Requested);

    let expect = [
        (completed, JobStatus::Completed, Some((1, Some(1))), None),
        (
            failed,
            JobStatus::Failed("bad input".into()),
            Some((2, None)),
            None,
        ),
        (
            panicked,
            JobStatus::Failed("boom".into()),
            Some((0, None)),
            Some("about to panic"),
        ),
        (cancelled, JobStatus::Cancelled, Some((5, Some(100))), None),
    ];
    for (id, status, numbers_expected, message) in expect {
        assert_eq!(pool.wait(id, PATIENCE), Some(status));
        let info = pool.info(id).unwrap();
        assert_eq!(numbers(&info.progress), numbers_expected, "{id}");
        assert_eq!(info.progress.unwrap().message.as_deref(), message, "{id}");
    }
}

#[test]
fn a_job_cancelled_while_queued_has_no_progress() {
    let pool = Pool::new(1).unwrap();
    let release = common::block_worker(&pool);
    let queued = pool
        .submit(|token| {
            token.set_progress(1, None);
            Ok(())
        })
        .unwrap();
    assert_eq!(queued.cancel(), CancelOutcome::Cancelled);
    drop(release);
    assert_eq!(queued.wait(PATIENCE), Some(JobStatus::Cancelled));
    assert_eq!(pool.info(queued.id()).unwrap().progress, None);
}

#[test]
fn numbers_and_message_are_set_apart() {
    let pool = Pool::new(1).unwrap();
    let (step_tx, step_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let handle = pool
        .submit(move |token| {
            let step = |token: &CancelToken, f: &dyn Fn(&CancelToken)| {
                f(token);
                step_tx.send(()).unwrap();
                go_rx.recv_timeout(PATIENCE).unwrap();
            };
            step(token, &|t| t.set_progress_message("only a message"));
            step(token, &|t| t.set_progress(7, None));
            step(token, &|t| t.set_progress_message(""));
            Ok(())
        })
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        step_rx.recv_timeout(PATIENCE).unwrap();
        seen.push(handle.progress().unwrap());
        go_tx.send(()).unwrap();
    }
    handle.join().unwrap();
    let summary: Vec<_> = seen
        .iter()
        .map(|p| (p.done, p.total, p.message.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (0, None, Some("only a message")),
            (7, None, Some("only a message")), // numbers keep the message
            (7, None, None),                   // an empty message clears it
        ]
    );
}

#[test]
fn the_message_is_capped_at_a_character_boundary() {
    let cap = Progress::MAX_MESSAGE_BYTES;
    let pool = Pool::new(1).unwrap();
    // "€" is 3 bytes, so no multiple of it ends exactly at the cap.
    let euros = "€".repeat(cap);
    let long = format!("{euros}{}", "x".repeat(1 << 20));
    let handle = pool
        .submit(move |token| {
            token.set_progress_message(long);
            Ok(())
        })
        .unwrap();
    handle.wait(PATIENCE);
    let message = handle.progress().unwrap().message.unwrap();
    assert!(
        message.len() <= cap && message.len() > cap - 3,
        "{}",
        message.len()
    );
    assert!(message.chars().all(|c| c == '€'));
    assert_eq!(message.len() % 3, 0);
}

#[test]
fn a_token_outside_a_pool_ignores_progress() {
    let token = CancelToken::new();
    token.set_progress(1, Some(2));
    token.set_progress_message("nowhere to go");
    // Still a working token.
    assert!(!token.is_cancelled());
    token.cancel();
    assert!(token.check().is_err());
}

/// Threads of one job report through clones of its token while readers
/// poll by id and by handle: a reader never sees `done` from one report
/// with `total` from another. Every report has `total == Some(done)` for
/// even `done` and no total for odd `done`, so a torn pair shows. Repeated
/// with a watchdog: each round is bounded by `PATIENCE`.
#[test]
fn concurrent_reports_and_readers_never_tear() {
    const ROUNDS: usize = 200;
    const WRITERS: u64 = 3;
    const REPORTS: u64 = 20_000;
    let pool = Arc::new(Pool::new(2).unwrap());
    // If writers ever wedge (a broken lock), the test fails by its deadline
    // and this keeps dropping the pool from waiting for them.
    let _bounded = ShutdownBounded(Arc::clone(&pool));
    for round in 0..ROUNDS {
        let deadline = Instant::now() + PATIENCE;
        let start = Arc::new(Barrier::new(2));
        let job_start = Arc::clone(&start);
        let handle = pool
            .submit(move |token| {
                job_start.wait();
                thread::scope(|scope| {
                    for writer in 0..WRITERS {
                        scope.spawn(move || {
                            for report in 0..REPORTS {
                                let done = writer << 32 | report;
                                let total = (done % 2 == 0).then_some(done);
                                token.set_progress(done, total);
                            }
                        });
                    }
                });
                Ok(())
            })
            .unwrap();
        let id = handle.id();
        let finished = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|reader| {
                let pool = Arc::clone(&pool);
                let finished = Arc::clone(&finished);
                thread::spawn(move || {
                    let mut reads = 0_u64;
                    // Bounded by the job finishing, or by the deadline.
                    while !finished.load(Ordering::Acquire) && Instant::now() < deadline {
                        let progress = pool.info(id).and_then(|info| info.progress);
                        if let Some(p) = progress {
                            let expected = (p.done % 2 == 0).then_some(p.done);
                            assert_eq!(p.total, expected, "torn (reader {reader})");
                            reads += 1;
                        }
                    }
                    reads
                })
            })
            .collect();
        start.wait();
        // The handle reads too, from this thread.
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "round {round} did not finish");
            if let Some(p) = handle.progress() {
                assert_eq!(p.total, (p.done % 2 == 0).then_some(p.done), "torn");
            }
        }
        finished.store(true, Ordering::Release);
        for reader in readers {
            reader.join().expect("a reader saw a torn pair");
        }
        let last = handle.progress().unwrap();
        assert_eq!(
            last.done & 0xffff_ffff,
            REPORTS - 1,
            "a writer's last report is last"
        );
        assert!(last.done >> 32 < WRITERS);
        handle.join().unwrap();
    }
}

/// Shuts its pool down within a bounded time when dropped, also while a
/// failed test unwinds: the threads of a job that never ends are left to
/// finish on their own instead of hanging the test.
struct ShutdownBounded(Arc<Pool>);

impl Drop for ShutdownBounded {
    fn drop(&mut self) {
        self.0.shutdown_timeout(PATIENCE);
    }
}
