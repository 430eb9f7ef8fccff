//! A `harbor-server` process for the tests, spoken to over real HTTP.
//!
//! Each test starts its own server on a free port (`--addr 127.0.0.1:0`),
//! reads the address from its `listening on` line and talks to it with
//! ureq (HTTP/1.1, keep-alive) or raw sockets. Every wait has a deadline; a
//! server still running when its test ends, or fails, is killed (and its
//! log shown on failure).
#![allow(dead_code)] // each test binary uses a different subset

#[path = "../process/mod.rs"]
mod process;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use self::process::Process;

/// How long a server may take to print its address.
pub(crate) const STARTUP: Duration = Duration::from_secs(30);
/// The bound on every other wait.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);
/// A well-formed job id no server has issued.
pub(crate) const UNKNOWN_ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

/// The server binary cargo built for these tests.
pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_harbor-server")
}

/// A running `harbor-server`. Killed when dropped.
pub(crate) struct Server {
    process: Process,
    pub(crate) addr: SocketAddr,
    pub(crate) base: String,
    pub(crate) agent: ureq::Agent,
}

impl Server {
    pub(crate) fn start(args: &[&str]) -> Server {
        Server::start_command(Command::new(binary()), args)
    }

    /// Starts the server with its open-file limit (soft and hard) set to
    /// `limit`, through the shell's `ulimit`.
    pub(crate) fn start_with_fd_limit(limit: u32, args: &[&str]) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(binary());
        Server::start_command(command, args)
    }

    fn start_command(mut command: Command, args: &[&str]) -> Server {
        command.args(["--addr", "127.0.0.1:0"]).args(args);
        // Spawned before waiting, so a server that fails to start is killed.
        let process = Process::spawn(command);
        let line = process.stdout_line_containing("listening on http://", STARTUP);
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("exactly `listening on http://HOST:PORT`: {line:?}"));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(DEADLINE))
            .build()
            .into();
        Server {
            process,
            addr: addr.parse().expect("HOST:PORT"),
            base: format!("http://{addr}"),
            agent,
        }
    }

    pub(crate) fn stdout_line_containing(&self, needle: &str, timeout: Duration) -> String {
        self.process.stdout_line_containing(needle, timeout)
    }

    /// Everything the server printed after its address, once it has exited.
    pub(crate) fn rest_of_stdout(&self) -> String {
        self.process.rest_of_stdout(DEADLINE)
    }

    /// What the server logged so far.
    pub(crate) fn stderr(&self) -> String {
        self.process.log()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL, at once.
    pub(crate) fn kill(&mut self) {
        self.process.kill();
    }

    pub(crate) fn try_get(&self, path: &str) -> Result<Reply, ureq::Error> {
        self.agent
            .get(format!("{}{path}", self.base))
            .call()
            .map(Reply::from)
    }

    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
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

    pub(crate) fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub(crate) fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, Some(body))
    }

    pub(crate) fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None)
    }

    /// `GET path` on another thread; the reply arrives on the channel.
    pub(crate) fn in_background(&self, path: &str) -> Receiver<Reply> {
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

    /// The value of one series in `GET /metrics`: `name` is the metric with
    /// its labels as exposed, e.g. `x_total{via="poll"}`.
    pub(crate) fn metric(&self, name: &str) -> f64 {
        let reply = self.get("/metrics");
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply
            .body
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{}", reply.body))
    }

    pub(crate) fn stats(&self) -> Value {
        let reply = self.get("/stats");
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }

    /// Submits a demo job and returns its id.
    pub(crate) fn submit(&self, body: &str) -> String {
        let reply = self.post("/jobs", body);
        assert_eq!(reply.status, 202, "POST /jobs {body}: {}", reply.body);
        reply.json()["id"].as_str().expect("an id").to_owned()
    }

    pub(crate) fn job(&self, id: &str) -> Value {
        let reply = self.get(&format!("/jobs/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }

    /// Long-polls until the job is finished.
    pub(crate) fn wait_finished(&self, id: &str) -> Value {
        eventually("the job to finish", || {
            let reply = self.get(&format!("/jobs/{id}/wait?timeout_ms=1000"));
            assert_eq!(reply.status, 200, "{}", reply.body);
            let job = reply.json();
            (job["finished"] == true).then_some(job)
        })
    }

    pub(crate) fn wait_running(&self, id: &str) {
        eventually("the job to start", || {
            let job = self.job(id);
            assert_eq!(job["finished"], false, "{job}");
            (job["status"] == "running").then_some(())
        });
    }

    /// A raw connection to the server, reads and writes bounded by
    /// [`DEADLINE`].
    pub(crate) fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream.set_write_timeout(Some(DEADLINE)).expect("timeout");
        stream
    }

    pub(crate) fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        self.wait_exit_within(DEADLINE)
    }

    pub(crate) fn wait_exit_within(&mut self, timeout: Duration) -> ExitStatus {
        self.process.wait_exit(timeout)
    }
}

/// A received HTTP response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: ureq::http::HeaderMap,
    pub(crate) body: String,
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
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), "application/json");
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    /// The `"error"` of a JSON error reply.
    pub(crate) fn error(&self) -> String {
        let body = self.json();
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error: {body}"));
        assert!(!message.is_empty());
        message.to_owned()
    }

    /// Asserts the status and a JSON error body; returns the message.
    pub(crate) fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        self.error()
    }
}

/// A response read off a raw connection.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    /// Header lines, names lowercased.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl RawReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn error(&self) -> String {
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body));
        body["error"].as_str().expect("an error").to_owned()
    }
}

/// Reads one response (with a `Content-Length` body) off `stream`.
pub(crate) fn read_reply(stream: &mut TcpStream) -> RawReply {
    let mut data = Vec::new();
    let mut byte = [0_u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut byte).expect("read a response head");
        assert_eq!(
            read, 1,
            "the connection ended inside a response head: {data:?}"
        );
        data.push(byte[0]);
    }
    let head = String::from_utf8(data).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().expect("a length"));
    let mut body = vec![0_u8; length];
    stream.read_exact(&mut body).expect("read the body");
    RawReply {
        status,
        headers,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    }
}

/// Whether the peer closed `stream` (end of input or a reset) within
/// [`DEADLINE`], discarding anything else it sends.
pub(crate) fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0_u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Writes `bytes`, panicking on failure.
pub(crate) fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("write to the server");
}

/// Calls `check` until it returns `Some`, for at most [`DEADLINE`].
pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
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
