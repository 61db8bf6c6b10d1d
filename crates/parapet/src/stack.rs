//! [`Parapet`], the whole stack as one layer, and its builder; and the optional-layer plumbing
//! behind it: a layer that is configured wraps the service, one that is not passes the request
//! straight through, and both answer with the same response type so the stack has one concrete
//! type whatever is configured.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use parapet_cache::{CacheHandle, CacheLayer};
use parapet_pool::{PoolLayer, TenantPools};
use parapet_quota::QuotaLayer;
use parapet_telemetry::TelemetryLayer;
use parapet_tenant::TenantLayer;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{ConfigError, EnvConfig, telemetry};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The whole stack as one layer: telemetry → tenant → quota → cache → pool, outermost first.
///
/// Build it with [`Parapet::builder`] or [`Parapet::from_env`], then add it with
/// `Router::layer` or `ServiceBuilder::layer`. Cloning is cheap (every layer shares its state),
/// and the handles ([`pools`](Self::pools), [`cache`](Self::cache)) serve readiness checks,
/// admin purges and metrics.
#[derive(Clone, Default)]
#[must_use]
pub struct Parapet {
    telemetry: Option<TelemetryLayer>,
    tenant: Option<TenantLayer>,
    quota: Option<QuotaLayer>,
    cache: Option<CacheLayer>,
    pools: Option<TenantPools>,
}

impl fmt::Debug for Parapet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parapet")
            .field("telemetry", &self.telemetry.is_some())
            .field("tenant", &self.tenant.is_some())
            .field("quota", &self.quota.is_some())
            .field("cache", &self.cache.is_some())
            .field("pool", &self.pools.is_some())
            .finish()
    }
}

impl Parapet {
    /// Starts an empty stack; add the layers you want.
    pub fn builder() -> ParapetBuilder {
        ParapetBuilder::default()
    }

    /// Builds the stack from the process environment (see [`EnvConfig`] for the variables).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a variable does not parse, or when a pool or Redis URL is invalid.
    /// PostgreSQL or Redis being down is not an error here: the stack starts and answers 503
    /// (PostgreSQL) or serves from its local tier (Redis) until they are back.
    pub async fn from_env() -> Result<Self, ConfigError> {
        EnvConfig::from_env()?.build().await
    }

    /// The pools, when the pool layer is configured.
    pub fn pools(&self) -> Option<&TenantPools> {
        self.pools.as_ref()
    }

    /// A handle on the cache (purges, stats, the admin purge service), when the cache is
    /// configured.
    pub fn cache(&self) -> Option<CacheHandle> {
        self.cache.as_ref().map(CacheLayer::handle)
    }

    /// The tenant layer, when configured (its directory can be invalidated after a change).
    pub fn tenant(&self) -> Option<&TenantLayer> {
        self.tenant.as_ref()
    }

    /// The quota layer (its counters), when configured.
    pub fn quota(&self) -> Option<&QuotaLayer> {
        self.quota.as_ref()
    }

    /// The telemetry layer, when configured.
    pub fn telemetry(&self) -> Option<&TelemetryLayer> {
        self.telemetry.as_ref()
    }
}

/// Builds a [`Parapet`] stack. Every layer is optional; the order is fixed.
#[derive(Default)]
#[must_use]
pub struct ParapetBuilder {
    inner: Parapet,
}

impl fmt::Debug for ParapetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParapetBuilder").field(&self.inner).finish()
    }
}

impl ParapetBuilder {
    /// The outermost layer: spans and metrics.
    pub fn telemetry(mut self, layer: TelemetryLayer) -> Self {
        self.inner.telemetry = Some(layer);
        self
    }

    /// The tenant layer. Without it, neither the cache (unless single-tenant) nor the pool can
    /// tell tenants apart.
    pub fn tenant(mut self, layer: TenantLayer) -> Self {
        self.inner.tenant = Some(layer);
        self
    }

    /// Per-tenant rate limits, between the tenant layer and the cache.
    pub fn quota(mut self, layer: QuotaLayer) -> Self {
        self.inner.quota = Some(layer);
        self
    }

    /// The response cache.
    pub fn cache(mut self, layer: CacheLayer) -> Self {
        self.inner.cache = Some(layer);
        self
    }

    /// The innermost layer: the pools the `Db` extractor checks out from.
    pub fn pools(mut self, pools: TenantPools) -> Self {
        self.inner.pools = Some(pools);
        self
    }

    /// The stack. With telemetry configured, the cache's counters and the pools' status are
    /// exported as metrics too (`parapet.cache.*`, `db.client.connection.*`,
    /// `parapet.pool.*`, `parapet.quota.*`) through the global meter provider: call
    /// [`telemetry::init`] before `build` so they reach the OTLP exporter.
    pub fn build(self) -> Parapet {
        if self.inner.telemetry.is_some() {
            let meter = opentelemetry::global::meter("parapet");
            if let Some(cache) = &self.inner.cache {
                telemetry::metrics::observe_cache(&meter, cache.handle());
            }
            if let Some(pools) = &self.inner.pools {
                telemetry::metrics::observe_pool(&meter, pools.clone());
            }
            if let Some(quota) = &self.inner.quota {
                telemetry::metrics::observe_quota(&meter, quota.clone());
            }
        }
        self.inner
    }
}

type PoolStage<S> = Maybe<parapet_pool::PoolService<S>, S>;
type CacheStage<S> = Maybe<parapet_cache::CacheService<PoolStage<S>>, PoolStage<S>>;
type QuotaStage<S> = Maybe<parapet_quota::QuotaService<CacheStage<S>>, CacheStage<S>>;
type TenantStage<S> = Maybe<parapet_tenant::TenantService<QuotaStage<S>>, QuotaStage<S>>;

/// The service [`Parapet`] builds around `S`; its response body is `axum::body::Body`.
pub type ParapetService<S> = Maybe<parapet_telemetry::Telemetry<TenantStage<S>>, TenantStage<S>>;

impl<S> Layer<S> for Parapet {
    type Service = ParapetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        fn stage<L: Layer<S>, S>(layer: Option<&L>, inner: S) -> Maybe<L::Service, S> {
            match layer {
                Some(layer) => Maybe::On(layer.layer(inner)),
                None => Maybe::Off(inner),
            }
        }
        // The pool layer is a handle on the pools: made here, it costs one `Arc` clone.
        let pool_layer = self.pools.clone().map(PoolLayer::new);
        let pool = stage(pool_layer.as_ref(), inner);
        let cache = stage(self.cache.as_ref(), pool);
        let quota = stage(self.quota.as_ref(), cache);
        let tenant = stage(self.tenant.as_ref(), quota);
        stage(self.telemetry.as_ref(), tenant)
    }
}

/// A service that is either wrapped by a configured layer (`On`) or the inner service itself
/// (`Off`). Responses of both are `Response<axum::body::Body>`.
#[derive(Debug, Clone)]
pub enum Maybe<A, B> {
    /// The layer is configured and wraps the inner service.
    On(A),
    /// The layer is not configured: requests go straight to the inner service.
    Off(B),
}

impl<A, B, ReqBody, BodyA, BodyB, E> Service<Request<ReqBody>> for Maybe<A, B>
where
    A: Service<Request<ReqBody>, Response = Response<BodyA>, Error = E>,
    B: Service<Request<ReqBody>, Response = Response<BodyB>, Error = E>,
    BodyA: http_body::Body<Data = Bytes> + Send + 'static,
    BodyA::Error: Into<BoxError>,
    BodyB: http_body::Body<Data = Bytes> + Send + 'static,
    BodyB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = E;
    type Future = MaybeFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        match self {
            Self::On(a) => a.poll_ready(cx),
            Self::Off(b) => b.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self {
            Self::On(a) => MaybeFuture {
                inner: Inner::On { fut: a.call(req) },
            },
            Self::Off(b) => MaybeFuture {
                inner: Inner::Off { fut: b.call(req) },
            },
        }
    }
}

pin_project! {
    /// The response future of [`Maybe`].
    #[derive(Debug)]
    pub struct MaybeFuture<FA, FB> {
        #[pin]
        inner: Inner<FA, FB>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<FA, FB> {
        On { #[pin] fut: FA },
        Off { #[pin] fut: FB },
    }
}

impl<FA, FB, BodyA, BodyB, E> Future for MaybeFuture<FA, FB>
where
    FA: Future<Output = Result<Response<BodyA>, E>>,
    FB: Future<Output = Result<Response<BodyB>, E>>,
    BodyA: http_body::Body<Data = Bytes> + Send + 'static,
    BodyA::Error: Into<BoxError>,
    BodyB: http_body::Body<Data = Bytes> + Send + 'static,
    BodyB::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Body::new` does not box a body that already is an axum `Body`.
        Poll::Ready(match self.project().inner.project() {
            InnerProj::On { fut } => ready!(fut.poll(cx)).map(|r| r.map(Body::new)),
            InnerProj::Off { fut } => ready!(fut.poll(cx)).map(|r| r.map(Body::new)),
        })
    }
}
