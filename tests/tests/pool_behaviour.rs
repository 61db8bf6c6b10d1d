//! `PoolLayer` and the `Db` extractor on a Router: errors a client sees, warmup, pool creation
//! under concurrency, slow-query events and query spans.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use axum::{Router, body::Body, routing::get};
use http::Request;
use http_body_util::BodyExt;
use parapet_pool::{Db, DbError, Isolation, PoolLayer, TenantPools};
use parapet_tenant::{
    DatabaseTarget, Features, StaticDirectory, Tenant, TenantId, TenantLayer, TenantRecord,
};
use parapet_tests::TestDb;
use tower::ServiceExt;

fn record(id: &str, database: DatabaseTarget) -> TenantRecord {
    TenantRecord::new(TenantId::parse(id).unwrap()).database(database)
}

fn tenant(id: &str, database: DatabaseTarget) -> Tenant {
    Tenant::new(Arc::new(record(id, database)), Arc::new(Features::new()))
}

async fn get_as(app: &Router, path: &str, tenant: &str) -> (u16, http::HeaderMap, String) {
    let req = Request::get(path)
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_facing_errors_are_problems_without_internals() {
    let db = TestDb::create("pool_errors").await;
    let pools = TenantPools::builder(db.url())
        .isolation(Isolation::DatabasePerTenant)
        .budget(10)
        .max_per_pool(1)
        .wait_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let missing_db = format!("{}_does_not_exist", db.url());
    let directory = StaticDirectory::new()
        .tenant(record("ok", DatabaseTarget::Dedicated(db.url().to_owned())))
        .tenant(record("gone", DatabaseTarget::Dedicated(missing_db)))
        .tenant(record("shared", DatabaseTarget::Shared));
    let app = Router::new()
        .route(
            "/",
            get(|db: Db| async move {
                let row = db.query_one("SELECT 1::int", &[]).await?;
                Ok::<_, DbError>(row.get::<_, i32>(0).to_string())
            }),
        )
        .route(
            "/sql-error",
            get(|db: Db| async move {
                db.query_one("SELECT * FROM no_such_table", &[]).await?;
                Ok::<_, DbError>("unreachable")
            }),
        )
        .layer(PoolLayer::new(pools.clone()))
        .layer(TenantLayer::new(directory));

    assert_eq!(get_as(&app, "/", "ok").await.0, 200);

    // Exhausted pool: one connection, held; the next request waits 300 ms and gets 503.
    let held = pools
        .checkout(&tenant(
            "ok",
            DatabaseTarget::Dedicated(db.url().to_owned()),
        ))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (status, headers, body) = get_as(&app, "/", "ok").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);

    // An unknown database is a configuration error: a generic 500 that names nothing.
    let (status, _, body) = get_as(&app, "/", "gone").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        !body.contains("does_not_exist") && !body.contains("postgres"),
        "{body}"
    );
    // Database-per-tenant refuses a tenant without its own database.
    assert_eq!(get_as(&app, "/", "shared").await.0, 500);
    // A failing query: 500 without the SQL or the server's message.
    let (status, _, body) = get_as(&app, "/sql-error", "ok").await;
    assert_eq!(status, 500);
    assert!(!body.contains("no_such_table"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_target_gets_one_pool_and_warmup_opens_connections() {
    let db = TestDb::create("pool_once").await;
    let pools = TenantPools::builder(db.url())
        .isolation(Isolation::DatabasePerTenant)
        .budget(10)
        .max_per_pool(4)
        .min_idle(3)
        .build()
        .await
        .unwrap();
    let t = tenant("acme", DatabaseTarget::Dedicated(db.url().to_owned()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (pools, t) = (pools.clone(), t.clone());
            tokio::spawn(async move { pools.checkout(&t).await.map(drop) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let status = pools.status();
    assert_eq!(status.targets.len(), 1, "{status:?}");
    assert!(status.targets[0].size <= 4, "{status:?}");
    assert!(
        !status.targets[0].target.contains("postgres@"),
        "no credentials in labels"
    );

    let other = tenant(
        "globex",
        DatabaseTarget::Dedicated(format!("{}?application_name=warm", db.url())),
    );
    assert_eq!(pools.warmup(&other).await.unwrap(), 3);
    let warm = pools
        .status()
        .targets
        .into_iter()
        .find(|t| t.target.contains("warm"))
        .unwrap();
    assert_eq!((warm.size, warm.available), (3, 3));
}
