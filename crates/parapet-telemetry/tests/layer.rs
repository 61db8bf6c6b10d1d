//! `TelemetryLayer` spans, read back through the SDK's in-memory exporter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::{Router, body::Body, http::StatusCode, routing::get};
use http::Request;
use opentelemetry::{
    Value,
    trace::{SpanKind, Status, TracerProvider as _},
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use parapet_telemetry::{SpanFieldsLayer, TelemetryLayer};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

struct Harness {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

/// A thread-local subscriber with the OpenTelemetry layer: tests run on a current-thread runtime.
fn harness() -> Harness {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(SpanFieldsLayer::new())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let guard = tracing::subscriber::set_default(subscriber);
    Harness {
        exporter,
        _provider: provider,
        _guard: guard,
    }
}

fn app(layer: TelemetryLayer) -> Router {
    Router::new()
        .route("/leads/{id}", get(|| async { "lead" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                "slow"
            }),
        )
        .layer(layer.metrics(false))
}

async fn send(app: Router, req: Request<Body>) -> http::Response<Body> {
    tokio::time::timeout(Duration::from_secs(5), app.oneshot(req))
        .await
        .unwrap()
        .unwrap()
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", "api.example.com:8443")
        .header("user-agent", "parapet-test/1.0")
        .body(Body::empty())
        .unwrap()
}

fn spans(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter.get_finished_spans().unwrap()
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test]
async fn matched_route_gives_a_server_span_with_typed_attributes() {
    let h = harness();
    let res = send(
        app(TelemetryLayer::new()),
        get_req("/leads/42?expand=deals"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let spans = spans(&h.exporter);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "GET /leads/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr(span, "http.request.method"), Some(Value::from("GET")));
    assert_eq!(attr(span, "http.route"), Some(Value::from("/leads/{id}")));
    assert_eq!(attr(span, "url.path"), Some(Value::from("/leads/42")));
    assert_eq!(attr(span, "url.query"), Some(Value::from("expand=deals")));
    assert_eq!(attr(span, "url.scheme"), Some(Value::from("http")));
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(Value::I64(200))
    );
    assert_eq!(
        attr(span, "server.address"),
        Some(Value::from("api.example.com"))
    );
    assert_eq!(attr(span, "server.port"), Some(Value::I64(8443)));
    assert_eq!(
        attr(span, "network.protocol.version"),
        Some(Value::from("1.1"))
    );
    assert_eq!(
        attr(span, "user_agent.original"),
        Some(Value::from("parapet-test/1.0"))
    );
    assert_eq!(attr(span, "error.type"), None);
    assert_eq!(
        attr(span, "tenant.id"),
        None,
        "an empty field is not exported"
    );
    assert!(!span.parent_span_is_remote);
}

/// Each span carries its own request's host, user agent, client address and path, whatever the
/// requests before it on the same thread had (the layer shares repeated values between spans).
#[tokio::test]
async fn each_span_has_its_own_requests_values() {
    let h = harness();
    let cases = [
        ("/healthz", "a.example.com", "agent-a", "10.0.0.1"),
        ("/healthz", "a.example.com", "agent-a", "10.0.0.1"),
        ("/leads/7", "b.example.com", "agent-b", "10.0.0.2"),
        ("/healthz", "a.example.com", "agent-b", "2001:db8::1"),
        ("/leads/8", "b.example.com", "agent-a", "10.0.0.1"),
    ];
    for (path, host, agent, client) in cases {
        let mut req = Request::get(path)
            .header("host", host)
            .header("user-agent", agent)
            .body(Body::empty())
            .unwrap();
        let addr = std::net::SocketAddr::new(client.parse().unwrap(), 40000);
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        let res = send(app(TelemetryLayer::new()), req).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let spans = spans(&h.exporter);
    assert_eq!(spans.len(), cases.len());
    for (span, (path, host, agent, client)) in spans.iter().zip(cases) {
        assert_eq!(attr(span, "url.path"), Some(Value::from(path)), "{path}");
        assert_eq!(attr(span, "server.address"), Some(Value::from(host)));
        assert_eq!(attr(span, "user_agent.original"), Some(Value::from(agent)));
        assert_eq!(attr(span, "client.address"), Some(Value::from(client)));
    }
}

#[tokio::test]
async fn unmatched_route_is_named_by_the_method_and_404_is_not_an_error() {
    let h = harness();
    let res = send(app(TelemetryLayer::new()), get_req("/nope")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let spans = spans(&h.exporter);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "GET");
    assert_eq!(attr(&spans[0], "http.route"), None);
    assert_eq!(
        attr(&spans[0], "http.response.status_code"),
        Some(Value::I64(404))
    );
    assert_eq!(spans[0].status, Status::Unset);
    assert_eq!(attr(&spans[0], "error.type"), None);
}

#[tokio::test]
async fn server_errors_mark_the_span() {
    let h = harness();
    let res = send(app(TelemetryLayer::new()), get_req("/boom")).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let spans = spans(&h.exporter);
    assert_eq!(spans.len(), 1);
    assert!(matches!(spans[0].status, Status::Error { .. }));
    assert_eq!(attr(&spans[0], "error.type"), Some(Value::from("500")));
    assert_eq!(
        attr(&spans[0], "http.response.status_code"),
        Some(Value::I64(500))
    );
}

#[tokio::test]
async fn continues_an_incoming_traceparent_and_returns_one() {
    let h = harness();
    let mut req = get_req("/leads/7");
    req.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().unwrap(),
    );
    let res = send(
        app(TelemetryLayer::new().traceparent_in_response(true)),
        req,
    )
    .await;
    let spans = spans(&h.exporter);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id.to_string(), PARENT_ID);
    assert!(span.parent_span_is_remote);
    let header = res.headers()["traceparent"].to_str().unwrap();
    assert_eq!(
        header,
        format!("00-{TRACE_ID}-{}-01", span.span_context.span_id())
    );
}

#[tokio::test]
async fn no_traceparent_in_the_response_unless_asked() {
    let _h = harness();
    let res = send(app(TelemetryLayer::new()), get_req("/leads/7")).await;
    assert!(res.headers().get("traceparent").is_none());
}

#[tokio::test]
async fn filtered_requests_have_no_span() {
    let h = harness();
    let layer = TelemetryLayer::new().filter(|req| req.uri.path() != "/healthz");
    let res = send(app(layer.clone()), get_req("/healthz")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(spans(&h.exporter).is_empty());
    send(app(layer), get_req("/leads/1")).await;
    assert_eq!(spans(&h.exporter).len(), 1);
}

#[tokio::test]
async fn inner_layers_record_the_tenant_and_handler_spans_nest() {
    let h = harness();
    let directory =
        StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("acme").unwrap()));
    let app = Router::new()
        .route(
            "/leads/{id}",
            get(|| async {
                tracing::info_span!("db.query").in_scope(|| "lead");
                "lead"
            }),
        )
        .layer(TenantLayer::new(directory))
        .layer(
            TelemetryLayer::new()
                .metrics(false)
                .slow_request_threshold(Duration::ZERO),
        );
    let mut req = get_req("/leads/1");
    req.headers_mut()
        .insert("x-tenant-id", "acme".parse().unwrap());
    let res = send(app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let spans = spans(&h.exporter);
    let server = spans.iter().find(|s| s.name == "GET /leads/{id}").unwrap();
    assert_eq!(attr(server, "tenant.id"), Some(Value::from("acme")));
    let child = spans.iter().find(|s| s.name == "db.query").unwrap();
    assert_eq!(child.parent_span_id, server.span_context.span_id());
    assert_eq!(
        child.span_context.trace_id(),
        server.span_context.trace_id()
    );
    // The slow-request warning names the tenant the inner layer recorded.
    let event = server
        .events
        .iter()
        .find(|e| e.name == "slow request")
        .unwrap();
    let tenant = event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "tenant.id");
    assert_eq!(tenant.map(|kv| kv.value.clone()), Some(Value::from("acme")));
}

#[tokio::test]
async fn slow_requests_warn_on_their_span() {
    let h = harness();
    let layer = TelemetryLayer::new().slow_request_threshold(Duration::from_millis(5));
    send(app(layer.clone()), get_req("/slow")).await;
    let spans = spans(&h.exporter);
    assert_eq!(spans.len(), 1);
    let event = spans[0]
        .events
        .iter()
        .find(|e| e.name == "slow request")
        .expect("a slow-request event");
    let get = |key: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(get("level"), Some(Value::from("WARN")));
    assert_eq!(get("http.route"), Some(Value::from("/slow")));
    assert_eq!(get("tenant.id"), Some(Value::from("-")));
    match get("duration_ms") {
        Some(Value::F64(ms)) => assert!(ms >= 30.0, "{ms}"),
        other => panic!("duration_ms: {other:?}"),
    }
    h.exporter.reset();
    send(app(layer), get_req("/leads/1")).await;
    let fast = h.exporter.get_finished_spans().unwrap();
    assert!(fast[0].events.iter().all(|e| e.name != "slow request"));
}

#[tokio::test]
async fn service_errors_mark_the_span_with_their_type() {
    let h = harness();
    let service = tower::ServiceBuilder::new()
        .layer(TelemetryLayer::new().metrics(false))
        .service_fn(|_req: Request<Body>| async {
            Err::<http::Response<Body>, _>(std::io::Error::other("upstream closed"))
        });
    let err = service.oneshot(get_req("/x")).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream closed");
    let spans = spans(&h.exporter);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "GET");
    assert_eq!(
        spans[0].status,
        Status::error("upstream closed"),
        "the error's message is the status description"
    );
    assert_eq!(
        attr(&spans[0], "error.type"),
        Some(Value::from("std::io::error::Error"))
    );
    assert_eq!(attr(&spans[0], "http.response.status_code"), None);
}
