//! [`TenantPoolsBuilder`]: every limit and timeout of [`TenantPools`], with safe defaults.

use std::time::Duration;

use crate::{
    Isolation, IsolationScope, PoolError, TenantPools,
    budget::{BudgetRule, server_budget},
    fair::{default_share, share_of},
};

/// Builds [`TenantPools`]. Every wait is bounded by default; deadpool's own defaults wait forever.
///
/// | setting | default |
/// |---|---|
/// | [`max_per_pool`](Self::max_per_pool) | 20 connections |
/// | [`tenant_share`](Self::tenant_share) | `max(2, max_per_pool / 4)` connections of the shared pool per tenant (5 of 20); waiting tenants served in turn |
/// | [`budget`](Self::budget) | per database server (`host:port`): its `max_connections` − `superuser_reserved_connections` − `reserved_connections` − [`reserve`](Self::reserve) (10), divided by [`replicas`](Self::replicas) (1); read at build for the shared server, at the first connection for the others |
/// | [`max_pools`](Self::max_pools) | 100 (least recently used dropped first) |
/// | [`wait_timeout`](Self::wait_timeout) | 2 s |
/// | [`create_timeout`](Self::create_timeout) | 2 s (also the connect timeout) |
/// | [`recycle_timeout`](Self::recycle_timeout) | 1 s (setting and resetting a session) |
/// | [`idle_timeout`](Self::idle_timeout) | 30 s, then an idle connection is closed |
/// | [`pool_idle_timeout`](Self::pool_idle_timeout) | 300 s, then an unused pool is dropped |
/// | [`min_idle`](Self::min_idle) | 2 connections opened by [`TenantPools::warmup`] |
/// | [`slow_query`](Self::slow_query) | 500 ms, then a WARN event |
/// | [`isolation`](Self::isolation) | [`Isolation::RowLevelSecurity`] on `app.tenant_id` |
/// | [`scope`](Self::scope) | [`IsolationScope::Session`]; [`IsolationScope::Transaction`] behind a transaction-mode pooler |
#[must_use]
#[derive(Clone)]
pub struct TenantPoolsBuilder {
    shared_url: String,
    settings: SettingsDraft,
}

impl std::fmt::Debug for TenantPoolsBuilder {
    /// The shared URL's password is replaced by `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantPoolsBuilder")
            .field("shared_url", &parapet_postgres::redact(&self.shared_url))
            .field("settings", &self.settings)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct SettingsDraft {
    isolation: Isolation,
    scope: IsolationScope,
    max_per_pool: usize,
    tenant_share: Option<f64>,
    budget: Option<usize>,
    reserve: usize,
    replicas: usize,
    max_pools: usize,
    wait_timeout: Duration,
    create_timeout: Duration,
    recycle_timeout: Duration,
    idle_timeout: Duration,
    pool_idle_timeout: Duration,
    reap_interval: Duration,
    min_idle: usize,
    slow_query: Duration,
    application_name: String,
}

/// The validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) shared: parapet_postgres::PgConfig,
    pub(crate) isolation: Isolation,
    pub(crate) scope: IsolationScope,
    pub(crate) budget_rule: BudgetRule,
    pub(crate) max_per_pool: usize,
    /// The most connections of one pool a tenant may hold.
    pub(crate) per_tenant: usize,
    pub(crate) max_pools: usize,
    pub(crate) wait_timeout: Duration,
    pub(crate) create_timeout: Duration,
    pub(crate) recycle_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) reap_interval: Duration,
    pub(crate) min_idle: usize,
    pub(crate) slow_query: Duration,
    application_name: String,
}

impl Settings {
    /// Bounds the connect time and names the application on a target's config.
    pub(crate) fn apply_connection_settings(&self, pg: &mut tokio_postgres::Config) {
        pg.connect_timeout(self.create_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name(&self.application_name);
        }
    }
}

impl TenantPools {
    /// Starts building pools whose shared database is `shared_url` (tenants whose record has no
    /// database of their own use it). This URL and the tenants' own take libpq's TLS parameters
    /// (`sslmode=verify-full`, `sslrootcert=<file>`, ...: see [`parapet_postgres::PgConfig`]).
    pub fn builder(shared_url: impl Into<String>) -> TenantPoolsBuilder {
        TenantPoolsBuilder {
            shared_url: shared_url.into(),
            settings: SettingsDraft {
                isolation: Isolation::default(),
                scope: IsolationScope::default(),
                max_per_pool: 20,
                tenant_share: None,
                budget: None,
                reserve: 10,
                replicas: 1,
                max_pools: 100,
                wait_timeout: Duration::from_secs(2),
                create_timeout: Duration::from_secs(2),
                recycle_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(30),
                pool_idle_timeout: Duration::from_secs(300),
                reap_interval: Duration::from_secs(5),
                min_idle: 2,
                slow_query: Duration::from_millis(500),
                application_name: "parapet".to_owned(),
            },
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.settings.$name = value;
            self
        }
    };
}

impl TenantPoolsBuilder {
    setter!(
        /// How a checkout is confined to its tenant.
        isolation: Isolation
    );
    setter!(
        /// Where the tenant's setting lives: the session (default) or each transaction, which
        /// a transaction-mode pooler requires.
        scope: IsolationScope
    );
    setter!(
        /// The maximum connections of one pool (at least 1).
        max_per_pool: usize
    );
    setter!(
        /// Connections kept free for other clients when the budget is read from the server.
        reserve: usize
    );
    setter!(
        /// The maximum number of pools (at least 1); the least recently used is dropped first.
        max_pools: usize
    );
    setter!(
        /// How long a checkout waits for a connection.
        wait_timeout: Duration
    );
    setter!(
        /// How long opening a connection may take.
        create_timeout: Duration
    );
    setter!(
        /// How long setting the tenant on a connection, or resetting it, may take.
        recycle_timeout: Duration
    );
    setter!(
        /// How long a connection may stay idle before it is closed.
        idle_timeout: Duration
    );
    setter!(
        /// How long a pool may go unused before it is dropped.
        pool_idle_timeout: Duration
    );
    setter!(
        /// How often idle connections and pools are looked for (default 5 s).
        reap_interval: Duration
    );
    setter!(
        /// Connections [`TenantPools::warmup`] opens per pool.
        min_idle: usize
    );
    setter!(
        /// Queries slower than this emit a WARN event.
        slow_query: Duration
    );

    /// The share of the shared database's pool one tenant may hold at once, a fraction in
    /// `(0, 1]` of [`max_per_pool`](Self::max_per_pool), rounded up (`0.25` of 20 is 5; `1.0`
    /// lets one tenant take the whole pool). Default: `max(2, max_per_pool / 4)` connections.
    /// A tenant whose record names a database of its own has that pool to itself.
    ///
    /// Whatever the share, checkouts that wait are served one tenant at a time in turn, so a
    /// tenant's queue delays another tenant's checkout by at most one turn (in every pool). A value outside
    /// `(0, 1]` makes [`build`](Self::build) fail with a [`PoolError::Config`] naming
    /// `tenant_share`.
    pub fn tenant_share(mut self, share: f64) -> Self {
        self.settings.tenant_share = Some(share);
        self
    }

    /// The most connections all pools together may hold open to one database server
    /// (`host:port`), in this process. Without it, each server's budget is read from the server
    /// and divided by [`replicas`](Self::replicas).
    pub fn budget(mut self, connections: usize) -> Self {
        self.settings.budget = Some(connections);
        self
    }

    /// How many processes (replicas of the application) share each server's connections; the
    /// budget read from a server is divided by it, so that together they stay under its
    /// `max_connections` (default 1, at least 1). A fixed [`budget`](Self::budget) is not
    /// divided. A fleet larger than a server's connections goes through a pooler.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.settings.replicas = replicas.max(1);
        self
    }

    /// The `application_name` connections report (unless a URL sets its own).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.settings.application_name = name.into();
        self
    }

    /// Validates the settings and, unless a budget was given, reads the shared server's
    /// budget (`max_connections` and the reserved connections). When the server cannot be
    /// reached then, a warning says so and the budget is read at its first connection, so that
    /// an application can start while its database is down.
    /// A TLS failure is not an outage: a certificate that is not trusted or not valid for the
    /// host, or a server without TLS under `sslmode=require`, is a [`PoolError::Config`] naming
    /// the host and the reason.
    pub async fn build(self) -> Result<TenantPools, PoolError> {
        let d = self.settings;
        d.isolation.validate().map_err(PoolError::Config)?;
        let max_per_pool = d.max_per_pool.max(1);
        let per_tenant = match d.tenant_share {
            None => default_share(max_per_pool),
            Some(share) if share > 0.0 && share <= 1.0 => share_of(share, max_per_pool),
            Some(share) => {
                return Err(PoolError::Config(format!(
                    "tenant_share must be a fraction of the pool in (0, 1], not {share}"
                )));
            }
        };
        let mut shared = parapet_postgres::PgConfig::parse(&self.shared_url)
            .map_err(|e| PoolError::Config(format!("the shared database URL is invalid: {e}")))?;
        let settings = Settings {
            shared: shared.clone(),
            isolation: d.isolation,
            scope: d.scope,
            budget_rule: match d.budget {
                Some(budget) => BudgetRule::Fixed(budget.max(1)),
                None => BudgetRule::FromServer {
                    reserve: d.reserve,
                    replicas: d.replicas,
                },
            },
            max_per_pool,
            per_tenant,
            max_pools: d.max_pools.max(1),
            wait_timeout: d.wait_timeout,
            create_timeout: d.create_timeout,
            recycle_timeout: d.recycle_timeout,
            idle_timeout: d.idle_timeout,
            pool_idle_timeout: d.pool_idle_timeout,
            reap_interval: d.reap_interval.max(Duration::from_millis(10)),
            min_idle: d.min_idle,
            slow_query: d.slow_query,
            application_name: d.application_name,
        };
        settings.apply_connection_settings(&mut shared);
        let known = match settings.budget_rule {
            BudgetRule::Fixed(budget) => Some(budget),
            BudgetRule::FromServer { reserve, replicas } => {
                match server_budget(&shared, reserve, replicas).await {
                    Ok(budget) => Some(budget),
                    // A certificate or host name that does not match will not fix itself.
                    Err(e) if parapet_postgres::is_tls_failure(&e) => {
                        return Err(PoolError::Config(parapet_postgres::describe(&e)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read max_connections; the connection budget is read at the first connection");
                        None
                    }
                }
            }
        };
        Ok(TenantPools::from_settings(
            Settings { shared, ..settings },
            known,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_shared_urls_password() {
        for url in [
            "postgres://app:pool-secret@db:5432/crm",
            "postgres://app@db/crm?password=pool-secret",
            "host=db user=app password='pool-secret' dbname=crm",
        ] {
            let debug = format!("{:?}", TenantPools::builder(url));
            assert!(!debug.contains("pool-secret"), "{debug}");
            assert!(debug.contains("db"), "{debug}");
        }
    }
}
