//! [`Statements`]: how a statement of a checkout runs, timed and traced, whether on the
//! connection itself or inside one of its transactions.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool_postgres::StatementCache;
use parapet_tenant::TenantId;
use tokio_postgres::{
    Client, Row, Statement,
    error::SqlState,
    types::{ToSql, Type},
};
use tracing::Instrument;

use crate::{
    DbError, IsolationScope,
    session::{self, Marks},
};

/// What every query of a checkout is reported with, and how it sets its tenant.
#[derive(Debug, Clone)]
pub(crate) struct QueryContext {
    pub(crate) tenant: TenantId,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) namespace: Arc<str>,
    pub(crate) slow_query: Duration,
    pub(crate) scope: IsolationScope,
    /// The `(setting, value)` of the tenant's isolation, if it has one.
    pub(crate) setting: Option<(String, String)>,
}

/// How a statement is prepared and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// Session scope: prepared once per connection (deadpool's statement cache), then executed.
    Cached,
    /// Transaction scope, inside the checkout's explicit transaction: prepared to learn its
    /// parameter types, closed at once, run as an unnamed statement.
    Uncached,
    /// Transaction scope, outside an explicit transaction: like `Uncached`, inside a transaction
    /// of its own that first sets the tenant and commits before the method returns.
    Autocommit,
}

/// Runs statements on one connection: `Db` and `DbTransaction` both go through it.
///
/// A transaction is a state of the connection, not another client: a statement inside one is
/// sent through the same [`Client`] (`Transaction::client`), so one runner serves both.
pub(crate) struct Statements<'a> {
    pub(crate) client: &'a Client,
    pub(crate) cache: &'a StatementCache,
    pub(crate) ctx: &'a QueryContext,
    pub(crate) marks: &'a Marks,
    pub(crate) run: Run,
    /// Session scope on the checkout itself: whether the tenant's session setting is in force.
    /// `None` where nothing is to be entered (transaction scope, or inside a transaction that
    /// began after entering).
    pub(crate) entered: Option<&'a AtomicBool>,
}

impl Statements<'_> {
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        self.run::<Rows>(sql, params).await
    }

    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        self.run::<One>(sql, params).await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        self.run::<Opt>(sql, params).await
    }

    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, DbError> {
        self.run::<Count>(sql, params).await
    }

    /// Runs statements without parameters (the simple query protocol, no prepared statement).
    /// Raw SQL may open a transaction, so the checkout is marked for the reset to look.
    pub(crate) async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        self.enter().await?;
        let client = self.client;
        let result = match self.run {
            Run::Cached | Run::Uncached => {
                self.marks.maybe_in_transaction();
                timed(self.ctx, sql, client.batch_execute(sql)).await
            }
            Run::Autocommit => {
                timed(self.ctx, sql, async {
                    self.marks.maybe_in_transaction();
                    let (begin, set, batch, commit) = tokio::join!(
                        biased;
                        client.batch_execute("BEGIN"),
                        self.set_tenant(),
                        client.batch_execute(sql),
                        client.batch_execute("COMMIT"),
                    );
                    begin?;
                    set?;
                    batch?;
                    commit?;
                    self.marks.settled();
                    Ok(())
                })
                .await
            }
        };
        self.checked(result)
    }

    async fn run<F: Fetch>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<F::Output, DbError> {
        let operation = operation_name(sql);
        if matches!(operation.as_str(), "BEGIN" | "START") {
            self.marks.maybe_in_transaction();
        }
        if self.needs_entry() {
            if PIPELINED.contains(&operation.as_str()) {
                let result = timed(self.ctx, sql, self.entering::<F>(sql, params)).await;
                return self.checked(result);
            }
            self.enter().await?;
        }
        let client = self.client;
        let result = timed(self.ctx, sql, async {
            match self.run {
                Run::Cached => {
                    let stmt = self.cache.prepare(client, sql).await?;
                    F::prepared(client, &stmt, params).await
                }
                Run::Uncached => {
                    let typed = typed_params(client.prepare(sql).await?, params);
                    F::typed(client, sql, &typed).await
                }
                Run::Autocommit => self.autocommit::<F>(sql, params).await,
            }
        })
        .await;
        self.checked(result)
    }

    fn needs_entry(&self) -> bool {
        self.entered.is_some_and(|e| !e.load(Ordering::Acquire))
    }

    /// Sends the tenant's session setting on a round trip of its own, if it is not in force yet.
    /// A connection whose setting fails is not reused.
    pub(crate) async fn enter(&self) -> Result<(), DbError> {
        let Some(entered) = self.entered.filter(|e| !e.load(Ordering::Acquire)) else {
            return Ok(());
        };
        match session::enter(self.client, self.ctx).await {
            Ok(()) => {
                entered.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.marks.broken();
                Err(e)
            }
        }
    }

    /// The first statement of a session-scope checkout, carrying the tenant's setting in its
    /// round trip: `BEGIN`, `set_config(.., false)`, the statement (or its prepare, when the
    /// connection has not prepared it yet) and `COMMIT`, sent together.
    ///
    /// The transaction is what makes it safe: if the setting fails, the transaction is aborted
    /// and the statement is refused with it, so it never runs without its tenant. If the
    /// statement fails, `COMMIT` rolls back and the setting with it; the next statement carries
    /// it again. A statement that was not prepared yet is executed in a second round trip,
    /// after `COMMIT`, with the setting already in force.
    async fn entering<F: Fetch>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<F::Output, tokio_postgres::Error> {
        let client = self.client;
        let was_marked = self.marks.is_maybe_in_transaction();
        // If this future is dropped half way, the transaction may stay open: the reset looks.
        self.marks.maybe_in_transaction();
        let (begin, set, output, commit) = tokio::join!(
            biased;
            client.batch_execute("BEGIN"),
            session::set_session(client, self.ctx),
            async {
                let stmt = self.cache.prepare(client, sql).await?;
                F::prepared(client, &stmt, params).await
            },
            client.batch_execute("COMMIT"),
        );
        if commit.is_ok() && !was_marked {
            self.marks.settled();
        }
        begin?;
        if let Err(e) = set {
            self.marks.broken();
            return Err(e);
        }
        let output = output?;
        commit?;
        if let Some(entered) = self.entered {
            entered.store(true, Ordering::Release);
        }
        Ok(output)
    }

    /// `BEGIN`, the tenant's setting and the prepare in one round trip; the statement (unnamed),
    /// the close of the prepared one and `COMMIT` in a second. After an error the transaction is
    /// aborted, and `COMMIT` (or the `ROLLBACK` sent instead) ends it.
    async fn autocommit<F: Fetch>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<F::Output, tokio_postgres::Error> {
        let client = self.client;
        // If this future is dropped half way, the transaction may stay open: the reset looks.
        self.marks.maybe_in_transaction();
        let (begin, set, prepared) = tokio::join!(
            biased;
            client.batch_execute("BEGIN"),
            self.set_tenant(),
            client.prepare(sql),
        );
        begin?;
        let prepared = match (set, prepared) {
            (Ok(()), Ok(stmt)) => Ok(stmt),
            (Err(e), prepared) => {
                // Closed inside the transaction, before the ROLLBACK.
                drop(prepared);
                Err(e)
            }
            (Ok(()), Err(e)) => Err(e),
        };
        let prepared = match prepared {
            Ok(stmt) => stmt,
            Err(e) => {
                if client.batch_execute("ROLLBACK").await.is_ok() {
                    self.marks.settled();
                }
                return Err(e);
            }
        };
        // Dropping the statement sends its close, ahead of the statement and COMMIT.
        let typed = typed_params(prepared, params);
        let (output, commit) = tokio::join!(
            biased;
            F::typed(client, sql, &typed),
            client.batch_execute("COMMIT"),
        );
        self.marks.settled();
        let output = output?;
        commit?;
        Ok(output)
    }

    /// `set_config(<setting>, <id>, true)` as an unnamed statement, when the isolation has one.
    async fn set_tenant(&self) -> Result<(), tokio_postgres::Error> {
        let Some((name, value)) = &self.ctx.setting else {
            return Ok(());
        };
        self.client
            .query_typed(
                "SELECT set_config($1, $2, true)",
                &[(name, Type::TEXT), (value, Type::TEXT)],
            )
            .await
            .map(drop)
    }

    /// Marks a connection whose statement names went astray as broken, and explains errors that
    /// a transaction-mode pooler causes in session scope.
    fn checked<T>(&self, result: Result<T, DbError>) -> Result<T, DbError> {
        result.map_err(|e| {
            let Some(code) = e.code() else { return e };
            let astray = *code == SqlState::INVALID_SQL_STATEMENT_NAME
                || *code == SqlState::DUPLICATE_PSTATEMENT;
            if astray {
                self.marks.broken();
            }
            let setting_missing = *code == SqlState::UNDEFINED_OBJECT
                && self
                    .ctx
                    .setting
                    .as_ref()
                    .is_some_and(|(name, _)| e.to_string().contains(&format!("\"{name}\"")));
            if self.ctx.scope == IsolationScope::Session && (astray || setting_missing) {
                e.with_hint(POOLER_HINT)
            } else {
                e
            }
        })
    }
}

/// Statements the first-statement pipeline may wrap in a transaction: they mean the same inside
/// one. Anything else (`VACUUM`, `CREATE INDEX CONCURRENTLY`, `BEGIN`, ...) enters first.
const PIPELINED: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE", "MERGE",
];

/// Said with errors that show a transaction-mode pooler moving statements between server
/// connections in session scope.
const POOLER_HINT: &str = "the session's prepared statements or tenant setting are missing: \
    behind a transaction-mode pooler (PgBouncer, pgcat, Supavisor) use IsolationScope::Transaction \
    (PARAPET_ISOLATION_SCOPE=transaction)";

/// Pairs each parameter with the type the server inferred for it, and drops the prepared
/// statement, which sends its close.
fn typed_params<'p>(
    stmt: Statement,
    params: &[&'p (dyn ToSql + Sync)],
) -> Vec<(&'p (dyn ToSql + Sync), Type)> {
    // A count that does not match is refused by the server, as with a prepared statement.
    params
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, stmt.params().get(i).cloned().unwrap_or(Type::UNKNOWN)))
        .collect()
}

/// What a query method returns, fetched through a prepared statement or an unnamed one.
trait Fetch {
    type Output: Send;

    fn prepared(
        client: &Client,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Self::Output, tokio_postgres::Error>> + Send;

    fn typed(
        client: &Client,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Self::Output, tokio_postgres::Error>> + Send;
}

/// Every row.
struct Rows;
/// Exactly one row.
struct One;
/// At most one row.
struct Opt;
/// The number of rows changed.
struct Count;

macro_rules! fetch {
    ($ty:ty, $out:ty, $prepared:ident, $typed:ident) => {
        impl Fetch for $ty {
            type Output = $out;

            fn prepared(
                client: &Client,
                stmt: &Statement,
                params: &[&(dyn ToSql + Sync)],
            ) -> impl Future<Output = Result<$out, tokio_postgres::Error>> + Send {
                client.$prepared(stmt, params)
            }

            fn typed(
                client: &Client,
                sql: &str,
                params: &[(&(dyn ToSql + Sync), Type)],
            ) -> impl Future<Output = Result<$out, tokio_postgres::Error>> + Send {
                client.$typed(sql, params)
            }
        }
    };
}

fetch!(Rows, Vec<Row>, query, query_typed);
fetch!(One, Row, query_one, query_typed_one);
fetch!(Opt, Option<Row>, query_opt, query_typed_opt);
fetch!(Count, u64, execute, execute_typed);

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
