//! 1,000 concurrent requests on one cold key make exactly one call to the inner service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use common::{get, redis, redis_config, text, unique_prefix};
use http::{Request, Response};
use parapet_cache::CacheLayer;
use tower::{Layer, ServiceExt, service_fn};

async fn thousand_requests(cache: CacheLayer) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |_request: Request<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "max-age=60")
                    .body(Body::from("expensive"))
                    .unwrap(),
            )
        }
    });
    let service = cache.layer(inner);
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(get("acme", "/cold")).await.unwrap() })
        })
        .collect();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(text(response).await, "expensive");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "exactly one inner call: {:?}",
        cache.stats()
    );
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits), (1, 999), "{stats:?}");
    assert!(stats.coalesced > 0, "{stats:?}");
    assert_eq!(stats.stored, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_inner_call_local_tier() {
    let cache = CacheLayer::builder()
        .local(8 * 1024 * 1024)
        .prefix(unique_prefix("coalesce-local"))
        .build()
        .unwrap();
    thousand_requests(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_inner_call_both_tiers() {
    redis().await;
    let cache = CacheLayer::builder()
        .local(8 * 1024 * 1024)
        .redis(redis_config())
        .prefix(unique_prefix("coalesce-tiered"))
        .build()
        .unwrap();
    thousand_requests(cache).await;
}

/// Concurrent requests on an expired entry revalidate it once (with and without validators).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_revalidated_once() {
    redis().await;
    for etag in [false, true] {
        let cache = CacheLayer::builder()
            .local(8 * 1024 * 1024)
            .redis(redis_config())
            .prefix(unique_prefix("coalesce-expired"))
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let inner = service_fn(move |request: Request<Body>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let conditional = request.headers().contains_key("if-none-match");
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let builder = Response::builder()
                    .status(if conditional { 304 } else { 200 })
                    .header(
                        "cache-control",
                        if n == 0 { "max-age=1" } else { "max-age=60" },
                    );
                let builder = if etag {
                    builder.header("etag", "\"v\"")
                } else {
                    builder
                };
                Ok::<_, Infallible>(builder.body(Body::from("body")).unwrap())
            }
        });
        let service = cache.layer(inner);
        service
            .clone()
            .oneshot(get("acme", "/expiring"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let service = service.clone();
                tokio::spawn(
                    async move { service.oneshot(get("acme", "/expiring")).await.unwrap() },
                )
            })
            .collect();
        for task in tasks {
            let response = task.await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(text(response).await, "body");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "etag {etag}: one revalidation"
        );
        let stats = cache.stats();
        assert_eq!(stats.revalidated, u64::from(etag), "{stats:?}");
    }
}

/// The leader of a coalesced miss whose client goes away (its future dropped mid-call) still
/// completes the fill: the waiters are answered from it, and the inner service is called once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_still_fills_for_the_waiters() {
    let cache = CacheLayer::builder()
        .local(8 * 1024 * 1024)
        .prefix(unique_prefix("coalesce-cancel"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |_request: Request<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "max-age=60")
                    .body(Body::from("filled"))
                    .unwrap(),
            )
        }
    });
    let service = cache.layer(inner);
    let leader = {
        let service = service.clone();
        tokio::spawn(async move { service.oneshot(get("acme", "/slow")).await })
    };
    // The leader is inside the inner call; the waiters queue behind it.
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(get("acme", "/slow")).await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The leader's client goes away.
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for waiter in waiters {
        let response = waiter.await.unwrap();
        assert_eq!(response.status(), 200);
        let status = common::cache_status(&response);
        assert!(status.starts_with("parapet; hit;"), "{status}");
        assert_eq!(text(response).await, "filled");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{:?}", cache.stats());
    let stats = cache.stats();
    assert_eq!(
        (stats.stored, stats.hits, stats.coalesced),
        (1, 20, 20),
        "{stats:?}"
    );
}
