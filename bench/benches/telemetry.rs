//! The cost a telemetry layer adds to one request, in process (no network): the bare axum
//! service vs parapet's `TelemetryLayer` (spans only; spans and metrics; sampled out) vs
//! opentelemetry-instrumentation-tower (OIT) vs tower-http's `TraceLayer`.
//!
//! Every variant exports the same way: spans go to a batch span processor in front of an
//! exporter that drops them, metrics to a periodic reader (60 s) in front of one that drops
//! them, so export costs nothing and is the same for all. Requests are `GET /leads/42` on the
//! route `/leads/{id}` with a `Host` header, answered `200 lead`, on a current-thread runtime.
//!
//! Run with `bash bench/run.sh telemetry`, which writes `bench/results/telemetry.md` from
//! criterion's `target/criterion/telemetry/*/new/estimates.json`; or directly:
//! `cargo bench -p parapet-bench --bench telemetry -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use axum::{Router, body::Body};
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use opentelemetry::global;
use opentelemetry_instrumentation_tower::http::server::LayerBuilder;
use opentelemetry_sdk::{
    metrics::SdkMeterProvider,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use parapet_bench::telemetry::{DropMetrics, batch, request, routes};
use parapet_telemetry::{TelemetryBuilder, TelemetryLayer};
use tower::{Service, ServiceExt};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

/// parapet's pipeline as `init()` builds it (no OTLP endpoint), with the dropping exporters.
fn parapet(
    sampler: &str,
) -> (
    parapet_telemetry::BoxSubscriber,
    parapet_telemetry::TelemetryGuard,
) {
    TelemetryBuilder::from_env_map([("OTEL_TRACES_SAMPLER", sampler), ("RUST_LOG", "info")])
        .log_output(false)
        .with_span_processor(batch())
        .with_metric_exporter(DropMetrics)
        .build()
        .unwrap()
}

fn bench_one(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    id: &str,
    app: Router,
) {
    let mut service = app.into_service::<Body>();
    // axum's router is always ready; `ready` once, as the Service contract asks.
    rt.block_on(service.ready()).unwrap();
    group.bench_function(id, |b| {
        b.to_async(rt).iter_batched(
            request,
            |req| {
                let response = service.call(req);
                async move {
                    let response = response.await.unwrap();
                    assert_eq!(response.status(), 200);
                    black_box(response);
                }
            },
            BatchSize::SmallInput,
        );
    });
}

fn telemetry(c: &mut Criterion) {
    let mut group = c.benchmark_group("telemetry");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Both layers continue a W3C traceparent (parapet uses its propagator directly).
    global::set_text_map_propagator(TraceContextPropagator::new());

    bench_one(&mut group, &rt, "bare", routes());

    // parapet: the server span made with the OpenTelemetry API under TelemetryBuilder's subscriber.
    for (id, sampler, metrics) in [
        ("parapet_spans", "parentbased_always_on", false),
        ("parapet_spans_metrics", "parentbased_always_on", true),
        ("parapet_sampled_out", "always_off", false),
    ] {
        let (subscriber, guard) = parapet(sampler);
        let _default = tracing::subscriber::set_default(subscriber);
        let layer = if metrics {
            use opentelemetry::metrics::MeterProvider as _;
            TelemetryLayer::new().meter(guard.meter_provider().meter("parapet-telemetry"))
        } else {
            TelemetryLayer::new().metrics(false)
        };
        bench_one(&mut group, &rt, id, routes().layer(layer));
        drop(_default);
        guard.shutdown().unwrap();
    }

    // tower-http's TraceLayer: a tracing span (and a response event) at INFO, through the same
    // subscriber and exporter as parapet's spans-only variant.
    {
        let (subscriber, guard) = parapet("parentbased_always_on");
        let _default = tracing::subscriber::set_default(subscriber);
        let layer = TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));
        bench_one(&mut group, &rt, "tower_http_trace", routes().layer(layer));
        drop(_default);
        guard.shutdown().unwrap();
    }

    // OIT: the OpenTelemetry API directly, from the global providers (no tracing subscriber).
    for (id, sampler, metrics) in [
        (
            "oit_tracing",
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            false,
        ),
        (
            "oit_tracing_metrics",
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            true,
        ),
        ("oit_sampled_out", Sampler::AlwaysOff, false),
    ] {
        let tracer = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_span_processor(batch())
            .build();
        let meter = SdkMeterProvider::builder()
            .with_periodic_exporter(DropMetrics)
            .build();
        global::set_tracer_provider(tracer.clone());
        global::set_meter_provider(meter.clone());
        let layer = LayerBuilder::builder()
            .with_route_extractor(
                opentelemetry_instrumentation_tower::http::extractors::AxumMatchedPathExtractor,
            )
            .with_metrics(metrics)
            .build()
            .unwrap();
        bench_one(&mut group, &rt, id, routes().layer(layer));
        tracer.shutdown().unwrap();
        meter.shutdown().unwrap();
    }
    group.finish();
}

criterion_group!(benches, telemetry);
criterion_main!(benches);
