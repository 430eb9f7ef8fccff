//! loom models of a record's transitions (declared, with what they model,
//! in the parent module, `record.rs`). "Invariant N" means the registry's
//! list (`registry.rs`).

use loom::sync::Arc;
use loom::thread;

use super::{CancelStep, Record};
use crate::job::{JobId, JobStatus};
use crate::sync::model;

fn record() -> Arc<Record> {
    Arc::new(Record::new(JobId::new(), None, None))
}

/// Finish vs cancel on a pending record: the first terminal state wins
/// (invariant 1), exactly one of them owes waiters a notification, and
/// a waiter wakes with the winner's status.
#[test]
fn loom_finish_vs_cancel() {
    model(|| {
        let record = record();
        let finisher = {
            let record = Arc::clone(&record);
            thread::spawn(move || {
                let failed = JobStatus::Failed("lost".into());
                record.finish(failed).map(|notify| notify.send(&record))
            })
        };
        let canceller = {
            let record = Arc::clone(&record);
            thread::spawn(move || match record.cancel() {
                CancelStep::Cancelled(notify) => {
                    notify.send(&record);
                    true
                }
                CancelStep::Running => panic!("never started"),
                CancelStep::Finished => false,
            })
        };
        let seen = record.wait(None);
        let finished = finisher.join().unwrap().is_some();
        let cancelled = canceller.join().unwrap();
        assert!(finished != cancelled, "exactly one terminal transition");
        let winner = if cancelled {
            JobStatus::Cancelled
        } else {
            JobStatus::Failed("lost".into())
        };
        assert_eq!(seen.as_ref(), Some(&winner));
        assert_eq!(record.status(), winner);
    });
}

/// Finish vs a waiter: the waiter sees the terminal status or is woken
/// by the finish.
#[test]
fn loom_finish_vs_waiter() {
    model(|| {
        let record = record();
        assert!(record.start(0));
        let waiter = {
            let record = Arc::clone(&record);
            thread::spawn(move || record.wait(None))
        };
        record
            .finish(JobStatus::Completed)
            .expect("the worker that started it finishes it")
            .send(&record);
        assert_eq!(waiter.join().unwrap(), Some(JobStatus::Completed));
    });
}

/// Finish vs a future's poll: the future sees the terminal status or
/// its waker is taken and woken by the finish (invariant 7); none is
/// left registered. A lost wake-up shows as loom's deadlock report.
#[test]
fn loom_finish_vs_poll() {
    model(|| {
        let record = record();
        assert!(record.start(0));
        let finisher = {
            let record = Arc::clone(&record);
            thread::spawn(move || {
                record
                    .finish(JobStatus::Completed)
                    .expect("the worker that started it finishes it")
                    .send(&record);
            })
        };
        let mut key = None;
        let status = loom::future::block_on(std::future::poll_fn(|cx| {
            record.poll_terminal(cx, &mut key)
        }));
        assert_eq!(status, JobStatus::Completed);
        assert_eq!(key, None);
        finisher.join().unwrap();
        assert_eq!(record.registered_wakers(), 0);
    });
}

/// Cancel vs a future that polls once and is dropped: whichever comes
/// first, no waker stays registered and nothing panics.
#[test]
fn loom_cancel_vs_dropped_future() {
    model(|| {
        let record = record();
        let canceller = {
            let record = Arc::clone(&record);
            thread::spawn(move || match record.cancel() {
                CancelStep::Cancelled(notify) => notify.send(&record),
                _ => panic!("only this thread ends it"),
            })
        };
        let waker = std::task::Waker::noop();
        let mut key = None;
        let polled = record.poll_terminal(&mut std::task::Context::from_waker(waker), &mut key);
        if let Some(key) = key {
            assert!(polled.is_pending());
            record.unregister(key);
        } else {
            assert_eq!(polled, std::task::Poll::Ready(JobStatus::Cancelled));
        }
        canceller.join().unwrap();
        assert_eq!(record.registered_wakers(), 0);
    });
}

/// Start vs cancel: either the job starts and only its worker ends it
/// (invariant 2), or it is cancelled and never starts; one terminal
/// transition either way.
#[test]
fn loom_start_vs_cancel() {
    model(|| {
        let record = record();
        let worker = {
            let record = Arc::clone(&record);
            thread::spawn(move || {
                let started = record.start(0);
                if started {
                    record
                        .finish(JobStatus::Completed)
                        .expect("the worker that started it finishes it")
                        .send(&record);
                }
                started
            })
        };
        let step = record.cancel();
        let cancelled = matches!(step, CancelStep::Cancelled(_));
        if let CancelStep::Cancelled(notify) = step {
            notify.send(&record);
        }
        let started = worker.join().unwrap();
        assert!(started != cancelled, "exactly one terminal transition");
        let expected = if started {
            JobStatus::Completed
        } else {
            JobStatus::Cancelled
        };
        assert_eq!(record.status(), expected);
        assert_eq!(record.wait(None), Some(expected));
    });
}

/// A waiter that finds the record terminal without its lock (invariant 10)
/// sees everything its finisher wrote before the transition, as a `join`
/// must see the result stored in the job's slot: the write here is
/// `Relaxed`, so only the code's `Release`/`Acquire` orders it.
#[test]
fn loom_finish_publishes_to_a_lock_free_waiter() {
    use crate::sync::atomic::{AtomicUsize, Ordering};
    model(|| {
        let record = record();
        assert!(record.start(0));
        let result = Arc::new(AtomicUsize::new(0));
        let finisher = {
            let (record, result) = (Arc::clone(&record), Arc::clone(&result));
            thread::spawn(move || {
                result.store(7, Ordering::Relaxed);
                record
                    .finish(JobStatus::Completed)
                    .expect("the worker that started it finishes it")
                    .send(&record);
            })
        };
        // Lock-free if it is over already, else under the lock (woken by
        // the finish): either way the result is there.
        assert_eq!(record.wait(None), Some(JobStatus::Completed));
        assert_eq!(result.load(Ordering::Relaxed), 7);
        finisher.join().unwrap();
    });
}
