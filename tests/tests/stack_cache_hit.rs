//! Through the stack tenant → cache → pool, a cache hit never checks out a PostgreSQL connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, body::Body, extract::State, routing::get};
use http::{Request, header};
use parapet_cache::CacheLayer;
use parapet_pool::{Db, DbError, PoolLayer, TenantPools};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use parapet_tests::TestDb;
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_hit_does_not_touch_postgres() {
    let db = TestDb::migrated("stack_hit").await;
    let pools = TenantPools::builder(db.url())
        .budget(4)
        .build()
        .await
        .unwrap();
    let checkouts = Arc::new(AtomicUsize::new(0));
    let directory = StaticDirectory::new()
        .tenant(TenantRecord::new(TenantId::parse("acme").unwrap()))
        .tenant(TenantRecord::new(TenantId::parse("globex").unwrap()));
    let app = Router::new()
        .route(
            "/api/leads",
            get(|State(n): State<Arc<AtomicUsize>>, db: Db| async move {
                n.fetch_add(1, Ordering::SeqCst);
                let row = db.query_one("SELECT count(*) FROM leads", &[]).await?;
                Ok::<_, DbError>((
                    [(header::CACHE_CONTROL, "max-age=30")],
                    format!("{} leads for {}", row.get::<_, i64>(0), db.tenant()),
                ))
            }),
        )
        .with_state(checkouts.clone())
        .layer(PoolLayer::new(pools.clone()))
        .layer(CacheLayer::builder().local(8 << 20).build().unwrap())
        .layer(TenantLayer::new(directory));

    let get = |tenant: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::get("/api/leads")
                .header("x-tenant-id", tenant)
                .body(Body::empty())
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            let status = res.headers()["cache-status"].to_str().unwrap().to_owned();
            (res.status().as_u16(), status)
        }
    };
    let (code, status) = get("acme").await;
    assert_eq!(code, 200);
    assert!(
        status.contains("miss") && status.contains("stored"),
        "{status}"
    );
    assert_eq!(checkouts.load(Ordering::SeqCst), 1);
    let in_use_before = pools.status().budget_in_use;

    for _ in 0..50 {
        let (code, status) = get("acme").await;
        assert_eq!(code, 200);
        assert!(status.contains("hit"), "{status}");
    }
    assert_eq!(
        checkouts.load(Ordering::SeqCst),
        1,
        "hits never reach the handler's Db"
    );
    assert_eq!(
        pools.status().budget_in_use,
        in_use_before,
        "no new connection opened"
    );

    // Another tenant on the same path is its own miss.
    let (_, status) = get("globex").await;
    assert!(
        status.contains("miss") && status.contains("stored"),
        "{status}"
    );
    assert_eq!(checkouts.load(Ordering::SeqCst), 2);
}
