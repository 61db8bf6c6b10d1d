//! Helpers shared by parapet's benchmark scenarios: latency statistics, resident memory, tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{convert::Infallible, time::Duration};

use axum::{
    body::Body,
    http::{HeaderValue, Request, Response},
};

/// Latencies of one scenario.
#[derive(Debug, Default, Clone)]
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    /// The `q` quantile (0.0..=1.0), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }
}

/// Formats a duration in milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// This process's resident memory in bytes (Linux `/proc/self/status`, `VmRSS`).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Formats bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        vec!["---"; header.len()].join("|")
    );
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// tower-http-cache 0.6.1, the cache users would pick instead of parapet's: its in-memory (moka)
/// backend with a 60 s TTL, defaults otherwise, around an origin answering `body` as JSON with
/// `Cache-Control: public, max-age=60` on `route`, and no other layer.
///
/// It sets no header on a hit, so the origin counts its calls in `calls` and numbers its
/// responses in `x-origin-call`: a response replayed from the cache carries the number of the
/// call that filled it.
pub fn tower_http_cache_app(
    route: &str,
    body: &'static str,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> axum::Router {
    use axum::{
        body::Body,
        error_handling::HandleError,
        http::{HeaderValue, Request, Response, StatusCode, header},
    };
    use std::sync::atomic::Ordering;
    use tower_layer::Layer as _;

    let cache = tower_http_cache::CacheLayer::builder(
        tower_http_cache::backend::memory::InMemoryBackend::new(10_000),
    )
    .ttl(Duration::from_secs(60))
    .build();
    let origin = tower::service_fn(move |_request: Request<Body>| {
        let call = calls.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let mut response = Response::new(http_body_util::Full::from(body));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            );
            headers.insert("x-origin-call", HeaderValue::from(call));
            Ok::<_, Infallible>(response)
        }
    });
    let service = HandleError::new(
        cache.layer(origin),
        |error: tower_http_cache::layer::BoxError| async move {
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        },
    );
    axum::Router::new().route_service(route, service)
}

/// The JSON body the in-process cache benchmarks serve (`GET /api/item`).
pub const ITEM_BODY: &str =
    r#"{"id":42,"name":"Ada Lovelace","company":"Analytical Engines","status":"qualified"}"#;

/// The origin of the in-process cache benchmarks: `GET /api/item` answers [`ITEM_BODY`] with
/// `Cache-Control: public, max-age=60`, counting its calls in `calls`.
pub fn item_origin(calls: std::sync::Arc<std::sync::atomic::AtomicU64>) -> axum::Router {
    use axum::{http::header, routing::get};
    axum::Router::new().route(
        "/api/item",
        get(move || {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "public, max-age=60"),
                    ],
                    ITEM_BODY,
                )
            }
        }),
    )
}

/// The trivial service the tenant benchmarks put `TenantLayer` in front of: an empty 200.
///
/// # Errors
///
/// Never.
pub async fn empty_ok(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

/// `GET /` naming the tenant `acme` in `x-tenant-id`.
pub fn acme_request() -> Request<Body> {
    let mut request = Request::new(Body::empty());
    request
        .headers_mut()
        .insert("x-tenant-id", HeaderValue::from_static("acme"));
    request
}

/// What the telemetry benchmarks share: every variant exports the same way, to exporters that
/// drop what they get, so export costs the same (nothing) for all; the route and the request.
pub mod telemetry {
    use std::{future::Future, time::Duration};

    use axum::{Router, body::Body, http::Request, routing::get};
    use opentelemetry_sdk::{
        Resource,
        error::OTelSdkResult,
        metrics::{Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
        trace::{BatchSpanProcessor, SpanData, SpanExporter},
    };

    /// Drops every batch of spans.
    #[derive(Debug)]
    pub struct DropSpans;

    impl SpanExporter for DropSpans {
        fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
            drop(batch);
            std::future::ready(Ok(()))
        }

        fn set_resource(&mut self, _resource: &Resource) {}
    }

    /// Drops every metric export.
    #[derive(Debug)]
    pub struct DropMetrics;

    impl PushMetricExporter for DropMetrics {
        fn export(&self, _metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
            std::future::ready(Ok(()))
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }

        fn temporality(&self) -> Temporality {
            Temporality::Cumulative
        }
    }

    /// A batch span processor in front of [`DropSpans`].
    pub fn batch() -> BatchSpanProcessor {
        BatchSpanProcessor::builder(DropSpans).build()
    }

    /// The route every variant serves: `GET /leads/{id}` answering `200 lead`.
    pub fn routes() -> Router {
        Router::new().route("/leads/{id}", get(|| async { "lead" }))
    }

    /// `GET /leads/42` with a `Host` header.
    pub fn request() -> Request<Body> {
        Request::get("/leads/42")
            .header("host", "localhost:3000")
            .body(Body::empty())
            .unwrap()
    }
}
