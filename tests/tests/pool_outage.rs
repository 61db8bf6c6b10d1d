//! A PostgreSQL server that goes away under load: requests get 503 within the wait timeout, and
//! succeed again once it is back, without restarting the app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::{Router, body::Body, routing::get};
use http::Request;
use parapet_pool::{Db, DbError, PoolLayer, TenantPools};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use parapet_tests::cluster::TempCluster;
use tower::ServiceExt;

async fn handler(db: Db) -> Result<String, DbError> {
    let row = db
        .query_one("SELECT current_setting('app.tenant_id')", &[])
        .await?;
    Ok(row.get(0))
}

async fn status_of(app: &Router) -> u16 {
    let req = Request::get("/")
        .header("x-tenant-id", "acme")
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_then_back() {
    let cluster = TempCluster::start();
    let pools = TenantPools::builder(cluster.url())
        .budget(8)
        .max_per_pool(4)
        .wait_timeout(Duration::from_millis(800))
        .create_timeout(Duration::from_millis(800))
        .build()
        .await
        .unwrap();
    let directory =
        StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("acme").unwrap()));
    let app = Router::new()
        .route("/", get(handler))
        .layer(PoolLayer::new(pools.clone()))
        .layer(TenantLayer::new(directory));

    for _ in 0..20 {
        assert_eq!(status_of(&app).await, 200);
    }

    cluster.pg_stop();
    // Concurrent load while the server is down: every request answers 503 quickly.
    let started = Instant::now();
    let load: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                (status_of(&app).await, t.elapsed())
            })
        })
        .collect();
    for task in load {
        let (status, took) = task.await.unwrap();
        assert_eq!(status, 503, "server down");
        assert!(took < Duration::from_secs(3), "answered in {took:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    cluster.pg_start();
    // Back: the same app serves again once the server accepts connections.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if status_of(&app).await == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still failing 15 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..20 {
        assert_eq!(status_of(&app).await, 200);
    }
}
