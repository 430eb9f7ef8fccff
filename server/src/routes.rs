//! The routes and their handlers. Handlers run on the runtime and never
//! block: request-side work (`/sleep`, `/panic`) and demo jobs run on
//! harbor pools, awaited through `JobHandle`'s `Future` and
//! `Pool::wait_async`.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | a page listing these routes |
//! | `GET /sleep` | answers after 5 s (`?ms=N` to choose, at most 10 000), from a job on the request pool |
//! | `GET /panic` | a job on the request pool panics on purpose; the client gets a 500 |
//! | `POST /jobs` | starts a demo job, answers 202 `{"id": ...}` |
//! | `GET /jobs/<id>` | the job's status, times, worker and progress |
//! | `DELETE /jobs/<id>` | cancels the job |
//! | `GET /jobs/<id>/wait?timeout_ms=N` | long-polls until the job is finished |
//! | `GET /stats` | both pools' counters |
//! | `GET /metrics` | Prometheus text: pools, latencies, HTTP (and the store's figures) |
//!
//! With a store (`--database-url`), the three `/jobs/<id>` routes answer
//! for any replica's job: from this replica's pool when the job is local
//! (the same JSON, plus `replica` and `replica_address`), else from the
//! store (the same fields, `lost` among the statuses, plus
//! `cancel_requested_at`); store calls run on blocking threads or as a
//! future woken by the store ([`crate::store`]).

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use harbor_pool::{
    CancelOutcome, JobError, JobId, JobInfo, JobOptions, JobResult, JobStatus, Pool, PoolStats,
    SubmitError,
};
use harbor_store_postgres::{CancelRequest, StoredJob, StoredStatus};
use serde_json::{Value, json};

use crate::demo::{JobSpec, millis};
use crate::metrics::{self, Metrics, Pools};
use crate::reply;
use crate::store::{Attached, Unanswered};

/// How long `GET /sleep` sleeps by default, and the most `?ms=` may ask for.
pub(crate) const SLEEP_DEFAULT: Duration = Duration::from_secs(5);
pub(crate) const SLEEP_MAX: Duration = Duration::from_secs(10);
/// The default and the largest `timeout_ms` of `GET /jobs/<id>/wait`.
pub(crate) const WAIT_DEFAULT: Duration = Duration::from_secs(10);
pub(crate) const WAIT_MAX: Duration = Duration::from_secs(60);

/// What every handler can reach.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) pools: Arc<Pools>,
    pub(crate) metrics: Arc<Metrics>,
    /// The PostgreSQL store, with `--database-url`.
    pub(crate) store: Option<Arc<Attached>>,
}

impl App {
    /// A local job's JSON: the in-memory server's, plus this replica's id
    /// and address when there is a store.
    fn local_json(&self, info: &JobInfo) -> Value {
        let mut job = job_json(info);
        if let Some(attached) = &self.store {
            job["replica"] = Value::from(attached.replica.as_str());
            job["replica_address"] = Value::from(attached.address.as_str());
        }
        job
    }
}

/// The routes, without the limits and metrics around them
/// ([`crate::limits::service`] adds those).
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", only_get(get(index)))
        .route("/sleep", only_get(get(sleep)))
        .route("/panic", only_get(get(panic)))
        .route("/stats", only_get(get(stats)))
        .route("/metrics", only_get(get(metrics_text)))
        .route(
            "/jobs",
            post(submit)
                .fallback(|method: Method| async move { reply::not_allowed(&method, "POST") }),
        )
        .route(
            "/jobs/{id}",
            get(job_status)
                .delete(cancel)
                .fallback(
                    |method: Method| async move { reply::not_allowed(&method, "GET, DELETE") },
                ),
        )
        .route("/jobs/{id}/wait", only_get(get(wait)))
        .fallback(|uri: axum::http::Uri| async move { reply::not_found(uri.path()) })
        .with_state(app)
}

/// The template of the route `path` would take, for metrics and logs.
pub(crate) fn route_label(path: &str) -> &'static str {
    let path = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    match path {
        "/" => "/",
        "/sleep" => "/sleep",
        "/panic" => "/panic",
        "/stats" => "/stats",
        "/metrics" => "/metrics",
        "/jobs" => "/jobs",
        _ => match path.strip_prefix("/jobs/") {
            Some(rest) if !rest.contains('/') => "/jobs/{id}",
            Some(rest)
                if rest
                    .strip_suffix("/wait")
                    .is_some_and(|id| !id.contains('/')) =>
            {
                "/jobs/{id}/wait"
            }
            _ => "unmatched",
        },
    }
}

fn only_get(route: MethodRouter<Arc<App>>) -> MethodRouter<Arc<App>> {
    route.fallback(|method: Method| async move { reply::not_allowed(&method, "GET") })
}

async fn index() -> Response {
    let body = "<!doctype html>
<html><head><meta charset=\"utf-8\"><title>harbor-server</title></head>
<body>
<h1>harbor-server</h1>
<p>A JSON job service whose work runs on supervised, panic-resilient
<code>harbor_pool::Pool</code>s: request-side work on one, demo jobs on another.</p>
<ul>
<li><code>GET /</code>: this page</li>
<li><code>GET /sleep</code>: answers after 5 seconds (<code>?ms=N</code> to choose); other requests are served meanwhile</li>
<li><code>GET /panic</code>: a job panics; you get a 500 and the server keeps serving</li>
<li><code>POST /jobs</code>: start a demo job, e.g. <code>{\"kind\":\"sleep\",\"ms\":2000}</code>,
<code>{\"kind\":\"count\",\"to\":1000000000}</code>, <code>{\"kind\":\"progress\",\"steps\":10,\"ms\":500}</code>,
<code>{\"kind\":\"panic\",\"message\":\"boom\"}</code>,
<code>{\"kind\":\"fail\",\"message\":\"bad input\"}</code>; optional <code>\"timeout_ms\"</code></li>
<li><code>GET /jobs/&lt;id&gt;</code>: a job's status, times and progress</li>
<li><code>DELETE /jobs/&lt;id&gt;</code>: cancel a job</li>
<li><code>GET /jobs/&lt;id&gt;/wait?timeout_ms=N</code>: wait until a job is finished</li>
<li><code>GET /stats</code>: both pools' counters</li>
<li><code>GET /metrics</code>: Prometheus metrics</li>
</ul>
</body></html>
";
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Cancels a request-pool job when its request is dropped (the client
/// left, or the request timed out) before the job finished.
struct CancelOnDrop<'a> {
    pool: &'a Pool,
    id: JobId,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        // A job that already finished answers AlreadyFinished: harmless.
        self.pool.cancel(self.id);
    }
}

/// `GET /sleep`: a job on the request pool sleeps (on its token, so a
/// shutdown can cut it short); the handler awaits it without blocking.
async fn sleep(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Response {
    let duration = match reply::query_duration(
        query.as_deref().unwrap_or(""),
        "ms",
        SLEEP_DEFAULT,
        SLEEP_MAX,
    ) {
        Ok(duration) => duration,
        Err(message) => return reply::error(400, message),
    };
    let pool = &app.pools.http;
    let mut handle = match pool.try_submit(move |token| {
        token.sleep(duration)?;
        Ok(worker_name())
    }) {
        Ok(handle) => handle,
        Err(err) => return refused(err, "request"),
    };
    let _cancel = CancelOnDrop {
        pool,
        id: handle.id(),
    };
    match (&mut handle).await {
        Ok(worker) => with_worker(
            reply::json(200, &json!({ "slept_ms": millis(duration) })),
            &worker,
        ),
        Err(JobError::Cancelled) => reply::error(503, "server is shutting down"),
        Err(err) => reply::error(500, err.to_string()),
    }
}

/// `GET /panic`: a job on the request pool panics; the pool catches it and
/// the client gets a 500 with the message.
async fn panic(State(app): State<Arc<App>>) -> Response {
    // The worker's name, set by the job before it panics.
    let worker = Arc::new(OnceLock::new());
    let job_worker = Arc::clone(&worker);
    let handle = match app.pools.http.try_submit(move |_| -> JobResult<()> {
        let _ = job_worker.set(worker_name());
        panic!("deliberate panic in the /panic handler")
    }) {
        Ok(handle) => handle,
        Err(err) => return refused(err, "request"),
    };
    match handle.await {
        Err(JobError::Panicked(message)) => {
            let response = reply::error(
                500,
                format!(
                    "the handler panicked ({message}); the pool caught the panic \
                     and the server keeps serving"
                ),
            );
            match worker.get() {
                Some(name) => with_worker(response, name),
                None => response,
            }
        }
        Ok(()) => reply::error(500, "the /panic job did not panic"),
        Err(JobError::Cancelled) => reply::error(503, "server is shutting down"),
        Err(err) => reply::error(500, err.to_string()),
    }
}

/// The name of the thread running this, for `X-Worker`.
fn worker_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// Names the pool thread that did the request's work.
fn with_worker(mut response: Response, worker: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(worker) {
        response.headers_mut().insert("x-worker", value);
    }
    response
}

/// 503 for a submission a pool refused.
fn refused(err: SubmitError, queue: &str) -> Response {
    match err {
        SubmitError::QueueFull => reply::busy(format!("server busy: the {queue} queue is full")),
        SubmitError::Shutdown => reply::error(503, "server is shutting down"),
        other => reply::error(503, other.to_string()),
    }
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    reply::json_text(
        200,
        stats_text(&app.pools.http.stats(), &app.pools.jobs.stats()),
    )
}

/// `GET /stats`'s body, written directly: building it as a `Value` (two
/// B-tree maps of twenty `String` keys, then serialising and dropping
/// them) took more than half the instructions of the whole request. The
/// same text as `serde_json` writes for [`stats_json`]: compact, keys in
/// sorted order (tested below).
fn stats_text(http: &PoolStats, jobs: &PoolStats) -> String {
    let mut text = String::with_capacity(512);
    for (name, stats) in [("http", http), ("jobs", jobs)] {
        text.push(if text.is_empty() { '{' } else { ',' });
        text.push('"');
        text.push_str(name);
        text.push_str("\":");
        let fields = [
            ("alive", stats.alive as u64),
            ("busy", stats.busy as u64),
            ("cancelled", stats.cancelled),
            ("completed", stats.completed),
            ("failed", stats.failed),
            ("panicked", stats.panicked),
            ("queued", stats.queued as u64),
            ("restarts", stats.restarts),
            ("submitted", stats.submitted),
            ("workers", stats.workers as u64),
        ];
        for (i, (key, value)) in fields.into_iter().enumerate() {
            text.push(if i == 0 { '{' } else { ',' });
            text.push('"');
            text.push_str(key);
            text.push_str("\":");
            push_decimal(&mut text, value);
        }
        text.push('}');
    }
    text.push('}');
    text
}

/// Appends `value` in decimal: `write!` through `core::fmt` cost 250
/// instructions a number, two thirds of the `GET /stats` handler.
fn push_decimal(text: &mut String, mut value: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    text.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

/// One pool's `GET /stats` entry as a `Value`: the shape [`stats_text`]
/// writes.
#[cfg(test)]
fn stats_json(stats: &PoolStats) -> Value {
    json!({
        "workers": stats.workers,
        "alive": stats.alive,
        "busy": stats.busy,
        "queued": stats.queued,
        "submitted": stats.submitted,
        "completed": stats.completed,
        "failed": stats.failed,
        "panicked": stats.panicked,
        "cancelled": stats.cancelled,
        "restarts": stats.restarts,
    })
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let mut response = Response::new(app.metrics.encode().into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

/// `POST /jobs`. The body was read, within its limits, before routing.
async fn submit(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let spec = match JobSpec::parse(&body) {
        Ok(spec) => spec,
        Err(message) => return reply::error(400, message),
    };
    let options = match spec.timeout {
        Some(timeout) => JobOptions::new().timeout(timeout),
        None => JobOptions::new(),
    };
    let demo = spec.demo;
    match app
        .pools
        .jobs
        .try_submit_with(options, move |token| demo.run(token))
    {
        // Dropping the handle detaches the job; it stays queryable by id.
        Ok(handle) => {
            // `{"id":"<uuid>"}` as serde_json writes it (a UUID needs no
            // escaping), without a `Value` or `format!`.
            let id = handle.id().to_string();
            let mut response = reply::json_text(202, ["{\"id\":\"", &id, "\"}"].concat());
            if let Ok(location) = HeaderValue::from_str(&["/jobs/", &id].concat()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(err) => refused(err, "job"),
    }
}

/// Parses the `<id>` of `/jobs/<id>`; the error is a 400's message.
fn parse_id(id: Result<Path<String>, PathRejection>) -> Result<JobId, String> {
    let Path(text) = id.map_err(|err| err.body_text())?;
    JobId::from_str(&text).map_err(|err| format!("{err} (got {text:?})"))
}

fn unknown_job(id: JobId) -> Response {
    reply::error(
        404,
        format!("no job {id}: never submitted here, or finished and forgotten"),
    )
}

/// 404 for a job neither the pool nor the store knows.
fn unknown_anywhere(id: JobId) -> Response {
    reply::error(
        404,
        format!(
            "no job {id} on any replica: never submitted, not recorded yet, \
             or finished and forgotten"
        ),
    )
}

/// 503 for a store that could not answer: ask again.
fn unanswered(Unanswered(message): Unanswered) -> Response {
    reply::busy(message)
}

/// `GET /jobs/<id>`.
async fn job_status(
    State(app): State<Arc<App>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(message) => return reply::error(400, message),
    };
    if let Some(info) = app.pools.jobs.info(id) {
        return reply::json(200, &app.local_json(&info));
    }
    let Some(attached) = &app.store else {
        return unknown_job(id);
    };
    match attached.job(id).await {
        Ok(Some(job)) => reply::json(200, &stored_json(&job)),
        Ok(None) => unknown_anywhere(id),
        Err(err) => unanswered(err),
    }
}

/// `DELETE /jobs/<id>`.
async fn cancel(State(app): State<Arc<App>>, id: Result<Path<String>, PathRejection>) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(message) => return reply::error(400, message),
    };
    let outcome = app.pools.jobs.cancel(id);
    let Some(attached) = &app.store else {
        return match outcome {
            CancelOutcome::NotFound => unknown_job(id),
            outcome => reply::json(
                200,
                &json!({ "id": id.to_string(), "outcome": outcome.as_str() }),
            ),
        };
    };
    if outcome != CancelOutcome::NotFound {
        return reply::json(
            200,
            &json!({
                "id": id.to_string(),
                "outcome": outcome.as_str(),
                "replica": attached.replica,
            }),
        );
    }
    // Another replica's job: the store records the request and notifies
    // its owner, whose cancel handler cancels it in its pool.
    match attached.cancel(id).await {
        Ok(CancelRequest::Requested { replica }) => reply::json(
            200,
            &json!({ "id": id.to_string(), "outcome": "requested", "replica": replica }),
        ),
        Ok(CancelRequest::Finished(status)) => reply::json(
            200,
            &json!({
                "id": id.to_string(),
                "outcome": CancelOutcome::AlreadyFinished.as_str(),
                "status": status.as_str(),
            }),
        ),
        Ok(CancelRequest::NotFound) => unknown_anywhere(id),
        // A request of a kind added to the store later.
        Ok(other) => reply::error(500, format!("job {id}: unexpected cancel answer {other:?}")),
        Err(err) => unanswered(err),
    }
}

/// `GET /jobs/<id>/wait?timeout_ms=N`: awaits the job (no thread held)
/// until it is finished or the timeout passes, then answers its state
/// either way.
async fn wait(
    State(app): State<Arc<App>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(message) => return reply::error(400, message),
    };
    let timeout = match reply::query_duration(
        query.as_deref().unwrap_or(""),
        "timeout_ms",
        WAIT_DEFAULT,
        WAIT_MAX,
    ) {
        Ok(timeout) => timeout,
        Err(message) => return reply::error(400, message),
    };
    let jobs = &app.pools.jobs;
    if jobs.info(id).is_none() {
        return match &app.store {
            None => unknown_job(id),
            Some(attached) => wait_in_store(attached, id, timeout).await,
        };
    }
    // Timing out is an answer too: the job's current state.
    let _ = tokio::time::timeout(timeout, jobs.wait_async(id)).await;
    match jobs.info(id) {
        Some(info) => reply::json(200, &app.local_json(&info)),
        None => unknown_job(id),
    }
}

/// `/jobs/<id>/wait` for another replica's job: a job the store does not
/// know is a 404 at once; otherwise the store's wait (woken by `NOTIFY`
/// when the owner writes its end, or by its poll), answering the job's
/// state at the end or at the timeout.
async fn wait_in_store(attached: &Attached, id: JobId, timeout: Duration) -> Response {
    let started = tokio::time::Instant::now();
    match attached.job(id).await {
        Ok(Some(job)) if job.status.is_terminal() => return reply::json(200, &stored_json(&job)),
        Ok(Some(_)) => {}
        Ok(None) => return unknown_anywhere(id),
        Err(err) => return unanswered(err),
    }
    let left = timeout.saturating_sub(started.elapsed());
    match attached.wait(id, left).await {
        Ok(Some(job)) => reply::json(200, &stored_json(&job)),
        Ok(None) => unknown_anywhere(id),
        Err(err) => unanswered(err),
    }
}

fn job_json(info: &JobInfo) -> Value {
    let mut job = json!({
        "id": info.id.to_string(),
        "status": info.status.as_str(),
        "finished": info.status.is_terminal(),
        "submitted_at": reply::rfc3339(info.submitted_at),
        "started_at": info.started_at.map(reply::rfc3339),
        "finished_at": info.finished_at.map(reply::rfc3339),
        "worker": info.worker,
        "timeout_ms": info.timeout.map(millis),
        "progress": info.progress.as_ref().map(|progress| json!({
            "done": progress.done,
            "total": progress.total,
            "message": progress.message,
        })),
    });
    if let JobStatus::Failed(message) = &info.status {
        job["error"] = Value::from(message.as_str());
    }
    job
}

/// Another replica's job, read from the store: the fields of
/// [`job_json`] (`worker` and `timeout_ms` are the owner's to know: null),
/// plus the owner and when a cancel was first requested. `status` may be
/// `lost`.
fn stored_json(job: &StoredJob) -> Value {
    let mut value = json!({
        "id": job.id.to_string(),
        "status": job.status.as_str(),
        "finished": job.status.is_terminal(),
        "submitted_at": reply::rfc3339(job.submitted_at),
        "started_at": job.started_at.map(reply::rfc3339),
        "finished_at": job.finished_at.map(reply::rfc3339),
        "worker": Value::Null,
        "timeout_ms": Value::Null,
        "progress": job.progress.as_ref().map(|progress| json!({
            "done": progress.done,
            "total": progress.total,
            "message": progress.message,
        })),
        "replica": job.replica,
        "replica_address": job.replica_address,
        "cancel_requested_at": job.cancel_requested_at.map(reply::rfc3339),
    });
    if let StoredStatus::Failed(message) = &job.status {
        value["error"] = Value::from(message.as_str());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_templates() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(route_label("/"), "/");
        assert_eq!(route_label("/stats/"), "/stats");
        assert_eq!(route_label(&format!("/jobs/{id}")), "/jobs/{id}");
        assert_eq!(route_label(&format!("/jobs/{id}/wait")), "/jobs/{id}/wait");
        assert_eq!(route_label("/jobs/x/y"), "unmatched");
        assert_eq!(route_label("/nope"), "unmatched");
    }

    #[test]
    fn stats_text_is_what_serde_json_writes() {
        let mut http = PoolStats::default();
        let mut jobs = PoolStats::default();
        (http.workers, http.alive, http.busy, http.queued) = (8, 7, 3, 12);
        (http.submitted, http.completed, http.failed) = (u64::MAX, 41, 2);
        (jobs.panicked, jobs.cancelled, jobs.restarts) = (5, 6, 1);
        (jobs.workers, jobs.abandoned) = (2, 9);
        let text = stats_text(&http, &jobs);
        let expected = json!({ "http": stats_json(&http), "jobs": stats_json(&jobs) });
        assert_eq!(text, expected.to_string());
        assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(expected));
    }

    #[test]
    fn decimals_are_written_whole() {
        for value in [0, 7, 10, 99, 100, 12_345, u64::from(u32::MAX) + 1, u64::MAX] {
            let mut text = String::from("x");
            push_decimal(&mut text, value);
            assert_eq!(text, format!("x{value}"));
        }
    }

    #[tokio::test]
    async fn json_replies_are_compact_serde_json() {
        use http_body_util::BodyExt as _;
        let body = json!({ "id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "n": [1, 2] });
        let response = reply::json(202, &body);
        assert_eq!(response.status(), 202);
        assert_eq!(response.headers()[header::CONTENT_TYPE], reply::JSON);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(text, body.to_string().as_bytes());
        assert_eq!(
            &text[..],
            br#"{"id":"67e55044-10b1-426f-9247-bb680e5fe0c8","n":[1,2]}"#
        );
    }
}
