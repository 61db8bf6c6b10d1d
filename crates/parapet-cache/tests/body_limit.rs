//! A body above `max_body_size` streams through whole and is not stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use bytes::Bytes;
use common::{cache_status, get, redis, redis_config, send, text, unique_prefix};
use http::{Request, Response};
use parapet_cache::CacheLayer;
use tower::service_fn;

#[tokio::test]
async fn large_bodies_stream_through_and_are_not_stored() {
    redis().await;
    let cache = CacheLayer::builder()
        .local(1024 * 1024)
        .redis(redis_config())
        .max_body_size(1024)
        .prefix(unique_prefix("limit"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let origin = service_fn(move |request: Request<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let body = match request.uri().path() {
            // Known length above the limit.
            "/sized" => Body::from("s".repeat(4096)),
            // Unknown length: chunks that cross the limit while being read.
            "/streamed" => Body::from_stream(futures_util::stream::iter(
                (0..8).map(|_| Ok::<_, Infallible>(Bytes::from("c".repeat(512)))),
            )),
            _ => Body::from("small"),
        };
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "max-age=60")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    for (path, expected_len) in [("/sized", 4096), ("/streamed", 4096)] {
        for _ in 0..2 {
            let response = send(&cache, origin.clone(), get("acme", path)).await;
            let status = cache_status(&response);
            assert!(status.contains("detail=too-large"), "{path}: {status}");
            assert!(!status.contains("stored"), "{path}: {status}");
            assert_eq!(
                text(response).await.len(),
                expected_len,
                "{path}: whole body"
            );
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4, "never served from cache");
    send(&cache, origin.clone(), get("acme", "/small")).await;
    let small = send(&cache, origin, get("acme", "/small")).await;
    assert!(cache_status(&small).contains("hit"));
    assert_eq!(text(small).await, "small");
    assert_eq!(cache.stats().stored, 1);
}
