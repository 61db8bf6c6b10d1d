//! [`Db`]: a connection checked out for one tenant, timed and reset when it goes back.

use std::{fmt, time::Duration};

use parapet_tenant::TenantId;
use tokio_postgres::{Row, types::ToSql};

use crate::{
    DbError, Isolation, PoolError,
    manager::Object,
    query::{QueryContext, Statements, timed},
    session,
};

/// The query methods `Db` and `DbTransaction` share; each hands its statement to the one
/// [`Statements`] runner.
macro_rules! query_methods {
    () => {
        /// Runs a query and returns its rows.
        pub async fn query(
            &self,
            sql: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Vec<Row>, DbError> {
            self.statements().query(sql, params).await
        }

        /// Runs a query that returns exactly one row.
        pub async fn query_one(
            &self,
            sql: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Row, DbError> {
            self.statements().query_one(sql, params).await
        }

        /// Runs a query that returns at most one row.
        pub async fn query_opt(
            &self,
            sql: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Option<Row>, DbError> {
            self.statements().query_opt(sql, params).await
        }

        /// Runs a statement and returns the number of rows it changed.
        pub async fn execute(
            &self,
            sql: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<u64, DbError> {
            self.statements().execute(sql, params).await
        }

        /// Runs statements without parameters (the simple query protocol).
        pub async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
            self.statements().batch_execute(sql).await
        }
    };
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
    /// Enters the tenant's session on `obj`; a connection that cannot be set up is closed.
    pub(crate) async fn checked_out(
        obj: Object,
        isolation: &Isolation,
        ctx: QueryContext,
        timeout: Duration,
    ) -> Result<Self, PoolError> {
        let obj = session::enter(obj, isolation, &ctx.tenant, timeout).await?;
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

    fn statements(&self) -> Statements<'_> {
        let obj = self.obj();
        Statements {
            client: obj,
            cache: &obj.statement_cache,
            ctx: &self.ctx,
        }
    }

    /// The tenant this connection is checked out for.
    pub fn tenant(&self) -> &TenantId {
        &self.ctx.tenant
    }

    query_methods!();

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
        if let Some(obj) = self.obj.take() {
            session::leave(obj, self.reset_timeout);
        }
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
    fn statements(&self) -> Statements<'_> {
        Statements {
            client: self.tx.client(),
            cache: &self.tx.statement_cache,
            ctx: &self.ctx,
        }
    }

    query_methods!();

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
