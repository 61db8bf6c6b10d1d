//! Cache and pool metrics of a real stack (telemetry → tenant → cache → pool → handler, on real
//! Redis and PostgreSQL) arrive at an OTLP/HTTP receiver with the values the layers counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::State, routing::get};
use http::{Request, header};
use opentelemetry::metrics::MeterProvider as _;
use parapet_cache::{CacheLayer, RedisConfig};
use parapet_pool::{Db, DbError, PoolLayer, TenantPools};
use parapet_telemetry::{TelemetryBuilder, TelemetryLayer, metrics};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use parapet_tests::TestDb;
use tokio::sync::Notify;
use tower::ServiceExt;

use parapet_testkit::{
    otlp::{self, attrs, find, int_points},
    redis_url, require_redis, unique_prefix,
};

/// Lets the test hold a request inside its handler, with its connection checked out.
#[derive(Clone, Default)]
struct Gate {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_and_pool_metrics_arrive_over_otlp() {
    require_redis().await;
    let db = TestDb::create("telemetry_metrics").await;
    let (addr, received) = otlp::http_receiver();
    let (_subscriber, guard) = TelemetryBuilder::from_env_map([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_SERVICE_NAME", "crm-api".to_owned()),
        // Exports happen when the test flushes, not on a timer.
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".to_owned()),
    ])
    .log_output(false)
    .build()
    .unwrap();
    let meter = guard.meter_provider().meter("parapet");

    let pools = TenantPools::builder(db.url())
        .budget(4)
        .max_per_pool(3)
        .build()
        .await
        .unwrap();
    let cache = CacheLayer::builder()
        .local(8 << 20)
        .redis(RedisConfig::new(redis_url()).timeout(Duration::from_millis(500)))
        .prefix(unique_prefix("telemetry_metrics"))
        .build()
        .unwrap();
    metrics::observe_cache(&meter, cache.handle());
    metrics::observe_pool(&meter, pools.clone());
    let _memory = parapet_telemetry::MemoryMonitor::new()
        .interval(Duration::from_millis(10))
        .meter(meter.clone())
        .start()
        .unwrap();

    let gate = Gate::default();
    let directory =
        StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("acme").unwrap()));
    let app = Router::new()
        .route(
            "/api/leads",
            get(|db: Db| async move {
                let row = db.query_one("SELECT 41 + 1", &[]).await?;
                Ok::<_, DbError>((
                    [(header::CACHE_CONTROL, "max-age=30")],
                    format!("{} for {}", row.get::<_, i32>(0), db.tenant()),
                ))
            })
            .post(|db: Db| async move {
                db.execute("SELECT 1", &[]).await?;
                Ok::<_, DbError>("created")
            }),
        )
        .route(
            "/api/held",
            get(|State(gate): State<Gate>, db: Db| async move {
                db.query_one("SELECT 1", &[]).await?;
                gate.entered.notify_one();
                gate.release.notified().await;
                Ok::<_, DbError>("released")
            }),
        )
        .with_state(gate.clone())
        .layer(PoolLayer::new(pools.clone()))
        .layer(cache.clone())
        .layer(TenantLayer::new(directory))
        .layer(TelemetryLayer::new().meter(meter));
    let send = |method: &'static str, path: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("x-tenant-id", "acme")
                .body(Body::empty())
                .unwrap();
            let res = tokio::time::timeout(Duration::from_secs(10), app.oneshot(req))
                .await
                .unwrap()
                .unwrap();
            let status = res
                .headers()
                .get("cache-status")
                .map(|v| v.to_str().unwrap().to_owned());
            (res.status().as_u16(), status)
        }
    };

    // A request holds its connection while metrics are exported: one used, none idle.
    let held = tokio::spawn(send("GET", "/api/held"));
    tokio::time::timeout(Duration::from_secs(10), gate.entered.notified())
        .await
        .unwrap();
    tokio::task::block_in_place(|| guard.force_flush()).unwrap();
    gate.release.notify_one();
    assert_eq!(held.await.unwrap().0, 200);

    // The held request was a miss (not storable: no freshness). Then one miss stored in both
    // tiers, two hits from the local tier, and a POST that bypasses the cache and invalidates
    // the path.
    let (code, status) = send("GET", "/api/leads").await;
    assert_eq!(code, 200);
    assert!(status.unwrap().contains("stored"));
    for _ in 0..2 {
        let (code, status) = send("GET", "/api/leads").await;
        assert_eq!(code, 200);
        assert!(status.unwrap().contains("hit"));
    }
    let stats_before_post = cache.handle().stats();
    let tenant_bytes_before_post = cache.handle().local_bytes_by_tenant(10);
    tokio::task::block_in_place(|| guard.force_flush()).unwrap();
    assert_eq!(send("POST", "/api/leads").await.0, 200);

    // Connections go back to the pool after a reset in the background.
    for _ in 0..200 {
        let s = pools.status();
        if s.targets.iter().all(|t| t.available == t.size) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = cache.handle().stats();
    let status = pools.status();
    tokio::task::block_in_place(|| guard.shutdown()).unwrap();

    let exports = received.metric_exports("/v1/metrics");
    assert!(exports.len() >= 3, "{} metric exports", exports.len());

    // While the request was held.
    let first = &exports[0];
    let pool = [("db.client.connection.pool.name", "shared")];
    let count = int_points(find(first, "db.client.connection.count").unwrap());
    let state = |s: &str| {
        let mut a = attrs(&pool);
        a.insert("db.client.connection.state".to_owned(), s.to_owned());
        a
    };
    assert_eq!(count.get(&state("used")), Some(&1), "{count:?}");
    assert_eq!(count.get(&state("idle")), Some(&0), "{count:?}");
    let in_use = int_points(find(first, "parapet.pool.budget.in_use").unwrap());
    assert_eq!(in_use.get(&attrs(&[])), Some(&1));
    // Per tenant (the busiest, bounded): the held connection is acme's, and nothing waits.
    let acme = attrs(&[("tenant.id", "acme")]);
    let per_tenant = int_points(find(first, "parapet.pool.tenant.connections").unwrap());
    assert_eq!(per_tenant.get(&acme), Some(&1), "{per_tenant:?}");
    assert_eq!(per_tenant.len(), 1, "{per_tenant:?}");
    let waiting = int_points(find(first, "parapet.pool.tenant.pending_requests").unwrap());
    assert_eq!(waiting.get(&acme), Some(&0), "{waiting:?}");

    // At shutdown: the values the layers themselves report.
    let last = exports.last().unwrap();
    let count = int_points(find(last, "db.client.connection.count").unwrap());
    let target = &status.targets[0];
    assert_eq!(target.target, "shared");
    assert_eq!(
        count.get(&state("idle")),
        Some(&i64::try_from(target.available).unwrap())
    );
    assert_eq!(count.get(&state("used")), Some(&0));
    assert!(target.size >= 1);
    let max = int_points(find(last, "db.client.connection.max").unwrap());
    assert_eq!(max.get(&attrs(&pool)), Some(&3));
    let pending = int_points(find(last, "db.client.connection.pending_requests").unwrap());
    assert_eq!(pending.get(&attrs(&pool)), Some(&0));
    let limit = int_points(find(last, "parapet.pool.budget.limit").unwrap());
    assert_eq!(limit.get(&attrs(&[])), Some(&4));
    let in_use = int_points(find(last, "parapet.pool.budget.in_use").unwrap());
    assert_eq!(
        in_use.get(&attrs(&[])),
        Some(&i64::try_from(status.budget_in_use).unwrap())
    );
    let pools_live = int_points(find(last, "parapet.pool.count").unwrap());
    assert_eq!(pools_live.get(&attrs(&[])), Some(&1));

    let requests = int_points(find(last, "parapet.cache.requests").unwrap());
    let result = |r: &str| attrs(&[("cache.result", r)]);
    assert_eq!(requests.get(&result("hit")), Some(&2), "{requests:?}");
    assert_eq!(requests.get(&result("miss")), Some(&2), "{requests:?}");
    assert_eq!(requests.get(&result("stale")), Some(&0), "{requests:?}");
    assert!(requests[&result("bypass")] >= 1, "{requests:?}");
    for (r, v) in [
        ("hit", stats.hits),
        ("miss", stats.misses),
        ("bypass", stats.bypass),
    ] {
        assert_eq!(requests[&result(r)], i64::try_from(v).unwrap(), "{r}");
    }
    // Per tenant: every request was acme's, so its series are the totals, and with one
    // tenant there is no `_other`.
    let by_tenant = int_points(find(last, "parapet.cache.tenant.requests").unwrap());
    for (r, v) in [
        ("hit", stats.hits),
        ("stale", stats.stale),
        ("miss", stats.misses),
        ("bypass", stats.bypass),
    ] {
        let key = attrs(&[("tenant.id", "acme"), ("cache.result", r)]);
        assert_eq!(by_tenant[&key], i64::try_from(v).unwrap(), "acme {r}");
    }
    assert_eq!(by_tenant.len(), 4, "{by_tenant:?}");
    let lookups = int_points(find(last, "parapet.cache.lookups").unwrap());
    let tier = |t: &str, r: &str| attrs(&[("cache.tier", t), ("cache.result", r)]);
    assert_eq!(lookups[&tier("local", "hit")], 2, "{lookups:?}");
    assert!(lookups[&tier("redis", "miss")] >= 1, "{lookups:?}");
    for (t, r, v) in [
        ("local", "hit", stats.local_hits),
        ("local", "miss", stats.local_misses),
        ("redis", "hit", stats.redis_hits),
        ("redis", "miss", stats.redis_misses),
    ] {
        assert_eq!(lookups[&tier(t, r)], i64::try_from(v).unwrap(), "{t} {r}");
    }
    let single = |name: &str| int_points(find(last, name).unwrap())[&attrs(&[])];
    assert_eq!(single("parapet.cache.stored"), 1);
    assert!(single("parapet.cache.invalidations") >= 1);
    assert_eq!(
        single("parapet.cache.passes"),
        i64::try_from(stats.passes).unwrap()
    );
    assert_eq!(single("parapet.cache.redis.errors"), 0);
    assert_eq!(single("parapet.cache.breaker.open"), 0);
    assert_eq!(single("parapet.cache.breaker.opens"), 0);
    let local = single("parapet.cache.local.size");
    assert_eq!(local, i64::try_from(stats.local_bytes).unwrap());
    // Before the POST. (`local_bytes` is moka's weighted size at the last write, which moka
    // updates lazily: it may still read 0 right after the first insert.)
    let before_post = &exports[1];
    let local = int_points(find(before_post, "parapet.cache.local.size").unwrap())[&attrs(&[])];
    assert_eq!(local, i64::try_from(stats_before_post.local_bytes).unwrap());
    // The stored response's bytes, as acme's.
    assert_eq!(
        tenant_bytes_before_post.len(),
        1,
        "{tenant_bytes_before_post:?}"
    );
    assert_eq!(tenant_bytes_before_post[0].tenant.as_deref(), Some("acme"));
    assert!(tenant_bytes_before_post[0].bytes > 0);
    let by_tenant = int_points(find(before_post, "parapet.cache.local.tenant.size").unwrap());
    assert_eq!(
        by_tenant.get(&attrs(&[("tenant.id", "acme")])),
        Some(&i64::try_from(tenant_bytes_before_post[0].bytes).unwrap()),
        "{by_tenant:?}"
    );
    assert_eq!(single("parapet.cache.local.refused"), 0);
    let requests = int_points(find(before_post, "parapet.cache.requests").unwrap());
    assert_eq!(requests[&result("hit")], 2, "{requests:?}");
    assert_eq!(requests[&result("bypass")], 0, "{requests:?}");

    // The layer's own instruments and the memory monitor's travel in the same exports.
    assert!(find(last, "http.server.request.duration").is_some());
    let memory = int_points(find(last, "process.memory.usage").unwrap())[&attrs(&[])];
    assert!(memory > 1 << 20, "{memory} bytes resident");
}
