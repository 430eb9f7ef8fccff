//! Latency histograms behind [`PoolMetrics`]: how long jobs wait in the
//! queue (submitted to started) and how long they run (started to ended),
//! for every job, tracked or not; and the clock they are read with.
//!
//! Each worker keeps its own pair of histograms;
//! [`Pool::metrics`](crate::Pool::metrics) adds them up. Buckets are
//! fixed: powers of two from 1 µs to about 134 s
//! ([`Histogram::upper_bounds`]), plus one for anything longer. With
//! [`Builder::latency_metrics`](crate::Builder::latency_metrics) off there
//! are no histograms and no clock is read for them (tracked jobs read it
//! for their times, [`wall_at`]).
//!
//! Invariants:
//!
//! 1. Worker `i`'s [`WorkerLatency`] is written only by the thread that is
//!    worker `i`: jobs it takes from the queue and jobs it runs inline both
//!    run on that thread, and a respawned worker reuses the index only after
//!    the supervisor joined the dead thread. With one writer, a bucket is
//!    bumped with a relaxed load and store, no read-modify-write.
//! 2. A worker records a job's latencies before it counts the job finished
//!    in its tally (a `SeqCst` read-modify-write) and before the job's
//!    record turns terminal. So once [`Pool::join`](crate::Pool::join)
//!    returns, or a [`JobHandle`](crate::JobHandle) sees its job end, the
//!    histograms include it.
//! 3. Readers load every cell relaxed: a snapshot taken while jobs run may
//!    see a job in a bucket but not yet in the sum, or the other way round.
//!    [`Histogram::count`] is the sum of the buckets, so it always agrees
//!    with them.
//! 4. A pool's switch is fixed when it is built: a job is submitted and run
//!    under the same setting, so a worker never times a job whose
//!    submission tick was not read.
//! 5. One reading per job boundary: a worker that takes its next job
//!    straight off the queue, on its first try after finishing a job, starts
//!    that job at the tick that ended the previous one (never before the
//!    job's own submission tick). Its queue wait then ends when the worker
//!    became free for it, and its run time includes the pool's bookkeeping
//!    between the two jobs (a fraction of a microsecond, below the first
//!    bucket's bound). A worker that had to spin, yield or park reads the
//!    clock afresh.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A raw reading of the latency clock (TSC ticks, or the OS's monotonic
/// nanoseconds where the TSC is not invariant), or [`NOT_READ`].
pub(crate) type Tick = u64;

/// The tick of a job submitted while latency metrics are off.
pub(crate) const NOT_READ: Tick = 0;

/// The process's latency clock: `quanta`'s, calibrated once (usually about
/// a millisecond, at most 200 ms on a very busy machine; on first use, which
/// the first pool's build makes). A raw read is one `rdtsc`, about 11 ns on
/// the machine of `docs/benchmarks.md` against 30 ns for
/// `std::time::Instant::now`; ticks become nanoseconds only for a
/// difference (one multiply and shift).
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Reads the clock.
#[inline]
pub(crate) fn now() -> Tick {
    clock().raw()
}

/// Nanoseconds from `start` to `end`; zero if the clock seems to have gone
/// backwards (readings on different cores), never a huge latency.
#[inline]
pub(crate) fn nanos_between(start: Tick, end: Tick) -> u64 {
    clock().delta_as_nanos(start, end)
}

/// How long a thread's wall-clock anchor serves ([`wall_at`]) before the
/// wall clock is read again. The tick scale is calibrated to a few parts
/// in 10^5, so a time derived over 10 ms is off by well under a
/// microsecond (plus what NTP slews the wall clock by meanwhile, at most
/// 5 µs over 10 ms).
const ANCHOR_NANOS: u64 = 10_000_000;

thread_local! {
    /// This thread's last wall-clock reading and the tick read with it.
    /// `Cell`s of plain values with a `const` initialiser: no destructor.
    static ANCHOR: Cell<(SystemTime, Tick)> = const { Cell::new((SystemTime::UNIX_EPOCH, NOT_READ)) };
}

/// The wall-clock time at tick `at`, which the caller read just now (or a
/// worker's boundary tick, invariant 5): this thread's anchor plus the
/// ticks since, reading the wall clock (about 35 ns here) only when the
/// anchor is older than 10 ms. So a tracked job's three times (submitted,
/// started, finished) cost no wall-clock read on a busy pool, where they
/// cost three. Times derived on different threads may disagree by a
/// microsecond; callers keep a job's times in order.
pub(crate) fn wall_at(at: Tick) -> SystemTime {
    ANCHOR
        .try_with(|anchor| {
            let (wall, tick) = anchor.get();
            if tick == NOT_READ || at > tick {
                let nanos = nanos_between(tick, at);
                if tick != NOT_READ && nanos <= ANCHOR_NANOS {
                    return wall + Duration::from_nanos(nanos);
                }
                let wall = SystemTime::now();
                anchor.set((wall, at));
                return wall;
            }
            // A tick from before the anchor (a reading taken on another
            // core, or `at == tick`): the anchor itself if equal, else the
            // wall clock, without re-anchoring on an older tick.
            if at == tick { wall } else { SystemTime::now() }
        })
        // While the thread's locals are destroyed: read it.
        .unwrap_or_else(|_| SystemTime::now())
}

/// Finite buckets: upper bounds 1 µs × 2^i for i in 0..FINITE.
const FINITE: usize = 28;
/// Finite buckets plus the overflow bucket.
const BUCKETS: usize = FINITE + 1;

const UPPER_BOUNDS: [Duration; FINITE] = {
    let mut bounds = [Duration::ZERO; FINITE];
    let mut i = 0;
    while i < FINITE {
        bounds[i] = Duration::from_micros(1 << i);
        i += 1;
    }
    bounds
};

/// The bucket of a latency of `nanos`: the first whose upper bound is at
/// least `nanos`, or the overflow bucket.
#[inline]
fn bucket(nanos: u64) -> usize {
    // The bucket of `nanos` is the one of ceil(nanos / 1 µs) in µs, at
    // least 1; bound i holds up to 2^i µs, so the index is ceil(log2).
    let micros = nanos.div_ceil(1_000).max(1);
    let index = (u64::BITS - (micros - 1).leading_zeros()) as usize;
    index.min(FINITE)
}

/// A latency histogram with fixed log-scale buckets: what a Prometheus
/// histogram needs (bucket bounds, counts, sum and count), and a
/// [`quantile`](Self::quantile) estimate.
///
/// Bucket `i` counts latencies in (`upper_bounds()[i - 1]`,
/// `upper_bounds()[i]`] (the first from zero); the bounds are
/// 1 µs, 2 µs, 4 µs, ... 2^27 µs (about 134 s). One more bucket, the last
/// of [`counts`](Self::counts), counts anything longer (Prometheus's
/// `+Inf` less the others). Latencies are measured in nanoseconds.
///
/// # Examples
///
/// Render it in the Prometheus text format (buckets there are cumulative):
///
/// ```
/// use harbor_pool::{Histogram, Pool};
///
/// let pool = Pool::new(2).unwrap();
/// for _ in 0..10 {
///     pool.execute(|| ()).unwrap();
/// }
/// pool.join();
/// let run_time = pool.metrics().run_time;
///
/// let mut text = String::new();
/// let mut cumulative = 0;
/// for (bound, count) in Histogram::upper_bounds().iter().zip(run_time.counts()) {
///     cumulative += count;
///     text += &format!("job_run_seconds_bucket{{le=\"{}\"}} {cumulative}\n", bound.as_secs_f64());
/// }
/// text += &format!("job_run_seconds_bucket{{le=\"+Inf\"}} {}\n", run_time.count());
/// text += &format!("job_run_seconds_sum {}\n", run_time.sum().as_secs_f64());
/// text += &format!("job_run_seconds_count {}\n", run_time.count());
///
/// assert!(text.starts_with("job_run_seconds_bucket{le=\"0.000001\"}"));
/// assert!(text.contains("job_run_seconds_bucket{le=\"+Inf\"} 10\n"));
/// ```
#[derive(Clone, PartialEq)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    /// Nanoseconds, as `f64` like Prometheus's sum: exact up to 2^53 ns
    /// (104 days), then rounded, never wrapped.
    sum_nanos: f64,
}

impl Histogram {
    /// The finite buckets' upper bounds, inclusive, in increasing order:
    /// 1 µs × 2^i for i in 0..28, from 1 µs to 134.217728 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Histogram;
    /// use std::time::Duration;
    ///
    /// let bounds = Histogram::upper_bounds();
    /// assert_eq!(bounds[0], Duration::from_micros(1));
    /// assert_eq!(bounds[1], Duration::from_micros(2));
    /// assert!(*bounds.last().unwrap() >= Duration::from_secs(100));
    /// ```
    pub fn upper_bounds() -> &'static [Duration] {
        &UPPER_BOUNDS
    }

    /// How many latencies fell in each bucket (not cumulative): one entry
    /// per [`upper_bounds`](Self::upper_bounds) entry, then one for
    /// anything longer than the last bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{Histogram, Pool};
    ///
    /// let pool = Pool::new(1).unwrap();
    /// pool.execute(|| ()).unwrap();
    /// pool.join();
    /// let counts = pool.metrics().queue_wait.counts().to_vec();
    /// assert_eq!(counts.len(), Histogram::upper_bounds().len() + 1);
    /// assert_eq!(counts.iter().sum::<u64>(), 1);
    /// ```
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// How many latencies were recorded: the sum of
    /// [`counts`](Self::counts).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// pool.submit(|_| Ok(())).unwrap().join().unwrap();
    /// assert_eq!(pool.metrics().run_time.count(), 1);
    /// ```
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of every latency recorded.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// pool.execute(|| std::thread::sleep(Duration::from_millis(5))).unwrap();
    /// pool.join();
    /// assert!(pool.metrics().run_time.sum() >= Duration::from_millis(5));
    /// ```
    pub fn sum(&self) -> Duration {
        // A float-to-int `as` saturates; the sum is never negative.
        Duration::from_nanos(self.sum_nanos as u64)
    }

    /// An estimate of the `q`-quantile (`q` in `0.0..=1.0`; 0.5 is the
    /// median), or `None` if nothing was recorded or `q` is outside that
    /// range (or NaN).
    ///
    /// It is the estimate Prometheus's `histogram_quantile` makes from the
    /// same buckets: find the bucket that holds the `q × count`-th latency
    /// and interpolate linearly inside it (from zero for the first bucket).
    /// The error is at most the bucket's width, a factor of two. In the
    /// overflow bucket it answers the largest finite bound, which the true
    /// quantile exceeds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = harbor_pool::Pool::new(1).unwrap();
    /// for _ in 0..4 {
    ///     pool.execute(|| std::thread::sleep(Duration::from_millis(2))).unwrap();
    /// }
    /// pool.join();
    /// let run_time = pool.metrics().run_time;
    /// let median = run_time.quantile(0.5).unwrap();
    /// // Each job ran at least 2 ms, in the bucket (2.048 ms, 4.096 ms] unless
    /// // the machine was very busy; the estimate stays within a factor of two.
    /// assert!(median >= Duration::from_millis(1));
    /// assert_eq!(run_time.quantile(1.5), None);
    /// assert_eq!(harbor_pool::Pool::new(1).unwrap().metrics().run_time.quantile(0.5), None);
    /// ```
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q * count as f64;
        let mut below = 0_u64;
        for (index, &in_bucket) in self.counts.iter().enumerate() {
            // Empty buckets never hold the rank: skipping them makes q = 0
            // the lower edge of the first non-empty bucket.
            if in_bucket == 0 || ((below + in_bucket) as f64) < rank {
                below += in_bucket;
                continue;
            }
            let Some(&upper) = UPPER_BOUNDS.get(index) else {
                return Some(UPPER_BOUNDS[FINITE - 1]);
            };
            let lower = index
                .checked_sub(1)
                .map_or(Duration::ZERO, |i| UPPER_BOUNDS[i]);
            let within = ((rank - below as f64) / in_bucket as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower).mul_f64(within));
        }
        // Unreachable: the last non-empty bucket reaches `count >= rank`.
        Some(UPPER_BOUNDS[FINITE - 1])
    }

    fn empty() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            sum_nanos: 0.0,
        }
    }
}

impl Default for Histogram {
    /// An empty histogram.
    fn default() -> Self {
        Histogram::empty()
    }
}

impl fmt::Debug for Histogram {
    /// The count, sum, median and 99th percentile, then the non-empty
    /// buckets as `bound: count`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buckets: Vec<(String, u64)> = self
            .counts
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(index, &count)| {
                let bound = UPPER_BOUNDS
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), |bound| format!("{bound:?}"));
                (bound, count)
            })
            .collect();
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("sum", &self.sum())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("buckets", &buckets)
            .finish()
    }
}

/// Latency histograms of a pool's jobs, from [`Pool::metrics`](crate::Pool::metrics).
///
/// Every job a worker runs, tracked ([`Pool::submit`](crate::Pool::submit))
/// or not ([`Pool::execute`](crate::Pool::execute)), adds one latency to
/// each histogram when it returns (or panics): [`queue_wait`](Self::queue_wait)
/// from its submission to its start, [`run_time`](Self::run_time) from its
/// start to its end. A job that never starts (cancelled while queued, by
/// id, deadline or [`Pool::shutdown_now`](crate::Pool::shutdown_now)) is
/// in neither: it waited, but for nothing, and counting it would make the
/// queue look slower exactly when jobs are being dropped. Nor is a job whose
/// worker thread died under it (a bug or a panicking hook, never a panic of
/// the job itself, which is caught). So once the pool is idle the two
/// counts are equal, and are the jobs that ran: in
/// [`PoolStats`](crate::PoolStats) terms, every job counted `completed` or
/// `failed`, and those `cancelled` after they started.
///
/// Each worker records into its own histograms without locks or
/// read-modify-writes: a few nanoseconds plus two clock reads per untracked
/// job (see [`Builder::latency_metrics`](crate::Builder::latency_metrics),
/// which turns them off, and `docs/benchmarks.md`). While jobs run, a
/// snapshot is approximate (a job may show in a bucket but not yet in the
/// sum); once [`Pool::join`](crate::Pool::join) returns it is exact.
///
/// # Examples
///
/// ```
/// use harbor_pool::Pool;
///
/// let pool = Pool::new(2).unwrap();
/// pool.execute(|| ()).unwrap();
/// pool.submit(|_| Ok(())).unwrap().join().unwrap();
/// pool.join();
/// let metrics = pool.metrics();
/// assert_eq!(metrics.queue_wait.count(), 2);
/// assert_eq!(metrics.run_time.count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct PoolMetrics {
    /// From submission to start: the time in the queue, including any time
    /// the submitter spent blocked on a full bounded queue. A worker that
    /// takes a job straight after finishing another starts it when it
    /// became free (one clock reading serves both).
    pub queue_wait: Histogram,
    /// From start to end: running the job, including dropping its closure
    /// (and, for a tracked job, storing its result); for a job taken
    /// straight after another, also the pool's bookkeeping between the two
    /// (a fraction of a microsecond).
    pub run_time: Histogram,
}

/// One histogram's cells, written by one worker (invariant 1).
struct Cells {
    counts: [AtomicU64; BUCKETS],
    /// Nanoseconds, saturating (at 584 years per worker); added up as `f64`
    /// by readers.
    sum_nanos: AtomicU64,
}

impl Cells {
    fn new() -> Self {
        Cells {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Adds one latency of `nanos`. Relaxed load and store: this worker is
    /// the only writer (invariant 1), and `Tally::count` publishes them
    /// (invariant 2).
    #[inline]
    fn add(&self, nanos: u64) {
        let cell = &self.counts[bucket(nanos)];
        cell.store(cell.load(Relaxed) + 1, Relaxed);
        let sum = self.sum_nanos.load(Relaxed).saturating_add(nanos);
        self.sum_nanos.store(sum, Relaxed);
    }

    /// Adds these cells into `histogram` (relaxed: invariant 3).
    fn add_to(&self, histogram: &mut Histogram) {
        for (total, cell) in histogram.counts.iter_mut().zip(&self.counts) {
            *total += cell.load(Relaxed);
        }
        histogram.sum_nanos += self.sum_nanos.load(Relaxed) as f64;
    }
}

/// One worker's histograms, on cache lines of their own.
#[repr(align(128))]
pub(crate) struct WorkerLatency {
    queue_wait: Cells,
    run_time: Cells,
}

impl WorkerLatency {
    fn new() -> Self {
        WorkerLatency {
            queue_wait: Cells::new(),
            run_time: Cells::new(),
        }
    }

    /// Records a job submitted, started and ended at these ticks (see
    /// [`JobTimer`]).
    #[inline]
    fn record(&self, submitted: Tick, started: Tick, ended: Tick) {
        self.queue_wait.add(nanos_between(submitted, started));
        self.run_time.add(nanos_between(started, ended));
    }
}

/// Times one job on one worker: made just before the job runs, stopped
/// just after it returns.
#[must_use]
pub(crate) struct JobTimer<'a> {
    cells: &'a WorkerLatency,
    submitted: Tick,
    started: Tick,
}

impl JobTimer<'_> {
    /// Reads the clock, records the job and returns the reading (the next
    /// job's start if the worker takes one at once, invariant 5). Call on
    /// the worker's thread (invariant 1), before counting the job finished
    /// (invariant 2).
    #[inline]
    pub(crate) fn stop(self) -> Tick {
        let ended = now();
        self.stop_at(ended);
        ended
    }

    /// Records the job as ended at `ended`, a reading the caller took.
    #[inline]
    pub(crate) fn stop_at(self, ended: Tick) {
        self.cells.record(self.submitted, self.started, ended);
    }
}

/// The start tick of a job submitted at `submitted` that starts now: the
/// worker's `boundary` tick if it has one (invariant 5), never before the
/// submission, or a fresh reading.
#[inline]
pub(crate) fn started(submitted: Tick, boundary: Option<Tick>) -> Tick {
    match boundary {
        Some(boundary) => boundary.max(submitted),
        None => now(),
    }
}

/// Every worker's histograms, indexed like the workers, or nothing when
/// latency metrics are off.
pub(crate) struct Latency {
    /// Empty when off: then no clock is read and nothing recorded.
    workers: Box<[WorkerLatency]>,
}

impl Latency {
    /// Histograms for `workers` workers if `on`
    /// ([`Builder::latency_metrics`](crate::Builder::latency_metrics)).
    pub(crate) fn new(workers: usize, on: bool) -> Self {
        // Calibrate the clock while the pool is built, not in the first job:
        // tracked jobs read it for their times even when this is off.
        let _ = now();
        Latency {
            workers: (0..if on { workers } else { 0 })
                .map(|_| WorkerLatency::new())
                .collect(),
        }
    }

    /// The submission tick of a job submitted now ([`NOT_READ`] when off).
    #[inline]
    pub(crate) fn submitted(&self) -> Tick {
        if self.workers.is_empty() {
            NOT_READ
        } else {
            now()
        }
    }

    /// Starts timing a job submitted at `submitted` that worker `index` is
    /// about to run, at `boundary` if the worker has one (invariant 5) or
    /// now; `None` when off (and then no clock is read).
    #[inline]
    pub(crate) fn start(
        &self,
        index: usize,
        submitted: Tick,
        boundary: Option<Tick>,
    ) -> Option<JobTimer<'_>> {
        let cells = self.workers.get(index)?;
        Some(JobTimer {
            cells,
            submitted,
            started: started(submitted, boundary),
        })
    }

    /// As [`start`](Self::start), for a job whose start tick the caller
    /// read already (a tracked job's, for its record); `None` when off.
    #[inline]
    pub(crate) fn timer(
        &self,
        index: usize,
        submitted: Tick,
        started: Tick,
    ) -> Option<JobTimer<'_>> {
        let cells = self.workers.get(index)?;
        Some(JobTimer {
            cells,
            submitted,
            started,
        })
    }

    /// Every worker's histograms added up (empty when off).
    pub(crate) fn snapshot(&self) -> PoolMetrics {
        let mut metrics = PoolMetrics::default();
        for worker in self.workers.iter() {
            worker.queue_wait.add_to(&mut metrics.queue_wait);
            worker.run_time.add_to(&mut metrics.run_time);
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(latencies: &[Duration]) -> Histogram {
        let cells = Cells::new();
        for &latency in latencies {
            cells.add(u64::try_from(latency.as_nanos()).unwrap());
        }
        let mut histogram = Histogram::default();
        cells.add_to(&mut histogram);
        histogram
    }

    #[test]
    fn bounds_are_powers_of_two_from_one_microsecond_past_100_seconds() {
        let bounds = Histogram::upper_bounds();
        assert_eq!(bounds.len(), FINITE);
        assert_eq!(bounds[0], Duration::from_micros(1));
        for pair in bounds.windows(2) {
            assert_eq!(pair[1], pair[0] * 2);
        }
        assert_eq!(bounds[FINITE - 1], Duration::from_nanos(134_217_728_000));
        assert!(bounds[FINITE - 2] < Duration::from_secs(100));
    }

    #[test]
    fn each_latency_lands_in_the_first_bucket_that_holds_it() {
        let cases: &[(u64, usize)] = &[
            (0, 0),
            (1, 0),
            (1_000, 0),
            (1_001, 1),
            (2_000, 1),
            (2_001, 2),
            (4_000, 2),
            (4_001, 3),
            (20_000_000, 15), // 20 ms: (16.384 ms, 32.768 ms]
            (32_768_000, 15),
            (32_768_001, 16),
            (134_217_728_000, FINITE - 1),
            (134_217_728_001, FINITE),
            (u64::MAX, FINITE),
        ];
        for &(nanos, expected) in cases {
            assert_eq!(bucket(nanos), expected, "{nanos} ns");
            let bound = UPPER_BOUNDS.get(expected).copied().unwrap_or(Duration::MAX);
            assert!(Duration::from_nanos(nanos) <= bound);
            if expected > 0 {
                assert!(Duration::from_nanos(nanos) > UPPER_BOUNDS[expected - 1]);
            }
        }
    }

    #[test]
    fn count_sum_and_buckets_of_known_data() {
        let h = histogram(&[
            Duration::from_nanos(500),
            Duration::from_micros(3),
            Duration::from_micros(3),
            Duration::from_secs(1000),
        ]);
        assert_eq!(h.count(), 4);
        assert_eq!(h.counts()[0], 1);
        assert_eq!(h.counts()[2], 2);
        assert_eq!(h.counts()[FINITE], 1);
        assert_eq!(
            h.sum(),
            Duration::from_secs(1000) + Duration::from_nanos(6_500)
        );
    }

    #[test]
    fn quantiles_of_known_data() {
        // 90 latencies of 3 µs, in (2 µs, 4 µs]; 10 of 100 ms, in
        // (65.536 ms, 131.072 ms].
        let mut latencies = vec![Duration::from_micros(3); 90];
        latencies.extend([Duration::from_millis(100); 10]);
        let h = histogram(&latencies);
        let micros = |q: f64| h.quantile(q).unwrap().as_secs_f64() * 1e6;
        // Interpolated inside (2, 4] µs: rank 50 is the 50th of its 90.
        let median = 2.0 + 2.0 * 50.0 / 90.0;
        assert!((micros(0.5) - median).abs() < 1e-3, "{}", micros(0.5));
        assert!((micros(0.9) - 4.0).abs() < 1e-3, "{}", micros(0.9));
        // The lower edge of the first non-empty bucket.
        assert!((micros(0.0) - 2.0).abs() < 1e-3, "{}", micros(0.0));
        // Rank 95: half way through the 10 in (65.536, 131.072] ms.
        assert!((micros(0.95) - 98_304.0).abs() < 1e-3, "{}", micros(0.95));
        assert_eq!(h.quantile(1.0), Some(Duration::from_nanos(131_072_000)));
    }

    #[test]
    fn quantile_refuses_bad_input_and_empty_histograms() {
        let h = histogram(&[Duration::from_micros(1)]);
        for q in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
            assert_eq!(h.quantile(q), None, "{q}");
        }
        assert_eq!(Histogram::default().quantile(0.5), None);
        // One latency in the first bucket: interpolated from zero.
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(500)));
    }

    #[test]
    fn quantile_in_the_overflow_bucket_is_the_largest_bound() {
        let h = histogram(&[Duration::from_secs(3600)]);
        assert_eq!(h.quantile(0.5), Some(UPPER_BOUNDS[FINITE - 1]));
    }

    #[test]
    fn workers_add_up() {
        let latency = Latency::new(3, true);
        // Ticks are not nanoseconds: derive them from real readings.
        let t0 = now();
        let timers: Vec<_> = (0..3)
            .map(|i| latency.start(i, t0, None).unwrap())
            .collect();
        for timer in timers {
            assert!(timer.stop() >= t0);
        }
        // A clock that seems to go backwards counts as zero.
        latency.workers[0].record(now(), t0, t0);
        let metrics = latency.snapshot();
        assert_eq!(metrics.queue_wait.count(), 4);
        assert_eq!(metrics.run_time.count(), 4);
        assert!(metrics.queue_wait.counts()[0] >= 1, "{metrics:?}");
        assert_eq!(nanos_between(10, 5), 0);
    }

    #[test]
    fn off_reads_no_clock_and_records_nothing() {
        let latency = Latency::new(2, false);
        assert_eq!(latency.submitted(), NOT_READ);
        assert!(latency.start(0, NOT_READ, None).is_none());
        assert!(latency.timer(0, NOT_READ, now()).is_none());
        assert_eq!(latency.snapshot(), PoolMetrics::default());
    }

    #[test]
    fn a_boundary_start_is_never_before_the_submission() {
        let submitted = now();
        assert_eq!(started(submitted, Some(submitted - 5)), submitted);
        assert_eq!(started(submitted, Some(submitted + 5)), submitted + 5);
        assert!(started(submitted, None) >= submitted);
    }

    #[test]
    fn wall_times_come_from_an_anchor_refreshed_every_10_ms() {
        let from = now();
        // The first call on a thread reads the wall clock and anchors there.
        let anchored = wall_at(from);
        let wall = SystemTime::now();
        assert!(wall.duration_since(anchored).unwrap() < Duration::from_secs(1));
        // Ticks for between 5 and 10 ms later: derived from the anchor.
        let mut ticks = 1;
        while nanos_between(from, from + ticks) < ANCHOR_NANOS / 2 {
            ticks *= 2;
        }
        let nanos = nanos_between(from, from + ticks);
        assert!(nanos <= ANCHOR_NANOS, "{nanos}");
        assert_eq!(
            wall_at(from + ticks),
            anchored + Duration::from_nanos(nanos)
        );
        // Beyond 10 ms: a fresh reading, and a new anchor.
        let later = from + 4 * ticks;
        let fresh = wall_at(later);
        assert!(fresh >= wall);
        assert_eq!(wall_at(later), fresh);
        // Before the anchor: a reading, and the anchor stays.
        assert!(wall_at(from) >= fresh);
        assert_eq!(
            wall_at(later + 1),
            fresh + Duration::from_nanos(nanos_between(later, later + 1))
        );
    }

    #[test]
    fn ticks_measure_real_time() {
        let started = now();
        let wall = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let measured = nanos_between(started, now());
        let elapsed = u64::try_from(wall.elapsed().as_nanos()).unwrap();
        // Same interval, two clocks: within a millisecond and 5% of each
        // other (the sleep itself may be long on a loaded machine).
        assert!(measured >= 19_000_000, "{measured} ns");
        let diff = measured.abs_diff(elapsed);
        assert!(diff < 1_000_000 + elapsed / 20, "{measured} vs {elapsed}");
    }

    #[test]
    fn debug_shows_the_summary() {
        let h = histogram(&[Duration::from_micros(3)]);
        let text = format!("{h:?}");
        assert!(text.contains("count: 1"), "{text}");
        assert!(text.contains("4µs"), "{text}");
    }
}
