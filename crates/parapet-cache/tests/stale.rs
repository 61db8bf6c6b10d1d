//! `stale-while-revalidate` (one background refresh per key) and `stale-if-error`, on both
//! tiers against the real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use common::{cache_status, get, redis, redis_config, text, unique_prefix};
use http::{Request, Response};
use parapet_cache::CacheLayer;
use tower::{Layer, ServiceExt, service_fn};

async fn layer(test: &str) -> CacheLayer {
    redis().await;
    CacheLayer::builder()
        .local(1024 * 1024)
        .redis(redis_config())
        .prefix(unique_prefix(test))
        .build()
        .unwrap()
}

/// An origin answering call `n` with `answer(n)`: `Ok((status, cache-control))` or an error.
fn origin(
    answer: impl Fn(usize) -> Result<(u16, &'static str), ()> + Send + Sync + 'static,
) -> (
    impl tower::Service<Request<Body>, Response = Response<Body>, Error = std::io::Error, Future: Send>
    + Clone
    + Send
    + 'static,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let answer = Arc::new(answer);
    let service = service_fn(move |_request: Request<Body>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let result = answer(n)
            .map(|(status, cache_control)| {
                Response::builder()
                    .status(status)
                    .header("cache-control", cache_control)
                    .body(Body::from(format!("v{n}")))
                    .unwrap()
            })
            .map_err(|()| std::io::Error::other("origin down"));
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            result
        }
    });
    (service, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let cache = layer("swr").await;
    let (origin, calls) = origin(|n| match n {
        0 => Ok((200, "max-age=1, stale-while-revalidate=30")),
        _ => Ok((200, "max-age=30")),
    });
    let service = cache.layer(origin);
    service.clone().oneshot(get("acme", "/swr")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Ten concurrent requests on the stale entry: all served at once, one refresh.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(get("acme", "/swr")).await.unwrap() })
        })
        .collect();
    for task in tasks {
        let response = task.await.unwrap();
        let status = cache_status(&response);
        assert!(
            status.contains("hit") && common::ttl(&response) < 0,
            "{status}"
        );
        assert!(status.contains("detail=stale-while-revalidate"), "{status}");
        assert_eq!(text(response).await, "v0");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one background refresh");
    let fresh = service.oneshot(get("acme", "/swr")).await.unwrap();
    let status = cache_status(&fresh);
    assert!(
        status.contains("hit") && common::ttl(&fresh) >= 25,
        "fresh again: {status}"
    );
    assert_eq!(text(fresh).await, "v1");
}

#[tokio::test]
async fn stale_if_error_covers_5xx_and_errors() {
    let cache = layer("sie").await;
    let (origin, calls) = origin(|n| match n {
        0 => Ok((200, "max-age=1, stale-if-error=60")),
        1 => Ok((503, "no-store")),
        _ => Err(()),
    });
    let service = cache.layer(origin);
    service.clone().oneshot(get("acme", "/sie")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let after_503 = service.clone().oneshot(get("acme", "/sie")).await.unwrap();
    assert_eq!(after_503.status(), 200);
    let status = cache_status(&after_503);
    assert!(
        status.contains("fwd=stale; fwd-status=503") && status.contains("detail=stale-if-error"),
        "{status}"
    );
    assert_eq!(text(after_503).await, "v0");

    let after_error = service.oneshot(get("acme", "/sie")).await.unwrap();
    assert_eq!(after_error.status(), 200);
    assert_eq!(text(after_error).await, "v0");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.stats().stale, 2);
}

#[tokio::test]
async fn must_revalidate_forbids_stale_on_error() {
    let cache = layer("sie-forbidden").await;
    let (origin, _) = origin(|n| match n {
        0 => Ok((200, "max-age=1, must-revalidate, stale-if-error=60")),
        1 => Ok((503, "no-store")),
        _ => Err(()),
    });
    let service = cache.layer(origin);
    service
        .clone()
        .oneshot(get("acme", "/strict"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = service
        .clone()
        .oneshot(get("acme", "/strict"))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(service.oneshot(get("acme", "/strict")).await.is_err());
}
