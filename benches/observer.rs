//! The observer seam's cost (issue 12): tracked `submit` + `join` of empty
//! jobs on a pool without an observer, with a no-op observer, and with one
//! that counts what it sees, in the same run.
//!
//! One iteration submits [`JOBS`] tracked jobs from one thread, keeping the
//! handles, then joins them all; each benchmark declares [`JOBS`] as its
//! throughput, so criterion reports time per job. The three pools are
//! built once, with the same settings, and live through the whole group.
//! The target: with an observer, at most 1.5 times the time without.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harbor_pool::{JobInfo, JobObserver, Pool};

/// Jobs per iteration.
const JOBS: usize = 10_000;

/// Sees every batch and does nothing with it.
struct Noop;

impl JobObserver for Noop {
    fn observe(&self, batch: &[JobInfo]) {
        black_box(batch);
    }
}

/// Counts snapshots and terminal states, as a store's bookkeeping would
/// before writing.
#[derive(Default)]
struct Counting {
    seen: AtomicU64,
    ended: AtomicU64,
}

impl JobObserver for Counting {
    fn observe(&self, batch: &[JobInfo]) {
        let ended = batch
            .iter()
            .filter(|info| info.status.is_terminal())
            .count();
        self.seen.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.ended.fetch_add(ended as u64, Ordering::Relaxed);
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn pool(observer: Option<Arc<dyn JobObserver>>) -> Pool {
    let mut builder = Pool::builder().workers(cores());
    if let Some(observer) = observer {
        builder = builder.observer(observer);
    }
    builder.build().expect("a pool")
}

fn submit_join(pool: &Pool) {
    let handles: Vec<_> = (0..JOBS)
        .map(|i| pool.submit(move |_| Ok(black_box(i))).expect("accepted"))
        .collect();
    for handle in handles {
        black_box(handle.join().expect("completed"));
    }
}

fn observer_overhead(c: &mut Criterion) {
    let counting = Arc::new(Counting::default());
    let pools = [
        ("no_observer", pool(None)),
        ("noop_observer", pool(Some(Arc::new(Noop)))),
        ("counting_observer", pool(Some(counting.clone()))),
    ];
    let mut group = c.benchmark_group("observer_submit_join");
    group.throughput(Throughput::Elements(JOBS as u64));
    for (name, pool) in &pools {
        group.bench_function(*name, |b| b.iter(|| submit_join(pool)));
    }
    group.finish();
    for (name, pool) in pools {
        let overflows = pool.stats().observer_overflows;
        pool.shutdown();
        assert_eq!(overflows, 0, "{name}: the buffer overflowed");
    }
    // Every job the counting pool ran ended once in its observer's eyes.
    assert!(counting.ended.load(Ordering::Relaxed) > 0);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = observer_overhead
}
criterion_main!(benches);
