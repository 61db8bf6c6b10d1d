//! Readiness: a request goes upstream on the inner service instance `poll_ready` made ready,
//! and a background refresh readies an instance of its own. The inner service here holds its
//! only permit from `poll_ready` to `call`, as a concurrency limit does: a call on a clone that
//! was not made ready panics, and readying a clone while the ready instance sits unused waits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use common::{cache_status, eventually, get, request, unique_prefix};
use http::{Request, Response};
use parapet_cache::CacheLayer;
use tower::{Layer, Service, ServiceExt};

/// An origin with one permit, taken by `poll_ready` and given back by `call` (or by dropping
/// the instance that holds it); it answers `cache-control` with `max-age=0,
/// stale-while-revalidate=60` under `/swr`, `max-age=60` otherwise.
struct OnePermit {
    free: Arc<AtomicBool>,
    held: bool,
    calls: Arc<AtomicUsize>,
}

impl OnePermit {
    fn new() -> (Self, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let service = Self {
            free: Arc::new(AtomicBool::new(true)),
            held: false,
            calls: calls.clone(),
        };
        (service, calls)
    }
}

impl Clone for OnePermit {
    fn clone(&self) -> Self {
        // A clone is not ready: readiness belongs to the instance that was polled.
        Self {
            free: self.free.clone(),
            held: false,
            calls: self.calls.clone(),
        }
    }
}

impl Drop for OnePermit {
    fn drop(&mut self) {
        if self.held {
            self.free.store(true, Ordering::SeqCst);
        }
    }
}

impl Service<Request<Body>> for OnePermit {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.held || self.free.swap(false, Ordering::SeqCst) {
            self.held = true;
            return Poll::Ready(Ok(()));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        assert!(
            self.held,
            "called on an instance poll_ready did not make ready"
        );
        self.held = false;
        self.free.store(true, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let cache_control = if request.uri().path().starts_with("/swr") {
            "max-age=0, stale-while-revalidate=60"
        } else {
            "max-age=60"
        };
        let response = Response::builder()
            .header("cache-control", cache_control)
            .body(Body::from("x"))
            .unwrap();
        ready(Ok(response))
    }
}

/// Drives the service to readiness and calls it, failing when that does not finish in time.
async fn call<S>(service: &mut S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let exchange = async { service.ready().await.unwrap().call(request).await.unwrap() };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .expect("the request did not finish: its call waited for a permit the ready instance held")
}

#[tokio::test]
async fn requests_go_upstream_on_the_ready_instance() {
    let cache = CacheLayer::builder()
        .local(1024 * 1024)
        .prefix(unique_prefix("readiness"))
        .build()
        .unwrap();
    let (origin, calls) = OnePermit::new();
    let mut service = cache.layer(origin);

    // A miss (a coalescing leader, filled in a task of its own), then a hit.
    let miss = call(&mut service, get("acme", "/a")).await;
    assert!(cache_status(&miss).contains("fwd=uri-miss"));
    let hit = call(&mut service, get("acme", "/a")).await;
    assert!(cache_status(&hit).contains("hit"));
    // A request without a tenant, an unsafe method and several ranges pass through.
    let bypass = call(&mut service, request("GET", None, "/a", &[])).await;
    assert!(cache_status(&bypass).contains("fwd=bypass"));
    let post = call(&mut service, request("POST", Some("acme"), "/a", &[])).await;
    assert!(cache_status(&post).contains("fwd=method"));
    let range = call(
        &mut service,
        request("GET", Some("acme"), "/b", &[("range", "bytes=0-0,2-3")]),
    )
    .await;
    assert!(cache_status(&range).contains("detail=range"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_background_refresh_readies_its_own_instance() {
    let cache = CacheLayer::builder()
        .local(1024 * 1024)
        .prefix(unique_prefix("readiness-swr"))
        .build()
        .unwrap();
    let (origin, calls) = OnePermit::new();
    let mut service = cache.layer(origin);

    call(&mut service, get("acme", "/swr")).await;
    let stale = call(&mut service, get("acme", "/swr")).await;
    assert!(
        cache_status(&stale).contains("detail=stale-while-revalidate"),
        "{}",
        cache_status(&stale)
    );
    // The refresh waits for the permit the request's unused ready instance gave back.
    eventually("the background refresh", Duration::from_secs(2), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::SeqCst) == 2 }
    })
    .await;
}
