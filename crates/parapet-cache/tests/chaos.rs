//! Redis killed mid-test: no request fails; Redis back: the Redis tier is used again.
//!
//! The test starts its own `redis-server` on a free port and stops it itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use common::{RedisServer, cache_status, free_port, get, unique_prefix};
use http::{Request, Response};
use parapet_cache::{CacheLayer, RedisConfig};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted() {
    let port = free_port();
    let mut server = RedisServer::start(port, &[]);
    let cache = CacheLayer::builder()
        .redis(
            RedisConfig::new(format!("redis://127.0.0.1:{}", server.port))
                .timeout(Duration::from_millis(100))
                .breaker(3, Duration::from_millis(300)),
        )
        .prefix(unique_prefix("chaos"))
        .build()
        .unwrap();
    let origin = service_fn(|request: Request<Body>| async move {
        Ok::<_, Infallible>(
            Response::builder()
                .header("cache-control", "max-age=60")
                .body(Body::from(request.uri().path().to_owned()))
                .unwrap(),
        )
    });
    let service = cache.layer(origin);

    // Load: four workers over 20 keys until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (service, stop) = (service.clone(), stop.clone());
            let (ok, failed) = (ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let uri = format!("/k{}", i % 20);
                    match service.clone().oneshot(get("acme", &uri)).await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 4;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kill = cache.stats();
    assert!(
        before_kill.redis_hits > 0,
        "redis used while up: {before_kill:?}"
    );
    server.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let while_down = cache.stats();
    assert!(
        while_down.breaker_opens >= 1,
        "breaker opened: {while_down:?}"
    );

    server.restart();
    // The breaker probes again after its cool-down; the connection manager reconnects.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = cache.stats();
        if !now.breaker_open && now.redis_hits > while_down.redis_hits + 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis tier not used again: {now:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    assert!(ok.load(Ordering::Relaxed) > 100);

    // A fresh key is stored in the restarted Redis and served from it.
    let first = service
        .clone()
        .oneshot(get("acme", "/after"))
        .await
        .unwrap();
    assert!(cache_status(&first).contains("stored"));
    let second = service.oneshot(get("acme", "/after")).await.unwrap();
    assert!(
        cache_status(&second).contains("hit; ttl="),
        "{}",
        cache_status(&second)
    );
    assert!(cache_status(&second).ends_with("detail=redis"));
    server.stop();
}
