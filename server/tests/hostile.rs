//! `harbor-server` against idle, slow, oversized and otherwise hostile
//! clients: one test per failure of today's tiny_http server that issue 9
//! lists, each with the issue's bound; the limits the contract adds
//! (refusing connections over `--max-connections`, surviving `EMFILE`, the
//! header, body, keep-alive and request timeouts, a second signal); and
//! attacks beyond both: slowloris heads and bodies, endless chunked bodies,
//! chunk-extension, trailer and HTTP/2 CONTINUATION floods, HTTP/2 rapid
//! reset, framing edge cases (`Content-Length` beside `Transfer-Encoding`,
//! conflicting lengths, bare LF, folded lines), a client that never reads
//! its answers, and thousands of short connections.
//!
//! Each test starts the real binary on a free port and speaks raw HTTP/1.1
//! over `std::net::TcpStream` (HTTP/2 through hyper's client). Every wait is
//! bounded; a sleep appears only as the slowness of a deliberately slow
//! client. The tests run one at a time (`support::serial`): some load the
//! machine, others time single requests in milliseconds.
//!
//! `HOSTILE_SERVER_BIN=$PWD/target/wrk-bench/old-10bb213/target/release/old-web-server
//! cargo test -p harbor-server --test hostile` runs them against the
//! tiny_http server of commit `10bb213` instead (built there by
//! `server/benches/wrk.sh`; see `support`), where 30 of them fail.

mod support;

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use support::{
    Conn, Launch, PATIENCE, Response, Server, eventually, is_reset, request_bytes, serial,
};

/// "At once": a request to a healthy server on loopback takes well under a
/// millisecond; this leaves room for a busy 2-core machine, and is far below
/// the seconds a starved server takes.
const AT_ONCE: Duration = Duration::from_millis(250);
const MIB: u64 = 1024 * 1024;

/// Issue: "about 509 open connections make the process exit 1: accepting
/// connections failed: Too many open files" under `ulimit -n 1024`.
#[test]
fn six_hundred_idle_connections_under_ulimit_1024_leave_the_server_answering() {
    let _serial = serial();
    let mut server = Launch::new().nofile(1024).start();
    // Before any connection: a closed one may linger a while in the count.
    let before = server.open_fds();
    let mut idle: Vec<Conn> = (0..600).map(|_| server.connect()).collect();
    // Accepted by the server, not only queued by the kernel: each holds an fd.
    eventually("the server to accept 600 idle connections", || {
        server.assert_running();
        (server.open_fds() >= before + 600).then_some(())
    });

    let started = Instant::now();
    let stats = server.get("/stats");
    assert_eq!(stats.status, 200, "{}", stats.text());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a normal client waited {:?} beside 600 idle connections",
        started.elapsed()
    );
    // The idle connections are still served too, first and last.
    let last = idle.len() - 1;
    for index in [0, last] {
        let reply = idle[index]
            .get("/")
            .expect("an idle connection is still served");
        assert_eq!(reply.status, 200);
    }
    server.assert_running();
}

/// Issue: "16 keep-alive connections opened at once: only 4 get an answer
/// within 10 s".
#[test]
fn thirty_two_keep_alive_connections_opened_at_once_are_all_answered_within_1_s() {
    const CONNECTIONS: usize = 32;
    const BOUND: Duration = Duration::from_secs(1);
    let _serial = serial();
    let server = Server::start(&[]);
    let conns: Vec<Conn> = (0..CONNECTIONS).map(|_| server.connect()).collect();
    let start = Arc::new(Barrier::new(CONNECTIONS + 1));
    let (answers, answered) = mpsc::channel();
    for (index, mut conn) in conns.into_iter().enumerate() {
        let start = Arc::clone(&start);
        let answers = answers.clone();
        thread::spawn(move || {
            start.wait();
            let reply = conn.get("/stats");
            let _ = answers.send((index, reply.map(|reply| reply.status), conn));
        });
    }
    start.wait();
    let deadline = Instant::now() + BOUND;
    let mut served = Vec::new();
    while served.len() < CONNECTIONS {
        let left = deadline.saturating_duration_since(Instant::now());
        match answered.recv_timeout(left) {
            Ok((index, status, conn)) => {
                let status = status.unwrap_or_else(|err| panic!("connection {index}: {err}"));
                assert_eq!(status, 200, "connection {index}");
                served.push(conn);
            }
            Err(_) => panic!(
                "only {} of {CONNECTIONS} keep-alive connections were answered within {BOUND:?}",
                served.len()
            ),
        }
    }
    eprintln!(
        "{CONNECTIONS} keep-alive connections answered in {:?}",
        BOUND.saturating_sub(deadline.saturating_duration_since(Instant::now()))
    );
    // Kept alive: each connection takes a second request.
    for conn in &mut served {
        let reply = conn
            .get("/")
            .expect("a second request on a kept-alive connection");
        assert_eq!(reply.status, 200);
    }
}

/// Issue: "no header size limit: 400 MB of header lines took the process
/// from 25 MB to 938 MB RSS".
#[test]
fn a_hundred_megabytes_of_headers_get_431_and_rss_stays_within_50_mb() {
    const HEADERS: u64 = 100 * MIB;
    const RSS_SLACK_KIB: u64 = 50 * 1024;
    let _serial = serial();
    let server = Server::start(&[]);
    assert_eq!(server.get("/stats").status, 200);
    let start_rss = server.rss_kib();
    let pid = server.pid();
    let mut conn = server.connect();
    let mut stream = conn.stream().try_clone().expect("clone the stream");
    let writer = thread::spawn(move || {
        let rss = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|line| line.strip_prefix("VmRSS:"))
                        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        // 64 header lines of 1 KiB per write.
        let line = format!("X-Filler: {}\r\n", "a".repeat(1024 - 12));
        let batch = line.repeat(64);
        let mut sent = stream
            .write(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .map_or(0, |n| n as u64);
        let mut peak = 0;
        let deadline = Instant::now() + PATIENCE;
        while sent < HEADERS && Instant::now() < deadline {
            if let Err(err) = stream.write_all(batch.as_bytes()) {
                return (sent, peak.max(rss(pid)), Some(err));
            }
            sent += batch.len() as u64;
            if sent % MIB < batch.len() as u64 {
                peak = peak.max(rss(pid));
            }
        }
        (sent, peak.max(rss(pid)), None)
    });
    let reply = conn.response();
    let (sent, peak_rss, write_error) = writer.join().expect("the writer thread");
    let end_rss = server.rss_kib();
    eprintln!(
        "headers: sent {sent} bytes before {write_error:?}; RSS {start_rss} KiB, \
         at most {peak_rss} KiB, {end_rss} KiB after"
    );
    assert!(
        peak_rss <= start_rss + RSS_SLACK_KIB && end_rss <= start_rss + RSS_SLACK_KIB,
        "RSS went from {start_rss} KiB to {peak_rss} KiB at most and {end_rss} KiB after, \
         sending {sent} bytes of headers"
    );
    let reply = reply.unwrap_or_else(|err| {
        panic!("no answer to {sent} bytes of headers ({write_error:?}): {err}")
    });
    reply.expect_error(431);
    conn.closed_within(PATIENCE)
        .unwrap_or_else(|err| panic!("after a 431: {err}"));
}

/// Issue: "16 connections that declare a 2000-byte body and send 100 bytes
/// stall GET /stats for 10 s".
#[test]
fn sixteen_slow_bodies_get_408_while_stats_answers_at_once() {
    const SLOW: usize = 16;
    const BODY_TIMEOUT: Duration = Duration::from_millis(2000);
    let _serial = serial();
    let server = Server::start(&["--body-timeout-ms", "2000"]);
    let head = "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Content-Length: 2000\r\n\r\n";
    let mut partial = String::from(r#"{"kind":"sleep","ms":0,"pad":""#);
    partial.push_str(&"x".repeat(100 - partial.len()));
    let slow: Vec<(Conn, Instant)> = (0..SLOW)
        .map(|_| {
            let mut conn = server.connect();
            conn.send(format!("{head}{partial}").as_bytes());
            (conn, Instant::now())
        })
        .collect();

    for _ in 0..5 {
        let started = Instant::now();
        let stats = server.get("/stats");
        assert_eq!(stats.status, 200, "{}", stats.text());
        let took = started.elapsed();
        assert!(
            took < AT_ONCE,
            "GET /stats took {took:?} beside {SLOW} slow bodies"
        );
    }
    assert!(
        slow[0].1.elapsed() < BODY_TIMEOUT,
        "the probes ran after the slow bodies timed out; this machine is too slow for the test"
    );

    for (index, (mut conn, sent)) in slow.into_iter().enumerate() {
        let reply = conn
            .response()
            .unwrap_or_else(|err| panic!("slow body {index}: no answer: {err}"));
        let waited = sent.elapsed();
        reply.expect_error(408);
        if index == 0 {
            eprintln!("slow body 0: 408 after {waited:?}");
        }
        assert!(
            waited >= BODY_TIMEOUT,
            "slow body {index}: 408 after {waited:?}, before the body timeout"
        );
        conn.closed_within(PATIENCE)
            .unwrap_or_else(|err| panic!("slow body {index}, after the 408: {err}"));
    }
    assert_eq!(server.stats()["jobs"]["submitted"], 0);
}

/// Issue: "8 long-polls on /jobs/<id>/wait occupy every handler".
#[test]
fn sixty_four_long_polls_do_not_delay_stats() {
    const POLLS: usize = 64;
    let _serial = serial();
    let server = Server::start(&[]);
    let id = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    let wait = request_bytes(
        "GET",
        &format!("/jobs/{id}/wait?timeout_ms=60000"),
        None,
        &[],
    );
    let mut polls: Vec<Conn> = (0..POLLS)
        .map(|_| {
            let mut conn = server.connect();
            conn.send(&wait);
            conn
        })
        .collect();

    for _ in 0..10 {
        let started = Instant::now();
        let stats = server.get("/stats");
        assert_eq!(stats.status, 200, "{}", stats.text());
        let took = started.elapsed();
        assert!(
            took < AT_ONCE,
            "GET /stats took {took:?} beside {POLLS} long-polls"
        );
    }

    // The polls were waiting: cancelling the job answers every one of them,
    // with its new status.
    let cancel = server.request("DELETE", &format!("/jobs/{id}"), None);
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    for (index, conn) in polls.iter_mut().enumerate() {
        let reply = conn
            .response()
            .unwrap_or_else(|err| panic!("long-poll {index}: {err}"));
        assert_eq!(reply.status, 200, "long-poll {index}: {}", reply.text());
        assert_eq!(reply.json()["status"], "cancelled", "long-poll {index}");
    }
}

/// Issue: "an HTTP/2 prior-knowledge request never gets an answer and leaks
/// a thread and two fds".
#[test]
fn http2_prior_knowledge_is_answered_and_leaks_no_fd() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let _serial = serial();
    let server = Server::start(&[]);
    // Before any connection: a closed one may linger a while in the count.
    let fds_before = server.open_fds();
    let addr = server.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let replies = runtime.block_on(async move {
        tokio::time::timeout(PATIENCE, async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await?;
            let driver = tokio::spawn(connection);
            // Eight streams at once on the one connection.
            let mut streams = Vec::new();
            for path in [
                "/stats", "/", "/nope", "/stats", "/", "/stats", "/", "/stats",
            ] {
                let mut sender = sender.clone();
                let request = hyper::Request::get(format!("http://{addr}{path}"))
                    .body(Empty::<Bytes>::new())?;
                streams.push(tokio::spawn(async move {
                    let response = sender.send_request(request).await?;
                    let version = response.version();
                    let status = response.status().as_u16();
                    let body = response.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((path, version, status, body))
                }));
            }
            let mut replies = Vec::new();
            for stream in streams {
                replies.push(stream.await??);
            }
            // Closes the connection: the aborted task is dropped before
            // `await` returns.
            drop(sender);
            driver.abort();
            let _ = driver.await;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(replies)
        })
        .await
    });
    let replies = replies
        .unwrap_or_else(|_| panic!("no HTTP/2 answer within {PATIENCE:?}"))
        .unwrap_or_else(|err| panic!("HTTP/2: {err}"));
    for (path, version, status, body) in replies {
        assert_eq!(version, hyper::Version::HTTP_2, "{path}");
        let expected = if path == "/nope" { 404 } else { 200 };
        assert_eq!(
            status,
            expected,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        if path == "/stats" {
            let stats: serde_json::Value = serde_json::from_slice(&body).expect("JSON stats");
            assert!(stats["jobs"]["workers"].is_u64(), "{stats}");
        }
    }
    // The connection is gone, and so is its fd.
    eventually("the HTTP/2 connection's fd to be closed", || {
        (server.open_fds() <= fds_before).then_some(())
    });
    assert_eq!(server.get("/").status, 200);
}

/// Issue: "on a reused connection GET / takes 44 ms (headers and body in
/// two writes, no TCP_NODELAY)". The Nagle and delayed-ACK stall costs
/// 40 ms every time; a busy machine's scheduling noise does not, so the test
/// takes the best of five pairs, and fails if none is fast.
#[test]
fn two_sequential_requests_on_one_connection_each_take_under_5_ms() {
    const BOUND: Duration = Duration::from_millis(5);
    let _serial = serial();
    let server = Server::start(&[]);
    let mut conn = server.connect();
    assert_eq!(conn.get("/").expect("a first request").status, 200);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let mut pair = [Duration::ZERO; 2];
        for took in &mut pair {
            let started = Instant::now();
            let reply = conn.get("/").expect("a request on the reused connection");
            *took = started.elapsed();
            assert_eq!(reply.status, 200);
            assert!(!reply.closes(), "the server closed a keep-alive connection");
        }
        if pair.iter().all(|took| *took < BOUND) {
            eprintln!("sequential requests: {pair:?} after {seen:?}");
            return;
        }
        seen.push(pair);
    }
    panic!("no two sequential requests both under {BOUND:?}: {seen:?}");
}

/// Issue: "a request sent on a keep-alive connection during shutdown is
/// never answered". Contract: on SIGTERM, answer every request already
/// received, tell keep-alive clients `Connection: close`, exit 0 within the
/// grace plus 15 s.
#[test]
fn keep_alive_requests_during_shutdown_are_answered_or_closed_with_connection_close() {
    const GRACE: Duration = Duration::from_millis(500);
    let _serial = serial();
    let mut server = Server::start(&["--shutdown-grace-ms", "500"]);
    // `busy` keeps a request in flight across the signal, and `pipelined`
    // sends a second one on its connection after the signal; `late` keeps
    // the server draining after `busy` is done; `idle` sits idle.
    let mut idle = server.connect();
    assert_eq!(idle.get("/").expect("a first request").status, 200);
    let mut busy = server.connect();
    busy.send(&request_bytes("GET", "/sleep?ms=1500", None, &[]));
    let mut late = server.connect();
    late.send(&request_bytes("GET", "/sleep?ms=3000", None, &[]));
    eventually("both /sleep requests to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(2)).then_some(())
    });

    server.signal("TERM");
    let signalled = Instant::now();
    // The pipelined request is sent once the server is shutting down.
    server.stdout_line_containing("shutting down", PATIENCE);
    busy.send(&request_bytes("GET", "/stats", None, &[]));

    // Every response is a 200; the connection ends only after a response
    // that said `Connection: close`.
    let mut last: Option<Response> = None;
    loop {
        match busy.response() {
            Ok(reply) => {
                assert_eq!(reply.status, 200, "{}", reply.text());
                last = Some(reply);
            }
            Err(err) if is_reset(&err) => break,
            Err(err) => panic!("the keep-alive connection hung during shutdown: {err}"),
        }
    }
    let last = last.expect("the request in flight at the signal was answered");
    assert!(
        last.closes(),
        "the connection was closed after a response without `Connection: close`: \
         the pipelined request was dropped silently ({:?})",
        last.headers
    );

    // Later, the idle connection has been closed, or is answered with
    // `Connection: close`.
    idle.stream().set_nonblocking(true).expect("nonblocking");
    let mut byte = [0_u8; 1];
    let idle_closed = match idle.stream().peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent unasked bytes on an idle connection"),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => false,
        Err(err) if is_reset(&err) => true,
        Err(err) => panic!("peek an idle connection: {err}"),
    };
    idle.stream().set_nonblocking(false).expect("blocking");
    if !idle_closed {
        let reply = idle
            .get("/")
            .expect("a request on an open keep-alive connection during shutdown is answered");
        assert_eq!(reply.status, 200);
        assert!(reply.closes(), "during shutdown: {:?}", reply.headers);
        idle.closed_within(PATIENCE)
            .unwrap_or_else(|err| panic!("after `Connection: close`: {err}"));
    }

    let reply = late.response().expect("the late /sleep is answered");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.closes(), "during shutdown: {:?}", reply.headers);

    let bound = GRACE + Duration::from_secs(15);
    let status = server.wait_exit(bound.saturating_sub(signalled.elapsed()));
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

/// Issue: "after a 413 the server keeps reading the declared body (5.6 GB
/// of a declared 10 GB in 8 s)".
#[test]
fn a_declared_10_gb_body_gets_413_and_the_connection_is_closed_unread() {
    flood_until_413(
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 10737418240\r\n\r\n",
        vec![b' '; 64 * 1024],
        "10 GB declared",
    );
}

/// Sends `head`, then `chunk` over and over from another thread while
/// reading the answer: it must be a 413 with `Connection: close`, the
/// connection must close, and the client's writes must fail on a reset
/// within what socket buffers absorb, not after the server read the body.
fn flood_until_413(head: &[u8], chunk: Vec<u8>, what: &str) {
    /// What the kernel's socket buffers and the server's read buffer may
    /// absorb before the close reaches the client: a few MiB, not gigabytes.
    const ABSORBED: u64 = 16 * MIB;
    /// Past this the server is clearly reading the body; stop sending.
    const CLEARLY_READING: u64 = 256 * MIB;
    let _serial = serial();
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(head);
    let mut stream = conn.stream().try_clone().expect("clone the stream");
    let writer = thread::spawn(move || {
        let mut sent = 0_u64;
        let deadline = Instant::now() + PATIENCE;
        while sent < CLEARLY_READING && Instant::now() < deadline {
            if let Err(err) = stream.write_all(&chunk) {
                return (sent, Some(err));
            }
            sent += chunk.len() as u64;
        }
        (sent, None)
    });
    let reply = conn.response();
    let closed = conn.closed_within(PATIENCE);
    let (sent, write_error) = writer.join().expect("the writer thread");
    eprintln!("{what}: sent {sent} body bytes before {write_error:?}");
    let reply = reply.unwrap_or_else(|err| panic!("no answer after {sent} body bytes: {err}"));
    let error = reply.expect_error(413);
    assert!(reply.closes(), "413 without `Connection: close`: {error}");
    closed.unwrap_or_else(|err| panic!("after the 413: {err}"));
    match write_error {
        Some(err) if is_reset(&err) => {}
        Some(err) => panic!("the writer stopped after {sent} bytes on {err}, not a close"),
        None => panic!("the server read {sent} bytes of a body it had refused"),
    }
    assert!(
        sent <= ABSORBED,
        "the client could send {sent} bytes before the server closed"
    );
}

/// Contract: a connection beyond `--max-connections` is accepted and closed
/// at once, and counted in /metrics.
#[test]
fn connections_over_max_connections_are_closed_at_once_and_counted() {
    const MAX: usize = 8;
    let _serial = serial();
    let server = Server::start(&["--max-connections", "8"]);
    let mut held: Vec<Conn> = (0..MAX)
        .map(|_| {
            let mut conn = server.connect();
            assert_eq!(conn.get("/stats").expect("under the limit").status, 200);
            conn
        })
        .collect();

    let mut extra = server.connect();
    let started = Instant::now();
    // The request may be refused before it is even sent.
    let _ = extra.try_send(&request_bytes("GET", "/stats", None, &[]));
    match extra.response() {
        Err(err) if is_reset(&err) => {}
        // Refusing with a 503 and closing is as good.
        Ok(reply) => {
            reply.expect_error(503);
            extra
                .closed_within(PATIENCE)
                .unwrap_or_else(|err| panic!("after the 503: {err}"));
        }
        Err(err) => panic!(
            "connection {} over the limit was not closed: {err}",
            MAX + 1
        ),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused after {:?}",
        started.elapsed()
    );

    // Those accepted are still served.
    for conn in &mut held {
        assert_eq!(conn.get("/").expect("a held connection").status, 200);
    }
    // A freed slot is taken again.
    held.pop();
    let metrics = eventually("a freed connection slot", || {
        server.try_request("GET", "/metrics", None).ok()
    });
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    let refused: f64 = metrics
        .text()
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains("refused"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        refused >= 1.0,
        "no sample named *refused* counts the refusal:\n{}",
        metrics.text()
    );
}

/// Issue: "the accept loop survives EMFILE/ENFILE and every other accept
/// error: it logs, backs off briefly and keeps serving the connections it
/// has". The running server's fd limit is lowered below `--max-connections`
/// so that the OS limit is hit first.
#[test]
fn accept_survives_emfile_and_serves_again_once_fds_are_free() {
    const HELD: usize = 8;
    const OVERFLOW: usize = 16;
    /// Free fds left above the baseline: room for `HELD` and a few more.
    const ROOM: usize = 12;
    let _serial = serial();
    let mut server = Launch::new()
        .nofile(1024)
        .args(&["--max-connections", "900"])
        .start();
    assert_eq!(server.get("/stats").status, 200);
    let limit = server.open_fds() + ROOM;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &server.pid().to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit --pid failed");

    let mut held: Vec<Conn> = (0..HELD)
        .map(|_| {
            let mut conn = server.connect();
            assert_eq!(conn.get("/stats").expect("under the fd limit").status, 200);
            conn
        })
        .collect();
    // More connections than fds: the kernel queues them, the server's
    // accept fails with EMFILE. Each is held until `release` is dropped.
    let (answers, answered) = mpsc::channel();
    let mut release = Vec::new();
    for index in 0..OVERFLOW {
        let mut conn = server.connect();
        conn.send(&request_bytes("GET", "/stats", None, &[]));
        let answers = answers.clone();
        let (hold, released) = mpsc::channel::<()>();
        release.push(hold);
        thread::spawn(move || {
            let reply = conn.response().map(|reply| reply.status);
            let _ = answers.send((index, reply));
            // Keeps the connection (and the server's fd) until released.
            let _ = released.recv_timeout(PATIENCE);
        });
    }
    eventually("the server to run out of fds", || {
        server.assert_running();
        (server.open_fds() >= limit).then_some(())
    });
    // Out of fds, it keeps serving the connections it has.
    for conn in &mut held {
        assert_eq!(conn.get("/stats").expect("a held connection").status, 200);
    }
    server.assert_running();
    let early = answered.try_iter().count();
    assert!(
        early < OVERFLOW,
        "all {OVERFLOW} overflow connections were served: the fd limit was never hit"
    );

    // Free fds: every queued connection is accepted and answered.
    drop(held);
    drop(release);
    let mut served = early;
    let deadline = Instant::now() + PATIENCE;
    while served < OVERFLOW {
        let left = deadline.saturating_duration_since(Instant::now());
        match answered.recv_timeout(left) {
            Ok((index, reply)) => {
                let status = reply.unwrap_or_else(|err| panic!("overflow {index}: {err}"));
                assert_eq!(status, 200, "overflow {index}");
                served += 1;
            }
            Err(_) => {
                panic!("{served} of {OVERFLOW} queued connections answered once fds were free")
            }
        }
    }
    assert_eq!(server.get("/").status, 200);
    server.assert_running();
}

/// Contract: a request head not complete within `--header-timeout-ms` gets
/// a 408 and the connection is closed.
#[test]
fn half_a_head_gets_408_after_the_header_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let _serial = serial();
    let server = Server::start(&["--header-timeout-ms", "500"]);
    let mut conn = server.connect();
    conn.send(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let sent = Instant::now();
    conn.set_read_timeout(TIMEOUT + Duration::from_secs(5));
    let reply = conn
        .response()
        .unwrap_or_else(|err| panic!("no 408 for half a head: {err}"));
    let waited = sent.elapsed();
    reply.expect_error(408);
    eprintln!("half a head: 408 after {waited:?}");
    assert!(
        waited >= TIMEOUT,
        "408 after {waited:?}, before the header timeout"
    );
    conn.closed_within(PATIENCE)
        .unwrap_or_else(|err| panic!("after the 408: {err}"));
    // Other clients never noticed.
    assert_eq!(server.get("/stats").status, 200);
}

/// A slowloris head: one byte every 50 ms never completes, and must not
/// keep resetting the header timer.
#[test]
fn a_head_trickled_byte_by_byte_gets_408_at_the_header_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(600);
    let _serial = serial();
    let server = Server::start(&["--header-timeout-ms", "600"]);
    let mut conn = server.connect();
    let head = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".iter();
    let endless = head.copied().chain(std::iter::repeat(b'a'));
    trickle_until_408(&mut conn, endless, TIMEOUT, "head");
}

/// A body trickled byte by byte is cut off at the body timeout, not kept
/// alive by each byte.
#[test]
fn a_body_trickled_byte_by_byte_gets_408_at_the_body_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(600);
    let _serial = serial();
    let server = Server::start(&["--body-timeout-ms", "600"]);
    let mut conn = server.connect();
    conn.send(
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 2000\r\n\r\n",
    );
    trickle_until_408(&mut conn, std::iter::repeat_n(b' ', 1999), TIMEOUT, "body");
    assert_eq!(server.stats()["jobs"]["submitted"], 0);
}

/// Contract: a streamed body over `--max-body-bytes` gets 413 too, and the
/// connection is closed without reading the rest.
#[test]
fn an_endless_chunked_body_gets_413_and_the_connection_is_closed_unread() {
    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
    chunk.extend(std::iter::repeat_n(b' ', 64 * 1024));
    chunk.extend_from_slice(b"\r\n");
    flood_until_413(
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
        chunk,
        "endless chunked body",
    );
}

/// Pipelined requests are answered in order; one over a limit is answered
/// in its turn with `Connection: close`, and what follows it is not read.
#[test]
fn pipelined_requests_are_answered_in_order_up_to_a_refused_one() {
    let _serial = serial();
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let mut conn = server.connect();
    let job = r#"{"kind":"sleep","ms":0}"#;
    let big = format!(r#"{{"kind":"fail","message":"{}"}}"#, "x".repeat(2000));
    let mut batch = request_bytes("GET", "/stats", None, &[]);
    batch.extend(request_bytes("POST", "/jobs", Some(job), &[]));
    batch.extend(request_bytes("GET", "/nope", None, &[]));
    batch.extend(request_bytes("POST", "/jobs", Some(&big), &[]));
    batch.extend(request_bytes("GET", "/", None, &[]));
    conn.send(&batch);

    let statuses: Vec<u16> = (0..4)
        .map(|index| {
            conn.response()
                .unwrap_or_else(|err| panic!("pipelined request {index}: {err}"))
        })
        .map(|reply| {
            if reply.status == 413 {
                assert!(reply.closes(), "413 without `Connection: close`");
                reply.expect_error(413);
            }
            reply.status
        })
        .collect();
    assert_eq!(statuses, [200, 202, 404, 413]);
    conn.closed_within(PATIENCE)
        .unwrap_or_else(|err| panic!("the request after the 413 was answered: {err}"));
    assert_eq!(server.stats()["jobs"]["submitted"], 1);
}

/// RFC 9112, 6.1: a request with both `Content-Length` and
/// `Transfer-Encoding` may be refused or read as chunked, and either way
/// the connection is closed after the response. Nothing hidden in the body
/// is ever answered as a request of its own.
#[test]
fn content_length_beside_transfer_encoding_is_answered_once_and_closed() {
    let _serial = serial();
    let server = Server::start(&[]);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let job = r#"{"kind":"sleep","ms":0}"#;
    let chunked = format!("{:x}\r\n{job}\r\n0\r\n\r\n{smuggled}", job.len());
    for (first, second) in [
        ("Content-Length", "Transfer-Encoding"),
        ("Transfer-Encoding", "Content-Length"),
    ] {
        let mut conn = server.connect();
        let head = format!(
            "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{}\r\n{}\r\n\r\n",
            if first == "Content-Length" {
                format!("Content-Length: {}", chunked.len())
            } else {
                "Transfer-Encoding: chunked".to_owned()
            },
            if second == "Content-Length" {
                format!("Content-Length: {}", chunked.len())
            } else {
                "Transfer-Encoding: chunked".to_owned()
            },
        );
        conn.send(format!("{head}{chunked}").as_bytes());
        let reply = conn
            .response()
            .unwrap_or_else(|err| panic!("{first} then {second}: no answer: {err}"));
        assert!(
            matches!(reply.status, 202 | 400),
            "{first} then {second}: {} {}",
            reply.status,
            reply.text()
        );
        if reply.status == 400 {
            reply.expect_error(400);
        }
        conn.closed_within(PATIENCE).unwrap_or_else(|err| {
            panic!("{first} then {second}: the connection stayed open after the response: {err}")
        });
    }
}

/// Bytes that are not HTTP (garbage, a TLS ClientHello on the plain port,
/// a bad request line, more header fields than allowed) get a JSON error
/// and a close, never a hang or a bare hyper answer.
#[test]
fn malformed_requests_get_a_json_error_and_a_close() {
    let _serial = serial();
    let server = Server::start(&[]);
    let many_fields: String = (0..200).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let cases: [(&str, Vec<u8>, &[u16]); 5] = [
        ("garbage", b"\x00\x01\x02garbage\r\n\r\n".to_vec(), &[400]),
        (
            "a TLS ClientHello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            &[400],
        ),
        ("a bad request line", b"GET\r\n\r\n".to_vec(), &[400]),
        (
            "a bad HTTP version",
            b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            &[400, 505],
        ),
        (
            "200 header fields",
            format!("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n{many_fields}\r\n").into_bytes(),
            &[431],
        ),
    ];
    for (what, bytes, expected) in cases {
        let mut conn = server.connect();
        conn.send(&bytes);
        let reply = conn
            .response()
            .unwrap_or_else(|err| panic!("{what}: no answer: {err}"));
        assert!(
            expected.contains(&reply.status),
            "{what}: {} {}",
            reply.status,
            reply.text()
        );
        reply.expect_error(reply.status);
        conn.closed_within(PATIENCE)
            .unwrap_or_else(|err| panic!("{what}: after the error: {err}"));
    }
    assert_eq!(server.get("/").status, 200);
}

/// Contract: an idle keep-alive connection is closed after
/// `--keep-alive-timeout-ms`.
#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(400);
    let _serial = serial();
    let server = Server::start(&["--keep-alive-timeout-ms", "400"]);
    let mut conn = server.connect();
    assert_eq!(conn.get("/").expect("a first request").status, 200);
    let idle = Instant::now();
    conn.closed_within(TIMEOUT + Duration::from_secs(5))
        .unwrap_or_else(|err| panic!("idle for {:?}: {err}", idle.elapsed()));
    let waited = idle.elapsed();
    eprintln!("keep-alive connection closed after {waited:?} idle");
    assert!(waited >= TIMEOUT, "closed after {waited:?} idle");
}

/// Contract: a handler running longer than `--request-timeout-ms` answers a
/// JSON 503.
#[test]
fn a_handler_over_the_request_timeout_answers_503() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let _serial = serial();
    let server = Server::start(&["--request-timeout-ms", "300"]);
    let started = Instant::now();
    let reply = server.get("/sleep?ms=5000");
    let waited = started.elapsed();
    reply.expect_error(503);
    assert!(
        waited >= TIMEOUT && waited < Duration::from_secs(3),
        "503 after {waited:?}"
    );
    assert_eq!(server.get("/stats").status, 200);
}

/// Contract: a second signal exits at once, with status 130.
#[test]
fn a_second_signal_exits_at_once_with_130() {
    let _serial = serial();
    let mut server = Server::start(&["--shutdown-grace-ms", "60000"]);
    let job = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    eventually("the job to run", || {
        let reply = server.get(&format!("/jobs/{job}"));
        (reply.json()["status"] == "running").then_some(())
    });
    let mut sleeper = server.connect();
    sleeper.send(&request_bytes("GET", "/sleep?ms=10000", None, &[]));
    server.signal("TERM");
    // Signals that arrive together may be delivered, or noticed, as one:
    // the second is sent once the first has been acted on.
    server.stdout_line_containing("shutting down", PATIENCE);
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "exit status {status}");
}

/// A client that pipelines requests and never reads the answers: the server
/// stops reading once its writes block, instead of buffering answers.
#[test]
fn a_client_that_never_reads_cannot_grow_the_server() {
    const RSS_SLACK_KIB: u64 = 50 * 1024;
    const REQUESTS: u64 = 64 * MIB;
    let _serial = serial();
    let server = Server::start(&[]);
    let start_rss = server.rss_kib();
    let pid = server.pid();
    let conn = server.connect();
    let mut stream = conn.stream().try_clone().expect("clone the stream");
    // A write that cannot finish within a second: the server stopped reading.
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .expect("write timeout");
    let batch = request_bytes("GET", "/", None, &[]).repeat(256);
    let mut sent = 0_u64;
    let mut peak = start_rss;
    let deadline = Instant::now() + PATIENCE;
    let stopped = loop {
        if sent >= REQUESTS || Instant::now() > deadline {
            break None;
        }
        if let Err(err) = stream.write_all(&batch) {
            break Some(err);
        }
        sent += batch.len() as u64;
        if sent % MIB < batch.len() as u64 {
            peak = peak.max(
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))?
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0),
            );
        }
    };
    let end_rss = server.rss_kib();
    eprintln!(
        "never-reading client: sent {sent} bytes of requests, stopped by {stopped:?}; \
         RSS {start_rss} KiB, at most {peak} KiB, {end_rss} KiB at the end"
    );
    assert!(
        peak.max(end_rss) <= start_rss + RSS_SLACK_KIB,
        "RSS grew from {start_rss} KiB to {} KiB",
        peak.max(end_rss)
    );
    assert!(
        matches!(&stopped, Some(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)),
        "the server kept reading {sent} bytes of requests it could not answer: {stopped:?}"
    );
    // Others are still served at once.
    let started = Instant::now();
    assert_eq!(server.get("/stats").status, 200);
    assert!(started.elapsed() < AT_ONCE, "{:?}", started.elapsed());
    drop(conn);
}

/// The HTTP/2 client side of the tests below: a small runtime, and
/// a request body fed through a channel, so a test can send part of a body
/// and stall.
mod h2 {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::{Body, Frame};
    use hyper::client::conn::http2::SendRequest;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

    /// One worker thread, so that connections and streams make progress
    /// while the test thread waits for something else.
    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
    }

    /// A body whose data arrives on a channel; it ends when the sender is
    /// dropped.
    #[derive(Debug)]
    pub(crate) struct Fed(pub(crate) mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(Frame::data(data))))
        }
    }

    /// An HTTP/2 connection with prior knowledge, and the task driving it.
    pub(crate) async fn connect(
        addr: SocketAddr,
    ) -> Result<(SendRequest<Fed>, JoinHandle<Result<(), hyper::Error>>), Error> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        Ok((sender, tokio::spawn(connection)))
    }

    /// A request whose body is `body` (empty if `None`), sent whole.
    pub(crate) fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> hyper::Request<Fed> {
        let (tx, rx) = mpsc::channel(1);
        if let Some(body) = body {
            tx.try_send(Bytes::from(body.to_owned()))
                .expect("room for the body");
        }
        hyper::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(Fed(rx))
            .expect("a request")
    }

    /// Sends `request`, returns the status and the body.
    pub(crate) async fn send(
        sender: &mut SendRequest<Fed>,
        request: hyper::Request<Fed>,
    ) -> Result<(u16, serde_json::Value), Error> {
        use http_body_util::BodyExt;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        let json = serde_json::from_slice(&body)
            .map_err(|err| format!("not JSON ({err}): {}", String::from_utf8_lossy(&body)))?;
        Ok((status, json))
    }
}

/// The body limits hold on HTTP/2 too: a body over `--max-body-bytes` gets
/// 413, a stalled one 408, and the connection goes on serving other streams.
#[test]
fn http2_bodies_over_the_limit_get_413_and_stalled_ones_408() {
    const TIMEOUT: Duration = Duration::from_millis(600);
    let _serial = serial();
    let server = Server::start(&["--body-timeout-ms", "600"]);
    let addr = server.addr();
    let outcome = h2::runtime().block_on(async move {
        tokio::time::timeout(PATIENCE, async move {
            let (mut sender, _driver) = h2::connect(addr).await?;
            let big = format!(
                r#"{{"kind":"fail","message":"{}"}}"#,
                "x".repeat(100 * 1024)
            );
            let too_big =
                h2::send(&mut sender, h2::request(addr, "POST", "/jobs", Some(&big))).await?;

            // 100 bytes of a declared 2000, then nothing.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(bytes::Bytes::from(vec![b' '; 100])).await?;
            let stalled = hyper::Request::post(format!("http://{addr}/jobs"))
                .header("content-length", "2000")
                .body(h2::Fed(rx))?;
            let started = Instant::now();
            let slow = h2::send(&mut sender, stalled).await?;
            let waited = started.elapsed();
            drop(tx);

            let stats = h2::send(&mut sender, h2::request(addr, "GET", "/stats", None)).await?;
            Ok::<_, h2::Error>((too_big, slow, waited, stats))
        })
        .await
    });
    let (too_big, slow, waited, stats) = outcome
        .unwrap_or_else(|_| panic!("HTTP/2 requests not answered within {PATIENCE:?}"))
        .unwrap_or_else(|err| panic!("HTTP/2: {err}"));
    eprintln!("HTTP/2 stalled body: {} after {waited:?}", slow.0);
    assert_eq!(too_big.0, 413, "{}", too_big.1);
    assert!(too_big.1["error"].is_string(), "{}", too_big.1);
    assert_eq!(slow.0, 408, "{}", slow.1);
    assert!(slow.1["error"].is_string(), "{}", slow.1);
    assert!(waited >= TIMEOUT, "408 after {waited:?}");
    assert_eq!(stats.0, 200, "{}", stats.1);
    assert_eq!(stats.1["jobs"]["submitted"], 0);
}

/// Contract: at SIGTERM an HTTP/2 connection gets GOAWAY, its streams in
/// flight are answered, and the server exits 0.
#[test]
fn http2_streams_in_flight_at_sigterm_are_answered_then_goaway() {
    let _serial = serial();
    let mut server = Server::start(&["--shutdown-grace-ms", "200"]);
    let addr = server.addr();
    let runtime = h2::runtime();
    let (sender, driver, in_flight) = runtime
        .block_on(async move {
            tokio::time::timeout(PATIENCE, async move {
                let (sender, driver) = h2::connect(addr).await?;
                let mut poller = sender.clone();
                let in_flight = tokio::spawn(async move {
                    h2::send(
                        &mut poller,
                        h2::request(addr, "GET", "/sleep?ms=1500", None),
                    )
                    .await
                });
                Ok::<_, h2::Error>((sender, driver, in_flight))
            })
            .await
        })
        .expect("connected in time")
        .unwrap_or_else(|err| panic!("HTTP/2: {err}"));
    eventually("the /sleep stream to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(1)).then_some(())
    });
    server.signal("TERM");
    let signalled = Instant::now();
    let (slept, closed) = runtime
        .block_on(async move {
            tokio::time::timeout(PATIENCE, async move {
                let slept = in_flight.await.map_err(|err| err.to_string())?;
                // After GOAWAY the connection ends on its own.
                drop(sender);
                let closed = driver.await.map_err(|err| err.to_string())?;
                Ok::<_, String>((slept, closed))
            })
            .await
            .unwrap_or_else(|_| Err(format!("not done within {PATIENCE:?}")))
        })
        .unwrap_or_else(|err| panic!("HTTP/2 at shutdown: {err}"));
    let (status, body) = slept.unwrap_or_else(|err| panic!("the stream in flight: {err}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["slept_ms"], 1500);
    closed.unwrap_or_else(|err| panic!("the connection did not end cleanly: {err}"));
    let bound = Duration::from_millis(200) + Duration::from_secs(15);
    let status = server.wait_exit(bound.saturating_sub(signalled.elapsed()));
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

/// An HTTP/2 connection that sends its preface and then nothing is closed
/// after the keep-alive timeout.
#[test]
fn an_idle_http2_connection_is_closed_after_the_keep_alive_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(400);
    let _serial = serial();
    let server = Server::start(&["--keep-alive-timeout-ms", "400"]);
    let mut conn = server.connect();
    // The preface and an empty SETTINGS frame.
    conn.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    let idle = Instant::now();
    conn.set_read_timeout(TIMEOUT + Duration::from_secs(5));
    let mut frames = Vec::new();
    match conn.stream().take(MIB).read_to_end(&mut frames) {
        Ok(_) => {}
        Err(err) if is_reset(&err) => {}
        Err(err) => panic!(
            "an idle HTTP/2 connection still open after {:?}: {err}",
            idle.elapsed()
        ),
    }
    let waited = idle.elapsed();
    eprintln!("idle HTTP/2 connection closed after {waited:?}");
    assert!(waited >= TIMEOUT, "closed after {waited:?}");
    // The server spoke HTTP/2 before closing: SETTINGS first.
    assert!(frames.len() >= 9 && frames[3] == 4, "{frames:?}");
}

/// Heads and bodies at the edges of HTTP/1.1 framing, which the server's
/// connection guard frames itself before hyper does: each gets a prompt
/// answer (never the header timeout), JSON when it is an error, and a
/// close whenever the framing is in doubt.
#[test]
fn framing_edge_cases_get_a_prompt_answer() {
    let _serial = serial();
    // A long header timeout: a case that waits for it is a failure.
    let server = Server::start(&["--header-timeout-ms", "30000"]);
    let job = r#"{"kind":"sleep","ms":0}"#;
    let post = "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    // (what, bytes, acceptable statuses, must the connection close after)
    let cases: Vec<(&str, String, &[u16], bool)> = vec![
        (
            "two different Content-Length values",
            format!(
                "{post}Content-Length: {}\r\nContent-Length: 5\r\n\r\n{job}",
                job.len()
            ),
            &[400],
            true,
        ),
        (
            "a negative Content-Length",
            format!("{post}Content-Length: -1\r\n\r\n{job}"),
            &[400],
            true,
        ),
        (
            "a Content-Length past u64",
            format!("{post}Content-Length: 18446744073709551616\r\n\r\n{job}"),
            &[400, 413],
            true,
        ),
        (
            "a chunk size past u64",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n{job}"),
            &[400, 413],
            true,
        ),
        (
            "a chunk size that is not hex",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nzz\r\n{job}\r\n0\r\n\r\n"),
            &[400],
            true,
        ),
        (
            "a space before the colon",
            "GET /stats HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n".to_owned(),
            &[400],
            true,
        ),
        (
            "a folded header line",
            "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n folded\r\n\r\n".to_owned(),
            &[400],
            true,
        ),
        (
            "a NUL in a header value",
            "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\0b\r\n\r\n".to_owned(),
            &[400],
            true,
        ),
        (
            "bare LF line ends",
            "GET /stats HTTP/1.1\nHost: 127.0.0.1\n\n".to_owned(),
            &[200, 400],
            false,
        ),
        (
            "an absolute-form target",
            "GET http://127.0.0.1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
            &[200],
            false,
        ),
        (
            "HTTP/1.0 without Host",
            "GET /stats HTTP/1.0\r\n\r\n".to_owned(),
            &[200],
            true,
        ),
        (
            "a chunked body with an extension and a trailer",
            format!(
                "{post}Transfer-Encoding: chunked\r\n\r\n{:x};name=value\r\n{job}\r\n0\r\nX-Trailer: t\r\n\r\n",
                job.len()
            ),
            &[202],
            false,
        ),
    ];
    for (what, bytes, expected, closes) in cases {
        let mut conn = server.connect();
        conn.send(bytes.as_bytes());
        conn.set_read_timeout(Duration::from_secs(5));
        let started = Instant::now();
        let reply = conn
            .response()
            .unwrap_or_else(|err| panic!("{what}: no answer: {err}"));
        assert!(
            expected.contains(&reply.status),
            "{what}: {} {}",
            reply.status,
            reply.text()
        );
        if reply.status >= 400 {
            reply.expect_error(reply.status);
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        if closes || reply.status >= 400 {
            conn.closed_within(PATIENCE)
                .unwrap_or_else(|err| panic!("{what}: after a {}: {err}", reply.status));
        } else {
            // Still in step: the connection serves a next request.
            let next = conn
                .get("/")
                .unwrap_or_else(|err| panic!("{what}: the next request: {err}"));
            assert_eq!(next.status, 200, "{what}: the next request");
        }
    }
}

/// `Expect: 100-continue` with a body over the limit: the server answers
/// 413 at once instead of inviting the body.
#[test]
fn expect_100_continue_over_the_limit_gets_413_without_the_body() {
    let _serial = serial();
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 10737418240\r\nExpect: 100-continue\r\n\r\n",
    );
    conn.set_read_timeout(Duration::from_secs(5));
    let reply = conn
        .response()
        .unwrap_or_else(|err| panic!("no answer to the head: {err}"));
    reply.expect_error(413);
    conn.closed_within(PATIENCE)
        .unwrap_or_else(|err| panic!("after the 413: {err}"));
}

/// Chunk extensions and trailers are framing the guard reads itself: a
/// flood of either is cut off, not buffered.
#[test]
fn chunk_extension_and_trailer_floods_are_cut_off() {
    const ABSORBED: u64 = 16 * MIB;
    const FLOOD: u64 = 256 * MIB;
    const RSS_SLACK_KIB: u64 = 50 * 1024;
    let _serial = serial();
    let server = Server::start(&[]);
    let start_rss = server.rss_kib();
    for (what, opening, filler) in [
        ("a chunk extension", "1;ext=", "a".repeat(64 * 1024)),
        (
            "a trailer",
            "0\r\n",
            format!("X-Trailer: {}\r\n", "t".repeat(1000)).repeat(64),
        ),
    ] {
        let mut conn = server.connect();
        conn.send(
            format!(
                "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{opening}"
            )
            .as_bytes(),
        );
        let mut stream = conn.stream().try_clone().expect("clone the stream");
        let writer = thread::spawn(move || {
            let mut sent = 0_u64;
            let deadline = Instant::now() + PATIENCE;
            while sent < FLOOD && Instant::now() < deadline {
                if let Err(err) = stream.write_all(filler.as_bytes()) {
                    return (sent, Some(err));
                }
                sent += filler.len() as u64;
            }
            (sent, None)
        });
        let reply = conn.response();
        let closed = conn.closed_within(PATIENCE);
        let (sent, write_error) = writer.join().expect("the writer thread");
        let rss = server.rss_kib();
        eprintln!("{what} flood: sent {sent} bytes before {write_error:?}; RSS {rss} KiB");
        let reply = reply.unwrap_or_else(|err| panic!("{what} flood: no answer: {err}"));
        assert!(
            matches!(reply.status, 400 | 413 | 431),
            "{what} flood: {} {}",
            reply.status,
            reply.text()
        );
        reply.expect_error(reply.status);
        closed.unwrap_or_else(|err| panic!("{what} flood, after the error: {err}"));
        assert!(
            matches!(&write_error, Some(err) if is_reset(err)) && sent <= ABSORBED,
            "{what} flood: the client could send {sent} bytes ({write_error:?})"
        );
        assert!(
            rss <= start_rss + RSS_SLACK_KIB,
            "{what} flood: RSS {start_rss} -> {rss} KiB"
        );
    }
}

/// Raw HTTP/2 frames (RFC 9113, section 4.1), for clients no well-behaved
/// library would be.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a frame under 16 MiB");
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The preface and an empty SETTINGS frame.
fn h2_preface() -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(h2_frame(0x4, 0, 0, &[]));
    bytes
}

/// An HPACK header block for `GET path` (RFC 7541: indexed `:method GET`
/// and `:scheme http`, literal `:path` and `:authority` with indexed names).
fn h2_get_block(path: &str) -> Vec<u8> {
    let mut block = vec![
        0x82,
        0x86,
        0x04,
        u8::try_from(path.len()).expect("a short path"),
    ];
    block.extend_from_slice(path.as_bytes());
    block.extend([0x01, 9]);
    block.extend_from_slice(b"127.0.0.1");
    block
}

/// CVE-2024-27316 and kin: a header block that never ends, in CONTINUATION
/// frames, is cut off instead of buffered.
#[test]
fn an_endless_http2_continuation_flood_is_cut_off() {
    const ABSORBED: u64 = 16 * MIB;
    const FLOOD: u64 = 256 * MIB;
    const RSS_SLACK_KIB: u64 = 50 * 1024;
    let _serial = serial();
    let server = Server::start(&[]);
    let start_rss = server.rss_kib();
    let mut conn = server.connect();
    let mut opening = h2_preface();
    // HEADERS with END_STREAM and without END_HEADERS.
    opening.extend(h2_frame(0x1, 0x1, 1, &h2_get_block("/stats")));
    conn.send(&opening);
    // Literal header fields, new names, without indexing: 108 bytes each.
    let mut field = vec![0x00, 5];
    field.extend_from_slice(b"x-abc");
    field.push(100);
    field.extend(std::iter::repeat_n(b'v', 100));
    let continuation = h2_frame(0x9, 0, 1, &field.repeat(150));
    let pid = server.pid();
    let mut stream = conn.stream().try_clone().expect("clone the stream");
    let writer = thread::spawn(move || {
        let mut sent = 0_u64;
        let mut peak = 0_u64;
        let deadline = Instant::now() + PATIENCE;
        while sent < FLOOD && Instant::now() < deadline {
            if let Err(err) = stream.write_all(&continuation) {
                return (sent, peak, Some(err));
            }
            sent += continuation.len() as u64;
            if sent % MIB < continuation.len() as u64 {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))?
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0);
                peak = peak.max(rss);
            }
        }
        (sent, peak, None)
    });
    // Whatever the server sends (SETTINGS, GOAWAY), it must then close.
    let mut received = Vec::new();
    let read = conn.stream().take(MIB).read_to_end(&mut received);
    let (sent, peak, write_error) = writer.join().expect("the writer thread");
    let rss = server.rss_kib().max(peak);
    eprintln!(
        "CONTINUATION flood: sent {sent} bytes before {write_error:?}, read {} bytes then \
         {read:?}; RSS {start_rss} -> at most {rss} KiB",
        received.len()
    );
    assert!(
        read.as_ref().map_or_else(is_reset, |_| true),
        "the connection stayed open: {read:?}"
    );
    assert!(
        matches!(&write_error, Some(err) if is_reset(err)) && sent <= ABSORBED,
        "the client could send {sent} bytes of one header block ({write_error:?})"
    );
    assert!(
        rss <= start_rss + RSS_SLACK_KIB,
        "RSS {start_rss} -> {rss} KiB"
    );
    assert_eq!(server.get("/stats").status, 200);
}

/// CVE-2023-44487: streams opened and reset at once, by the thousand, on
/// a handler that occupies a pool worker. Other clients stay served at
/// once, and no reset stream keeps a worker busy.
#[test]
fn an_http2_rapid_reset_flood_leaves_other_clients_served() {
    const STREAMS: u32 = 20_000;
    let _serial = serial();
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(&h2_preface());
    let block = h2_get_block("/sleep?ms=10000");
    let mut stream = conn.stream().try_clone().expect("clone the stream");
    let writer = thread::spawn(move || {
        let mut streams = 0_u32;
        // A batch of 100 HEADERS + RST_STREAM(CANCEL) pairs per write.
        while streams < STREAMS {
            let mut batch = Vec::new();
            for _ in 0..100 {
                let id = 2 * streams + 1;
                batch.extend(h2_frame(0x1, 0x5, id, &block));
                batch.extend(h2_frame(0x3, 0, id, &8_u32.to_be_bytes()));
                streams += 1;
            }
            if let Err(err) = stream.write_all(&batch) {
                return (streams, Some(err));
            }
        }
        (streams, None)
    });
    let mut slowest = Duration::ZERO;
    while !writer.is_finished() {
        let started = Instant::now();
        assert_eq!(server.get("/stats").status, 200);
        slowest = slowest.max(started.elapsed());
    }
    let (streams, write_error) = writer.join().expect("the writer thread");
    eprintln!(
        "rapid reset: {streams} streams sent before {write_error:?}; slowest /stats {slowest:?}"
    );
    assert!(
        slowest < AT_ONCE,
        "GET /stats took {slowest:?} during a rapid-reset flood"
    );
    // The cancelled sleeps give their workers back.
    eventually("the request pool to be idle again", || {
        let http = &server.stats()["http"];
        (http["busy"] == 0 && http["queued"] == 0).then_some(())
    });
    drop(conn);
}

/// The header and keep-alive timers are for idle clients: a slow handler
/// or a long-poll outlasting both is answered, not cut off.
#[test]
fn slow_handlers_outlast_the_header_and_keep_alive_timeouts() {
    let _serial = serial();
    let server = Server::start(&[
        "--header-timeout-ms",
        "300",
        "--keep-alive-timeout-ms",
        "300",
    ]);
    let id = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    let mut conn = server.connect();
    let reply = conn
        .get("/sleep?ms=1000")
        .expect("a slow handler is answered");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["slept_ms"], 1000);
    let reply = conn
        .get(&format!("/jobs/{id}/wait?timeout_ms=1000"))
        .expect("a long-poll is answered on the same connection");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["finished"], false);
    assert_eq!(
        server
            .request("DELETE", &format!("/jobs/{id}"), None)
            .status,
        200
    );
}

/// Thousands of short connections, each with one request: the server's
/// fds come back to where they were, and its memory barely moves.
#[test]
fn thousands_of_short_connections_leak_no_fd_and_little_memory() {
    const CONNECTIONS: usize = 3000;
    const RSS_SLACK_KIB: u64 = 20 * 1024;
    let _serial = serial();
    let server = Server::start(&[]);
    let fds = server.open_fds();
    // Warm up the allocator and the runtime before measuring.
    for _ in 0..100 {
        assert_eq!(server.get("/stats").status, 200);
    }
    let start_rss = server.rss_kib();
    for index in 0..CONNECTIONS {
        let mut conn = server.connect();
        match index % 3 {
            // Keep-alive, answered, then the client leaves.
            0 => assert_eq!(conn.get("/").expect("a request").status, 200),
            // Half a head, then the client leaves.
            1 => conn.send(b"GET /stats HTTP/1.1\r\nHost: 127.0.0"),
            // Connect and leave.
            _ => {}
        }
    }
    let end_rss = server.rss_kib();
    eventually("the server's fds back to their count before", || {
        (server.open_fds() <= fds).then_some(())
    });
    eprintln!("{CONNECTIONS} short connections: RSS {start_rss} -> {end_rss} KiB");
    assert!(
        end_rss <= start_rss + RSS_SLACK_KIB,
        "RSS {start_rss} -> {end_rss} KiB after {CONNECTIONS} short connections"
    );
}

/// Sends `bytes` on `conn` one every 50 ms from another thread (the slow
/// client: its sleeps are its slowness, not synchronisation) until the
/// server answers; asserts the answer is a 408 that came no sooner than
/// `timeout`, and that the server then closes the connection.
fn trickle_until_408(
    conn: &mut Conn,
    bytes: impl Iterator<Item = u8> + Send + 'static,
    timeout: Duration,
    what: &str,
) {
    let started = Instant::now();
    let mut stream = conn.stream().try_clone().expect("clone the stream");
    let trickler = thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        for byte in bytes {
            if Instant::now() > deadline || stream.write_all(&[byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    conn.set_read_timeout(timeout + Duration::from_secs(5));
    let reply = conn.response().unwrap_or_else(|err| {
        panic!(
            "no 408 for a {what} trickled for {:?}: {err}",
            started.elapsed()
        )
    });
    let waited = started.elapsed();
    reply.expect_error(408);
    eprintln!("trickled {what}: 408 after {waited:?}");
    assert!(waited >= timeout, "408 after {waited:?}");
    conn.closed_within(PATIENCE)
        .unwrap_or_else(|err| panic!("after the 408: {err}"));
    trickler.join().expect("the trickling thread");
}
