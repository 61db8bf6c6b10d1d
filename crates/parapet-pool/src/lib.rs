//! Per-tenant PostgreSQL pools for Axum, bounded per database server and isolated per checkout.
//!
//! - [`TenantPools`]: pools keyed by **database target**, not by tenant. Tenants in the shared
//!   database share one pool; a tenant whose directory record names its own database gets its own
//!   pool. Connections per pool, the number of pools, and the connections of all pools together
//!   to one database server (a budget per `host:port` below its `max_connections`, divided across
//!   the application's replicas) are bounded; so is every wait.
//! - Fair shares: in the shared database's pool a tenant holds at most its share of the
//!   connections ([`TenantPoolsBuilder::tenant_share`], default `max(2, max_per_pool / 4)`),
//!   and checkouts that wait are served one tenant at a time in turn, so one busy tenant can
//!   neither take the whole pool nor make the others queue behind it.
//! - [`Isolation`]: row-level security, schema per tenant, or database per tenant, set for the
//!   session or for every transaction ([`IsolationScope`]; transaction scope behind
//!   PgBouncer, pgcat or Supavisor in transaction mode). Nothing set for one checkout reaches
//!   the next: in session scope the connection is reset when a [`Db`] is dropped.
//! - [`PoolLayer`] inserts a cheap handle; the [`Db`] extractor checks a connection out only when
//!   the handler asks for one, so a response served from cache never touches PostgreSQL.
//! - Every query through [`Db`] is a tracing span, and a slow one a WARN event.
//! - Errors a client sees: 503 `application/problem+json` with `Retry-After` when the pool is
//!   exhausted or the database is down (within the wait timeout), a generic 500 for
//!   configuration errors; details go to the log.
//!
//! Why not one pool per tenant: with deadpool's usual 20 connections each, five tenants reach
//! PostgreSQL's default `max_connections = 100`, and deadpool has no limit across pools, no idle
//! timeout and no wait timeout by default.
//!
//! ```no_run
//! use parapet_pool::{IsolationScope, TenantPools};
//!
//! # async fn run() -> Result<(), parapet_pool::PoolError> {
//! // Three replicas of the app behind PgBouncer in transaction mode.
//! let pools = TenantPools::builder("postgres://app@pgbouncer:6432/crm")
//!     .scope(IsolationScope::Transaction)
//!     .replicas(3)
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```

mod budget;
mod builder;
mod db;
mod error;
mod fair;
mod isolation;
mod layer;
mod manager;
mod pools;
mod query;
mod session;

pub use builder::TenantPoolsBuilder;
pub use db::{Db, DbTransaction};
pub use error::{DbError, DbRejection, PoolError};
pub use isolation::{Isolation, IsolationScope};
pub use layer::{PoolHandle, PoolLayer, PoolService};
pub use pools::{PoolsStatus, ServerStatus, TargetStatus, TenantPools, TenantUsage};
