//! A real OTLP/gRPC receiver on 127.0.0.1 (parapet-testkit's: HTTP/2 with gRPC framing, served by
//! axum): the spans of a request through the layer, and its metrics, arrive over the network after
//! the guard's shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use http::Request;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use parapet_telemetry::{TelemetryBuilder, TelemetryLayer};
use parapet_testkit::otlp::{GRPC_METRICS, GRPC_TRACES, grpc_receiver};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_over_otlp_grpc_on_shutdown() {
    let (addr, received) = grpc_receiver();
    let (subscriber, guard) = TelemetryBuilder::from_env_map([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_SERVICE_NAME", "crm-api".to_owned()),
    ])
    .log_output(false)
    .build()
    .unwrap();
    let _default = tracing::subscriber::set_default(subscriber);
    let app = Router::new()
        .route("/deals/{id}", get(|| async { "deal" }))
        .layer(TelemetryLayer::new().meter(guard.meter_provider().meter("parapet-telemetry")));
    let req = Request::get("/deals/9").body(Body::empty()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), app.oneshot(req))
        .await
        .unwrap()
        .unwrap();
    let started = std::time::Instant::now();
    tokio::task::block_in_place(|| guard.shutdown()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));

    let bodies = received.bodies(GRPC_TRACES);
    assert!(!bodies.is_empty(), "no OTLP/gRPC export arrived");
    let spans = received.spans(GRPC_TRACES);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "GET /deals/{id}");
    let status = spans[0]
        .attributes
        .iter()
        .find(|kv| kv.key == "http.response.status_code")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone());
    assert_eq!(status, Some(Value::IntValue(200)));

    let metric_names: Vec<String> = received
        .metric_exports(GRPC_METRICS)
        .into_iter()
        .flatten()
        .map(|m| m.name)
        .collect();
    assert!(
        metric_names.contains(&"http.server.request.duration".to_owned()),
        "{metric_names:?}"
    );
}
