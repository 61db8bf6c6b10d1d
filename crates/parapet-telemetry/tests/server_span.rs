//! The server span as `TelemetryBuilder`'s subscriber makes it: started with the OpenTelemetry
//! API (not bridged through a `tracing` span), read back through an in-memory exporter. What
//! inner layers and handlers add (the tenant, the cache status, spans, events) must still reach
//! it, and only the request's own span. And the HTTP metrics, recorded on bound instruments:
//! every attribute set keeps its own counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::{Router, body::Body, http::StatusCode, routing::get};
use http::{Request, header};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{
    Value,
    trace::{SpanKind, Status},
};
use opentelemetry_sdk::{
    metrics::{
        InMemoryMetricExporter,
        data::{AggregatedMetrics, MetricData},
    },
    trace::{InMemorySpanExporter, SimpleSpanProcessor, SpanData},
};
use parapet_cache::CacheLayer;
use parapet_telemetry::{TelemetryBuilder, TelemetryGuard, TelemetryLayer};
use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
use tower::ServiceExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

struct Setup {
    spans: InMemorySpanExporter,
    _guard: TelemetryGuard,
    _default: tracing::subscriber::DefaultGuard,
}

fn setup(env: &[(&str, &str)]) -> Setup {
    let spans = InMemorySpanExporter::default();
    let (subscriber, guard) = TelemetryBuilder::from_env_map(env.iter().copied())
        .log_output(false)
        .with_span_processor(SimpleSpanProcessor::new(spans.clone()))
        .build()
        .unwrap();
    let default = tracing::subscriber::set_default(subscriber);
    Setup {
        spans,
        _guard: guard,
        _default: default,
    }
}

fn get_req(uri: &str, tenant: Option<&str>) -> Request<Body> {
    let mut req = Request::get(uri)
        .header("host", "api.example.com:8443")
        .header("user-agent", "parapet-test/1.0");
    if let Some(tenant) = tenant {
        req = req.header("x-tenant-id", tenant);
    }
    req.body(Body::empty()).unwrap()
}

async fn send(app: Router, req: Request<Body>) -> http::Response<Body> {
    tokio::time::timeout(Duration::from_secs(5), app.oneshot(req))
        .await
        .unwrap()
        .unwrap()
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn directory() -> StaticDirectory {
    StaticDirectory::new()
        .tenant(TenantRecord::new(TenantId::parse("acme").unwrap()))
        .tenant(TenantRecord::new(TenantId::parse("globex").unwrap()))
}

fn server_spans(spans: &[SpanData]) -> Vec<&SpanData> {
    spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect()
}

#[tokio::test]
async fn the_span_has_its_name_kind_and_attributes_once() {
    let s = setup(&[]);
    let app = Router::new()
        .route("/leads/{id}", get(|| async { "lead" }))
        .layer(TelemetryLayer::new().metrics(false));
    let res = send(app, get_req("/leads/42?expand=deals", None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let spans = s.spans.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "GET /leads/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.status, Status::Unset);
    for (key, value) in [
        ("http.request.method", Value::from("GET")),
        ("http.route", Value::from("/leads/{id}")),
        ("url.path", Value::from("/leads/42")),
        ("url.query", Value::from("expand=deals")),
        ("url.scheme", Value::from("http")),
        ("http.response.status_code", Value::I64(200)),
        ("server.address", Value::from("api.example.com")),
        ("server.port", Value::I64(8443)),
        ("network.protocol.version", Value::from("1.1")),
        ("user_agent.original", Value::from("parapet-test/1.0")),
    ] {
        assert_eq!(attr(span, key), Some(value), "{key}");
    }
    let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    let count = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), count, "no attribute twice: {keys:?}");
    for absent in ["tenant.id", "cache.status", "error.type", "client.address"] {
        assert_eq!(attr(span, absent), None, "{absent}");
    }
    assert!(!span.parent_span_is_remote);
}

#[tokio::test]
async fn continues_a_traceparent_and_answers_with_its_own() {
    let s = setup(&[]);
    let app = Router::new()
        .route("/leads/{id}", get(|| async { "lead" }))
        .layer(
            TelemetryLayer::new()
                .metrics(false)
                .traceparent_in_response(true),
        );
    let mut req = get_req("/leads/7", None);
    req.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().unwrap(),
    );
    let res = send(app, req).await;
    let spans = s.spans.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id.to_string(), PARENT_ID);
    assert!(span.parent_span_is_remote);
    assert_eq!(
        res.headers()["traceparent"].to_str().unwrap(),
        format!("00-{TRACE_ID}-{}-01", span.span_context.span_id())
    );
}

/// Two requests of two tenants polled in turn on one thread: each one's handler span, handler
/// event and tenant end up on its own server span and nowhere else.
#[tokio::test]
async fn interleaved_requests_keep_their_tenant_spans_and_events_apart() {
    let s = setup(&[]);
    let app = Router::new()
        .route(
            "/leads/{id}",
            get(|tenant: parapet_tenant::Tenant| async move {
                let span = tracing::info_span!("db.query", tenant = tenant.id().as_str());
                tokio::task::yield_now().await;
                span.in_scope(|| tracing::info!("inside the query"));
                tracing::info!(tenant = tenant.id().as_str(), "loaded the lead");
                tokio::task::yield_now().await;
                tenant.id().to_string()
            }),
        )
        .layer(TenantLayer::new(directory()))
        .layer(TelemetryLayer::new().metrics(false));
    let (a, b) = tokio::join!(
        send(app.clone(), get_req("/leads/1", Some("acme"))),
        send(app.clone(), get_req("/leads/1", Some("globex"))),
    );
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let spans = s.spans.get_finished_spans().unwrap();
    let servers = server_spans(&spans);
    assert_eq!(servers.len(), 2);
    for tenant in ["acme", "globex"] {
        let server = servers
            .iter()
            .find(|s| attr(s, "tenant.id") == Some(Value::from(tenant)))
            .unwrap_or_else(|| panic!("a server span for {tenant}"));
        let events: Vec<_> = server
            .events
            .iter()
            .filter(|e| e.name == "loaded the lead")
            .collect();
        assert_eq!(events.len(), 1, "{tenant}: {:?}", server.events);
        let fields: Vec<_> = events[0]
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        assert!(
            fields.contains(&("tenant", Value::from(tenant))),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("level", Value::from("INFO"))),
            "{fields:?}"
        );
        let query = spans
            .iter()
            .find(|q| q.name == "db.query" && attr(q, "tenant") == Some(Value::from(tenant)))
            .unwrap();
        assert_eq!(query.parent_span_id, server.span_context.span_id());
        assert_eq!(
            query.span_context.trace_id(),
            server.span_context.trace_id()
        );
        assert!(
            query.events.iter().any(|e| e.name == "inside the query"),
            "an event in a handler span stays on that span"
        );
        assert!(server.events.iter().all(|e| e.name != "inside the query"));
    }
}

/// `cache.status` on each request's span is the `Cache-Status` its response carries: a miss,
/// then a hit, per tenant.
#[tokio::test]
async fn the_cache_status_reaches_the_span_of_its_request() {
    let s = setup(&[]);
    let cache = CacheLayer::builder().local(1 << 20).build().unwrap();
    let app = Router::new()
        .route(
            "/leads/{id}",
            get(|tenant: parapet_tenant::Tenant| async move {
                (
                    [(header::CACHE_CONTROL, "public, max-age=60")],
                    tenant.id().to_string(),
                )
            }),
        )
        .layer(cache)
        .layer(TenantLayer::new(directory()))
        .layer(TelemetryLayer::new().metrics(false));
    for round in 0..2 {
        let (a, b) = tokio::join!(
            send(app.clone(), get_req("/leads/1", Some("acme"))),
            send(app.clone(), get_req("/leads/1", Some("globex"))),
        );
        let spans = s.spans.get_finished_spans().unwrap();
        let servers = server_spans(&spans);
        assert_eq!(servers.len(), 2, "round {round}");
        for (res, tenant) in [(a, "acme"), (b, "globex")] {
            assert_eq!(res.status(), StatusCode::OK);
            let cache_status = res.headers()["cache-status"].to_str().unwrap().to_owned();
            assert_eq!(cache_status.contains("hit"), round == 1, "{cache_status}");
            let server = servers
                .iter()
                .find(|s| attr(s, "tenant.id") == Some(Value::from(tenant)))
                .unwrap_or_else(|| panic!("a server span for {tenant}"));
            assert_eq!(
                attr(server, "cache.status"),
                Some(Value::from(cache_status)),
                "{tenant}, round {round}"
            );
        }
        s.spans.reset();
    }
}

#[tokio::test]
async fn a_slow_request_warns_on_its_span_with_its_tenant() {
    let s = setup(&[]);
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                "slow"
            }),
        )
        .route("/fast", get(|| async { "fast" }))
        .layer(TenantLayer::new(directory()))
        .layer(
            TelemetryLayer::new()
                .metrics(false)
                .slow_request_threshold(Duration::from_millis(20)),
        );
    send(app.clone(), get_req("/slow", Some("globex"))).await;
    send(app, get_req("/fast", Some("globex"))).await;
    let spans = s.spans.get_finished_spans().unwrap();
    let slow = spans.iter().find(|s| s.name == "GET /slow").unwrap();
    let event = slow
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
    assert_eq!(get("tenant.id"), Some(Value::from("globex")));
    match get("duration_ms") {
        Some(Value::F64(ms)) => assert!(ms >= 60.0, "{ms}"),
        other => panic!("duration_ms: {other:?}"),
    }
    // Whether the fast request warned depends on how long it really took (a loaded machine can
    // stall it past the threshold): the span says.
    let fast = spans.iter().find(|s| s.name == "GET /fast").unwrap();
    let took = fast.end_time.duration_since(fast.start_time).unwrap();
    let warned = fast.events.iter().any(|e| e.name == "slow request");
    // (The span's own clock starts and stops a few microseconds apart from the layer's.)
    if took < Duration::from_millis(19) {
        assert!(!warned, "{took:?}");
    } else if took > Duration::from_millis(21) {
        assert!(warned, "{took:?}");
    }
}

#[tokio::test]
async fn server_and_service_errors_mark_the_span() {
    let s = setup(&[]);
    let app = Router::new()
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(TelemetryLayer::new().metrics(false));
    send(app, get_req("/boom", None)).await;
    let service = tower::ServiceBuilder::new()
        .layer(TelemetryLayer::new().metrics(false))
        .service_fn(|_req: Request<Body>| async {
            Err::<http::Response<Body>, _>(std::io::Error::other("upstream closed"))
        });
    let err = service.oneshot(get_req("/x", None)).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream closed");
    let spans = s.spans.get_finished_spans().unwrap();
    let boom = spans.iter().find(|s| s.name == "GET /boom").unwrap();
    assert!(matches!(boom.status, Status::Error { .. }));
    assert_eq!(attr(boom, "error.type"), Some(Value::from("500")));
    assert_eq!(
        attr(boom, "http.response.status_code"),
        Some(Value::I64(500))
    );
    let failed = spans.iter().find(|s| s.name == "GET").unwrap();
    assert_eq!(failed.status, Status::error("upstream closed"));
    assert_eq!(
        attr(failed, "error.type"),
        Some(Value::from("std::io::error::Error"))
    );
    assert_eq!(attr(failed, "http.response.status_code"), None);
}

#[tokio::test]
async fn a_request_dropped_before_its_response_still_ends_its_span() {
    let s = setup(&[]);
    let app = Router::new()
        .route("/hang", get(std::future::pending::<&'static str>))
        .layer(TelemetryLayer::new().metrics(false));
    let req = get_req("/hang", None);
    let timed_out = tokio::time::timeout(Duration::from_millis(20), app.oneshot(req)).await;
    assert!(timed_out.is_err(), "the handler never answers");
    let spans = s.spans.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "GET /hang");
    assert_eq!(attr(&spans[0], "http.response.status_code"), None);
}

#[tokio::test]
async fn sampled_out_requests_export_nothing_and_still_answer() {
    let s = setup(&[("OTEL_TRACES_SAMPLER", "always_off")]);
    let app = Router::new()
        .route(
            "/leads/{id}",
            get(|| async {
                tracing::info_span!("db.query").in_scope(|| tracing::info!("query"));
                "lead"
            }),
        )
        .layer(TenantLayer::new(directory()))
        .layer(
            TelemetryLayer::new()
                .metrics(false)
                .traceparent_in_response(true),
        );
    let res = send(app, get_req("/leads/1", Some("acme"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let traceparent = res.headers()["traceparent"].to_str().unwrap();
    assert!(traceparent.ends_with("-00"), "not sampled: {traceparent}");
    assert!(s.spans.get_finished_spans().unwrap().is_empty());
}

#[tokio::test]
async fn each_attribute_set_of_the_metrics_keeps_its_own_counts() {
    let metrics = InMemoryMetricExporter::default();
    let (subscriber, guard) = TelemetryBuilder::from_env_map([("RUST_LOG", "off")])
        .log_output(false)
        .with_metric_exporter(metrics.clone())
        .build()
        .unwrap();
    let _default = tracing::subscriber::set_default(subscriber);
    let layer = TelemetryLayer::new().meter(guard.meter_provider().meter("parapet-telemetry"));
    let app = Router::new()
        .route("/leads/{id}", get(|| async { "lead" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(layer);
    for _ in 0..3 {
        send(app.clone(), get_req("/leads/1", None)).await;
    }
    for _ in 0..2 {
        send(app.clone(), get_req("/boom", None)).await;
    }
    send(app.clone(), get_req("/nope", None)).await;
    let post = Request::post("/leads/1").body(Body::empty()).unwrap();
    assert_eq!(
        send(app, post).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    guard.force_flush().unwrap();

    let all = metrics.get_finished_metrics().unwrap();
    let find = |name: &str| {
        all.iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .filter(|m| m.name() == name)
            .map(|m| m.data())
            .last()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let AggregatedMetrics::F64(MetricData::Histogram(duration)) =
        find("http.server.request.duration")
    else {
        panic!("the duration is not a histogram");
    };
    let mut counts: Vec<(String, u64)> = duration
        .data_points()
        .map(|p| {
            let mut attributes: Vec<String> = p
                .attributes()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect();
            attributes.sort();
            (attributes.join(" "), p.count())
        })
        .collect();
    counts.sort();
    let expected = [
        (
            "error.type=500 http.request.method=GET http.response.status_code=500 \
             http.route=/boom url.scheme=http",
            2,
        ),
        (
            "http.request.method=GET http.response.status_code=200 http.route=/leads/{id} \
             url.scheme=http",
            3,
        ),
        (
            "http.request.method=GET http.response.status_code=404 url.scheme=http",
            1,
        ),
        (
            "http.request.method=POST http.response.status_code=405 http.route=/leads/{id} \
             url.scheme=http",
            1,
        ),
    ];
    let expected: Vec<(String, u64)> = expected
        .into_iter()
        .map(|(a, c)| (a.to_owned(), c))
        .collect();
    assert_eq!(counts, expected);
    let AggregatedMetrics::I64(MetricData::Sum(active)) = find("http.server.active_requests")
    else {
        panic!("no active requests counter");
    };
    let mut active: Vec<(String, i64)> = active
        .data_points()
        .map(|p| {
            let method = p
                .attributes()
                .find(|kv| kv.key.as_str() == "http.request.method")
                .map(|kv| kv.value.to_string())
                .unwrap_or_default();
            (method, p.value())
        })
        .collect();
    active.sort();
    assert_eq!(active, vec![("GET".to_owned(), 0), ("POST".to_owned(), 0)]);
}
