//! The observer seam: every tracked job's transitions reach a `JobObserver`
//! on the pool's observer thread, coalesced, in order, final states always
//! (also at shutdown), without ever blocking a worker.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::{PATIENCE, eventually, no_threads_named, threads_named};
use harbor_pool::{
    BuildError, Builder, CancelOutcome, JobId, JobInfo, JobObserver, JobOptions, JobResult,
    JobStatus, Pool, SubmitError,
};

/// Records every batch. Optionally holds its first `observe` call until
/// released, or panics in it.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Vec<JobInfo>>>,
    /// Told when the first call has begun, then waited on (bounded).
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    panic_first: AtomicBool,
    /// Per call, after recording (a slow consumer); not synchronisation.
    delay: Option<Duration>,
}

impl Recorder {
    /// A recorder whose first call blocks until the returned sender is used
    /// or dropped; the receiver hears when that call has begun.
    fn gated() -> (Arc<Recorder>, mpsc::Sender<()>, mpsc::Receiver<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let recorder = Recorder {
            gate: Mutex::new(Some((entered_tx, release_rx))),
            ..Recorder::default()
        };
        (Arc::new(recorder), release_tx, entered_rx)
    }

    /// Each job's snapshots, in delivery order.
    fn histories(&self) -> HashMap<JobId, Vec<JobInfo>> {
        let mut histories: HashMap<JobId, Vec<JobInfo>> = HashMap::new();
        for batch in self.batches.lock().unwrap().iter() {
            for info in batch {
                histories.entry(info.id).or_default().push(info.clone());
            }
        }
        histories
    }

    fn calls(&self) -> usize {
        self.batches.lock().unwrap().len()
    }
}

impl JobObserver for Recorder {
    fn observe(&self, batch: &[JobInfo]) {
        assert!(!batch.is_empty() && batch.len() <= harbor_pool::MAX_BATCH);
        self.batches.lock().unwrap().push(batch.to_vec());
        let gate = self.gate.lock().unwrap().take();
        if let Some((entered, release)) = gate {
            let _ = entered.send(());
            let _ = release.recv_timeout(PATIENCE);
        }
        if self.panic_first.swap(false, Ordering::SeqCst) {
            panic!("observer boom");
        }
        if let Some(delay) = self.delay {
            thread::sleep(delay);
        }
    }
}

fn rank(status: &JobStatus) -> u8 {
    match status {
        JobStatus::Pending => 0,
        JobStatus::Running => 1,
        _ => 2,
    }
}

/// A job's history is in order, ends in its one terminal state, and that
/// state is `expected`.
fn assert_history(history: &[JobInfo], expected: &JobStatus) {
    let ranks: Vec<u8> = history.iter().map(|info| rank(&info.status)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {history:?}"
    );
    let terminal = history.iter().filter(|i| i.status.is_terminal()).count();
    assert_eq!(terminal, 1, "one terminal state: {history:?}");
    assert_eq!(&history.last().unwrap().status, expected, "{history:?}");
}

/// No batch holds a job twice.
fn assert_coalesced(recorder: &Recorder) {
    for batch in recorder.batches.lock().unwrap().iter() {
        let mut ids: Vec<JobId> = batch.iter().map(|info| info.id).collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before, "a job twice in one batch");
    }
}

/// A pool observed by `recorder`. Shutdown waits up to `PATIENCE` for the
/// observer, not the default 5 s: on a loaded machine a panic hook printing
/// a backtrace on the observer thread alone took longer, and the observer
/// was detached with transitions undelivered (`a_panicking_observer_is_survived`
/// flaked so).
fn pool_with(recorder: &Arc<Recorder>, name: &str) -> Builder {
    Pool::builder()
        .workers(2)
        .thread_name(name)
        .observer(Arc::clone(recorder) as Arc<dyn JobObserver>)
        .observer_shutdown_timeout(PATIENCE)
}

#[test]
fn every_way_to_end_is_seen_in_order_with_its_final_state() {
    common::quiet_panics();
    let recorder = Arc::new(Recorder::default());
    let pool = pool_with(&recorder, "obs-ends").workers(1).build().unwrap();
    let mut expected = HashMap::new();

    let ok = pool.submit(|_| Ok(1)).unwrap();
    expected.insert(ok.id(), JobStatus::Completed);
    let failed = pool
        .submit(|_| -> JobResult<()> { Err("no disk".into()) })
        .unwrap();
    expected.insert(failed.id(), JobStatus::Failed("no disk".into()));
    let panicked = pool
        .submit(|_| -> JobResult<()> { panic!("boom") })
        .unwrap();
    expected.insert(panicked.id(), JobStatus::Failed("boom".into()));
    let progress = pool
        .submit(|token| {
            for done in 1..=1_000 {
                token.set_progress(done, Some(1_000));
            }
            token.set_progress_message("all done");
            Ok(())
        })
        .unwrap();
    expected.insert(progress.id(), JobStatus::Completed);
    let progress_id = progress.id();
    for handle in [ok.id(), failed.id(), panicked.id(), progress.id()] {
        assert!(pool.wait(handle, PATIENCE).is_some());
    }

    // Behind a blocked worker: one cancelled while queued, one whose
    // deadline passes while queued.
    let release = common::block_worker(&pool);
    let queued = pool.submit(|_| Ok(())).unwrap();
    assert_eq!(queued.cancel(), CancelOutcome::Cancelled);
    expected.insert(queued.id(), JobStatus::Cancelled);
    let expiring = pool
        .submit_with(JobOptions::new().timeout(Duration::from_millis(1)), |_| {
            Ok(())
        })
        .unwrap();
    assert_eq!(expiring.wait(PATIENCE), Some(JobStatus::Cancelled));
    expected.insert(expiring.id(), JobStatus::Cancelled);
    // One still queued at `shutdown_now`.
    let swept = pool.submit(|_| Ok(())).unwrap();
    expected.insert(swept.id(), JobStatus::Cancelled);
    drop(release);

    // A running job cancelled by id: it returns `Err` after the cancel.
    let (started_tx, started_rx) = mpsc::channel();
    let running = pool.submit(move |token| {
        started_tx.send(()).unwrap();
        token.sleep(PATIENCE)?;
        Ok(())
    });
    let running = running.unwrap();
    expected.insert(running.id(), JobStatus::Cancelled);
    started_rx.recv_timeout(PATIENCE).unwrap();
    let _ = pool.cancel(running.id());
    assert_eq!(running.wait(PATIENCE), Some(JobStatus::Cancelled));

    // Untracked jobs are not observed.
    pool.execute(|| ()).unwrap();
    // `swept` might have run already; the report tells.
    let report = pool.shutdown_now();
    if !report.cancelled.contains(&swept.id()) {
        expected.insert(swept.id(), JobStatus::Completed);
    }

    // Shutdown returned: the final states were delivered.
    let histories = recorder.histories();
    assert_eq!(histories.len(), expected.len(), "{histories:?}");
    for (id, status) in &expected {
        assert_history(&histories[id], status);
        assert_eq!(pool.status(*id).as_ref(), Some(status));
    }
    let last = histories[&progress_id]
        .last()
        .unwrap()
        .progress
        .clone()
        .unwrap();
    assert_eq!((last.done, last.total), (1_000, Some(1_000)));
    assert_eq!(last.message.as_deref(), Some("all done"));
    assert_coalesced(&recorder);
    assert_eq!(pool.stats().observer_overflows, 0);
}

/// Records are forgotten at once (`retain_finished(0)`), yet every final
/// state reaches the observer: it holds the jobs, not their ids.
#[test]
fn final_states_survive_retention() {
    let recorder = Arc::new(Recorder::default());
    let pool = pool_with(&recorder, "obs-retain")
        .retain_finished(0)
        .build()
        .unwrap();
    let ids: Vec<JobId> = (0..500)
        .map(|i| {
            pool.submit(move |_| {
                if i % 2 == 0 {
                    Ok(())
                } else {
                    Err("odd".into())
                }
            })
            .unwrap()
            .id()
        })
        .collect();
    common::join(&pool);
    pool.shutdown();
    let histories = recorder.histories();
    for (i, id) in ids.iter().enumerate() {
        let expected = if i % 2 == 0 {
            JobStatus::Completed
        } else {
            JobStatus::Failed("odd".into())
        };
        assert_history(&histories[id], &expected);
    }
}

#[test]
fn an_abandoned_job_is_seen_abandoned_once() {
    let recorder = Arc::new(Recorder::default());
    let pool = pool_with(&recorder, "obs-abandon")
        .workers(1)
        .abandon_after(Duration::from_millis(20))
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let stuck = pool
        .submit(move |token| {
            started_tx.send(()).unwrap();
            // Ignores its token.
            let _ = release_rx.recv_timeout(PATIENCE);
            token.set_progress(1, None); // after it was abandoned: not seen
            Ok(())
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let id = stuck.id();
    assert_eq!(pool.cancel(id), CancelOutcome::Requested);
    assert_eq!(stuck.wait(PATIENCE), Some(JobStatus::Abandoned));
    assert!(eventually(|| recorder.histories().get(&id).is_some_and(
        |h| h.last().unwrap().status == JobStatus::Abandoned
    )));
    release_tx.send(()).unwrap();
    assert!(eventually(|| pool.stats().stray_threads == 0));
    pool.shutdown();
    let history = &recorder.histories()[&id];
    assert_history(history, &JobStatus::Abandoned);
    assert_eq!(history.last().unwrap().progress, None);
}

/// While the observer is busy, a job that goes from submitted through a
/// thousand progress reports to completed is queued once and delivered
/// once, in its final state.
#[test]
fn transitions_coalesce_while_the_observer_is_busy() {
    let (recorder, release, entered) = Recorder::gated();
    let pool = pool_with(&recorder, "obs-coalesce").build().unwrap();
    let first = pool.submit(|_| Ok(())).unwrap().id();
    entered.recv_timeout(PATIENCE).unwrap();
    let job = pool
        .submit(|token| {
            for done in 1..=1_000 {
                token.set_progress(done, Some(1_000));
            }
            Ok(())
        })
        .unwrap();
    let id = job.id();
    job.join().unwrap();
    release.send(()).unwrap();
    pool.shutdown();
    let histories = recorder.histories();
    let history = &histories[&id];
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].status, JobStatus::Completed);
    let progress = history[0].progress.clone().unwrap();
    assert_eq!((progress.done, progress.total), (1_000, Some(1_000)));
    assert_history(&histories[&first], &JobStatus::Completed);
    assert_coalesced(&recorder);
}

/// An observer stuck in `observe` while ten times its buffer's capacity of
/// jobs run: every job still finishes (workers never wait for it), the
/// overflow is counted, and once it is released the observer goes on.
#[test]
fn a_full_buffer_never_blocks_workers_and_is_counted() {
    const CAPACITY: usize = 16;
    let (recorder, release, entered) = Recorder::gated();
    let pool = pool_with(&recorder, "obs-full")
        .observer_capacity(CAPACITY)
        .build()
        .unwrap();
    pool.submit(|_| Ok(())).unwrap();
    entered.recv_timeout(PATIENCE).unwrap();
    let handles: Vec<_> = (0..10 * CAPACITY)
        .map(|i| pool.submit(move |_| Ok(i)).unwrap())
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        // Bounded: a worker waiting for the observer would fail here.
        let handle = match handle.join_timeout(PATIENCE) {
            Ok(result) => result,
            Err(_) => panic!("job {i} did not finish: a worker waits for the observer"),
        };
        assert_eq!(handle.unwrap(), i);
    }
    let overflows = pool.stats().observer_overflows;
    assert!(overflows > 0, "{:?}", pool.stats());
    release.send(()).unwrap();
    // The next call delivers what the buffer held: it took all of it (fewer
    // than `MAX_BATCH`), so the buffer is empty from then on. Submitted
    // before that, the late job's every note could meet the buffer still
    // full, and it would never be seen (this flaked under load).
    assert!(eventually(|| recorder.calls() >= 2));
    // Going on: a job submitted now is seen to its end.
    let late = pool.submit(|_| Ok(())).unwrap().id();
    assert!(eventually(|| recorder.histories().get(&late).is_some_and(
        |h| h.last().unwrap().status == JobStatus::Completed
    )));
    pool.shutdown();
    // The late job found room: no overflow since.
    assert_eq!(pool.stats().observer_overflows, overflows);
    // At most CAPACITY jobs waited in the buffer, so at most that many (and
    // the gated first one) were seen among the overflowing burst's.
    assert!(recorder.histories().len() <= CAPACITY + 2);
}

#[test]
fn a_panicking_observer_is_survived() {
    common::init_logging();
    let recorder = Arc::new(Recorder {
        panic_first: AtomicBool::new(true),
        ..Recorder::default()
    });
    let pool = pool_with(&recorder, "obs-panic").build().unwrap();
    pool.submit(|_| Ok(())).unwrap().join().unwrap();
    assert!(eventually(|| recorder.calls() >= 1));
    // The same thread goes on delivering.
    assert_eq!(threads_named("obs-panic-obser"), 1);
    let ids: Vec<JobId> = (0..50)
        .map(|_| pool.submit(|_| Ok(())).unwrap().id())
        .collect();
    pool.shutdown();
    let histories = recorder.histories();
    for id in ids {
        assert_history(&histories[&id], &JobStatus::Completed);
    }
    assert_eq!(pool.stats().restarts, 0);
}

/// A slow observer at shutdown, still busy with its first batch when the
/// workers are gone: `shutdown` waits for it, and every final state
/// buffered meanwhile is delivered (the final drain) before it returns.
#[test]
fn a_slow_observer_gets_every_final_state_at_shutdown() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let recorder = Arc::new(Recorder {
        gate: Mutex::new(Some((entered_tx, release_rx))),
        delay: Some(Duration::from_millis(20)),
        ..Recorder::default()
    });
    let pool = Arc::new(pool_with(&recorder, "obs-slow").build().unwrap());
    pool.submit(|_| Ok(())).unwrap();
    entered_rx.recv_timeout(PATIENCE).unwrap();
    let ids: Vec<JobId> = (0..2_000)
        .map(|_| pool.submit(|_| Ok(())).unwrap().id())
        .collect();
    common::join(&pool);
    let stopping = Arc::clone(&pool);
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        stopping.shutdown();
        done_tx.send(()).unwrap();
    });
    // The workers are joined (the supervisor stops the observer right
    // after): only then does the observer finish its first batch.
    assert!(no_threads_named("obs-slow-0") && no_threads_named("obs-slow-1"));
    release_tx.send(()).unwrap();
    done_rx.recv_timeout(PATIENCE).expect("shutdown returned");
    assert!(no_threads_named("obs-slow-observ"));
    let histories = recorder.histories();
    for id in ids {
        assert_history(&histories[&id], &JobStatus::Completed);
    }
}

/// An observer blocked for good at shutdown: the pool waits for it only up
/// to `observer_shutdown_timeout`, then detaches its thread, counted as a
/// stray until it returns.
#[test]
fn a_blocked_observer_does_not_hang_shutdown() {
    let (recorder, release, entered) = Recorder::gated();
    let pool = Arc::new(
        pool_with(&recorder, "obs-stuck")
            .observer_shutdown_timeout(Duration::from_millis(50))
            .build()
            .unwrap(),
    );
    pool.submit(|_| Ok(())).unwrap();
    entered.recv_timeout(PATIENCE).unwrap();
    let stopping = Arc::clone(&pool);
    let (done_tx, done_rx) = mpsc::channel();
    let started = Instant::now();
    thread::spawn(move || {
        stopping.shutdown();
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(PATIENCE)
        .expect("shutdown hung on a blocked observer");
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(pool.stats().stray_threads, 1);
    assert_eq!(threads_named("obs-stuck-obser"), 1);
    release.send(()).unwrap();
    assert!(eventually(|| pool.stats().stray_threads == 0));
    assert!(no_threads_named("obs-stuck-obser"));
}

#[test]
fn the_observer_thread_is_named_and_joined() {
    let recorder = Arc::new(Recorder::default());
    let pool = pool_with(&recorder, "obs-name").build().unwrap();
    // A thread names itself once it runs; `build` waits for the workers,
    // not for the observer thread.
    assert!(eventually(|| threads_named("obs-name-observ") == 1));
    pool.shutdown();
    assert!(no_threads_named("obs-name-observ"));
    // Without an observer there is no such thread.
    let plain = Pool::builder().thread_name("obs-none").build().unwrap();
    assert_eq!(threads_named("obs-none-observ"), 0);
    drop(plain);
}

#[test]
fn observer_capacity_is_validated() {
    let err = Pool::builder().observer_capacity(0).build().unwrap_err();
    assert!(matches!(
        err,
        BuildError::InvalidObserverCapacity { requested: 0, max } if max == 1 << 24
    ));
    let err = Pool::builder()
        .observer_capacity((1 << 24) + 1)
        .build()
        .unwrap_err();
    assert!(err.to_string().starts_with("observer_capacity"), "{err}");
    let pool = Pool::builder()
        .workers(1)
        .observer_capacity(1 << 24)
        .build()
        .unwrap();
    pool.shutdown();
}

/// `observe` may call back into its pool (here through a `Weak`), even to
/// shut it down, without a deadlock.
#[test]
fn an_observer_may_call_its_pool() {
    struct Canceller {
        pool: Mutex<std::sync::Weak<Pool>>,
        calls: AtomicUsize,
    }
    impl JobObserver for Canceller {
        fn observe(&self, batch: &[JobInfo]) {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let Some(pool) = self.pool.lock().unwrap().upgrade() else {
                return;
            };
            for info in batch {
                let _ = pool.info(info.id);
                let _ = pool.cancel(info.id);
            }
            pool.shutdown();
        }
    }
    let observer = Arc::new(Canceller {
        pool: Mutex::new(std::sync::Weak::new()),
        calls: AtomicUsize::new(0),
    });
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .observer(Arc::clone(&observer) as Arc<dyn JobObserver>)
            .build()
            .unwrap(),
    );
    *observer.pool.lock().unwrap() = Arc::downgrade(&pool);
    let job = pool.submit(|token| {
        token.sleep(PATIENCE)?;
        Ok(())
    });
    let job = job.unwrap();
    assert_eq!(job.wait(PATIENCE), Some(JobStatus::Cancelled));
    assert!(eventually(|| pool.is_shutdown()));
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        pool.shutdown();
        done_tx.send(()).unwrap();
    });
    done_rx.recv_timeout(PATIENCE).expect("shutdown deadlocked");
    assert!(observer.calls.load(Ordering::SeqCst) >= 1);
}

/// Submitters, a canceller and a shutdown race the observer thread, round
/// after round: every accepted job's terminal state is delivered once, in
/// order, and matches the pool's own record.
#[test]
fn races_of_submit_cancel_and_shutdown_lose_no_final_state() {
    common::quiet_panics();
    const ROUNDS: usize = 40;
    const SUBMITTERS: usize = 3;
    const JOBS: usize = 60;
    for round in 0..ROUNDS {
        let recorder = Arc::new(Recorder::default());
        let pool = Arc::new(
            pool_with(&recorder, "obs-race")
                .observer_capacity(1 << 20)
                .retain_finished(1 << 20)
                .build()
                .unwrap(),
        );
        let (ids_tx, ids_rx) = mpsc::channel::<JobId>();
        let start = Arc::new(Barrier::new(SUBMITTERS + 2));
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|s| {
                let (pool, ids_tx, start) = (Arc::clone(&pool), ids_tx.clone(), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    for n in 0..JOBS {
                        let options = if n % 7 == 0 {
                            JobOptions::new().timeout(Duration::from_micros(100))
                        } else {
                            JobOptions::new()
                        };
                        let kind = (n + s + round) % 4;
                        let submitted = pool.submit_with(options, move |token| {
                            token.set_progress(1, Some(2));
                            match kind {
                                0 => Ok(()),
                                1 => Err("failed".into()),
                                2 => panic!("boom"),
                                _ => {
                                    token.sleep(Duration::from_micros(50))?;
                                    token.set_progress(2, Some(2));
                                    Ok(())
                                }
                            }
                        });
                        match submitted {
                            Ok(handle) => {
                                let _ = ids_tx.send(handle.id());
                            }
                            Err(SubmitError::Shutdown) => break,
                            Err(e) => panic!("unexpected refusal: {e}"),
                        }
                    }
                })
            })
            .collect();
        drop(ids_tx);
        let canceller = {
            let (pool, start) = (Arc::clone(&pool), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut ids = Vec::new();
                while let Ok(id) = ids_rx.recv_timeout(PATIENCE) {
                    if ids.len() % 3 == 0 {
                        let _ = pool.cancel(id);
                    }
                    ids.push(id);
                }
                ids
            })
        };
        start.wait();
        // Shut down while jobs are in flight, now or gracefully.
        thread::yield_now();
        let joined = if round % 2 == 0 {
            pool.shutdown_timeout(PATIENCE).joined()
        } else {
            pool.shutdown_now().joined()
        };
        assert!(joined, "round {round}: not joined");
        for submitter in submitters {
            submitter.join().unwrap();
        }
        let ids = canceller.join().unwrap();
        let histories = recorder.histories();
        for id in &ids {
            let status = pool.status(*id).unwrap();
            let history = histories
                .get(id)
                .unwrap_or_else(|| panic!("round {round}: job {id} never observed"));
            assert_history(history, &status);
        }
        assert_eq!(histories.len(), ids.len(), "round {round}");
        assert_coalesced(&recorder);
        assert_eq!(pool.stats().observer_overflows, 0);
    }
}

/// The pool's last `Arc` dropped inside `observe`: the drop starts the
/// shutdown without waiting for the observer thread it runs on, the pool
/// still finishes in the background (every thread exits) and every job's
/// final state is delivered on the way.
#[test]
fn the_pool_dropped_inside_observe() {
    struct Owner {
        recorder: Recorder,
        pool: Mutex<Option<Arc<Pool>>>,
        dropped: Mutex<Option<mpsc::Sender<()>>>,
    }
    impl JobObserver for Owner {
        fn observe(&self, batch: &[JobInfo]) {
            self.recorder.observe(batch);
            // The last `Arc<Pool>`: `Pool::drop` runs here.
            drop(self.pool.lock().unwrap().take());
            if let Some(dropped) = self.dropped.lock().unwrap().take() {
                let _ = dropped.send(());
            }
        }
    }
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let owner = Arc::new(Owner {
        recorder: Recorder {
            gate: Mutex::new(Some((entered_tx, release_rx))),
            ..Recorder::default()
        },
        pool: Mutex::new(None),
        dropped: Mutex::new(Some(dropped_tx)),
    });
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .thread_name("obs-dropin")
            .observer(Arc::clone(&owner) as Arc<dyn JobObserver>)
            .build()
            .unwrap(),
    );
    let first = pool.submit(|_| Ok(())).unwrap().id();
    entered_rx.recv_timeout(PATIENCE).unwrap();
    let mut ids = vec![first];
    ids.extend((0..100).map(|_| pool.submit(|_| Ok(())).unwrap().id()));
    *owner.pool.lock().unwrap() = Some(pool);
    release_tx.send(()).unwrap();
    dropped_rx
        .recv_timeout(PATIENCE)
        .expect("the pool's drop inside observe returned");
    assert!(no_threads_named("obs-dropin"), "a thread was left running");
    let histories = owner.recorder.histories();
    for id in &ids {
        assert_history(&histories[id], &JobStatus::Completed);
    }
}
