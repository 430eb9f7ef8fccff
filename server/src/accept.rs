//! The accept loop and the connections it starts.
//!
//! * At most `--max-connections` connections are served at once, each
//!   holding a semaphore permit. One beyond that is accepted and closed at
//!   once (counted in `/metrics`), so the listen queue never fills with
//!   connections nobody serves and the process never runs out of file
//!   descriptors.
//! * An accept error never stops the loop: `EMFILE`, `ENFILE` and the
//!   like are logged (at most once a second, with the count since), the
//!   loop backs off briefly and goes on serving the connections it has.
//! * Each connection gets `TCP_NODELAY`, the connection guard
//!   ([`crate::guard`]), and hyper-util's auto builder: HTTP/1.1 with
//!   keep-alive, or HTTP/2 when the client opens with the preface (prior
//!   knowledge).
//! * When the stop signal comes, every connection is shut down
//!   gracefully: an idle HTTP/1 connection is closed, a busy one answers
//!   its request with `Connection: close`, an HTTP/2 one sends GOAWAY and
//!   finishes its streams.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::guard::{self, ConnShared, Guard, Limits};
use crate::metrics::Metrics;
use crate::service::{self, Stack};

/// How long the loop pauses after an accept error that is not about one
/// connection (out of file descriptors, memory, buffers).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// The most HTTP/2 streams a connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 128;

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stack: Stack,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    /// One permit per connection that may be open.
    pub(crate) permits: Arc<Semaphore>,
}

/// hyper's own limit of header fields (its `DEFAULT_MAX_HEADERS`), which
/// [`builder`] leaves as it is: the guard's.
const _: () = assert!(guard::MAX_HEADERS == 100);

/// hyper's settings (see "Settings" in `server/README.md`).
pub(crate) fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        // A client may shut its write side down after sending a request
        // and still read the answer.
        .half_close(true)
        // The guard hands hyper whole heads only, bounded by
        // --max-header-bytes and --header-timeout-ms, and closes idle
        // connections itself: hyper's own head timer would close a
        // keep-alive connection after 30 s.
        .header_read_timeout(None)
        // hyper's default limit of header fields is the guard's, 100 (the
        // guard refuses more first). Not set explicitly: with a value set,
        // hyper initialises that many slots on the heap for every request;
        // with its default, an array on the stack, uninitialised.
        .max_buf_size(limits.max_header_bytes.max(8192) + 64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        // The service answers a list over --max-header-bytes with a JSON
        // 431; h2 refuses one twice that size before decoding it.
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 2).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
}

/// Accepts connections until `stop` turns true.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut errors = ErrorLog::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let Ok(permit) = Arc::clone(&shared.permits).try_acquire_owned() else {
                    // Over the limit: closed at once.
                    shared.metrics.refused();
                    errors.refused();
                    drop(stream);
                    continue;
                };
                let shared = Arc::clone(&shared);
                let stop = stop.clone();
                tokio::spawn(connection(stream, permit, shared, stop));
            }
            Err(err) => {
                errors.accept_failed(&err);
                if !is_connection_error(&err) {
                    // Out of descriptors or memory: give the connections
                    // being served a moment to close some.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across awaits.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Errors about one incoming connection, after which accepting the next
/// may succeed at once.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Serves one connection until it closes, or shuts it down gracefully
/// once `stop` turns true.
async fn connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let accepted = Instant::now();
    let _permit = permit;
    let _open = shared.metrics.connection();
    if let Err(err) = stream.set_nodelay(true) {
        log::debug!("TCP_NODELAY: {err}");
    }
    let conn = Arc::new(ConnShared::default());
    let io = TokioIo::new(Guard::new(
        stream,
        Arc::clone(&shared.limits),
        Arc::clone(&conn),
        accepted,
    ));
    let service = {
        let shared = Arc::clone(&shared);
        hyper::service::service_fn(move |request| {
            service::call(
                shared.stack.clone(),
                Arc::clone(&conn),
                Arc::clone(&shared.metrics),
                shared.limits.max_header_bytes,
                request,
            )
        })
    };
    let serving = shared.builder.serve_connection(io, service);
    tokio::pin!(serving);
    let result = tokio::select! {
        result = serving.as_mut() => result,
        () = stopped(&mut stop) => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    if let Err(err) = result {
        log::debug!("connection ended: {err}");
    }
}

/// Rate-limits the accept loop's log lines: at most one a second of each
/// kind, with the count of those left out.
#[derive(Debug, Default)]
struct ErrorLog {
    errors: Tally,
    refused: Tally,
}

#[derive(Debug, Default)]
struct Tally {
    last: Option<Instant>,
    count: u64,
}

impl Tally {
    /// Counts one; returns the count to report if a report is due.
    fn count(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now < last + Duration::from_secs(1))
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

impl ErrorLog {
    fn accept_failed(&mut self, err: &io::Error) {
        if let Some(count) = self.errors.count() {
            log::warn!(
                "accepting a connection failed: {err} ({count} accept errors since the last report)"
            );
        }
    }

    fn refused(&mut self) {
        if let Some(count) = self.refused.count() {
            log::warn!(
                "at the connection limit: closed {count} new connections since the last report"
            );
        }
    }
}
