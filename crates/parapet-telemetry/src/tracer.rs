//! [`ServerTracer`]: the `tracing` layer through which [`TelemetryLayer`](crate::TelemetryLayer)
//! finds its tracer, and which puts events that are in no `tracing` span on the current
//! OpenTelemetry span.

use std::{borrow::Cow, cell::Cell, fmt};

use opentelemetry::{
    Key, KeyValue,
    trace::{Status, TraceContextExt},
};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    layer::{Context, Layer},
    registry::LookupSpan,
};

/// Installed by [`TelemetryBuilder::build`](crate::TelemetryBuilder::build) under the same filter
/// as the OpenTelemetry layer.
///
/// - It carries the tracer: the telemetry layer looks it up in the current dispatcher
///   (`Dispatch::downcast_ref`) and builds the server span with the OpenTelemetry API.
/// - That span is no `tracing` span, so tracing-opentelemetry drops the events a handler emits
///   outside any span of its own; this layer adds them to the OpenTelemetry span current on the
///   thread (the server span, attached around every poll of the request) as span events, named
///   and tagged the way tracing-opentelemetry tags the events it keeps (`level`, `target`, the
///   fields; an ERROR event marks the span as an error).
pub(crate) struct ServerTracer {
    tracer: SdkTracer,
}

impl fmt::Debug for ServerTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTracer").finish_non_exhaustive()
    }
}

impl ServerTracer {
    pub(crate) fn new(tracer: SdkTracer) -> Self {
        Self { tracer }
    }

    pub(crate) fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }
}

thread_local! {
    /// Set while an event is being added, so that anything the SDK logs meanwhile is not added
    /// to the span it is locking.
    static ADDING: Cell<bool> = const { Cell::new(false) };
}

impl<S> Layer<S> for ServerTracer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // Events with a `tracing` span are tracing-opentelemetry's.
        if !event.is_contextual() || ctx.lookup_current().is_some() {
            return;
        }
        if ADDING.with(Cell::get) {
            return;
        }
        opentelemetry::Context::map_current(|cx| {
            if !cx.has_active_span() {
                return;
            }
            let span = cx.span();
            if !span.is_recording() {
                return;
            }
            let meta = event.metadata();
            let mut visitor = EventVisitor {
                message: None,
                attributes: vec![
                    KeyValue::new("level", meta.level().as_str()),
                    KeyValue::new("target", meta.target()),
                ],
            };
            event.record(&mut visitor);
            let name = visitor
                .message
                .map_or(Cow::Borrowed(meta.name()), Cow::Owned);
            ADDING.with(|adding| adding.set(true));
            if *meta.level() == Level::ERROR {
                span.set_status(Status::error(""));
            }
            span.add_event(name, visitor.attributes);
            ADDING.with(|adding| adding.set(false));
        });
    }
}

/// An event's message (its name) and its other fields (attributes).
struct EventVisitor {
    message: Option<String>,
    attributes: Vec<KeyValue>,
}

impl EventVisitor {
    fn push(&mut self, field: &Field, value: impl Into<opentelemetry::Value>) {
        self.attributes
            .push(KeyValue::new(Key::from_static_str(field.name()), value));
    }
}

impl Visit for EventVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.push(field, value),
            Err(_) => self.push(field, value.to_string()),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.push(field, value.to_owned());
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            self.push(field, format!("{value:?}"));
        }
    }
}
