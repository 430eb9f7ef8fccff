//! A `harbor-server` process and raw HTTP/1.1 over `std::net::TcpStream`,
//! for tests that play hostile clients.
//!
//! Every wait here is bounded: a read has a timeout, a process exit has a
//! deadline, so a server that hangs fails the test instead of hanging CI. A
//! server still running when its test ends (or fails) is killed and reaped,
//! and on failure its stderr is shown.
//!
//! `HOSTILE_SERVER_BIN=/path/to/binary` runs the tests against another
//! build, such as the tiny_http `examples/web_server` of commit `10bb213`,
//! to see which of them fail there; flags that binary does not know are
//! then left out.
#![allow(dead_code)] // each test binary uses a different subset

#[path = "../process/mod.rs"]
mod process;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use self::process::Process;

/// How long a server may take to print its address.
pub(crate) const STARTUP: Duration = Duration::from_secs(30);
/// The bound on every wait that should end "soon" on a loaded 2-core box.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// The flags of the tiny_http `examples/web_server`; with `HOSTILE_SERVER_BIN` set
/// every other flag (and its value) is left out.
const LEGACY_FLAGS: [&str; 6] = [
    "--addr",
    "--workers",
    "--queue",
    "--job-workers",
    "--job-queue",
    "--retain-finished",
];

/// Serialises the tests of one binary: several of them load the machine
/// (hundreds of connections, megabytes of headers) and others time
/// single requests in milliseconds, so they must not overlap.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How to start a server.
#[derive(Debug, Default)]
pub(crate) struct Launch<'a> {
    args: Vec<&'a str>,
    nofile: Option<u64>,
}

impl<'a> Launch<'a> {
    pub(crate) fn new() -> Self {
        Launch::default()
    }

    /// Adds command-line flags (after `--addr 127.0.0.1:0`).
    pub(crate) fn args(mut self, args: &[&'a str]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    /// Starts the server under `prlimit --nofile=N:N`, like a shell with
    /// `ulimit -n N`.
    pub(crate) fn nofile(mut self, limit: u64) -> Self {
        self.nofile = Some(limit);
        self
    }

    pub(crate) fn start(self) -> Server {
        Server::launch(self)
    }
}

/// A running server. Killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    process: Process,
    addr: SocketAddr,
}

impl Server {
    /// Starts a server with these flags.
    pub(crate) fn start(args: &[&str]) -> Server {
        Launch::new().args(args).start()
    }

    fn launch(launch: Launch<'_>) -> Server {
        let (binary, legacy) = match std::env::var_os("HOSTILE_SERVER_BIN") {
            Some(path) => (path.into(), true),
            None => (
                std::path::PathBuf::from(env!("CARGO_BIN_EXE_harbor-server")),
                false,
            ),
        };
        let mut args: Vec<&str> = vec!["--addr", "127.0.0.1:0"];
        let mut given = launch.args.chunks(2);
        for pair in &mut given {
            if !legacy || LEGACY_FLAGS.contains(&pair[0]) {
                args.extend_from_slice(pair);
            }
        }
        let mut command = match launch.nofile {
            Some(limit) => {
                // prlimit sets the limit on itself and execs the server, so
                // the child's pid is the server's.
                let mut command = Command::new("prlimit");
                command
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        command.args(&args);
        // Spawned before waiting, so a server that never starts is killed.
        let process = Process::spawn(command);
        let marker = "listening on http://";
        let line = process.stdout_line_containing(marker, STARTUP);
        let addr = line[line.find(marker).expect("the marker") + marker.len()..]
            .split_whitespace()
            .next()
            .expect("an address after the marker")
            .trim_end_matches('/');
        let addr = addr
            .parse()
            .unwrap_or_else(|err| panic!("not an address: {addr:?}: {err}"));
        Server { process, addr }
    }

    /// Waits for a line of the server's stdout containing `needle`.
    pub(crate) fn stdout_line_containing(&self, needle: &str, timeout: Duration) -> String {
        self.process.stdout_line_containing(needle, timeout)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What the server logged so far.
    pub(crate) fn log(&self) -> String {
        self.process.log()
    }

    /// Asserts that the process is still running.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.process.try_wait() {
            panic!("the server exited: {status}");
        }
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("a VmRSS line")
    }

    /// How many file descriptors the server has open.
    pub(crate) fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(Iterator::count)
            .unwrap_or(0)
    }

    /// A new connection with read and write timeouts of [`PATIENCE`] and
    /// `TCP_NODELAY`.
    pub(crate) fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One request on a new connection (`Connection: close`).
    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.try_request(method, path, body)
            .unwrap_or_else(|err| panic!("{method} {path}: {err}"))
    }

    /// One request on a new connection, reporting a failure (a refused or
    /// closed connection, a timeout) instead of panicking.
    pub(crate) fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> io::Result<Response> {
        let stream = TcpStream::connect_timeout(&self.addr, PATIENCE)?;
        let mut conn = Conn::from_stream(stream);
        conn.try_send(&request_bytes(
            method,
            path,
            body,
            &[("Connection", "close")],
        ))?;
        let response = conn.response()?;
        // Until the server has closed its end, so that its fd count no
        // longer includes this connection.
        let _ = conn.read_to_close();
        Ok(response)
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    /// `GET /stats` as JSON, asserting a 200.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let reply = self.get("/stats");
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// Submits a demo job and returns its id.
    pub(crate) fn submit(&self, body: &str) -> String {
        let reply = self.request("POST", "/jobs", Some(body));
        assert_eq!(reply.status, 202, "POST /jobs {body}: {}", reply.text());
        reply.json()["id"].as_str().expect("an id").to_owned()
    }

    /// Sends a signal with kill(1).
    pub(crate) fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Waits for the process to exit, for at most `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process.wait_exit(timeout)
    }
}

/// The bytes of a request: `Host`, then `headers`, then `Content-Length`
/// when there is a body.
pub(crate) fn request_bytes(
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or("").as_bytes());
    bytes
}

/// A client connection: a stream and a buffered reader over a clone of it.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub(crate) fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, PATIENCE)
            .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
        Conn::from_stream(stream)
    }

    /// Wraps a connected stream, setting `TCP_NODELAY` and timeouts of
    /// [`PATIENCE`].
    pub(crate) fn from_stream(stream: TcpStream) -> Conn {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(PATIENCE))
            .expect("write timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        Conn { stream, reader }
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sets the bound on each read from now on.
    pub(crate) fn set_read_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("read timeout");
    }

    /// Writes `bytes` in one call (one segment for a small request).
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|err| panic!("send a request: {err}"));
    }

    /// Writes `bytes`, reporting a failure instead of panicking.
    pub(crate) fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// A `GET` on this connection, kept alive; returns the response.
    pub(crate) fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(&request_bytes("GET", path, None, &[]));
        self.response()
    }

    /// Reads one response; a read that times out is reported as such.
    pub(crate) fn response(&mut self) -> io::Result<Response> {
        read_response(&mut self.reader).map_err(|err| match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no complete response within the read timeout ({:?})",
                    self.stream
                        .read_timeout()
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                ),
            ),
            _ => err,
        })
    }

    /// Reads until the server closes the connection: `Ok(n)` on EOF after
    /// `n` more bytes, `Err` on a reset or when the read times out.
    pub(crate) fn read_to_close(&mut self) -> io::Result<usize> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).map(|_| rest.len())
    }

    /// Whether the server closed the connection (EOF or reset) within
    /// `timeout`, without sending anything more.
    pub(crate) fn closed_within(&mut self, timeout: Duration) -> Result<(), String> {
        self.set_read_timeout(timeout);
        let mut byte = [0_u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => Ok(()),
            Ok(_) => Err("the server sent more bytes instead of closing".to_owned()),
            Err(err) if is_reset(&err) => Ok(()),
            Err(err) => Err(format!("the connection is still open: {err}")),
        }
    }

    pub(crate) fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A connection closed under the client by the peer, as opposed to a
/// timeout.
pub(crate) fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// A received HTTP/1.1 response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The first header of this name (any case), or "".
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map_or("", |(_, value)| value.as_str())
    }

    /// Whether the server said it closes the connection.
    pub(crate) fn closes(&self) -> bool {
        self.header("connection")
            .split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("close"))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        assert!(
            self.header("content-type").starts_with("application/json"),
            "content-type {:?}: {}",
            self.header("content-type"),
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }

    /// Asserts the status and a JSON `{"error": "..."}` body; returns the
    /// message.
    pub(crate) fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" in {body}"));
        assert!(!message.is_empty(), "an empty error message");
        message.to_owned()
    }
}

/// Reads a status line, headers and a body framed by `Content-Length` or
/// chunked encoding (or, with neither, by the end of the connection).
pub(crate) fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before a response",
        ));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts.next().and_then(|code| code.parse().ok());
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a status line: {line:?}"),
        ));
    };
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed inside the response head",
            ));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad header {header:?}"))
        })?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let length = response.header("content-length").parse::<usize>().ok();
    let chunked = response
        .header("transfer-encoding")
        .eq_ignore_ascii_case("chunked");
    if status == 204 || status == 304 || (100..200).contains(&status) {
        // No body.
    } else if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {line:?}"))
                })?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            chunk.truncate(size);
            response.body.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = length {
        response.body.resize(length, 0);
        reader.read_exact(&mut response.body)?;
    } else {
        reader.read_to_end(&mut response.body)?;
    }
    Ok(response)
}

/// Calls `check` until it returns `Some`, for at most [`PATIENCE`]. Awaits
/// a state of another process, so it polls; it orders nothing.
pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}
