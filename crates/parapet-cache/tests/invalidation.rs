//! Two `CacheLayer` instances sharing one Redis act as two app instances: an unsafe method or
//! a purge on one removes the entry from the other's local tier (through pub/sub), and the
//! propagation time is measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    Origin, cache_status, eventually, get, redis, redis_config, request, rest_origin as origin,
    send, unique_prefix,
};
use parapet_cache::{CacheLayer, Store, generation_key, tenant_prefix};
use parapet_tenant::TenantId;
use redis::AsyncCommands;

fn instance(prefix: &str) -> CacheLayer {
    CacheLayer::builder()
        .local(4 * 1024 * 1024)
        // Generations are re-read only when a purge is announced over pub/sub: the tests
        // prove the announcement, not the TTL.
        .redis(redis_config().generation_ttl(Duration::from_secs(60)))
        .prefix(prefix)
        .build()
        .unwrap()
}

/// Warms `uri` for `tenant` on both instances: A stores, B fills its local tier from Redis.
async fn warm(a: &CacheLayer, b: &CacheLayer, tenant: &str, uri: &str) {
    let (service, _) = origin();
    send(a, service.clone(), get(tenant, uri)).await;
    let from_redis = send(b, service.clone(), get(tenant, uri)).await;
    assert!(
        cache_status(&from_redis).ends_with("detail=redis"),
        "{}",
        cache_status(&from_redis)
    );
    let local = send(b, service, get(tenant, uri)).await;
    assert!(
        cache_status(&local).ends_with("detail=local"),
        "{}",
        cache_status(&local)
    );
}

/// Waits until `store` has nothing under `key`; returns how long it took.
async fn gone(store: &Arc<dyn Store>, key: &[u8]) -> Duration {
    eventually("invalidated", Duration::from_secs(2), || async {
        store.get(key).await.is_none()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_method_on_one_instance_clears_the_others_local_tier() {
    redis().await;
    let prefix = unique_prefix("pubsub");
    let (a, b) = (instance(&prefix), instance(&prefix));
    warm(&a, &b, "acme", "/doc").await;
    // Let B's subscriber start (it starts with B's first store operation).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (service, _) = origin();
    send(
        &a,
        service.clone(),
        request("PUT", Some("acme"), "/doc", &[]),
    )
    .await;
    let key = b
        .handle()
        .key_for(Some(&TenantId::parse("acme").unwrap()), "/doc")
        .await;
    let took = gone(&b.store(), key.as_bytes()).await;
    eprintln!("invalidation reached the other instance's local tier in {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    let after = send(&b, service, get("acme", "/doc")).await;
    assert!(
        cache_status(&after).contains("fwd=uri-miss"),
        "{}",
        cache_status(&after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_key_and_purge_tenant_reach_every_instance() {
    let mut conn = redis().await;
    let prefix = unique_prefix("purge");
    let (a, b) = (instance(&prefix), instance(&prefix));
    for tenant in ["acme", "globex"] {
        for uri in ["/one", "/two", "/three?q=1"] {
            warm(&a, &b, tenant, uri).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acme = TenantId::parse("acme").unwrap();

    a.handle().purge(Some(&acme), "/one").await;
    let key = b.handle().key_for(Some(&acme), "/one").await;
    let took = gone(&b.store(), key.as_bytes()).await;
    eprintln!("purge by key reached the other instance in {took:?}");

    let before = b.handle().key_for(Some(&acme), "/two").await;
    assert!(a.handle().purge_tenant(Some(&acme)).await);
    // B learns the new generation from the announcement (its own TTL is 60 s here).
    let (handle, acme_ref, before_ref) = (b.handle(), &acme, &before);
    let took = eventually("purge announced", Duration::from_secs(2), || async {
        handle.key_for(Some(acme_ref), "/two").await != *before_ref
    })
    .await;
    eprintln!("purge by tenant reached the other instance in {took:?}");
    // One key was written for the purge: the tenant's generation.
    let generation: u64 = conn
        .get(&generation_key(&tenant_prefix(&prefix, Some("acme")))[..])
        .await
        .unwrap();
    assert_eq!(generation, 1);
    for cache in [&a, &b] {
        for uri in ["/two", "/three?q=1"] {
            let key = cache.handle().key_for(Some(&acme), uri).await;
            assert!(cache.store().get(key.as_bytes()).await.is_none(), "{uri}");
        }
    }
    let (service, calls) = origin();
    // acme: a miss on A (stored again), then a Redis hit on B; globex: local hits on both.
    for (tenant, instance, expected) in [
        ("acme", &a, "fwd=uri-miss"),
        ("acme", &b, "detail=redis"),
        ("globex", &a, "detail=local"),
        ("globex", &b, "detail=local"),
    ] {
        let response = send(instance, service.clone(), get(tenant, "/two")).await;
        let status = cache_status(&response);
        assert!(status.contains(expected), "{tenant}: {status}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// An origin tagging `/products/{n}` with `product-{n}` and `products`.
fn tagged_origin() -> impl Origin {
    common::origin(|_, request| {
        let n = request.uri().path().rsplit('/').next().unwrap().to_owned();
        let headers = vec![
            ("cache-control", "max-age=300".to_owned()),
            ("cache-tag", format!("product-{n}, products")),
            ("surrogate-key", "catalog".to_owned()),
        ];
        (200, headers, n)
    })
    .0
}

async fn purge_by_tag(a: &CacheLayer, b: &CacheLayer) {
    let acme = TenantId::parse("acme").unwrap();
    for tenant in ["acme", "globex"] {
        for n in 1..=3 {
            let uri = format!("/products/{n}");
            let first = send(a, tagged_origin(), get(tenant, &uri)).await;
            assert!(
                first.headers().get("cache-tag").is_none(),
                "tags not sent to clients"
            );
            assert!(first.headers().get("surrogate-key").is_none());
            send(b, tagged_origin(), get(tenant, &uri)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.handle().purge_tag(Some(&acme), "product-2").await, 1);
    let hit = |cache: &CacheLayer, tenant: &'static str, n: u32| {
        let cache = cache.clone();
        async move {
            let uri = format!("/products/{n}");
            let key = cache
                .handle()
                .key_for(Some(&TenantId::parse(tenant).unwrap()), &uri)
                .await;
            cache.store().get(key.as_bytes()).await.is_some()
        }
    };
    let started = Instant::now();
    while hit(b, "acme", 2).await {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(hit(b, "acme", 1).await && hit(a, "acme", 3).await);
    assert!(
        hit(a, "globex", 2).await,
        "another tenant's tag is untouched"
    );

    // The index still lists /products/2 (already gone): three keys deleted.
    assert_eq!(a.handle().purge_tag(Some(&acme), "catalog").await, 3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for n in 1..=3 {
        assert!(
            !hit(a, "acme", n).await && !hit(b, "acme", n).await,
            "acme {n}"
        );
        assert!(
            hit(a, "globex", n).await && hit(b, "globex", n).await,
            "globex {n}"
        );
    }
    assert_eq!(a.handle().purge_tag(Some(&acme), "catalog").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_tag_on_both_tiers_and_instances() {
    redis().await;
    let prefix = unique_prefix("tags");
    purge_by_tag(&instance(&prefix), &instance(&prefix)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_tag_on_the_local_tier() {
    let cache = CacheLayer::builder()
        .local(1024 * 1024)
        .prefix(unique_prefix("tags-local"))
        .build()
        .unwrap();
    // One instance: it is both "a" and "b".
    purge_by_tag(&cache, &cache).await;
}
