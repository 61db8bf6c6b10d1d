//! Soft purges end to end: two proxies sharing a real Redis in front of a real origin. A soft
//! purge (of a URI, a tag or the whole single-tenant cache) marks entries stale on both
//! instances: the next request revalidates (the origin sees a conditional request and its
//! `304` refreshes the entry), and while the origin fails `stale-if-error` serves the copy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::StatusCode;
use parapet_cache::{CacheHandle, CacheLayer, RedisConfig};
use support::{Origin, get, until_status};

/// An origin with a fixed representation (`ETag: "v1"`, fresh for a minute, `stale-if-error`
/// for a minute, tagged `docs`): `304` to a matching `If-None-Match`, `503` while `down`.
async fn origin(down: Arc<AtomicBool>) -> Origin {
    Origin::start(move |_, request| {
        if down.load(Ordering::SeqCst) {
            return (503, vec![], "down".to_owned());
        }
        let headers = vec![
            ("cache-control", "max-age=60, stale-if-error=60".to_owned()),
            ("etag", "\"v1\"".to_owned()),
            ("cache-tag", "docs".to_owned()),
        ];
        if request.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
            return (304, headers, String::new());
        }
        (200, headers, "the document".to_owned())
    })
    .await
}

/// A proxy on the shared Redis under `prefix`, and its cache's handle.
async fn proxy(origin: &Origin, prefix: &str) -> (SocketAddr, CacheHandle) {
    let cache = CacheLayer::builder()
        .single_tenant()
        .local(1 << 20)
        .redis(RedisConfig::new(parapet_testkit::redis_url()))
        .prefix(prefix)
        .build()
        .unwrap();
    let handle = cache.handle();
    (origin.proxy_with(cache).await, handle)
}

async fn warm(proxy: SocketAddr, path: &str) {
    until_status(proxy, path, "hit").await;
}

/// The conditional requests the origin has seen.
fn conditionals(origin: &Origin) -> usize {
    let seen = origin.seen.lock().unwrap();
    seen.iter()
        .filter(|h| h.get("if-none-match").is_some_and(|v| v == "\"v1\""))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_makes_every_instance_revalidate() {
    parapet_testkit::require_redis().await;
    let down = Arc::new(AtomicBool::new(false));
    let origin = origin(down.clone()).await;
    let prefix = parapet_testkit::unique_prefix("proxy-soft");
    let (a, handle_a) = proxy(&origin, &prefix).await;
    let (b, _handle_b) = proxy(&origin, &prefix).await;
    warm(a, "/doc").await;
    warm(b, "/doc").await; // b's local tier holds a copy now
    assert_eq!(origin.calls(), 1);
    // Let the subscribers start (each starts with its instance's first store operation).
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A soft purge through instance a: b's next request revalidates, and the 304 serves it.
    handle_a.soft_purge(None, "/doc").await;
    let mut revalidated = None;
    for _ in 0..50 {
        let got = get(b, "/doc", &[]).await;
        if !got.cache_status().contains("hit") {
            revalidated = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = revalidated.expect("instance b never saw the soft purge");
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "the document");
    assert!(
        got.cache_status().contains("fwd=stale; fwd-status=304"),
        "{}",
        got.cache_status()
    );
    assert_eq!(conditionals(&origin), 1, "the origin saw If-None-Match");
    assert_eq!(origin.calls(), 2, "no full refetch");
    // Refreshed: fresh again on b.
    let again = get(b, "/doc", &[]).await;
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );

    // The origin goes down; a soft purge of the tag keeps the copy for stale-if-error.
    down.store(true, Ordering::SeqCst);
    assert_eq!(handle_a.soft_purge_tag(None, "docs").await, 1);
    let stale = get(a, "/doc", &[]).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, "the document");
    assert!(
        stale.cache_status().contains("detail=stale-if-error"),
        "{}",
        stale.cache_status()
    );
    // A hard purge after it still finds the tagged entry (the soft purge kept the index).
    assert_eq!(handle_a.purge_tag(None, "docs").await, 1);
    let gone = get(a, "/doc", &[]).await;
    assert_eq!(gone.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_of_the_whole_cache_reaches_the_other_instance() {
    parapet_testkit::require_redis().await;
    let down = Arc::new(AtomicBool::new(false));
    let origin = origin(down.clone()).await;
    let prefix = parapet_testkit::unique_prefix("proxy-soft-all");
    let (a, handle_a) = proxy(&origin, &prefix).await;
    let (b, _handle_b) = proxy(&origin, &prefix).await;
    for path in ["/one", "/two"] {
        warm(a, path).await;
        warm(b, path).await;
    }
    assert_eq!(origin.calls(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert!(handle_a.soft_purge_tenant(None).await);
    // Both URIs on b: revalidated (304), not refetched.
    for path in ["/one", "/two"] {
        let mut seen = None;
        for _ in 0..50 {
            let got = get(b, path, &[]).await;
            if got.cache_status().contains("fwd-status=304") {
                seen = Some(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = seen.unwrap_or_else(|| panic!("b never revalidated {path}"));
        assert_eq!(got.body, "the document");
    }
    assert_eq!(conditionals(&origin), 2);
    assert_eq!(origin.calls(), 4);

    // Down, then soft-purged again: a's copies are served stale, not lost.
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(handle_a.soft_purge_tenant(None).await);
    let stale = get(a, "/one", &[]).await;
    assert_eq!(
        (stale.status, stale.body.as_str()),
        (StatusCode::OK, "the document")
    );
    assert!(
        stale.cache_status().contains("detail=stale-if-error"),
        "{}",
        stale.cache_status()
    );
}

/// An origin whose document varies on `Accept-Language` (`en` or `fr`, each with its own
/// `ETag`, fresh for a minute, `stale-if-error` for a minute): `304` to a matching
/// `If-None-Match`, `503` while `down`.
async fn varying_origin(down: Arc<AtomicBool>) -> Origin {
    Origin::start(move |_, request| {
        if down.load(Ordering::SeqCst) {
            return (503, vec![], "down".to_owned());
        }
        let language = match request.get("accept-language") {
            Some(v) if v == "fr" => "fr",
            _ => "en",
        };
        let etag = format!("\"{language}1\"");
        let headers = vec![
            ("cache-control", "max-age=60, stale-if-error=60".to_owned()),
            ("vary", "accept-language".to_owned()),
            ("content-language", language.to_owned()),
            ("etag", etag.clone()),
        ];
        if request.get("if-none-match").is_some_and(|v| *v == etag) {
            return (304, headers, String::new());
        }
        (200, headers, format!("the document in {language}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_of_a_varying_uri_makes_every_variant_revalidate() {
    parapet_testkit::require_redis().await;
    let down = Arc::new(AtomicBool::new(false));
    let origin = varying_origin(down.clone()).await;
    let prefix = parapet_testkit::unique_prefix("proxy-soft-vary");
    let (a, handle_a) = proxy(&origin, &prefix).await;
    let (b, _handle_b) = proxy(&origin, &prefix).await;
    let warm_variant = |proxy: SocketAddr, language: &'static str| async move {
        for _ in 0..50 {
            let got = get(proxy, "/doc", &[("accept-language", language)]).await;
            if got.cache_status().contains("hit") {
                assert_eq!(got.body, format!("the document in {language}"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the {language} variant never became a hit");
    };
    for language in ["en", "fr"] {
        warm_variant(a, language).await;
        warm_variant(b, language).await;
    }
    assert_eq!(origin.calls(), 2, "one fetch per variant");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A soft purge of the URI through a: on b, each variant revalidates with its own ETag
    // and the 304 refreshes it (no variant is refetched in full).
    handle_a.soft_purge(None, "/doc").await;
    for language in ["en", "fr"] {
        let mut revalidated = None;
        for _ in 0..50 {
            let got = get(b, "/doc", &[("accept-language", language)]).await;
            if !got.cache_status().contains("hit") {
                revalidated = Some(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = revalidated.unwrap_or_else(|| panic!("b never saw the soft purge ({language})"));
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, format!("the document in {language}"));
        assert!(
            got.cache_status().contains("fwd=stale; fwd-status=304"),
            "{language}: {}",
            got.cache_status()
        );
        let again = get(b, "/doc", &[("accept-language", language)]).await;
        assert!(
            again.cache_status().contains("hit"),
            "{language} fresh again: {}",
            again.cache_status()
        );
    }
    let conditionals = {
        let seen = origin.seen.lock().unwrap();
        seen.iter()
            .filter_map(|h| h.get("if-none-match"))
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(conditionals, ["\"en1\"", "\"fr1\""], "one per variant");
    assert_eq!(origin.calls(), 4, "no full refetch");

    // Down, then soft-purged again: each variant is kept and served stale, as itself.
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    handle_a.soft_purge(None, "/doc").await;
    for language in ["en", "fr"] {
        let stale = get(a, "/doc", &[("accept-language", language)]).await;
        assert_eq!(stale.status, StatusCode::OK, "{language}");
        assert_eq!(stale.body, format!("the document in {language}"));
        assert!(
            stale.cache_status().contains("detail=stale-if-error"),
            "{language}: {}",
            stale.cache_status()
        );
    }
}

/// A `POST` to the admin service at `addr` with the bearer token `token`: status and body.
async fn admin(addr: SocketAddr, path: &str, token: &str) -> (StatusCode, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<axum::body::Body>();
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The admin API (`PurgeService`, mounted beside the proxy) soft-purges with `?soft=1`: a URI
/// on one instance makes the other revalidate; a tag or the whole cache keeps the copy that
/// `stale-if-error` serves while the origin is down, where a hard purge loses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_soft_purges_through_the_proxy() {
    parapet_testkit::require_redis().await;
    let down = Arc::new(AtomicBool::new(false));
    let origin = origin(down.clone()).await;
    let prefix = parapet_testkit::unique_prefix("proxy-soft-admin");
    let cache = CacheLayer::builder()
        .single_tenant()
        .local(1 << 20)
        .redis(RedisConfig::new(parapet_testkit::redis_url()))
        .prefix(&prefix)
        .build()
        .unwrap();
    let app = axum::Router::new()
        .nest_service("/admin/cache", cache.handle().purge_service("s3cret"))
        .merge(example_cache_proxy::app_with(origin.url(), cache));
    let a = support::serve(app).await;
    let (b, _handle_b) = proxy(&origin, &prefix).await;
    warm(a, "/doc").await;
    warm(b, "/doc").await;
    assert_eq!(origin.calls(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, _) = admin(a, "/admin/cache/tenant/_/uri?path=%2Fdoc&soft=1", "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = admin(a, "/admin/cache/tenant/_/uri?path=%2Fdoc&soft=1", "s3cret").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "{\"purged\":1,\"soft\":true}")
    );
    let mut revalidated = None;
    for _ in 0..50 {
        let got = get(b, "/doc", &[]).await;
        if !got.cache_status().contains("hit") {
            revalidated = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = revalidated.expect("instance b never saw the soft purge");
    assert_eq!(got.body, "the document");
    assert!(
        got.cache_status().contains("fwd=stale; fwd-status=304"),
        "{}",
        got.cache_status()
    );
    assert_eq!(conditionals(&origin), 1);
    assert_eq!(origin.calls(), 2, "no full refetch");

    // Down: soft purges of the tag and of the whole cache keep the copy for stale-if-error.
    down.store(true, Ordering::SeqCst);
    for path in [
        "/admin/cache/tenant/_/tag/docs?soft=1",
        "/admin/cache/tenant/_?soft=true",
    ] {
        let (status, body) = admin(a, path, "s3cret").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body.contains("\"soft\":true"), "{path}: {body}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let stale = get(a, "/doc", &[]).await;
        assert_eq!(
            (stale.status, stale.body.as_str()),
            (StatusCode::OK, "the document"),
            "{path}"
        );
        assert!(
            stale.cache_status().contains("detail=stale-if-error"),
            "{path}: {}",
            stale.cache_status()
        );
    }
    // A hard purge of the URI removes it: the origin's error reaches the client.
    let (status, _) = admin(a, "/admin/cache/tenant/_/uri?path=%2Fdoc", "s3cret").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        get(a, "/doc", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
