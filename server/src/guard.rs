//! The connection guard: the IO between a connection's socket and hyper.
//! It enforces the limits that live below HTTP requests and that hyper
//! cannot answer the way the service must: the size of a request head and
//! the time to receive it (a JSON 431 or 408, where hyper would answer an
//! empty 431 or close silently), how long a connection may stay idle, and,
//! once a response closes the connection early, that nothing more is read.
//! See "The connection guard" in `server/README.md`.
//!
//! The guard reads the socket into its own buffer, frames each HTTP/1
//! message as hyper will (a head, then a `Content-Length` or chunked body),
//! and hands hyper only what may go through. HTTP/2 (recognised by its
//! preface) passes through untouched, under the idle timeout only.
//!
//! Invariants:
//!
//! 1. hyper receives a request head only whole: the guard holds each head
//!    until its empty line, and never more than `max_header_bytes` of it.
//!    So hyper never holds a partial or oversized head, and its own head
//!    timeout and size limit never come into play.
//! 2. The guard frames every message hyper accepts exactly as hyper does
//!    (the same rules for `Content-Length`, `Transfer-Encoding` and chunk
//!    syntax), so it always knows where the next head begins. A head it
//!    cannot frame is refused (rule 3) before hyper sees it; a chunked body
//!    that breaks the syntax makes hyper fail the body and close, and the
//!    guard passes bytes through until then.
//! 3. A broken limit is answered in order: the guard drops the offending
//!    bytes and hands hyper, after every request already handed over, a
//!    synthetic request for [`rejection_path`] with `Connection: close`.
//!    The service answers it from [`ConnShared::take_rejection`] with the
//!    JSON error, hyper writes that response after the earlier ones and
//!    closes. Nothing more is read from the socket.
//! 4. The header and idle timers run only while no request is in flight
//!    (every request started has finished its response), so a slow
//!    request is never cut short by them, and they start over from the
//!    moment the last response finished.
//! 5. Once the service closes a connection with input unread
//!    ([`ConnShared::close_after_response`]), the guard reads nothing more;
//!    at shutdown it half-closes and lingers briefly without reading, so
//!    the client can read the answer before the kernel resets the
//!    connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How much the guard asks the socket for at a time.
const READ_CHUNK: usize = 8 * 1024;
/// The most header fields a request head may have (hyper's default too).
pub(crate) const MAX_HEADERS: usize = 100;
/// How long a connection closed with input unread stays open, without
/// reading, after its last response (invariant 5).
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// The limits the guard enforces.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// The largest request head, in bytes.
    pub(crate) max_header_bytes: usize,
    /// The time to receive a request head: the first from the accept,
    /// each later one from its first byte.
    pub(crate) header_timeout: Duration,
    /// How long a connection may stay idle between requests.
    pub(crate) keep_alive_timeout: Duration,
}

/// Why the guard refused a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The head grew past `max_header_bytes` (431).
    HeadTooLarge(usize),
    /// More than [`MAX_HEADERS`] header fields (431).
    TooManyHeaders,
    /// The head was not complete within the header timeout (408).
    HeadTimeout(Duration),
    /// Not an HTTP/1 request head, or a body it cannot frame (400).
    Malformed(String),
}

impl Rejection {
    /// The status code it is answered with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Rejection::HeadTooLarge(_) | Rejection::TooManyHeaders => 431,
            Rejection::HeadTimeout(_) => 408,
            Rejection::Malformed(_) => 400,
        }
    }

    /// The limit's name in `/metrics`.
    pub(crate) fn limit(&self) -> &'static str {
        match self {
            Rejection::HeadTooLarge(_) | Rejection::TooManyHeaders => "header_bytes",
            Rejection::HeadTimeout(_) => "header_timeout",
            Rejection::Malformed(_) => "malformed_head",
        }
    }

    /// The message of the JSON error.
    pub(crate) fn message(&self) -> String {
        match self {
            Rejection::HeadTooLarge(max) => {
                format!("the request head is larger than {max} bytes")
            }
            Rejection::TooManyHeaders => {
                format!("the request has more than {MAX_HEADERS} header fields")
            }
            Rejection::HeadTimeout(timeout) => format!(
                "the request head was not received within {} ms",
                timeout.as_millis()
            ),
            Rejection::Malformed(why) => format!("malformed request: {why}"),
        }
    }
}

/// The path of the synthetic request the guard hands hyper for a refused
/// head (invariant 3). Random per process, so no client can ask for it.
pub(crate) fn rejection_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS's randomness.
        let random = |salt: u64| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(salt);
            hasher.finish()
        };
        format!("/.harbor-guard/{:016x}{:016x}", random(1), random(2))
    })
}

/// What the guard and the service share about one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnShared {
    /// Requests started: heads handed to hyper (HTTP/1) or streams the
    /// service received (HTTP/2).
    started: AtomicU64,
    /// Responses finished (their bodies done or dropped).
    finished: AtomicU64,
    /// Set once a response closes the connection with input unread.
    closing: AtomicBool,
    /// Why the guard refused a head; taken by the service.
    rejection: Mutex<Option<Rejection>>,
    /// The connection task, woken when a response finishes or the
    /// connection starts closing, so the guard re-arms its timers.
    waker: AtomicWaker,
}

impl ConnShared {
    /// Counts a request the guard did not see start (an HTTP/2 stream).
    pub(crate) fn request_started(&self) {
        // SeqCst, as every access to the counters: `in_flight` compares two
        // of them, and their total order keeps it from seeing a finish
        // before its start.
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    /// A guard that counts the response finished when dropped.
    pub(crate) fn response_guard(self: &Arc<Self>) -> ResponseGuard {
        ResponseGuard(Arc::clone(self))
    }

    /// The guard reads nothing more from the socket: the response being
    /// sent closes the connection, and the rest of the input (a body too
    /// large or too slow) is left unread (invariant 5).
    pub(crate) fn close_after_response(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Whether a response will close the connection with input unread.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// The rejection the guard recorded, if any (invariant 3).
    pub(crate) fn take_rejection(&self) -> Option<Rejection> {
        self.rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn in_flight(&self) -> bool {
        self.started.load(Ordering::SeqCst) != self.finished.load(Ordering::SeqCst)
    }
}

/// Counts one response finished when dropped (held by its body).
#[derive(Debug)]
pub(crate) struct ResponseGuard(Arc<ConnShared>);

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        // The guard re-arms its timers (invariant 4).
        self.0.waker.wake();
    }
}

/// Where the guard is in the connection's input.
#[derive(Debug)]
enum State {
    /// Expecting a request head (at the start of a connection, possibly
    /// the HTTP/2 preface instead).
    Head,
    /// Passing this many more bytes of a `Content-Length` body.
    Body(u64),
    /// Passing a chunked body.
    Chunked(Chunked),
    /// HTTP/2, or an HTTP/1 body hyper will fail: every byte goes through.
    Passthrough,
    /// A synthetic request was handed over; nothing more is read.
    Rejected,
    /// End of input reported to hyper.
    Closed,
}

/// What the guard is waiting for, with a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// No request in flight and none begun: closed silently at the
    /// deadline.
    Idle,
    /// A head begun: 408 at the deadline.
    Head,
}

/// The connection guard (see the module docs).
#[derive(Debug)]
pub(crate) struct Guard {
    io: TcpStream,
    limits: Arc<Limits>,
    shared: Arc<ConnShared>,
    state: State,
    /// Bytes read from the socket and not yet handed to hyper.
    buf: Vec<u8>,
    /// `buf[..ready]` may be handed to hyper now; the rest is framed first.
    ready: usize,
    /// The head being scanned at `buf[ready..]`.
    scan: HeadScan,
    /// Whether no request has begun on this connection yet.
    first: bool,
    /// What the guard waits for and since when.
    waiting: Option<(Wait, Instant)>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// Set once the socket's write side is shut down.
    lingering: bool,
}

impl Guard {
    /// Guards `io`, accepted at `accepted`.
    pub(crate) fn new(
        io: TcpStream,
        limits: Arc<Limits>,
        shared: Arc<ConnShared>,
        accepted: Instant,
    ) -> Self {
        Guard {
            io,
            limits,
            shared,
            state: State::Head,
            buf: Vec::new(),
            ready: 0,
            scan: HeadScan::default(),
            first: true,
            waiting: Some((Wait::Idle, accepted)),
            timer: Box::pin(tokio::time::sleep_until(accepted)),
            armed: None,
            lingering: false,
        }
    }

    /// Reads more of the socket into `buf`.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            self.buf.reserve(READ_CHUNK);
            match self.io.try_read_buf(&mut self.buf) {
                Ok(read) => return Poll::Ready(Ok(read)),
                // Readiness was stale: poll it again, which registers the waker.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    /// Frames the bytes after `ready` as far as they go (invariant 2),
    /// moving `ready` past what hyper may have.
    fn advance(&mut self) -> Result<(), Rejection> {
        while self.ready < self.buf.len() {
            let pending = &self.buf[self.ready..];
            match &mut self.state {
                State::Head => {
                    if self.first && is_h2_prefix(pending) {
                        if pending.len() < H2_PREFACE.len() {
                            return Ok(()); // the rest of the preface
                        }
                        self.first = false;
                        self.state = State::Passthrough;
                        continue;
                    }
                    let Some(len) = self.scan.feed(pending) else {
                        if pending.len() > self.limits.max_header_bytes {
                            return Err(Rejection::HeadTooLarge(self.limits.max_header_bytes));
                        }
                        return Ok(());
                    };
                    if len > self.limits.max_header_bytes {
                        return Err(Rejection::HeadTooLarge(self.limits.max_header_bytes));
                    }
                    let framing = frame(&pending[..len])?;
                    self.ready += len;
                    self.scan = HeadScan::default();
                    self.first = false;
                    self.waiting = None;
                    self.shared.started.fetch_add(1, Ordering::SeqCst);
                    self.state = match framing {
                        Framing::Length(0) => State::Head,
                        Framing::Length(len) => State::Body(len),
                        Framing::Chunked => State::Chunked(Chunked::Start),
                    };
                }
                State::Body(left) => {
                    let take = pending
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    self.ready += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(chunked) => {
                    let (used, end) = chunked.feed(pending);
                    self.ready += used;
                    match end {
                        Some(ChunkEnd::Done) => self.state = State::Head,
                        // hyper fails the body and closes (invariant 2).
                        Some(ChunkEnd::Broken) => self.state = State::Passthrough,
                        None => {}
                    }
                }
                State::Passthrough => self.ready = self.buf.len(),
                State::Rejected | State::Closed => return Ok(()),
            }
        }
        Ok(())
    }

    /// Replaces everything not yet framed with the synthetic request for
    /// `rejection` (invariant 3).
    fn reject(&mut self, rejection: Rejection) {
        log::debug!(
            "refusing a request head: {} ({})",
            rejection.message(),
            rejection.status()
        );
        *self
            .shared
            .rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(rejection);
        self.buf.truncate(self.ready);
        self.buf.extend_from_slice(b"GET ");
        self.buf.extend_from_slice(rejection_path().as_bytes());
        self.buf
            .extend_from_slice(b" HTTP/1.1\r\nconnection: close\r\n\r\n");
        self.ready = self.buf.len();
        self.shared.started.fetch_add(1, Ordering::SeqCst);
        self.waiting = None;
        self.state = State::Rejected;
    }

    /// What the guard waits for now, if anything has a deadline
    /// (invariant 4).
    fn deadline(&mut self) -> Option<(Wait, Instant)> {
        let wait = match self.state {
            _ if self.shared.in_flight() => None,
            State::Head if self.buf.len() > self.ready => Some(Wait::Head),
            State::Head | State::Passthrough => Some(Wait::Idle),
            _ => None,
        };
        let Some(wait) = wait else {
            self.waiting = None;
            return None;
        };
        let since = match self.waiting {
            Some((waiting, since)) if waiting == wait => since,
            // A new connection's first head is timed from the accept.
            Some((Wait::Idle, since)) if self.first => since,
            _ => Instant::now(),
        };
        self.waiting = Some((wait, since));
        let timeout = match wait {
            Wait::Head => self.limits.header_timeout,
            Wait::Idle if self.first => self.limits.header_timeout,
            Wait::Idle => self.limits.keep_alive_timeout,
        };
        Some((wait, since + timeout))
    }

    /// Polls the deadline, if there is one; returns what expired.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<Wait> {
        let (wait, deadline) = self.deadline()?;
        if self.armed != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Some(wait),
            Poll::Pending => None,
        }
    }
}

impl AsyncRead for Guard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Each turn hands over what is ready, or reads more and frames it,
        // or waits; it ends when something is handed over or nothing can be.
        loop {
            if this.ready > 0 {
                let len = this.ready.min(out.remaining());
                out.put_slice(&this.buf[..len]);
                this.buf.drain(..len);
                this.ready -= len;
                if this.buf.is_empty() && this.buf.capacity() > 2 * READ_CHUNK {
                    this.buf = Vec::new(); // after a large head, give it back
                }
                return Poll::Ready(Ok(()));
            }
            match this.state {
                State::Closed => return Poll::Ready(Ok(())),
                // Invariants 3 and 5: the response under way closes the
                // connection; hyper is woken by its writes.
                State::Rejected => return Poll::Pending,
                _ if this.shared.is_closing() => return Poll::Pending,
                _ => {}
            }
            let filled = if matches!(this.state, State::Passthrough) && this.buf.is_empty() {
                // HTTP/2 and the like: straight into hyper's buffer.
                let before = out.filled().len();
                match Pin::new(&mut this.io).poll_read(cx, out) {
                    Poll::Ready(Ok(())) => {
                        let read = out.filled().len() - before;
                        if read == 0 {
                            this.state = State::Closed;
                        }
                        this.waiting = None; // activity
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => Poll::Pending,
                }
            } else {
                this.poll_fill(cx)
            };
            match filled {
                Poll::Ready(Ok(0)) => {
                    // End of input: a partial head is dropped, and hyper
                    // sees the end of the connection.
                    this.buf.truncate(this.ready);
                    this.state = State::Closed;
                }
                Poll::Ready(Ok(_)) => {
                    if let Err(rejection) = this.advance() {
                        this.reject(rejection);
                    }
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    this.shared.waker.register(cx.waker());
                    match this.poll_deadline(cx) {
                        None => return Poll::Pending,
                        Some(Wait::Idle) => {
                            log::debug!("closing an idle connection");
                            this.state = State::Closed;
                        }
                        Some(Wait::Head) => {
                            this.reject(Rejection::HeadTimeout(this.limits.header_timeout));
                        }
                    }
                }
            }
        }
    }
}

impl AsyncWrite for Guard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let unread = matches!(this.state, State::Rejected) || this.shared.is_closing();
        if !unread {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        }
        // Invariant 5: half-close, then linger without reading.
        if !this.lingering {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.lingering = true;
            this.timer.as_mut().reset(Instant::now() + LINGER);
        }
        ready!(this.timer.as_mut().poll(cx));
        Poll::Ready(Ok(()))
    }
}

/// Whether `bytes` could be the start of the HTTP/2 preface.
fn is_h2_prefix(bytes: &[u8]) -> bool {
    let len = bytes.len().min(H2_PREFACE.len());
    bytes[..len] == H2_PREFACE[..len]
}

/// Finds the end of a request head: the empty line after at least one
/// non-empty line (leading empty lines are allowed, RFC 9112 section 2.2;
/// a line ends at LF, a CR before it is ignored, as httparse does).
/// Incremental: remembers how far it got.
#[derive(Debug, Default)]
struct HeadScan {
    scanned: usize,
    line_len: usize,
    seen_line: bool,
}

impl HeadScan {
    /// Scans `head` (which starts at the head and only ever grows between
    /// calls); returns the head's length once its empty line is in.
    fn feed(&mut self, head: &[u8]) -> Option<usize> {
        while self.scanned < head.len() {
            let byte = head[self.scanned];
            self.scanned += 1;
            match byte {
                b'\n' if self.line_len == 0 && self.seen_line => return Some(self.scanned),
                b'\n' => {
                    self.seen_line |= self.line_len > 0;
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => self.line_len += 1,
            }
        }
        None
    }
}

/// How a request's body is framed.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// Parses a complete head and frames its body as hyper does (invariant
/// 2), refusing what hyper would refuse and a `Content-Length` beside a
/// `Transfer-Encoding` (a request-smuggling vector RFC 9112 lets a server
/// refuse).
fn frame(head: &[u8]) -> Result<Framing, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Rejection::Malformed("incomplete request head".to_owned()));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::TooManyHeaders),
        Err(err) => return Err(Rejection::Malformed(format!("{err} in the request head"))),
    }
    // hyper parses the target into an `http::Uri` and answers an empty 400
    // when it cannot.
    let target = request.path.unwrap_or("");
    if axum::http::Uri::try_from(target).is_err() {
        return Err(Rejection::Malformed("an invalid request target".to_owned()));
    }
    let http11 = request.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(Rejection::Malformed(
                    "an HTTP/1.0 request cannot have a transfer-encoding".to_owned(),
                ));
            }
            // The last coding of the last header decides, as in hyper.
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = digits(header.value)
                .ok_or_else(|| Rejection::Malformed("invalid content-length".to_owned()))?;
            if length.is_some_and(|previous| previous != value) {
                return Err(Rejection::Malformed(
                    "content-length headers that disagree".to_owned(),
                ));
            }
            length = Some(value);
        }
    }
    match (chunked, length) {
        (Some(_), Some(_)) => Err(Rejection::Malformed(
            "both content-length and transfer-encoding".to_owned(),
        )),
        (Some(true), None) => Ok(Framing::Chunked),
        (Some(false), None) => Err(Rejection::Malformed(
            "a transfer-encoding whose last coding is not chunked".to_owned(),
        )),
        // hyper's limit for a length it can represent.
        (None, Some(length)) if length > u64::MAX - 2 => {
            Err(Rejection::Malformed("content-length too large".to_owned()))
        }
        (None, length) => Ok(Framing::Length(length.unwrap_or(0))),
    }
}

/// A decimal number of ASCII digits only, as hyper parses `Content-Length`.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0_u64, |number, &byte| match byte {
        b'0'..=b'9' => number.checked_mul(10)?.checked_add(u64::from(byte - b'0')),
        _ => None,
    })
}

/// Where a chunked body's framing is (RFC 9112 section 7.1), with hyper's
/// strictness: CRLF everywhere, at least one hex digit per size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    Start,
    Size(u64),
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// How a chunked body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkEnd {
    Done,
    Broken,
}

impl Chunked {
    /// Consumes the body's bytes at the start of `bytes`; returns how many
    /// belong to it and, if it ended, how.
    fn feed(&mut self, bytes: &[u8]) -> (usize, Option<ChunkEnd>) {
        let mut used = 0;
        while used < bytes.len() {
            if let Chunked::Data(left) = *self {
                let take = (bytes.len() - used).min(usize::try_from(left).unwrap_or(usize::MAX));
                used += take;
                let left = left - take as u64;
                *self = if left == 0 {
                    Chunked::DataCr
                } else {
                    Chunked::Data(left)
                };
                continue;
            }
            let byte = bytes[used];
            used += 1;
            let hex = (byte as char).to_digit(16).map(u64::from);
            let next = match (*self, byte) {
                (Chunked::Start, _) => hex.map(Chunked::Size),
                (Chunked::Size(size), _) if hex.is_some() => size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(hex.unwrap_or(0)))
                    .map(Chunked::Size),
                (Chunked::Size(size) | Chunked::SizeSpace(size), b' ' | b'\t') => {
                    Some(Chunked::SizeSpace(size))
                }
                (
                    Chunked::Size(size) | Chunked::SizeSpace(size) | Chunked::Extension(size),
                    b';',
                ) => Some(Chunked::Extension(size)),
                (
                    Chunked::Size(size) | Chunked::SizeSpace(size) | Chunked::Extension(size),
                    b'\r',
                ) => Some(Chunked::SizeLf(size)),
                (Chunked::Extension(_), b'\n') => None,
                (Chunked::Extension(size), _) => Some(Chunked::Extension(size)),
                (Chunked::SizeLf(0), b'\n') => Some(Chunked::EndCr),
                (Chunked::SizeLf(size), b'\n') => Some(Chunked::Data(size)),
                (Chunked::DataCr, b'\r') => Some(Chunked::DataLf),
                (Chunked::DataLf, b'\n') => Some(Chunked::Start),
                (Chunked::EndCr, b'\r') => Some(Chunked::EndLf),
                (Chunked::EndCr | Chunked::Trailer, _) if byte != b'\r' => Some(Chunked::Trailer),
                (Chunked::Trailer, b'\r') => Some(Chunked::TrailerLf),
                (Chunked::TrailerLf, b'\n') => Some(Chunked::EndCr),
                (Chunked::EndLf, b'\n') => return (used, Some(ChunkEnd::Done)),
                _ => None,
            };
            match next {
                Some(next) => *self = next,
                None => return (used, Some(ChunkEnd::Broken)),
            }
        }
        (used, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_the_end_of_a_head_across_reads() {
        let head = b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nbody";
        for split in 0..head.len() {
            let mut scan = HeadScan::default();
            let first = scan.feed(&head[..split]);
            let end = first.or_else(|| scan.feed(head));
            assert_eq!(end, Some(head.len() - 4), "split at {split}");
        }
        assert_eq!(HeadScan::default().feed(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(HeadScan::default().feed(b"\r\n\r\n\r\n"), None);
        assert_eq!(
            HeadScan::default().feed(b"GET / HTTP/1.1\r\nA: b\r\n"),
            None
        );
    }

    #[test]
    fn framing_follows_hyper_and_refuses_ambiguity() {
        let framing = |head: &str| frame(head.as_bytes());
        assert_eq!(framing("GET / HTTP/1.1\r\n\r\n"), Ok(Framing::Length(0)));
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET http://[::1 HTTP/1.1\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(
                matches!(framing(bad), Err(Rejection::Malformed(_))),
                "{bad:?}"
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        assert_eq!(
            framing(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(Rejection::TooManyHeaders)
        );
    }

    #[test]
    fn chunked_bodies_end_where_hyper_ends_them() {
        let body = b"5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - b"NEXT".len();
        for split in 0..body.len() {
            let mut chunked = Chunked::Start;
            let (first, ended) = chunked.feed(&body[..split]);
            if split < end {
                assert_eq!(ended, None, "split at {split}");
                let (second, ended) = chunked.feed(&body[split..]);
                assert_eq!(ended, Some(ChunkEnd::Done));
                assert_eq!(first + second, end, "split at {split}");
            } else {
                assert_eq!(
                    (first, ended),
                    (end, Some(ChunkEnd::Done)),
                    "split at {split}"
                );
            }
        }
        for broken in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhello\n",
            b"0\r\n\r\r",
        ] {
            assert_eq!(
                Chunked::Start.feed(broken).1,
                Some(ChunkEnd::Broken),
                "{broken:?}"
            );
        }
        let huge = b"ffffffffffffffffff\r\n";
        assert_eq!(Chunked::Start.feed(huge).1, Some(ChunkEnd::Broken));
    }

    #[test]
    fn the_preface_is_recognised_byte_by_byte() {
        assert!(is_h2_prefix(b""));
        assert!(is_h2_prefix(b"PRI * HT"));
        assert!(is_h2_prefix(H2_PREFACE));
        assert!(is_h2_prefix(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"
        ));
        assert!(!is_h2_prefix(b"POST / HTTP/1.1"));
        assert!(!is_h2_prefix(b"PRI / HTTP/1.1"));
    }

    #[test]
    fn rejections_name_their_status_and_limit() {
        assert_eq!(Rejection::HeadTooLarge(16384).status(), 431);
        assert!(
            Rejection::HeadTooLarge(16384)
                .message()
                .contains("larger than 16384 bytes")
        );
        assert_eq!(Rejection::TooManyHeaders.status(), 431);
        let timeout = Rejection::HeadTimeout(Duration::from_millis(250));
        assert_eq!((timeout.status(), timeout.limit()), (408, "header_timeout"));
        assert!(timeout.message().contains("250 ms"));
        assert_eq!(Rejection::Malformed("x".into()).status(), 400);
        assert!(rejection_path().starts_with("/.harbor-guard/"));
        assert_eq!(rejection_path(), rejection_path());
    }
}
