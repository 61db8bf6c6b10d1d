//! parapet: composable Tower layers for multi-tenant Axum APIs.
//!
//! Four layers, each usable alone, re-exported here as modules:
//!
//! | module | layer | job |
//! |---|---|---|
//! | [`telemetry`] | [`TelemetryLayer`] | a server span `GET /route` and HTTP metrics per request, OTLP export |
//! | [`tenant`] | [`TenantLayer`] | which tenant a request belongs to, validated against a directory |
//! | [`cache`] | [`CacheLayer`] | RFC 9111 response cache: local moka tier in front of Redis, keys scoped by tenant |
//! | [`pool`] | [`PoolLayer`] | per-tenant PostgreSQL pools under one connection budget, and the [`Db`] extractor |
//!
//! [`Parapet`] stacks them in the one order that works, outermost first: **telemetry → tenant →
//! cache → pool**. Telemetry is outermost so that every request (a cache hit, a rejected tenant)
//! has a span; the tenant comes before the cache because every cache key carries it; the pool is
//! innermost so a cache hit never touches PostgreSQL.
//!
//! # Adding the stack to an existing `Router`
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use parapet::{CacheLayer, Db, DbError, Parapet, TelemetryLayer, TenantLayer, TenantPools};
//! use parapet::tenant::{HeaderResolver, HostResolver};
//!
//! async fn leads(db: Db) -> Result<Json<Vec<String>>, DbError> {
//!     // Row-level security confines the connection to the request's tenant.
//!     let rows = db.query("SELECT name FROM leads ORDER BY created_at DESC LIMIT 20", &[]).await?;
//!     Ok(Json(rows.iter().map(|r| r.get(0)).collect()))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let _telemetry = parapet::telemetry::init()?; // OTEL_* from the environment; flushes on drop
//! let url = "postgres://app@127.0.0.1:5432/crm";
//! let stack = Parapet::builder()
//!     .telemetry(TelemetryLayer::new().filter(|req| req.uri.path() != "/healthz"))
//!     .tenant(
//!         TenantLayer::builder(parapet::pg_directory(url)?)
//!             .resolver(HeaderResolver::new()) // X-Tenant-Id
//!             .resolver(HostResolver::new("example.com")) // {tenant}.example.com
//!             .build(),
//!     )
//!     .cache(CacheLayer::builder().local(64 << 20).build()?)
//!     .pools(TenantPools::builder(url).build().await?)
//!     .build();
//! let app: Router = Router::new().route("/api/leads", get(leads)).layer(stack);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Or configure everything from the environment with [`Parapet::from_env`]: `DATABASE_URL`,
//! `REDIS_URL` and the `PARAPET_*` variables listed on [`EnvConfig`]; `OTEL_*` are read by
//! [`telemetry::init`].
//!
//! Layers that are not configured are left out: a stack without Redis, or without a cache at
//! all, has the same type as the full one.

mod env;
mod ext;
mod stack;

use std::fmt;

use tower_layer::Layer;

pub use env::{ConfigError, EnvConfig, pg_directory};
pub use ext::ServiceBuilderExt;
pub use stack::{Maybe, MaybeFuture};

/// The response cache (re-export of `parapet-cache`).
pub use parapet_cache as cache;
/// Per-tenant PostgreSQL pools (re-export of `parapet-pool`).
pub use parapet_pool as pool;
/// The telemetry layer and its setup (re-export of `parapet-telemetry`).
pub use parapet_telemetry as telemetry;
/// Tenant resolution and the tenant directory (re-export of `parapet-tenant`).
pub use parapet_tenant as tenant;

pub use parapet_cache::{CacheHandle, CacheLayer};
pub use parapet_pool::{Db, DbError, PoolLayer, TenantPools};
pub use parapet_telemetry::TelemetryLayer;
pub use parapet_tenant::{Tenant, TenantId, TenantLayer};

/// The whole stack as one layer: telemetry → tenant → cache → pool, outermost first.
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
    cache: Option<CacheLayer>,
    pool: Option<PoolLayer>,
    pools: Option<TenantPools>,
}

impl fmt::Debug for Parapet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parapet")
            .field("telemetry", &self.telemetry.is_some())
            .field("tenant", &self.tenant.is_some())
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

    /// The response cache.
    pub fn cache(mut self, layer: CacheLayer) -> Self {
        self.inner.cache = Some(layer);
        self
    }

    /// The innermost layer: the pools the `Db` extractor checks out from.
    pub fn pools(mut self, pools: TenantPools) -> Self {
        self.inner.pool = Some(PoolLayer::new(pools.clone()));
        self.inner.pools = Some(pools);
        self
    }

    /// The stack. With telemetry configured, the cache's counters and the pools' status are
    /// exported as metrics too (`parapet.cache.*`, `db.client.connection.*`,
    /// `parapet.pool.*`) through the global meter provider: call
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
        }
        self.inner
    }
}

type PoolStage<S> = Maybe<parapet_pool::PoolService<S>, S>;
type CacheStage<S> = Maybe<parapet_cache::CacheService<PoolStage<S>>, PoolStage<S>>;
type TenantStage<S> = Maybe<parapet_tenant::TenantService<CacheStage<S>>, CacheStage<S>>;

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
        let pool = stage(self.pool.as_ref(), inner);
        let cache = stage(self.cache.as_ref(), pool);
        let tenant = stage(self.tenant.as_ref(), cache);
        stage(self.telemetry.as_ref(), tenant)
    }
}
