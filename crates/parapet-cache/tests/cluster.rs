//! Two `CacheLayer` instances sharing a Redis Cluster of three masters (started by the test):
//! entries of several tenants land on different nodes, and purge by key, by tag and by tenant,
//! and an unsafe method's invalidation, work on the cluster and reach the other instance's
//! local tier. No command may fail (a cross-slot command would, with `CROSSSLOT`). A cluster
//! that is down when the layer starts is a miss, and is used once it is up.
//!
//! Invalidations travel over sharded pub/sub: each instance's subscriber is counted by
//! `PUBSUB SHARDNUMSUB` on the node owning the channel's slot and by no plain `PUBSUB NUMSUB`,
//! and it follows the slot to another node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Origin, RedisCluster, cache_status, eventually, get, request, send, unique_prefix};
use parapet_cache::{CacheLayer, RedisConfig, Store};
use parapet_tenant::TenantId;

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const PATHS: [&str; 3] = ["/a", "/b", "/c"];

/// An origin whose GETs are cacheable for 5 min and tagged `all` and `p<path>`.
fn origin() -> (impl Origin, Arc<AtomicUsize>) {
    common::origin(|_, request| {
        let path = request.uri().path().trim_start_matches('/').to_owned();
        let headers = if request.method() == http::Method::GET {
            vec![
                ("cache-control", "max-age=300".to_owned()),
                ("cache-tag", format!("all, p{path}")),
            ]
        } else {
            vec![("cache-control", "no-store".to_owned())]
        };
        (200, headers, path)
    })
}

fn instance(cluster: &RedisCluster, prefix: &str) -> CacheLayer {
    CacheLayer::builder()
        .local(4 * 1024 * 1024)
        .redis(
            RedisConfig::cluster(cluster.urls())
                .timeout(Duration::from_millis(1000))
                // Purges must reach the other instance through pub/sub, not a TTL.
                .generation_ttl(Duration::from_secs(60)),
        )
        .prefix(prefix)
        .build()
        .unwrap()
}

/// Whether `cache` (local tier, then the cluster) still has `path` for `tenant`.
async fn has(cache: &CacheLayer, tenant: &str, path: &str) -> bool {
    let tenant = TenantId::parse(tenant).unwrap();
    let key = cache.handle().key_for(Some(&tenant), path).await;
    cache.store().get(key.as_bytes()).await.is_some()
}

/// Waits until `cache` no longer has `path` for `tenant`; returns how long it took.
async fn gone(cache: &CacheLayer, tenant: &str, path: &str) -> Duration {
    let what = format!("{tenant} {path} invalidated");
    eventually(&what, Duration::from_secs(3), || async {
        !has(cache, tenant, path).await
    })
    .await
}

/// Sends a GET through `cache` and returns its `Cache-Status`.
async fn status_of(cache: &CacheLayer, tenant: &str, path: &str) -> String {
    let (service, _) = origin();
    cache_status(&send(cache, service, get(tenant, path)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_and_invalidation_on_a_cluster_reach_every_instance() {
    let cluster = RedisCluster::start();
    let prefix = unique_prefix("cluster");
    let (a, b) = (instance(&cluster, &prefix), instance(&cluster, &prefix));

    // A stores every entry in the cluster; B reads it from the cluster, then locally.
    for tenant in TENANTS {
        for path in PATHS {
            let first = status_of(&a, tenant, path).await;
            assert!(first.contains("stored"), "{tenant}{path}: {first}");
            let from_cluster = status_of(&b, tenant, path).await;
            assert!(
                from_cluster.ends_with("detail=redis"),
                "{tenant}{path}: {from_cluster}"
            );
            let local = status_of(&b, tenant, path).await;
            assert!(local.ends_with("detail=local"), "{tenant}{path}: {local}");
        }
    }
    // The keys are spread over the masters (so multi-key commands would cross slots).
    let with_keys = cluster
        .nodes
        .iter()
        .filter(|node| {
            let size = cluster.cli(node.port, &["dbsize"]);
            size.trim().parse::<u64>().unwrap_or(0) > 0
        })
        .count();
    assert!(with_keys >= 2, "keys on {with_keys} of 3 nodes");
    // Both subscribers listen with SSUBSCRIBE on the node owning the channel's slot, and
    // none with a plain SUBSCRIBE anywhere.
    let channel = format!("{prefix}invalidate");
    let owner = owner_of(&cluster, &channel);
    wait_for_shard_subscribers(&cluster, owner, &channel, 2).await;
    for node in &cluster.nodes {
        let plain = cluster.cli(node.port, &["pubsub", "numsub", &channel]);
        assert!(
            plain.trim().ends_with('0'),
            "NUMSUB on {}: {plain}",
            node.port
        );
        if node.port != owner {
            let sharded = shard_subscribers(&cluster, node.port, &channel);
            assert_eq!(sharded, 0, "SHARDNUMSUB on non-owner {}", node.port);
        }
    }

    // Purge by key on A: gone from B's local tier and from the cluster.
    let acme = TenantId::parse("acme").unwrap();
    a.handle().purge(Some(&acme), "/a").await;
    let took = gone(&b, "acme", "/a").await;
    eprintln!("purge by key reached the other instance in {took:?}");
    assert!(has(&b, "acme", "/b").await && has(&b, "globex", "/a").await);

    // Purge by tag: the tenant's entries tagged `pb` (one), then `all` (the rest).
    let globex = TenantId::parse("globex").unwrap();
    assert_eq!(a.handle().purge_tag(Some(&globex), "pb").await, 1);
    gone(&b, "globex", "/b").await;
    assert!(has(&b, "globex", "/a").await && has(&b, "globex", "/c").await);
    assert!(
        has(&b, "acme", "/b").await,
        "another tenant's tag is untouched"
    );
    // `all` still lists /b (deleted above, not expired): three keys deleted.
    assert_eq!(a.handle().purge_tag(Some(&globex), "all").await, 3);
    for path in PATHS {
        gone(&b, "globex", path).await;
    }

    // Purge by tenant: one INCR; B learns the generation from the announcement.
    let initech = TenantId::parse("initech").unwrap();
    let before = b.handle().key_for(Some(&initech), "/a").await;
    assert!(a.handle().purge_tenant(Some(&initech)).await);
    let (handle, initech_ref, before_ref) = (b.handle(), &initech, &before);
    let took = eventually("purge announced", Duration::from_secs(3), || async {
        handle.key_for(Some(initech_ref), "/a").await != *before_ref
    })
    .await;
    eprintln!("purge by tenant reached the other instance in {took:?}");
    for path in PATHS {
        assert!(!has(&a, "initech", path).await && !has(&b, "initech", path).await);
        let status = status_of(&b, "initech", path).await;
        assert!(status.contains("fwd=uri-miss"), "initech{path}: {status}");
    }

    // An unsafe method on A invalidates the target on B.
    let (service, _) = origin();
    let put = send(&a, service, request("PUT", Some("umbrella"), "/c", &[])).await;
    assert!(cache_status(&put).contains("invalidated"));
    let took = gone(&b, "umbrella", "/c").await;
    eprintln!("unsafe-method invalidation reached the other instance in {took:?}");

    // Untouched entries are still served from B's local tier.
    assert!(
        status_of(&b, "umbrella", "/a")
            .await
            .ends_with("detail=local")
    );
    assert!(status_of(&b, "acme", "/c").await.ends_with("detail=local"));
    for (name, cache) in [("a", &a), ("b", &b)] {
        let stats = cache.stats();
        assert_eq!(
            stats.redis_errors, 0,
            "{name}: no command failed: {stats:?}"
        );
        assert!(!stats.breaker_open, "{name}: {stats:?}");
    }

    // The channel's slot moves to another node: the server drops the shard subscriptions,
    // the subscribers follow the slot, and invalidations reach B again.
    let slot = cluster.cli(owner, &["cluster", "keyslot", &channel]);
    let slot = slot.trim();
    let target = cluster
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|p| *p != owner)
        .unwrap();
    let target_id = cluster.cli(target, &["cluster", "myid"]);
    for node in &cluster.nodes {
        let set = cluster.cli(
            node.port,
            &["cluster", "setslot", slot, "node", target_id.trim()],
        );
        assert!(set.contains("OK"), "SETSLOT on {}: {set}", node.port);
    }
    wait_for_shard_subscribers(&cluster, target, &channel, 2).await;
    assert_eq!(shard_subscribers(&cluster, owner, &channel), 0);
    // B re-read what it had (its local tier was cleared after the gap), then A purges.
    let umbrella = TenantId::parse("umbrella").unwrap();
    assert!(
        status_of(&b, "umbrella", "/b")
            .await
            .ends_with("detail=redis")
    );
    assert!(
        status_of(&b, "umbrella", "/b")
            .await
            .ends_with("detail=local")
    );
    a.handle().purge(Some(&umbrella), "/b").await;
    let took = gone(&b, "umbrella", "/b").await;
    eprintln!("after the slot moved, purge by key reached the other instance in {took:?}");
}

/// The port of the master owning `channel`'s slot (from `CLUSTER NODES`).
fn owner_of(cluster: &RedisCluster, channel: &str) -> u16 {
    let port = cluster.nodes[0].port;
    let slot: u16 = cluster
        .cli(port, &["cluster", "keyslot", channel])
        .trim()
        .parse()
        .unwrap();
    let nodes = cluster.cli(port, &["cluster", "nodes"]);
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let owns = fields.iter().skip(8).any(|range| {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            match (start.parse::<u16>(), end.parse::<u16>()) {
                (Ok(start), Ok(end)) => (start..=end).contains(&slot),
                _ => false,
            }
        });
        if owns {
            let address = fields[1].split('@').next().unwrap();
            return address.rsplit_once(':').unwrap().1.parse().unwrap();
        }
    }
    panic!("no node owns slot {slot}: {nodes}");
}

/// `PUBSUB SHARDNUMSUB channel` on the node at `port`.
fn shard_subscribers(cluster: &RedisCluster, port: u16, channel: &str) -> u64 {
    let out = cluster.cli(port, &["pubsub", "shardnumsub", channel]);
    out.lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_for_shard_subscribers(cluster: &RedisCluster, port: u16, channel: &str, n: u64) {
    eventually(
        &format!("{n} shard subscribers on {port}"),
        Duration::from_secs(5),
        || async { shard_subscribers(cluster, port, channel) == n },
    )
    .await;
}

/// A cluster that is not there yet is a miss (fail open), and is used once it comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_comes_up_later_is_used() {
    let ports = [
        common::free_port(),
        common::free_port(),
        common::free_port(),
    ];
    let cache = CacheLayer::builder()
        .redis(
            RedisConfig::cluster(ports.map(|p| format!("redis://127.0.0.1:{p}")))
                .timeout(Duration::from_millis(500))
                .breaker(3, Duration::from_millis(200)),
        )
        .prefix(unique_prefix("cluster-late"))
        .build()
        .unwrap();
    let (service, calls) = origin();
    for _ in 0..3 {
        let response = send(&cache, service.clone(), get("acme", "/a")).await;
        assert_eq!(
            response.status(),
            200,
            "fails open while the cluster is down"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(cache.stats().redis_errors > 0, "{:?}", cache.stats());

    let _cluster = RedisCluster::start_on(ports);
    let cache = &cache;
    let service = &service;
    eventually(
        "the cluster tier used",
        Duration::from_secs(20),
        || async move {
            let status = status_of_with(cache, service.clone(), "/b").await;
            status.contains("detail=redis")
        },
    )
    .await;
}

/// Sends a GET through `cache` to `service` and returns its `Cache-Status`.
async fn status_of_with(cache: &CacheLayer, service: impl Origin, path: &str) -> String {
    cache_status(&send(cache, service, get("acme", path)).await)
}
