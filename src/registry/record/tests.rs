//! Tests of [`Record`](super::Record): its transitions, derived times and
//! wakers.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;

#[test]
fn first_terminal_state_wins() {
    let record = Record::new(JobId::new(), None, None);
    assert!(record.start(0));
    assert!(!record.start(0), "running cannot start again");
    assert!(matches!(record.cancel(), CancelStep::Running));
    record.finish(JobStatus::Completed).unwrap().send(&record);
    assert!(record.finish(JobStatus::Failed("late".into())).is_none());
    assert!(matches!(record.cancel(), CancelStep::Finished));
    assert_eq!(record.status(), JobStatus::Completed);
}

#[test]
fn cancelled_pending_never_starts() {
    let record = Record::new(JobId::new(), None, None);
    assert!(matches!(record.cancel(), CancelStep::Cancelled(_)));
    assert!(!record.start(0));
    assert_eq!(record.status(), JobStatus::Cancelled);
    assert!(record.info(&[]).finished_at.is_some());
}

#[test]
fn times_derived_from_ticks_stay_in_order() {
    let from = metrics::now();
    let from_wall = SystemTime::now();
    // Near: the known time plus the ticks since.
    let near = wall_after(from, from_wall, from);
    assert_eq!(near, from_wall);
    // A tick read on another core, slightly before: not before it.
    assert!(wall_after(from, from_wall, from.saturating_sub(1_000)) >= from_wall);
    // A known time ahead of the wall clock (it stepped back since), far
    // behind: the wall clock's time, but never before the known one.
    let ahead = from_wall + Duration::from_secs(3_600);
    assert_eq!(wall_after(from, ahead, from), ahead);
    // Far: read from the wall clock, not extrapolated from long ago.
    let far = wall_after(1, SystemTime::UNIX_EPOCH, from);
    let second = Duration::from_secs(1);
    assert!(from_wall - second <= far && far <= SystemTime::now() + second);
    let record = Record::new(JobId::new(), None, None);
    assert!(record.start(0));
    record.finish(JobStatus::Completed).unwrap().send(&record);
    let info = record.info(&[]);
    let (started, finished) = (info.started_at.unwrap(), info.finished_at.unwrap());
    assert!(info.submitted_at <= started && started <= finished);
    assert!(finished <= SystemTime::now() + Duration::from_millis(1));
}

/// A job's wall times come from ticks and a per-thread anchor that can
/// be ahead of the wall clock (an anchor paired with an older tick, or
/// a clock stepped back): a cancel or an abandonment, which read the
/// wall clock, still never end a job before it was submitted or
/// started. (Found by review; both failed before the clamps.)
#[test]
fn cancel_and_abandon_times_stay_in_order() {
    std::thread::spawn(|| {
        // This thread's anchor pairs a fresh wall reading with a tick
        // 3 ms old, as a worker's stale boundary tick can.
        let stale = metrics::now();
        let since = Instant::now();
        // Bounded: 3 ms.
        while since.elapsed() < Duration::from_millis(3) {
            std::hint::spin_loop();
        }
        let _ = metrics::wall_at(stale);
        let cancelled = Record::new(JobId::new(), None, None);
        let abandoned = Record::new(JobId::new(), None, None);
        let CancelStep::Cancelled(notify) = cancelled.cancel() else {
            panic!("pending")
        };
        notify.send(&cancelled);
        assert!(abandoned.start(0));
        abandoned.abandon().unwrap().send(&abandoned);
        let (c, a) = (cancelled.info(&[]), abandoned.info(&[]));
        assert!(c.finished_at.unwrap() >= c.submitted_at, "{c:?}");
        assert!(a.finished_at.unwrap() >= a.started_at.unwrap(), "{a:?}");
    })
    .join()
    .unwrap();
}

#[test]
fn wait_times_out_then_sees_terminal() {
    let record = Record::new(JobId::new(), None, None);
    let soon = Instant::now() + Duration::from_millis(5);
    assert_eq!(record.wait(Some(soon)), None);
    let _ = record.finish(JobStatus::Cancelled);
    assert_eq!(record.wait(Some(soon)), Some(JobStatus::Cancelled));
}

/// A waker that counts its wakes; its live clones are its `Arc`'s
/// strong count less the test's own reference.
#[derive(Default)]
struct Counted {
    wakes: AtomicUsize,
    panics: bool,
}

impl std::task::Wake for Counted {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panics, "waker panics");
    }
}

/// Wakers over `counted` alive now.
fn live(counted: &Arc<Counted>) -> usize {
    Arc::strong_count(counted) - 1
}

fn counted_waker(counted: &Arc<Counted>) -> Waker {
    Waker::from(Arc::clone(counted))
}

fn poll(record: &Record, waker: &Waker, key: &mut Option<Key>) -> Poll<JobStatus> {
    record.poll_terminal(&mut Context::from_waker(waker), key)
}

#[test]
fn a_poll_registers_once_and_replaces_only_another_task() {
    let record = Record::new(JobId::new(), None, None);
    let (a, b) = (Arc::default(), Arc::default());
    let (waker_a, waker_b) = (counted_waker(&a), counted_waker(&b));
    let mut key = None;
    assert!(poll(&record, &waker_a, &mut key).is_pending());
    assert_eq!(record.registered_wakers(), 1);
    // The same task again: nothing stored anew.
    let stored = key;
    assert!(poll(&record, &waker_a, &mut key).is_pending());
    assert!(poll(&record, &waker_a.clone(), &mut key).is_pending());
    assert_eq!((key, record.registered_wakers()), (stored, 1));
    // Another task: it replaces the first, which is dropped.
    assert!(poll(&record, &waker_b, &mut key).is_pending());
    assert_eq!((key, record.registered_wakers()), (stored, 1));
    drop(waker_a);
    assert_eq!(live(&a), 0, "the replaced waker was dropped");
    assert!(record.start(0));
    record.finish(JobStatus::Completed).unwrap().send(&record);
    assert_eq!(a.wakes.load(Ordering::SeqCst), 0);
    assert_eq!(b.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(record.registered_wakers(), 0);
    assert_eq!(
        poll(&record, &waker_b, &mut key),
        Poll::Ready(JobStatus::Completed)
    );
    assert_eq!(key, None);
    drop(waker_b);
    assert_eq!(live(&b), 0);
}

#[test]
fn unregister_withdraws_and_leaves_others() {
    let record = Record::new(JobId::new(), None, None);
    let counted = Arc::default();
    let waker = counted_waker(&counted);
    let mut keys = [None, None];
    for key in &mut keys {
        assert!(poll(&record, &waker, key).is_pending());
    }
    assert_eq!(record.registered_wakers(), 2);
    record.unregister(keys[0].unwrap());
    record.unregister(keys[0].unwrap()); // twice: no effect
    assert_eq!(record.registered_wakers(), 1);
    let CancelStep::Cancelled(notify) = record.cancel() else {
        panic!("pending")
    };
    // Unregistering after the transition took the wakers finds nothing.
    record.unregister(keys[1].unwrap());
    drop(waker);
    assert_eq!(live(&counted), 1, "the transition holds the last waker");
    notify.send(&record);
    assert_eq!(counted.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(live(&counted), 0);
}

#[test]
fn a_panicking_waker_does_not_stop_the_others() {
    let record = Record::new(JobId::new(), None, None);
    let bad = Arc::new(Counted {
        panics: true,
        ..Counted::default()
    });
    let good = Arc::default();
    let (mut bad_key, mut good_key) = (None, None);
    assert!(poll(&record, &counted_waker(&bad), &mut bad_key).is_pending());
    assert!(poll(&record, &counted_waker(&good), &mut good_key).is_pending());
    let CancelStep::Cancelled(notify) = record.cancel() else {
        panic!("pending")
    };
    notify.send(&record);
    assert_eq!(bad.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(good.wakes.load(Ordering::SeqCst), 1);
    assert_eq!((live(&bad), live(&good)), (0, 0));
}

#[test]
fn many_short_lived_polls_leave_nothing_registered() {
    let record = Record::new(JobId::new(), None, None);
    assert!(record.start(0));
    let counted = Arc::default();
    for _ in 0..10_000 {
        let waker = counted_waker(&counted);
        let mut key = None;
        assert!(poll(&record, &waker, &mut key).is_pending());
        record.unregister(key.unwrap());
    }
    assert_eq!(record.registered_wakers(), 0);
    assert_eq!(live(&counted), 0);
}

/// Every terminal transition leaves the lock-free code saying what the
/// locked status says (invariant 10), and the code never changes after.
#[test]
fn the_settled_code_follows_every_terminal_transition() {
    let finished = |status: JobStatus| {
        let record = Record::new(JobId::new(), None, None);
        assert!(record.start(0));
        record.finish(status).unwrap().send(&record);
        record
    };
    let cancelled = Record::new(JobId::new(), None, None);
    assert!(matches!(cancelled.cancel(), CancelStep::Cancelled(_)));
    let abandoned = Record::new(JobId::new(), None, None);
    assert!(abandoned.start(0));
    abandoned.abandon().unwrap().send(&abandoned);
    let cases = [
        (finished(JobStatus::Completed), Some(JobStatus::Completed)),
        (finished(JobStatus::Cancelled), Some(JobStatus::Cancelled)),
        // Failed carries a message: read under the lock.
        (finished(JobStatus::Failed("boom".into())), None),
        (cancelled, Some(JobStatus::Cancelled)),
        (abandoned, Some(JobStatus::Abandoned)),
    ];
    for (record, settled) in cases {
        assert_eq!(record.settled(), settled);
        assert!(record.is_terminal());
        // A later transition is refused and leaves the code alone.
        assert!(record.finish(JobStatus::Completed).is_none());
        assert!(record.abandon().is_none());
        assert_eq!(record.settled(), settled);
        assert_eq!(record.wait(None), Some(record.status()));
    }
    let pending = Record::new(JobId::new(), None, None);
    assert_eq!(pending.settled(), None);
    assert!(!pending.is_terminal());
    assert!(pending.start(0));
    assert_eq!(pending.settled(), None);
    assert!(!pending.is_terminal());
}

/// Waiting on a record that has finished (a `join` after the job ended)
/// does not take its lock, except for a `Failed` status, whose message is
/// under it (invariant 10). Without the code, the first wait below blocks
/// until the lock is released and the test fails.
#[test]
fn waiting_on_a_finished_record_skips_its_lock() {
    let record = Arc::new(Record::new(JobId::new(), None, None));
    assert!(record.start(0));
    record.finish(JobStatus::Completed).unwrap().send(&record);
    let held = lock(&record.state);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let record = Arc::clone(&record);
        std::thread::spawn(move || tx.send(record.wait(None)).unwrap())
    };
    let seen = rx.recv_timeout(Duration::from_secs(10));
    drop(held);
    waiter.join().unwrap();
    assert_eq!(seen, Ok(Some(JobStatus::Completed)), "waited on the lock");

    let failed = Arc::new(Record::new(JobId::new(), None, None));
    assert!(failed.start(0));
    let status = JobStatus::Failed("boom".into());
    failed.finish(status.clone()).unwrap().send(&failed);
    assert_eq!(failed.wait(None), Some(status));
}

/// A time kept as nanoseconds after the submission reads back exactly, an
/// earlier one reads as the submission, and none as none.
#[test]
fn times_after_the_submission_round_trip() {
    let base = SystemTime::now();
    let later = base + Duration::new(3_600, 123_456_789);
    assert_eq!(Since::at(base, later).get(base), Some(later));
    assert_eq!(
        Since::at(base, base - Duration::from_secs(1)).get(base),
        Some(base)
    );
    assert_eq!(Since::NONE.get(base), None);
    assert!(!Since::NONE.is_some());
}

/// Every job pays for its record's size on every line it touches (a
/// probe measured 17% more per tracked job for 128 more bytes): its token
/// state and its times stay compact.
#[test]
#[cfg(all(target_pointer_width = "64", not(loom)))]
fn a_record_stays_small() {
    assert!(size_of::<crate::cancel::TokenState>() <= 24);
    assert!(size_of::<Record>() <= 216, "{} bytes", size_of::<Record>());
}
