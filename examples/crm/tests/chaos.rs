//! The demo under a steady load of mixed reads and writes while its servers fail: Redis killed
//! and restarted, Redis frozen (`SIGSTOP`), PostgreSQL stopped and started.
//!
//! Each test starts the servers it breaks (a `redis-server` on a free port, a PostgreSQL
//! cluster of its own) and stops them itself; the machine's shared servers are never touched.
//! The load ([`support::Load`]) checks every answer as it arrives: a write is a `201`, a read a
//! `200` with the tenant's own leads, never older than a write answered before it was sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use example_crm::app::{self, Demo};
use http::StatusCode;
use parapet::CacheHandle;
use parapet_testkit::{RedisServer, free_port, unique_prefix};
use parapet_tests::{TestDb, cluster::TempCluster};
use support::{LISTS, Load, Res, get, post_lead, send, strict};

const TENANTS: [&str; 2] = ["acme", "globex"];

/// The demo as `main.rs` starts it, on `database_url` with Redis at `redis_url`.
async fn demo(database_url: &str, redis_url: &str, extra: &[(&str, &str)]) -> Demo {
    let prefix = unique_prefix("crm-chaos");
    let mut vars = vec![
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("PARAPET_CACHE_PREFIX", prefix.as_str()),
        ("PARAPET_TELEMETRY", "off"),
        // The steady load asks more of globex than its free plan allows: these tests are
        // about outages, not rate limits.
        ("PARAPET_QUOTA", "off"),
    ];
    vars.extend_from_slice(extra);
    app::build(
        vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())),
        50,
    )
    .await
    .unwrap_or_else(|e| panic!("the demo did not start: {e}"))
}

/// Waits until `done()` holds, at most `limit`.
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lookups Redis answered, a hit or a miss: the Redis tier at work. (With the local tier in
/// front, a single instance reads Redis after local misses, which its writes' purges cause.)
fn redis_answers(cache: &CacheHandle) -> u64 {
    let stats = cache.stats();
    stats.redis_hits + stats.redis_misses
}

/// Keys in the test's own Redis (`DBSIZE`).
fn keys_in(redis: &RedisServer) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string(), "DBSIZE"])
        .output()
        .expect("redis-cli must be installed (Debian package redis-tools) for this test");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// After the load: every list of every tenant shows the tenant's last write.
async fn assert_last_writes_visible(demo: &Demo, marks: &[(String, Option<(String, i64)>)]) {
    assert_eq!(
        marks.len(),
        TENANTS.len(),
        "every tenant's writer wrote: {marks:?}"
    );
    for (tenant, mark) in marks {
        let (at, id) = mark.clone().expect("the writer wrote");
        for uri in LISTS {
            let res = send(&demo.router, get(tenant, uri)).await;
            assert_eq!(res.status, StatusCode::OK, "{tenant} {uri}: {}", res.text());
            let body = res.json().unwrap();
            let first = &body["items"][0];
            assert!(
                first["created_at"].as_str().unwrap() >= at.as_str(),
                "{tenant} {uri}: newest {first}, last write {at} #{id}"
            );
            if uri.starts_with("/api/leads") {
                assert_eq!(first["id"], id, "{tenant} {uri}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_nothing_and_loses_no_invalidation() {
    let db = TestDb::create("crm_chaos_redis_kill").await;
    let mut redis = RedisServer::start(free_port(), &[]);
    let demo = demo(db.url(), &redis.url(), &[]).await;
    let cache = demo.cache.clone().expect("the cache is on");

    let load = Load::start(
        &demo.router,
        &TENANTS,
        2,
        Duration::from_millis(2),
        strict(),
    );
    until("redis answers lookups", Duration::from_secs(10), || {
        redis_answers(&cache) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = load.counts();

    redis.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let while_down = cache.stats();
    let answered_down = redis_answers(&cache);
    let during = load.counts();
    assert!(
        during.0 > before.0 + 5 && during.1 > before.1 + 20,
        "requests kept being answered while Redis was down: {before:?} then {during:?}"
    );

    // Same port, empty (no persistence), as after a crash.
    redis.restart();
    until(
        "the Redis tier is used again after the restart",
        Duration::from_secs(15),
        || !cache.stats().breaker_open && redis_answers(&cache) > answered_down + 20,
    )
    .await;
    // Watched rather than read once: the writers invalidate their tenant's lists every few
    // milliseconds, and a response fetched across an invalidation is not stored, so on a loaded
    // machine the store can lag the first lookups (CI once read an empty Redis right here).
    until(
        "responses are stored in the restarted Redis",
        Duration::from_secs(15),
        || keys_in(&redis) > 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop(Duration::from_secs(5)).await;

    assert_eq!(
        report.failure_count, 0,
        "requests failed: {:#?}",
        report.failures
    );
    assert_eq!(
        report.stale_count, 0,
        "reads older than a write answered before them: {:#?}",
        report.stale
    );
    assert!(
        report.writes > 50 && report.reads > 200,
        "{} writes, {} reads",
        report.writes,
        report.reads
    );
    assert!(
        while_down.breaker_opens >= 1,
        "the breaker opened while Redis was down: {while_down:?}"
    );
    assert_last_writes_visible(&demo, &report.marks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_requests_the_cache_budget_not_its_outage() {
    let db = TestDb::create("crm_chaos_redis_frozen").await;
    let redis = RedisServer::start(free_port(), &[]);
    let demo = demo(db.url(), &redis.url(), &[]).await;
    let cache = demo.cache.clone().expect("the cache is on");

    let load = Load::start(
        &demo.router,
        &TENANTS,
        2,
        Duration::from_millis(2),
        strict(),
    );
    until("redis answers lookups", Duration::from_secs(10), || {
        redis_answers(&cache) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Frozen for 4 s: its port still accepts connections, nothing is answered.
    const FROZEN: Duration = Duration::from_secs(4);
    let frozen_from = load.elapsed();
    let counts_before = load.counts();
    redis.pause();
    tokio::time::sleep(FROZEN).await;
    let counts_frozen = load.counts();
    redis.resume();
    let thawed_at = load.elapsed();
    let frozen_stats = cache.stats();
    let answered_frozen = redis_answers(&cache);
    until(
        "the Redis tier is used again after the freeze",
        Duration::from_secs(15),
        || !cache.stats().breaker_open && redis_answers(&cache) > answered_frozen + 20,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop(Duration::from_secs(5)).await;

    assert_eq!(
        report.failure_count, 0,
        "requests failed: {:#?}",
        report.failures
    );
    assert_eq!(
        report.stale_count, 0,
        "reads older than a write answered before them (frozen from {frozen_from:?} to \
         {thawed_at:?}): {:#?}",
        report.stale
    );
    assert!(
        counts_frozen.0 > counts_before.0 + 5 && counts_frozen.1 > counts_before.1 + 20,
        "requests kept being answered while Redis was frozen: {counts_before:?} then \
         {counts_frozen:?}"
    );
    assert!(
        frozen_stats.redis_errors > 0 && frozen_stats.breaker_opens >= 1,
        "the frozen Redis timed out and opened the breaker: {frozen_stats:?}"
    );
    // Each Redis operation has a 50 ms budget and the breaker opens after 5 failures; a write
    // (its deletes tried twice, the tag purge, the announcements) makes the most operations.
    // Handler time and this shared machine get a generous second: a request waiting for
    // Redis to come back would take the whole freeze.
    let bound = 10 * Duration::from_millis(50) + Duration::from_secs(1);
    assert!(bound < FROZEN);
    let during: Vec<_> = report
        .samples
        .iter()
        .filter(|s| s.sent >= frozen_from && s.sent < thawed_at)
        .collect();
    assert!(
        during.len() > 25,
        "{} requests during the freeze",
        during.len()
    );
    let slowest = during.iter().map(|s| s.took).max().unwrap();
    assert!(
        slowest < bound,
        "a request sent while Redis was frozen took {slowest:?} (bound {bound:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_is_a_quick_503_and_the_same_app_recovers() {
    let cluster = TempCluster::start();
    let database_url = format!("postgres://postgres@127.0.0.1:{}/crm_chaos", cluster.port());
    let redis = RedisServer::start(free_port(), &[]);
    let demo = demo(
        &database_url,
        &redis.url(),
        &[("PARAPET_POOL_WAIT_TIMEOUT_MS", "1000")],
    )
    .await;
    // A third tenant nobody asks for before the outage: its lookup meets the stopped server.
    {
        let admin = parapet_testkit::connect(&database_url).await;
        admin
            .execute(
                "INSERT INTO tenants (id, name, plan) VALUES ('initech', 'Initech', 'free')",
                &[],
            )
            .await
            .unwrap();
    }

    // While PostgreSQL is down, a read is a 200 only from the cache; anything else must be a
    // 503 problem.
    let accept: support::Accept = std::sync::Arc::new(|res: &Res| {
        res.status == StatusCode::SERVICE_UNAVAILABLE && res.is_problem()
    });
    let load = Load::start(&demo.router, &TENANTS, 2, Duration::from_millis(2), accept);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_from = load.elapsed();
    cluster.pg_stop();

    tokio::time::sleep(Duration::from_secs(1)).await;
    // The tenant not cached yet: its directory lookup fails, quickly and as a problem.
    let started = Instant::now();
    let res = send(&demo.router, get("initech", "/api/leads?limit=5")).await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    assert!(res.is_problem(), "{}", res.text());
    assert!(started.elapsed() < Duration::from_secs(3));
    let res = send(
        &demo.router,
        post_lead("acme", "Down Dora", "dora@acme.example"),
    )
    .await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    assert!(res.is_problem(), "{}", res.text());
    assert!(
        !res.text().contains("127.0.0.1") && !res.text().contains("connection"),
        "no internals: {}",
        res.text()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.pg_start();
    let restarted_at = load.elapsed();
    // The same app: writes are answered again, and the tenant whose lookup failed resolves
    // (a failed lookup is not remembered as an unknown tenant).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = send(&demo.router, get("initech", "/api/leads?limit=5")).await;
        if res.status == StatusCode::OK {
            break;
        }
        assert_eq!(
            res.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            res.text()
        );
        assert!(
            Instant::now() < deadline,
            "initech still failing 15 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes_back = load.counts().0;
    until(
        "writes succeed again after the restart",
        Duration::from_secs(15),
        || load.counts().0 > writes_back + 10,
    )
    .await;
    let report = load.stop(Duration::from_secs(5)).await;

    assert_eq!(
        report.failure_count, 0,
        "answers neither normal nor a 503 problem: {:#?}",
        report.failures
    );
    assert_eq!(
        report.stale_count, 0,
        "reads older than a write answered before them: {:#?}",
        report.stale
    );
    let outage: Vec<_> = report
        .samples
        .iter()
        .filter(|s| s.sent >= stopped_from && s.sent < restarted_at)
        .collect();
    let refused = outage.iter().filter(|s| s.status == 503).count();
    assert!(
        refused > 10,
        "requests met the outage: {refused} of {} were 503",
        outage.len()
    );
    // The checkout waits at most 1 s, the directory's query 2 s; nothing hangs.
    let slowest = outage.iter().map(|s| s.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(3),
        "a request during the outage took {slowest:?}"
    );
    assert_last_writes_visible(&demo, &report.marks).await;
}
