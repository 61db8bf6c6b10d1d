//! Connection budgets: one per database server (`host:port`), its permits held by the
//! connections to that server, and divided across the application's replicas.

use std::{collections::HashMap, fmt, sync::Arc};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How a server's budget is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetRule {
    /// The same number of connections for every server (`TenantPoolsBuilder::budget`).
    Fixed(usize),
    /// Read from each server at its first connection: `(max_connections −
    /// superuser_reserved_connections − reserved_connections − reserve) / replicas`.
    FromServer {
        /// Connections kept free for other clients (migrations, `psql`).
        reserve: usize,
        /// Processes sharing the server's connections (at least 1).
        replicas: usize,
    },
}

/// The budget of one database server.
pub(crate) struct ServerBudget {
    /// `host:port`.
    pub(crate) key: Arc<str>,
    limit: tokio::sync::OnceCell<Limit>,
}

struct Limit {
    total: usize,
    permits: Arc<Semaphore>,
}

/// Why no permit was had.
#[derive(Debug)]
pub(crate) enum PermitError {
    /// Every permit of the server's budget is held.
    Exhausted,
    /// The server's `max_connections` could not be read.
    Unknown(tokio_postgres::Error),
}

impl ServerBudget {
    fn new(key: Arc<str>, known: Option<usize>) -> Self {
        let limit = match known {
            Some(total) => tokio::sync::OnceCell::new_with(Some(Limit::new(total))),
            None => tokio::sync::OnceCell::new(),
        };
        Self { key, limit }
    }

    /// A permit for one more connection to this server; the budget is read from the server
    /// (through `pg`, one short connection) the first time, once however many ask at once.
    pub(crate) async fn permit(
        &self,
        pg: &parapet_postgres::PgConfig,
        rule: BudgetRule,
    ) -> Result<OwnedSemaphorePermit, PermitError> {
        let limit = self
            .limit
            .get_or_try_init(|| async {
                let total = match rule {
                    BudgetRule::Fixed(total) => total,
                    BudgetRule::FromServer { reserve, replicas } => {
                        server_budget(pg, reserve, replicas).await?
                    }
                };
                tracing::info!(server = %self.key, budget = total, "connection budget");
                Ok(Limit::new(total))
            })
            .await
            .map_err(PermitError::Unknown)?;
        limit
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| PermitError::Exhausted)
    }

    /// `(budget, connections open)`, once the budget is known.
    pub(crate) fn usage(&self) -> Option<(usize, usize)> {
        self.limit
            .get()
            .map(|l| (l.total, l.total - l.permits.available_permits()))
    }
}

impl Limit {
    fn new(total: usize) -> Self {
        let total = total.max(1);
        Self {
            total,
            permits: Arc::new(Semaphore::new(total)),
        }
    }
}

impl fmt::Debug for ServerBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBudget")
            .field("server", &self.key)
            .field("usage", &self.usage())
            .finish()
    }
}

/// The budgets of every server the pools have connected to, kept for the process's lifetime
/// (a few per deployment): dropping one while connections still hold its permits would let a
/// new one exceed the server's limit.
#[derive(Debug, Default)]
pub(crate) struct Budgets {
    servers: std::sync::Mutex<HashMap<Arc<str>, Arc<ServerBudget>>>,
}

impl Budgets {
    /// The budget of `pg`'s server, created on first use (already known when `known`).
    pub(crate) fn for_server(
        &self,
        pg: &tokio_postgres::Config,
        known: Option<usize>,
    ) -> Arc<ServerBudget> {
        let key: Arc<str> = Arc::from(server_key(pg));
        self.lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(ServerBudget::new(key, known)))
            .clone()
    }

    /// Every server's budget, sorted by `host:port`.
    pub(crate) fn all(&self) -> Vec<Arc<ServerBudget>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<ServerBudget>>> {
        // Single insertions: a panic cannot leave the map inconsistent.
        self.servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `host:port` of a config's first host: what one server's `max_connections` bounds.
pub(crate) fn server_key(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// `(max_connections − superuser_reserved_connections − reserved_connections − reserve) /
/// replicas`, at least 1.
pub(crate) async fn server_budget(
    pg: &parapet_postgres::PgConfig,
    reserve: usize,
    replicas: usize,
) -> Result<usize, tokio_postgres::Error> {
    let (client, connection) = pg.connect().await?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::int, \
                current_setting('superuser_reserved_connections')::int \
                + coalesce(current_setting('reserved_connections', true)::int, 0)",
            &[],
        )
        .await?;
    drop(client);
    let _ = task.await;
    let max = usize::try_from(row.get::<_, i32>(0)).unwrap_or(0);
    let reserved = usize::try_from(row.get::<_, i32>(1)).unwrap_or(0);
    let available = max.saturating_sub(reserved).saturating_sub(reserve);
    Ok((available / replicas.max(1)).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_budget_per_host_and_port() {
        let budgets = Budgets::default();
        let config = |url: &str| url.parse::<tokio_postgres::Config>().unwrap();
        let a = budgets.for_server(&config("postgres://u@db1:5432/a"), Some(3));
        let b = budgets.for_server(&config("postgres://v@db1/b?application_name=x"), None);
        let c = budgets.for_server(&config("postgres://u@db1:5433/a"), Some(3));
        let d = budgets.for_server(&config("postgres://u@db2:5432/a"), Some(3));
        assert!(Arc::ptr_eq(&a, &b), "same server, other database and user");
        assert!(!Arc::ptr_eq(&a, &c) && !Arc::ptr_eq(&a, &d));
        assert_eq!(&*a.key, "db1:5432");
        assert_eq!(budgets.all().len(), 3);
        assert_eq!(a.usage(), Some((3, 0)));
    }

    #[tokio::test]
    async fn a_fixed_budget_hands_out_its_permits_and_no_more() {
        let budgets = Budgets::default();
        let pg = parapet_postgres::PgConfig::parse("postgres://u@db1/a").unwrap();
        let server = budgets.for_server(&pg, None);
        assert_eq!(server.usage(), None, "unknown until the first connection");
        let first = server.permit(&pg, BudgetRule::Fixed(2)).await.unwrap();
        let _second = server.permit(&pg, BudgetRule::Fixed(2)).await.unwrap();
        assert!(matches!(
            server.permit(&pg, BudgetRule::Fixed(2)).await,
            Err(PermitError::Exhausted)
        ));
        assert_eq!(server.usage(), Some((2, 2)));
        drop(first);
        assert_eq!(server.usage(), Some((2, 1)));
    }
}
