//! N requests through `TenantLayer` (header resolver, `StaticDirectory` behind the default
//! `CachedDirectory`, warm cache) in front of a trivial service, or through the trivial service
//! alone, on a current-thread runtime: a fixed workload for instruction counts.
//!
//! `tenant_layer <bare|layer> <N>`; run it under `valgrind --tool=callgrind` with N = 0 and
//! N = 100,000 for each variant: the instructions the layer adds per request are
//! `((layer N) - (layer 0) - (bare N) + (bare 0)) / N`. Prints how many requests answered 200.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use axum::body::Body;
use http::{Request, Response};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use tower::{Layer, Service, ServiceExt, service_fn};

use parapet_bench::{acme_request, empty_ok};

async fn drive<S>(mut service: S, n: u64) -> u64
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let mut ok = 0;
    for _ in 0..n {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(acme_request())
            .await
            .unwrap();
        ok += u64::from(response.status() == 200);
    }
    ok
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().expect("usage: tenant_layer <bare|layer> <N>");
    let n: u64 = args.next().expect("N").parse().expect("N is a number");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(async {
        match variant.as_str() {
            "bare" => drive(service_fn(empty_ok), n).await,
            "layer" => {
                let directory = StaticDirectory::new()
                    .tenant(TenantRecord::new(TenantId::parse("acme").unwrap()).plan("pro"))
                    .features(&TenantId::parse("acme").unwrap(), ["pro"]);
                let layer = TenantLayer::new(directory);
                // Warm the cache with one request, the same for every N.
                let service = layer.layer(service_fn(empty_ok));
                assert_eq!(drive(service.clone(), 1).await, 1);
                drive(service, n).await
            }
            other => panic!("unknown variant {other}"),
        }
    });
    assert_eq!(ok, n, "every request answered 200");
    println!("{variant}: {ok} requests answered 200");
}
