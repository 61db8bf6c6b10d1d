//! Layer behaviour that does not depend on the tier: per-route default TTLs, HEAD,
//! `only-if-cached`, request `no-cache`, `Set-Cookie` pass-through, `Cache-Status` everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Origin, cache_status, get, header, request, send, text, ttl, unique_prefix};
use http::StatusCode;
use parapet_cache::CacheLayer;

/// An origin answering `200 "n"` with the given headers, counting calls.
fn origin(headers: &'static [(&'static str, &'static str)]) -> (impl Origin, Arc<AtomicUsize>) {
    common::origin(move |n, _| {
        let headers = headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        (200, headers, n.to_string())
    })
}

fn local(test: &str) -> parapet_cache::CacheLayerBuilder {
    CacheLayer::builder()
        .local(1024 * 1024)
        .prefix(unique_prefix(test))
}

#[tokio::test]
async fn default_ttl_per_route_is_opt_in() {
    let cache = local("route-ttl")
        .default_ttl_for("/api/", Duration::from_secs(30))
        .default_ttl_for("/api/slow/", Duration::from_secs(300))
        .default_ttl_with(|parts| {
            (parts.uri.path() == "/special").then_some(Duration::from_secs(5))
        })
        .build()
        .unwrap();
    let (service, calls) = origin(&[("content-type", "application/json")]);
    for (uri, expected_ttl) in [
        ("/api/leads", Some(30)),
        ("/api/slow/report", Some(300)),
        ("/special", Some(5)),
        ("/other", None),
    ] {
        let first = send(&cache, service.clone(), get("acme", uri)).await;
        let second = send(&cache, service.clone(), get("acme", uri)).await;
        match expected_ttl {
            Some(expected) => {
                let t = ttl(&second);
                assert!(cache_status(&second).contains("hit"), "{uri}");
                assert!((expected - 1..=expected).contains(&t), "{uri}: ttl {t}");
            }
            None => {
                assert!(
                    cache_status(&first).contains("detail=no-freshness"),
                    "{uri}"
                );
                assert!(!cache_status(&second).contains("hit"), "{uri}");
            }
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let cache = local("head").build().unwrap();
    let (service, calls) = origin(&[("cache-control", "max-age=60")]);
    // A HEAD miss goes upstream and stores nothing.
    let head = send(
        &cache,
        service.clone(),
        request("HEAD", Some("acme"), "/h", &[]),
    )
    .await;
    assert!(
        cache_status(&head).contains("detail=method"),
        "{}",
        cache_status(&head)
    );
    send(&cache, service.clone(), get("acme", "/h")).await;
    let head = send(&cache, service, request("HEAD", Some("acme"), "/h", &[])).await;
    assert!(cache_status(&head).contains("hit"));
    assert_eq!(header(&head, "content-length"), "1");
    assert_eq!(text(head).await, "", "no body for HEAD");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn only_if_cached_and_request_no_cache() {
    let cache = local("request-directives").build().unwrap();
    let (service, calls) = origin(&[("cache-control", "max-age=60")]);
    let cold = send(
        &cache,
        service.clone(),
        request(
            "GET",
            Some("acme"),
            "/r",
            &[("cache-control", "only-if-cached")],
        ),
    )
    .await;
    assert_eq!(cold.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(header(&cold, "content-type"), "application/problem+json");
    assert!(cache_status(&cold).contains("detail=only-if-cached"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    send(&cache, service.clone(), get("acme", "/r")).await;
    let warm = send(
        &cache,
        service.clone(),
        request(
            "GET",
            Some("acme"),
            "/r",
            &[("cache-control", "only-if-cached")],
        ),
    )
    .await;
    assert!(cache_status(&warm).contains("hit"));
    let forced = send(
        &cache,
        service,
        request("GET", Some("acme"), "/r", &[("cache-control", "no-cache")]),
    )
    .await;
    assert!(
        cache_status(&forced).contains("fwd=request"),
        "{}",
        cache_status(&forced)
    );
    assert_eq!(text(forced).await, "1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn set_cookie_reaches_its_client_but_is_never_stored() {
    let cache = local("cookie").build().unwrap();
    let (service, calls) = origin(&[
        ("cache-control", "max-age=60"),
        ("set-cookie", "sid=secret"),
    ]);
    for _ in 0..2 {
        let response = send(&cache, service.clone(), get("acme", "/me")).await;
        assert_eq!(header(&response, "set-cookie"), "sid=secret");
        assert!(cache_status(&response).contains("detail=set-cookie"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // private="set-cookie": the response is stored without the cookie.
    let (service, _) = origin(&[
        ("cache-control", "max-age=60, private=\"set-cookie\""),
        ("set-cookie", "sid=secret"),
    ]);
    let first = send(&cache, service.clone(), get("acme", "/shared")).await;
    assert_eq!(
        header(&first, "set-cookie"),
        "sid=secret",
        "its own client gets it"
    );
    let second = send(&cache, service, get("acme", "/shared")).await;
    assert!(cache_status(&second).contains("hit"));
    assert_eq!(
        header(&second, "set-cookie"),
        "",
        "never replayed to others"
    );
}

#[tokio::test]
async fn every_response_carries_cache_status() {
    let cache = local("status").build().unwrap();
    let (service, _) = origin(&[("cache-control", "max-age=60")]);
    let cases = [
        (
            request("GET", None, "/x", &[]),
            "parapet; fwd=bypass; detail=no-tenant",
        ),
        (
            request("OPTIONS", Some("acme"), "/x", &[]),
            "parapet; fwd=method",
        ),
        (
            request("DELETE", Some("acme"), "/x", &[]),
            "parapet; fwd=method; detail=invalidated",
        ),
    ];
    for (req, expected) in cases {
        let response = send(&cache, service.clone(), req).await;
        assert_eq!(cache_status(&response), expected);
    }
    // Several ranges, other range units and preconditions the cache does not evaluate go to
    // the origin as they are.
    send(&cache, service.clone(), get("acme", "/y")).await;
    for (name, value, detail) in [
        ("range", "bytes=0-0,2-3", "range"),
        ("range", "items=0-1", "range"),
        ("if-match", "\"v1\"", "precondition"),
        (
            "if-unmodified-since",
            "Sat, 01 Jan 2000 00:00:00 GMT",
            "precondition",
        ),
    ] {
        let response = send(
            &cache,
            service.clone(),
            request("GET", Some("acme"), "/y", &[(name, value)]),
        )
        .await;
        assert_eq!(
            cache_status(&response),
            format!("parapet; fwd=request; detail={detail}")
        );
    }
    let stats = cache.stats();
    assert_eq!(stats.bypass, 7);
    assert_eq!(stats.invalidations, 1);
}
