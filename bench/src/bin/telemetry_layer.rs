//! N requests through a telemetry layer, or through the bare route, on a current-thread runtime:
//! a fixed workload for instruction counts. The variants are those of
//! `bench/benches/telemetry.rs`, built the same way (the same route, request and dropping
//! exporters).
//!
//! ```text
//! telemetry_layer <variant> <N>
//! ```
//!
//! `variant` is `bare`, `parapet_spans`, `parapet_spans_metrics`, `parapet_sampled_out`
//! (parapet's `TelemetryLayer` under the subscriber `TelemetryBuilder` builds), `oit_spans`,
//! `oit_spans_metrics` or `oit_sampled_out` (opentelemetry-instrumentation-tower 0.19 on the
//! global providers). Run it under `valgrind --tool=callgrind` with two values of N for each
//! variant: the instructions per request are `(total(N2) - total(N1)) / (N2 - N1)`, and a layer's
//! added cost is its figure minus `bare`'s. Exits with an error unless every request answered 200.

use std::{convert::Infallible, error::Error};

use axum::{Router, body::Body};
use http::{Request, Response};
use opentelemetry::{global, metrics::MeterProvider as _};
use opentelemetry_instrumentation_tower::http::{
    extractors::AxumMatchedPathExtractor, server::LayerBuilder,
};
use opentelemetry_sdk::{
    metrics::SdkMeterProvider,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use parapet_bench::telemetry::{DropMetrics, batch, request, routes};
use parapet_telemetry::{TelemetryBuilder, TelemetryLayer};
use tower::{Service, ServiceExt};

async fn drive<S>(mut service: S, n: u64) -> Result<u64, Box<dyn Error>>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let mut ok = 0;
    for _ in 0..n {
        let response = service.ready().await?.call(request()).await?;
        ok += u64::from(response.status() == 200);
    }
    Ok(ok)
}

fn run(app: Router, n: u64) -> Result<u64, Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(drive(app.into_service::<Body>(), n))
}

fn parapet(sampler: &str, metrics: bool, n: u64) -> Result<u64, Box<dyn Error>> {
    let (subscriber, guard) =
        TelemetryBuilder::from_env_map([("OTEL_TRACES_SAMPLER", sampler), ("RUST_LOG", "info")])
            .log_output(false)
            .with_span_processor(batch())
            .with_metric_exporter(DropMetrics)
            .build()?;
    let _default = tracing::subscriber::set_default(subscriber);
    let layer = if metrics {
        TelemetryLayer::new().meter(guard.meter_provider().meter("parapet-telemetry"))
    } else {
        TelemetryLayer::new().metrics(false)
    };
    let ok = run(routes().layer(layer), n)?;
    guard.shutdown()?;
    Ok(ok)
}

fn oit(sampler: Sampler, metrics: bool, n: u64) -> Result<u64, Box<dyn Error>> {
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
        .with_route_extractor(AxumMatchedPathExtractor)
        .with_metrics(metrics)
        .build()?;
    let ok = run(routes().layer(layer), n)?;
    tracer.shutdown()?;
    meter.shutdown()?;
    Ok(ok)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: telemetry_layer <variant> <N>";
    let variant = args.next().ok_or(usage)?;
    let n: u64 = args.next().ok_or(usage)?.parse()?;
    // Both continue a W3C traceparent (parapet uses its propagator directly).
    global::set_text_map_propagator(TraceContextPropagator::new());
    let always_on = || Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
    let ok = match variant.as_str() {
        "bare" => run(routes(), n)?,
        "parapet_spans" => parapet("parentbased_always_on", false, n)?,
        "parapet_spans_metrics" => parapet("parentbased_always_on", true, n)?,
        "parapet_sampled_out" => parapet("always_off", false, n)?,
        "oit_spans" => oit(always_on(), false, n)?,
        "oit_spans_metrics" => oit(always_on(), true, n)?,
        "oit_sampled_out" => oit(Sampler::AlwaysOff, false, n)?,
        other => return Err(format!("unknown variant {other}; {usage}").into()),
    };
    if ok != n {
        return Err(format!("{ok} of {n} requests answered 200").into());
    }
    println!("{variant}: {ok} requests answered 200");
    Ok(())
}
