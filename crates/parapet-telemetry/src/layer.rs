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
use opentelemetry::{KeyValue, Value, metrics::Meter};
use opentelemetry_semantic_conventions::attribute;
use parapet_tenant::TenantSlot;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    fields::recorded_tenant,
    metrics::{ActiveKey, Instruments},
    propagation,
    route::{KnownMethod, Route, RouteCache},
    span::{self, RequestHead, ServerSpan, TARGET},
};

const TENANT_ID: &str = "tenant.id";
const CACHE_STATUS: &str = "cache.status";

type Filter = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Opens one OpenTelemetry server span per request and records the HTTP server metrics.
///
/// The span is named `{METHOD} {route}` from axum's [`MatchedPath`] (the method alone when no
/// route matched), carries the stable HTTP attributes of the semantic conventions, continues the
/// trace of an incoming W3C `traceparent`, and is marked as an error on 5xx responses and service
/// errors. It puts a [`TenantSlot`] into the request, which parapet-tenant's `TenantLayer` fills,
/// and sets `tenant.id` from it and `cache.status` from the response's last `Cache-Status` member.
/// Add it with [`Router::layer`](axum::Router::layer) so the route is known (each route's service
/// then keeps its interned span name).
///
/// Under the subscriber [`TelemetryBuilder`](crate::TelemetryBuilder) builds, the span is an
/// OpenTelemetry span made with its API, and its context is current while the request runs, so
/// `tracing` spans and events of the handler land in it. Under any other subscriber the span is a
/// `tracing` span, started through that subscriber's OpenTelemetry layer, declaring `tenant.id`
/// and `cache.status` for inner layers to record.
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

impl Config {
    /// The instruments, made from the meter on first use.
    fn instruments(&self) -> &Instruments {
        self.instruments.get_or_init(|| {
            let meter = self
                .meter
                .clone()
                .unwrap_or_else(|| opentelemetry::global::meter("parapet-telemetry"));
            Instruments::new(&meter)
        })
    }
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
            routes: Arc::new(RouteCache::default()),
        }
    }
}

/// The service built by [`TelemetryLayer`].
#[derive(Clone)]
pub struct Telemetry<S> {
    inner: S,
    config: Arc<Config>,
    /// `Router::layer` makes one service per route: its route, interned.
    routes: Arc<RouteCache>,
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if let Some(filter) = &self.config.filter {
            let (parts, body) = req.into_parts();
            let traced = filter(&parts);
            req = Request::from_parts(parts, body);
            if !traced {
                return ResponseFuture {
                    inner: self.inner.call(req),
                    state: None,
                };
            }
        }
        let start = Instant::now();
        let method = KnownMethod::of(req.method());
        let scheme = req.uri().scheme_str().map_or("http", |s| {
            if s.eq_ignore_ascii_case("https") {
                "https"
            } else {
                "http"
            }
        });
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|path| self.routes.get(path.as_str()));
        let head = RequestHead {
            method,
            scheme,
            route,
        };
        let span = ServerSpan::start(&req, &head, propagation::extract_parent(req.headers()));
        let metrics = self.config.metrics.then(|| {
            let key = ActiveKey::new(method, scheme);
            self.config.instruments().started(key);
            key
        });
        let tenant = TenantSlot::new();
        req.extensions_mut().insert(tenant.clone());
        let inner = {
            let _scope = span.enter();
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            state: Some(State {
                span: Some(span),
                start,
                route,
                tenant,
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
    /// `None` once ended.
    span: Option<ServerSpan>,
    start: Instant,
    route: Option<&'static Route>,
    tenant: TenantSlot,
    metrics: Option<ActiveKey>,
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
        let scope = this
            .state
            .as_ref()
            .and_then(|state| state.span.as_ref())
            .map(ServerSpan::enter);
        let mut result = ready!(this.inner.poll(cx));
        drop(scope);
        if let Some(mut state) = this.state.take() {
            state.finish(&mut result);
        }
        Poll::Ready(result)
    }
}

impl State {
    fn finish<B, E: fmt::Display>(&mut self, result: &mut Result<Response<B>, E>) {
        let elapsed = self.start.elapsed();
        let Some(span) = self.span.take() else {
            return;
        };
        let recording = span.is_recording();
        let tenant = self.tenant.get();
        let (status, service_error) = match result {
            Ok(response) => {
                let status = response.status();
                let error_type = status
                    .is_server_error()
                    .then(|| span::status_error_type(status));
                if recording {
                    // A bridged span got `tenant.id` and `cache.status` through `tracing`.
                    let direct = span.is_direct();
                    let cache_status = direct.then(|| cache_status(response.headers())).flatten();
                    span.set_attributes(
                        [
                            Some(KeyValue::new(
                                attribute::HTTP_RESPONSE_STATUS_CODE,
                                i64::from(status.as_u16()),
                            )),
                            error_type
                                .clone()
                                .map(|e| KeyValue::new(attribute::ERROR_TYPE, e)),
                            tenant.filter(|_| direct).map(|t| {
                                KeyValue::new(TENANT_ID, Value::from(Arc::<str>::from(t.clone())))
                            }),
                            cache_status.map(|c| KeyValue::new(CACHE_STATUS, c)),
                        ]
                        .into_iter()
                        .flatten(),
                    );
                }
                if status.is_server_error() {
                    span.set_error("");
                }
                if self.config.traceparent_in_response {
                    propagation::inject(span.context(), response.headers_mut());
                }
                (Some(status.as_u16()), None)
            }
            Err(error) => {
                let error_type = std::any::type_name::<E>();
                span.set_error(error.to_string());
                if recording {
                    span.set_attributes([KeyValue::new(attribute::ERROR_TYPE, error_type)]);
                }
                (None, Some(error_type))
            }
        };
        let route = self.route.map(Route::path);
        if let Some(key) = self.metrics.take() {
            let seconds = elapsed.as_secs_f64();
            self.config
                .instruments()
                .finished(key, seconds, status, route, service_error);
        }
        if self.config.slow_threshold.is_some_and(|t| elapsed >= t) {
            let recorded;
            let tenant = match tenant {
                Some(tenant) => tenant.as_str(),
                None => {
                    recorded = span.bridge().and_then(recorded_tenant);
                    recorded.as_deref().unwrap_or("-")
                }
            };
            let route = route.unwrap_or("-");
            let duration_ms = elapsed.as_secs_f64() * 1000.0;
            // A bridged span takes the event as its child; a direct one is current while the
            // event is emitted, and `ServerTracer` adds it to the span.
            match span.bridge() {
                Some(parent) => tracing::event!(
                    target: TARGET,
                    parent: parent,
                    tracing::Level::WARN,
                    { "http.route" = route, "tenant.id" = tenant, duration_ms },
                    "slow request"
                ),
                None => {
                    let _scope = span.enter();
                    tracing::event!(
                        target: TARGET,
                        tracing::Level::WARN,
                        { "http.route" = route, "tenant.id" = tenant, duration_ms },
                        "slow request"
                    );
                }
            }
        }
        span.end();
    }
}

/// `cache.status` of a direct span: the last `Cache-Status` member, the one of the cache closest
/// to the client (RFC 9211 §2), which is parapet's cache when it ran.
fn cache_status(headers: &http::HeaderMap) -> Option<Value> {
    let last = headers.get_all("cache-status").iter().next_back()?;
    let text = last.to_str().ok()?;
    Some(span::cache_status_value(text))
}

/// A request whose future is dropped before it completes (the client went away) still leaves
/// `http.server.active_requests`, and its span still ends.
impl Drop for State {
    fn drop(&mut self) {
        if let Some(key) = self.metrics.take() {
            self.config.instruments().cancelled(key);
        }
        if let Some(span) = self.span.take() {
            span.end();
        }
    }
}
