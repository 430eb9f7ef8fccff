//! The limits enforced on requests hyper has parsed: the body's size and
//! the time to receive it (read whole, within both, before routing), and
//! the time a handler may take. The limits on heads and idle connections
//! live in the connection guard ([`crate::guard`]).
//!
//! A body refused for its size or its pace is answered with
//! `Connection: close` (HTTP/1), and the guard reads nothing more of it
//! ([`ConnShared::close_after_response`]): a 10 GB body declared is never
//! read, only refused.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Version, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::guard::ConnShared;
use crate::metrics::Metrics;
use crate::reply;

/// The request limits and where refusals are counted.
#[derive(Debug)]
pub(crate) struct RequestLimits {
    pub(crate) max_body_bytes: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

impl RequestLimits {
    /// A refusal that closes the connection, leaving the rest of the
    /// input unread (HTTP/1; an HTTP/2 stream is reset by hyper instead).
    fn refuse(
        &self,
        conn: Option<&ConnShared>,
        version: Version,
        status: u16,
        limit: &'static str,
        message: String,
    ) -> Response {
        self.metrics.limit(limit);
        if version < Version::HTTP_2
            && let Some(conn) = conn
        {
            conn.close_after_response();
        }
        reply::close(reply::error(status, message), version)
    }
}

/// Reads the request's body whole, at most `max_body_bytes` and within
/// `body_timeout`, then runs `next`; or answers 413 / 408 / 400 and
/// closes. (Part of the service's one middleware, `service::around`.)
pub(crate) async fn read_body(limits: &RequestLimits, request: Request, next: Next) -> Response {
    let version = request.version();
    let conn = request.extensions().get::<Arc<ConnShared>>().cloned();
    let max = limits.max_body_bytes;
    let too_large = || format!("the body is larger than {max} bytes");
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|declared| declared > max as u64) {
        // Answered at once: the body is never read.
        return limits.refuse(conn.as_deref(), version, 413, "body_bytes", too_large());
    }
    let (parts, body) = request.into_parts();
    if http_body::Body::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let read = tokio::time::timeout(limits.body_timeout, Limited::new(body, max).collect()).await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return limits.refuse(conn.as_deref(), version, 413, "body_bytes", too_large());
        }
        Ok(Err(err)) => {
            return limits.refuse(
                conn.as_deref(),
                version,
                400,
                "malformed_body",
                format!("could not read the body: {err}"),
            );
        }
        Err(_elapsed) => {
            let ms = limits.body_timeout.as_millis();
            return limits.refuse(
                conn.as_deref(),
                version,
                408,
                "body_timeout",
                format!("the request body was not received within {ms} ms"),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// A handler that takes longer than `request_timeout` is dropped (a
/// request-pool job it awaited is cancelled) and answered 503. (Part of
/// the service's one middleware, `service::around`.)
pub(crate) async fn request_timeout(
    limits: &RequestLimits,
    handler: impl Future<Output = Response>,
) -> Response {
    match tokio::time::timeout(limits.request_timeout, handler).await {
        Ok(response) => response,
        Err(_elapsed) => {
            limits.metrics.limit("request_timeout");
            let ms = limits.request_timeout.as_millis();
            reply::error(503, format!("the request took longer than {ms} ms"))
        }
    }
}
