//! An invalidation whose Redis delete fails leaves no stale copy to be served: the instances
//! skip the key in Redis (a tombstone) and retry the delete until it lands.
//!
//! The test starts its own `redis-server` and makes `DEL` fail deterministically with an ACL
//! user that may not run it (`NOPERM`), then allows it again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    RedisServer, cache_status, eventually, free_port, get, request, rest_origin, send,
    unique_prefix,
};
use parapet_cache::{CacheLayer, RedisConfig, Store};
use parapet_tenant::TenantId;
use redis::AsyncCommands;

fn instance(server: &RedisServer, prefix: &str) -> CacheLayer {
    CacheLayer::builder()
        .local(1024 * 1024)
        .redis(
            RedisConfig::new(format!("redis://cache:secret@127.0.0.1:{}", server.port))
                .timeout(Duration::from_millis(500))
                // Refused deletes must not open the breaker for the rest of the test.
                .breaker(1_000, Duration::from_millis(100)),
        )
        .prefix(prefix)
        .build()
        .unwrap()
}

async fn acl(admin: &mut redis::aio::MultiplexedConnection, rules: &[&str]) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("cache");
    for rule in rules {
        cmd.arg(*rule);
    }
    let _: () = cmd.query_async(admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_redis_delete_is_never_served_and_is_retried() {
    let server = RedisServer::start(free_port(), &[]);
    let client = redis::Client::open(server.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    acl(&mut admin, &["on", ">secret", "~*", "&*", "+@all", "-del"]).await;

    let prefix = unique_prefix("repair");
    let (a, b) = (instance(&server, &prefix), instance(&server, &prefix));
    let service = || rest_origin().0;
    // A stores /doc in Redis; B copies it into its local tier.
    send(&a, service(), get("acme", "/doc")).await;
    assert!(
        cache_status(&send(&b, service(), get("acme", "/doc")).await).ends_with("detail=redis")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acme = TenantId::parse("acme").unwrap();
    let key = a.handle().key_for(Some(&acme), "/doc").await;

    // A PUT on A: Redis refuses the delete, so the old copy stays in Redis ...
    let put = send(&a, service(), request("PUT", Some("acme"), "/doc", &[])).await;
    assert!(cache_status(&put).contains("invalidated"));
    let left: bool = admin.exists(&key.as_bytes()[..]).await.unwrap();
    assert!(
        left,
        "the delete was refused, so the old copy is still in Redis"
    );
    // ... but neither instance serves it: A left a tombstone and told B (over pub/sub).
    for cache in [&a, &b] {
        let store = cache.store();
        eventually(
            "stale copy no longer served",
            Duration::from_secs(2),
            || async { store.get(key.as_bytes()).await.is_none() },
        )
        .await;
    }
    assert!(a.stats().redis_errors >= 2, "{:?}", a.stats());

    // Deletes allowed again: the background retry removes the copy from Redis.
    acl(&mut admin, &["+del"]).await;
    let took = eventually("the delete retried", Duration::from_secs(15), || {
        let mut admin = admin.clone();
        let key = key.clone();
        async move {
            let left: bool = admin.exists(&key.as_bytes()[..]).await.unwrap();
            !left
        }
    })
    .await;
    eprintln!("the refused delete landed {took:?} after DEL was allowed");
    // Once repaired (each instance's own retry clears its tombstone), the key is shared
    // through Redis again as usual.
    let again = send(&b, service(), get("acme", "/doc")).await;
    assert!(
        cache_status(&again).contains("stored"),
        "{}",
        cache_status(&again)
    );
    let store = a.store();
    eventually("tombstone cleared", Duration::from_secs(15), || async {
        store.get(key.as_bytes()).await.is_some()
    })
    .await;
    let from_redis = send(&a, service(), get("acme", "/doc")).await;
    assert!(
        cache_status(&from_redis).contains("hit"),
        "{}",
        cache_status(&from_redis)
    );
}

/// During a failover the broken connection refuses the announcement as well as the delete: the
/// other instances hear of neither. When the retried delete lands it is announced, so they drop
/// their local copies then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_delete_is_announced_when_its_first_announcement_was_lost() {
    let server = RedisServer::start(free_port(), &[]);
    let client = redis::Client::open(server.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    acl(&mut admin, &["on", ">secret", "~*", "&*", "+@all"]).await;

    let prefix = unique_prefix("repair-announce");
    let (a, b) = (instance(&server, &prefix), instance(&server, &prefix));
    let service = || rest_origin().0;
    // A stores /doc in Redis; B copies it into its local tier (and subscribes).
    send(&a, service(), get("acme", "/doc")).await;
    assert!(
        cache_status(&send(&b, service(), get("acme", "/doc")).await).ends_with("detail=redis")
    );
    let local = cache_status(&send(&b, service(), get("acme", "/doc")).await);
    assert!(local.ends_with("detail=local"), "{local}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acme = TenantId::parse("acme").unwrap();
    let key = a.handle().key_for(Some(&acme), "/doc").await;

    // Neither the delete nor any announcement reaches Redis.
    acl(&mut admin, &["-del", "-publish"]).await;
    a.handle().purge(Some(&acme), "/doc").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store = b.store();
    assert!(
        store.get(key.as_bytes()).await.is_some(),
        "B heard nothing yet: its local copy is still there"
    );

    // Redis takes both again: A's retry deletes the copy and announces it; B drops its own.
    acl(&mut admin, &["+del", "+publish"]).await;
    eventually(
        "B's local copy dropped once the retried delete landed",
        Duration::from_secs(10),
        || async { store.get(key.as_bytes()).await.is_none() },
    )
    .await;
}
