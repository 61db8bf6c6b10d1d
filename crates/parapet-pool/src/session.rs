//! A checkout's session lifecycle: entering the tenant's context when a connection is checked
//! out, and leaving it (the reset) before the connection goes back to the pool.
//!
//! **Session scope.** Entering sets the tenant for the session: the checkout's first statement
//! carries the setting in its round trip (`Statements::entering` in `query.rs`), or [`enter`]
//! sends it alone before a transaction, raw SQL or the bare client. Leaving makes the connection as
//! it was when it was opened, with what `DISCARD ALL` does, statement by statement:
//! `CLOSE ALL` (`WITH HOLD` cursors), `SET SESSION AUTHORIZATION DEFAULT` (and with it any
//! `SET ROLE`), `RESET ALL` (the tenant setting, `search_path`, every `SET`), `UNLISTEN *`,
//! `pg_advisory_unlock_all()`, `DISCARD TEMP`, `DISCARD SEQUENCES`, and `DEALLOCATE` of every
//! statement the handler prepared with SQL `PREPARE`. One simple query, one round trip; a second
//! only when there are such statements to deallocate.
//!
//! Why not `DISCARD ALL` itself: its `DEALLOCATE ALL` also drops the statements the driver keeps
//! prepared. deadpool's statement cache could be cleared, but tokio-postgres keeps the
//! statements it looks user-defined types up with for the client's lifetime, with no way to clear
//! them: after the first `DISCARD ALL`, a query on an enum column would fail. And every checkout
//! would prepare its statements again, one more round trip per statement. Kept instead: the
//! statements `Db` prepared from its SQL text (cached per connection) and the driver's own. They
//! carry no session state: PostgreSQL re-plans a statement when `search_path` or the role it was
//! planned for changes, and row-level-security policies read the setting when they run.
//! `DISCARD PLANS` is left out for the same reason.
//!
//! `ROLLBACK` is sent only when a transaction may be open, so a checkout that opened none leaves
//! no `WARNING: there is no transaction in progress` in the server's log: a `DbTransaction` ends
//! its transaction itself (commit, rollback, or a rollback when dropped), and only raw SQL
//! (`batch_execute`, a `BEGIN` through a query method, `Db::client`) or a `BEGIN` whose answer
//! was never awaited can leave one open. Those mark the checkout; its reset first asks the
//! server (`transaction_timestamp() = statement_timestamp()` holds only outside a transaction,
//! and fails inside an aborted one).
//!
//! **Transaction scope.** Nothing is entered (every transaction sets its tenant) and nothing is
//! reset: no session state is used, and on a pooler a reset would reach some other server
//! connection. A checkout that may have left a transaction open is rolled back as above.
//!
//! In both scopes a connection that cannot be set up or reset in time, or that the checkout
//! marked broken, is closed instead of going back.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use deadpool::managed::Object as DpObject;
use tokio_postgres::{
    SimpleQueryMessage,
    error::SqlState,
    types::{ToSql, Type},
};

use crate::{
    DbError, IsolationScope, fair::SharePermit, isolation::quote_ident, manager::Object,
    query::QueryContext,
};

/// Everything of `DISCARD ALL` but `DEALLOCATE ALL` and `DISCARD PLANS`, then the names of the
/// statements prepared with SQL `PREPARE`, to deallocate one by one.
const RESET: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
    SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; \
    SELECT name FROM pg_prepared_statements WHERE from_sql";

/// True outside a transaction block, false inside one; an error inside an aborted one.
const IN_TRANSACTION_PROBE: &str = "SELECT transaction_timestamp() = statement_timestamp()";

/// What a checkout did that leaving must know about.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    maybe_in_transaction: AtomicBool,
    broken: AtomicBool,
}

impl Marks {
    /// Raw SQL ran, or a `BEGIN` was sent: a transaction may be open.
    pub(crate) fn maybe_in_transaction(&self) {
        self.maybe_in_transaction.store(true, Ordering::Relaxed);
    }

    /// What [`maybe_in_transaction`](Self::maybe_in_transaction) feared did not happen (the
    /// transaction it guarded is owned by a `DbTransaction` now, or was committed).
    pub(crate) fn settled(&self) {
        self.maybe_in_transaction.store(false, Ordering::Relaxed);
    }

    pub(crate) fn is_maybe_in_transaction(&self) -> bool {
        self.maybe_in_transaction.load(Ordering::Relaxed)
    }

    /// The connection must not be reused.
    pub(crate) fn broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }
}

/// `set_config(<setting>, <id>, false)`: the tenant's setting for the rest of the session, as an
/// unnamed statement (nothing prepared).
pub(crate) async fn set_session(
    client: &tokio_postgres::Client,
    ctx: &QueryContext,
) -> Result<(), tokio_postgres::Error> {
    let Some((name, value)) = &ctx.setting else {
        return Ok(());
    };
    let params: [(&(dyn ToSql + Sync), Type); 2] = [(name, Type::TEXT), (value, Type::TEXT)];
    client
        .query_typed("SELECT set_config($1, $2, false)", &params)
        .await
        .map(drop)
}

/// Enters the tenant's session on a round trip of its own, for what cannot carry the setting in
/// its first statement's round trip (a transaction, raw SQL, the bare client).
pub(crate) async fn enter(
    client: &tokio_postgres::Client,
    ctx: &QueryContext,
) -> Result<(), DbError> {
    set_session(client, ctx).await.map_err(DbError::new)
}

/// Resets the connection in a background task and then returns it to the pool; a connection
/// that cannot be reset within `timeout` (or outside a Tokio runtime) is closed instead. The
/// tenant's slot of the pool (`share`) is returned after the connection, so the checkout it lets
/// in finds the connection back.
pub(crate) fn leave(
    obj: Object,
    share: Option<SharePermit>,
    scope: IsolationScope,
    marks: &Marks,
    timeout: Duration,
) {
    if marks.broken.load(Ordering::Relaxed) {
        close(obj);
        drop(share);
        return;
    }
    let maybe_in_transaction = marks.maybe_in_transaction.load(Ordering::Relaxed);
    if scope == IsolationScope::Transaction && !maybe_in_transaction {
        // Nothing was set for the session, and no transaction is open.
        drop(obj);
        drop(share);
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        // No runtime to reset on: close the connection rather than return it dirty.
        close(obj);
        drop(share);
        return;
    };
    handle.spawn(async move {
        let reset = reset(&obj, scope, maybe_in_transaction);
        match tokio::time::timeout(timeout, reset).await {
            Ok(Ok(())) => drop(obj),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not reset a connection; closing it");
                close(obj);
            }
            Err(_) => {
                tracing::warn!("resetting a connection timed out; closing it");
                close(obj);
            }
        }
        drop(share);
    });
}

async fn reset(
    obj: &Object,
    scope: IsolationScope,
    maybe_in_transaction: bool,
) -> Result<(), tokio_postgres::Error> {
    if maybe_in_transaction && in_transaction(obj).await? {
        obj.batch_execute("ROLLBACK").await?;
    }
    if scope == IsolationScope::Transaction {
        return Ok(());
    }
    let mut deallocate = String::new();
    for message in obj.simple_query(RESET).await? {
        // Rows of the last statement only (`pg_advisory_unlock_all()` answers one too).
        if let SimpleQueryMessage::Row(row) = message
            && row.columns().first().is_some_and(|c| c.name() == "name")
            && let Some(name) = row.get(0)
        {
            deallocate.push_str(&format!("DEALLOCATE {};", quote_ident(name)));
        }
    }
    if !deallocate.is_empty() {
        obj.batch_execute(&deallocate).await?;
    }
    Ok(())
}

/// Whether the connection is inside a transaction block (open or aborted).
async fn in_transaction(obj: &Object) -> Result<bool, tokio_postgres::Error> {
    match obj.simple_query(IN_TRANSACTION_PROBE).await {
        Ok(messages) => Ok(messages.iter().any(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0) == Some("f"),
            _ => false,
        })),
        Err(e) if e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Takes the connection out of its pool, which closes it (and frees its budget permit).
pub(crate) fn close(obj: Object) {
    let _ = DpObject::take(obj);
}
