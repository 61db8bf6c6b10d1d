//! [`Db`]: a connection checked out for one tenant, timed and reset when it goes back.

use std::{
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool::managed::Object as DpObject;
use parapet_tenant::TenantId;
use tokio_postgres::{Row, types::ToSql};
use tracing::Instrument;

use crate::{DbError, Isolation, PoolError, manager::Object};

/// What every query of a checkout is reported with.
#[derive(Debug, Clone)]
pub(crate) struct QueryContext {
    pub(crate) tenant: TenantId,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) namespace: Arc<str>,
    pub(crate) slow_query: Duration,
}

/// A PostgreSQL connection checked out for the request's tenant.
///
/// Take it as an extractor (`db: Db`) in a handler on a route behind `PoolLayer`: the connection
/// is checked out when the handler asks, with the tenant's [`Isolation`] applied, and goes back
/// when the `Db` is dropped, after `ROLLBACK; RESET ALL` so that nothing (an open transaction, the
/// tenant setting, a `SET` the handler ran) reaches the next checkout. If that reset fails the
/// connection is closed instead.
///
/// Every query is a `db.query` tracing span (`db.system.name = postgresql`,
/// `db.operation.name`, `db.namespace`, `db.query.text`), and a query slower than the
/// configured threshold emits a WARN event with the tenant, the route, the duration and the
/// statement (its text only: parameters are never logged). Statements are prepared once per
/// connection and cached.
pub struct Db {
    obj: Option<Object>,
    ctx: QueryContext,
    reset_timeout: Duration,
}

impl Db {
    /// Applies the tenant's isolation; a connection that cannot be set up is closed, not reused.
    pub(crate) async fn checked_out(
        obj: Object,
        isolation: &Isolation,
        ctx: QueryContext,
        timeout: Duration,
    ) -> Result<Self, PoolError> {
        if let Some((name, value)) = isolation.setting_for(&ctx.tenant) {
            let params: [&(dyn ToSql + Sync); 2] = [&name, &value];
            let set = obj.query_one("SELECT set_config($1, $2, false)", &params);
            match tokio::time::timeout(timeout, set).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let _ = DpObject::take(obj);
                    return Err(PoolError::from_connect(e));
                }
                Err(_) => {
                    let _ = DpObject::take(obj);
                    return Err(PoolError::Unavailable(None));
                }
            }
        }
        Ok(Self {
            obj: Some(obj),
            ctx,
            reset_timeout: timeout,
        })
    }

    fn obj(&self) -> &Object {
        // Only `Drop` takes the object out.
        self.obj
            .as_ref()
            .unwrap_or_else(|| unreachable!("Db used after drop"))
    }

    /// The tenant this connection is checked out for.
    pub fn tenant(&self) -> &TenantId {
        &self.ctx.tenant
    }

    /// Runs a query and returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let client: &tokio_postgres::Client = self.obj();
        timed(&self.ctx, sql, async {
            let stmt = self.obj().prepare_cached(sql).await?;
            client.query(&stmt, params).await
        })
        .await
    }

    /// Runs a query that returns exactly one row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        timed(&self.ctx, sql, async {
            let stmt = self.obj().prepare_cached(sql).await?;
            self.obj().query_one(&stmt, params).await
        })
        .await
    }

    /// Runs a query that returns at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        timed(&self.ctx, sql, async {
            let stmt = self.obj().prepare_cached(sql).await?;
            self.obj().query_opt(&stmt, params).await
        })
        .await
    }

    /// Runs a statement and returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        timed(&self.ctx, sql, async {
            let stmt = self.obj().prepare_cached(sql).await?;
            self.obj().execute(&stmt, params).await
        })
        .await
    }

    /// Runs statements without parameters (the simple query protocol).
    pub async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        timed(&self.ctx, sql, self.obj().batch_execute(sql)).await
    }

    /// Starts a transaction; it rolls back when dropped without [`DbTransaction::commit`].
    pub async fn transaction(&mut self) -> Result<DbTransaction<'_>, DbError> {
        let ctx = self.ctx.clone();
        let obj = self
            .obj
            .as_mut()
            .unwrap_or_else(|| unreachable!("Db used after drop"));
        let tx = timed(&ctx, "BEGIN", obj.transaction()).await?;
        Ok(DbTransaction { tx, ctx })
    }

    /// The underlying client, for what the methods above do not cover. Queries run through it
    /// are not timed nor traced.
    pub fn client(&self) -> &tokio_postgres::Client {
        self.obj()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime to reset on: close the connection rather than return it dirty.
            let _ = DpObject::take(obj);
            return;
        };
        let timeout = self.reset_timeout;
        handle.spawn(async move {
            // ROLLBACK ends whatever transaction the handler left open (a warning otherwise);
            // RESET ALL clears the tenant setting, search_path and any SET it ran.
            let reset = obj.batch_execute("ROLLBACK; RESET ALL");
            match tokio::time::timeout(timeout, reset).await {
                Ok(Ok(())) => drop(obj),
                _ => {
                    tracing::warn!("could not reset a connection; closing it");
                    let _ = DpObject::take(obj);
                }
            }
        });
    }
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("tenant", &self.ctx.tenant)
            .field("namespace", &self.ctx.namespace)
            .finish_non_exhaustive()
    }
}

/// A transaction on a [`Db`]; rolls back when dropped without [`commit`](Self::commit).
pub struct DbTransaction<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    ctx: QueryContext,
}

impl DbTransaction<'_> {
    /// Runs a query and returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        timed(&self.ctx, sql, async {
            let stmt = self.tx.prepare_cached(sql).await?;
            self.tx.query(&stmt, params).await
        })
        .await
    }

    /// Runs a query that returns exactly one row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        timed(&self.ctx, sql, async {
            let stmt = self.tx.prepare_cached(sql).await?;
            self.tx.query_one(&stmt, params).await
        })
        .await
    }

    /// Runs a statement and returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        timed(&self.ctx, sql, async {
            let stmt = self.tx.prepare_cached(sql).await?;
            self.tx.execute(&stmt, params).await
        })
        .await
    }

    /// Runs statements without parameters.
    pub async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        timed(&self.ctx, sql, self.tx.batch_execute(sql)).await
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), DbError> {
        let ctx = self.ctx;
        timed(&ctx, "COMMIT", self.tx.commit()).await
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), DbError> {
        let ctx = self.ctx;
        timed(&ctx, "ROLLBACK", self.tx.rollback()).await
    }
}

impl fmt::Debug for DbTransaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTransaction")
            .field("tenant", &self.ctx.tenant)
            .finish_non_exhaustive()
    }
}

/// The first keyword of a statement, upper-cased (`SELECT`, `INSERT`, ...).
pub(crate) fn operation_name(sql: &str) -> String {
    let mut rest = sql.trim_start();
    // Skip leading comments.
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    rest.split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// The statement text for logs and spans: at most 2,000 bytes.
fn statement_text(sql: &str) -> &str {
    if sql.len() <= 2000 {
        return sql;
    }
    let mut end = 2000;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    &sql[..end]
}

async fn timed<T>(
    ctx: &QueryContext,
    sql: &str,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, DbError> {
    let operation = operation_name(sql);
    let text = statement_text(sql);
    let span = tracing::info_span!(
        "db.query",
        otel.name = %operation,
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = %operation,
        db.namespace = %ctx.namespace,
        db.query.text = %text,
        tenant.id = %ctx.tenant,
    );
    let started = Instant::now();
    let result = fut.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    if elapsed >= ctx.slow_query {
        tracing::warn!(
            parent: &span,
            tenant.id = %ctx.tenant,
            http.route = ctx.route.as_deref().unwrap_or(""),
            duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            db.query.text = %text,
            "slow query"
        );
    }
    result.map_err(DbError::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names() {
        assert_eq!(operation_name("select 1"), "SELECT");
        assert_eq!(operation_name("  INSERT INTO x"), "INSERT");
        assert_eq!(operation_name("-- hi\n/* x */ update t set"), "UPDATE");
        assert_eq!(operation_name("WITH x AS (select 1) select"), "WITH");
        assert_eq!(operation_name(""), "");
        assert_eq!(statement_text(&"é".repeat(1500)).len(), 2000);
    }
}
