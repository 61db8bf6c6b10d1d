//! [`init`] and [`TelemetryBuilder`]: the tracer and meter providers, the OTLP exporters, the
//! propagator and the `tracing` subscriber, configured from the `OTEL_*` variables.

use std::{fmt, time::Duration};

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    metrics::{
        MeterProviderBuilder, PeriodicReader, SdkMeterProvider, exporter::PushMetricExporter,
    },
    trace::{SdkTracerProvider, SpanProcessor, TracerProviderBuilder},
};
use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt};

use crate::{
    SpanFieldsLayer, TelemetryGuard,
    env::{self, Env},
    error::TelemetryError,
    export::{ExportRuntime, OnRuntime},
    otlp::{self, Signal},
    span,
    tracer::ServerTracer,
};

/// The targets whose `info` spans always reach OpenTelemetry: the request span and the pool's
/// query spans.
const OTEL_TARGETS: [&str; 2] = [span::TARGET, "parapet_pool"];

type TracerStep = Box<dyn FnOnce(TracerProviderBuilder) -> TracerProviderBuilder + Send>;
type MeterStep = Box<dyn FnOnce(MeterProviderBuilder) -> MeterProviderBuilder + Send>;

/// A type-erased `tracing` subscriber, as built by [`TelemetryBuilder::build`].
pub type BoxSubscriber = Box<dyn Subscriber + Send + Sync>;

/// Configures telemetry; [`init`] is `TelemetryBuilder::from_env().init()`.
///
/// Read from the environment map (only `OTEL_*` and `RUST_LOG` are kept):
///
/// | variable | meaning |
/// |---|---|
/// | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource |
/// | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL of both signals (OTLP/HTTP appends `v1/traces`, `v1/metrics`); none and no per-signal endpoint: nothing is exported, spans still reach the log |
/// | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `_METRICS_ENDPOINT` | one signal's URL, used as is; a signal with no endpoint at all is not exported |
/// | `OTEL_EXPORTER_OTLP_PROTOCOL`, `_TRACES_PROTOCOL`, `_METRICS_PROTOCOL` | `http/protobuf` (the default) or `grpc` |
/// | `OTEL_EXPORTER_OTLP_HEADERS` (and `_TRACES_`/`_METRICS_`) | `key=value,…` sent with every export (percent-encoded values) |
/// | `OTEL_EXPORTER_OTLP_TIMEOUT` (and per signal) | milliseconds per export (10 s by default) |
/// | `OTEL_EXPORTER_OTLP_COMPRESSION` (and per signal) | `gzip` or `none` |
/// | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | the sampler (`parentbased_always_on` by default) |
/// | `OTEL_PROPAGATORS` | the global propagator [`init`] installs: `tracecontext`, `baggage` (comma-separated) or `none`; `tracecontext,baggage` by default |
/// | `OTEL_METRIC_EXPORT_INTERVAL` | milliseconds between metric exports (60 s by default) |
/// | `RUST_LOG` | the log filter (default `info`); OpenTelemetry also gets parapet's request and query spans at `info` |
///
/// A signal's own variable wins over the general one. Bad values of the protocol, the interval or
/// `RUST_LOG` are errors; others fall back to the default with a [warning](TelemetryGuard::warnings).
///
/// # Example
///
/// ```
/// use parapet_telemetry::TelemetryBuilder;
///
/// let (subscriber, guard) = TelemetryBuilder::from_env_map([("OTEL_SERVICE_NAME", "crm-api")])
///     .log_output(false)
///     .build()?;
/// tracing::subscriber::with_default(subscriber, || tracing::info!("no exporter: logs only"));
/// guard.shutdown()?;
/// # Ok::<(), parapet_telemetry::TelemetryError>(())
/// ```
#[must_use]
pub struct TelemetryBuilder {
    env: Env,
    service_name: Option<String>,
    attributes: Vec<KeyValue>,
    default_filter: String,
    log_output: bool,
    tracer_steps: Vec<TracerStep>,
    meter_steps: Vec<MeterStep>,
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("env", &self.env)
            .field("service_name", &self.service_name)
            .field("default_filter", &self.default_filter)
            .field("log_output", &self.log_output)
            .finish_non_exhaustive()
    }
}

/// Starts telemetry from the process environment and installs it globally.
///
/// # Errors
/// See [`TelemetryBuilder::init`].
pub fn init() -> Result<TelemetryGuard, TelemetryError> {
    TelemetryBuilder::from_env().init()
}

impl TelemetryBuilder {
    /// A builder reading the process environment.
    pub fn from_env() -> Self {
        Self::from_env_map(std::env::vars())
    }

    /// A builder reading `vars` instead of the process environment.
    pub fn from_env_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            env: Env::new(vars.into_iter().map(|(k, v)| (k.into(), v.into()))),
            service_name: None,
            attributes: Vec::new(),
            default_filter: "info".to_owned(),
            log_output: true,
            tracer_steps: Vec::new(),
            meter_steps: Vec::new(),
        }
    }

    /// The service name when `OTEL_SERVICE_NAME` is not set.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds a resource attribute (`OTEL_RESOURCE_ATTRIBUTES` wins on the same key).
    pub fn resource_attribute(mut self, attribute: KeyValue) -> Self {
        self.attributes.push(attribute);
        self
    }

    /// The log filter when `RUST_LOG` is not set (`info` by default).
    pub fn default_log_filter(mut self, filter: impl Into<String>) -> Self {
        self.default_filter = filter.into();
        self
    }

    /// Writes events and spans to stdout with `tracing-subscriber`'s fmt layer (on by default).
    pub fn log_output(mut self, enabled: bool) -> Self {
        self.log_output = enabled;
        self
    }

    /// Adds a span processor, next to the OTLP one (for an in-memory exporter in tests, say).
    pub fn with_span_processor(mut self, processor: impl SpanProcessor + 'static) -> Self {
        self.tracer_steps
            .push(Box::new(move |b| b.with_span_processor(processor)));
        self
    }

    /// Adds a metric exporter on its own periodic reader, next to the OTLP one (an in-memory
    /// exporter in tests, read after [`TelemetryGuard::force_flush`]).
    pub fn with_metric_exporter(mut self, exporter: impl PushMetricExporter) -> Self {
        self.meter_steps
            .push(Box::new(move |b| b.with_periodic_exporter(exporter)));
        self
    }

    /// Builds the providers, the exporters and the subscriber without installing anything
    /// globally: set the subscriber yourself (`tracing::subscriber::set_default`) and pass
    /// [`TelemetryGuard::meter_provider`]'s meter to [`TelemetryLayer::meter`](crate::TelemetryLayer::meter).
    ///
    /// # Errors
    /// An unsupported `OTEL_EXPORTER_OTLP_PROTOCOL`, a malformed `RUST_LOG` or endpoint.
    pub fn build(self) -> Result<(BoxSubscriber, TelemetryGuard), TelemetryError> {
        let mut warnings = Vec::new();
        let resource = self.resource();
        let sampler = env::sampler(&self.env, &mut warnings);
        let propagators = env::propagators(&self.env, &mut warnings);
        let interval =
            match self.env.get("OTEL_METRIC_EXPORT_INTERVAL") {
                None => Duration::from_secs(60),
                Some(ms) => ms.parse().map(Duration::from_millis).map_err(|_| {
                    TelemetryError::InvalidEnv {
                        name: "OTEL_METRIC_EXPORT_INTERVAL",
                        reason: format!("`{ms}` is not a number of milliseconds"),
                    }
                })?,
            };
        let mut tracer = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_resource(resource.clone());
        let mut meter = SdkMeterProvider::builder().with_resource(resource);
        let mut runtime = None;
        let traces = otlp::signal_export(&self.env, Signal::Traces, &mut warnings)?;
        let metrics = otlp::signal_export(&self.env, Signal::Metrics, &mut warnings)?;
        let exports_metrics = metrics.is_some() || !self.meter_steps.is_empty();
        if traces.is_some() || metrics.is_some() {
            let rt = ExportRuntime::new()?;
            let handle = rt
                .handle()
                .ok_or_else(|| TelemetryError::Shutdown("export runtime stopped".into()))?;
            // tonic's channel must be created inside a runtime.
            let entered = handle.enter();
            if let Some(config) = traces {
                let exporter = otlp::span_exporter(&config)?;
                tracer = tracer.with_batch_exporter(OnRuntime::new(exporter, handle.clone()));
            }
            if let Some(config) = metrics {
                let exporter = otlp::metric_exporter(&config)?;
                let reader = PeriodicReader::builder(OnRuntime::new(exporter, handle.clone()))
                    .with_interval(interval)
                    .build();
                meter = meter.with_reader(reader);
            }
            drop(entered);
            runtime = Some(rt);
        }
        for step in self.tracer_steps {
            tracer = step(tracer);
        }
        for step in self.meter_steps {
            meter = step(meter);
        }
        let tracer_provider = tracer.build();
        let meter_provider = meter.build();

        let filter = self
            .env
            .get("RUST_LOG")
            .unwrap_or(&self.default_filter)
            .to_owned();
        let parse = |f: &str| {
            EnvFilter::try_new(f).map_err(|e| TelemetryError::InvalidEnv {
                name: "RUST_LOG",
                reason: e.to_string(),
            })
        };
        // The request span must reach OpenTelemetry whatever the log level, or handler spans
        // lose their parent (davidB/axum-tracing-opentelemetry#148); so must parapet-pool's
        // `db.query` spans, which carry the slow-query events. A target the filter names
        // explicitly keeps the level it was given.
        let otel_filter = || -> Result<EnvFilter, TelemetryError> {
            let mut otel_filter = parse(&filter)?;
            for target in OTEL_TARGETS {
                if !filter.contains(target) {
                    otel_filter =
                        otel_filter.add_directive(format!("{target}=info").parse().map_err(
                            |e: tracing_subscriber::filter::ParseError| {
                                TelemetryError::InvalidEnv {
                                    name: "RUST_LOG",
                                    reason: e.to_string(),
                                }
                            },
                        )?);
                }
            }
            Ok(otel_filter)
        };
        let tracer = tracer_provider.tracer("parapet-telemetry");
        // No `busy_ns`/`idle_ns`, `thread.*` or `target` attributes: they are not semantic
        // conventions, a task's thread says little in async code, and tracking inactivity
        // reads the clock on every poll of every span.
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_target(false)
            .with_tracer(tracer.clone())
            .with_filter(otel_filter()?);
        // The telemetry layer's tracer, and the events outside `tracing` spans, on the same
        // filter: an event the OpenTelemetry layer would not see is not added either.
        let server_tracer = ServerTracer::new(tracer).with_filter(otel_filter()?);
        let fmt_layer = if self.log_output {
            Some(tracing_subscriber::fmt::layer().with_filter(parse(&filter)?))
        } else {
            None
        };
        let subscriber = tracing_subscriber::registry()
            .with(SpanFieldsLayer::new())
            .with(server_tracer)
            .with(otel_layer)
            .with(fmt_layer);
        let guard = TelemetryGuard::new(tracer_provider, meter_provider, warnings, runtime)
            .with_metrics_exported(exports_metrics)
            .with_propagators(propagators);
        Ok((Box::new(subscriber), guard))
    }

    /// Builds everything and installs it globally: the `tracing` subscriber, the tracer and meter
    /// providers and the propagator of `OTEL_PROPAGATORS` ([`TelemetryGuard::propagator`]). Keep
    /// the guard alive until the end of `main` and call [`TelemetryGuard::shutdown`] there.
    ///
    /// # Errors
    /// Those of [`build`](Self::build), and [`TelemetryError::SubscriberAlreadySet`].
    pub fn init(self) -> Result<TelemetryGuard, TelemetryError> {
        let (subscriber, guard) = self.build()?;
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|_| TelemetryError::SubscriberAlreadySet)?;
        opentelemetry::global::set_text_map_propagator(guard.propagator());
        opentelemetry::global::set_tracer_provider(guard.tracer_provider().clone());
        if guard.exports_metrics() {
            opentelemetry::global::set_meter_provider(guard.meter_provider().clone());
        }
        for warning in guard.warnings() {
            tracing::warn!(target: "parapet_telemetry", "{warning}");
        }
        Ok(guard)
    }

    fn resource(&self) -> Resource {
        let from_env = self
            .env
            .get("OTEL_RESOURCE_ATTRIBUTES")
            .map(env::resource_attributes)
            .unwrap_or_default();
        let name = self
            .env
            .get("OTEL_SERVICE_NAME")
            .map(str::to_owned)
            .or_else(|| {
                from_env
                    .iter()
                    .find(|kv| kv.key.as_str() == "service.name")
                    .map(|kv| kv.value.to_string())
            })
            .or_else(|| self.service_name.clone())
            .unwrap_or_else(|| "unknown_service".to_owned());
        Resource::builder_empty()
            .with_attributes(self.attributes.iter().cloned())
            .with_attributes(from_env)
            .with_attributes([
                KeyValue::new("telemetry.sdk.name", "opentelemetry"),
                KeyValue::new("telemetry.sdk.language", "rust"),
            ])
            .with_service_name(name)
            .build()
    }
}
