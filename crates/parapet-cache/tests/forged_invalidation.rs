//! Invalidation messages are authenticated: a message forged on the real Redis's channel
//! (by anyone who can `PUBLISH` there) does not empty the instances' local tiers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    cache_status, eventually, get, redis, redis_config, request, rest_origin as origin, send,
    unique_prefix,
};
use parapet_cache::{CacheLayer, tenant_prefix};
use parapet_tenant::TenantId;
use redis::AsyncCommands;

fn instance(prefix: &str, secret: Option<&str>) -> CacheLayer {
    let mut builder = CacheLayer::builder()
        .local(4 * 1024 * 1024)
        .redis(redis_config().generation_ttl(Duration::from_secs(60)))
        .prefix(prefix);
    if let Some(secret) = secret {
        builder = builder.invalidation_secret(secret);
    }
    builder.build().unwrap()
}

/// Stores `uri` for `tenant` through `a` and fills `b`'s local tier with it.
async fn warm(a: &CacheLayer, b: &CacheLayer, tenant: &str, uri: &str) {
    let (service, _) = origin();
    send(a, service.clone(), get(tenant, uri)).await;
    send(b, service.clone(), get(tenant, uri)).await;
    let local = send(b, service, get(tenant, uri)).await;
    assert!(
        cache_status(&local).ends_with("detail=local"),
        "{}",
        cache_status(&local)
    );
}

/// Whether `b` answers `uri` for `tenant` from its local tier.
async fn local_hit(b: &CacheLayer, tenant: &str, uri: &str) -> bool {
    let key = b
        .handle()
        .key_for(Some(&TenantId::parse(tenant).unwrap()), uri)
        .await;
    let store = b.store();
    let tiered = store.get(key.as_bytes()).await;
    tiered.is_some_and(|found| found.tier == parapet_cache::store::Tier::Local)
}

/// A fence: a real invalidation from `a` of `/fence` (warmed on `b`); once `b` dropped it,
/// every message published before it has been handled by `b` (one channel, in order).
async fn fence(a: &CacheLayer, b: &CacheLayer) {
    let (service, _) = origin();
    send(a, service, request("PUT", Some("acme"), "/fence", &[])).await;
    let acme = TenantId::parse("acme").unwrap();
    let key = b.handle().key_for(Some(&acme), "/fence").await;
    let store = b.store();
    eventually("the fence reached b", Duration::from_secs(2), || async {
        store.get(key.as_bytes()).await.is_none()
    })
    .await;
}

async fn forge(conn: &mut redis::aio::MultiplexedConnection, channel: &str, payload: &[u8]) {
    let _: i64 = conn.publish(channel, payload).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_do_not_empty_the_local_tier_with_a_secret() {
    let mut conn = redis().await;
    let prefix = unique_prefix("forged-secret");
    let channel = format!("{prefix}invalidate");
    let (a, b) = (
        instance(&prefix, Some("shared secret")),
        instance(&prefix, Some("shared secret")),
    );
    for (tenant, uri) in [("acme", "/doc"), ("globex", "/doc"), ("acme", "/fence")] {
        warm(&a, &b, tenant, uri).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let acme = tenant_prefix(&prefix, Some("acme"));
    let doc = b
        .handle()
        .key_for(Some(&TenantId::parse("acme").unwrap()), "/doc")
        .await;
    let mut forged: Vec<Vec<u8>> = vec![b"p".to_vec(), format!("p{prefix}").into_bytes()];
    forged.push([&b"p"[..], &acme].concat());
    forged.push([&b"k"[..], doc.as_bytes()].concat());
    forged.push([&b"t"[..], doc.as_bytes()].concat());
    // A message with a tag made with another secret.
    let mut wrong = [&b"p"[..], &acme].concat();
    wrong.extend_from_slice(&[0u8; 32]);
    forged.push(wrong);
    for payload in &forged {
        forge(&mut conn, &channel, payload).await;
    }
    fence(&a, &b).await;
    for tenant in ["acme", "globex"] {
        assert!(
            local_hit(&b, tenant, "/doc").await,
            "{tenant}: a forged message was obeyed"
        );
    }
    // No tombstone was left by the forged `t`: Redis still serves the key to a new instance.
    let c = instance(&prefix, Some("shared secret"));
    let (service, _) = origin();
    let from_redis = send(&c, service, get("acme", "/doc")).await;
    assert!(
        cache_status(&from_redis).ends_with("detail=redis"),
        "{}",
        cache_status(&from_redis)
    );

    // A real purge, sealed by an instance holding the secret, still reaches b.
    assert!(
        a.handle()
            .purge_tenant(Some(&TenantId::parse("acme").unwrap()))
            .await
    );
    eventually("the purge reached b", Duration::from_secs(2), || async {
        !local_hit(&b, "acme", "/doc").await
    })
    .await;
    assert!(local_hit(&b, "globex", "/doc").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_messages_are_confined_to_one_tenant_of_this_cache() {
    let mut conn = redis().await;
    let prefix = unique_prefix("forged-plain");
    let channel = format!("{prefix}invalidate");
    let (a, b) = (instance(&prefix, None), instance(&prefix, None));
    for (tenant, uri) in [("acme", "/doc"), ("globex", "/doc"), ("acme", "/fence")] {
        warm(&a, &b, tenant, uri).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Everything, the bare prefix, a prefix cut inside a tenant, another deployment's prefix.
    let cut = tenant_prefix(&prefix, Some("acme"));
    let cut = &cut[..cut.len() - 3];
    for payload in [
        b"p".to_vec(),
        format!("p{prefix}").into_bytes(),
        [&b"p"[..], cut].concat(),
        [&b"p"[..], &tenant_prefix("parapet:cache:", Some("acme"))].concat(),
    ] {
        forge(&mut conn, &channel, &payload).await;
    }
    fence(&a, &b).await;
    for tenant in ["acme", "globex"] {
        assert!(
            local_hit(&b, tenant, "/doc").await,
            "{tenant}: a forged message was obeyed"
        );
    }
    // One tenant's prefix is still obeyed (the cache's own purge announcement).
    forge(
        &mut conn,
        &channel,
        &[&b"p"[..], &tenant_prefix(&prefix, Some("acme"))].concat(),
    )
    .await;
    eventually(
        "the tenant purge reached b",
        Duration::from_secs(2),
        || async { !local_hit(&b, "acme", "/doc").await },
    )
    .await;
    assert!(
        local_hit(&b, "globex", "/doc").await,
        "only that tenant was dropped"
    );
}
