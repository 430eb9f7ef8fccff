//! The histograms' machinery: each worker's cells (one writer, relaxed
//! stores), the [`JobTimer`] a worker times a job with, and [`Latency`],
//! every worker's cells and the snapshot that adds them up into a
//! [`PoolMetrics`]. The invariants are numbered in the parent module's
//! docs (`metrics.rs`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::clock::{NOT_READ, Tick, nanos_between, now};
use super::{BUCKETS, Histogram, PoolMetrics, bucket};

/// One histogram's cells, written by one worker (invariant 1).
pub(super) struct Cells {
    counts: [AtomicU64; BUCKETS],
    /// Nanoseconds, saturating (at 584 years per worker); added up as `f64`
    /// by readers.
    sum_nanos: AtomicU64,
}

impl Cells {
    pub(super) fn new() -> Self {
        Cells {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Adds one latency of `nanos`. Relaxed load and store: this worker is
    /// the only writer (invariant 1), and `Tally::count` publishes them
    /// (invariant 2).
    #[inline]
    pub(super) fn add(&self, nanos: u64) {
        let cell = &self.counts[bucket(nanos)];
        cell.store(cell.load(Relaxed) + 1, Relaxed);
        let sum = self.sum_nanos.load(Relaxed).saturating_add(nanos);
        self.sum_nanos.store(sum, Relaxed);
    }

    /// Adds these cells into `histogram` (relaxed: invariant 3).
    pub(super) fn add_to(&self, histogram: &mut Histogram) {
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
}
