//! The service hyper calls for each request of a connection: it answers
//! the connection guard's synthetic requests, and hands every other
//! request to the routes under the limits and metrics layers.
//!
//! The layers, outermost first: trailing-slash normalisation (tower-http),
//! observation (metrics, the debug log line, `X-Worker`), the request
//! timeout, reading the body within its limits, panic catching
//! (tower-http), then the routes. Observation, the timeout and the body
//! are one middleware ([`around`]): each `from_fn` layer clones the boxed
//! service below it and boxes a future for every request, and three of
//! them cost more instructions than the `GET /stats` handler.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Version};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tower::{Layer, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::guard::{self, ConnShared, Rejection, ResponseGuard};
use crate::limits::{self, RequestLimits};
use crate::metrics::Metrics;
use crate::reply;
use crate::routes::{self, App};

/// The routes under every layer, shared by all connections.
pub(crate) type Stack = NormalizePath<Router>;

/// Builds the stack.
pub(crate) fn stack(app: Arc<App>, limits: Arc<RequestLimits>) -> Stack {
    let metrics = Arc::clone(&app.metrics);
    let router = routes::router(app)
        .layer(CatchPanicLayer::custom(handler_panicked))
        .layer(middleware::from_fn_with_state((metrics, limits), around));
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

/// A panic in a handler (a bug: request-side work runs on the pools)
/// costs its request a 500, not the connection.
fn handler_panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    log::error!("a handler panicked: {message}");
    reply::error(500, format!("the handler panicked: {message}"))
}

/// Middleware: observes the request ([`observe`]) around the request
/// timeout ([`limits::request_timeout`]) around reading the body
/// ([`limits::read_body`]) and the routes.
async fn around(
    State((metrics, limits)): State<(Arc<Metrics>, Arc<RequestLimits>)>,
    request: Request,
    next: Next,
) -> Response {
    observe(&metrics, request, |request| {
        limits::request_timeout(&limits, limits::read_body(&limits, request, next))
    })
    .await
}

thread_local! {
    /// This thread's name as an `X-Worker` value, made once per thread.
    static WORKER: Option<HeaderValue> = std::thread::current()
        .name()
        .and_then(|name| HeaderValue::from_str(name).ok());
}

/// Counts the request by route and status, logs it at debug level, and
/// names the thread that answered in `X-Worker` when a pool thread did not.
async fn observe<F: Future<Output = Response>>(
    metrics: &Metrics,
    request: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response {
    let started = Instant::now();
    let _in_flight = metrics.in_flight();
    let route = routes::route_label(request.uri().path());
    // Kept for the log line only when it will be written.
    let line = log::log_enabled!(log::Level::Debug)
        .then(|| (request.method().clone(), request.uri().clone()));
    let mut response = inner(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.request(route, status, elapsed.as_secs_f64());
    if let Some((method, uri)) = line {
        log::debug!("{method} {uri} -> {status} in {elapsed:?}");
    }
    if !response.headers().contains_key("x-worker")
        && let Some(value) = WORKER.with(Clone::clone)
    {
        response.headers_mut().insert("x-worker", value);
    }
    response
}

/// Answers one request of the connection `conn`.
pub(crate) async fn call(
    stack: Stack,
    conn: Arc<ConnShared>,
    metrics: Arc<Metrics>,
    max_header_bytes: usize,
    mut request: hyper::Request<Incoming>,
) -> Result<Response, Infallible> {
    let http2 = request.version() == Version::HTTP_2;
    if http2 {
        // HTTP/1 requests are counted by the guard as it hands them over.
        conn.request_started();
    }
    let done = conn.response_guard();
    let response = if request.uri().path() == guard::rejection_path()
        && let Some(rejection) = conn.take_rejection()
    {
        refused_head(&metrics, &rejection, Version::HTTP_11)
    } else if http2 && header_list_size(&request) > max_header_bytes {
        // HTTP/2 has no head for the guard to measure; h2 itself refuses a
        // list twice this size (with an empty 431) before it is decoded.
        let rejection = Rejection::HeadTooLarge(max_header_bytes);
        refused_head(&metrics, &rejection, Version::HTTP_2)
    } else {
        request.extensions_mut().insert(Arc::clone(&conn));
        match stack.oneshot(request.map(Body::new)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    };
    Ok(response.map(|body| Body::new(Tracked { body, _done: done })))
}

/// The size of an HTTP/2 request's header list as RFC 9113 counts it
/// (each field's name and value, plus 32), with the pseudo-headers.
fn header_list_size<B>(request: &hyper::Request<B>) -> usize {
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    let uri = request.uri();
    let pseudo = request.method().as_str().len()
        + uri.path_and_query().map_or(1, |path| path.as_str().len())
        + uri.scheme_str().map_or(0, str::len)
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len())
        + 4 * 32
        + ":method:path:scheme:authority".len();
    fields + pseudo
}

/// The answer to a head the guard refused (its invariant 3), or to an
/// HTTP/2 header list over the limit.
fn refused_head(metrics: &Metrics, rejection: &Rejection, version: Version) -> Response {
    let status = rejection.status();
    metrics.limit(rejection.limit());
    metrics.request("refused", status, 0.0);
    reply::close(reply::error(status, rejection.message()), version)
}

/// A response body that counts its response finished when dropped, so
/// the guard knows no request is in flight (its invariant 4).
struct Tracked {
    body: Body,
    _done: ResponseGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
