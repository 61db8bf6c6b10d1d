//! Clients paging with huge cursors (3,000 GETs of distinct 60 KB URIs) neither grow Redis
//! past a documented bound nor make the next write's purge slow, with the default
//! `max_uri_length` (nothing stored) and with a limit raised to store them (each long URI is
//! hashed into its key, and the purge deletes its keys in one pipelined round trip and one
//! announcement). Against the real Redis, under a prefix of the test's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{cache_status, get, origin, redis, redis_config, request, send, unique_prefix};
use futures_util::StreamExt;
use parapet_cache::CacheLayer;
use parapet_tenant::TenantId;
use redis::AsyncCommands;

/// Requests made, and the cursor length.
const REQUESTS: usize = 3_000;
const CURSOR_BYTES: usize = 60 * 1024;
/// The bound on what one stored long-cursor response may cost Redis (its key, its encoded
/// value and its tag-index member, as `MEMORY USAGE` counts them).
const BYTES_PER_ENTRY: u64 = 1024;
/// The demanded bound on the write's purge (an optimised build: `cargo test --release`).
const PURGE_BOUND: Duration = Duration::from_millis(50);
/// The bound checked in an unoptimised build instead: there the client's parsing of the 3,000
/// members and the hashing that deduplicates them run about ten times slower (80 to 200 ms
/// measured on a shared two-core machine under a load of 16, 5 ms with nothing stored).
const DEBUG_PURGE_BOUND: Duration = Duration::from_millis(500);

/// The bound for this build.
fn purge_bound() -> Duration {
    if cfg!(debug_assertions) {
        DEBUG_PURGE_BOUND
    } else {
        PURGE_BOUND
    }
}

fn cursor(i: usize) -> String {
    let mut cursor = format!("{i:08}");
    cursor.push_str(&"c".repeat(CURSOR_BYTES - cursor.len()));
    cursor
}

/// The keys under `prefix` and the bytes Redis says they use.
async fn redis_footprint(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> (usize, u64) {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    {
        let mut iter = conn
            .scan_match::<String, Vec<u8>>(format!("{prefix}*"))
            .await
            .unwrap();
        while let Some(key) = iter.next().await {
            keys.push(key.unwrap());
        }
    }
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("MEMORY").arg("USAGE").arg(&key[..]);
    }
    let sizes: Vec<Option<u64>> = if keys.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(conn).await.unwrap()
    };
    (keys.len(), sizes.into_iter().flatten().sum())
}

/// The two tests run one after the other: each measures a purge, which the other's load
/// would slow down.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(max_uri_length: Option<usize>) -> (usize, u64, usize, Duration) {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut conn = redis().await;
    let prefix = unique_prefix("purge-bound");
    let mut builder = CacheLayer::builder()
        .local(16 * 1024 * 1024)
        .redis(redis_config())
        .prefix(&prefix);
    if let Some(limit) = max_uri_length {
        builder = builder.max_uri_length(limit);
    }
    let cache = builder.build().unwrap();
    let (service, _) = origin(|_, _| {
        let headers = vec![
            ("cache-control", "max-age=300".to_owned()),
            ("cache-tag", "leads".to_owned()),
            ("content-type", "application/json".to_owned()),
        ];
        (200, headers, "{\"leads\":[]}".to_owned())
    });
    let statuses: Vec<String> = futures_util::stream::iter(0..REQUESTS)
        .map(|i| {
            let (cache, service) = (cache.clone(), service.clone());
            async move {
                let uri = format!("/api/leads?cursor={}", cursor(i));
                cache_status(&send(&cache, service, get("acme", &uri)).await)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let stored = statuses.iter().filter(|s| s.contains("stored")).count();
    let (keys, bytes) = redis_footprint(&mut conn, &prefix).await;

    // The next write: its unsafe method's invalidation, then the purge of its tag.
    let acme = TenantId::parse("acme").unwrap();
    let started = Instant::now();
    send(
        &cache,
        service.clone(),
        request("POST", Some("acme"), "/api/leads", &[]),
    )
    .await;
    let purged = cache.handle().purge_tag(Some(&acme), "leads").await;
    let took = started.elapsed();
    assert_eq!(purged, stored, "the purge found every stored entry");
    let (left, _) = redis_footprint(&mut conn, &prefix).await;
    assert_eq!(left, 0, "the purge left keys in Redis");
    (stored, bytes, keys, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_cursors_with_the_default_limit_store_nothing() {
    let (stored, bytes, keys, took) = run(None).await;
    eprintln!(
        "default limit: {stored} stored, {keys} keys, {bytes} bytes in Redis, purge {took:?}"
    );
    assert_eq!((stored, keys, bytes), (0, 0, 0));
    assert!(took < PURGE_BOUND, "the write's purge took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_cursors_stored_under_a_raised_limit_stay_bounded_and_purge_fast() {
    let (stored, bytes, keys, took) = run(Some(128 * 1024)).await;
    eprintln!("raised limit: {stored} stored, {keys} keys, {bytes} bytes in Redis, purge {took:?}");
    assert_eq!(stored, REQUESTS);
    // One key per entry, plus the tag index.
    assert_eq!(keys, REQUESTS + 1);
    assert!(
        bytes <= REQUESTS as u64 * BYTES_PER_ENTRY,
        "{bytes} bytes in Redis for {REQUESTS} entries"
    );
    assert!(took < purge_bound(), "the write's purge took {took:?}");
}
