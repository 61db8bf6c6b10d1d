//! Drives local-tier cache hits in process, for counting instructions per hit with callgrind.
//!
//! ```text
//! cache_hits <single|tenant> <N>
//! ```
//!
//! Builds the handler of `bench/benches/cache.rs` (`GET /api/item`, an 86-byte JSON body,
//! `Cache-Control: public, max-age=60`) behind a `CacheLayer` with a local tier (`single`:
//! single-tenant; `tenant`: behind a `TenantLayer` with a static directory), fills the cache, then
//! sends `N` requests on a current-thread runtime. It exits with an error if the handler runs
//! again (a request was not a hit). Instructions per hit: run it under
//! `valgrind --tool=callgrind` with `N` and with `0`, subtract, divide by `N`.

use std::{
    error::Error,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use parapet_cache::CacheLayer;
use parapet_tenant::{HeaderResolver, StaticDirectory, TenantId, TenantLayer, TenantRecord};
use tower::{Service, ServiceExt};

use parapet_bench::item_origin;

fn request() -> Result<Request<Body>, http::Error> {
    Request::get("/api/item")
        .header("host", "localhost:3000")
        .header("x-tenant-id", "acme")
        .body(Body::empty())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: cache_hits <single|tenant> <N>";
    let mode = args.next().ok_or(usage)?;
    let n: u64 = args.next().ok_or(usage)?.parse()?;
    let calls = Arc::new(AtomicU64::new(0));
    let app = match mode.as_str() {
        "single" => item_origin(calls.clone()).layer(
            CacheLayer::builder()
                .local(64 << 20)
                .single_tenant()
                .build()?,
        ),
        "tenant" => {
            let directory =
                StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("acme")?));
            let tenants = TenantLayer::builder(directory)
                .resolver(HeaderResolver::new())
                .build();
            item_origin(calls.clone())
                .layer(CacheLayer::builder().local(64 << 20).build()?)
                .layer(tenants)
        }
        _ => return Err(usage.into()),
    };
    let mut service = app.into_service::<Body>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Fill, then one hit to warm everything up.
        for _ in 0..2 {
            let response = service.ready().await?.call(request()?).await?;
            if response.status() != StatusCode::OK {
                return Err(format!("warm-up answered {}", response.status()).into());
            }
        }
        let filled = calls.load(Ordering::Relaxed);
        for _ in 0..n {
            let response = service.ready().await?.call(request()?).await?;
            if response.status() != StatusCode::OK {
                return Err(format!("answered {}", response.status()).into());
            }
            std::hint::black_box(response);
        }
        if calls.load(Ordering::Relaxed) != filled {
            return Err("the handler ran: not every request was a hit".into());
        }
        Ok::<(), Box<dyn Error>>(())
    })?;
    println!("{mode}: {n} hits");
    Ok(())
}
