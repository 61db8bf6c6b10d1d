//! HTTP response caching for multi-tenant Axum APIs.
//!
//! [`CacheLayer`] is a Tower layer that behaves as an RFC 9111 shared cache in front of your
//! handlers, following the pure rules of [`policy`]:
//!
//! - **Tenant-scoped keys.** Every key carries the tenant from the request extensions (put
//!   there by `parapet_tenant::TenantLayer`), length-prefixed so no two tenants can share a
//!   key. Without a tenant, requests pass through uncached
//!   (`Cache-Status: parapet; fwd=bypass; detail=no-tenant`) unless the layer was built with
//!   [`single_tenant`](CacheLayerBuilder::single_tenant).
//! - **Tiers.** A local moka tier bounded in bytes ([`MemoryStore`]), Redis ([`RedisStore`]: one
//!   server, or a Redis Cluster with [`RedisConfig::cluster`]; failing open behind a time budget
//!   and a breaker), or the first in front of the second ([`TieredStore`]).
//! - **HTTP semantics.** Freshness, `Age`, `Vary` (with `Vary: *` never stored, request fields
//!   normalised as [`policy::variant`] says), conditional requests answered with 304,
//!   revalidation of stale and `no-cache` entries (carrying the variant's `Vary`'d fields),
//!   `stale-while-revalidate` (one background refresh per key) and `stale-if-error`,
//!   invalidation after unsafe methods, RFC 9213 targeted fields (`CDN-Cache-Control` by
//!   default, see [`targeted_fields`](CacheLayerBuilder::targeted_fields)).
//! - **Coalescing.** Concurrent misses on one key make one call to the inner service, even when
//!   the first request's client goes away before the response arrives.
//! - **Limits.** Bodies above [`max_body_size`](CacheLayerBuilder::max_body_size) stream
//!   through and are not stored.
//! - **Purges.** [`CacheHandle`] purges by URI, tag (`Cache-Tag` / `Surrogate-Key`) or
//!   tenant, on every instance's local tier (Redis pub/sub); [`PurgeService`] exposes that
//!   behind a bearer token. Every purge uses single-key commands (safe on Redis Cluster); a
//!   tenant purge is O(1): it bumps the tenant's generation, which is part of every key. A
//!   delete Redis does not confirm leaves a tombstone (the old copy is not served) and is
//!   retried until it lands.
//! - **Observability.** A `Cache-Status` header (RFC 9211) on every response, and
//!   [`CacheLayer::stats`].
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::{Request, header};
//! use http_body_util::BodyExt;
//! use parapet_cache::CacheLayer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache = CacheLayer::builder()
//!     .local(32 * 1024 * 1024) // the local tier only: 32 MiB
//!     .single_tenant() // this example has no TenantLayer in front
//!     .build()?;
//! let app = Router::new()
//!     .route(
//!         "/hello",
//!         get(|| async { ([(header::CACHE_CONTROL, "max-age=60")], "hello") }),
//!     )
//!     .layer(cache.clone());
//!
//! let first = app.clone().oneshot(Request::get("/hello").body(axum::body::Body::empty())?).await?;
//! let status = first.headers()["cache-status"].to_str()?;
//! assert!(status.starts_with("parapet; fwd=uri-miss; fwd-status=200; ttl="));
//! assert!(status.ends_with("; stored"));
//!
//! let second = app.oneshot(Request::get("/hello").body(axum::body::Body::empty())?).await?;
//! assert!(second.headers()["cache-status"].to_str()?.starts_with("parapet; hit; ttl="));
//! assert_eq!(second.headers()["age"], "0");
//! assert_eq!(second.into_body().collect().await?.to_bytes(), "hello");
//! assert_eq!(cache.stats().hits, 1);
//! # Ok(())
//! # }
//! ```

mod admin;
mod admit;
mod body;
mod coalesce;
mod encoding;
mod entry;
mod epoch;
mod exchange;
mod fill;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod key;
mod layer;
mod lookup;
pub mod policy;
mod range;
mod respond;
mod revalidate;
mod service;
mod shared;
mod soft;
mod stats;
mod status;
pub mod store;
mod tenant_stats;
mod upstream;

pub use admin::PurgeService;
pub use entry::{Entry, StoredValue, VaryMarker};
pub use handle::CacheHandle;
pub use key::{
    PrimaryKey, generation_key, normalize_path_and_query, soft_purge_key, tenant_prefix,
};
pub use layer::{BuildError, CacheLayer, CacheLayerBuilder};
pub use service::CacheService;
pub use stats::CacheStats;
pub use status::CACHE_STATUS;
pub use store::{MemoryStore, RedisConfig, RedisStore, Store, TenantBytes, TieredStore};
pub use tenant_stats::TenantRequests;
