//! A deadpool manager whose every connection holds a permit of its server's budget.

use std::sync::Arc;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;

use crate::budget::{BudgetRule, PermitError, ServerBudget};

/// Why a connection could not be created.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// No permit left in the server's budget.
    Budget,
    /// The server refused or failed.
    Pg(tokio_postgres::Error),
}

/// Creates connections to one target; each open connection holds one permit of its server's
/// budget, released when the connection's task ends (the client was dropped, or the server went
/// away).
pub(crate) struct BudgetManager {
    pub(crate) pg: parapet_postgres::PgConfig,
    pub(crate) server: Arc<ServerBudget>,
    pub(crate) rule: BudgetRule,
}

impl std::fmt::Debug for BudgetManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetManager")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl managed::Manager for BudgetManager {
    type Type = ClientWrapper;
    type Error = ConnectError;

    async fn create(&self) -> Result<ClientWrapper, ConnectError> {
        let permit = match self.server.permit(&self.pg, self.rule).await {
            Ok(permit) => permit,
            Err(PermitError::Exhausted) => return Err(ConnectError::Budget),
            Err(PermitError::Unknown(e)) => return Err(ConnectError::Pg(e)),
        };
        let (client, connection) = self.pg.connect().await.map_err(ConnectError::Pg)?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
            }
            drop(permit);
        });
        Ok(ClientWrapper::new(client, task))
    }

    async fn recycle(
        &self,
        client: &mut ClientWrapper,
        _: &Metrics,
    ) -> RecycleResult<ConnectError> {
        // Sessions are reset when a checkout ends (see `Db`); here only drop dead connections.
        if client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}

/// A pool of budgeted connections to one target.
pub(crate) type Pool = managed::Pool<BudgetManager>;
/// A connection checked out of a [`Pool`].
pub(crate) type Object = managed::Object<BudgetManager>;
