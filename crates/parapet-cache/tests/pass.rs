//! Hit-for-pass: a key whose response could not be stored goes upstream without coalescing for
//! `pass_ttl`, per tenant, until a storable response ends it (against the real Redis).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use common::{cache_status, eventually, get, redis, redis_config, request, text, unique_prefix};
use http::{Request, Response};
use parapet_cache::CacheLayer;
use parapet_tenant::Tenant;
use tokio::sync::Barrier;
use tower::{Layer, ServiceExt, service_fn};

/// Both tiers, with passes of `pass_ttl`.
async fn tiered(test: &str, pass_ttl: Duration) -> CacheLayer {
    redis().await;
    CacheLayer::builder()
        .local(8 * 1024 * 1024)
        .redis(redis_config())
        .prefix(unique_prefix(test))
        .pass_ttl(pass_ttl)
        .build()
        .unwrap()
}

/// How many calls the origin has running now, and the most it had at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An origin answering `no-store`: call 0 at once (after `first_gate`), every later call only
/// once `gate` lets it (all of them in at once) or 10 s have passed.
fn gated_no_store(
    first_gate: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    gate: Arc<Barrier>,
) -> (
    impl tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static,
    Arc<AtomicUsize>,
    Arc<InFlight>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let inflight = Arc::new(InFlight::default());
    let (counter, running) = (calls.clone(), inflight.clone());
    let service = service_fn(move |_request: Request<Body>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let (gate, running, first_gate) = (gate.clone(), running.clone(), first_gate.clone());
        async move {
            running.enter();
            if n == 0 {
                if let Some(ready) = first_gate {
                    eventually(
                        "the waiters queue behind the leader",
                        Duration::from_secs(10),
                        || {
                            let ready = ready.clone();
                            async move { ready() }
                        },
                    )
                    .await;
                }
            } else {
                // Not a timing bound: the calls either meet here or the test fails on the count.
                let _ = tokio::time::timeout(Duration::from_secs(10), gate.wait()).await;
            }
            running.leave();
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "no-store")
                    .body(Body::from(format!("call {n}")))
                    .unwrap(),
            )
        }
    });
    (service, calls, inflight)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_a_passing_key_reach_the_origin_together() {
    const N: usize = 8;
    let cache = tiered("pass-concurrent", Duration::from_secs(30)).await;
    let (inner, calls, inflight) = gated_no_store(None, Arc::new(Barrier::new(N)));
    let service = cache.layer(inner);
    let first = service.clone().oneshot(get("acme", "/live")).await.unwrap();
    assert_eq!(
        cache_status(&first),
        "parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store"
    );
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(get("acme", "/live")).await.unwrap() })
        })
        .collect();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(
            cache_status(&response),
            "parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store/pass"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), N + 1);
    assert_eq!(
        inflight.most.load(Ordering::SeqCst),
        N,
        "every pass was at the origin at once"
    );
    let stats = cache.stats();
    assert_eq!((stats.passes, stats.coalesced), (N as u64, 0), "{stats:?}");
    assert_eq!(stats.stored, 0, "{stats:?}");
}

/// The requests that queued behind the leader whose response turned out `no-store` go upstream
/// together, each after the one lookup it made before queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_behind_an_uncacheable_leader_pass_together() {
    const WAITERS: usize = 6;
    let cache = CacheLayer::builder()
        .local(8 * 1024 * 1024)
        .prefix(unique_prefix("pass-queued"))
        .build()
        .unwrap();
    let stats = cache.clone();
    let queued: Arc<dyn Fn() -> bool + Send + Sync> =
        Arc::new(move || stats.stats().coalesced == WAITERS as u64);
    let (inner, calls, inflight) = gated_no_store(Some(queued), Arc::new(Barrier::new(WAITERS)));
    let service = cache.layer(inner);
    let tasks: Vec<_> = (0..=WAITERS)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(get("acme", "/queued")).await.unwrap() })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        let status = cache_status(&task.await.unwrap());
        if status.ends_with("/pass") {
            passed += 1;
        } else {
            assert_eq!(
                status,
                "parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store"
            );
        }
    }
    assert_eq!(passed, WAITERS, "every waiter passed");
    assert_eq!(calls.load(Ordering::SeqCst), WAITERS + 1);
    assert_eq!(inflight.most.load(Ordering::SeqCst), WAITERS);
    let stats = cache.stats();
    assert_eq!(
        stats.local_misses,
        WAITERS as u64 + 1,
        "one lookup per request: {stats:?}"
    );
}

#[tokio::test]
async fn the_pass_expires() {
    let cache = tiered("pass-expires", Duration::from_millis(300)).await;
    let (inner, calls) = common::origin(|n, _| {
        (
            200,
            vec![("cache-control", "no-store".to_owned())],
            format!("call {n}"),
        )
    });
    let service = cache.layer(inner);
    let status = |response: Response<Body>| cache_status(&response);
    let not_stored = "parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store";
    let passed = "parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store/pass";
    let send = || service.clone().oneshot(get("acme", "/brief"));
    assert_eq!(status(send().await.unwrap()), not_stored);
    assert_eq!(status(send().await.unwrap()), passed);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        status(send().await.unwrap()),
        not_stored,
        "the pass is over"
    );
    assert_eq!(status(send().await.unwrap()), passed, "and began again");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_storable_response_ends_the_pass_and_is_cached() {
    let cache = tiered("pass-ends", Duration::from_secs(30)).await;
    let (inner, calls) = common::origin(|n, _| {
        let cache_control = if n < 2 { "no-store" } else { "max-age=60" };
        (
            200,
            vec![("cache-control", cache_control.to_owned())],
            format!("call {n}"),
        )
    });
    let service = cache.layer(inner);
    let send = || service.clone().oneshot(get("acme", "/changed"));
    let first = send().await.unwrap();
    assert!(cache_status(&first).ends_with("detail=response-no-store"));
    let second = send().await.unwrap();
    assert!(cache_status(&second).ends_with("/pass"));
    let third = send().await.unwrap();
    assert_eq!(
        cache_status(&third),
        "parapet; fwd=uri-miss; fwd-status=200; ttl=60; stored"
    );
    assert_eq!(text(third).await, "call 2");
    let fourth = send().await.unwrap();
    assert!(
        cache_status(&fourth).starts_with("parapet; hit"),
        "{}",
        cache_status(&fourth)
    );
    assert_eq!(text(fourth).await, "call 2");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The second and the third went through as passes; the third's store ended it.
    let stats = cache.stats();
    assert_eq!((stats.passes, stats.stored), (2, 1), "{stats:?}");
    let fifth = send().await.unwrap();
    assert!(cache_status(&fifth).starts_with("parapet; hit"));
    assert_eq!(cache.stats().passes, 2, "no pass after the store");
}

/// The same URI is `no-store` for one tenant and cacheable for another: only the first passes,
/// and the second's concurrent misses still coalesce into one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_pass_leaves_another_tenant_alone() {
    let cache = tiered("pass-tenants", Duration::from_secs(30)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |request: Request<Body>| {
        let tenant = request
            .extensions()
            .get::<Tenant>()
            .unwrap()
            .id()
            .as_str()
            .to_owned();
        if tenant == "globex" {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            let cache_control = if tenant == "acme" {
                "no-store"
            } else {
                "max-age=60"
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", cache_control)
                    .body(Body::from(tenant))
                    .unwrap(),
            )
        }
    });
    let service = cache.layer(inner);
    let acme = service
        .clone()
        .oneshot(get("acme", "/shared"))
        .await
        .unwrap();
    assert!(cache_status(&acme).ends_with("detail=response-no-store"));
    let acme = service
        .clone()
        .oneshot(get("acme", "/shared"))
        .await
        .unwrap();
    assert!(cache_status(&acme).ends_with("/pass"));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(get("globex", "/shared")).await.unwrap() })
        })
        .collect();
    for task in tasks {
        let response = task.await.unwrap();
        let status = cache_status(&response);
        assert!(!status.contains("/pass"), "{status}");
        assert_eq!(text(response).await, "globex");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "globex coalesced into one call"
    );
    let globex = service
        .clone()
        .oneshot(get("globex", "/shared"))
        .await
        .unwrap();
    assert!(cache_status(&globex).starts_with("parapet; hit"));
    let acme = service.oneshot(get("acme", "/shared")).await.unwrap();
    assert!(cache_status(&acme).ends_with("/pass"), "acme still passes");
}

/// Reasons of the request (its own `no-store`) start no pass, and `pass_ttl(0)` turns passes off.
#[tokio::test]
async fn only_the_responses_reasons_start_a_pass_and_zero_turns_it_off() {
    let cache = tiered("pass-request", Duration::from_secs(30)).await;
    let (inner, _) = common::origin(|n, _| {
        (
            200,
            vec![("cache-control", "max-age=60".to_owned())],
            format!("call {n}"),
        )
    });
    let service = cache.layer(inner);
    let refused = service
        .clone()
        .oneshot(request(
            "GET",
            Some("acme"),
            "/asked",
            &[("cache-control", "no-store")],
        ))
        .await
        .unwrap();
    assert!(cache_status(&refused).ends_with("detail=request-no-store"));
    let stored = service.oneshot(get("acme", "/asked")).await.unwrap();
    assert_eq!(
        cache_status(&stored),
        "parapet; fwd=uri-miss; fwd-status=200; ttl=60; stored"
    );

    let cache = tiered("pass-off", Duration::ZERO).await;
    let (inner, calls) = common::origin(|n, _| {
        (
            200,
            vec![("cache-control", "private".to_owned())],
            format!("call {n}"),
        )
    });
    let service = cache.layer(inner);
    for _ in 0..2 {
        let response = service.clone().oneshot(get("acme", "/off")).await.unwrap();
        assert_eq!(
            cache_status(&response),
            "parapet; fwd=uri-miss; fwd-status=200; detail=private"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.stats().passes, 0);
}
