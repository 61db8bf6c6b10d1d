//! Per-tenant PostgreSQL pools for Axum, bounded as a whole and isolated per checkout.
//!
//! - [`TenantPools`]: pools keyed by **database target**, not by tenant. Tenants in the shared
//!   database share one pool; a tenant whose directory record names its own database gets its own
//!   pool. Connections per pool, the number of pools, and the connections of all pools together
//!   (a budget below the server's `max_connections`) are bounded; so is every wait.
//! - [`Isolation`]: row-level security, schema per tenant, or database per tenant. Nothing set
//!   for one checkout reaches the next (`ROLLBACK; RESET ALL` when a [`Db`] is dropped).
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

mod budget;
mod builder;
mod db;
mod error;
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
pub use pools::{PoolsStatus, ServerStatus, TargetStatus, TenantPools};
