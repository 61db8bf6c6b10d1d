//! `TelemetryBuilder` pipelines read back in memory: metrics, filters, samplers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::{Router, body::Body, http::StatusCode, routing::get};
use http::Request;
use opentelemetry::{Value, metrics::MeterProvider as _};
use opentelemetry_sdk::{
    metrics::{
        InMemoryMetricExporter,
        data::{AggregatedMetrics, MetricData, ResourceMetrics},
    },
    trace::{InMemorySpanExporter, SimpleSpanProcessor},
};
use parapet_telemetry::{DURATION_BUCKETS, TelemetryBuilder, TelemetryGuard, TelemetryLayer};
use tower::ServiceExt;

struct Setup {
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    guard: TelemetryGuard,
    _default: tracing::subscriber::DefaultGuard,
}

fn setup(env: &[(&str, &str)]) -> Setup {
    let spans = InMemorySpanExporter::default();
    let metrics = InMemoryMetricExporter::default();
    let (subscriber, guard) = TelemetryBuilder::from_env_map(env.iter().copied())
        .log_output(false)
        .with_span_processor(SimpleSpanProcessor::new(spans.clone()))
        .with_metric_exporter(metrics.clone())
        .build()
        .unwrap();
    let default = tracing::subscriber::set_default(subscriber);
    Setup {
        spans,
        metrics,
        guard,
        _default: default,
    }
}

fn app(layer: TelemetryLayer) -> Router {
    Router::new()
        .route(
            "/leads/{id}",
            get(|| async {
                tracing::warn_span!("load lead").in_scope(|| tracing::debug_span!("hidden"));
                "lead"
            }),
        )
        .layer(layer)
}

async fn send(app: Router, uri: &str) -> StatusCode {
    let req = Request::get(uri).body(Body::empty()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), app.oneshot(req))
        .await
        .unwrap()
        .unwrap()
        .status()
}

fn metric<'a>(all: &'a [ResourceMetrics], name: &str) -> Option<&'a AggregatedMetrics> {
    all.iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .find(|m| m.name() == name)
        .map(|m| m.data())
}

fn has(attributes: Vec<&opentelemetry::KeyValue>, key: &str, value: Value) -> bool {
    attributes
        .iter()
        .any(|kv| kv.key.as_str() == key && kv.value == value)
}

#[tokio::test]
async fn one_request_records_the_duration_histogram_and_active_requests() {
    let s = setup(&[]);
    let meter = s.guard.meter_provider().meter("parapet-telemetry");
    assert_eq!(
        send(app(TelemetryLayer::new().meter(meter)), "/leads/1").await,
        StatusCode::OK
    );
    s.guard.force_flush().unwrap();
    let all = s.metrics.get_finished_metrics().unwrap();

    let Some(AggregatedMetrics::F64(MetricData::Histogram(histogram))) =
        metric(&all, "http.server.request.duration")
    else {
        panic!("no duration histogram");
    };
    let points: Vec<_> = histogram.data_points().collect();
    assert_eq!(points.len(), 1);
    let point = points[0];
    assert_eq!(point.count(), 1);
    assert_eq!(
        point.bounds().collect::<Vec<_>>(),
        DURATION_BUCKETS.to_vec()
    );
    let attributes: Vec<_> = point.attributes().collect();
    assert!(has(
        attributes.clone(),
        "http.request.method",
        Value::from("GET")
    ));
    assert!(has(
        attributes.clone(),
        "http.route",
        Value::from("/leads/{id}")
    ));
    assert!(has(
        attributes.clone(),
        "http.response.status_code",
        Value::I64(200)
    ));
    assert!(has(attributes, "url.scheme", Value::from("http")));

    let Some(AggregatedMetrics::I64(MetricData::Sum(active))) =
        metric(&all, "http.server.active_requests")
    else {
        panic!("no active requests counter");
    };
    assert!(!active.is_monotonic());
    let values: Vec<i64> = active.data_points().map(|p| p.value()).collect();
    assert_eq!(values, vec![0]);
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let s = setup(&[]);
    let meter = s.guard.meter_provider().meter("parapet-telemetry");
    let layer = TelemetryLayer::new().meter(meter).metrics(false);
    assert_eq!(send(app(layer), "/leads/1").await, StatusCode::OK);
    s.guard.force_flush().unwrap();
    let all = s.metrics.get_finished_metrics().unwrap();
    assert!(metric(&all, "http.server.request.duration").is_none());
    assert_eq!(server_spans(&s.spans), 1);
}

// davidB/axum-tracing-opentelemetry#148: a strict level filter must not drop the request span, or
// the handler's spans lose their parent.
#[tokio::test]
async fn a_warn_log_level_keeps_the_request_span_as_parent() {
    let s = setup(&[("RUST_LOG", "warn")]);
    send(app(TelemetryLayer::new().metrics(false)), "/leads/1").await;
    let spans = s.spans.get_finished_spans().unwrap();
    let server = spans.iter().find(|s| s.name == "GET /leads/{id}").unwrap();
    let child = spans.iter().find(|s| s.name == "load lead").unwrap();
    assert_eq!(child.parent_span_id, server.span_context.span_id());
    assert!(
        spans.iter().all(|s| s.name != "hidden"),
        "debug spans stay filtered"
    );
}

#[tokio::test]
async fn sampler_and_resource_come_from_the_env_map() {
    let s = setup(&[
        ("OTEL_TRACES_SAMPLER", "always_off"),
        ("OTEL_SERVICE_NAME", "billing"),
    ]);
    send(app(TelemetryLayer::new().metrics(false)), "/leads/1").await;
    assert!(s.spans.get_finished_spans().unwrap().is_empty());
    assert!(s.guard.warnings().is_empty());
    let s = setup(&[("OTEL_TRACES_SAMPLER", "nonsense")]);
    assert_eq!(s.guard.warnings().len(), 1);
    send(app(TelemetryLayer::new().metrics(false)), "/leads/1").await;
    assert_eq!(server_spans(&s.spans), 1);
}

#[test]
fn bad_settings_are_errors() {
    let err = TelemetryBuilder::from_env_map([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ])
    .build()
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
        "{err}"
    );
    let err = TelemetryBuilder::from_env_map([("RUST_LOG", "=[")])
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("RUST_LOG"), "{err}");
}

// OTEL_PROPAGATORS picks what the global propagator writes: W3C Trace Context and Baggage by
// default, one of them when named, nothing for `none`.
#[test]
fn otel_propagators_choose_the_propagated_headers() {
    use opentelemetry::propagation::TextMapPropagator as _;
    let fields = |vars: &[(&str, &str)]| {
        let (_, guard) = TelemetryBuilder::from_env_map(vars.iter().copied())
            .log_output(false)
            .build()
            .unwrap();
        let mut fields: Vec<String> = guard.propagator().fields().map(str::to_owned).collect();
        fields.sort();
        (fields, guard.warnings().len())
    };
    let (default, warnings) = fields(&[]);
    assert_eq!(default, ["baggage", "traceparent", "tracestate"]);
    assert_eq!(warnings, 0);
    assert_eq!(fields(&[("OTEL_PROPAGATORS", "baggage")]).0, ["baggage"]);
    assert!(fields(&[("OTEL_PROPAGATORS", "none")]).0.is_empty());
    let (fields, warnings) = fields(&[("OTEL_PROPAGATORS", "tracecontext,b3")]);
    assert_eq!(fields, ["traceparent", "tracestate"]);
    assert_eq!(warnings, 1, "b3 is not supported");
}

fn server_spans(exporter: &InMemorySpanExporter) -> usize {
    let spans = exporter.get_finished_spans().unwrap();
    spans.iter().filter(|s| s.name == "GET /leads/{id}").count()
}

#[tokio::test]
async fn the_memory_monitor_records_process_memory_usage() {
    let s = setup(&[]);
    let meter = s.guard.meter_provider().meter("parapet-telemetry");
    let monitor = parapet_telemetry::MemoryMonitor::new()
        .interval(Duration::from_millis(10))
        .meter(meter)
        .start()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.guard.force_flush().unwrap();
    drop(monitor);
    let all = s.metrics.get_finished_metrics().unwrap();
    let Some(AggregatedMetrics::I64(MetricData::Sum(usage))) = metric(&all, "process.memory.usage")
    else {
        panic!("no process.memory.usage");
    };
    let value = usage.data_points().next().unwrap().value();
    assert!(value > 1024 * 1024, "{value} bytes resident");
}

#[tokio::test]
async fn a_dropped_request_leaves_the_active_count() {
    let s = setup(&[]);
    let meter = s.guard.meter_provider().meter("parapet-telemetry");
    let app = Router::new()
        .route("/hang", get(std::future::pending::<&'static str>))
        .layer(TelemetryLayer::new().meter(meter));
    let req = Request::get("/hang").body(Body::empty()).unwrap();
    let timed_out = tokio::time::timeout(Duration::from_millis(20), app.oneshot(req)).await;
    assert!(timed_out.is_err(), "the handler never answers");
    s.guard.force_flush().unwrap();
    let all = s.metrics.get_finished_metrics().unwrap();
    let Some(AggregatedMetrics::I64(MetricData::Sum(active))) =
        metric(&all, "http.server.active_requests")
    else {
        panic!("no active requests counter");
    };
    let values: Vec<i64> = active.data_points().map(|p| p.value()).collect();
    assert_eq!(values, vec![0]);
}

/// Without a metrics endpoint or exporter, `init()` leaves the global meter provider a no-op
/// (an SDK provider with no reader logs an error for every observable instrument).
#[test]
fn metrics_are_exported_only_when_they_have_somewhere_to_go() {
    let (_, guard) = TelemetryBuilder::from_env_map([("RUST_LOG", "off")])
        .log_output(false)
        .build()
        .unwrap();
    assert!(!guard.exports_metrics());
    guard.shutdown().unwrap();

    let (_, guard) = TelemetryBuilder::from_env_map([
        ("RUST_LOG", "off"),
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "http://127.0.0.1:9/v1/metrics",
        ),
    ])
    .log_output(false)
    .build()
    .unwrap();
    assert!(guard.exports_metrics());
    drop(guard);
}
