//! Graceful stop on SIGTERM and SIGINT: requests already received are
//! answered, keep-alive clients told `Connection: close` (HTTP/2: GOAWAY),
//! demo jobs cancelled after the grace, exit 0 in bounded time; a second
//! signal exits at once.

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Server, closed, eventually, read_reply, send};

#[test]
fn sigterm_stops_gracefully() {
    let mut server = Server::start(&[]);
    let long_job = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    server.wait_running(&long_job);
    let in_flight = server.in_background("/sleep?ms=1500");
    eventually("the in-flight request to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(1)).then_some(())
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
fn keep_alive_clients_are_told_to_close_and_idle_ones_are_closed() {
    let mut server = Server::start(&[]);
    let mut idle = server.connect();
    send(&mut idle, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read_reply(&mut idle).status, 200);
    let mut busy = server.connect();
    send(&mut busy, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read_reply(&mut busy).status, 200);
    // Long enough to be in flight when the stop begins, even on a loaded box.
    send(&mut busy, b"GET /sleep?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n");
    eventually("the sleep to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(1)).then_some(())
    });

    server.signal("TERM");

    assert!(closed(&mut idle), "an idle keep-alive connection is closed");
    let reply = read_reply(&mut busy);
    assert_eq!(reply.status, 200, "the request in flight is answered");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(closed(&mut busy));
    assert_eq!(server.wait_exit().code(), Some(0));
}

#[test]
fn demo_jobs_get_the_grace_then_are_cancelled_and_long_polls_answer() {
    let mut server = Server::start(&["--shutdown-grace-ms", "300"]);
    let short = server.submit(r#"{"kind":"sleep","ms":100}"#);
    let long = server.submit(r#"{"kind":"progress","steps":600,"ms":100}"#);
    server.wait_running(&long);
    let poll = server.in_background(&format!("/jobs/{long}/wait?timeout_ms=60000"));
    // Received before the stop begins (a request still on its way when the
    // listener closes is not one the server has to answer): in flight are
    // the long-poll and this scrape.
    eventually("the long-poll to be received", || {
        (server.metric("http_requests_in_flight") >= 2.0).then_some(())
    });
    let signalled = Instant::now();
    server.signal("TERM");

    let reply = poll.recv_timeout(DEADLINE).expect("the long-poll answers");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let job = reply.json();
    assert_eq!(job["status"], "cancelled", "{job}");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    // The grace and about as long again to notice; nothing waits the
    // minute the job asked for.
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
    let output = server.rest_of_stdout();
    assert!(
        output.contains("job pool: completed 1, failed 0, cancelled 1"),
        "the short job ran out its time, the long one was cancelled ({short}): {output}"
    );
}

#[test]
fn a_second_signal_exits_at_once_with_130() {
    let mut server = Server::start(&[]);
    // Keeps the graceful stop busy for 10 s.
    let in_flight = server.in_background("/sleep?ms=10000");
    eventually("the sleep to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(1)).then_some(())
    });
    server.signal("TERM");
    server.stdout_line_containing("shutting down", DEADLINE);
    let second = Instant::now();
    server.signal("INT");
    let status = server.wait_exit_within(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "exit status {status}");
    assert!(second.elapsed() < Duration::from_secs(5));
    drop(in_flight);
}

#[test]
fn http2_connections_get_goaway_and_finish_their_streams() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let mut server = Server::start(&[]);
    let addr = server.addr;
    let base = server.base.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (stream_started_tx, stream_started_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        runtime.block_on(async move {
            tokio::time::timeout(DEADLINE, async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let (mut sender, connection) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .expect("an HTTP/2 handshake");
                let connection = tokio::spawn(connection);
                let request = hyper::Request::get(format!("{base}/sleep?ms=1000"))
                    .body(Full::new(Bytes::new()))
                    .expect("a request");
                let response = sender.send_request(request);
                stream_started_tx.send(()).expect("the test waits");
                let response = response.await.expect("the stream is answered");
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.expect("a body");
                drop(sender);
                // GOAWAY ends the connection once its stream is done.
                connection
                    .await
                    .expect("the connection task")
                    .expect("a clean end");
                (status, body.to_bytes())
            })
            .await
            .expect("within the deadline")
        })
    });
    stream_started_rx
        .recv_timeout(DEADLINE)
        .expect("the stream was sent");
    eventually("the sleep to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(1)).then_some(())
    });
    server.signal("TERM");
    let (status, body) = client.join().expect("the client thread");
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(server.wait_exit().code(), Some(0));
}
