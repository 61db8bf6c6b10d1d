//! Per-tenant rate limits for multi-tenant Axum APIs.
//!
//! [`QuotaLayer`] sits after `parapet_tenant::TenantLayer` (it reads the [`Tenant`] the tenant
//! layer put in the request extensions) and before the cache:
//!
//! - **Rules by plan.** Each tenant gets the [`Rule`] of its record's plan (`free`, `pro`, …),
//!   or its own override, or the default (unlimited unless set). A [`Rate`] is
//!   `count/period:burst` (`20/s:40`), enforced with GCRA: one number per tenant, a burst at
//!   once, then one request per interval.
//! - **Shared through Redis.** With [`redis`](QuotaLayerBuilder::redis), every instance
//!   charges the same key (`parapet:quota:{<tenant>}`, a hash tag: one slot per tenant on a
//!   Cluster) with one Lua script in one round trip, on Redis's clock. The connection is
//!   parapet-cache's (single server, Cluster, Sentinel, TLS) with its time budget (50 ms by
//!   default) and breaker; when Redis does not answer, each instance decides alone with its
//!   local limiter, and [`QuotaStats::shared`] says the limit is per instance until Redis is
//!   back.
//! - **429 with the draft's fields.** A refused request gets `429 Too Many Requests`,
//!   `application/problem+json` (`urn:parapet:problem:quota-exceeded`), `Retry-After`, and
//!   the `RateLimit-Policy` / `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers
//!   (`"free";q=40;w=2`, `"free";r=0;t=2`), which every allowed response carries too.
//! - **Cache hits cost less.** A request is charged as a whole one before it is answered;
//!   when parapet's cache answered it (`Cache-Status: parapet; hit`), the layer gives back
//!   all but [`hit_cost`](QuotaLayerBuilder::hit_cost) of it (default: a hit costs 0.1).
//!   A tenant over its limit is refused even for what the cache holds: the decision comes
//!   first.
//! - **Refusal pacing, when asked.** With [`refusal_delay`](QuotaLayerBuilder::refusal_delay),
//!   a refusal is answered that much later (a bounded number at once): a client that retries
//!   as soon as it is answered is slowed to one attempt per delay on each connection, and a
//!   flood's refusals stop taking the CPU the other tenants need.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use parapet_quota::{QuotaLayer, Rate};
//! use parapet_tenant::{StaticDirectory, TenantId, TenantLayer, TenantRecord};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let quota = QuotaLayer::builder()
//!     .plan("free", Rate::per_second(20).burst(2))
//!     .plan("pro", "200/s:400".parse::<Rate>()?)
//!     .build()?;
//! let directory = StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("globex")?));
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(quota.clone()) // inner: runs after the tenant layer
//!     .layer(TenantLayer::new(directory));
//!
//! let get = || http::Request::get("/").header("x-tenant-id", "globex").body(axum::body::Body::empty());
//! for _ in 0..2 {
//!     let res = app.clone().oneshot(get()?).await?;
//!     assert_eq!(res.status(), 200);
//!     assert_eq!(res.headers()["ratelimit-policy"], "\"free\";q=2;w=1");
//! }
//! let refused = app.oneshot(get()?).await?;
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! assert_eq!(refused.headers()["ratelimit"], "\"free\";r=0;t=1");
//! assert_eq!(quota.stats().throttled, 1);
//! # Ok(())
//! # }
//! ```
//!
//! [`Tenant`]: parapet_tenant::Tenant

mod gcra;
mod hold;
mod layer;
mod local;
mod policy;
mod rate;
mod refusal;
mod service;
mod shared;
mod stats;

pub use layer::{
    BuildError, DEFAULT_HIT_COST, DEFAULT_MAX_HELD, DEFAULT_PREFIX, QuotaLayer, QuotaLayerBuilder,
};
pub use policy::{RATELIMIT, RATELIMIT_POLICY};
pub use rate::{Part, Rate, RateError, Rule};
pub use service::{QuotaService, ResponseFuture};
pub use stats::QuotaStats;
