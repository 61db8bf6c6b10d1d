//! Invalidation messages are authenticated: messages forged on the real Redis's invalidation
//! channel (by anyone who may `PUBLISH` there) leave the proxy's local tier alone, while a
//! real purge sealed by another instance with the shared secret still reaches it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use parapet_cache::{CacheHandle, CacheLayer, RedisConfig, tenant_prefix};
use support::{Origin, cc, get, until_status};

async fn proxy(origin: &Origin, prefix: &str) -> (SocketAddr, CacheHandle) {
    let cache = CacheLayer::builder()
        .single_tenant()
        .local(1 << 20)
        .redis(RedisConfig::new(parapet_testkit::redis_url()))
        .prefix(prefix)
        .invalidation_secret("shared secret")
        .build()
        .unwrap();
    let handle = cache.handle();
    (origin.proxy_with(cache).await, handle)
}

async fn warm(proxy: SocketAddr, path: &str) {
    until_status(proxy, path, "detail=local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_invalidations_do_not_empty_the_local_tier() {
    parapet_testkit::require_redis().await;
    let origin = Origin::start(|n, _| (200, cc("max-age=60"), format!("call {n}"))).await;
    let prefix = parapet_testkit::unique_prefix("proxy-forged");
    let (a, _handle_a) = proxy(&origin, &prefix).await;
    let (_b, handle_b) = proxy(&origin, &prefix).await;
    warm(a, "/doc").await;
    warm(a, "/fence").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Forged purges of everything, of the cache's prefix, of its (only) tenant, and a
    // purge with a tag made with another secret.
    let client = redis::Client::open(parapet_testkit::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let tenant = tenant_prefix(&prefix, None);
    let mut wrong_tag = [&b"p"[..], &tenant].concat();
    wrong_tag.extend_from_slice(&[0u8; 32]);
    let forged: Vec<Vec<u8>> = vec![
        b"p".to_vec(),
        format!("p{prefix}").into_bytes(),
        [&b"p"[..], &tenant].concat(),
        [&b"s"[..], &tenant].concat(),
        wrong_tag,
    ];
    let channel = format!("{prefix}invalidate");
    for payload in &forged {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // A fence: a real purge of /fence, sealed by b, published after the forged messages on
    // the same channel; once a has obeyed it, a has handled them all.
    handle_b.purge(None, "/fence").await;
    let mut fenced = false;
    for _ in 0..200 {
        if !get(a, "/fence", &[]).await.cache_status().contains("hit") {
            fenced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fenced, "the real purge never reached a");

    let doc = get(a, "/doc", &[]).await;
    assert_eq!(doc.body, "call 0");
    assert!(
        doc.cache_status().contains("detail=local"),
        "a forged message was obeyed: {}",
        doc.cache_status()
    );
}
