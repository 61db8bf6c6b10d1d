//! Answering a request from a stored entry.

use std::time::Duration;

use axum_core::body::Body;
use http::{HeaderMap, Method, Response, StatusCode, header};

use crate::entry::Entry;
use crate::policy::{age_header, evaluate_conditional, headers_for_304};
use crate::range::{self, applies};
use crate::status::CacheStatus;

/// Answers a request from a stored entry of current age `age`: a 304 when the request's
/// conditional headers match it, a `206` or `416` for one byte range of a `GET` (see
/// [`range`]), the stored response otherwise (without a body for `HEAD`).
pub(crate) fn serve(
    entry: &Entry,
    method: &Method,
    request_headers: &HeaderMap,
    age: Duration,
    status: &CacheStatus,
) -> Response<Body> {
    let mut response = if evaluate_conditional(request_headers, entry.status, &entry.headers)
        == Some(StatusCode::NOT_MODIFIED)
    {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.headers_mut() = headers_for_304(&entry.headers);
        response
    } else if let Some(ranged) = applies(
        method,
        request_headers,
        entry.status,
        &entry.headers,
        entry.body.len(),
    ) {
        range::respond(ranged, &entry.headers, &entry.body)
    } else {
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(entry.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = entry.status;
        *response.headers_mut() = entry.headers.clone();
        response
    };
    response.headers_mut().insert(header::AGE, age_header(age));
    status.append_to(response.headers_mut());
    response
}
