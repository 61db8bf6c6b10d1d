//! The quota layer on real Redis: instances sharing one limit, the local fallback while Redis
//! is down, the 429, tenants kept apart, cache hits charged at a fraction, start-up errors.
//! Each test has its own key prefix (or its own redis-server), so they run in parallel and
//! twice in a row.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use parapet_cache::RedisConfig;
use parapet_quota::{BuildError, Part, QuotaLayer, QuotaLayerBuilder, Rate, Rule};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use parapet_testkit::{RedisServer, free_port, redis_url, require_redis, unique_prefix};
use tower::ServiceExt;

fn id(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

/// acme on `pro`, globex on `free`.
fn directory() -> StaticDirectory {
    StaticDirectory::new()
        .tenant(TenantRecord::new(id("acme")).plan("pro"))
        .tenant(TenantRecord::new(id("globex")).plan("free"))
}

/// The stack a test drives: tenant → quota → a handler answering `cache-status` when asked.
fn app(quota: &QuotaLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/cached",
            get(|| async { ([("cache-status", "parapet; hit; ttl=30")], "cached") }),
        )
        .layer(quota.clone())
        .layer(TenantLayer::new(directory()))
}

async fn call(app: &Router, tenant: &str, path: &str) -> Response<Body> {
    let req = Request::get(path)
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

/// Requests allowed out of `n`.
async fn allowed(app: &Router, tenant: &str, path: &str, n: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..n {
        let res = call(app, tenant, path).await;
        match res.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected status {other}"),
        }
    }
    allowed
}

/// A burst of `burst` and one more an hour: nothing refills while a test runs.
fn slow(burst: u32) -> Rate {
    Rate::new(1, Duration::from_secs(3600)).burst(burst)
}

fn builder(prefix: &str) -> QuotaLayerBuilder {
    QuotaLayer::builder()
        .plan("pro", slow(10))
        .plan("free", slow(3))
        .redis(RedisConfig::new(redis_url()))
        .prefix(prefix)
}

#[tokio::test]
async fn two_instances_share_one_limit() {
    require_redis().await;
    let prefix = unique_prefix("quota-shared");
    let one = builder(&prefix).build().unwrap();
    let two = builder(&prefix).build().unwrap();
    let (a, b) = (app(&one), app(&two));
    let mut total = 0;
    for i in 0..30 {
        let res = call(if i % 2 == 0 { &a } else { &b }, "acme", "/").await;
        total += usize::from(res.status() == StatusCode::OK);
    }
    assert_eq!(total, 10, "one burst of 10 for both instances together");
    for quota in [&one, &two] {
        let stats = quota.stats();
        assert_eq!(stats.shared_decisions, 15);
        assert_eq!(stats.fallbacks, 0);
        assert_eq!(stats.shared, Some(true));
    }
    assert_eq!(one.stats().allowed + two.stats().allowed, 10);
    assert_eq!(one.stats().throttled + two.stats().throttled, 20);
}

#[tokio::test]
async fn tenants_are_independent() {
    require_redis().await;
    let prefix = unique_prefix("quota-tenants");
    let quota = builder(&prefix).build().unwrap();
    let app = app(&quota);
    assert_eq!(allowed(&app, "acme", "/", 50).await, 10);
    // acme's flood leaves globex its whole burst, and its own numbers.
    let first = call(&app, "globex", "/").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit-policy"], "\"free\";q=3;w=10800");
    let remaining = first.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(remaining.starts_with("\"free\";r=2;t="), "{remaining}");
    assert_eq!(allowed(&app, "globex", "/", 10).await, 2);
    let stats = quota.stats();
    assert_eq!(stats.throttled, 40 + 8);
    assert_eq!(
        stats.throttled_by_tenant,
        vec![(id("acme"), 40), (id("globex"), 8)]
    );
}

#[tokio::test]
async fn the_429_is_a_problem_with_retry_after_and_ratelimit_fields() {
    require_redis().await;
    let prefix = unique_prefix("quota-429");
    let quota = QuotaLayer::builder()
        .plan("free", Rate::per_second(1).burst(2))
        .redis(RedisConfig::new(redis_url()))
        .prefix(&prefix)
        .build()
        .unwrap();
    let app = app(&quota);
    let ok = call(&app, "globex", "/").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["ratelimit-policy"], "\"free\";q=2;w=2");
    assert_eq!(ok.headers()["ratelimit"], "\"free\";r=1;t=1");
    assert_eq!(call(&app, "globex", "/").await.status(), StatusCode::OK);
    let refused = call(&app, "globex", "/").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = refused.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["ratelimit-policy"], "\"free\";q=2;w=2");
    assert_eq!(headers["ratelimit"], "\"free\";r=0;t=2");
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "type": "urn:parapet:problem:quota-exceeded",
            "title": "Request quota exceeded",
            "status": 429,
            "detail": "This tenant's request quota is used up; retry in 1 s.",
        })
    );
    // After the announced second, the tenant is served again.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    assert_eq!(call(&app, "globex", "/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn redis_down_each_instance_holds_the_limit_alone() {
    let mut server = RedisServer::start(free_port(), &[]);
    let config = || {
        RedisConfig::new(server.url())
            .timeout(Duration::from_millis(50))
            .breaker(2, Duration::from_millis(300))
    };
    let build = || {
        QuotaLayer::builder()
            .plan("pro", slow(10))
            .redis(config())
            .build()
            .unwrap()
    };
    let (one, two) = (build(), build());
    let (a, b) = (app(&one), app(&two));
    // Shared while Redis is up: 4 of the 10 used through the first instance.
    assert_eq!(allowed(&a, "acme", "/", 4).await, 4);
    assert_eq!(one.stats().shared_decisions, 4);

    server.stop();
    // Redis gone: each instance enforces the whole limit on its own, and says so.
    let started = std::time::Instant::now();
    assert_eq!(allowed(&a, "acme", "/", 15).await, 10);
    assert_eq!(allowed(&b, "acme", "/", 15).await, 10);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fallback answers within the budget, no hang: {:?}",
        started.elapsed()
    );
    for quota in [&one, &two] {
        let stats = quota.stats();
        assert_eq!(stats.fallbacks, 15, "{stats:?}");
        assert_eq!(stats.shared, Some(false));
    }

    // Redis back: after the breaker's cool-down the limit is shared again (the restarted
    // server has no state: a fresh burst of 10 for both instances together).
    server.restart();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut shared_again = false;
    for _ in 0..100 {
        let _ = call(&a, "acme", "/").await;
        if one.stats().shared == Some(true) {
            shared_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shared_again, "{:?}", one.stats());
    for _ in 0..100 {
        let _ = call(&b, "acme", "/").await;
        if two.stats().shared == Some(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(two.stats().shared, Some(true), "{:?}", two.stats());
}

#[tokio::test]
async fn cache_hits_cost_a_fraction_locally() {
    let quota = QuotaLayer::builder()
        .plan("pro", slow(4))
        .hit_cost(0.5)
        .build()
        .unwrap();
    let app = app(&quota);
    // Each hit is charged a whole request and gives half back: with a burst of 4, the 7th
    // hit still fits (3 + 1 ≤ 4), the 8th does not.
    assert_eq!(allowed(&app, "acme", "/cached", 20).await, 7);
    assert_eq!(quota.stats().refunds, 7);
    assert_eq!(quota.stats().local_decisions, 20);
    assert_eq!(quota.stats().shared, None);

    // Free hits: a tenant that only hits the cache is never refused, misses still are.
    let quota = QuotaLayer::builder()
        .plan("pro", slow(4))
        .hit_cost(0.0)
        .build()
        .unwrap();
    let app = app_for(&quota);
    assert_eq!(allowed(&app, "acme", "/cached", 30).await, 30);
    assert_eq!(allowed(&app, "acme", "/", 30).await, 4);
}

/// [`app`], for where a local variable has that name.
fn app_for(quota: &QuotaLayer) -> Router {
    app(quota)
}

#[tokio::test]
async fn cache_hits_cost_a_fraction_on_redis() {
    require_redis().await;
    let prefix = unique_prefix("quota-hits");
    let quota = QuotaLayer::builder()
        .plan("pro", slow(4))
        .hit_cost(0.5)
        .redis(RedisConfig::new(redis_url()))
        .prefix(&prefix)
        .build()
        .unwrap();
    let app = app(&quota);
    let mut allowed_hits = 0;
    for _ in 0..20 {
        if call(&app, "acme", "/cached").await.status() == StatusCode::OK {
            allowed_hits += 1;
        }
        // The refund goes to Redis in a task of its own, after the response.
        for _ in 0..100 {
            if quota.stats().refunds == allowed_hits {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(allowed_hits, 7);
    assert_eq!(quota.stats().shared_decisions, 20);
}

/// Two instances sharing Redis, each remembering Redis's refusals: still one limit for both
/// (never more than the burst plus one request per interval), and never fewer than Redis alone
/// gives a client that keeps asking (a remembered refusal ends when Redis said it would).
#[tokio::test]
async fn remembered_refusals_end_when_redis_said_and_the_limit_stays_shared() {
    require_redis().await;
    let prefix = unique_prefix("quota-memo");
    // 10 a second (an interval of 100 ms), a burst of 5; a budget no loaded machine exhausts
    // (no fallback: every decision is Redis's).
    let build = || {
        QuotaLayer::builder()
            .plan("pro", Rate::per_second(10).burst(5))
            .redis(RedisConfig::new(redis_url()).timeout(Duration::from_secs(5)))
            .prefix(&prefix)
            .build()
            .unwrap()
    };
    let (one, two) = (build(), build());
    let (a, b) = (app(&one), app(&two));
    let start = std::time::Instant::now();
    let (mut requests, mut allowed, mut refused_at) = (0u64, 0u64, Duration::ZERO);
    while start.elapsed() < Duration::from_millis(1_500) {
        let sent = start.elapsed();
        let res = call(if requests % 2 == 0 { &a } else { &b }, "acme", "/").await;
        requests += 1;
        match res.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => refused_at = sent,
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    let interval = 100;
    // One limit: the burst, then one per interval, whichever instance asks.
    let upper = 5 + u64::try_from(elapsed.as_millis().div_ceil(interval)).unwrap();
    // The last refusal, sent at `refused_at`, found the TAT (start + allowed × interval: the
    // tenant never idles past its burst) more than 4 intervals ahead, on Redis's word, also
    // when it was a remembered one; one interval of slack for the clocks' rounding.
    let lower = 4 + u64::try_from(refused_at.as_millis() / interval).unwrap() - 1;
    assert!(
        (lower..=upper).contains(&allowed),
        "{allowed} allowed in {elapsed:?}, expected {lower} to {upper}; {:?} {:?}",
        one.stats(),
        two.stats()
    );
    let (s1, s2) = (one.stats(), two.stats());
    assert_eq!(s1.allowed + s2.allowed, allowed);
    assert_eq!(s1.shared_decisions + s2.shared_decisions, requests);
    assert_eq!(s1.fallbacks + s2.fallbacks, 0);
    assert!(
        s1.remembered_refusals > 0 && s2.remembered_refusals > 0,
        "each instance answered refusals without a round trip: {s1:?} {s2:?}"
    );
}

/// Every refusal answered from memory is one Redis would have given at that moment: after each,
/// the tenant's TAT in Redis is still ahead of Redis's clock (a burst of one: Redis refuses
/// exactly while the TAT is in the future), give or take 20 ms for the read coming later.
#[tokio::test]
async fn a_remembered_refusal_is_one_redis_would_give() {
    require_redis().await;
    let prefix = unique_prefix("quota-memo-exact");
    let quota = QuotaLayer::builder()
        .plan("pro", Rate::per_second(10).burst(1))
        .redis(RedisConfig::new(redis_url()).timeout(Duration::from_secs(5)))
        .prefix(&prefix)
        .build()
        .unwrap();
    let app = app(&quota);
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}{{acme}}");
    let start = std::time::Instant::now();
    let (mut checked, mut allowed) = (0, 0);
    while start.elapsed() < Duration::from_millis(1_000) {
        let before = quota.stats().remembered_refusals;
        let status = call(&app, "acme", "/").await.status();
        allowed += u32::from(status == StatusCode::OK);
        if quota.stats().remembered_refusals > before {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            let tat: Option<u64> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .unwrap();
            let (secs, micros): (u64, u64) =
                redis::cmd("TIME").query_async(&mut redis).await.unwrap();
            let now = secs * 1_000_000 + micros;
            let tat = tat.unwrap_or(0);
            assert!(
                tat + 20_000 > now,
                "refused from memory while Redis would allow: TAT {tat}, now {now}"
            );
            checked += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(checked > 10, "{checked} remembered refusals checked");
    assert!(allowed >= 2, "{allowed} allowed");
}

/// A refund (a cache hit giving back its charge) that lands after Redis refused the tenant
/// makes the remembered refusal stale: this instance forgets it and asks Redis again.
#[tokio::test]
async fn a_refund_ends_a_remembered_refusal() {
    require_redis().await;
    let prefix = unique_prefix("quota-memo-refund");
    let quota = QuotaLayer::builder()
        .plan("pro", slow(2))
        .hit_cost(0.0)
        .redis(RedisConfig::new(redis_url()))
        .prefix(&prefix)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow-hit",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                ([("cache-status", "parapet; hit; ttl=30")], "cached")
            }),
        )
        .layer(quota.clone())
        .layer(TenantLayer::new(directory()));
    assert_eq!(call(&app, "acme", "/").await.status(), StatusCode::OK);
    // The second of the burst is a hit still being answered when the third is refused.
    let hit = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "acme", "/slow-hit").await.status() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        call(&app, "acme", "/").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Remembered: refused without asking Redis (a refusal of an hour).
    assert_eq!(
        call(&app, "acme", "/").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(quota.stats().remembered_refusals, 1);
    assert_eq!(hit.await.unwrap(), StatusCode::OK);
    // The hit gives its whole charge back: one request fits again, on Redis's word.
    let mut served = false;
    for _ in 0..100 {
        if call(&app, "acme", "/").await.status() == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served, "{:?}", quota.stats());
    assert_eq!(quota.stats().refunds, 1);
    assert_eq!(quota.stats().allowed, 3);
}

#[tokio::test]
async fn overrides_and_defaults() {
    let quota = QuotaLayer::builder()
        .plan("pro", slow(10))
        .tenant(id("acme"), slow(2))
        .tenant(id("globex"), Rule::Unlimited)
        .build()
        .unwrap();
    let app = app(&quota);
    let res = call(&app, "acme", "/").await;
    assert_eq!(res.headers()["ratelimit-policy"], "\"tenant\";q=2;w=7200");
    assert_eq!(allowed(&app, "acme", "/", 10).await, 1);
    let free = call(&app, "globex", "/").await;
    assert!(
        free.headers().get("ratelimit").is_none(),
        "unlimited: no fields"
    );
    assert_eq!(allowed(&app, "globex", "/", 50).await, 50);
    // A plan with no rule gets the default.
    let quota = QuotaLayer::builder().default_rule(slow(1)).build().unwrap();
    let app = app_for(&quota);
    assert_eq!(allowed(&app, "globex", "/", 5).await, 1);
    // No tenant in the extensions: passes.
    let res = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(quota.clone())
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[test]
fn start_up_errors_name_the_plan_or_tenant_and_the_field() {
    let error = QuotaLayer::builder()
        .plan("free", Rate::per_second(20).burst(0))
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, BuildError::Plan { plan, source } if plan == "free" && source.part == Part::Burst)
    );
    assert_eq!(error.to_string(), "plan free: burst: must be at least 1");

    let error = QuotaLayer::builder()
        .tenant(id("acme"), Rate::per_second(0))
        .build()
        .unwrap_err();
    assert_eq!(error.to_string(), "tenant acme: count: must be at least 1");

    let error = QuotaLayer::builder()
        .plan("free plan", Rate::per_second(1))
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::PlanName { .. }), "{error}");

    for cost in [-0.1, 1.5, f64::NAN] {
        let error = QuotaLayer::builder().hit_cost(cost).build().unwrap_err();
        assert!(matches!(error, BuildError::HitCost(_)), "{error}");
    }

    let error = QuotaLayer::builder()
        .redis(RedisConfig::new("not a url"))
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::Redis(_)), "{error}");
}

/// Waits (at most 10 s) until `quota` holds `n` refusals.
async fn until_held(quota: &QuotaLayer, n: u64) {
    let start = std::time::Instant::now();
    while quota.stats().held_now != n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{n} refusals held: {:?}",
            quota.stats()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn retry_after(res: &Response<Body>) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Refusal pacing without Redis: refusals are answered half the delay to the delay late, at
/// most 3 at once and 2 of one tenant; a refusal over a bound is answered at once; a held
/// refusal whose client goes away gives its place back; the late answer's `Retry-After` counts
/// from when it is sent.
#[tokio::test]
async fn refusal_pacing_holds_refusals_within_their_bounds() {
    let delay = Duration::from_secs(4);
    let quota = QuotaLayer::builder()
        .plan("pro", slow(1))
        .plan("free", slow(1))
        .refusal_delay(delay)
        .max_held_refusals(3)
        .max_held_per_tenant(2)
        .build()
        .unwrap();
    let app = app(&quota);
    let spawn = |tenant: &'static str| {
        let app = app.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let res = call(&app, tenant, "/").await;
            (res, start.elapsed())
        })
    };
    assert_eq!(call(&app, "globex", "/").await.status(), StatusCode::OK);
    let first = spawn("globex");
    let second = spawn("globex");
    until_held(&quota, 2).await;
    // globex holds as many as one tenant may: its next refusal is answered at once.
    let at_once = call(&app, "globex", "/").await;
    assert_eq!(at_once.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(quota.stats().held_full, 1);
    assert_eq!(quota.stats().held_now, 2);
    // acme has places of its own, up to the bound of 3 in all.
    assert_eq!(call(&app, "acme", "/").await.status(), StatusCode::OK);
    let third = spawn("acme");
    until_held(&quota, 3).await;
    assert_eq!(
        call(&app, "acme", "/").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        quota.stats().held_full,
        2,
        "3 held in all: answered at once"
    );
    // A client that goes away gives its place back.
    second.abort();
    until_held(&quota, 2).await;
    let (res, elapsed) = first.await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(elapsed >= delay / 2, "answered after {elapsed:?}");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["ratelimit"], "\"free\";r=0;t=3600");
    // Its wait was counted when it was decided, less the 2 to 4 s it was held.
    let gap = retry_after(&at_once) - retry_after(&res);
    assert!((1..=4).contains(&gap), "{gap}");
    let (res, elapsed) = third.await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(elapsed >= delay / 2, "answered after {elapsed:?}");
    let stats = quota.stats();
    assert_eq!(stats.held_now, 0);
    assert_eq!((stats.held_refusals, stats.held_full), (3, 2));
    assert_eq!((stats.throttled, stats.allowed), (5, 2));
}

/// With Redis, a refusal Redis gave and one remembered from it are both held.
#[tokio::test]
async fn refusal_pacing_holds_shared_and_remembered_refusals() {
    require_redis().await;
    let prefix = unique_prefix("quota-pacing");
    let delay = Duration::from_millis(300);
    let quota = builder(&prefix).refusal_delay(delay).build().unwrap();
    let app = app(&quota);
    assert_eq!(allowed(&app, "globex", "/", 3).await, 3);
    for _ in 0..2 {
        let start = std::time::Instant::now();
        let res = call(&app, "globex", "/").await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            start.elapsed() >= delay / 2,
            "answered after {:?}",
            start.elapsed()
        );
    }
    let stats = quota.stats();
    assert_eq!((stats.held_refusals, stats.held_now), (2, 0));
    assert_eq!((stats.remembered_refusals, stats.shared_decisions), (1, 5));
    // Other tenants are not slowed by globex's refusals.
    assert_eq!(call(&app, "acme", "/").await.status(), StatusCode::OK);
}
