//! The pool's query spans and slow-query event reach an OTLP/HTTP receiver inside the request's
//! trace (a test binary of its own: it installs a `tracing` subscriber, and callsite interest is
//! process-wide).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use http::Request;
use parapet_pool::{Db, DbError, PoolLayer, TenantPools};
use parapet_telemetry::{TelemetryBuilder, TelemetryLayer};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use parapet_tests::TestDb;
use tower::ServiceExt;

use parapet_testkit::otlp::{self, attr, hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_spans_and_the_slow_query_event_join_the_request_trace() {
    let db = TestDb::create("telemetry_spans").await;
    let (addr, received) = otlp::http_receiver();
    let (subscriber, guard) = TelemetryBuilder::from_env_map([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_SERVICE_NAME", "crm-api".to_owned()),
        // A strict log level must not drop the query spans (nor the events they carry).
        ("RUST_LOG", "warn".to_owned()),
    ])
    .log_output(false)
    .build()
    .unwrap();
    let _default = tracing::subscriber::set_default(subscriber);

    let pools = TenantPools::builder(db.url())
        .budget(2)
        .slow_query(Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let directory =
        StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("acme").unwrap()));
    let app = Router::new()
        .route(
            "/leads/{id}",
            get(|db: Db| async move {
                db.query_one("SELECT 1::int", &[]).await?;
                db.query_one("SELECT pg_sleep(0.05)::text", &[]).await?;
                Ok::<_, DbError>("done")
            }),
        )
        .layer(PoolLayer::new(pools))
        .layer(TenantLayer::new(directory))
        .layer(TelemetryLayer::new().metrics(false));
    let req = Request::get("/leads/7")
        .header("x-tenant-id", "acme")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), app.oneshot(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    tokio::task::block_in_place(|| guard.shutdown()).unwrap();

    let spans = received.spans("/v1/traces");
    let server = spans
        .iter()
        .find(|s| s.name == "GET /leads/{id}")
        .unwrap_or_else(|| panic!("no server span in {:?}", names(&spans)));
    assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        attr(&server.attributes, "tenant.id").as_deref(),
        Some("acme")
    );

    let queries: Vec<_> = spans
        .iter()
        .filter(|s| attr(&s.attributes, "db.system.name").as_deref() == Some("postgresql"))
        .collect();
    assert_eq!(queries.len(), 2, "{:?}", names(&spans));
    for query in &queries {
        assert_eq!(query.name, "SELECT");
        assert_eq!(query.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(query.trace_id, server.trace_id, "same trace");
        assert_eq!(
            query.parent_span_id, server.span_id,
            "child of the server span"
        );
        assert_eq!(
            attr(&query.attributes, "db.namespace").as_deref(),
            Some(db.name())
        );
        assert_eq!(
            attr(&query.attributes, "db.operation.name").as_deref(),
            Some("SELECT")
        );
        assert_eq!(
            attr(&query.attributes, "tenant.id").as_deref(),
            Some("acme")
        );
    }
    let fast = queries
        .iter()
        .find(|s| attr(&s.attributes, "db.query.text").as_deref() == Some("SELECT 1::int"))
        .unwrap();
    let slow = queries
        .iter()
        .find(|s| {
            attr(&s.attributes, "db.query.text").as_deref() == Some("SELECT pg_sleep(0.05)::text")
        })
        .unwrap();
    let slow_ns = slow.end_time_unix_nano - slow.start_time_unix_nano;
    assert!(slow_ns >= 50_000_000, "pg_sleep(0.05) lasted {slow_ns} ns");

    // The slow-query WARN is an event of the slow query's span, with the statement and route.
    let events: Vec<_> = slow
        .events
        .iter()
        .filter(|e| e.name == "slow query")
        .collect();
    assert_eq!(events.len(), 1, "{:?}", slow.events);
    let event = events[0];
    assert_eq!(attr(&event.attributes, "level").as_deref(), Some("WARN"));
    assert_eq!(
        attr(&event.attributes, "http.route").as_deref(),
        Some("/leads/{id}")
    );
    assert_eq!(
        attr(&event.attributes, "db.query.text").as_deref(),
        Some("SELECT pg_sleep(0.05)::text")
    );
    assert_eq!(
        attr(&event.attributes, "tenant.id").as_deref(),
        Some("acme")
    );
    let duration: u64 = attr(&event.attributes, "duration_ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(duration >= 50, "{duration} ms");
    // A query under the threshold carries no event (on a machine so busy that `SELECT 1` took
    // 10 ms, it rightly warns too).
    let fast_ns = fast.end_time_unix_nano - fast.start_time_unix_nano;
    if fast.events.iter().any(|e| e.name == "slow query") {
        assert!(fast_ns >= 10_000_000, "a {fast_ns} ns query warned");
    }
}

fn names(spans: &[opentelemetry_proto::tonic::trace::v1::Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}
