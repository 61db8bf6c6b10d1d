//! A real OTLP/HTTP receiver on 127.0.0.1 (parapet-testkit's): spans and metrics of a request
//! through the layer arrive over the network, decoded with opentelemetry-proto and prost, after
//! the guard's shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::{Router, body::Body, http::StatusCode, routing::get};
use http::Request;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    metrics::v1::metric::Data,
    trace::v1::{Span, status::StatusCode as ProtoStatus},
};
use parapet_telemetry::{TelemetryBuilder, TelemetryLayer};
use parapet_testkit::otlp::{hex, http_receiver};
use prost::Message;
use tower::ServiceExt;

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string(s: &str) -> Value {
    Value::StringValue(s.to_owned())
}

// A current-thread runtime, and `shutdown` called right on it: the exporters run on their own
// runtime, so this neither panics ("no reactor running") nor deadlocks.
#[tokio::test]
async fn spans_and_metrics_arrive_over_otlp_http_on_shutdown() {
    let (addr, received) = http_receiver();
    let (subscriber, guard) = TelemetryBuilder::from_env_map([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_SERVICE_NAME", "crm-api".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test".to_owned(),
        ),
    ])
    .log_output(false)
    .build()
    .unwrap();
    let _default = tracing::subscriber::set_default(subscriber);
    let meter = guard.meter_provider().meter("parapet-telemetry");
    let app = Router::new()
        .route("/leads/{id}", get(|| async { "lead" }))
        .route("/boom", get(|| async { StatusCode::BAD_GATEWAY }))
        .layer(TelemetryLayer::new().meter(meter));
    for uri in ["/leads/42", "/boom"] {
        let req = Request::get(uri)
            .header("host", "localhost:3000")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(req))
            .await
            .unwrap()
            .unwrap();
    }
    // The spans ended just now: nothing was exported yet (the batch delay is 5 s) and shutdown
    // must deliver them.
    assert!(received.bodies("/v1/traces").is_empty());
    let started = std::time::Instant::now();
    guard.shutdown().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));

    let requests = received.trace_requests("/v1/traces");
    assert!(!requests.is_empty(), "no OTLP trace request arrived");
    let mut spans: Vec<Span> = Vec::new();
    for request in requests {
        for rs in request.resource_spans {
            let resource = rs.resource.unwrap();
            assert_eq!(
                attr(&resource.attributes, "service.name"),
                Some(&string("crm-api"))
            );
            assert_eq!(
                attr(&resource.attributes, "deployment.environment"),
                Some(&string("test"))
            );
            spans.extend(rs.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    assert_eq!(spans.len(), 2);
    let lead = spans.iter().find(|s| s.name == "GET /leads/{id}").unwrap();
    assert_eq!(lead.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(hex(&lead.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&lead.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(
        attr(&lead.attributes, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(
        attr(&lead.attributes, "http.route"),
        Some(&string("/leads/{id}"))
    );
    assert_eq!(
        attr(&lead.attributes, "server.port"),
        Some(&Value::IntValue(3000))
    );
    for noise in ["busy_ns", "idle_ns", "thread.id", "thread.name", "target"] {
        assert_eq!(
            attr(&lead.attributes, noise),
            None,
            "{noise} is not exported"
        );
    }
    let boom = spans.iter().find(|s| s.name == "GET /boom").unwrap();
    assert_eq!(
        boom.status.as_ref().map(|s| s.code),
        Some(ProtoStatus::Error as i32)
    );
    assert_eq!(attr(&boom.attributes, "error.type"), Some(&string("502")));

    let exports = received.metric_exports("/v1/metrics");
    let mut histogram = None;
    for metric in exports.iter().flatten() {
        if metric.name == "http.server.request.duration" {
            assert_eq!(metric.unit, "s");
            histogram = metric.data.clone();
        }
    }
    let Some(Data::Histogram(histogram)) = histogram else {
        panic!("no duration histogram over OTLP: {} bodies", exports.len());
    };
    assert_eq!(histogram.data_points.len(), 2);
    let point = histogram
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "http.route") == Some(&string("/leads/{id}")))
        .unwrap();
    assert_eq!(point.count, 1);
    assert_eq!(
        point.explicit_bounds,
        parapet_telemetry::DURATION_BUCKETS.to_vec()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_neither_fails_nor_slows_requests() {
    // Bind then drop: nothing listens on that port any more.
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (subscriber, guard) =
        TelemetryBuilder::from_env_map([("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))])
            .log_output(false)
            .build()
            .unwrap();
    let _default = tracing::subscriber::set_default(subscriber);
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(TelemetryLayer::new().metrics(false));
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let res = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // The SDK logs the failed export (it does not report it from shutdown); shutdown stays bounded.
    let started = std::time::Instant::now();
    let _ = tokio::task::block_in_place(|| guard.shutdown());
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn dropping_the_guard_also_delivers_the_last_span() {
    let (addr, received) = http_receiver();
    let (subscriber, guard) =
        TelemetryBuilder::from_env_map([("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))])
            .log_output(false)
            .build()
            .unwrap();
    let _default = tracing::subscriber::set_default(subscriber);
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(TelemetryLayer::new().metrics(false));
    app.oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    drop(guard);
    let names: Vec<String> = received
        .spans("/v1/traces")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["GET /".to_owned()]);
}

// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is (no `/v1/traces` appended), the metrics go
// to the general endpoint's `/v1/metrics`, and the headers and gzip apply to both.
#[tokio::test]
async fn per_signal_endpoint_headers_and_gzip_reach_the_receiver() {
    let (addr, received) = http_receiver();
    let (subscriber, guard) = TelemetryBuilder::from_env_map([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}/base")),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://{addr}/collector/spans"),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20t0ken,x-tenant=crm".to_owned(),
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000".to_owned()),
    ])
    .log_output(false)
    .build()
    .unwrap();
    assert!(guard.warnings().is_empty(), "{:?}", guard.warnings());
    let _default = tracing::subscriber::set_default(subscriber);
    let meter = guard.meter_provider().meter("parapet-telemetry");
    let app = Router::new()
        .route("/leads/{id}", get(|| async { "lead" }))
        .layer(TelemetryLayer::new().meter(meter));
    app.oneshot(Request::get("/leads/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    guard.shutdown().unwrap();

    let seen: Vec<_> = received
        .exports()
        .into_iter()
        .map(|e| (e.path.clone(), e.headers.clone(), e.message()))
        .collect();
    let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    let traces: Vec<_> = seen
        .iter()
        .filter(|(p, _, _)| p == "/collector/spans")
        .collect();
    assert!(!traces.is_empty(), "{paths:?}");
    assert!(
        seen.iter().any(|(p, _, _)| p == "/base/v1/metrics"),
        "{paths:?}"
    );
    assert!(
        seen.iter()
            .all(|(p, _, _)| p == "/collector/spans" || p == "/base/v1/metrics"),
        "{paths:?}"
    );
    for (path, headers, _) in &seen {
        assert_eq!(headers["authorization"], "Bearer t0ken", "{path}");
        assert_eq!(headers["x-tenant"], "crm", "{path}");
        assert_eq!(headers["content-encoding"], "gzip", "{path}");
    }
    let names: Vec<String> = traces
        .iter()
        .map(|(_, _, body)| ExportTraceServiceRequest::decode(body.as_slice()).unwrap())
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["GET /leads/{id}".to_owned()]);
}
