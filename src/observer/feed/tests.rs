//! Tests of the feed and the observer thread: panicking drops of observed
//! jobs, and a cancel racing shutdown.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use super::{Drain, Feed, MAX_BATCH, note};
use crate::job::{JobInfo, JobStatus, new_cell};
use crate::registry::CancelStep;
use crate::stats::Ending;
use crate::sync::{PATIENCE, lock};
use crate::{CancelToken, JobId, JobObserver, JobOptions, Pool};

#[derive(Default)]
struct Seen(Mutex<Vec<JobInfo>>);

impl JobObserver for Seen {
    fn observe(&self, batch: &[JobInfo]) {
        self.0.lock().unwrap().extend_from_slice(batch);
    }
}

/// Panics on drop, like a user value whose `Drop` panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("drop boom");
    }
}

/// The observer thread may hold the last reference to several jobs of a
/// batch, and dropping a job may run user code (here its closure, never
/// run). Two such drops that panic must not abort the process (a second
/// panic while unwinding from the first would): each is contained on
/// its own.
#[test]
fn panicking_drops_of_observed_jobs_are_contained() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let feed = Arc::new(Feed::new(16, "obs-drops"));
    let rx = lock(&feed.rx).take().unwrap();
    let seen = Arc::new(Seen::default());
    let mut drain = Drain {
        shared: Arc::clone(&pool.shared),
        feed: Arc::clone(&feed),
        observer: seen.clone(),
        rx,
        jobs: Vec::new(),
        batch: Vec::new(),
    };
    for _ in 0..3 {
        let doomed = PanicOnDrop;
        let (job, parts) = new_cell(
            JobId::new(),
            JobOptions::default(),
            Some(Arc::clone(&feed)),
            move |_: &CancelToken| {
                let _doomed = &doomed;
                Ok(())
            },
        );
        note(&job);
        // The buffer now holds the only reference.
        drop((job, parts));
    }
    assert_eq!(drain.drain(None, MAX_BATCH), 3);
    assert_eq!(seen.0.lock().unwrap().len(), 3);
    assert_eq!(feed.queued.load(Relaxed), 0);
}

/// A pending job cancelled by id from a user thread while the pool
/// shuts down: the canceller turns the record `Cancelled`, and only
/// then notes it. Here it is held between the two steps (the window is
/// a few instructions wide in `Shared::cancel_keeping_closure`), while
/// the worker finds the job cancelled, skips it and exits. Its final
/// state must still be delivered: the observer may stop only once the
/// canceller is done.
#[test]
fn a_cancel_racing_shutdown_is_delivered() {
    let seen = Arc::new(Seen::default());
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .thread_name("obs-cancel-race")
            .observer(seen.clone())
            .observer_shutdown_timeout(PATIENCE)
            .build()
            .unwrap(),
    );
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    pool.execute(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(PATIENCE);
    })
    .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let id = pool.submit(|_| Ok(())).unwrap().id();
    // Its `Pending` delivered, so the cancel's note has to push it again.
    assert!(crate::sync::eventually(|| {
        seen.0.lock().unwrap().iter().any(|info| info.id == id)
    }));
    let job = pool.shared.registry.get(id).unwrap();
    // The canceller's first step (`Record::cancel`)...
    let CancelStep::Cancelled(notify) = job.record().cancel() else {
        panic!("not pending");
    };
    drop(release_tx);
    let (done_tx, done_rx) = mpsc::channel();
    let stopping = Arc::clone(&pool);
    thread::spawn(move || {
        stopping.shutdown();
        done_tx.send(()).unwrap();
    });
    // Not synchronisation: without the fix, shutdown is over by now
    // (the worker skipped the job and exited, the observer drained and
    // stopped); with it, shutdown waits for the canceller. The check
    // below holds either way it goes.
    let early = done_rx.recv_timeout(Duration::from_millis(300)).is_ok();
    // ...and its bookkeeping (`Shared::ended`: note, then count).
    note(&job);
    pool.shared.counters.others.count(Ending::Cancelled);
    notify.send(job.record());
    pool.shared.check_idle();
    if !early {
        done_rx.recv_timeout(PATIENCE).expect("shutdown returned");
    }
    let seen = seen.0.lock().unwrap();
    let last = seen.iter().rfind(|info| info.id == id).unwrap();
    assert_eq!(last.status, JobStatus::Cancelled, "{seen:?}");
}
