//! Tenant identity for multi-tenant Axum APIs.
//!
//! Which tenant does a request belong to? This crate answers it once, at the edge of the app:
//!
//! - [`TenantId`]: a validated id (by default a DNS label: 1-63 of `[a-z0-9_-]`), parsed without
//!   ever panicking, safe to put in keys, paths and SQL identifiers.
//! - [Resolvers](resolve): the tenant named by a [header](HeaderResolver), a
//!   [subdomain](HostResolver), a [path prefix](PathResolver) or a [JWT claim](JwtResolver),
//!   chained so that they must agree; a JWT resolver is the chain's authority, which the other
//!   sources may only narrow. The module docs say which are safe on the open internet.
//! - A [`TenantDirectory`] ([`StaticDirectory`], [`PgDirectory`] on the `tenants` table) behind a
//!   [`CachedDirectory`] (moka; unknown ids cached briefly and boundedly; one query per id however
//!   many requests ask at once; every query timed out).
//! - [`TenantLayer`] puts the [`Tenant`] into the request extensions; the `Tenant` and
//!   `Option<Tenant>` extractors take it out; [`RequireFeatureLayer`] gates routes on a
//!   subscription feature.
//! - Every refusal is a typed [`TenantRejection`] answered as RFC 9457
//!   `application/problem+json`, without internals.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use parapet_tenant::{StaticDirectory, Tenant, TenantId, TenantLayer, TenantRecord};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let directory = StaticDirectory::new()
//!     .tenant(TenantRecord::new(TenantId::parse("acme").unwrap()).plan("pro"));
//!
//! let app = Router::new()
//!     .route("/plan", get(|tenant: Tenant| async move { tenant.plan().to_owned() }))
//!     .layer(TenantLayer::new(directory)); // reads `x-tenant-id`
//!
//! let req = http::Request::get("/plan").header("x-tenant-id", "acme").body(axum::body::Body::empty()).unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//!
//! let req = http::Request::get("/plan").header("x-tenant-id", "../etc").body(axum::body::Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 400);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! # }
//! ```

pub mod directory;
mod extract;
mod feature;
mod id;
mod layer;
pub mod problem;
mod rejection;
pub mod resolve;
mod slot;
mod tenant;

pub use directory::{
    BoxFuture, CacheStats, CachedDirectory, CachedDirectoryBuilder, DirectoryError,
    StaticDirectory, TenantDirectory,
};
#[cfg(feature = "postgres")]
pub use directory::{PgDirectory, PgDirectoryError};
pub use feature::{FeatureFuture, RequireFeature, RequireFeatureLayer};
pub use id::{TenantId, TenantIdError, TenantIdRule};
pub use layer::{ResponseFuture, TenantLayer, TenantLayerBuilder, TenantService};
pub use rejection::{MalformedReason, TenantRejection, TokenError};
pub use resolve::{
    HeaderResolver, HostResolver, PathResolver, RequestHead, ResolveTenant, ResolvedId,
    ResolverChain,
};
#[cfg(feature = "jwt")]
pub use resolve::{JwtConfigError, JwtResolver};
pub use slot::TenantSlot;
pub use tenant::{DatabaseTarget, Features, Tenant, TenantRecord, TenantStatus};
