//! The 429's body and `Retry-After`, rendered once per number of seconds (up to an hour): a
//! refusal is the answer a flooding tenant gets thousands of times a second, so it clones
//! shared bytes instead of building JSON and formatting numbers each time.

use std::sync::{LazyLock, OnceLock};

use axum_core::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use parapet_tenant::problem::{PROBLEM_JSON, Problem};

/// Waits of 1 to this many seconds (an hour: every plan's interval up to one request an hour)
/// keep their answer once rendered; longer ones are rendered per refusal.
const KEPT: usize = 3600;

/// The problem+json body and `Retry-After` of a wait of `1 + index` seconds, once rendered.
static KEPT_WAITS: [OnceLock<(Bytes, HeaderValue)>; KEPT] = [const { OnceLock::new() }; KEPT];

/// The body of any wait, around its number: rendered once by [`Problem`] itself, so the
/// answer stays byte for byte the problem's.
static AROUND_WAIT: LazyLock<(String, String)> = LazyLock::new(|| {
    let marker = u32::MAX.to_string();
    let body = problem(u32::MAX).body_json().to_string();
    match body.split_once(&marker) {
        Some((before, after)) => (before.to_owned(), after.to_owned()),
        None => (body, String::new()),
    }
});

fn problem(wait: u32) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "quota-exceeded",
        "Request quota exceeded",
    )
    .detail(format!(
        "This tenant's request quota is used up; retry in {wait} s."
    ))
}

fn render(wait: u32) -> (Bytes, HeaderValue) {
    let (before, after) = &*AROUND_WAIT;
    let mut number = itoa::Buffer::new();
    let number = number.format(wait);
    let mut body = BytesMut::with_capacity(before.len() + number.len() + after.len());
    body.put_slice(before.as_bytes());
    body.put_slice(number.as_bytes());
    body.put_slice(after.as_bytes());
    (body.freeze(), HeaderValue::from(wait))
}

/// The 429 of a wait of `wait` seconds (at least 1): `application/problem+json`
/// (`urn:parapet:problem:quota-exceeded`) and `Retry-After`; the caller adds the
/// `RateLimit` fields.
pub(crate) fn too_many_requests(wait: u32) -> Response<Body> {
    let wait = wait.max(1);
    let kept = usize::try_from(wait - 1)
        .ok()
        .and_then(|i| KEPT_WAITS.get(i));
    let (body, retry_after) = match kept {
        Some(cell) => {
            let (body, retry_after) = cell.get_or_init(|| render(wait));
            (body.clone(), retry_after.clone())
        }
        None => render(wait),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.reserve(4);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(header::RETRY_AFTER, retry_after);
    response
}

#[cfg(test)]
mod tests {
    use axum_core::response::IntoResponse;
    use http_body_util::BodyExt;

    use super::*;

    /// The pre-rendered answer is the problem's own, byte for byte, header for header.
    #[tokio::test]
    async fn the_rendered_429_is_the_problems_answer() {
        for wait in [1, 2, 59, 3_599, 3_600, 3_601, 86_400, u32::MAX - 1] {
            let ours = too_many_requests(wait);
            let theirs = problem(wait).retry_after(wait).into_response();
            assert_eq!(ours.status(), theirs.status());
            assert_eq!(ours.headers(), theirs.headers(), "wait {wait}");
            let ours = ours.into_body().collect().await.unwrap().to_bytes();
            let theirs = theirs.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(ours, theirs, "wait {wait}");
        }
        assert_eq!(
            too_many_requests(0).headers()[header::RETRY_AFTER],
            "1",
            "never 0"
        );
        // A kept answer is the same the second time.
        let again = too_many_requests(2).into_body().collect().await.unwrap();
        let theirs = problem(2)
            .into_response()
            .into_body()
            .collect()
            .await
            .unwrap();
        assert_eq!(again.to_bytes(), theirs.to_bytes());
    }
}
