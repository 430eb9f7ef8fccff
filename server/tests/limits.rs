//! Each limit flag, checked on a real connection with a small setting: the
//! status code, the JSON error, `Connection: close` and the connection
//! really closed. (The hostile clients at full scale, many connections and
//! large payloads, are in `hostile.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Server, closed, eventually, read_reply, send};

#[test]
fn a_head_over_max_header_bytes_gets_431_and_the_connection_closes() {
    let server = Server::start(&["--max-header-bytes", "1024"]);
    // Just under the limit passes.
    let mut stream = server.connect();
    let filler = format!("X-Filler: {}\r\n", "a".repeat(900));
    send(
        &mut stream,
        format!("GET /stats HTTP/1.1\r\nHost: x\r\n{filler}\r\n").as_bytes(),
    );
    assert_eq!(read_reply(&mut stream).status, 200);

    let mut stream = server.connect();
    let filler = format!("X-Filler: {}\r\n", "a".repeat(2000));
    send(
        &mut stream,
        format!("GET /stats HTTP/1.1\r\nHost: x\r\n{filler}\r\n").as_bytes(),
    );
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 431);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(
        reply.error().contains("larger than 1024 bytes"),
        "{reply:?}"
    );
    assert!(closed(&mut stream), "closed after the 431");

    // More than 100 header fields: 431 too.
    let mut stream = server.connect();
    let fields: String = (0..101).map(|i| format!("h{i}: v\r\n")).collect();
    send(
        &mut stream,
        format!("GET / HTTP/1.1\r\n{fields}\r\n").as_bytes(),
    );
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 431, "{reply:?}");
    assert!(reply.error().contains("header fields"), "{reply:?}");
}

#[test]
fn a_head_not_received_within_the_header_timeout_gets_408() {
    let server = Server::start(&["--header-timeout-ms", "300"]);
    let mut stream = server.connect();
    send(&mut stream, b"GET /stats HTTP/1.1\r\nHost: x\r\n");
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 408);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(reply.error().contains("within 300 ms"), "{reply:?}");
    assert!(closed(&mut stream));

    // A new connection that sends nothing is closed silently.
    let mut idle = server.connect();
    assert!(closed(&mut idle));
}

#[test]
fn a_declared_body_over_max_body_bytes_gets_413_without_being_read() {
    let server = Server::start(&["--max-body-bytes", "100"]);
    let mut stream = server.connect();
    send(
        &mut stream,
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
    );
    send(&mut stream, &[b'x'; 1000]);
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(reply.error().contains("larger than 100 bytes"), "{reply:?}");
    assert!(closed(&mut stream));
    // A body within the limit is read (and here, parsed: 400).
    let reply = server.post("/jobs", "{\"kind\":\"nap\"}");
    assert!(reply.expect_error(400).contains("unknown kind"));
    assert_eq!(server.stats()["jobs"]["submitted"], 0);
}

#[test]
fn a_chunked_body_over_max_body_bytes_gets_413() {
    let server = Server::start(&["--max-body-bytes", "100"]);
    let mut stream = server.connect();
    send(
        &mut stream,
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..3 {
        send(
            &mut stream,
            format!("40\r\n{}\r\n", "x".repeat(64)).as_bytes(),
        );
    }
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(closed(&mut stream));

    // A small chunked body is fine, and the connection stays open for the
    // next request.
    let mut stream = server.connect();
    let body = r#"{"kind":"sleep","ms":0}"#;
    send(
        &mut stream,
        format!(
            "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(read_reply(&mut stream).status, 202);
    send(&mut stream, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read_reply(&mut stream).status, 200);
}

#[test]
fn a_body_not_received_within_the_body_timeout_gets_408() {
    let server = Server::start(&["--body-timeout-ms", "300"]);
    let mut stream = server.connect();
    send(
        &mut stream,
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n",
    );
    send(&mut stream, &[b'x'; 100]);
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 408);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(
        reply
            .error()
            .contains("body was not received within 300 ms")
    );
    assert!(closed(&mut stream));
}

#[test]
fn a_handler_over_the_request_timeout_gets_503_and_its_job_is_cancelled() {
    let server = Server::start(&["--request-timeout-ms", "300"]);
    let started = Instant::now();
    let reply = server.get("/sleep?ms=10000");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(reply.expect_error(503).contains("longer than 300 ms"));
    // The /sleep job stopped with its request.
    eventually("the sleep job to be cancelled", || {
        (server.stats()["http"]["cancelled"] == 1).then_some(())
    });
    // A long-poll shorter than the timeout is unaffected.
    let id = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    let reply = server.get(&format!("/jobs/{id}/wait?timeout_ms=100"));
    assert_eq!(reply.status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let server = Server::start(&["--keep-alive-timeout-ms", "300"]);
    let mut stream = server.connect();
    send(&mut stream, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read_reply(&mut stream).status, 200);
    let idle_since = Instant::now();
    assert!(closed(&mut stream));
    assert!(idle_since.elapsed() < DEADLINE);

    // A request in flight longer than the timeout is not cut short.
    let mut stream = server.connect();
    send(
        &mut stream,
        b"GET /sleep?ms=1000 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(read_reply(&mut stream).status, 200);
}

#[test]
fn connections_over_max_connections_are_closed_at_once() {
    let server = Server::start(&["--max-connections", "2"]);
    let mut held: Vec<_> = (0..2).map(|_| server.connect()).collect();
    // Both are being served: each answers a request.
    for stream in &mut held {
        send(stream, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_reply(stream).status, 200);
    }
    let mut over = server.connect();
    assert!(closed(&mut over), "the third connection is closed");
    drop(held);
    // Until the server sees the held connections close, a try may be
    // refused (and counted) too.
    let metrics = eventually("a connection slot to free up", || {
        server
            .try_get("/metrics")
            .ok()
            .filter(|reply| reply.status == 200)
    });
    let refused = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("http_connections_refused_total "))
        .and_then(|value| value.parse::<u32>().ok())
        .expect("the refused counter");
    assert!(refused >= 1, "{}", metrics.body);
}

#[test]
fn malformed_heads_and_ambiguous_framing_get_400() {
    let server = Server::start(&[]);
    for head in [
        &b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"[..],
        b"POST /jobs HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /jobs HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST /jobs HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET http://[::1 HTTP/1.1\r\n\r\n",
    ] {
        let mut stream = server.connect();
        send(&mut stream, head);
        let reply = read_reply(&mut stream);
        assert_eq!(reply.status, 400, "{head:?}: {reply:?}");
        assert!(reply.error().starts_with("malformed request"), "{reply:?}");
        assert!(closed(&mut stream));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order_and_a_refused_head_last() {
    let server = Server::start(&["--max-header-bytes", "1024"]);
    let mut stream = server.connect();
    let big = format!("X-Filler: {}\r\n", "a".repeat(2000));
    send(
        &mut stream,
        format!(
            "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
             GET / HTTP/1.1\r\n{big}\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(read_reply(&mut stream).status, 200);
    assert_eq!(read_reply(&mut stream).status, 404);
    assert_eq!(read_reply(&mut stream).status, 431);
    assert!(closed(&mut stream));
}
