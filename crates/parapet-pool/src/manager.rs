//! A deadpool manager whose every connection holds a permit of the global budget.

use std::sync::Arc;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio::sync::Semaphore;

/// Why a connection could not be created.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// No permit left in the global budget.
    Budget,
    /// The server refused or failed.
    Pg(tokio_postgres::Error),
}

/// Creates connections to one target; each open connection holds one budget permit, released
/// when the connection's task ends (the client was dropped, or the server went away).
pub(crate) struct BudgetManager {
    pub(crate) pg: parapet_postgres::PgConfig,
    pub(crate) budget: Arc<Semaphore>,
}

impl std::fmt::Debug for BudgetManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetManager")
            .field("available_permits", &self.budget.available_permits())
            .finish_non_exhaustive()
    }
}

impl managed::Manager for BudgetManager {
    type Type = ClientWrapper;
    type Error = ConnectError;

    async fn create(&self) -> Result<ClientWrapper, ConnectError> {
        let permit = self
            .budget
            .clone()
            .try_acquire_owned()
            .map_err(|_| ConnectError::Budget)?;
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
