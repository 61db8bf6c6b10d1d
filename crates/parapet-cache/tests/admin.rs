//! The admin purge service, mounted in a `Router`, against both tiers on the real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use common::{get, redis, redis_config, send, text, unique_prefix};
use http::{Request, Response, StatusCode};
use parapet_cache::CacheLayer;
use parapet_tenant::TenantId;
use tower::{ServiceExt, service_fn};

fn origin()
-> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|request: Request<Body>| async move {
        Ok::<_, Infallible>(
            Response::builder()
                .header("cache-control", "max-age=300")
                .header(
                    "cache-tag",
                    if request.uri().path().starts_with("/a") {
                        "a"
                    } else {
                        "b"
                    },
                )
                .body(Body::from("x"))
                .unwrap(),
        )
    })
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
