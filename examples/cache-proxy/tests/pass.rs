//! Hit-for-pass against a real origin: a URI whose response could not be stored passes (its
//! misses are not coalesced) until a purge of the URI or an unsafe request invalidating it
//! ends the pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use axum::body::Body;
use hyper_util::client::legacy::Client;
use parapet_cache::CacheLayer;
use support::{Origin, cc, get};

const NOT_STORED: &str = "parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store";
const PASSED: &str = "parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store/pass";

/// A `POST` through the proxy; its status.
async fn post(proxy: SocketAddr, path: &str) -> u16 {
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Body>();
    let request = http::Request::post(format!("http://{proxy}{path}"))
        .body(Body::empty())
        .unwrap();
    client.request(request).await.unwrap().status().as_u16()
}

/// Two requests for `path`: the first is not stored (`no-store`) and starts a pass, the
/// second passes.
async fn start_a_pass(proxy: SocketAddr, path: &str) {
    assert_eq!(get(proxy, path, &[]).await.cache_status(), NOT_STORED);
    assert_eq!(get(proxy, path, &[]).await.cache_status(), PASSED);
}

#[tokio::test]
async fn a_purge_or_an_invalidation_ends_the_pass() {
    // Every GET answers `no-store`; a POST succeeds.
    let origin = Origin::start(|_, _| (200, cc("no-store"), "never stored".to_owned())).await;
    let cache = CacheLayer::builder()
        .single_tenant()
        .local(1 << 20)
        .build()
        .unwrap();
    let handle = cache.handle();
    let proxy = origin.proxy_with(cache).await;

    start_a_pass(proxy, "/a").await;
    start_a_pass(proxy, "/b").await;
    handle.purge(None, "/a").await;
    // /a is looked up and coalesced again (and its no-store answer starts a new pass); the
    // purge of /a left /b's pass alone.
    assert_eq!(get(proxy, "/a", &[]).await.cache_status(), NOT_STORED);
    assert_eq!(get(proxy, "/b", &[]).await.cache_status(), PASSED);

    start_a_pass(proxy, "/c").await;
    handle.soft_purge(None, "/c").await;
    assert_eq!(get(proxy, "/c", &[]).await.cache_status(), NOT_STORED);

    // A successful POST invalidates its target URI: the pass ends with it.
    start_a_pass(proxy, "/d").await;
    assert_eq!(post(proxy, "/d").await, 200);
    assert_eq!(get(proxy, "/d", &[]).await.cache_status(), NOT_STORED);
    assert_eq!(get(proxy, "/d", &[]).await.cache_status(), PASSED);
    assert_eq!(
        handle.stats().passes,
        6,
        "one each for /a and /c, two each for /b and /d"
    );
}
