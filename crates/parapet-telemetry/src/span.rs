//! The server span: how it is started, its HTTP semantic-convention attributes, and how the
//! request's own work runs inside it.
//!
//! Two ways to start it, chosen per request by the `tracing` subscriber in use:
//!
//! - **Direct**: the subscriber was built by [`TelemetryBuilder`](crate::TelemetryBuilder), so it
//!   carries the tracer ([`ServerTracer`]). The span is an OpenTelemetry span built with the
//!   OpenTelemetry API, its attributes passed once, and its context is attached around every poll
//!   of the request: tracing-opentelemetry starts a `tracing` span that has no `tracing` parent
//!   under the current OpenTelemetry context, so handler spans and parapet-pool's `db.query`
//!   spans nest under it, and [`ServerTracer`] puts handler events that are in no `tracing` span
//!   on it. Nothing goes through the `tracing` layers per field.
//! - **Bridged**: any other subscriber (one an application assembled with tracing-opentelemetry's
//!   layer, say). A `tracing` span is opened, started through the subscriber's OpenTelemetry
//!   layer (whose tracer it uses), given its name and attributes through the OpenTelemetry API,
//!   and entered around every poll, as before. It declares `tenant.id` and `cache.status` so
//!   layers that record them on the current `tracing` span still reach it.

use std::{borrow::Cow, cell::RefCell, net::IpAddr, sync::Arc, time::SystemTime};

use axum::extract::ConnectInfo;
use http::{HeaderMap, Request, Version};
use opentelemetry::{
    Context, ContextGuard, KeyValue, Value,
    trace::{SpanBuilder, SpanKind, Status, TraceContextExt, Tracer as _},
};
use opentelemetry_semantic_conventions::attribute;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    route::{KnownMethod, Route},
    tracer::ServerTracer,
};

/// The `tracing` target of the request span and of the slow-request warning.
pub(crate) const TARGET: &str = "parapet_telemetry";

/// Room for every attribute the span can get: the request's ten, the status, the error type,
/// the tenant and the cache status.
const ATTRIBUTES: usize = 14;

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Splits a `Host` header (or URI authority) into address and port; `[::1]:80` keeps its brackets
/// off.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some((addr, tail)) = host.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((addr, port)) if !addr.contains(':') => (addr, port.parse().ok()),
        _ => (host, None),
    }
}

/// What the span is named and tagged with, read from the request head.
pub(crate) struct RequestHead {
    pub(crate) method: KnownMethod,
    pub(crate) scheme: &'static str,
    pub(crate) route: Option<&'static Route>,
}

impl RequestHead {
    fn span_name(&self) -> &'static str {
        match self.route {
            Some(route) => route.span_name(self.method),
            None => self.method.span_name(),
        }
    }

    /// The request's attributes, those it has (no empty values).
    fn attributes<B>(&self, req: &Request<B>) -> impl Iterator<Item = KeyValue> {
        let uri = req.uri();
        let headers = req.headers();
        let host =
            header_str(headers, http::header::HOST).or_else(|| uri.authority().map(|a| a.as_str()));
        let (address, port) = host.map_or((None, None), |host| {
            let (address, port) = split_host(host);
            (Some(address), port)
        });
        let client = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|ConnectInfo(addr)| RECENT.with_borrow_mut(|r| r.client(addr.ip())));
        let path = match self.route {
            // A route without parameters is its own path: no copy.
            Some(route) if route.path() == uri.path() => Value::from(route.path()),
            _ => Value::from(uri.path().to_owned()),
        };
        [
            Some(KeyValue::new(
                attribute::HTTP_REQUEST_METHOD,
                self.method.name(),
            )),
            Some(KeyValue::new(attribute::URL_PATH, path)),
            Some(KeyValue::new(attribute::URL_SCHEME, self.scheme)),
            uri.query()
                .map(|q| KeyValue::new(attribute::URL_QUERY, q.to_owned())),
            self.route
                .map(|r| KeyValue::new(attribute::HTTP_ROUTE, r.path())),
            address.map(|a| {
                KeyValue::new(
                    attribute::SERVER_ADDRESS,
                    RECENT.with_borrow_mut(|r| Recent::text(&mut r.host, a)),
                )
            }),
            port.map(|p| KeyValue::new(attribute::SERVER_PORT, i64::from(p))),
            Some(KeyValue::new(
                attribute::NETWORK_PROTOCOL_VERSION,
                protocol_version(req.version()),
            )),
            header_str(headers, http::header::USER_AGENT).map(|a| {
                KeyValue::new(
                    attribute::USER_AGENT_ORIGINAL,
                    RECENT.with_borrow_mut(|r| Recent::text(&mut r.agent, a)),
                )
            }),
            client.map(|c| KeyValue::new(attribute::CLIENT_ADDRESS, c)),
        ]
        .into_iter()
        .flatten()
    }
}

/// The longest value [`Recent`] keeps; a longer one is copied for its span alone.
const RECENT_MAX: usize = 256;

thread_local! {
    static RECENT: RefCell<Recent> = const { RefCell::new(Recent::EMPTY) };
}

/// The last `server.address`, `user_agent.original`, `client.address` and `cache.status` this
/// thread put on a span, shared: one client's or one host's requests repeat them, so a repeat
/// costs a reference count instead of an allocation and a copy (and, for the client address,
/// formatting). Only a value equal to the request's own is reused, so nothing of one request
/// reaches another's span.
struct Recent {
    host: Option<Arc<str>>,
    agent: Option<Arc<str>>,
    client: Option<(IpAddr, Arc<str>)>,
    status: Option<Arc<str>>,
}

/// `text` as an attribute value, shared with the last span of this thread that had the same
/// `cache.status`.
pub(crate) fn cache_status_value(text: &str) -> Value {
    RECENT.with_borrow_mut(|r| Recent::text(&mut r.status, text))
}

impl Recent {
    const EMPTY: Self = Self {
        host: None,
        agent: None,
        client: None,
        status: None,
    };

    fn text(slot: &mut Option<Arc<str>>, text: &str) -> Value {
        if let Some(last) = slot.as_ref()
            && **last == *text
        {
            return Value::from(last.clone());
        }
        if text.len() > RECENT_MAX {
            return Value::from(text.to_owned());
        }
        let shared = Arc::<str>::from(text);
        *slot = Some(shared.clone());
        Value::from(shared)
    }

    fn client(&mut self, ip: IpAddr) -> Value {
        if let Some((last, text)) = &self.client
            && *last == ip
        {
            return Value::from(text.clone());
        }
        let text = Arc::<str>::from(ip.to_string());
        self.client = Some((ip, text.clone()));
        Value::from(text)
    }
}

fn header_str(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|h| h.to_str().ok())
}

/// The server span of one request.
pub(crate) struct ServerSpan {
    /// The context whose span is the server span (an empty one when nothing traces).
    cx: Context,
    /// The `tracing` span it was started through, when bridged.
    bridge: Option<tracing::Span>,
}

/// While alive, the request runs inside its server span.
pub(crate) struct Scope<'a> {
    _direct: Option<ContextGuard>,
    _bridged: Option<tracing::span::Entered<'a>>,
}

impl ServerSpan {
    /// Starts the span of `req`, a child of `parent` (the caller's, from `traceparent`) or else
    /// of the current context.
    pub(crate) fn start<B>(req: &Request<B>, head: &RequestHead, parent: Option<Context>) -> Self {
        let direct = tracing::dispatcher::get_default(|dispatch| {
            let tracer = dispatch.downcast_ref::<ServerTracer>()?;
            let parent = parent.clone().unwrap_or_else(Context::current);
            let builder = SpanBuilder::from_name(head.span_name())
                .with_kind(SpanKind::Server)
                .with_start_time(SystemTime::now())
                .with_attributes(Vec::with_capacity(ATTRIBUTES));
            // Sampling first: a span sampled out is never given its attributes.
            let mut span = tracer.tracer().build_with_context(builder, &parent);
            if opentelemetry::trace::Span::is_recording(&span) {
                opentelemetry::trace::Span::set_attributes(&mut span, head.attributes(req));
            }
            Some(parent.with_span(span))
        });
        if let Some(cx) = direct {
            return Self { cx, bridge: None };
        }
        let span = tracing::info_span!(
            target: TARGET,
            "HTTP request",
            otel.kind = "server",
            tenant.id = Empty,
            cache.status = Empty,
        );
        if let Some(parent) = parent {
            // Only fails when no OpenTelemetry layer is installed: there is nothing to parent then.
            let _ = span.set_parent(parent);
        }
        let cx = span.context();
        let otel = cx.span();
        if otel.is_recording() {
            otel.update_name(Cow::Borrowed(head.span_name()));
            otel.set_attributes(head.attributes(req));
        }
        Self {
            cx,
            bridge: Some(span),
        }
    }

    /// Whether the span was started with the OpenTelemetry API (not through a `tracing` span).
    pub(crate) fn is_direct(&self) -> bool {
        self.bridge.is_none()
    }

    /// The context of the span, for `traceparent` in the response.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// The `tracing` span it was started through, when bridged.
    pub(crate) fn bridge(&self) -> Option<&tracing::Span> {
        self.bridge.as_ref()
    }

    /// Makes the span current until the returned scope is dropped.
    pub(crate) fn enter(&self) -> Scope<'_> {
        match &self.bridge {
            Some(span) => Scope {
                _direct: None,
                _bridged: Some(span.enter()),
            },
            None => Scope {
                _direct: Some(self.cx.clone().attach()),
                _bridged: None,
            },
        }
    }

    pub(crate) fn is_recording(&self) -> bool {
        self.cx.span().is_recording()
    }

    /// Sets attributes in one go (one lock of the span).
    pub(crate) fn set_attributes(&self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.cx.span().set_attributes(attributes);
    }

    pub(crate) fn set_error(&self, description: impl Into<Cow<'static, str>>) {
        self.cx.span().set_status(Status::error(description));
    }

    /// Ends the span now (a bridged one ends when its `tracing` span closes).
    pub(crate) fn end(self) {
        if self.bridge.is_none() {
            self.cx.span().end();
        }
    }
}

/// `error.type` of a 5xx response: its code.
pub(crate) fn status_error_type(status: http::StatusCode) -> Value {
    Value::from(status.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hosts() {
        assert_eq!(split_host("example.com:8080"), ("example.com", Some(8080)));
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(split_host("[::1]:3000"), ("::1", Some(3000)));
        assert_eq!(split_host("::1"), ("::1", None));
    }

    #[test]
    fn recent_values_are_reused_only_when_equal() {
        let mut recent = Recent::EMPTY;
        let first = Recent::text(&mut recent.host, "a.example.com");
        let again = Recent::text(&mut recent.host, "a.example.com");
        let other = Recent::text(&mut recent.host, "b.example.com");
        assert_eq!(first.as_str(), "a.example.com");
        assert_eq!(again.as_str(), "a.example.com");
        assert_eq!(other.as_str(), "b.example.com");
        assert_eq!(recent.host.as_deref(), Some("b.example.com"));
        let long = "x".repeat(RECENT_MAX + 1);
        assert_eq!(Recent::text(&mut recent.agent, &long).as_str(), long);
        assert!(recent.agent.is_none(), "a long value is not kept");
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(recent.client(v4).as_str(), "10.0.0.1");
        assert_eq!(recent.client(v4).as_str(), "10.0.0.1");
        assert_eq!(recent.client(v6).as_str(), "::1");
    }

    #[test]
    fn protocol_versions() {
        assert_eq!(protocol_version(Version::HTTP_11), "1.1");
        assert_eq!(protocol_version(Version::HTTP_2), "2");
    }
}
