//! A local-tier hit in process (no network): the bare axum service vs parapet's `CacheLayer`
//! (local tier, single-tenant and with a tenant in the request) vs tower-http-cache's in-memory
//! `CacheLayer`, the crate users would pick instead. Every variant answers the same 86-byte JSON
//! body with `Cache-Control: public, max-age=60`; the caches are filled before measuring, and a
//! check before each run asserts that the measured path is a hit (the handler is not called).
//!
//! Run with `bash bench/run.sh cache`, which writes `bench/results/cache.md`; or directly:
//! `cargo bench -p parapet-bench --bench cache -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use parapet_cache::CacheLayer;
use parapet_tenant::{HeaderResolver, StaticDirectory, TenantId, TenantLayer, TenantRecord};
use tower::{Service, ServiceExt};

use parapet_bench::{ITEM_BODY, item_origin};

fn request() -> Request<Body> {
    Request::get("/api/item")
        .header("host", "localhost:3000")
        .header("x-tenant-id", "acme")
        .body(Body::empty())
        .unwrap()
}

/// Measures `app` after two warm-up calls; unless `bare`, the handler must not run again.
fn bench_one(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    id: &str,
    app: Router,
    calls: &AtomicU64,
    bare: bool,
) {
    let mut service = app.into_service::<Body>();
    rt.block_on(async {
        for _ in 0..2 {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(request())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{id}");
        }
    });
    let before = calls.load(Ordering::Relaxed);
    group.bench_function(id, |b| {
        b.to_async(rt).iter_batched(
            request,
            |req| {
                let response = service.call(req);
                async move {
                    let response = response.await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    black_box(response);
                }
            },
            BatchSize::SmallInput,
        );
    });
    if !bare {
        assert_eq!(
            calls.load(Ordering::Relaxed),
            before,
            "{id}: the handler ran during the measurement, so it was not a hit"
        );
    }
}

fn cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let calls = Arc::new(AtomicU64::new(0));
    bench_one(
        &mut group,
        &rt,
        "bare",
        item_origin(calls.clone()),
        &calls,
        true,
    );

    let calls = Arc::new(AtomicU64::new(0));
    let layer = CacheLayer::builder()
        .local(64 << 20)
        .single_tenant()
        .build()
        .unwrap();
    bench_one(
        &mut group,
        &rt,
        "parapet_local_hit",
        item_origin(calls.clone()).layer(layer),
        &calls,
        false,
    );

    // With a tenant: TenantLayer (a static directory) resolves it, the key carries it.
    let calls = Arc::new(AtomicU64::new(0));
    let layer = CacheLayer::builder().local(64 << 20).build().unwrap();
    let tenants = TenantLayer::builder(
        StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("acme").unwrap())),
    )
    .resolver(HeaderResolver::new())
    .build();
    bench_one(
        &mut group,
        &rt,
        "parapet_tenant_local_hit",
        item_origin(calls.clone())
            .layer(layer)
            .layer(tenants.clone()),
        &calls,
        false,
    );
    let calls = Arc::new(AtomicU64::new(0));
    bench_one(
        &mut group,
        &rt,
        "tenant_only",
        item_origin(calls.clone()).layer(tenants),
        &calls,
        true,
    );

    // tower-http-cache 0.6.1, in-memory backend, 60 s TTL.
    let calls = Arc::new(AtomicU64::new(0));
    bench_one(
        &mut group,
        &rt,
        "tower_http_cache_hit",
        parapet_bench::tower_http_cache_app("/api/item", ITEM_BODY, calls.clone()),
        &calls,
        false,
    );
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
