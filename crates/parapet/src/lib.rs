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
//! use parapet::tenant::{HeaderResolver, HostResolver, PgDirectory};
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
//!         TenantLayer::builder(PgDirectory::connect(url)?)
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

pub use env::{ConfigError, EnvConfig, Share};
pub use ext::ServiceBuilderExt;
pub use stack::{Maybe, MaybeFuture, Parapet, ParapetBuilder, ParapetService};

/// The response cache (re-export of `parapet-cache`).
pub use parapet_cache as cache;
/// Per-tenant PostgreSQL pools (re-export of `parapet-pool`).
pub use parapet_pool as pool;
/// PostgreSQL connection strings with libpq's TLS parameters (re-export of `parapet-postgres`).
pub use parapet_postgres as postgres;
/// Per-tenant rate limits (re-export of `parapet-quota`).
pub use parapet_quota as quota;
/// The telemetry layer and its setup (re-export of `parapet-telemetry`).
pub use parapet_telemetry as telemetry;
/// Tenant resolution and the tenant directory (re-export of `parapet-tenant`).
pub use parapet_tenant as tenant;

pub use parapet_cache::{CacheHandle, CacheLayer};
pub use parapet_pool::{Db, DbError, PoolLayer, TenantPools};
pub use parapet_quota::QuotaLayer;
pub use parapet_telemetry::TelemetryLayer;
pub use parapet_tenant::{Tenant, TenantId, TenantLayer};
