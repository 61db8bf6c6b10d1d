//! Runs the OTLP exporters on a small Tokio runtime of their own.
//!
//! The SDK's `BatchSpanProcessor` and `PeriodicReader` export from their own threads with
//! `futures_executor::block_on`; the hyper and tonic clients need a Tokio reactor there (the "no
//! reactor running" panic of opentelemetry-rust#2673). [`OnRuntime`] blocks on the export inside a
//! dedicated one-worker runtime, so exports work whatever runtime (if any) the application uses,
//! and a shutdown called from inside the application's runtime cannot deadlock it.

use std::{fmt, future::Future, time::Duration};

use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    metrics::{Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
    trace::{SpanData, SpanExporter},
};
use tokio::runtime::{Handle, Runtime};

/// The runtime the exporters run on; stopped without blocking when dropped.
pub(crate) struct ExportRuntime {
    runtime: Option<Runtime>,
}

impl fmt::Debug for ExportRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportRuntime").finish_non_exhaustive()
    }
}

impl ExportRuntime {
    pub(crate) fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("parapet-otel-export")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    pub(crate) fn handle(&self) -> Option<Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An exporter whose exports run to completion on the export runtime.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    inner: E,
    handle: Handle,
}

impl<E> OnRuntime<E> {
    pub(crate) fn new(inner: E, handle: Handle) -> Self {
        Self { inner, handle }
    }
}

/// Blocks on `future` inside the export runtime. From a thread that is itself inside a runtime
/// (where blocking is forbidden), a scoped helper thread blocks instead.
fn run<F>(handle: &Handle, future: F) -> OTelSdkResult
where
    F: Future<Output = OTelSdkResult> + Send,
{
    if Handle::try_current().is_err() {
        return handle.block_on(future);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| handle.block_on(future))
            .join()
            .unwrap_or_else(|_| Err(OTelSdkError::InternalFailure("export panicked".into())))
    })
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        std::future::ready(run(&self.handle, self.inner.export(batch)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _runtime = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _runtime = self.handle.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        std::future::ready(run(&self.handle, self.inner.export(metrics)))
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _runtime = self.handle.enter();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _runtime = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
