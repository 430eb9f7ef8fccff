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
//! This file holds the public side: [`Histogram`], [`PoolMetrics`] and the
//! buckets. The machinery is in two children: `clock.rs`, the latency
//! clock (ticks, and the wall times derived from them), and `latency.rs`,
//! each worker's cells, the timer a worker records a job with, and the
//! snapshot that adds every worker's cells up. The invariants below govern
//! all three; the tests sit beside the code they test.
//!
//! Invariants:
//!
//! 1. Worker `i`'s [`WorkerLatency`](latency::WorkerLatency) is written
//!    only by the thread that is worker `i`: jobs it takes from the queue
//!    and jobs it runs inline both run on that thread, and a respawned
//!    worker reuses the index only after the supervisor joined the dead
//!    thread. With one writer, a bucket is bumped with a relaxed load and
//!    store, no read-modify-write.
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

mod clock;
mod latency;

pub(crate) use clock::{NOT_READ, Tick, nanos_between, now, wall_at};
pub(crate) use latency::{JobTimer, Latency, started};

use std::fmt;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::latency::Cells;
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
    fn debug_shows_the_summary() {
        let h = histogram(&[Duration::from_micros(3)]);
        let text = format!("{h:?}");
        assert!(text.contains("count: 1"), "{text}");
        assert!(text.contains("4µs"), "{text}");
    }
}
