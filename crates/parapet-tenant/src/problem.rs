//! RFC 9457 problem details: the one error body every parapet layer answers with.
//!
//! It lives in this crate because every other parapet layer already depends on it.

use axum_core::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};

/// The media type of a problem details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details body (`application/problem+json`).
///
/// `type` is a stable URN that clients can branch on (`urn:parapet:problem:tenant-unknown`);
/// `title` is the short human summary of that type; `detail` says what happened to this request.
/// None of them ever carries internals: no SQL, connection strings or stack traces.
///
/// ```
/// use axum_core::response::IntoResponse;
/// use http::StatusCode;
/// use parapet_tenant::problem::Problem;
///
/// let res = Problem::new(StatusCode::NOT_FOUND, "tenant-unknown", "Unknown tenant")
///     .detail("No tenant has this id.")
///     .into_response();
/// assert_eq!(res.status(), StatusCode::NOT_FOUND);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: Option<String>,
    retry_after: Option<u32>,
    www_authenticate: Option<&'static str>,
}

impl Problem {
    /// A problem of type `urn:parapet:problem:{kind}` with this status and title.
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Self {
            status,
            kind,
            title,
            detail: None,
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// Sets the human-readable explanation specific to this occurrence.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a `WWW-Authenticate` header (for 401 answers).
    pub fn www_authenticate(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem type URI, `urn:parapet:problem:{kind}`.
    pub fn type_uri(&self) -> String {
        format!("urn:parapet:problem:{}", self.kind)
    }

    /// The JSON body.
    pub fn body_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status.as_u16(),
        });
        if let (Some(detail), Some(map)) = (&self.detail, body.as_object_mut()) {
            map.insert("detail".into(), detail.clone().into());
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body_json().to_string();
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        res
    }
}
