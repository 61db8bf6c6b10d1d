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
use tokio::sync::watch;

/// The runtime the exporters run on; stopped without blocking when dropped.
///
/// Dropping it first tells every export still running (one hung on a collector that never
/// answers, say) to give up, then stops the runtime: an export is never left polling I/O or
/// timers of a stopped runtime, which panics ("A Tokio 1.x context was found, but it is being
/// shutdown") when its timeout fires.
pub(crate) struct ExportRuntime {
    runtime: Option<Runtime>,
    stop: watch::Sender<bool>,
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
            stop: watch::Sender::new(false),
        })
    }

    /// What an exporter needs to run its exports here.
    pub(crate) fn handle(&self) -> Option<ExportHandle> {
        self.runtime.as_ref().map(|r| ExportHandle {
            handle: r.handle().clone(),
            stopped: self.stop.subscribe(),
        })
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The export runtime's handle, and the signal that it is stopping.
#[derive(Debug, Clone)]
pub(crate) struct ExportHandle {
    handle: Handle,
    stopped: watch::Receiver<bool>,
}

impl ExportHandle {
    /// Enters the export runtime (a tonic channel must be created inside one).
    pub(crate) fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.handle.enter()
    }
}

/// An exporter whose exports run to completion on the export runtime.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    inner: E,
    runtime: ExportHandle,
}

impl<E> OnRuntime<E> {
    pub(crate) fn new(inner: E, runtime: ExportHandle) -> Self {
        Self { inner, runtime }
    }
}

/// Blocks on `future` inside the export runtime, until it completes or the runtime stops
/// (then the export is dropped unfinished and fails). From a thread that is itself inside a
/// runtime (where blocking is forbidden), a scoped helper thread blocks instead.
fn run<F>(runtime: &ExportHandle, future: F) -> OTelSdkResult
where
    F: Future<Output = OTelSdkResult> + Send,
{
    let mut stopped = runtime.stopped.clone();
    if *stopped.borrow() {
        return Err(OTelSdkError::AlreadyShutdown);
    }
    let export = async move {
        tokio::select! {
            // Checked first: once the runtime stops, the export is not polled again.
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => Err(OTelSdkError::InternalFailure(
                "telemetry shut down before the export finished".into(),
            )),
            result = future => result,
        }
    };
    if Handle::try_current().is_err() {
        return runtime.handle.block_on(export);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.handle.block_on(export))
            .join()
            .unwrap_or_else(|_| Err(OTelSdkError::InternalFailure("export panicked".into())))
    })
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        std::future::ready(run(&self.runtime, self.inner.export(batch)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _runtime = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _runtime = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        std::future::ready(run(&self.runtime, self.inner.export(metrics)))
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _runtime = self.runtime.enter();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _runtime = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
