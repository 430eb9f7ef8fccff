//! `Builder::build` validates every setting: a bad one is a typed
//! `BuildError` naming it, never a panic, an abort or a setting silently
//! ignored.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use harbor_pool::{BuildError, Builder, JobStatus, Pool};

/// The error `builder` is refused with; fails the test if it builds.
fn refused(builder: Builder) -> BuildError {
    match builder.build() {
        Ok(pool) => panic!("built {pool:?}"),
        Err(error) => error,
    }
}

/// A pool that ran a tracked and an untracked job is usable.
fn assert_usable(pool: &Pool) {
    assert_eq!(pool.submit(|_| Ok(7)).unwrap().join().unwrap(), 7);
    pool.execute(|| ()).unwrap();
    pool.try_execute(|| ()).unwrap();
    common::join(pool);
    assert_eq!(pool.stats().completed, 3);
}

/// This process's resident memory in bytes (Linux), or `None`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn zero_workers_is_refused() {
    assert!(matches!(
        refused(Pool::builder().workers(0)),
        BuildError::ZeroWorkers
    ));
}

#[test]
fn more_workers_than_the_maximum_is_refused_without_allocating() {
    // `usize::MAX` used to panic with "capacity overflow" inside `build`.
    for requested in [Builder::MAX_WORKERS + 1, usize::MAX] {
        match refused(Pool::builder().workers(requested)) {
            BuildError::TooManyWorkers { requested: r, max } => {
                assert_eq!((r, max), (requested, Builder::MAX_WORKERS));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let error = refused(Pool::builder().workers(5000));
    assert_eq!(error.to_string(), "workers must be at most 4096, got 5000");
}

#[test]
fn the_default_worker_count_is_within_the_maximum() {
    let pool = Pool::builder().build().unwrap();
    let workers = pool.stats().workers;
    assert!((1..=Builder::MAX_WORKERS).contains(&workers), "{workers}");
}

#[test]
fn a_thread_name_with_a_nul_byte_is_refused() {
    let error = refused(Pool::builder().thread_name("a\0b"));
    assert!(matches!(error, BuildError::InvalidThreadName));
    assert!(error.to_string().contains("thread name"));
}

#[test]
fn stack_sizes_outside_the_limits_are_refused() {
    // Zero used to build a pool whose first panicking job overflowed the
    // stack and aborted the process; `usize::MAX` was an OS error reported
    // as a failed spawn.
    for requested in [
        0,
        Builder::MIN_STACK_SIZE - 1,
        Builder::MAX_STACK_SIZE + 1,
        usize::MAX,
    ] {
        match refused(Pool::builder().workers(1).stack_size(requested)) {
            BuildError::InvalidStackSize {
                requested: r,
                min,
                max,
            } => assert_eq!(
                (r, min, max),
                (requested, Builder::MIN_STACK_SIZE, Builder::MAX_STACK_SIZE)
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
    let error = refused(Pool::builder().stack_size(0));
    assert!(error.to_string().starts_with("stack size must be between"));
}

/// The smallest stack accepted survives what a worker does with the least
/// stack to spare: unwinding a panicking job (under the process's default
/// panic hook, which formats and prints it) and logging.
#[test]
fn the_smallest_stack_accepted_survives_panicking_jobs() {
    common::init_logging();
    let pool = Pool::builder()
        .workers(1)
        .thread_name("small-stack")
        .stack_size(Builder::MIN_STACK_SIZE)
        .build()
        .unwrap();
    let panicked = pool
        .submit(|_| -> harbor_pool::JobResult<()> { panic!("deliberate, on a small stack") })
        .unwrap();
    assert_eq!(
        panicked.wait(common::PATIENCE),
        Some(JobStatus::Failed("deliberate, on a small stack".into()))
    );
    pool.execute(|| panic!("deliberate, untracked, on a small stack"))
        .unwrap();
    let failed = pool
        .submit(|_| -> harbor_pool::JobResult<()> { Err("failed on purpose".into()) })
        .unwrap();
    assert!(failed.join().is_err());
    common::join(&pool);
    let stats = pool.stats();
    assert_eq!((stats.failed, stats.panicked, stats.restarts), (3, 2, 0));
}

#[test]
fn a_zero_queue_capacity_is_refused() {
    let error = refused(Pool::builder().queue_capacity(0));
    assert!(matches!(error, BuildError::ZeroQueueCapacity));
    assert!(error.to_string().contains("queue capacity"));
}

#[test]
fn the_largest_queue_capacity_builds_a_usable_pool() {
    // Used to panic inside `build` (crossbeam: capacity too large).
    let pool = Pool::builder()
        .workers(1)
        .queue_capacity(usize::MAX)
        .build()
        .unwrap();
    assert_usable(&pool);
}

#[test]
fn a_huge_queue_capacity_allocates_nothing_up_front() {
    // Used to abort the process: the channel allocated every slot (16 TiB).
    let before = resident_bytes();
    let pool = Pool::builder()
        .workers(1)
        .queue_capacity(1 << 40)
        .build()
        .unwrap();
    assert_usable(&pool);
    // Thread stacks and a few jobs: far below what even a millionth of the
    // slots would take if they were allocated.
    if let (Some(before), Some(after)) = (before, resident_bytes()) {
        let grown = after.saturating_sub(before);
        assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    }
    // Still bounded: a blocked worker and queued jobs do not make it refuse.
    let release = common::block_worker(&pool);
    for _ in 0..1_000 {
        pool.try_execute(|| ()).unwrap();
    }
    assert_eq!(pool.stats().queued, 1_000);
    release.send(()).unwrap();
    common::join(&pool);
}

#[test]
fn a_zero_restart_window_is_refused() {
    // Used to be accepted, and silently turned storm protection off: no
    // respawn ever counted within a zero window.
    let error = refused(Pool::builder().restart_limit(3, Duration::ZERO));
    assert!(matches!(error, BuildError::ZeroRestartWindow));
    assert_eq!(error.to_string(), "restart window must be above zero");
}

#[test]
fn restart_backoffs_outside_the_limits_are_refused() {
    let second = Duration::from_secs(1);
    for (initial, max) in [
        (Duration::ZERO, second),
        (2 * second, second),
        // Used to be accepted, and to overflow `Instant` arithmetic in the
        // supervisor at the first delayed respawn.
        (Duration::MAX, Duration::MAX),
        (second, Duration::MAX),
        (
            second,
            Builder::MAX_RESTART_BACKOFF + Duration::from_nanos(1),
        ),
    ] {
        let error = refused(Pool::builder().restart_backoff(initial, max));
        assert!(
            matches!(error, BuildError::InvalidBackoff),
            "({initial:?}, {max:?}): {error:?}"
        );
        assert!(error.to_string().starts_with("restart backoff"));
    }
    let pool = Pool::builder()
        .workers(1)
        .restart_backoff(second, Builder::MAX_RESTART_BACKOFF)
        .build()
        .unwrap();
    assert_usable(&pool);
}

#[test]
fn a_refused_setting_starts_no_thread() {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let error = refused(
        Pool::builder()
            .workers(2)
            .thread_name("never-started")
            .restart_limit(1, Duration::ZERO)
            .on_thread_start(move |_| {
                let _ = started_tx.send(());
            }),
    );
    assert!(matches!(error, BuildError::ZeroRestartWindow));
    // The hook (and its sender) was dropped without ever running.
    assert_eq!(
        started_rx.recv_timeout(common::PATIENCE),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
    assert_eq!(common::threads_named("never-started"), 0);
}
