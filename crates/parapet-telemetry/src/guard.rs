//! [`TelemetryGuard`]: flushes and stops the span and metric pipelines.

use std::fmt;

use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry_sdk::{
    error::OTelSdkError,
    metrics::SdkMeterProvider,
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::SdkTracerProvider,
};

use crate::{env::Propagator, error::TelemetryError, export::ExportRuntime};

/// Keeps telemetry running; [`shutdown`](Self::shutdown) (or dropping it) flushes and stops the
/// span and metric pipelines, so the last spans are delivered before the process exits.
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    warnings: Vec<String>,
    runtime: Option<ExportRuntime>,
    exports_metrics: bool,
    propagators: Vec<Propagator>,
    done: bool,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.runtime.is_some())
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl TelemetryGuard {
    pub(crate) fn new(
        tracer_provider: SdkTracerProvider,
        meter_provider: SdkMeterProvider,
        warnings: Vec<String>,
        runtime: Option<ExportRuntime>,
    ) -> Self {
        Self {
            tracer_provider,
            meter_provider,
            warnings,
            runtime,
            exports_metrics: false,
            propagators: Vec::new(),
            done: false,
        }
    }

    pub(crate) fn with_metrics_exported(mut self, exported: bool) -> Self {
        self.exports_metrics = exported;
        self
    }

    pub(crate) fn with_propagators(mut self, propagators: Vec<Propagator>) -> Self {
        self.propagators = propagators;
        self
    }

    /// Whether metrics go anywhere (an OTLP metrics endpoint or a configured exporter). When
    /// they do not, [`init`](crate::init) leaves the global meter provider a no-op, so
    /// instruments cost nothing and observers are not registered on a reader-less provider.
    pub fn exports_metrics(&self) -> bool {
        self.exports_metrics
    }

    /// The tracer provider (also the global one after [`init`](crate::init)).
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.tracer_provider
    }

    /// The meter provider (also the global one after [`init`](crate::init)).
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.meter_provider
    }

    /// The propagators `OTEL_PROPAGATORS` names (W3C Trace Context and Baggage by default; none
    /// for `none`), as one propagator. [`init`](crate::init) installs it as the global one; after
    /// [`build`](crate::TelemetryBuilder::build), install it yourself with
    /// `opentelemetry::global::set_text_map_propagator`. ([`TelemetryLayer`](crate::TelemetryLayer)
    /// reads an incoming `traceparent` whatever this says.)
    pub fn propagator(&self) -> TextMapCompositePropagator {
        TextMapCompositePropagator::new(
            self.propagators
                .iter()
                .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
                    match p {
                        Propagator::TraceContext => Box::new(TraceContextPropagator::new()),
                        Propagator::Baggage => Box::new(BaggagePropagator::new()),
                    }
                })
                .collect(),
        )
    }

    /// Configuration problems that were replaced by defaults (an unknown sampler, say); [`init`](crate::init)
    /// also logs them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Exports what is buffered now, spans and metrics.
    ///
    /// # Errors
    /// An export failed.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        let spans = self.tracer_provider.force_flush();
        let metrics = self.meter_provider.force_flush();
        spans
            .and(metrics)
            .map_err(|e| TelemetryError::Shutdown(e.to_string()))
    }

    /// Flushes and stops the pipelines. Blocks until the exports are done or the SDK's shutdown
    /// timeout (5 s) has passed, whichever comes first: exports still hung on a collector that
    /// does not answer are then abandoned, so the shutdown is bounded and never panics. Safe to
    /// call from inside a Tokio runtime.
    ///
    /// # Errors
    /// An export or a shutdown failed; the pipelines are stopped anyway.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), TelemetryError> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(());
        }
        // Both at once: with a collector that never answers, each waits for its own timeout
        // (the SDK's 5 s), so the shutdown takes one timeout, not two.
        let (spans, metrics) = std::thread::scope(|scope| {
            let metrics = scope.spawn(|| self.meter_provider.shutdown());
            let spans = self.tracer_provider.shutdown();
            let metrics = metrics.join().unwrap_or_else(|_| {
                Err(OTelSdkError::InternalFailure(
                    "the metric shutdown panicked".into(),
                ))
            });
            (spans, metrics)
        });
        // Exports still hung on the collector give up, then the export runtime stops.
        self.runtime = None;
        spans
            .and(metrics)
            .map_err(|e| TelemetryError::Shutdown(e.to_string()))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
