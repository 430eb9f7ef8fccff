//! Building responses: every error is JSON `{"error": "..."}` with its
//! status code, as in the server's first version; and the small formats
//! the routes share (RFC 3339 times, millisecond query parameters).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::demo::millis;

/// `Content-Type` of every JSON answer.
pub(crate) const JSON: &str = "application/json";

/// A JSON response.
pub(crate) fn json(status: u16, body: &Value) -> Response {
    // `to_vec` writes straight into the buffer; `to_string` goes through
    // `fmt::Display` and its formatter. The same text.
    let text = serde_json::to_vec(body).unwrap_or_default();
    json_text(status, text)
}

/// A JSON response whose text is already written (a hot route builds its
/// few fields without a `Value`; see `routes::stats_text`).
pub(crate) fn json_text(status: u16, text: impl Into<Body>) -> Response {
    let mut response = Response::new(text.into());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// A JSON error: `{"error": message}`.
pub(crate) fn error(status: u16, message: impl Into<String>) -> Response {
    json(status, &json!({ "error": message.into() }))
}

/// 503 with `Retry-After: 1`: a full queue.
pub(crate) fn busy(message: impl Into<String>) -> Response {
    let mut response = error(503, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 405 naming the methods the route allows, in `Allow` too.
pub(crate) fn not_allowed(method: &Method, allow: &'static str) -> Response {
    let mut response = error(
        405,
        format!("method {method} not allowed here; use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 404 for a path no route serves.
pub(crate) fn not_found(path: &str) -> Response {
    error(404, format!("no route for {path}; see GET /"))
}

/// Adds `Connection: close` (HTTP/1 only; HTTP/2 has no such header).
pub(crate) fn close(mut response: Response, version: axum::http::Version) -> Response {
    if version < axum::http::Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `name=<milliseconds>` from a query string: `default` when absent;
/// the message of a 400 when not a number or above `max`.
pub(crate) fn query_duration(
    query: &str,
    name: &str,
    default: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value);
    let Some(value) = value else {
        return Ok(default);
    };
    match value.parse::<u64>().map(Duration::from_millis) {
        Ok(duration) if duration <= max => Ok(duration),
        Ok(_) => Err(format!("{name} may be at most {}", millis(max))),
        Err(_) => Err(format!(
            "{name} must be a number of milliseconds, got {value:?}"
        )),
    }
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g. `2025-01-31T12:00:00.250Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let mut text = String::with_capacity(24);
    let _ = write!(
        text,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
        since_epoch.subsec_millis()
    );
    text
}

/// The Gregorian date of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_with_milliseconds() {
        let time = UNIX_EPOCH + Duration::from_millis(1_738_324_800_250);
        assert_eq!(rfc3339(time), "2025-01-31T12:00:00.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn query_durations_are_bounded() {
        let max = Duration::from_secs(10);
        let parse = |query| query_duration(query, "ms", Duration::from_secs(5), max);
        assert_eq!(parse("").ok(), Some(Duration::from_secs(5)));
        assert_eq!(parse("x=1&ms=250").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse("ms=10000").ok(), Some(max));
        assert_eq!(parse("ms=10001"), Err("ms may be at most 10000".to_owned()));
        assert!(parse("ms=soon").is_err_and(|message| message.contains("\"soon\"")));
    }
}
