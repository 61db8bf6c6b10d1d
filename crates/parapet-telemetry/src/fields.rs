//! [`SpanFieldsLayer`]: keeps what inner layers record on the request span readable.

use tracing::{
    Span, Subscriber,
    field::{Field, Visit},
    span::{Id, Record},
};
use tracing_subscriber::{
    Registry,
    layer::{Context, Layer},
    registry::LookupSpan,
};

use crate::span::TARGET;

/// A `tracing-subscriber` layer that remembers the `tenant.id` recorded on parapet's request span
/// when that span is a `tracing` span (under a subscriber you built yourself), so that the
/// slow-request warning can name a tenant some layer other than parapet-tenant's recorded.
///
/// [`init`](crate::init) installs it. The tenant `TenantLayer` resolves reaches the warning
/// without it, through the request's `TenantSlot`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanFieldsLayer {
    _private: (),
}

impl SpanFieldsLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Debug, Default, Clone)]
struct Captured {
    tenant: Option<String>,
}

#[derive(Default)]
struct TenantVisitor(Option<String>);

impl Visit for TenantVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "tenant.id" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "tenant.id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // Most records are not `tenant.id`: look at the values before looking the span up.
        let mut visitor = TenantVisitor::default();
        values.record(&mut visitor);
        let Some(tenant) = visitor.0 else { return };
        let Some(span) = ctx.span(id) else { return };
        if span.metadata().target() != TARGET {
            return;
        }
        {
            let mut extensions = span.extensions_mut();
            match extensions.get_mut::<Captured>() {
                Some(captured) => captured.tenant = Some(tenant),
                None => extensions.insert(Captured {
                    tenant: Some(tenant),
                }),
            }
        }
    }
}

/// The `tenant.id` recorded on `span`, when [`SpanFieldsLayer`] saw it.
pub(crate) fn recorded_tenant(span: &Span) -> Option<String> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        let extensions = data.extensions();
        extensions.get::<Captured>()?.tenant.clone()
    })
    .flatten()
}
