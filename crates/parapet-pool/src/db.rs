//! [`Db`]: a connection checked out for one tenant, timed and reset when it goes back.

use std::{fmt, sync::atomic::AtomicBool, time::Duration};

use parapet_tenant::TenantId;
use tokio_postgres::{
    Row,
    types::{ToSql, Type},
};

use crate::{
    DbError, IsolationScope,
    fair::SharePermit,
    manager::Object,
    query::{QueryContext, Run, Statements, timed},
    session::{self, Marks},
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
/// is checked out when the handler asks, with the tenant's [`Isolation`](crate::Isolation) applied, and goes back
/// when the `Db` is dropped.
///
/// What a statement runs in depends on the [`IsolationScope`]:
///
/// - **Session** (default): the tenant is set for the session by the checkout's first statement,
///   in the same round trip (see [`IsolationScope::Session`]); each method is one
///   statement (autocommit, unless inside [`transaction`](Self::transaction)); statements are
///   prepared once per connection and cached. When the `Db` is dropped the connection is reset
///   in the background before it goes back: an open transaction is rolled back, and settings
///   (the tenant's included), `SET ROLE`, temporary tables, advisory locks, `LISTEN`, `WITH
///   HOLD` cursors and SQL `PREPARE`d statements are discarded (what `DISCARD ALL` does, but the
///   statement cache is kept); a connection that cannot be reset is closed.
/// - **Transaction**: each method is a transaction of its own that sets the tenant first and
///   commits before the method returns (the same autocommit effects, one more round trip);
///   [`transaction`](Self::transaction) opens one transaction whose first statement sets the
///   tenant. No session state is used and nothing is reset. See [`IsolationScope`] for when to
///   use which, and the limits.
///
/// Every query is a `db.query` tracing span (`db.system.name = postgresql`,
/// `db.operation.name`, `db.namespace`, `db.query.text`), and a query slower than the
/// configured threshold emits a WARN event with the tenant, the route, the duration and the
/// statement (its text only: parameters are never logged).
pub struct Db {
    obj: Option<Object>,
    /// The tenant's slot of the pool, returned after the connection is.
    share: Option<SharePermit>,
    ctx: QueryContext,
    marks: Marks,
    /// Whether the tenant's session setting is in force on the connection (session scope).
    /// Until it is, the first statement carries it in its own round trip.
    entered: AtomicBool,
    reset_timeout: Duration,
}

impl Db {
    /// A checkout of `obj` for the context's tenant. In session scope the tenant's setting is
    /// not sent yet: the first statement carries it in its own round trip.
    pub(crate) fn checked_out(
        obj: Object,
        share: Option<SharePermit>,
        ctx: QueryContext,
        timeout: Duration,
    ) -> Self {
        let entered = ctx.scope == IsolationScope::Transaction || ctx.setting.is_none();
        Self {
            obj: Some(obj),
            share,
            ctx,
            marks: Marks::default(),
            entered: AtomicBool::new(entered),
            reset_timeout: timeout,
        }
    }

    /// Makes sure the tenant's session setting is in force before something the first-statement
    /// pipeline cannot carry (a transaction, raw SQL, the bare client).
    async fn enter(&self) -> Result<(), DbError> {
        self.statements().enter().await
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
            marks: &self.marks,
            run: match self.ctx.scope {
                IsolationScope::Session => Run::Cached,
                IsolationScope::Transaction => Run::Autocommit,
            },
            entered: Some(&self.entered),
        }
    }

    /// The tenant this connection is checked out for.
    pub fn tenant(&self) -> &TenantId {
        &self.ctx.tenant
    }

    query_methods!();

    /// Starts a transaction; it rolls back when dropped without [`DbTransaction::commit`].
    ///
    /// In transaction scope its first statement sets the tenant (`set_config(.., true)`).
    pub async fn transaction(&mut self) -> Result<DbTransaction<'_>, DbError> {
        self.enter().await?;
        let Self {
            obj, ctx, marks, ..
        } = self;
        let (ctx, marks): (&QueryContext, &Marks) = (ctx, marks);
        let obj = obj
            .as_mut()
            .unwrap_or_else(|| unreachable!("Db used after drop"));
        // Until the DbTransaction exists (it always ends its transaction), a BEGIN whose answer
        // was not awaited could leave one open.
        marks.maybe_in_transaction();
        let tx = timed(ctx, "BEGIN", obj.transaction()).await?;
        let tx = DbTransaction {
            tx,
            ctx: ctx.clone(),
            marks,
        };
        if let (IsolationScope::Transaction, Some((name, value))) = (ctx.scope, &ctx.setting) {
            let sql = "SELECT set_config($1, $2, true)";
            let params: [(&(dyn ToSql + Sync), Type); 2] =
                [(name, Type::TEXT), (value, Type::TEXT)];
            timed(ctx, sql, tx.tx.client().query_typed(sql, &params)).await?;
        }
        marks.settled();
        Ok(tx)
    }

    /// The underlying client, for what the methods above do not cover, once the tenant's
    /// session setting is in force (in session scope it is sent with the first statement, so
    /// this may take a round trip). Queries run through it are not timed nor traced; in
    /// transaction scope they run outside any transaction, without the tenant's setting.
    pub async fn client(&self) -> Result<&tokio_postgres::Client, DbError> {
        self.enter().await?;
        self.marks.maybe_in_transaction();
        Ok(self.obj())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            let share = self.share.take();
            session::leave(obj, share, self.ctx.scope, &self.marks, self.reset_timeout);
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
    marks: &'a Marks,
}

impl DbTransaction<'_> {
    fn statements(&self) -> Statements<'_> {
        Statements {
            client: self.tx.client(),
            cache: &self.tx.statement_cache,
            ctx: &self.ctx,
            marks: self.marks,
            run: match self.ctx.scope {
                IsolationScope::Session => Run::Cached,
                IsolationScope::Transaction => Run::Uncached,
            },
            // The transaction began after the tenant's setting was entered.
            entered: None,
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
