//! Drives local-tier cache hits in process, for counting instructions per hit with callgrind.
//!
//! ```text
//! cache_hits <bare|single|tenant|thc|redis|redis-get> <N> [REDIS_URL]
//! ```
//!
//! Builds the handler of `bench/benches/cache.rs` (`GET /api/item`, an 86-byte JSON body,
//! `Cache-Control: public, max-age=60`) behind a `CacheLayer` with a local tier (`single`:
//! single-tenant; `tenant`: behind a `TenantLayer` with a static directory), or with a Redis tier
//! only (`redis`: behind the same `TenantLayer`, keys under a prefix unique to the run, deleted
//! afterwards), fills the cache, then sends `N` requests on a current-thread runtime. It exits
//! with an error if the handler runs again (a request was not a hit). `redis-get` is the
//! baseline of `redis`: the bare handler doing one Redis `GET` of a value the size of the entry
//! the cache stored (stack.rs's `redis-get`). `bare` is the handler alone (every request runs
//! it), `thc` tower-http-cache 0.6.1's in-memory hit around it (`tower_http_cache_app`, as in
//! the criterion bench and the stack scenario). Instructions per request: run it under
//! `valgrind --tool=callgrind` with `N` and with `0`, subtract, divide by `N`.

use std::{
    error::Error,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use parapet_cache::{CacheLayer, RedisConfig};
use parapet_tenant::{HeaderResolver, StaticDirectory, TenantId, TenantLayer, TenantRecord};
use redis::aio::ConnectionManager;
use tower::{Service, ServiceExt};

use parapet_bench::{ITEM_BODY, item_origin};

fn request() -> Result<Request<Body>, http::Error> {
    Request::get("/api/item")
        .header("host", "localhost:3000")
        .header("x-tenant-id", "acme")
        .body(Body::empty())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: cache_hits <bare|single|tenant|thc|redis|redis-get> <N> [REDIS_URL]";
    let mode = args.next().ok_or(usage)?;
    let n: u64 = args.next().ok_or(usage)?.parse()?;
    let redis_url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let prefix = format!("parapet:bench:hits:{}:", std::process::id());
    let result = match mode.as_str() {
        "redis-get" => rt.block_on(redis_get(&redis_url, &prefix, n)),
        _ => run(&rt, &mode, n, &redis_url, &prefix),
    };
    if mode.starts_with("redis") {
        rt.block_on(clean(&redis_url, &prefix))?;
    }
    result?;
    println!("{mode}: {n} hits");
    Ok(())
}

/// Drives `n` cache hits in `mode`.
fn run(
    rt: &tokio::runtime::Runtime,
    mode: &str,
    n: u64,
    redis_url: &str,
    prefix: &str,
) -> Result<(), Box<dyn Error>> {
    let usage = "usage: cache_hits <bare|single|tenant|thc|redis|redis-get> <N> [REDIS_URL]";
    let calls = Arc::new(AtomicU64::new(0));
    let app = match mode {
        "bare" => item_origin(calls.clone()),
        "thc" => parapet_bench::tower_http_cache_app("/api/item", ITEM_BODY, calls.clone()),
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
        "redis" => {
            let directory =
                StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("acme")?));
            let tenants = TenantLayer::builder(directory)
                .resolver(HeaderResolver::new())
                .build();
            let cache = rt.block_on(async {
                CacheLayer::builder()
                    .redis(RedisConfig::new(redis_url))
                    .prefix(prefix)
                    .build()
            })?;
            item_origin(calls.clone()).layer(cache).layer(tenants)
        }
        _ => return Err(usage.into()),
    };
    let mut service = app.into_service::<Body>();
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
        if mode != "bare" && calls.load(Ordering::Relaxed) != filled {
            return Err("the handler ran: not every request was a hit".into());
        }
        Ok::<(), Box<dyn Error>>(())
    })
}

/// The baseline of `redis`: `n` requests to a handler doing one Redis `GET` of a value the
/// size of the entry `redis` stores, through a `ConnectionManager`.
async fn redis_get(redis_url: &str, prefix: &str, n: u64) -> Result<(), Box<dyn Error>> {
    // The size of the entry the cache stores for the item (measured with `redis` and STRLEN).
    const ENTRY_SIZE: usize = 225;
    let client = redis::Client::open(redis_url)?;
    let connection = ConnectionManager::new(client).await?;
    let key = format!("{prefix}bare-get");
    redis::Cmd::set_ex(&key, vec![b'x'; ENTRY_SIZE], 600)
        .query_async::<()>(&mut connection.clone())
        .await?;
    let app = Router::new().route(
        "/api/item",
        get(move || {
            let mut connection = connection.clone();
            let key = key.clone();
            async move {
                match redis::Cmd::get(&key)
                    .query_async::<Option<Vec<u8>>>(&mut connection)
                    .await
                {
                    Ok(Some(value)) if value.len() == ENTRY_SIZE => (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "public, max-age=60"),
                        ],
                        ITEM_BODY,
                    )
                        .into_response(),
                    _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            }
        }),
    );
    let mut service = app.into_service::<Body>();
    for _ in 0..n + 2 {
        let response = service.ready().await?.call(request()?).await?;
        if response.status() != StatusCode::OK {
            return Err(format!("answered {}", response.status()).into());
        }
        std::hint::black_box(response);
    }
    Ok(())
}

/// Deletes the run's keys.
async fn clean(redis_url: &str, prefix: &str) -> Result<(), Box<dyn Error>> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await?;
    for key in keys {
        redis::Cmd::del(key)
            .query_async::<()>(&mut connection)
            .await?;
    }
    Ok(())
}
