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

/// A numeric record id from the path; anything else is a 404 (no record has that id).
#[derive(Debug, Clone, Copy)]
pub struct RecordId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for RecordId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(raw)) => match raw.parse::<i64>() {
                Ok(id) if id > 0 => Ok(Self(id)),
                _ => Err(not_found("record")),
            },
            Err(_) => Err(not_found("record")),
        }
    }
}
