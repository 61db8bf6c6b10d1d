//! Byte ranges answered from a stored complete response (RFC 9110 §14, RFC 9111 §3.3).
//!
//! Only one byte range of a `GET` is answered here (`bytes=a-b`, `a-`, `-n`), from a stored
//! `200`. A request with several ranges, or another range unit, goes to the origin as it is
//! (see [`classify`]); a `Range` that does not parse is ignored (a full `200`), as §14.2 asks.
//! `If-Range` (§13.1.5) is compared with the stored validator: a strong entity-tag, or an
//! HTTP-date equal to a `Last-Modified` that is strong (the stored `Date` at least one second
//! later, §8.8.2.2). The range applies to the representation as stored, which is the origin's
//! (its `Content-Encoding` included); the lz4 compression of the Redis tier never shows here.

use std::time::{Duration, SystemTime};

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use parapet_tenant::problem::Problem;

/// One byte range as the client wrote it (RFC 9110 §14.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// `first-last`, both included.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The first and last byte offsets (included) of this range in a representation of
    /// `len` bytes, or `None` when it is unsatisfiable (§14.1.2).
    pub(crate) fn resolve(self, len: u64) -> Option<(u64, u64)> {
        if len == 0 {
            return None;
        }
        match self {
            Self::FromTo(first, last) => (first < len).then(|| (first, last.min(len - 1))),
            Self::From(first) => (first < len).then_some((first, len - 1)),
            Self::Suffix(0) => None,
            Self::Suffix(n) => Some((len.saturating_sub(n), len - 1)),
        }
    }
}

/// What the request's `Range` asks of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// No `Range`, or one that does not parse (ignored, §14.2): the full response.
    Full,
    /// One byte range, answered from a stored response.
    Single(ByteRange),
    /// Several ranges, or a unit other than `bytes`: for the origin to answer.
    PassThrough,
}

/// Reads the `Range` field of a request (every line, as one list).
pub(crate) fn classify(headers: &HeaderMap) -> RangeRequest {
    let mut lines = headers.get_all(header::RANGE).iter().peekable();
    if lines.peek().is_none() {
        return RangeRequest::Full;
    }
    let mut joined = Vec::new();
    for line in lines {
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(line.as_bytes());
    }
    let Ok(value) = std::str::from_utf8(&joined) else {
        return RangeRequest::Full;
    };
    let Some((unit, set)) = value.trim().split_once('=') else {
        return RangeRequest::Full;
    };
    if unit.is_empty() || !unit.bytes().all(is_tchar) {
        return RangeRequest::Full;
    }
    if !unit.eq_ignore_ascii_case("bytes") {
        return RangeRequest::PassThrough;
    }
    let mut ranges = Vec::new();
    // Empty list elements are allowed and ignored (RFC 9110 §5.6.1.2).
    for spec in set.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match parse_spec(spec) {
            Some(range) => ranges.push(range),
            None => return RangeRequest::Full,
        }
    }
    match ranges.as_slice() {
        [] => RangeRequest::Full,
        [range] => RangeRequest::Single(*range),
        _ => RangeRequest::PassThrough,
    }
}

/// `first-pos "-" [ last-pos ]` or `"-" suffix-length`.
fn parse_spec(spec: &str) -> Option<ByteRange> {
    let (first, last) = spec.split_once('-')?;
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(ByteRange::Suffix(digits(last)?)),
        (false, true) => Some(ByteRange::From(digits(first)?)),
        (false, false) => {
            let (first, last) = (digits(first)?, digits(last)?);
            // A last-pos before the first-pos is invalid (§14.1.1).
            (last >= first).then_some(ByteRange::FromTo(first, last))
        }
    }
}

/// `1*DIGIT`, saturating: a position past `u64` is past any representation.
fn digits(input: &str) -> Option<u64> {
    if input.is_empty() || !input.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(input.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `If-Range` lets the range be answered for a response with `headers` (§13.1.5):
/// true without `If-Range`; otherwise only when it names the response's current validator.
pub(crate) fn if_range_holds(request: &HeaderMap, response: &HeaderMap) -> bool {
    let mut lines = request.get_all(header::IF_RANGE).iter();
    let line = match (lines.next(), lines.next()) {
        (None, _) => return true,
        (Some(line), None) => line,
        (Some(_), Some(_)) => return false,
    };
    let Ok(value) = line.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        // A weak entity-tag never matches: If-Range compares strongly.
        let Some(tag) = strong_tag(value) else {
            return false;
        };
        let mut etags = response.get_all(header::ETAG).iter();
        return match (etags.next(), etags.next()) {
            (Some(etag), None) => etag
                .to_str()
                .ok()
                .and_then(|etag| strong_tag(etag.trim()))
                .is_some_and(|stored| stored == tag),
            _ => false,
        };
    }
    let Ok(date) = httpdate::parse_http_date(value) else {
        return false;
    };
    let Some(modified) = single_date(response, &header::LAST_MODIFIED) else {
        return false;
    };
    // Last-Modified is a strong validator for a cache only when the stored Date is at least
    // one second later (§8.8.2.2).
    let strong = single_date(response, &header::DATE)
        .and_then(|date| date.duration_since(modified).ok())
        .is_some_and(|gap| gap >= Duration::from_secs(1));
    strong && modified == date
}

/// The opaque tag of a strong entity-tag (`"…"`), or `None` for a weak or malformed one.
fn strong_tag(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then_some(inner)
}

fn single_date(headers: &HeaderMap, name: &header::HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name).iter();
    match (lines.next(), lines.next()) {
        (Some(line), None) => httpdate::parse_http_date(line.to_str().ok()?.trim()).ok(),
        _ => None,
    }
}

/// How a full stored or fetched response answers a request's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// `206` with these byte offsets (both included).
    Partial(u64, u64),
    /// `416`: nothing of the representation is in the range.
    Unsatisfiable,
}

/// Whether (and how) the response `status`/`headers` with a body of `len` bytes answers the
/// request's range: only a `GET` with one byte range, on a `200`, when `If-Range` holds.
pub(crate) fn applies(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    len: usize,
) -> Option<Ranged> {
    if method != Method::GET || status != StatusCode::OK {
        return None;
    }
    let RangeRequest::Single(range) = classify(request) else {
        return None;
    };
    if !if_range_holds(request, response) {
        return None;
    }
    Some(match range.resolve(len as u64) {
        Some((first, last)) => Ranged::Partial(first, last),
        None => Ranged::Unsatisfiable,
    })
}

/// The `206` or `416` answering a range of the full response `headers` / `body`.
pub(crate) fn respond(ranged: Ranged, headers: &HeaderMap, body: &Bytes) -> Response<Body> {
    let len = body.len();
    match ranged {
        Ranged::Partial(first, last) => {
            // `resolve` keeps both offsets inside the body.
            let (first, last) = (first as usize, last as usize);
            let part = body.slice(first..=last);
            let mut headers = headers.clone();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
            headers.insert(
                header::CONTENT_RANGE,
                content_range(&format!("bytes {first}-{last}/{len}")),
            );
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            let mut response = Response::new(Body::from(part));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            *response.headers_mut() = headers;
            response
        }
        Ranged::Unsatisfiable => {
            let mut response = Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "Range not satisfiable",
            )
            .detail("the requested range starts past the end of the representation")
            .into_response();
            let fields = response.headers_mut();
            fields.insert(
                header::CONTENT_RANGE,
                content_range(&format!("bytes */{len}")),
            );
            fields.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            response
        }
    }
}

fn content_range(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

#[cfg(test)]
#[path = "range_tests.rs"]
mod tests;
