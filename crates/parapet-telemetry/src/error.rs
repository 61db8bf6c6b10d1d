//! [`TelemetryError`]: why telemetry could not start or stop.

use opentelemetry_otlp::ExporterBuildError;

/// Why telemetry could not start or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A variable holds a value that cannot be honoured.
    #[error("invalid {name}: {reason}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The OTLP exporter could not be built (a malformed endpoint, for example).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] ExporterBuildError),
    /// The exporters' runtime thread could not start.
    #[error("cannot start the export runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// [`TelemetryBuilder::init`](crate::TelemetryBuilder::init) found a global `tracing` subscriber already set.
    #[error("a global tracing subscriber is already set")]
    SubscriberAlreadySet,
    /// Flushing or shutting a provider down failed (the collector is unreachable, for example).
    #[error("telemetry shutdown: {0}")]
    Shutdown(String),
}
