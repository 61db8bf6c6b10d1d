//! [`Statements`]: how a statement of a checkout runs, timed and traced, whether on the
//! connection itself or inside one of its transactions.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool_postgres::StatementCache;
use parapet_tenant::TenantId;
use tokio_postgres::{Client, Row, types::ToSql};
use tracing::Instrument;

use crate::DbError;

/// What every query of a checkout is reported with.
#[derive(Debug, Clone)]
pub(crate) struct QueryContext {
    pub(crate) tenant: TenantId,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) namespace: Arc<str>,
    pub(crate) slow_query: Duration,
}

/// Runs statements on one connection: `Db` and `DbTransaction` both go through it.
///
/// A transaction is a state of the connection, not another client: a statement inside one is
/// sent through the same [`Client`] (`Transaction::client`), so one runner serves both.
pub(crate) struct Statements<'a> {
    pub(crate) client: &'a Client,
    pub(crate) cache: &'a StatementCache,
    pub(crate) ctx: &'a QueryContext,
}

impl Statements<'_> {
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        timed(self.ctx, sql, async {
            let stmt = self.cache.prepare(self.client, sql).await?;
            self.client.query(&stmt, params).await
        })
        .await
    }

    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        timed(self.ctx, sql, async {
            let stmt = self.cache.prepare(self.client, sql).await?;
            self.client.query_one(&stmt, params).await
        })
        .await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        timed(self.ctx, sql, async {
            let stmt = self.cache.prepare(self.client, sql).await?;
            self.client.query_opt(&stmt, params).await
        })
        .await
    }

    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, DbError> {
        timed(self.ctx, sql, async {
            let stmt = self.cache.prepare(self.client, sql).await?;
            self.client.execute(&stmt, params).await
        })
        .await
    }

    pub(crate) async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        timed(self.ctx, sql, self.client.batch_execute(sql)).await
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

/// Runs `fut` in a `db.query` span and emits a WARN event when it took `slow_query` or longer.
pub(crate) async fn timed<T>(
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
