//! Query spans and slow-query events of the `Db` extractor (a test binary of its own, so that no
//! other test shares the process-wide tracing callsite cache).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, routing::get};
use http::Request;
use parapet_pool::{Db, DbError, PoolLayer, TenantPools};
use parapet_tenant::{DatabaseTarget, StaticDirectory, TenantId, TenantLayer, TenantRecord};
use parapet_tests::TestDb;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

fn record(id: &str, database: DatabaseTarget) -> TenantRecord {
    TenantRecord::new(TenantId::parse(id).unwrap()).database(database)
}

async fn get_as(app: &Router, path: &str, tenant: &str) -> u16 {
    let req = Request::get(path)
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

/// Collects events and span fields.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut line = format!("span {}", attrs.metadata().name());
        attrs.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }

    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut line = format!("event {}", event.metadata().level());
        event.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn slow_queries_warn_with_tenant_route_duration_and_statement() {
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));

    let db = TestDb::create("pool_slow").await;
    let pools = TenantPools::builder(db.url())
        .budget(4)
        .slow_query(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let directory = StaticDirectory::new().tenant(record("acme", DatabaseTarget::Shared));
    let app = Router::new()
        .route(
            "/leads/{id}",
            get(|db: Db| async move {
                db.query_one("SELECT pg_sleep($1)::text", &[&0.15_f64])
                    .await?;
                db.query_one("SELECT 1::int", &[]).await?;
                Ok::<_, DbError>("done")
            }),
        )
        .layer(PoolLayer::new(pools))
        .layer(TenantLayer::new(directory));
    assert_eq!(get_as(&app, "/leads/7", "acme").await, 200);

    let lines = captured.0.lock().unwrap().clone();
    let spans: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("span db.query"))
        .collect();
    assert!(spans.len() >= 2, "{lines:#?}");
    assert!(
        spans.iter().any(|s| s.contains("db.system.name=postgresql")
            && s.contains("db.operation.name=SELECT")
            && s.contains(&format!("db.namespace={}", db.name()))
            && s.contains("tenant.id=acme")),
        "{spans:#?}"
    );
    let warns: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("event WARN"))
        .collect();
    assert_eq!(warns.len(), 1, "only the slow query warns: {lines:#?}");
    let warn = warns[0];
    for needle in [
        "slow query",
        "tenant.id=acme",
        "http.route=/leads/{id}",
        "SELECT pg_sleep($1)::text",
        "duration_ms=",
    ] {
        assert!(warn.contains(needle), "missing {needle} in {warn}");
    }
    assert!(
        !warn.contains("0.15"),
        "parameters are never logged: {warn}"
    );
}
