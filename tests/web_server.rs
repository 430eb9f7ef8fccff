//! The `web_server` example as a real process, spoken to over real HTTP.
//!
//! Each test starts its own server on a free port (`--addr 127.0.0.1:0`),
//! reads the address from its `listening on` line and talks to it with ureq.
//! Every wait has a deadline; a server still running when its test ends, or
//! fails, is killed (and its log shown on failure).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a server may take to print its address.
const STARTUP: Duration = Duration::from_secs(30);
/// The bound on every other wait.
const DEADLINE: Duration = Duration::from_secs(20);
/// A well-formed job id no server has issued.
const UNKNOWN_ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

#[test]
fn index_lists_the_routes() {
    let server = Server::start(&[]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    for route in ["/sleep", "/panic", "/jobs", "/stats", "/wait"] {
        assert!(page.body.contains(route), "the index lists {route}");
    }
    // Answered on a worker of the request pool.
    assert!(page.header("x-worker").starts_with("http-"));
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let server = Server::start(&[]);
    for path in ["/nope", "/jobs/x/y", &format!("/jobs/{UNKNOWN_ID}/nope")] {
        server.get(path).expect_error(404);
    }
    let cases: [(&str, &str, &str); 7] = [
        ("PUT", "/", "GET"),
        ("POST", "/stats", "GET"),
        ("DELETE", "/panic", "GET"),
        ("POST", "/sleep", "GET"),
        ("GET", "/jobs", "POST"),
        ("PUT", &format!("/jobs/{UNKNOWN_ID}"), "GET, DELETE"),
        ("POST", &format!("/jobs/{UNKNOWN_ID}/wait"), "GET"),
    ];
    for (method, path, allow) in cases {
        let reply = server.request(method, path, None);
        reply.expect_error(405);
        assert_eq!(reply.header("allow"), allow, "{method} {path}");
    }
}

#[test]
fn malformed_input_is_400() {
    let server = Server::start(&[]);
    for path in [
        "/jobs/not-a-uuid",
        "/jobs/67e55044-10b1-426f-9247-bb680e5fe0cZ",
        "/jobs/67e5504410b1426f9247bb680e5fe0c8",
        "/jobs/not-a-uuid/wait",
    ] {
        let error = server.get(path).expect_error(400);
        assert!(error.contains("invalid job id"), "{path}: {error}");
    }
    server.delete("/jobs/not-a-uuid").expect_error(400);
    server
        .get(&format!("/jobs/{UNKNOWN_ID}/wait?timeout_ms=soon"))
        .expect_error(400);
    server.get("/sleep?ms=forever").expect_error(400);
    server.get("/sleep?ms=99999999").expect_error(400);

    let bodies = [
        ("", "malformed JSON"),
        ("not json", "malformed JSON"),
        ("{\"kind\":\"sleep\",\"ms\":", "malformed JSON"),
        ("[1, 2]", "JSON object"),
        ("{}", "kind"),
        ("{\"kind\":7}", "kind"),
        ("{\"kind\":\"dance\"}", "unknown kind"),
        ("{\"kind\":\"sleep\"}", "ms"),
        ("{\"kind\":\"sleep\",\"ms\":-1}", "ms"),
        ("{\"kind\":\"sleep\",\"ms\":\"2000\"}", "ms"),
        ("{\"kind\":\"count\"}", "to"),
        ("{\"kind\":\"fail\",\"message\":42}", "message"),
        (
            "{\"kind\":\"sleep\",\"ms\":1,\"timeout_ms\":\"x\"}",
            "timeout_ms",
        ),
    ];
    for (body, mentions) in bodies {
        let error = server.post("/jobs", body).expect_error(400);
        assert!(error.contains(mentions), "{body:?}: {error}");
    }
    let huge = format!(
        "{{\"kind\":\"fail\",\"message\":\"{}\"}}",
        "x".repeat(100_000)
    );
    server.post("/jobs", &huge).expect_error(413);
    // None of it hurt the server.
    let stats = server.stats();
    assert_eq!(stats["jobs"]["submitted"], 0);
    assert_eq!(stats["http"]["panicked"], 0);
}

#[test]
fn unknown_and_forgotten_ids_are_404() {
    let server = Server::start(&["--job-workers", "1", "--retain-finished", "1"]);
    server.get(&format!("/jobs/{UNKNOWN_ID}")).expect_error(404);
    server
        .delete(&format!("/jobs/{UNKNOWN_ID}"))
        .expect_error(404);
    server
        .get(&format!("/jobs/{UNKNOWN_ID}/wait?timeout_ms=10"))
        .expect_error(404);

    let first = server.submit(r#"{"kind":"sleep","ms":0}"#);
    assert_eq!(server.wait_finished(&first)["status"], "completed");
    let second = server.submit(r#"{"kind":"sleep","ms":0}"#);
    assert_eq!(server.wait_finished(&second)["status"], "completed");
    // Only one finished record is kept: the first is forgotten.
    eventually("the first job to be forgotten", || {
        (server.get(&format!("/jobs/{first}")).status == 404).then_some(())
    });
    server.get(&format!("/jobs/{first}")).expect_error(404);
    server.delete(&format!("/jobs/{first}")).expect_error(404);
    assert_eq!(server.job(&second)["status"], "completed");
}

#[test]
fn a_completed_job_reports_its_times_and_worker() {
    let server = Server::start(&[]);
    let reply = server.post("/jobs", r#"{"kind":"sleep","ms":50}"#);
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["id"].as_str().expect("an id").to_owned();
    assert_eq!(reply.header("location"), format!("/jobs/{id}"));

    let job = server.wait_finished(&id);
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["status"], "completed");
    assert_eq!(job["finished"], true);
    assert!(job.get("error").is_none(), "{job}");
    assert!(job["timeout_ms"].is_null());
    assert!(
        job["worker"]
            .as_str()
            .expect("a worker")
            .starts_with("job-")
    );
    let times: Vec<&str> = ["submitted_at", "started_at", "finished_at"]
        .iter()
        .map(|field| job[field].as_str().expect("a time"))
        .collect();
    for time in &times {
        // RFC 3339, UTC, milliseconds: 2025-01-31T12:00:00.250Z
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    }
    assert!(
        times.is_sorted(),
        "submitted <= started <= finished: {times:?}"
    );
    assert_eq!(server.job(&id), job, "GET /jobs/<id> agrees with /wait");

    let count = server.submit(r#"{"kind":"count","to":100000}"#);
    assert_eq!(server.wait_finished(&count)["status"], "completed");

    let reply = server.delete(&format!("/jobs/{id}"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["outcome"], "already_finished");
}

#[test]
fn failing_jobs_are_failed_with_their_message() {
    let server = Server::start(&[]);
    let failed = server.submit(r#"{"kind":"fail","message":"bad input on line 3"}"#);
    let panicked = server.submit(r#"{"kind":"panic","message":"boom in a job"}"#);

    let job = server.wait_finished(&failed);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "bad input on line 3");
    let job = server.wait_finished(&panicked);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "boom in a job");
    assert_eq!(server.job(&panicked)["error"], "boom in a job");

    let stats = eventually("both failures counted", || {
        let stats = server.stats();
        (stats["jobs"]["failed"] == 2).then_some(stats)
    });
    assert_eq!(stats["jobs"]["panicked"], 1);
    // The panic cost the job pool no thread.
    assert_eq!(stats["jobs"]["alive"], stats["jobs"]["workers"]);
    assert_eq!(stats["jobs"]["restarts"], 0);
}

#[test]
fn jobs_are_cancelled_by_id_while_pending_and_while_running() {
    let server = Server::start(&["--job-workers", "1"]);
    let running = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    server.wait_running(&running);
    // The only job worker is busy for a minute, so this one stays pending.
    let pending = server.submit(r#"{"kind":"count","to":1000000000000000}"#);
    assert_eq!(server.job(&pending)["status"], "pending");

    let reply = server.delete(&format!("/jobs/{pending}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["outcome"], "cancelled");
    let job = server.wait_finished(&pending);
    assert_eq!(job["status"], "cancelled");
    assert!(job["started_at"].is_null(), "never ran: {job}");

    let reply = server.delete(&format!("/jobs/{running}"));
    assert_eq!(reply.json()["outcome"], "requested");
    let job = server.wait_finished(&running);
    assert_eq!(job["status"], "cancelled");
    assert!(job.get("error").is_none(), "{job}");

    // A CPU-bound job notices through token.check().
    let counting = server.submit(r#"{"kind":"count","to":1000000000000000}"#);
    server.wait_running(&counting);
    assert_eq!(
        server.delete(&format!("/jobs/{counting}")).json()["outcome"],
        "requested"
    );
    assert_eq!(server.wait_finished(&counting)["status"], "cancelled");

    assert_eq!(
        server.delete(&format!("/jobs/{running}")).json()["outcome"],
        "already_finished"
    );
    let stats = eventually("three cancellations counted", || {
        let stats = server.stats();
        (stats["jobs"]["cancelled"] == 3).then_some(stats)
    });
    assert_eq!(stats["jobs"]["failed"], 0);
}

#[test]
fn timeout_ms_cancels_a_job_at_its_deadline() {
    let server = Server::start(&[]);
    let id = server.submit(r#"{"kind":"sleep","ms":60000,"timeout_ms":100}"#);
    let job = server.wait_finished(&id);
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["timeout_ms"], 100);
}

#[test]
fn wait_times_out_with_the_current_status() {
    let server = Server::start(&[]);
    let id = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    let reply = server.get(&format!("/jobs/{id}/wait?timeout_ms=50"));
    assert_eq!(reply.status, 200);
    let job = reply.json();
    assert_eq!(job["finished"], false);
    assert!(matches!(
        job["status"].as_str(),
        Some("pending" | "running")
    ));
    server.delete(&format!("/jobs/{id}"));
    assert_eq!(server.wait_finished(&id)["status"], "cancelled");
}

#[test]
fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    let server = Server::start(&["--workers", "2"]);
    for _ in 0..3 {
        let error = server.get("/panic").expect_error(500);
        assert!(error.contains("panicked"), "{error}");
    }
    for _ in 0..10 {
        assert_eq!(server.get("/").status, 200);
    }
    // The client hears the 500 while the handler unwinds; the pool counts
    // the panic a moment later.
    let stats = eventually("three handler panics counted", || {
        let stats = server.stats();
        (stats["http"]["panicked"] == 3).then_some(stats)
    });
    let http = &stats["http"];
    assert_eq!(http["failed"], 3);
    // Caught, not fatal: no worker died or had to be respawned.
    assert_eq!(http["alive"], 2);
    assert_eq!(http["restarts"], 0);
}

#[test]
fn sleep_answers_after_5_s_while_other_requests_are_served() {
    let server = Server::start(&[]);
    let sleeper = server.in_background("/sleep");
    // /stats itself keeps one worker busy; a second busy one is the sleeper.
    eventually("/sleep to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(2)).then_some(())
    });
    assert_eq!(server.get("/").status, 200);
    assert_eq!(server.get("/stats").status, 200);
    assert!(
        matches!(sleeper.try_recv(), Err(TryRecvError::Empty)),
        "other requests were answered while /sleep was still running"
    );
    let slept = sleeper.recv_timeout(DEADLINE).expect("/sleep answers");
    assert_eq!(slept.status, 200);
    assert_eq!(slept.json()["slept_ms"], 5000);
}

#[test]
fn full_queues_answer_503() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--queue",
        "1",
        "--job-workers",
        "1",
        "--job-queue",
        "1",
    ]);

    // One job worker and one queue slot: of three long jobs, at least one
    // finds the queue full.
    let replies: Vec<Reply> = (0..3)
        .map(|_| server.post("/jobs", r#"{"kind":"sleep","ms":60000}"#))
        .collect();
    let full: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(!full.is_empty(), "a full job queue answers 503");
    for reply in &full {
        assert!(reply.error().contains("queue is full"), "{}", reply.body);
        assert_eq!(reply.header("retry-after"), "1");
    }
    for reply in replies.iter().filter(|r| r.status != 503) {
        assert_eq!(reply.status, 202, "{}", reply.body);
        let id = reply.json()["id"].as_str().expect("an id").to_owned();
        server.delete(&format!("/jobs/{id}"));
        assert_eq!(server.wait_finished(&id)["status"], "cancelled");
    }

    // One request worker and one queue slot: of four slow requests sent at
    // once, at least one is refused at the door.
    let sleepers: Vec<_> = (0..4)
        .map(|_| server.in_background("/sleep?ms=1500"))
        .collect();
    let replies: Vec<Reply> = sleepers
        .iter()
        .map(|sleeper| {
            sleeper
                .recv_timeout(DEADLINE)
                .expect("every request is answered")
        })
        .collect();
    let refused = replies.iter().filter(|r| r.status == 503).count();
    assert!(refused >= 1, "a full request queue answers 503");
    for reply in &replies {
        match reply.status {
            200 => assert_eq!(reply.json()["slept_ms"], 1500),
            _ => assert!(reply.expect_error(503).contains("request queue is full")),
        }
    }
    assert_eq!(server.get("/").status, 200, "the server recovers");
}

#[test]
fn sigterm_stops_gracefully() {
    let mut server = Server::start(&[]);
    let long_job = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    server.wait_running(&long_job);
    let in_flight = server.in_background("/sleep?ms=1500");
    eventually("the in-flight request to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(2)).then_some(())
    });

    server.signal("TERM");

    let reply = in_flight
        .recv_timeout(DEADLINE)
        .expect("the in-flight request is answered");
    assert_eq!(
        reply.status, 200,
        "a running request finishes: {}",
        reply.body
    );
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let output = server.rest_of_stdout();
    assert!(output.contains("shutting down"), "{output}");
    assert!(
        output.contains("job pool: completed 0, failed 0, cancelled 1"),
        "the long demo job was cancelled: {output}"
    );
    assert!(
        server.try_get("/").is_err(),
        "nothing listens after the stop"
    );
}

#[test]
fn sigint_stops_too() {
    let mut server = Server::start(&[]);
    assert_eq!(server.get("/").status, 200);
    server.signal("INT");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(server.rest_of_stdout().contains("stopped:"));
}

#[test]
fn bad_arguments_exit_2() {
    let output = Command::new(common::example_binary("web_server"))
        .arg("--frobnicate")
        .stdin(Stdio::null())
        .output()
        .expect("run the web_server example");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown option --frobnicate"));
}

/// A running `web_server` example. Killed when dropped.
struct Server {
    child: Child,
    base: String,
    agent: ureq::Agent,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(common::example_binary("web_server"))
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the web_server example");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(DEADLINE))
            .build()
            .into();
        // Built before waiting, so a server that fails to start is killed.
        let mut server = Server {
            child,
            base: String::new(),
            agent,
            stdout: lines,
            stderr: log,
        };
        let marker = "listening on http://";
        let line = server.stdout_line_containing(marker, STARTUP);
        let addr = line[line.find(marker).expect("the marker") + marker.len()..]
            .split_whitespace()
            .next()
            .expect("an address after the marker");
        server.base = format!("http://{addr}");
        server
    }

    fn stdout_line_containing(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no stdout line containing {needle:?} within {timeout:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the server closed stdout before printing {needle:?}")
                }
            }
        }
    }

    /// Everything the server printed after its address, once it has exited.
    fn rest_of_stdout(&self) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut output = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                }
                Err(RecvTimeoutError::Disconnected) => return output,
                Err(RecvTimeoutError::Timeout) => panic!("stdout still open: {output}"),
            }
        }
    }

    fn try_get(&self, path: &str) -> Result<Reply, ureq::Error> {
        self.agent
            .get(format!("{}{path}", self.base))
            .call()
            .map(Reply::from)
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("POST", Some(body)) => self
                .agent
                .post(&url)
                .content_type("application/json")
                .send(body),
            ("POST", None) => self.agent.post(&url).send_empty(),
            ("PUT", _) => self.agent.put(&url).send_empty(),
            _ => panic!("no helper for {method}"),
        };
        match result {
            Ok(response) => Reply::from(response),
            Err(err) => panic!("{method} {path}: {err}"),
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, Some(body))
    }

    fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None)
    }

    /// `GET path` on another thread; the reply arrives on the channel.
    fn in_background(&self, path: &str) -> Receiver<Reply> {
        let (tx, rx) = mpsc::channel();
        let agent = self.agent.clone();
        let url = format!("{}{path}", self.base);
        thread::spawn(move || {
            let reply = agent.get(&url).call().map(Reply::from);
            if let Ok(reply) = reply {
                let _ = tx.send(reply);
            }
        });
        rx
    }

    fn stats(&self) -> Value {
        let reply = self.get("/stats");
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }

    /// Submits a demo job and returns its id.
    fn submit(&self, body: &str) -> String {
        let reply = self.post("/jobs", body);
        assert_eq!(reply.status, 202, "POST /jobs {body}: {}", reply.body);
        reply.json()["id"].as_str().expect("an id").to_owned()
    }

    fn job(&self, id: &str) -> Value {
        let reply = self.get(&format!("/jobs/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }

    /// Long-polls until the job is finished.
    fn wait_finished(&self, id: &str) -> Value {
        eventually("the job to finish", || {
            let reply = self.get(&format!("/jobs/{id}/wait?timeout_ms=1000"));
            assert_eq!(reply.status, 200, "{}", reply.body);
            let job = reply.json();
            (job["finished"] == true).then_some(job)
        })
    }

    fn wait_running(&self, id: &str) {
        eventually("the job to start", || {
            let job = self.job(id);
            assert_eq!(job["finished"], false, "{job}");
            (job["status"] == "running").then_some(())
        });
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        // Polls: std offers no wait-with-timeout on a child.
        loop {
            if let Some(status) = self.child.try_wait().expect("query the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {DEADLINE:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            let log = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!("--- web_server stderr ---\n{log}--- end ---");
        }
    }
}

/// A received HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl From<ureq::http::Response<ureq::Body>> for Reply {
    fn from(mut response: ureq::http::Response<ureq::Body>) -> Self {
        let body = response
            .body_mut()
            .read_to_string()
            .expect("read the response body");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body,
        }
    }
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), "application/json");
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    /// The `"error"` of a JSON error reply.
    fn error(&self) -> String {
        let body = self.json();
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error: {body}"));
        assert!(!message.is_empty());
        message.to_owned()
    }

    /// Asserts the status and a JSON error body; returns the message.
    fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        self.error()
    }
}

/// Calls `check` until it returns `Some`, for at most [`DEADLINE`].
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    // Polls the server: the condition lives in another process.
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
