//! Soft purges by tenant and by tag against the real Redis, with two instances: the purged
//! tenant's entries are revalidated (a conditional request, a `304`) on both instances, and
//! another tenant's entries are not touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use common::{cache_status, get, origin, redis, redis_config, send, text, unique_prefix};
use http::Request;
use parapet_cache::{CacheLayer, soft_purge_key, tenant_prefix};
use parapet_tenant::TenantId;
use redis::AsyncCommands;

fn instance(prefix: &str) -> CacheLayer {
    CacheLayer::builder()
        .local(4 * 1024 * 1024)
        .redis(redis_config().generation_ttl(Duration::from_secs(60)))
        .prefix(prefix)
        .build()
        .unwrap()
}

/// An origin whose representations all carry `ETag: "v1"` and the tag `list`: `304` to a
/// matching `If-None-Match`. Counts the conditional requests per tenant.
fn conditional_origin() -> (impl common::Origin, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (acme, globex) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, g) = (acme.clone(), globex.clone());
    let (service, _) = origin(move |_, request: &Request<Body>| {
        let headers = vec![
            ("cache-control", "max-age=300".to_owned()),
            ("etag", "\"v1\"".to_owned()),
            ("cache-tag", "list".to_owned()),
        ];
        if request.headers().get("if-none-match").is_some() {
            let who = request
                .extensions()
                .get::<parapet_tenant::Tenant>()
                .unwrap();
            match who.id().as_str() {
                "acme" => a.fetch_add(1, Ordering::SeqCst),
                _ => g.fetch_add(1, Ordering::SeqCst),
            };
            return (304, headers, String::new());
        }
        (200, headers, format!("{} list", request.uri().path()))
    });
    (service, acme, globex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_soft_purge_revalidates_that_tenant_only_on_every_instance() {
    let mut conn = redis().await;
    let prefix = unique_prefix("soft-tenant");
    let (a, b) = (instance(&prefix), instance(&prefix));
    let (service, acme_304, globex_304) = conditional_origin();
    for tenant in ["acme", "globex"] {
        for uri in ["/one", "/two"] {
            send(&a, service.clone(), get(tenant, uri)).await;
            let from_redis = send(&b, service.clone(), get(tenant, uri)).await;
            assert!(cache_status(&from_redis).ends_with("detail=redis"));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acme = TenantId::parse("acme").unwrap();

    assert!(a.handle().soft_purge_tenant(Some(&acme)).await);
    // One small key in Redis says so.
    let mark: Option<u64> = conn
        .get(&soft_purge_key(&tenant_prefix(&prefix, Some("acme")))[..])
        .await
        .unwrap();
    assert!(mark.is_some());

    // On b (which heard it over pub/sub): acme's entries are revalidated, globex's are hits.
    let mut revalidated = 0;
    for _ in 0..100 {
        let response = send(&b, service.clone(), get("acme", "/one")).await;
        if cache_status(&response).contains("fwd-status=304") {
            assert_eq!(text(response).await, "/one list");
            revalidated += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(revalidated, 1, "instance b never saw the soft purge");
    let two = send(&b, service.clone(), get("acme", "/two")).await;
    assert!(
        cache_status(&two).contains("fwd-status=304"),
        "{}",
        cache_status(&two)
    );
    for uri in ["/one", "/two"] {
        let other = send(&b, service.clone(), get("globex", uri)).await;
        assert!(
            cache_status(&other).contains("hit"),
            "{}",
            cache_status(&other)
        );
        let other = send(&a, service.clone(), get("globex", uri)).await;
        assert!(
            cache_status(&other).contains("hit"),
            "{}",
            cache_status(&other)
        );
    }
    assert_eq!(acme_304.load(Ordering::SeqCst), 2);
    assert_eq!(globex_304.load(Ordering::SeqCst), 0);
    // Refreshed: hits again.
    let again = send(&b, service.clone(), get("acme", "/one")).await;
    assert!(
        cache_status(&again).contains("hit"),
        "{}",
        cache_status(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_soft_purge_keeps_the_entries_and_touches_no_other_tenant() {
    redis().await;
    let prefix = unique_prefix("soft-tag");
    let (a, b) = (instance(&prefix), instance(&prefix));
    let (service, acme_304, globex_304) = conditional_origin();
    for tenant in ["acme", "globex"] {
        send(&a, service.clone(), get(tenant, "/list")).await;
        send(&b, service.clone(), get(tenant, "/list")).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acme = TenantId::parse("acme").unwrap();
    assert_eq!(a.handle().soft_purge_tag(Some(&acme), "list").await, 1);
    // The entry is still in Redis (marked stale), not deleted.
    let key = a.handle().key_for(Some(&acme), "/list").await;
    let stored = a.store().get(key.as_bytes()).await.expect("still stored");
    match stored.value {
        parapet_cache::StoredValue::Response(entry) => assert!(entry.lifetime.is_zero()),
        parapet_cache::StoredValue::Vary(_) => panic!("a response was stored"),
    }
    let mut seen = false;
    for _ in 0..100 {
        let response = send(&b, service.clone(), get("acme", "/list")).await;
        if cache_status(&response).contains("fwd-status=304") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "instance b never saw the tag soft purge");
    let other = send(&b, service.clone(), get("globex", "/list")).await;
    assert!(
        cache_status(&other).contains("hit"),
        "{}",
        cache_status(&other)
    );
    assert_eq!(acme_304.load(Ordering::SeqCst), 1);
    assert_eq!(globex_304.load(Ordering::SeqCst), 0);
    // The tag index is intact: a hard purge of the tag still finds the entry.
    assert_eq!(a.handle().purge_tag(Some(&acme), "list").await, 1);
}

/// The admin service: `?soft=1` on any route is a soft purge, an unknown `soft` value a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_service_soft_purges_with_soft_1() {
    use tower::ServiceExt;
    redis().await;
    let cache = instance(&unique_prefix("soft-admin"));
    let (service, acme_304, _) = conditional_origin();
    send(&cache, service.clone(), get("acme", "/list")).await;
    let admin = axum::Router::new()
        .nest_service("/admin/cache", cache.handle().purge_service("s3cret-token"));
    let call = |uri: &'static str| {
        let admin = admin.clone();
        async move {
            let request = Request::post(uri)
                .header("authorization", "Bearer s3cret-token")
                .body(Body::empty())
                .unwrap();
            let response = admin.oneshot(request).await.unwrap();
            (response.status(), text(response).await)
        }
    };
    let (status, body) = call("/admin/cache/tenant/acme/tag/list?soft=yes").await;
    assert_eq!(status, http::StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call("/admin/cache/tenant/acme/tag/list?soft=1").await;
    assert_eq!(
        (status, body.as_str()),
        (http::StatusCode::OK, "{\"purged\":1,\"soft\":true}")
    );
    let response = send(&cache, service.clone(), get("acme", "/list")).await;
    assert!(
        cache_status(&response).contains("fwd-status=304"),
        "{}",
        cache_status(&response)
    );
    let (status, body) = call("/admin/cache/tenant/acme/uri?path=%2Flist&soft=true").await;
    assert_eq!(
        (status, body.as_str()),
        (http::StatusCode::OK, "{\"purged\":1,\"soft\":true}")
    );
    let (status, _) = call("/admin/cache/tenant/acme?soft=1").await;
    assert_eq!(status, http::StatusCode::OK);
    let response = send(&cache, service.clone(), get("acme", "/list")).await;
    assert!(
        cache_status(&response).contains("fwd-status=304"),
        "{}",
        cache_status(&response)
    );
    assert_eq!(acme_304.load(Ordering::SeqCst), 2);
}
