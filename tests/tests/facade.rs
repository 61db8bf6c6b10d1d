//! `Parapet` stacks the layers in the right order, and a stack with layers left out still works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, body::Body, extract::State, routing::get};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use parapet::tenant::{HeaderResolver, StaticDirectory, TenantRecord};
use parapet::{
    CacheLayer, Db, DbError, Parapet, ServiceBuilderExt, TelemetryLayer, TenantId, TenantLayer,
    TenantPools,
};
use parapet_tests::TestDb;
use tower::{ServiceBuilder, ServiceExt};

fn directory() -> StaticDirectory {
    StaticDirectory::new()
        .tenant(TenantRecord::new(TenantId::parse("acme").unwrap()))
        .tenant(TenantRecord::new(TenantId::parse("globex").unwrap()))
}

async fn call(app: &Router, tenant: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get("/api/leads");
    if let Some(tenant) = tenant {
        req = req.header("x-tenant-id", tenant);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let cache = res
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    (status, cache, format!("{ctype}|{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_stack_runs_tenant_before_cache_before_pool() {
    let db = TestDb::migrated("facade_full").await;
    let url = db.app_role_url().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO tenants (id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex');
             INSERT INTO leads (org_id, name) VALUES ('acme', 'a1'), ('acme', 'a2'), ('globex', 'g1');",
        )
        .await
        .unwrap();
    let pools = TenantPools::builder(url).budget(4).build().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let stack = Parapet::builder()
        .telemetry(TelemetryLayer::new())
        .tenant(
            TenantLayer::builder(directory())
                .resolver(HeaderResolver::new())
                .build(),
        )
        .cache(CacheLayer::builder().local(8 << 20).build().unwrap())
        .pools(pools.clone())
        .build();
    assert!(stack.cache().is_some() && stack.pools().is_some());
    let app = Router::new()
        .route(
            "/api/leads",
            get(|State(n): State<Arc<AtomicUsize>>, db: Db| async move {
                n.fetch_add(1, Ordering::SeqCst);
                let row = db.query_one("SELECT count(*) FROM leads", &[]).await?;
                Ok::<_, DbError>((
                    [(header::CACHE_CONTROL, "max-age=30")],
                    format!("{}:{}", db.tenant(), row.get::<_, i64>(0)),
                ))
            }),
        )
        .with_state(calls.clone())
        .layer(stack);

    // Row-level security through the pool: each tenant counts its own rows.
    let (status, cache, body) = call(&app, Some("acme")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with("|acme:2"), "{body}");
    assert!(cache.unwrap().contains("stored"));
    let (_, cache, body) = call(&app, Some("acme")).await;
    assert!(body.ends_with("|acme:2"), "{body}");
    assert!(cache.unwrap().contains("hit"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the hit never reached the pool"
    );
    let (_, cache, body) = call(&app, Some("globex")).await;
    assert!(body.ends_with("|globex:1"), "{body}");
    assert!(!cache.unwrap().contains("hit"), "keys are scoped by tenant");

    // The tenant layer runs before the cache: no tenant, no cache entry, a problem.
    let (status, cache, body) = call(&app, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("application/problem+json|"), "{body}");
    assert_eq!(cache, None, "rejected before the cache");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn layers_left_out_pass_requests_through() {
    let handler = || async { ([(header::CACHE_CONTROL, "max-age=30")], "hello") };
    let empty = Router::new()
        .route("/api/leads", get(handler))
        .layer(Parapet::default());
    let (status, cache, body) = call(&empty, None).await;
    assert_eq!((status, cache), (StatusCode::OK, None));
    assert!(body.ends_with("|hello"), "{body}");

    // Tenant only: a tenant is required, nothing is cached.
    let tenant_only = Router::new().route("/api/leads", get(handler)).layer(
        Parapet::builder()
            .tenant(
                TenantLayer::builder(directory())
                    .resolver(HeaderResolver::new())
                    .build(),
            )
            .build(),
    );
    assert_eq!(call(&tenant_only, None).await.0, StatusCode::BAD_REQUEST);
    let (status, cache, _) = call(&tenant_only, Some("acme")).await;
    assert_eq!((status, cache), (StatusCode::OK, None));
    assert_eq!(
        call(&tenant_only, Some("nosuch")).await.0,
        StatusCode::NOT_FOUND
    );

    // The same stack through ServiceBuilderExt.
    let built = Router::new().route("/api/leads", get(handler)).layer(
        ServiceBuilder::new()
            .telemetry(TelemetryLayer::new())
            .tenant(
                TenantLayer::builder(directory())
                    .resolver(HeaderResolver::new())
                    .build(),
            )
            .cache(CacheLayer::builder().local(1 << 20).build().unwrap()),
    );
    let (_, first, _) = call(&built, Some("acme")).await;
    let (_, second, body) = call(&built, Some("acme")).await;
    assert!(first.unwrap().contains("stored"));
    assert!(second.unwrap().contains("hit"), "{body}");
}
