//! [`PurgeService`]: an admin endpoint to purge by URI, tag or tenant, behind a bearer token.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use parapet_tenant::TenantId;
use parapet_tenant::problem::Problem;
use sha2::{Digest, Sha256};
use tower_service::Service;

use crate::handle::CacheHandle;

/// An admin service that purges the cache, to mount in a `Router` (e.g.
/// `Router::new().nest_service("/admin/cache", handle.purge_service(token))`).
///
/// Every request needs `Authorization: Bearer <token>` (the scheme in any case). The service
/// keeps only the token's SHA-256 digest and compares digests in constant time, so neither the
/// token's bytes nor its length leak through response times; an empty token accepts nothing.
/// Routes (relative to the mount point,
/// method `POST` or `DELETE`; tenant `_` means the single-tenant keys):
///
/// - `/tenant/{tenant}`: every entry of the tenant;
/// - `/tenant/{tenant}/tag/{tag}`: the tenant's entries tagged `tag`;
/// - `/tenant/{tenant}/uri?path={percent-encoded path and query}`: one URI (all variants).
///
/// With `soft=1` (or `soft=true`) in the query, any of them is a soft purge: the entries are
/// marked stale instead of removed, so the next request revalidates them (see
/// [`CacheHandle::soft_purge`]).
///
/// Answers `200 {"purged": n}` (`n` is 1 for a URI and a tenant; `{"purged": n, "soft": true}`
/// for a soft purge), and RFC 9457 problems: 401 without the right token, 404 for an unknown
/// route or invalid tenant, 405 for another method, 400 for a missing `path` or a `soft` other
/// than `1`, `true`, `0`, `false`, 503 when a tenant purge could not be stored in Redis.
#[derive(Clone)]
pub struct PurgeService {
    handle: CacheHandle,
    /// The token's SHA-256 digest; `None` for an empty token, which accepts nothing.
    token: Option<[u8; 32]>,
}

impl fmt::Debug for PurgeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurgeService")
            .field("handle", &self.handle)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl CacheHandle {
    /// An admin service purging through this handle, behind `Authorization: Bearer <token>`
    /// (see [`PurgeService`]).
    #[must_use]
    pub fn purge_service(&self, token: impl Into<Arc<str>>) -> PurgeService {
        PurgeService::new(self.clone(), token)
    }
}

impl PurgeService {
    /// A purge service for `handle` accepting `token`.
    #[must_use]
    pub fn new(handle: CacheHandle, token: impl Into<Arc<str>>) -> Self {
        Self {
            handle,
            token: Some(token.into())
                .filter(|token| !token.is_empty())
                .map(|token| digest(token.as_bytes())),
        }
    }

    fn authorized(&self, request: &Parts) -> bool {
        let Some(expected) = &self.token else {
            return false;
        };
        let mut values = request.headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(presented) = bearer_token(value.as_bytes()) else {
            return false;
        };
        constant_time_eq(&digest(presented), expected)
    }
}

impl<B: Send + 'static> Service<Request<B>> for PurgeService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        let (parts, _body) = request.into_parts();
        Box::pin(async move { Ok(this.answer(&parts).await) })
    }
}

impl PurgeService {
    async fn answer(&self, request: &Parts) -> Response<Body> {
        if !self.authorized(request) {
            return Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                .www_authenticate("Bearer")
                .into_response();
        }
        if !matches!(request.method, Method::POST | Method::DELETE) {
            let mut response = Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
            return response;
        }
        let segments: Vec<&str> = request.uri.path().trim_matches('/').split('/').collect();
        let not_found = || {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "No such purge target").into_response()
        };
        let (tenant, rest) = match segments.as_slice() {
            ["tenant", tenant, rest @ ..] => (*tenant, rest),
            _ => return not_found(),
        };
        let tenant = if tenant == "_" {
            None
        } else {
            match TenantId::parse(tenant) {
                Ok(id) => Some(id),
                Err(_) => return not_found(),
            }
        };
        let Some(soft) = soft_requested(request.uri.query()) else {
            return Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request")
                .detail("`soft` must be 1, true, 0 or false")
                .into_response();
        };
        let purged = match rest {
            [] => {
                let stored = if soft {
                    self.handle.soft_purge_tenant(tenant.as_ref()).await
                } else {
                    self.handle.purge_tenant(tenant.as_ref()).await
                };
                if !stored {
                    return Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cache-purge-failed",
                        "Purge not stored",
                    )
                    .detail("the shared cache did not take the tenant purge; try again")
                    .into_response();
                }
                1
            }
            ["tag", tag] => match percent_decode(tag) {
                Some(tag) if soft => self.handle.soft_purge_tag(tenant.as_ref(), &tag).await,
                Some(tag) => self.handle.purge_tag(tenant.as_ref(), &tag).await,
                None => return not_found(),
            },
            ["uri"] => {
                let path = request
                    .uri
                    .query()
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .find_map(|pair| pair.strip_prefix("path="))
                    .and_then(percent_decode);
                let Some(path) = path.filter(|p| p.starts_with('/')) else {
                    return Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request")
                        .detail("the `path` query parameter must hold a percent-encoded path")
                        .into_response();
                };
                if soft {
                    self.handle.soft_purge(tenant.as_ref(), &path).await;
                } else {
                    self.handle.purge(tenant.as_ref(), &path).await;
                }
                1
            }
            _ => return not_found(),
        };
        let body = if soft {
            format!("{{\"purged\":{purged},\"soft\":true}}")
        } else {
            format!("{{\"purged\":{purged}}}")
        };
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Whether the query asks for a soft purge (`soft=1` or `soft=true`; `0`, `false` or no
/// `soft` for a hard one); `None` for another value.
fn soft_requested(query: Option<&str>) -> Option<bool> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("soft="));
    match value {
        None | Some("0" | "false") => Some(false),
        Some("1" | "true") => Some(true),
        Some(_) => None,
    }
}

/// The token of an `Authorization: Bearer <token>` value: the scheme is case-insensitive
/// (RFC 9110 §11.1), spaces around the token are ignored.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    Some(rest.trim_ascii())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two digests without an early exit on the first differing byte. Both have the
/// same length whatever the token's, so the length does not leak either.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Decodes `%XX` escapes (and `+` as a space is *not* applied); `None` on a bad escape or
/// non-UTF-8 result.
fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(authorization: &[&str]) -> Parts {
        let mut request = Request::post("/tenant/acme");
        for value in authorization {
            request = request.header(header::AUTHORIZATION, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_token_is_checked_by_digest_with_any_case_of_bearer() {
        let service = PurgeService {
            handle: crate::CacheLayer::builder()
                .local(1024)
                .build()
                .unwrap()
                .handle(),
            token: Some(digest(b"s3cret-token")),
        };
        for ok in [
            "Bearer s3cret-token",
            "bearer s3cret-token",
            "BEARER s3cret-token",
            "Bearer   s3cret-token ",
        ] {
            assert!(service.authorized(&parts(&[ok])), "{ok}");
        }
        for refused in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer ",
            "Bearer",
            "Bearers3cret-token",
            "Basic s3cret-token",
            "s3cret-token",
            "",
        ] {
            assert!(!service.authorized(&parts(&[refused])), "{refused:?}");
        }
        assert!(!service.authorized(&parts(&[])));
        assert!(!service.authorized(&parts(&["Bearer s3cret-token", "Bearer s3cret-token"])));
        // Only the digest is kept: the token is in no field, and an empty one accepts nothing.
        assert!(!format!("{service:?}").contains("s3cret"));
        let empty = PurgeService::new(service.handle.clone(), "");
        assert!(empty.token.is_none() && !empty.authorized(&parts(&["Bearer "])));
    }

    #[test]
    fn helpers() {
        assert!(constant_time_eq(&digest(b"abc"), &digest(b"abc")));
        assert!(!constant_time_eq(&digest(b"abc"), &digest(b"abd")));
        assert!(!constant_time_eq(&digest(b"abc"), &digest(b"ab")));
        assert_eq!(percent_decode("%2Fa%3Fq%3D1").as_deref(), Some("/a?q=1"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(soft_requested(None), Some(false));
        assert_eq!(soft_requested(Some("path=%2Fa")), Some(false));
        assert_eq!(soft_requested(Some("soft=1")), Some(true));
        assert_eq!(soft_requested(Some("path=%2Fa&soft=true")), Some(true));
        assert_eq!(soft_requested(Some("soft=0")), Some(false));
        assert_eq!(soft_requested(Some("soft=yes")), None);
    }
}
