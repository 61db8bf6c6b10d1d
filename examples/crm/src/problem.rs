//! Client errors as RFC 9457 problems, and extractors whose rejections are problems too.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};
use parapet::pool::DbError;
use parapet::tenant::problem::Problem;
use serde::de::DeserializeOwned;

/// What a handler can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// A problem to send as is.
    Problem(Problem),
    /// A query failed (logged; the client gets a generic 500 or 503).
    Db(DbError),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(p) => p.into_response(),
            Self::Db(e) => e.into_response(),
        }
    }
}

/// 400 with `detail`.
pub fn bad_request(detail: impl Into<String>) -> ApiError {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-request",
        "Invalid request",
    )
    .detail(detail)
    .into()
}

/// 404 for a record the tenant does not have.
pub fn not_found(what: &str) -> ApiError {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
        .detail(format!("No such {what}."))
        .into()
}

/// `Json<T>` whose rejections are problems (400 for bad JSON, 413 too large, 415 wrong type).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    let (kind, title) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "Request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "Expected Content-Type: application/json",
        ),
        _ => ("invalid-body", "Invalid JSON body"),
    };
    // axum answers 422 for JSON of the wrong shape (an unknown field, a wrong type); the API
    // documents 400 for every invalid body.
    let status = match status {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => status,
        _ => StatusCode::BAD_REQUEST,
    };
    // serde's messages name the field and the expected type, never server internals.
    Problem::new(status, kind, title)
        .detail(rejection.body_text())
        .into()
}

/// `Query<T>` whose rejection is a 400 problem.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(bad_request(rejection.body_text())),
        }
    }
}

/// `raw` as an integer in `range` when it is written the one way this API writes numbers:
/// ASCII digits only (no sign, no spaces), no leading zero. Two spellings of one number would
/// be two URLs, hence two cache entries, for one resource.
pub fn canonical_integer(raw: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    let canonical = !raw.is_empty()
        && raw.bytes().all(|b| b.is_ascii_digit())
        && (raw == "0" || !raw.starts_with('0'));
    if !canonical {
        return None;
    }
    // More digits than an i64 holds fail to parse: out of range too.
    raw.parse::<i64>().ok().filter(|n| range.contains(n))
}

/// A record id from the path: a positive 64-bit integer in canonical form (`/api/leads/7`,
/// never `/api/leads/007`, `/api/leads/+7` or `/api/leads/-7`). Anything else is a 400; a
/// well-formed id the tenant has no record under is the handler's 404.
#[derive(Debug, Clone, Copy)]
pub struct RecordId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for RecordId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(raw)| raw)
            .unwrap_or_default();
        canonical_integer(&raw, 1..=i64::MAX)
            .map(Self)
            .ok_or_else(|| {
                bad_request(format!(
                    "a record id is an integer from 1 to {}, written without sign or leading zeros",
                    i64::MAX
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_integer;

    #[test]
    fn only_the_canonical_spelling_of_an_integer_in_range_is_one() {
        let all = 0..=i64::MAX;
        for (raw, expected) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775808", None),
            ("99999999999999999999", None),
            ("007", None),
            ("00", None),
            ("+7", None),
            ("-7", None),
            ("-0", None),
            (" 7", None),
            ("7 ", None),
            ("", None),
            ("1e3", None),
            ("7.0", None),
            ("٧", None),
            ("0x10", None),
        ] {
            assert_eq!(canonical_integer(raw, all.clone()), expected, "{raw:?}");
        }
        assert_eq!(canonical_integer("0", 1..=i64::MAX), None);
        assert_eq!(canonical_integer("101", 1..=100), None);
        assert_eq!(canonical_integer("100", 1..=100), Some(100));
    }
}
