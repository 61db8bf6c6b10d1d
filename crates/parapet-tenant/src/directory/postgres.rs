//! [`PgDirectory`]: tenants read from the `tenants` and `tenant_subscriptions` tables.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::types::Type;

use super::{BoxFuture, DirectoryError, TenantDirectory};
use crate::{DatabaseTarget, Features, TenantId, TenantRecord, TenantStatus};

const LOOKUP: &str = "SELECT name, status, plan, database_url, settings FROM tenants WHERE id = $1";
const FEATURES: &str = "SELECT DISTINCT feature FROM tenant_subscriptions \
     WHERE tenant_id = $1 AND status IN ('active', 'trialing') \
     AND period_start <= now() AND (period_end IS NULL OR period_end > now())";

/// A directory on the `tenants` table of the schema in `migrations/` (run `parapet-migrate up`).
///
/// Features are the `feature` values of the tenant's subscriptions whose status is `active` or
/// `trialing` and whose period covers now. Put a [`CachedDirectory`](super::CachedDirectory) in
/// front of it (the `TenantLayer` builder does): every method here is a query.
///
/// Each query is one round trip with an unnamed statement (`query_typed`), so the directory
/// works through a transaction-mode pooler (PgBouncer 1.18 keeps no named prepared statement
/// from one transaction to the next); the cache in front makes the re-planning rare.
///
/// Give the pool a wait timeout: the cached directory bounds each lookup with its own timeout
/// too, so a database outage answers 503 instead of hanging.
#[derive(Debug, Clone)]
pub struct PgDirectory {
    pool: Pool,
}

impl PgDirectory {
    /// A directory that queries through `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// A directory on the database at `database_url`, with a small pool of its own (4
    /// connections, every wait bounded at 2 s). Nothing connects until the first lookup.
    ///
    /// The URL takes libpq's TLS parameters (`sslmode=verify-full`, `sslrootcert=<file>`, ...:
    /// see [`parapet_postgres::PgConfig`]); a TLS failure at lookup time is a
    /// [`DirectoryError::Unavailable`] (503).
    ///
    /// Hand it to [`TenantLayer::builder`](crate::TenantLayer::builder), which puts a
    /// [`CachedDirectory`](super::CachedDirectory) in front of it, or to
    /// [`CachedDirectory::builder`](super::CachedDirectory::builder) for other cache TTLs.
    ///
    /// # Errors
    ///
    /// [`PgDirectoryError`] when `database_url` does not parse; the message never contains the
    /// URL (nor its password).
    pub fn connect(database_url: &str) -> Result<Self, PgDirectoryError> {
        let config = parapet_postgres::PgConfig::parse(database_url)?;
        let manager = deadpool_postgres::Manager::new(config.pg().clone(), config.tls());
        let bound = Some(Duration::from_secs(2));
        let pool = Pool::builder(manager)
            .max_size(4)
            .timeouts(deadpool_postgres::Timeouts {
                wait: bound,
                create: bound,
                recycle: bound,
            })
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgDirectoryError::Pool(e.to_string()))?;
        Ok(Self::new(pool))
    }
}

/// Why [`PgDirectory::connect`] could not make a directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgDirectoryError {
    /// The database URL does not parse, or names a certificate file that cannot be read (the
    /// reason, without the URL).
    #[error("invalid database URL: {0}")]
    InvalidUrl(#[from] parapet_postgres::ConfigError),
    /// The directory's pool could not be built.
    #[error("cannot build the directory's pool: {0}")]
    Pool(String),
}

use DirectoryError as E;

impl TenantDirectory for PgDirectory {
    fn lookup<'a>(
        &'a self,
        id: &'a TenantId,
    ) -> BoxFuture<'a, Result<Option<TenantRecord>, DirectoryError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(E::unavailable)?;
            let rows = client
                .query_typed(LOOKUP, &[(&id.as_str(), Type::TEXT)])
                .await
                .map_err(E::unavailable)?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let status: String = row.try_get(1).map_err(E::unavailable)?;
            let status = TenantStatus::parse(&status).ok_or_else(|| {
                DirectoryError::InvalidRecord(format!("tenant {id} has an unknown status"))
            })?;
            let database = match row
                .try_get::<_, Option<String>>(3)
                .map_err(E::unavailable)?
            {
                Some(url) => DatabaseTarget::Dedicated(url),
                None => DatabaseTarget::Shared,
            };
            Ok(Some(
                TenantRecord::new(id.clone())
                    .name(row.try_get::<_, String>(0).map_err(E::unavailable)?)
                    .status(status)
                    .plan(row.try_get::<_, String>(2).map_err(E::unavailable)?)
                    .database(database)
                    .settings(row.try_get(4).map_err(E::unavailable)?),
            ))
        })
    }

    fn features<'a>(&'a self, id: &'a TenantId) -> BoxFuture<'a, Result<Features, DirectoryError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(E::unavailable)?;
            let rows = client
                .query_typed(FEATURES, &[(&id.as_str(), Type::TEXT)])
                .await
                .map_err(E::unavailable)?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0).map_err(E::unavailable))
                .collect()
        })
    }
}
