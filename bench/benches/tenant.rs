//! The cost `TenantLayer` adds to one request, in process: a trivial service alone vs behind
//! `TenantLayer` (header resolver, `StaticDirectory` behind the default `CachedDirectory`, warm
//! cache), on a current-thread runtime. Both get the same request (`GET /`,
//! `x-tenant-id: acme`), built outside the measured part.
//!
//! `cargo bench -p parapet-bench --bench tenant -- --warm-up-time 1 --measurement-time 5`;
//! the layer's cost is `tenant/layer` minus `tenant/bare`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{convert::Infallible, hint::black_box};

use axum::body::Body;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use tower::{Layer, Service, ServiceExt, service_fn};

use parapet_bench::{acme_request, empty_ok};

fn bench_one<S>(c: &mut Criterion, rt: &tokio::runtime::Runtime, id: &str, mut service: S)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    // Both services are always ready; `ready` once (and one request to warm the cache).
    rt.block_on(async {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(acme_request())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });
    c.bench_function(id, |b| {
        b.to_async(rt).iter_batched(
            acme_request,
            |req| {
                let response = service.call(req);
                async move {
                    let response = response.await.unwrap();
                    assert_eq!(response.status(), 200);
                    black_box(response);
                }
            },
            BatchSize::SmallInput,
        );
    });
}

fn tenant(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    bench_one(c, &rt, "tenant/bare", service_fn(empty_ok));
    let acme = TenantId::parse("acme").unwrap();
    let directory = StaticDirectory::new()
        .tenant(TenantRecord::new(acme.clone()).plan("pro"))
        .features(&acme, ["pro"]);
    let service = TenantLayer::new(directory).layer(service_fn(empty_ok));
    bench_one(c, &rt, "tenant/layer", service);
}

criterion_group!(benches, tenant);
criterion_main!(benches);
