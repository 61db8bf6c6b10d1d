//! A real OTLP/gRPC receiver on 127.0.0.1 (HTTP/2 with gRPC framing, served by axum): the spans of
//! a request through the layer, and its metrics, arrive over the network after the guard's shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    routing::{get, post},
};
use http::Request;
use http_body_util::{BodyExt, Full};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_proto::tonic::{
    collector::{metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::any_value::Value,
};
use parapet_telemetry::{TelemetryBuilder, TelemetryLayer};
use prost::Message;
use tower::ServiceExt;

type Bodies = Arc<Mutex<Vec<Bytes>>>;

#[derive(Clone, Default)]
struct Received {
    traces: Bodies,
    metrics: Bodies,
}

/// A unary gRPC success: one empty (default) response message, then `grpc-status: 0` in the
/// trailers.
fn grpc_ok() -> http::Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
        .with_trailers(async move { Some(Ok(trailers)) });
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(body))
        .unwrap()
}

/// Accepts the unary export calls of the trace and metrics services.
async fn receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let traces = |State(r): State<Received>, body: Bytes| async move {
        r.traces.lock().unwrap().push(body);
        grpc_ok()
    };
    let metrics = |State(r): State<Received>, body: Bytes| async move {
        r.metrics.lock().unwrap().push(body);
        grpc_ok()
    };
    let app = Router::new()
        .route(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            post(traces),
        )
        .route(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            post(metrics),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// One length-prefixed, uncompressed gRPC message.
fn unframe(body: &[u8]) -> &[u8] {
    assert_eq!(body[0], 0, "uncompressed");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    &body[5..5 + len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_over_otlp_grpc_on_shutdown() {
    let (addr, received) = receiver().await;
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

    let bodies = received.traces.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "no OTLP/gRPC export arrived");
    let spans: Vec<_> = bodies
        .iter()
        .map(|b| ExportTraceServiceRequest::decode(unframe(b)).unwrap())
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect();
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
        .metrics
        .lock()
        .unwrap()
        .iter()
        .map(|b| ExportMetricsServiceRequest::decode(unframe(b)).unwrap())
        .flat_map(|r| r.resource_metrics)
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .map(|m| m.name)
        .collect();
    assert!(
        metric_names.contains(&"http.server.request.duration".to_owned()),
        "{metric_names:?}"
    );
}
