//! Both tiers against the real Redis: TTLs, L2 hits filling L1, corrupted values, fail-open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use common::{Origin, cache_status, get, redis, redis_config, send, text, unique_prefix};
use http::{Request, Response};
use parapet_cache::{CacheLayer, RedisConfig};
use redis::AsyncCommands;
use tower::service_fn;

/// An origin answering `"<path> #n"` with `Cache-Control: cache_control`, counting calls.
fn counting_origin(cache_control: &'static str) -> (impl Origin, Arc<AtomicUsize>) {
    common::origin(move |n, request| {
        let headers = vec![("cache-control", cache_control.to_owned())];
        (200, headers, format!("{} #{n}", request.uri().path()))
    })
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<Vec<u8>> {
    // KEYS is fine in a test, on this test's own prefix.
    conn.keys(format!("{prefix}*")).await.unwrap()
}

#[tokio::test]
async fn redis_keys_carry_a_ttl_and_l2_hits_fill_l1() {
    let mut conn = redis().await;
    let prefix = unique_prefix("tiers");
    let build = || {
        CacheLayer::builder()
            .local(4 * 1024 * 1024)
            .redis(redis_config())
            .prefix(prefix.clone())
            .build()
            .unwrap()
    };
    let (first_instance, second_instance) = (build(), build());
    let (service, calls) = counting_origin("max-age=120");

    let stored = send(&first_instance, service.clone(), get("acme", "/shared")).await;
    assert!(cache_status(&stored).contains("stored"));
    let stored_keys = keys(&mut conn, &prefix).await;
    assert_eq!(stored_keys.len(), 1, "one key for one URI");
    let ttl: i64 = conn.pttl(&stored_keys[0]).await.unwrap();
    assert!(
        (110_000..=120_000).contains(&ttl),
        "ttl {ttl} ms follows max-age"
    );

    // A second instance with an empty local tier finds it in Redis ...
    let from_redis = send(&second_instance, service.clone(), get("acme", "/shared")).await;
    assert_eq!(cache_status(&from_redis).split("; ").nth(1), Some("hit"));
    assert!(
        cache_status(&from_redis).ends_with("detail=redis"),
        "{}",
        cache_status(&from_redis)
    );
    assert_eq!(text(from_redis).await, "/shared #0");
    // ... and fills its local tier: the next hit does not need Redis.
    let from_local = send(&second_instance, service.clone(), get("acme", "/shared")).await;
    assert!(
        cache_status(&from_local).ends_with("detail=local"),
        "{}",
        cache_status(&from_local)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = second_instance.stats();
    assert_eq!((stats.redis_hits, stats.local_hits, stats.hits), (1, 1, 2));

    // Large bodies are stored compressed.
    let big = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .header("cache-control", "max-age=60")
                .body(Body::from("abcdefgh".repeat(10_000)))
                .unwrap(),
        )
    });
    send(&first_instance, big, get("acme", "/big")).await;
    let key = first_instance
        .handle()
        .key_for(Some(&"acme".parse().unwrap()), "/big")
        .await;
    let raw: Vec<u8> = conn.get(&key.as_bytes()[..]).await.unwrap();
    assert!(
        !raw.is_empty() && raw.len() < 10_000,
        "80 kB body stored lz4-compressed in {} bytes",
        raw.len()
    );
}

#[tokio::test]
async fn a_corrupted_redis_value_is_a_miss() {
    let mut conn = redis().await;
    let prefix = unique_prefix("corrupt");
    let cache = CacheLayer::builder()
        .redis(redis_config())
        .prefix(prefix.clone())
        .build()
        .unwrap();
    let (service, calls) = counting_origin("max-age=60");
    send(&cache, service.clone(), get("acme", "/x")).await;
    let key = cache
        .handle()
        .key_for(Some(&"acme".parse().unwrap()), "/x")
        .await;
    for garbage in [
        &b"garbage"[..],
        &[1, 0, 0xff, 0xff][..],
        &[][..],
        &[1u8; 300][..],
    ] {
        let _: () = conn.set(&key.as_bytes()[..], garbage).await.unwrap();
        let response = send(&cache, service.clone(), get("acme", "/x")).await;
        assert!(
            cache_status(&response).contains("fwd=uri-miss"),
            "{garbage:?}: {}",
            cache_status(&response)
        );
        assert_eq!(response.status(), 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // The miss stored a good value again.
    let response = send(&cache, service, get("acme", "/x")).await;
    assert!(cache_status(&response).contains("hit"));
}

#[tokio::test]
async fn unreachable_redis_fails_open_and_opens_the_breaker() {
    // A port nothing listens on: bind, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = CacheLayer::builder()
        .redis(
            RedisConfig::new(format!("redis://127.0.0.1:{port}"))
                .timeout(Duration::from_millis(50))
                .breaker(3, Duration::from_secs(30)),
        )
        .prefix(unique_prefix("down"))
        .build()
        .unwrap();
    let (service, calls) = counting_origin("max-age=60");
    let started = Instant::now();
    for i in 0..20 {
        let response = send(&cache, service.clone(), get("acme", "/down")).await;
        assert_eq!(response.status(), 200, "request {i} succeeds without Redis");
        assert_eq!(text(response).await, format!("/down #{i}"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    let stats = cache.stats();
    assert!(stats.breaker_open, "{stats:?}");
    assert_eq!(stats.breaker_opens, 1);
    assert!(
        stats.redis_errors >= 3 && stats.redis_errors <= 4,
        "{stats:?}"
    );
    assert!(stats.redis_skipped > 20, "{stats:?}");
    // With the breaker open, requests do not wait on Redis at all.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Tag indexes do not keep expired keys: each add trims the members whose entries expired,
/// the index expires with its longest-lived member, and a purge counts live members only.
#[tokio::test]
async fn tag_indexes_drop_expired_members() {
    let mut conn = redis().await;
    let cache = CacheLayer::builder()
        .local(1024 * 1024)
        .redis(redis_config())
        .prefix(unique_prefix("tag-trim"))
        .build()
        .unwrap();
    let (short, _) = common::origin(|_, _| {
        let headers = vec![
            ("cache-control", "max-age=1".to_owned()),
            ("cache-tag", "news".to_owned()),
        ];
        (200, headers, "short".to_owned())
    });
    for path in ["/s1", "/s2", "/s3"] {
        let response = send(&cache, short.clone(), get("acme", path)).await;
        assert!(cache_status(&response).contains("stored"));
    }
    let acme = "acme".parse().unwrap();
    let index = cache
        .handle()
        .key_for(Some(&acme), "/s1")
        .await
        .tag_index("news");
    let members: usize = conn.zcard(&index[..]).await.unwrap();
    assert_eq!(members, 3);
    let ttl: i64 = conn.pttl(&index[..]).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 1_000,
        "the index lives as long as its members: {ttl}"
    );

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (long, _) = common::origin(|_, _| {
        let headers = vec![
            ("cache-control", "max-age=300".to_owned()),
            ("cache-tag", "news".to_owned()),
        ];
        (200, headers, "long".to_owned())
    });
    send(&cache, long, get("acme", "/l1")).await;
    let members: usize = conn.zcard(&index[..]).await.unwrap();
    assert_eq!(members, 1, "the three expired members were trimmed on add");
    let ttl: i64 = conn.pttl(&index[..]).await.unwrap();
    assert!(
        ttl > 250_000,
        "refreshed to the new member's retention: {ttl}"
    );

    assert_eq!(cache.handle().purge_tag(Some(&acme), "news").await, 1);
    let exists: bool = conn.exists(&index[..]).await.unwrap();
    assert!(!exists, "a purge removes the index");
}
