//! [`TelemetryLayer`]: one OpenTelemetry server span and the HTTP metrics for every request.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use axum::extract::MatchedPath;
use http::{Request, Response, request::Parts};
use opentelemetry::{KeyValue, metrics::Meter};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    fields::recorded_tenant,
    metrics::Instruments,
    propagation,
    span::{TARGET, method_name, request_span},
};

type Filter = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Opens one OpenTelemetry server span per request and records the HTTP server metrics.
///
/// The span is named `{METHOD} {route}` from axum's [`MatchedPath`] (the method alone when no
/// route matched), carries the stable HTTP attributes of the semantic conventions, continues the
/// trace of an incoming W3C `traceparent`, and is marked as an error on 5xx responses and service
/// errors. It declares empty `tenant.id` and `cache.status` fields that parapet's inner layers fill
/// in. Add it with [`Router::layer`](axum::Router::layer) so the route is known.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use parapet_telemetry::TelemetryLayer;
///
/// let app: Router = Router::new()
///     .route("/leads/{id}", get(|| async { "lead" }))
///     .route("/healthz", get(|| async { "ok" }))
///     .layer(
///         TelemetryLayer::new()
///             .filter(|req| req.uri.path() != "/healthz")
///             .traceparent_in_response(true)
///             .slow_request_threshold(Duration::from_millis(500)),
///     );
/// ```
#[derive(Clone)]
#[must_use]
pub struct TelemetryLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    filter: Option<Filter>,
    traceparent_in_response: bool,
    metrics: bool,
    meter: Option<Meter>,
    slow_threshold: Option<Duration>,
    instruments: Arc<OnceLock<Instruments>>,
}

impl Default for TelemetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TelemetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryLayer")
            .field(
                "filter",
                &self.config.filter.as_ref().map(|_| "Fn(&Parts) -> bool"),
            )
            .field(
                "traceparent_in_response",
                &self.config.traceparent_in_response,
            )
            .field("metrics", &self.config.metrics)
            .field("slow_threshold", &self.config.slow_threshold)
            .finish_non_exhaustive()
    }
}

impl TelemetryLayer {
    /// Spans and metrics for every request; a request slower than 1 s is a WARN.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                filter: None,
                traceparent_in_response: false,
                metrics: true,
                meter: None,
                slow_threshold: Some(Duration::from_secs(1)),
                instruments: Arc::new(OnceLock::new()),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Traces only the requests for which `filter` returns `true` (for example, everything but
    /// `/healthz`). Requests filtered out get neither a span nor metrics.
    pub fn filter<F>(self, filter: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.edit(|c| c.filter = Some(Arc::new(filter)))
    }

    /// Adds a W3C `traceparent` header naming the request's span to every response (off by
    /// default), so a client can look the trace up.
    pub fn traceparent_in_response(self, enabled: bool) -> Self {
        self.edit(|c| c.traceparent_in_response = enabled)
    }

    /// Records `http.server.request.duration` and `http.server.active_requests` (on by default).
    pub fn metrics(self, enabled: bool) -> Self {
        self.edit(|c| c.metrics = enabled)
    }

    /// The meter the instruments come from; by default the global meter provider's
    /// `parapet-telemetry` meter, taken at the first request.
    pub fn meter(self, meter: Meter) -> Self {
        self.edit(|c| {
            c.meter = Some(meter);
            c.instruments = Arc::new(OnceLock::new());
        })
    }

    /// Requests slower than `threshold` emit a WARN event on their span with the route, the
    /// tenant and the duration (1 s by default).
    pub fn slow_request_threshold(self, threshold: Duration) -> Self {
        self.edit(|c| c.slow_threshold = Some(threshold))
    }

    /// Never warns about slow requests.
    pub fn no_slow_request_warning(self) -> Self {
        self.edit(|c| c.slow_threshold = None)
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Telemetry {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service built by [`TelemetryLayer`].
#[derive(Clone)]
pub struct Telemetry<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for Telemetry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Telemetry<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Telemetry<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let req = match &self.config.filter {
            Some(filter) => {
                let (parts, body) = req.into_parts();
                if !filter(&parts) {
                    let req = Request::from_parts(parts, body);
                    return ResponseFuture {
                        inner: self.inner.call(req),
                        state: None,
                    };
                }
                Request::from_parts(parts, body)
            }
            None => req,
        };
        let start = Instant::now();
        let method = method_name(req.method());
        let scheme = req.uri().scheme_str().map_or("http", |s| {
            if s.eq_ignore_ascii_case("https") {
                "https"
            } else {
                "http"
            }
        });
        let route = req.extensions().get::<MatchedPath>().cloned();
        let span = request_span(&req, method, scheme, route.as_ref());
        if let Some(parent) = propagation::extract_parent(req.headers()) {
            // Only fails when no OpenTelemetry layer is installed: there is nothing to parent then.
            let _ = span.set_parent(parent);
        }
        let metrics = self.config.metrics.then(|| {
            let instruments =
                self.config
                    .instruments
                    .get_or_init(|| {
                        let meter =
                            self.config.meter.clone().unwrap_or_else(|| {
                                opentelemetry::global::meter("parapet-telemetry")
                            });
                        Instruments::new(&meter)
                    })
                    .clone();
            let active = Instruments::active_attributes(method, scheme);
            instruments.started(&active);
            (instruments, active)
        });
        let inner = span.in_scope(|| self.inner.call(req));
        ResponseFuture {
            inner,
            state: Some(State {
                span,
                start,
                route,
                metrics,
                config: self.config.clone(),
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Telemetry`]: closes the span and records the metrics.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<State>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("traced", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

struct State {
    span: Span,
    start: Instant,
    route: Option<MatchedPath>,
    metrics: Option<(Instruments, [KeyValue; 2])>,
    config: Arc<Config>,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = this.state.as_ref().map(|state| state.span.enter());
        let mut result = ready!(this.inner.poll(cx));
        drop(entered);
        if let Some(mut state) = this.state.take() {
            state.finish(&mut result);
        }
        Poll::Ready(result)
    }
}

impl State {
    fn finish<B, E: fmt::Display>(&mut self, result: &mut Result<Response<B>, E>) {
        let elapsed = self.start.elapsed();
        let span = &self.span;
        let (status, error_type) = match result {
            Ok(response) => {
                let status = response.status();
                span.record("http.response.status_code", i64::from(status.as_u16()));
                if self.config.traceparent_in_response {
                    propagation::inject(&span.context(), response.headers_mut());
                }
                if status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", status.as_str());
                    (Some(status.as_u16()), Some(status.as_str().to_owned()))
                } else {
                    (Some(status.as_u16()), None)
                }
            }
            Err(error) => {
                let error_type = std::any::type_name::<E>();
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", error.to_string());
                span.record("error.type", error_type);
                (None, Some(error_type.to_owned()))
            }
        };
        let route = self.route.as_ref().map(MatchedPath::as_str);
        if let Some((instruments, active)) = self.metrics.take() {
            let seconds = elapsed.as_secs_f64();
            instruments.finished(&active, seconds, status, route, error_type.as_deref());
        }
        if self.config.slow_threshold.is_some_and(|t| elapsed >= t) {
            let tenant = recorded_tenant(span);
            let route = route.unwrap_or("-");
            let tenant = tenant.as_deref().unwrap_or("-");
            let duration_ms = elapsed.as_secs_f64() * 1000.0;
            tracing::event!(
                target: TARGET,
                parent: span,
                tracing::Level::WARN,
                { "http.route" = route, "tenant.id" = tenant, duration_ms },
                "slow request"
            );
        }
    }
}

/// A request whose future is dropped before it completes (the client went away) still leaves
/// `http.server.active_requests`.
impl Drop for State {
    fn drop(&mut self) {
        if let Some((instruments, active)) = self.metrics.take() {
            instruments.cancelled(&active);
        }
    }
}
