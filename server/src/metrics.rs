//! `GET /metrics`: Prometheus (OpenMetrics) text through `prometheus-client`.
//!
//! The pools' counters, gauges and latency histograms are read at scrape
//! time from [`Pool::stats`] and [`Pool::metrics`] by a collector, so
//! serving a request costs the pools nothing; the HTTP side's counters are
//! `prometheus-client` metrics updated as requests and connections come
//! and go. With a store, its counters ([`Store::stats`]) are read at
//! scrape time too.

use std::sync::Arc;

use harbor_pool::{Histogram, Pool, PoolStats};
use harbor_store_postgres::{Store, StoreStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{self, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// `Content-Type` of the exposition.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The two pools every handler reaches.
#[derive(Debug)]
pub(crate) struct Pools {
    /// Runs request-side work: `/sleep`, `/panic`.
    pub(crate) http: Pool,
    /// Runs demo jobs.
    pub(crate) jobs: Pool,
}

/// Labels of a request count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The route's template (`/jobs/{id}`), `unmatched` or `refused`.
    pub(crate) route: &'static str,
    pub(crate) status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// A request in flight: counted in `http_requests_in_flight` until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, histogram::Histogram>,
    open_connections: Gauge,
    in_flight: Gauge,
    accepted: Counter,
    refused: Counter,
    limits: Family<LimitLabels, Counter>,
}

impl Metrics {
    /// Registers every metric; the pools' are read from `pools` at scrape
    /// time, and the store's from `store` when there is one.
    pub(crate) fn new(pools: Arc<Pools>, store: Option<Arc<Store>>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, histogram::Histogram>::new_with_constructor(|| {
            // 100 µs to about 105 s.
            histogram::Histogram::new(exponential_buckets(0.0001, 4.0, 11))
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's head to its response, by route",
            Unit::Seconds,
            durations.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "http_open_connections",
            "Connections open now",
            open_connections.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests received and not yet answered (a scrape counts itself)",
            in_flight.clone(),
        );
        let accepted = Counter::default();
        registry.register(
            "http_connections_accepted",
            "Connections accepted and served",
            accepted.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "http_connections_refused",
            "Connections closed at once because --max-connections were open",
            refused.clone(),
        );
        let limits = Family::<LimitLabels, Counter>::default();
        registry.register(
            "http_limit_rejections",
            "Requests refused by a limit (header_bytes, header_timeout, malformed_head, \
             body_bytes, body_timeout, request_timeout)",
            limits.clone(),
        );
        registry.register_collector(Box::new(PoolCollector(pools)));
        if let Some(store) = store {
            registry.register_collector(Box::new(StoreCollector(store)));
        }
        Metrics {
            registry,
            requests,
            durations,
            open_connections,
            in_flight,
            accepted,
            refused,
            limits,
        }
    }

    /// Counts a request in flight until the returned guard is dropped
    /// (answered, or its connection gone).
    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts an answered request.
    pub(crate) fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.durations
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    /// Counts a request refused by `limit`.
    pub(crate) fn limit(&self, limit: &'static str) {
        self.limits.get_or_create(&LimitLabels { limit }).inc();
    }

    /// Counts a connection accepted; the returned guard counts it open
    /// until dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> OpenConnection {
        self.accepted.inc();
        self.open_connections.inc();
        OpenConnection(Arc::clone(self))
    }

    /// Counts a connection refused over the limit.
    pub(crate) fn refused(&self) {
        self.refused.inc();
    }

    /// The exposition text.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and every metric encodes.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            log::error!("encoding the metrics failed: {err}");
        }
        text
    }
}

/// Counts one connection open while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}

/// Reads both pools at scrape time.
#[derive(Debug)]
struct PoolCollector(Arc<Pools>);

type PoolLabels = [(&'static str, &'static str); 1];
/// A metric read from a pool's stats: name, help, value.
type StatMetric = (&'static str, &'static str, fn(&PoolStats) -> u64);
/// A latency histogram read from a pool's metrics: name, help, which.
type LatencyMetric = (
    &'static str,
    &'static str,
    fn(&harbor_pool::PoolMetrics) -> &Histogram,
);

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let pools: [(PoolLabels, &Pool); 2] = [
            ([("pool", "http")], &self.0.http),
            ([("pool", "jobs")], &self.0.jobs),
        ];
        let stats: Vec<(PoolLabels, PoolStats)> = pools
            .iter()
            .map(|(labels, pool)| (*labels, pool.stats()))
            .collect();
        let gauges: [StatMetric; 5] = [
            ("harbor_pool_workers", "Configured worker threads", |s| {
                s.workers as u64
            }),
            ("harbor_pool_alive_workers", "Worker threads up", |s| {
                s.alive as u64
            }),
            ("harbor_pool_busy_workers", "Workers running a job", |s| {
                s.busy as u64
            }),
            ("harbor_pool_queued_jobs", "Entries in the queue", |s| {
                s.queued as u64
            }),
            (
                "harbor_pool_stray_threads",
                "Detached threads stuck in abandoned jobs",
                |s| s.stray_threads as u64,
            ),
        ];
        for (name, help, value) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, stats) in &stats {
                let value = i64::try_from(value(stats)).unwrap_or(i64::MAX);
                metric.encode_family(labels)?.encode_gauge(&value)?;
            }
        }
        let counters: [StatMetric; 7] = [
            ("harbor_pool_jobs_submitted", "Jobs accepted", |s| {
                s.submitted
            }),
            ("harbor_pool_jobs_completed", "Jobs that completed", |s| {
                s.completed
            }),
            (
                "harbor_pool_jobs_failed",
                "Jobs that failed (returned an error, panicked or lost their worker)",
                |s| s.failed,
            ),
            ("harbor_pool_jobs_panicked", "Jobs that panicked", |s| {
                s.panicked
            }),
            (
                "harbor_pool_jobs_cancelled",
                "Jobs that ended cancelled",
                |s| s.cancelled,
            ),
            (
                "harbor_pool_jobs_abandoned",
                "Jobs abandoned after ignoring a cancel",
                |s| s.abandoned,
            ),
            (
                "harbor_pool_worker_restarts",
                "Worker threads respawned",
                |s| s.restarts,
            ),
        ];
        for (name, help, value) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, stats) in &stats {
                metric
                    .encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value(stats), None)?;
            }
        }
        let latencies: Vec<(PoolLabels, harbor_pool::PoolMetrics)> = pools
            .iter()
            .map(|(labels, pool)| (*labels, pool.metrics()))
            .collect();
        let histograms: [LatencyMetric; 2] = [
            (
                "harbor_pool_queue_wait",
                "Time jobs waited in the queue",
                |m| &m.queue_wait,
            ),
            ("harbor_pool_run_time", "Time jobs ran", |m| &m.run_time),
        ];
        for (name, help, histogram) in histograms {
            let mut metric = encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (labels, latency) in &latencies {
                PoolHistogram(histogram(latency)).encode(metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// Reads the store's counters at scrape time.
#[derive(Debug)]
struct StoreCollector(Arc<Store>);

/// A store figure: name, help, value.
type StoreMetric = (&'static str, &'static str, fn(&StoreStats) -> u64);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let buffered = i64::try_from(stats.buffered).unwrap_or(i64::MAX);
        encoder
            .encode_descriptor(
                "harbor_store_buffered_jobs",
                "Jobs whose latest state waits in the store's buffer to be written",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&buffered)?;
        let counters: [StoreMetric; 6] = [
            (
                "harbor_store_transitions_written",
                "Job states written to PostgreSQL (after coalescing)",
                |s| s.transitions,
            ),
            (
                "harbor_store_batches",
                "Batch statements written, one round trip each",
                |s| s.batches,
            ),
            (
                "harbor_store_write_errors",
                "Batch writes that failed and were retried",
                |s| s.write_errors,
            ),
            (
                "harbor_store_overflowed",
                "Job states dropped because the store's buffer was full",
                |s| s.overflowed,
            ),
            (
                "harbor_store_heartbeats",
                "Lease renewals of this replica",
                |s| s.heartbeats,
            ),
            (
                "harbor_store_purged",
                "Finished job rows deleted by retention",
                |s| s.purged,
            ),
        ];
        for (name, help, value) in counters {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&value(&stats), None)?;
        }
        labelled_counter(
            &mut encoder,
            "harbor_store_reconnects",
            "Connections the store opened again after losing one, by connection",
            "connection",
            [
                ("writer", stats.writer_connections.saturating_sub(1)),
                ("listener", stats.listener_connections.saturating_sub(1)),
            ],
        )?;
        labelled_counter(
            &mut encoder,
            "harbor_store_cancels_delivered",
            "Cancel requests from other replicas handed to this pool, by how they were found",
            "via",
            [
                ("notify", stats.cancels_notified),
                ("poll", stats.cancels_polled),
            ],
        )?;
        Ok(())
    }
}

/// One counter family with a single label, a value per label value.
fn labelled_counter<const N: usize>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    values: [(&'static str, u64); N],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        family
            .encode_family(&[(label, value)])?
            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
    }
    Ok(())
}

/// A pool's latency histogram as a Prometheus histogram, its buckets those
/// of [`Histogram::upper_bounds`] in seconds.
struct PoolHistogram<'a>(&'a Histogram);

impl EncodeMetric for PoolHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Not cumulative: the encoder adds them up; the last is +Inf.
        let buckets: Vec<(f64, u64)> = Histogram::upper_bounds()
            .iter()
            .map(|bound| bound.as_secs_f64())
            .chain([f64::MAX])
            .zip(self.0.counts().iter().copied())
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum().as_secs_f64(),
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_both_pools_and_the_http_side() {
        let pools = Arc::new(Pools {
            http: Pool::builder()
                .workers(1)
                .thread_name("http")
                .build()
                .unwrap(),
            jobs: Pool::builder()
                .workers(2)
                .thread_name("job")
                .build()
                .unwrap(),
        });
        pools.jobs.submit(|_| Ok(())).unwrap().join().unwrap();
        let metrics = Arc::new(Metrics::new(Arc::clone(&pools), None));
        metrics.request("/stats", 200, 0.001);
        metrics.limit("header_bytes");
        metrics.refused();
        let open = metrics.connection();
        let in_flight = metrics.in_flight();
        let text = metrics.encode();
        for line in [
            "harbor_pool_workers{pool=\"http\"} 1",
            "harbor_pool_workers{pool=\"jobs\"} 2",
            "harbor_pool_jobs_submitted_total{pool=\"jobs\"} 1",
            "harbor_pool_jobs_completed_total{pool=\"jobs\"} 1",
            "harbor_pool_run_time_seconds_count{pool=\"jobs\"} 1",
            "harbor_pool_run_time_seconds_bucket{le=\"+Inf\",pool=\"jobs\"} 1",
            "harbor_pool_queue_wait_seconds_bucket{le=\"0.000001\",pool=\"http\"} 0",
            "http_requests_total{route=\"/stats\",status=\"200\"} 1",
            "http_request_duration_seconds_count{route=\"/stats\"} 1",
            "http_open_connections 1",
            "http_requests_in_flight 1",
            "http_connections_accepted_total 1",
            "http_connections_refused_total 1",
            "http_limit_rejections_total{limit=\"header_bytes\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        assert!(
            !text.contains("harbor_store_"),
            "no store, no store metrics"
        );
        drop(open);
        drop(in_flight);
        let text = metrics.encode();
        assert!(text.contains("http_open_connections 0"), "{text}");
        assert!(text.contains("http_requests_in_flight 0"), "{text}");
    }
}
