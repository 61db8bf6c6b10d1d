//! The admin purge service, mounted in a `Router`, against both tiers on the real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::Router;
use axum::body::Body;
use common::{Origin, get, redis, redis_config, send, text, unique_prefix};
use http::{Request, StatusCode};
use parapet_cache::CacheLayer;
use parapet_tenant::TenantId;
use tower::ServiceExt;

/// An origin tagging paths under `/a` with `a`, the others with `b`.
fn origin() -> impl Origin {
    common::origin(|_, request| {
        let tag = if request.uri().path().starts_with("/a") {
            "a"
        } else {
            "b"
        };
        let headers = vec![
            ("cache-control", "max-age=300".to_owned()),
            ("cache-tag", tag.to_owned()),
        ];
        (200, headers, "x".to_owned())
    })
    .0
}

async fn call(
    admin: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let response = admin
        .clone()
        .oneshot(builder.body(Body::empty()).unwrap())
        .await
        .unwrap();
    (response.status(), text(response).await)
}

#[tokio::test]
async fn purge_service_behind_a_bearer_token() {
    redis().await;
    let cache = CacheLayer::builder()
        .local(1024 * 1024)
        .redis(redis_config())
        .prefix(unique_prefix("admin"))
        .build()
        .unwrap();
    let admin = Router::new().nest_service("/admin/cache", cache.handle().purge_service("s3cret"));
    let stored = |tenant: &'static str, uri: &'static str| {
        let cache = cache.clone();
        async move {
            let key = cache
                .handle()
                .key_for(Some(&TenantId::parse(tenant).unwrap()), uri)
                .await;
            cache.store().get(key.as_bytes()).await.is_some()
        }
    };
    for uri in ["/a1", "/a2?x=1", "/b1"] {
        for tenant in ["acme", "globex"] {
            send(&cache, origin(), get(tenant, uri)).await;
        }
    }
    assert!(stored("acme", "/a2?x=1").await);

    let cases = [
        (
            "POST",
            "/admin/cache/tenant/acme",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/admin/cache/tenant/acme",
            Some("wrong"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            "/admin/cache/tenant/acme",
            Some("s3cret"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST",
            "/admin/cache/nothing",
            Some("s3cret"),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/admin/cache/tenant/NOT..VALID",
            Some("s3cret"),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/admin/cache/tenant/acme/uri",
            Some("s3cret"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, uri, token, expected) in cases {
        let (status, body) = call(&admin, method, uri, token).await;
        assert_eq!(status, expected, "{method} {uri}: {body}");
        assert!(body.contains("urn:parapet:problem:"), "{body}");
    }
    assert!(
        stored("acme", "/a1").await,
        "refused requests purged nothing"
    );

    let (status, body) = call(
        &admin,
        "POST",
        "/admin/cache/tenant/acme/uri?path=%2Fa2%3Fx%3D1",
        Some("s3cret"),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "{\"purged\":1}"));
    assert!(!stored("acme", "/a2?x=1").await && stored("acme", "/a1").await);

    let (status, body) = call(
        &admin,
        "DELETE",
        "/admin/cache/tenant/acme/tag/a",
        Some("s3cret"),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "{\"purged\":2}"));
    assert!(!stored("acme", "/a1").await && stored("acme", "/b1").await);
    assert!(stored("globex", "/a1").await);

    let (status, _) = call(&admin, "POST", "/admin/cache/tenant/acme", Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!stored("acme", "/b1").await);
    assert!(stored("globex", "/b1").await && stored("globex", "/a2?x=1").await);
}

/// A tenant purge that Redis did not take is reported (503), not claimed.
#[tokio::test]
async fn a_tenant_purge_redis_did_not_take_is_a_503() {
    // Nothing listens on this port: every Redis command fails at once.
    let port = common::free_port();
    let cache = CacheLayer::builder()
        .local(1024 * 1024)
        .redis(parapet_cache::RedisConfig::new(format!(
            "redis://127.0.0.1:{port}"
        )))
        .prefix(unique_prefix("admin-down"))
        .build()
        .unwrap();
    let admin = Router::new().nest_service("/admin/cache", cache.handle().purge_service("s3cret"));
    let (status, body) = call(&admin, "POST", "/admin/cache/tenant/acme", Some("s3cret")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("urn:parapet:problem:cache-purge-failed"),
        "{body}"
    );
}
