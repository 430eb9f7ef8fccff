//! A small JSON job service whose HTTP requests and demo jobs run on harbor-pool pools.
//!
//! ```text
//! cargo run --example web_server [-- --addr 127.0.0.1:7878]
//! ```
//!
//! Routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /` | a page listing these routes |
//! | `GET /sleep` | answers after 5 s (`?ms=N` to choose, at most 10 000) |
//! | `GET /panic` | the handler panics on purpose; the client gets a 500 |
//! | `POST /jobs` | starts a demo job, answers 202 `{"id": ...}` |
//! | `GET /jobs/<id>` | the job's status, times and worker |
//! | `DELETE /jobs/<id>` | cancels the job |
//! | `GET /jobs/<id>/wait?timeout_ms=N` | long-polls until the job is finished |
//! | `GET /stats` | both pools' counters |
//!
//! Demo jobs (`POST /jobs` bodies): `{"kind":"sleep","ms":2000}`,
//! `{"kind":"count","to":1000000000}` (a CPU-bound loop that checks its
//! token), `{"kind":"panic","message":"..."}`, `{"kind":"fail","message":"..."}`;
//! any of them may add `"timeout_ms": N`, a deadline after which the job's
//! token is cancelled.
//!
//! # Design
//!
//! * Two pools. The `http` pool handles requests; the `job` pool runs demo
//!   jobs, so a burst of long jobs never starves request handling.
//! * The accept loop hands each request to the `http` pool with
//!   `try_execute`, which never blocks: when the bounded queue is full the
//!   loop itself answers 503 at once instead of queueing without limit.
//! * A handler owns its request through an [`Exchange`] whose `Drop` answers
//!   500 if the handler unwinds. So `GET /panic` really panics on a pool
//!   worker: the client gets its 500 while the stack unwinds, the pool
//!   catches the panic (the worker survives) and counts it in
//!   `/stats` (`http.panicked`).
//! * SIGINT and SIGTERM (via `ctrlc`) stop the accept loop. The server then
//!   stops listening, gives demo jobs a short grace period before cancelling
//!   their tokens, lets running requests finish, prints a summary and exits 0.
//!   A second signal exits at once.
//!
//! Logs go to stderr through `env_logger` (default level `info`);
//! `RUST_LOG=debug` also shows every job's start and end, the pools'
//! workers starting, stopping and being restarted, cancellations and
//! deadlines; `RUST_LOG=trace` adds every submission.

use std::error::Error;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harbor_pool::{
    CancelToken, JobId, JobInfo, JobOptions, JobResult, JobStatus, Pool, PoolStats, SubmitError,
};
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

const USAGE: &str = "\
usage: web_server [--addr HOST:PORT] [--workers N] [--queue N]
                  [--job-workers N] [--job-queue N] [--retain-finished N]

  --addr HOST:PORT       where to listen (default 127.0.0.1:7878; port 0 picks a free port)
  --workers N            request-handling threads (default 8)
  --queue N              requests that may wait for a handler before 503 (default 64)
  --job-workers N        demo-job threads (default 2)
  --job-queue N          demo jobs that may wait for a thread before 503 (default 256)
  --retain-finished N    finished jobs remembered for GET /jobs/<id> (default 10000)";

/// How long `GET /sleep` sleeps by default, and the most `?ms=` may ask for.
const SLEEP_DEFAULT: Duration = Duration::from_secs(5);
const SLEEP_MAX: Duration = Duration::from_secs(10);
/// The default and the largest `timeout_ms` of `GET /jobs/<id>/wait`.
const WAIT_DEFAULT: Duration = Duration::from_secs(10);
const WAIT_MAX: Duration = Duration::from_secs(60);
/// The longest `"ms"` a sleep demo job may ask for.
const DEMO_SLEEP_MAX: Duration = Duration::from_secs(3600);
/// The largest `POST /jobs` body read.
const BODY_LIMIT: u64 = 64 * 1024;
/// At shutdown, demo jobs get this long to finish before their tokens are
/// cancelled (and as long again to notice).
const JOB_GRACE: Duration = Duration::from_secs(1);
/// At shutdown, running requests get this long to finish (a `/sleep` takes
/// at most [`SLEEP_MAX`]).
const REQUEST_GRACE: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("web_server: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("web_server: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Command-line settings.
#[derive(Debug)]
struct Config {
    addr: String,
    workers: usize,
    queue: usize,
    job_workers: usize,
    job_queue: usize,
    retain_finished: usize,
}

impl Config {
    /// `Ok(None)` means `--help`.
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
        let mut config = Config {
            addr: "127.0.0.1:7878".to_owned(),
            workers: 8,
            queue: 64,
            job_workers: 2,
            job_queue: 256,
            retain_finished: harbor_pool::DEFAULT_RETAIN_FINISHED,
        };
        while let Some(flag) = args.next() {
            let number = match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--addr" => {
                    config.addr = args.next().ok_or("--addr needs HOST:PORT")?;
                    continue;
                }
                "--workers" => &mut config.workers,
                "--queue" => &mut config.queue,
                "--job-workers" => &mut config.job_workers,
                "--job-queue" => &mut config.job_queue,
                "--retain-finished" => &mut config.retain_finished,
                _ => return Err(format!("unknown option {flag}")),
            };
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a number"))?;
            *number = value
                .parse()
                .map_err(|err| format!("{flag} {value}: {err}"))?;
        }
        Ok(Some(config))
    }
}

/// What every handler can reach.
#[derive(Debug)]
struct App {
    /// Runs request handlers.
    http: Pool,
    /// Runs demo jobs.
    jobs: Pool,
}

fn run(config: &Config) -> Result<(), Box<dyn Error + Send + Sync>> {
    let http = Pool::builder()
        .workers(config.workers)
        .queue_capacity(config.queue)
        .thread_name("http")
        .build()?;
    let jobs = Pool::builder()
        .workers(config.job_workers)
        .queue_capacity(config.job_queue)
        .retain_finished(config.retain_finished)
        .thread_name("job")
        .build()?;
    let app = Arc::new(App { http, jobs });

    let server = Server::http(&config.addr)
        .map_err(|err| format!("cannot listen on {}: {err}", config.addr))?;
    let server = Arc::new(server);
    let addr: SocketAddr = server
        .server_addr()
        .to_ip()
        .ok_or("the server is not listening on an IP address")?;

    let stopping = Arc::new(AtomicBool::new(false));
    {
        // Weak: the handler lives as long as the process, and must not keep
        // the server (and so its listening socket) alive after the stop.
        let server = Arc::downgrade(&server);
        let stopping = Arc::clone(&stopping);
        ctrlc::set_handler(move || {
            // SeqCst: the accept loop reads the flag after `unblock` wakes it.
            if stopping.swap(true, Ordering::SeqCst) {
                eprintln!("web_server: second signal, exiting at once");
                std::process::exit(1);
            }
            if let Some(server) = server.upgrade() {
                server.unblock();
            }
        })?;
    }

    // The listener is bound, so connections are accepted from here on.
    println!("harbor-pool web server listening on http://{addr}");
    io::stdout().flush()?;
    log::info!(
        "{} request workers, {} job workers; Ctrl-C or SIGTERM to stop",
        config.workers,
        config.job_workers
    );

    let accept_error = loop {
        match server.recv() {
            Ok(request) => dispatch(&app, request),
            // `unblock` from the signal handler.
            Err(_) if stopping.load(Ordering::SeqCst) => break None,
            // tiny_http's accept thread reports its error and stops.
            Err(err) => break Some(err),
        }
    };

    println!("shutting down: no longer accepting connections");
    // Requests tiny_http had already read were accepted: serve them too.
    while let Ok(Some(request)) = server.try_recv() {
        dispatch(&app, request);
    }
    // The last reference: dropping it closes the listening socket, so new
    // connections are refused from here on.
    drop(server);

    // Demo jobs first: long polls waiting on them then return promptly.
    if !app.jobs.shutdown_timeout(JOB_GRACE).joined() {
        log::warn!("some demo jobs ignored cancellation; not waiting for them");
    }
    if !app.http.shutdown_timeout(REQUEST_GRACE).joined() {
        log::warn!("some requests were still running after {REQUEST_GRACE:?}");
    }
    let http = app.http.stats();
    let jobs = app.jobs.stats();
    println!(
        "stopped: http pool: handled {}, panicked {}; \
         job pool: completed {}, failed {}, cancelled {}",
        http.completed + http.failed,
        http.panicked,
        jobs.completed,
        jobs.failed,
        jobs.cancelled
    );
    io::stdout().flush()?;
    match accept_error {
        None => Ok(()),
        Some(err) => Err(format!("accepting connections failed: {err}").into()),
    }
}

/// Hands `request` to the `http` pool without blocking; answers 503 itself
/// when the pool's queue is full or the pool is shutting down.
fn dispatch(app: &Arc<App>, request: Request) {
    // `try_execute` drops a job it refuses, so the request waits in a slot
    // the caller can take it back from.
    let slot = Arc::new(Mutex::new(Some(request)));
    let handler_slot = Arc::clone(&slot);
    let handler_app = Arc::clone(app);
    let submitted = app.http.try_execute(move || {
        let request = take(&handler_slot);
        if let Some(request) = request {
            handle(&handler_app, request);
        }
    });
    // A refused closure was dropped, so the slot still holds the request.
    if let Err(err) = submitted
        && let Some(request) = take(&slot)
    {
        let message = match err {
            SubmitError::QueueFull => "server busy: the request queue is full".to_owned(),
            SubmitError::Shutdown => "server is shutting down".to_owned(),
            other => other.to_string(),
        };
        Exchange::new(request).respond(Reply::error(503, message).retry_after(1));
    }
}

fn take(slot: &Mutex<Option<Request>>) -> Option<Request> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Runs on an `http` worker.
fn handle(app: &App, request: Request) {
    let mut exchange = Exchange::new(request);
    let reply = route(app, exchange.request());
    exchange.respond(reply);
}

/// A request being answered. Answers 500 when dropped unanswered, which
/// happens when its handler panics: the response goes out while the stack
/// unwinds, before the pool catches the panic.
struct Exchange {
    request: Option<Request>,
    received: Instant,
}

impl Exchange {
    fn new(request: Request) -> Self {
        Exchange {
            request: Some(request),
            received: Instant::now(),
        }
    }

    fn request(&mut self) -> &mut Request {
        self.request
            .as_mut()
            .expect("an exchange holds its request until it responds")
    }

    fn respond(mut self, reply: Reply) {
        if let Some(request) = self.request.take() {
            send(request, reply, self.received);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            let message = if thread::panicking() {
                "the handler panicked; the pool caught the panic and the server keeps serving"
            } else {
                "the handler returned without answering"
            };
            send(request, Reply::error(500, message), self.received);
        }
    }
}

fn send(request: Request, reply: Reply, received: Instant) {
    let method = request.method().clone();
    let url = request.url().to_owned();
    let status = reply.status;
    let mut response = Response::from_string(reply.body).with_status_code(status);
    let mut headers = vec![("Content-Type", reply.content_type.to_owned())];
    if let Some(name) = thread::current().name() {
        // Shows which pool thread answered.
        headers.push(("X-Worker", name.to_owned()));
    }
    if let Some(allow) = reply.allow {
        headers.push(("Allow", allow.to_owned()));
    }
    if let Some(location) = reply.location {
        headers.push(("Location", location));
    }
    if let Some(seconds) = reply.retry_after {
        headers.push(("Retry-After", seconds.to_string()));
    }
    for (name, value) in headers {
        if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    if let Err(err) = request.respond(response) {
        log::debug!("{method} {url}: the client went away: {err}");
    }
    log::info!("{method} {url} -> {status} in {:?}", received.elapsed());
}

/// A response, before it is sent.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
    location: Option<String>,
    retry_after: Option<u32>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
            allow: None,
            location: None,
            retry_after: None,
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Self {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    fn not_allowed(method: &Method, allow: &'static str) -> Self {
        Reply {
            allow: Some(allow),
            ..Reply::error(
                405,
                format!("method {method} not allowed here; use {allow}"),
            )
        }
    }

    fn retry_after(self, seconds: u32) -> Self {
        Reply {
            retry_after: Some(seconds),
            ..self
        }
    }
}

/// Routes a request to its handler; every outcome is a [`Reply`].
fn route(app: &App, request: &mut Request) -> Reply {
    let method = request.method().clone();
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let path = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    let get_only = |handler: &dyn Fn() -> Reply| {
        if method == Method::Get {
            handler()
        } else {
            Reply::not_allowed(&method, "GET")
        }
    };
    match path {
        "/" => get_only(&index),
        "/sleep" => get_only(&|| sleep(query)),
        "/panic" => get_only(&|| panic!("deliberate panic in the /panic handler")),
        "/stats" => get_only(&|| stats(app)),
        "/jobs" if method == Method::Post => submit(app, request),
        "/jobs" => Reply::not_allowed(&method, "POST"),
        _ => match path.strip_prefix("/jobs/") {
            Some(rest) => match rest.strip_suffix("/wait") {
                Some(id) if !id.contains('/') => get_only(&|| wait(app, id, query)),
                Some(_) => not_found(path),
                None if rest.contains('/') => not_found(path),
                None if method == Method::Get => job_status(app, rest),
                None if method == Method::Delete => cancel(app, rest),
                None => Reply::not_allowed(&method, "GET, DELETE"),
            },
            None => not_found(path),
        },
    }
}

fn not_found(path: &str) -> Reply {
    Reply::error(404, format!("no route for {path}; see GET /"))
}

fn index() -> Reply {
    let body = "<!doctype html>
<html><head><meta charset=\"utf-8\"><title>harbor-pool web server</title></head>
<body>
<h1>harbor-pool web server</h1>
<p>An HTTP server whose requests are handled on a supervised, panic-resilient
<code>harbor_pool::Pool</code>; demo jobs run on a second pool.</p>
<ul>
<li><code>GET /</code>: this page</li>
<li><code>GET /sleep</code>: answers after 5 seconds (<code>?ms=N</code> to choose); other requests are served meanwhile</li>
<li><code>GET /panic</code>: the handler panics; you get a 500 and the server keeps serving</li>
<li><code>POST /jobs</code>: start a demo job, e.g. <code>{\"kind\":\"sleep\",\"ms\":2000}</code>,
<code>{\"kind\":\"count\",\"to\":1000000000}</code>, <code>{\"kind\":\"panic\",\"message\":\"boom\"}</code>,
<code>{\"kind\":\"fail\",\"message\":\"bad input\"}</code>; optional <code>\"timeout_ms\"</code></li>
<li><code>GET /jobs/&lt;id&gt;</code>: a job's status and times</li>
<li><code>DELETE /jobs/&lt;id&gt;</code>: cancel a job</li>
<li><code>GET /jobs/&lt;id&gt;/wait?timeout_ms=N</code>: wait until a job is finished</li>
<li><code>GET /stats</code>: both pools' counters</li>
</ul>
</body></html>
";
    Reply {
        content_type: "text/html; charset=utf-8",
        body: body.to_owned(),
        ..Reply::json(200, &Value::Null)
    }
}

/// `GET /sleep`: blocks this handler (not the server) for a while.
fn sleep(query: &str) -> Reply {
    let duration = match query_duration(query, "ms", SLEEP_DEFAULT, SLEEP_MAX) {
        Ok(duration) => duration,
        Err(reply) => return reply,
    };
    thread::sleep(duration);
    Reply::json(200, &json!({ "slept_ms": millis(duration) }))
}

fn stats(app: &App) -> Reply {
    Reply::json(
        200,
        &json!({ "http": stats_json(&app.http.stats()), "jobs": stats_json(&app.jobs.stats()) }),
    )
}

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

/// `POST /jobs`.
fn submit(app: &App, request: &mut Request) -> Reply {
    let mut body = Vec::new();
    if let Err(err) = request
        .as_reader()
        .take(BODY_LIMIT + 1)
        .read_to_end(&mut body)
    {
        return Reply::error(400, format!("could not read the body: {err}"));
    }
    if body.len() as u64 > BODY_LIMIT {
        return Reply::error(413, format!("the body is larger than {BODY_LIMIT} bytes"));
    }
    let spec = match JobSpec::parse(&body) {
        Ok(spec) => spec,
        Err(message) => return Reply::error(400, message),
    };
    let options = match spec.timeout {
        Some(timeout) => JobOptions::new().timeout(timeout),
        None => JobOptions::new(),
    };
    let demo = spec.demo;
    match app
        .jobs
        .try_submit_with(options, move |token| demo.run(token))
    {
        // Dropping the handle detaches the job; it stays queryable by id.
        Ok(handle) => {
            let id = handle.id();
            Reply {
                location: Some(format!("/jobs/{id}")),
                ..Reply::json(202, &json!({ "id": id.to_string() }))
            }
        }
        Err(SubmitError::QueueFull) => {
            Reply::error(503, "server busy: the job queue is full").retry_after(1)
        }
        Err(SubmitError::Shutdown) => Reply::error(503, "server is shutting down"),
        Err(other) => Reply::error(503, other.to_string()),
    }
}

/// A parsed `POST /jobs` body.
#[derive(Debug)]
struct JobSpec {
    demo: Demo,
    timeout: Option<Duration>,
}

/// The demo jobs.
#[derive(Debug)]
enum Demo {
    /// Sleeps, waking early when cancelled.
    Sleep(Duration),
    /// Counts to a number, checking its token every 64 Ki steps.
    Count(u64),
    /// Panics with this message.
    Panic(String),
    /// Returns this error.
    Fail(String),
}

impl JobSpec {
    fn parse(body: &[u8]) -> Result<JobSpec, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|err| format!("malformed JSON body: {err}"))?;
        let object = value
            .as_object()
            .ok_or("the body must be a JSON object such as {\"kind\":\"sleep\",\"ms\":2000}")?;
        let kind = object.get("kind").and_then(Value::as_str).ok_or(
            "the body needs a string \"kind\": one of \"sleep\", \"count\", \"panic\", \"fail\"",
        )?;
        let number = |field: &str| {
            object
                .get(field)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("a {kind} job needs \"{field}\", a non-negative integer"))
        };
        let message = |default: &str| match object.get("message") {
            None => Ok(default.to_owned()),
            Some(Value::String(message)) => Ok(message.clone()),
            Some(_) => Err("\"message\" must be a string".to_owned()),
        };
        let demo = match kind {
            "sleep" => {
                let ms = Duration::from_millis(number("ms")?);
                if ms > DEMO_SLEEP_MAX {
                    return Err(format!("\"ms\" may be at most {}", millis(DEMO_SLEEP_MAX)));
                }
                Demo::Sleep(ms)
            }
            "count" => Demo::Count(number("to")?),
            "panic" => Demo::Panic(message("deliberate panic in a demo job")?),
            "fail" => Demo::Fail(message("deliberate failure in a demo job")?),
            other => {
                return Err(format!(
                    "unknown kind {other:?}; expected \"sleep\", \"count\", \"panic\" or \"fail\""
                ));
            }
        };
        let timeout = match object.get("timeout_ms") {
            None => None,
            Some(value) => Some(Duration::from_millis(
                value
                    .as_u64()
                    .ok_or("\"timeout_ms\" must be a non-negative integer")?,
            )),
        };
        Ok(JobSpec { demo, timeout })
    }
}

impl Demo {
    /// Runs on a `job` worker.
    fn run(self, token: &CancelToken) -> JobResult<()> {
        match self {
            Demo::Sleep(duration) => token.sleep(duration)?,
            Demo::Count(to) => {
                let mut sum = 0_u64;
                for i in 0..to {
                    if i % (1 << 16) == 0 {
                        token.check()?;
                    }
                    sum = sum.wrapping_add(std::hint::black_box(i));
                }
                std::hint::black_box(sum);
            }
            Demo::Panic(message) => panic!("{message}"),
            Demo::Fail(message) => return Err(message.into()),
        }
        Ok(())
    }
}

/// Parses the `<id>` of `/jobs/<id>`, or answers 400.
fn parse_id(text: &str) -> Result<JobId, Reply> {
    JobId::from_str(text).map_err(|err| Reply::error(400, format!("{err} (got {text:?})")))
}

fn unknown_job(id: JobId) -> Reply {
    Reply::error(
        404,
        format!("no job {id}: never submitted here, or finished and forgotten"),
    )
}

/// `GET /jobs/<id>`.
fn job_status(app: &App, id: &str) -> Reply {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    match app.jobs.info(id) {
        Some(info) => Reply::json(200, &job_json(&info)),
        None => unknown_job(id),
    }
}

/// `DELETE /jobs/<id>`.
fn cancel(app: &App, id: &str) -> Reply {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    match app.jobs.cancel(id) {
        harbor_pool::CancelOutcome::NotFound => unknown_job(id),
        outcome => Reply::json(
            200,
            &json!({ "id": id.to_string(), "outcome": outcome.as_str() }),
        ),
    }
}

/// `GET /jobs/<id>/wait?timeout_ms=N`: holds this handler until the job is
/// finished or the timeout passes, then answers the job's state either way.
fn wait(app: &App, id: &str, query: &str) -> Reply {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let timeout = match query_duration(query, "timeout_ms", WAIT_DEFAULT, WAIT_MAX) {
        Ok(timeout) => timeout,
        Err(reply) => return reply,
    };
    if app.jobs.info(id).is_none() {
        return unknown_job(id);
    }
    app.jobs.wait(id, timeout);
    match app.jobs.info(id) {
        Some(info) => Reply::json(200, &job_json(&info)),
        None => unknown_job(id),
    }
}

fn job_json(info: &JobInfo) -> Value {
    let mut job = json!({
        "id": info.id.to_string(),
        "status": info.status.as_str(),
        "finished": info.status.is_terminal(),
        "submitted_at": rfc3339(info.submitted_at),
        "started_at": info.started_at.map(rfc3339),
        "finished_at": info.finished_at.map(rfc3339),
        "worker": info.worker,
        "timeout_ms": info.timeout.map(millis),
    });
    if let JobStatus::Failed(message) = &info.status {
        job["error"] = Value::from(message.as_str());
    }
    job
}

/// Reads `name=<milliseconds>` from a query string: `default` when absent,
/// 400 when not a number or above `max`.
fn query_duration(
    query: &str,
    name: &str,
    default: Duration,
    max: Duration,
) -> Result<Duration, Reply> {
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value);
    let Some(value) = value else {
        return Ok(default);
    };
    match value.parse::<u64>().map(Duration::from_millis) {
        Ok(duration) if duration <= max => Ok(duration),
        Ok(_) => Err(Reply::error(
            400,
            format!("{name} may be at most {}", millis(max)),
        )),
        Err(_) => Err(Reply::error(
            400,
            format!("{name} must be a number of milliseconds, got {value:?}"),
        )),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g. `2025-01-31T12:00:00.250Z`.
fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let mut text = String::with_capacity(24);
    let _ = write!(
        text,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
        since_epoch.subsec_millis()
    );
    text
}

/// The Gregorian date of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
