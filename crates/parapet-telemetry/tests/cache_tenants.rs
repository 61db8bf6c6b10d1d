//! `parapet.cache.tenant.requests` and `parapet.cache.passes` read back from an in-memory
//! exporter: the busiest tenants by name, the rest summed under `_other`, no tenant outside
//! the top named, and no series going down when a summed tenant becomes the busiest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use axum::{Router, body::Body, routing::get};
use http::{Request, header};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
    data::{AggregatedMetrics, MetricData, ResourceMetrics},
};
use parapet_cache::CacheLayer;
use parapet_telemetry::metrics::{self, OTHER_TENANTS, TOP_TENANTS};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use tower::ServiceExt;

/// The points of a u64 sum as (tenant.id, cache.result) → value (missing attributes: "").
fn points(metrics: &[ResourceMetrics], name: &str) -> BTreeMap<(String, String), u64> {
    let metric = metrics
        .iter()
        .flat_map(ResourceMetrics::scope_metrics)
        .flat_map(|sm| sm.metrics())
        .filter(|m| m.name() == name)
        .last()
        .unwrap_or_else(|| panic!("{name} exported"));
    let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
        panic!("{name}: a u64 sum");
    };
    sum.data_points()
        .map(|point| {
            let attribute = |key: &str| {
                point
                    .attributes()
                    .find(|kv| kv.key.as_str() == key)
                    .map(|kv| kv.value.as_str().into_owned())
                    .unwrap_or_default()
            };
            (
                (attribute("tenant.id"), attribute("cache.result")),
                point.value(),
            )
        })
        .collect()
}

#[tokio::test]
async fn requests_by_tenant_name_the_top_and_sum_the_rest() {
    let cache = CacheLayer::builder().local(8 << 20).build().unwrap();
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    metrics::observe_cache(&provider.meter("parapet"), cache.handle());

    // Three tenants more than the top; tenant `tN` makes N + 2 requests, so the ranking is
    // strict: t3 .. t12 are named, t0, t1, t2 are summed.
    let tenants = TOP_TENANTS + 3;
    let mut directory = StaticDirectory::new();
    for n in 0..tenants {
        directory = directory.tenant(TenantRecord::new(
            TenantId::parse(&format!("t{n}")).unwrap(),
        ));
    }
    let app = Router::new()
        .route(
            "/fresh",
            get(|| async { ([(header::CACHE_CONTROL, "max-age=60")], "fresh") }),
        )
        .route(
            "/never",
            get(|| async { ([(header::CACHE_CONTROL, "no-store")], "never") }),
        )
        .layer(cache.clone())
        .layer(TenantLayer::new(directory));
    let send = |tenant: String, path: &'static str| {
        let app = app.clone();
        async move {
            let request = Request::get(path)
                .header("x-tenant-id", tenant)
                .body(Body::empty())
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    for n in 0..tenants {
        // One miss, then hits.
        for _ in 0..n + 2 {
            send(format!("t{n}"), "/fresh").await;
        }
    }
    // t12 also: a `no-store` miss that starts a hit-for-pass, then a pass.
    for _ in 0..2 {
        send(format!("t{}", tenants - 1), "/never").await;
    }
    provider.force_flush().unwrap();
    let exported = exporter.get_finished_metrics().unwrap();

    let requests = points(&exported, "parapet.cache.tenant.requests");
    let named: Vec<&String> = requests
        .keys()
        .map(|(tenant, _)| tenant)
        .filter(|t| *t != OTHER_TENANTS)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(named.len(), TOP_TENANTS, "{requests:?}");
    for n in 0..3 {
        assert!(
            !named.contains(&&format!("t{n}")),
            "t{n} is outside the top: {requests:?}"
        );
    }
    let get = |tenant: &str, result: &str| {
        *requests
            .get(&(tenant.to_owned(), result.to_owned()))
            .unwrap_or_else(|| panic!("{tenant} {result} in {requests:?}"))
    };
    for n in 3..tenants - 1 {
        let tenant = format!("t{n}");
        assert_eq!(get(&tenant, "miss"), 1, "{tenant}");
        assert_eq!(get(&tenant, "hit"), n as u64 + 1, "{tenant}");
        assert_eq!(get(&tenant, "stale"), 0, "{tenant}");
        assert_eq!(get(&tenant, "bypass"), 0, "{tenant}");
    }
    let last = format!("t{}", tenants - 1);
    assert_eq!(
        get(&last, "miss"),
        3,
        "its /fresh miss, the no-store miss, the pass"
    );
    assert_eq!(get(&last, "hit"), tenants as u64);
    // t0, t1, t2: 2 + 3 + 4 requests, one miss each.
    assert_eq!(get(OTHER_TENANTS, "miss"), 3);
    assert_eq!(get(OTHER_TENANTS, "hit"), 1 + 2 + 3);
    assert_eq!(get(OTHER_TENANTS, "bypass"), 0);

    // The per-tenant series add up to the totals.
    let totals = points(&exported, "parapet.cache.requests");
    for result in ["hit", "stale", "miss", "bypass"] {
        let per_tenant: u64 = requests
            .iter()
            .filter(|((_, r), _)| r == result)
            .map(|(_, v)| v)
            .sum();
        assert_eq!(
            totals[&(String::new(), result.to_owned())],
            per_tenant,
            "{result}"
        );
    }
    let stats = cache.handle().stats();
    assert_eq!(stats.passes, 1);
    let passes = points(&exported, "parapet.cache.passes");
    assert_eq!(passes[&(String::new(), String::new())], stats.passes);

    // t0, summed under `_other`, becomes the busiest tenant: it stays summed, so `_other` only
    // goes up (naming t0 now would take its requests out of `_other`, which a backend reads as
    // a counter reset), and the named tenants keep their series.
    let other_hits_before = get(OTHER_TENANTS, "hit");
    for _ in 0..100 {
        send("t0".to_owned(), "/fresh").await;
    }
    provider.force_flush().unwrap();
    let after = points(
        &exporter.get_finished_metrics().unwrap(),
        "parapet.cache.tenant.requests",
    );
    assert!(
        !after.keys().any(|(tenant, _)| tenant == "t0"),
        "t0 named after it was summed: {after:?}"
    );
    assert_eq!(
        after[&(OTHER_TENANTS.to_owned(), "hit".to_owned())],
        other_hits_before + 100,
        "{after:?}"
    );
    for tenant in named {
        assert!(
            after.contains_key(&(tenant.clone(), "hit".to_owned())),
            "{tenant} keeps its series: {after:?}"
        );
    }
}
