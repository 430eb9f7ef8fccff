//! HTTP/1.1 keep-alive and HTTP/2 with prior knowledge on the same port,
//! from real clients.

mod common;

use std::future::Future;

use bytes::Bytes;
use common::{DEADLINE, Server, read_reply, send};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// Runs `future` on a small runtime, failing the test after [`DEADLINE`].
fn run<T>(future: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime
        .block_on(async { tokio::time::timeout(DEADLINE, future).await })
        .expect("the exchange finished within the deadline")
}

/// Sends `request` over `sender`; returns the status, headers and body.
async fn exchange(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> (u16, hyper::HeaderMap, String) {
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("the body");
    let body = String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8");
    (status, headers, body)
}

#[test]
fn http2_with_prior_knowledge_is_served() {
    let server = Server::start(&["--max-body-bytes", "1000", "--max-header-bytes", "1024"]);
    let base = server.base.clone();
    run(async move {
        let stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("an HTTP/2 handshake");
        let connection = tokio::spawn(connection);
        let get = |path: &str| {
            Request::get(format!("{base}{path}"))
                .body(Full::new(Bytes::new()))
                .expect("a request")
        };

        let (status, headers, body) = exchange(&mut sender, get("/stats")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/json");
        let stats: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(stats["jobs"]["submitted"], 0);

        // Several streams at once on the one connection.
        let mut streams = Vec::new();
        for _ in 0..8 {
            let mut sender = sender.clone();
            let request = get("/sleep?ms=200");
            streams.push(tokio::spawn(async move {
                exchange(&mut sender, request).await.0
            }));
        }
        for stream in streams {
            assert_eq!(stream.await.expect("a stream"), 200);
        }

        let submit = Request::post(format!("{base}/jobs"))
            .body(Full::new(Bytes::from_static(br#"{"kind":"sleep","ms":0}"#)))
            .expect("a request");
        let (status, _, body) = exchange(&mut sender, submit).await;
        assert_eq!(status, 202, "{body}");

        let too_large = Request::post(format!("{base}/jobs"))
            .body(Full::new(Bytes::from(vec![b'x'; 5000])))
            .expect("a request");
        let (status, headers, body) = exchange(&mut sender, too_large).await;
        assert_eq!(status, 413, "{body}");
        assert!(
            headers.get("connection").is_none(),
            "no such header in HTTP/2"
        );
        assert!(body.contains("larger than 1000 bytes"), "{body}");

        let mut big_head = get("/stats");
        big_head
            .headers_mut()
            .insert("x-filler", "a".repeat(1500).parse().expect("a value"));
        let (status, _, body) = exchange(&mut sender, big_head).await;
        assert_eq!(status, 431, "{body}");
        assert!(body.contains("larger than 1024 bytes"), "{body}");

        // The connection survived the 413 and the 431.
        let (status, _, _) = exchange(&mut sender, get("/nope")).await;
        assert_eq!(status, 404);
        drop(sender);
        connection
            .await
            .expect("the connection task")
            .expect("the connection ends cleanly");
    });
}

#[test]
fn http1_keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    for _ in 0..50 {
        send(&mut stream, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        let reply = read_reply(&mut stream);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("connection"), None, "kept alive");
    }
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut stream = server.connect();
    send(&mut stream, b"GET /stats HTTP/1.0\r\n\r\n");
    assert_eq!(read_reply(&mut stream).status, 200);
    assert!(common::closed(&mut stream));
}

#[test]
fn a_client_that_half_closes_after_its_request_is_answered() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    send(
        &mut stream,
        b"GET /sleep?ms=100 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shut the write side down");
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 200, "{reply:?}");
}
