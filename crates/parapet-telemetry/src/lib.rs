//! OpenTelemetry for parapet: a span and metrics for every request, exported over OTLP.
//!
//! - [`TelemetryLayer`]: one server span per request, named `{METHOD} {route}` from axum's
//!   `MatchedPath`, with the stable HTTP semantic-convention attributes
//!   (`http.request.method`, `http.route`, `http.response.status_code` as an integer, `url.*`,
//!   `server.*`, `client.address`, `user_agent.original`, `error.type`), the W3C `traceparent` of
//!   the caller continued, status Error on 5xx and service errors only, and the
//!   `http.server.request.duration` / `http.server.active_requests` metrics. It carries
//!   `tenant.id` (which parapet-tenant's `TenantLayer` leaves in a `TenantSlot`) and
//!   `cache.status` (the response's `Cache-Status`); handler spans, parapet-pool's `db.query`
//!   spans and handler events nest under it. A request slower than 1 s is a WARN event on its
//!   span. Under the subscriber [`TelemetryBuilder`] builds, the span is made with the
//!   OpenTelemetry API (nothing per field goes through `tracing`); under another one with
//!   tracing-opentelemetry's layer, it is a `tracing` span started through that layer.
//! - [`init`] / [`TelemetryBuilder`]: the tracer and meter providers, the OTLP exporters
//!   (`http/protobuf` or `grpc`, per signal: endpoint, protocol, headers, timeout, gzip), the
//!   sampler and the resource, all from the standard `OTEL_*` variables; a `tracing` subscriber
//!   that logs to stdout (`RUST_LOG`) and feeds OpenTelemetry (always with parapet's request and
//!   query spans); and a [`TelemetryGuard`] whose shutdown delivers the last spans.
//! - [`MemoryMonitor`]: `process.memory.usage`, and a WARN before the cgroup's limit is reached.
//! - [`metrics`]: with the `cache` feature, `metrics::observe_cache` exports parapet-cache's
//!   counters (`parapet.cache.requests` by `cache.result`, and by tenant for the busiest
//!   tenants in `parapet.cache.tenant.requests`, `parapet.cache.lookups` by `cache.tier`,
//!   local bytes, Redis errors, the breaker); with the `pool` feature,
//!   `metrics::observe_pool` exports parapet-pool's status (`db.client.connection.count` idle /
//!   used, `.max`, `.pending_requests`, `parapet.pool.budget.in_use` / `.limit`).
//!
//! # Cache and pool metrics
//!
//! ```toml
//! parapet-telemetry = { version = "0.1", features = ["cache", "pool"] }
//! ```
//!
//! ```text
//! let guard = parapet_telemetry::init()?;
//! let meter = opentelemetry::global::meter("parapet");
//! parapet_telemetry::metrics::observe_cache(&meter, cache_layer.handle());
//! parapet_telemetry::metrics::observe_pool(&meter, pools.clone());
//! ```
//!
//! The instruments are read at each export (every `OTEL_METRIC_EXPORT_INTERVAL`, 60 s by
//! default); each function's docs list the names, units and attributes.
//!
//! # Example
//!
//! Without `OTEL_EXPORTER_OTLP_ENDPOINT` nothing is exported and spans still reach the log.
//!
//! ```
//! use axum::{Router, routing::get};
//! use parapet_telemetry::TelemetryLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let guard = parapet_telemetry::TelemetryBuilder::from_env_map([("RUST_LOG", "warn")]).build()?.1;
//! // In `main`: `let guard = parapet_telemetry::init()?;`
//! let app: Router = Router::new()
//!     .route("/leads/{id}", get(|| async { "lead" }))
//!     .route("/healthz", get(|| async { "ok" }))
//!     // `Router::layer`, so the route is known; outermost of the parapet layers.
//!     .layer(TelemetryLayer::new().filter(|req| req.uri.path() != "/healthz"));
//!
//! // axum::serve(listener, app).await?;
//! guard.shutdown()?; // flushes the spans and metrics still buffered
//! # Ok(())
//! # }
//! ```
//!
//! # View your traces in Jaeger
//!
//! Start Jaeger (its UI on 16686, OTLP on 4317 for gRPC and 4318 for HTTP):
//!
//! ```text
//! docker run -p 16686:16686 -p 4317:4317 -p 4318:4318 cr.jaegertracing.io/jaegertracing/jaeger:2.15.0
//! ```
//!
//! Run your service with:
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 OTEL_SERVICE_NAME=crm-api cargo run
//! ```
//!
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc` with `http://localhost:4317` for gRPC;
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` send one signal
//! to a URL of its own, used as is; `OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20…` and
//! `OTEL_EXPORTER_OTLP_COMPRESSION=gzip` for a hosted collector;
//! `OTEL_RESOURCE_ATTRIBUTES=deployment.environment=staging` adds resource attributes;
//! `OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1` samples 10 %.)
//!
//! Open <http://localhost:16686>, pick `crm-api` in *Service* and press *Find Traces*. Each request
//! is a trace whose root span is `GET /leads/{id}` (kind server) with its HTTP attributes,
//! `tenant.id` and `cache.status` when those layers ran, the handler's spans and the `db.query`
//! spans underneath, and a `slow request` log entry when it was slow. Failed requests (5xx) are
//! marked with a red error icon; search `error=true` to list them. A request that came with a
//! `traceparent` joins its caller's trace. Spans are sent in batches (every 5 s) and at shutdown:
//! call [`TelemetryGuard::shutdown`] (or drop the guard) before exiting, or the last spans are lost.

mod env;
mod error;
mod export;
mod fields;
mod guard;
mod init;
mod layer;
mod memory;
pub mod metrics;
mod otlp;
mod propagation;
mod route;
mod span;
mod tracer;

pub use error::TelemetryError;
pub use fields::SpanFieldsLayer;
pub use guard::TelemetryGuard;
pub use init::{BoxSubscriber, TelemetryBuilder, init};
pub use layer::{ResponseFuture, Telemetry, TelemetryLayer};
pub use memory::{MemoryMonitor, MemoryMonitorHandle, MemoryStatus};
pub use metrics::DURATION_BUCKETS;
