//! Async round trip (issue 8): from inside a tokio multi-thread runtime,
//! submit and await 100,000 empty jobs, [`IN_FLIGHT`] at a time, with
//! harbor against `tokio::task::spawn_blocking`, in the same run.
//!
//! * `harbor_submit_await`: [`Pool::submit`] then `handle.await` (the
//!   handle is a `Future`; the worker that ends the job wakes the task);
//! * `tokio_spawn_blocking`: `tokio::task::spawn_blocking` then awaiting
//!   its `JoinHandle`.
//!
//! Both run the same loop on a runtime worker (a spawned task, not the
//! thread in `block_on`): submit a batch of [`IN_FLIGHT`] empty jobs, await
//! every one in order, repeat. The runtime has as many worker threads as
//! the machine has cores, and so does the pool; tokio's blocking pool
//! grows as it likes (up to 512 threads, kept alive between batches).
//! Each benchmark declares its job count as its throughput, so criterion
//! reports time per job; `docs/benchmarks.md` has the figures.
//!
//! `cargo bench --bench async` takes about a minute here.

use std::future::Future;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use harbor_pool::Pool;
use tokio::runtime::Runtime;

/// Jobs per iteration.
const JOBS: usize = 100_000;
/// Jobs in flight at once.
const IN_FLIGHT: usize = 64;
/// A lost wake-up fails the run instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(120);

fn cores() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_time()
        .build()
        .unwrap()
}

/// `JOBS` jobs through harbor, `IN_FLIGHT` at a time.
async fn harbor_round_trip(pool: &Pool) {
    let mut handles = Vec::with_capacity(IN_FLIGHT);
    for start in (0..JOBS).step_by(IN_FLIGHT) {
        let batch = IN_FLIGHT.min(JOBS - start);
        handles.extend((0..batch).map(|_| pool.submit(|_| Ok(())).unwrap()));
        for handle in handles.drain(..) {
            handle.await.unwrap();
        }
    }
}

/// The same jobs through `spawn_blocking`.
async fn tokio_round_trip() {
    let mut handles = Vec::with_capacity(IN_FLIGHT);
    for start in (0..JOBS).step_by(IN_FLIGHT) {
        let batch = IN_FLIGHT.min(JOBS - start);
        handles.extend((0..batch).map(|_| tokio::task::spawn_blocking(|| ())));
        for handle in handles.drain(..) {
            handle.await.unwrap();
        }
    }
}

/// Times `iters` rounds of `round` in a task on one of `runtime`'s workers.
fn time_in_task<F, R>(runtime: &Runtime, iters: u64, round: R) -> Duration
where
    R: Fn() -> F + Send + 'static,
    F: Future<Output = ()> + Send,
{
    runtime.block_on(async move {
        let task = tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                round().await;
            }
            start.elapsed()
        });
        tokio::time::timeout(TIMEOUT * iters as u32, task)
            .await
            .expect("a round trip did not finish in time")
            .unwrap()
    })
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_round_trip");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(JOBS as u64));
    let runtime = runtime();
    let pool = Arc::new(Pool::new(cores()).unwrap());
    group.bench_function("harbor_submit_await", |b| {
        b.iter_custom(|iters| {
            let pool = Arc::clone(&pool);
            time_in_task(&runtime, iters, move || {
                let pool = Arc::clone(&pool);
                async move { harbor_round_trip(&pool).await }
            })
        });
    });
    group.bench_function("tokio_spawn_blocking", |b| {
        b.iter_custom(|iters| time_in_task(&runtime, iters, tokio_round_trip));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // A spawn_blocking iteration takes over a second on 2 cores: 10 samples
    // of about 15 s in all keep the run near a minute.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15))
        .without_plots();
    targets = round_trip
}
criterion_main!(benches);
