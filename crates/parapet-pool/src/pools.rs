//! [`TenantPools`]: pools keyed by database target, bounded in count and in connections.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{PoolError as DpError, TimeoutType, Timeouts};
use parapet_tenant::{DatabaseTarget, Tenant, TenantId};

use crate::{
    Db, Isolation, PoolError,
    budget::{BudgetRule, Budgets, server_key},
    builder::Settings,
    fair::{FairGate, SharePermit},
    manager::{BudgetManager, ConnectError, Object, Pool},
    query::QueryContext,
};

/// PostgreSQL pools for many tenants, keyed by database target: tenants that share a database
/// share one pool (isolated per checkout), a tenant with its own database gets its own pool.
///
/// Everything is bounded: connections per pool, the number of pools (least recently used dropped
/// first), the connections of all pools together to one database server (a budget per
/// `host:port` below the server's `max_connections`, divided across replicas), and every wait
/// (checkout, connect, reset). Idle connections are closed
/// after a while, and so are idle pools. Cloning is cheap and shares the pools.
///
/// Build one with [`TenantPools::builder`].
#[derive(Clone)]
pub struct TenantPools {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) settings: Settings,
    budgets: Budgets,
    pools: Mutex<HashMap<Arc<str>, Entry>>,
    epoch: Instant,
    reaper_started: AtomicBool,
    wait_observer: RwLock<Option<WaitObserver>>,
}

/// What [`TenantPools::observe_waits`] calls after each checkout: the tenant, the pool's label
/// (`shared`, or the host and database of a tenant's own database) and the time the checkout
/// took to have a connection in hand.
type WaitObserver = Arc<dyn Fn(&TenantId, &str, Duration) + Send + Sync>;

struct Entry {
    pool: Pool,
    gate: Arc<FairGate>,
    label: Arc<str>,
    namespace: Arc<str>,
    last_used_ms: Arc<AtomicU64>,
}

/// A snapshot of the pools, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolsStatus {
    /// One entry per live pool.
    pub targets: Vec<TargetStatus>,
    /// The connection budgets of all servers together (those whose budget is known yet).
    pub budget: usize,
    /// Connections open across all pools (permits of the budgets in use).
    pub budget_in_use: usize,
    /// One entry per database server whose budget is known, sorted by `host:port`.
    pub servers: Vec<ServerStatus>,
}

/// The budget of one database server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStatus {
    /// `host:port`.
    pub server: String,
    /// The most connections this process may hold open to it.
    pub budget: usize,
    /// Connections open to it, across all pools.
    pub in_use: usize,
}

/// The status of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetStatus {
    /// `shared`, or the target's host and database (never its password).
    pub target: String,
    /// Connections open in this pool.
    pub size: usize,
    /// Open connections not checked out.
    pub available: usize,
    /// Checkouts waiting for a connection.
    pub waiting: usize,
    /// The pool's maximum size.
    pub max_size: usize,
    /// The most connections of this pool one tenant may hold at once.
    pub tenant_share: usize,
}

/// One tenant's use of the pools (all pools together), for metrics; see
/// [`TenantPools::tenant_usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantUsage {
    /// The tenant; `None` for the sum of the tenants left out of the top.
    pub tenant: Option<TenantId>,
    /// Connections checked out for it.
    pub in_use: usize,
    /// Its checkouts waiting for their turn or for a connection within its share.
    pub waiting: usize,
}

const SHARED: &str = "shared";

impl TenantPools {
    /// Pools on `settings`; `shared_budget` is the shared server's budget when already known.
    pub(crate) fn from_settings(settings: Settings, shared_budget: Option<usize>) -> Self {
        let budgets = Budgets::default();
        budgets.for_server(&settings.shared, shared_budget);
        Self {
            inner: Arc::new(Inner {
                budgets,
                settings,
                pools: Mutex::new(HashMap::new()),
                epoch: Instant::now(),
                reaper_started: AtomicBool::new(false),
                wait_observer: RwLock::new(None),
            }),
        }
    }

    /// Checks a connection out for `tenant`, with its isolation applied.
    ///
    /// Waits at most the wait timeout for a free connection; creating one is bounded by the
    /// create timeout. Returns [`PoolError::Timeout`], [`PoolError::BudgetExhausted`] or
    /// [`PoolError::Unavailable`] (503 to a client) rather than waiting longer.
    pub async fn checkout(&self, tenant: &Tenant) -> Result<Db, PoolError> {
        self.checkout_for_route(tenant, None).await
    }

    pub(crate) async fn checkout_for_route(
        &self,
        tenant: &Tenant,
        route: Option<Arc<str>>,
    ) -> Result<Db, PoolError> {
        self.start_reaper();
        let s = &self.inner.settings;
        let started = Instant::now();
        let deadline = started + s.wait_timeout;
        let mut share: Option<SharePermit> = None;
        let (obj, share, namespace, label) = loop {
            let (pool, gate, namespace, label) = self.pool_for(tenant)?;
            // The tenant's turn and share first (again when the pool was dropped and made anew).
            if !share.as_ref().is_some_and(|permit| permit.is_of(&gate)) {
                // A slot of a dropped pool's gate goes back before waiting for the new one.
                drop(share.take());
                match gate.acquire(tenant.id(), deadline).await {
                    Ok((permit, _)) => share = Some(permit),
                    Err(_) => return Err(PoolError::Timeout),
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeouts = Timeouts {
                wait: Some(remaining.max(Duration::from_millis(1))),
                create: Some(s.create_timeout),
                recycle: Some(s.recycle_timeout),
            };
            match pool.timeout_get(&timeouts).await {
                Ok(obj) => break (obj, share.take(), namespace, label),
                Err(DpError::Backend(ConnectError::Budget)) => {
                    if Instant::now() >= deadline {
                        return Err(PoolError::BudgetExhausted);
                    }
                    self.shed_idle_connection(&pool);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(DpError::Backend(ConnectError::Pg(e))) => {
                    return Err(PoolError::from_connect(e));
                }
                Err(DpError::Timeout(TimeoutType::Wait)) => return Err(PoolError::Timeout),
                Err(DpError::Timeout(_)) => return Err(PoolError::Unavailable(None)),
                // The pool was dropped (idle or least recently used) while we waited: retry.
                Err(DpError::Closed) if Instant::now() < deadline => {}
                Err(DpError::Closed) => return Err(PoolError::Timeout),
                Err(DpError::NoRuntimeSpecified | DpError::PostCreateHook(_)) => {
                    return Err(PoolError::Config("pool misconfigured".to_owned()));
                }
            }
        };
        if let Ok(observer) = self.inner.wait_observer.read()
            && let Some(observer) = observer.as_ref()
        {
            observer(tenant.id(), &label, started.elapsed());
        }
        let ctx = QueryContext {
            tenant: tenant.id().clone(),
            route,
            namespace,
            slow_query: s.slow_query,
            scope: s.scope,
            setting: s.isolation.setting_for(tenant.id()),
        };
        Ok(Db::checked_out(obj, share, ctx, s.recycle_timeout))
    }

    /// The pool of `tenant`'s target, created on first use (once, however many ask at once).
    #[allow(clippy::type_complexity)]
    fn pool_for(
        &self,
        tenant: &Tenant,
    ) -> Result<(Pool, Arc<FairGate>, Arc<str>, Arc<str>), PoolError> {
        let s = &self.inner.settings;
        let (key, url): (Arc<str>, Option<&str>) = match (tenant.database(), &s.isolation) {
            (DatabaseTarget::Dedicated(url), _) => (Arc::from(url.as_str()), Some(url)),
            (_, Isolation::DatabasePerTenant) => {
                return Err(PoolError::NoDedicatedDatabase(tenant.id().to_string()));
            }
            _ => (Arc::from(SHARED), None),
        };
        let now = self.now_ms();
        let mut pools = self.lock();
        if let Some(entry) = pools.get(&key) {
            entry.last_used_ms.store(now, Ordering::Relaxed);
            return Ok((
                entry.pool.clone(),
                entry.gate.clone(),
                entry.namespace.clone(),
                entry.label.clone(),
            ));
        }
        let pg = match url {
            None => s.shared.clone(),
            Some(url) => {
                let mut pg: parapet_postgres::PgConfig = url.parse().map_err(|_| {
                    PoolError::Config(format!(
                        "tenant {} has an invalid database URL",
                        tenant.id()
                    ))
                })?;
                s.apply_connection_settings(&mut pg);
                pg
            }
        };
        if pools.len() >= s.max_pools {
            evict_least_recently_used(&mut pools);
        }
        let label: Arc<str> = Arc::from(match url {
            None => SHARED.to_owned(),
            Some(_) => describe(&pg),
        });
        let namespace: Arc<str> = Arc::from(pg.get_dbname().unwrap_or("postgres"));
        let known = match s.budget_rule {
            BudgetRule::Fixed(budget) => Some(budget),
            BudgetRule::FromServer { .. } => None,
        };
        let manager = BudgetManager {
            server: self.inner.budgets.for_server(&pg, known),
            rule: s.budget_rule,
            pg,
        };
        let pool = Pool::builder(manager)
            .max_size(s.max_per_pool)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| PoolError::Config(e.to_string()))?;
        // The share binds in the shared database's pool; a tenant's own database is its own
        // (tenants naming the same one are still served in turn).
        let per_tenant = match url {
            None => s.per_tenant,
            Some(_) => s.max_per_pool,
        };
        let gate = Arc::new(FairGate::new(s.max_per_pool, per_tenant));
        pools.insert(
            key,
            Entry {
                pool: pool.clone(),
                gate: gate.clone(),
                label: label.clone(),
                namespace: namespace.clone(),
                last_used_ms: Arc::new(AtomicU64::new(now)),
            },
        );
        Ok((pool, gate, namespace, label))
    }

    /// Closes one idle connection of another pool on the same server (the least recently used
    /// that has one), so that a busy target can open a connection within its server's budget.
    fn shed_idle_connection(&self, except: &Pool) {
        let pools = self.lock();
        let server = &except.manager().server;
        let mut candidates: Vec<&Entry> = pools
            .values()
            .filter(|e| !std::ptr::eq(e.pool.manager(), except.manager()))
            .filter(|e| Arc::ptr_eq(&e.pool.manager().server, server))
            .filter(|e| e.pool.status().available > 0)
            .collect();
        candidates.sort_by_key(|e| e.last_used_ms.load(Ordering::Relaxed));
        if let Some(entry) = candidates.first() {
            let mut shed = false;
            let removed = entry.pool.retain(|_, _| std::mem::replace(&mut shed, true));
            drop(removed);
        }
    }

    /// Calls `observer` after every successful checkout with the tenant, the pool's label and
    /// how long the checkout waited for its connection (its turn among the tenants, a free
    /// connection, a new one opened): what `db.client.connection.wait_time` records. One
    /// observer at a time (a later call replaces it); it runs on the checkout's task, so it
    /// must be quick. `parapet_telemetry::metrics::observe_pool` installs one.
    pub fn observe_waits(
        &self,
        observer: impl Fn(&TenantId, &str, Duration) + Send + Sync + 'static,
    ) {
        if let Ok(mut slot) = self.inner.wait_observer.write() {
            *slot = Some(Arc::new(observer));
        }
    }

    /// Opens the tenant's pool's minimum idle connections ahead of traffic.
    pub async fn warmup(&self, tenant: &Tenant) -> Result<usize, PoolError> {
        let (pool, ..) = self.pool_for(tenant)?;
        let want = self
            .inner
            .settings
            .min_idle
            .min(self.inner.settings.max_per_pool);
        let mut held: Vec<Object> = Vec::with_capacity(want);
        for _ in 0..want {
            match pool.get().await {
                Ok(obj) => held.push(obj),
                Err(DpError::Backend(ConnectError::Pg(e))) => {
                    return Err(PoolError::from_connect(e));
                }
                Err(DpError::Backend(ConnectError::Budget)) => {
                    return Err(PoolError::BudgetExhausted);
                }
                Err(_) => return Err(PoolError::Unavailable(None)),
            }
        }
        Ok(held.len())
    }

    /// Warms up every tenant of a list (a start-up list of the busiest tenants, say).
    pub async fn warmup_all(&self, tenants: &[Tenant]) -> Result<usize, PoolError> {
        let mut opened = 0;
        for tenant in tenants {
            opened += self.warmup(tenant).await?;
        }
        Ok(opened)
    }

    /// A snapshot of every pool and of the servers' budgets.
    pub fn status(&self) -> PoolsStatus {
        let pools = self.lock();
        let mut targets: Vec<TargetStatus> = pools
            .values()
            .map(|e| {
                let st = e.pool.status();
                let (_, waiting_for_turn) = e.gate.totals();
                TargetStatus {
                    target: e.label.to_string(),
                    size: st.size,
                    available: st.available,
                    waiting: st.waiting + waiting_for_turn,
                    max_size: st.max_size,
                    tenant_share: e.gate.per_tenant(),
                }
            })
            .collect();
        targets.sort_by(|a, b| a.target.cmp(&b.target));
        drop(pools);
        let servers: Vec<ServerStatus> = self
            .inner
            .budgets
            .all()
            .iter()
            .filter_map(|server| {
                let (budget, in_use) = server.usage()?;
                Some(ServerStatus {
                    server: server.key.to_string(),
                    budget,
                    in_use,
                })
            })
            .collect();
        PoolsStatus {
            targets,
            budget: servers.iter().map(|s| s.budget).sum(),
            budget_in_use: servers.iter().map(|s| s.in_use).sum(),
            servers,
        }
    }

    /// The tenants holding or waiting for connections, all pools together: the `top` with the
    /// most (waiting first, then in use, then by id), and one entry with `tenant: None` that
    /// sums the others (present only when some were left out). Bounded whatever the number of
    /// tenants, for metrics attributes.
    pub fn tenant_usage(&self, top: usize) -> Vec<TenantUsage> {
        let gates: Vec<Arc<FairGate>> = self.lock().values().map(|e| e.gate.clone()).collect();
        let mut by_tenant: HashMap<TenantId, (usize, usize)> = HashMap::new();
        for gate in gates {
            for u in gate.tenants() {
                let sum = by_tenant.entry(u.tenant).or_default();
                sum.0 += u.in_use;
                sum.1 += u.waiting;
            }
        }
        let mut all: Vec<TenantUsage> = by_tenant
            .into_iter()
            .map(|(tenant, (in_use, waiting))| TenantUsage {
                tenant: Some(tenant),
                in_use,
                waiting,
            })
            .collect();
        all.sort_by(|a, b| {
            (b.waiting, b.in_use)
                .cmp(&(a.waiting, a.in_use))
                .then_with(|| a.tenant.cmp(&b.tenant))
        });
        if all.len() > top {
            let rest = all.split_off(top);
            all.push(TenantUsage {
                tenant: None,
                in_use: rest.iter().map(|u| u.in_use).sum(),
                waiting: rest.iter().map(|u| u.waiting).sum(),
            });
        }
        all
    }

    /// Closes idle connections and drops idle pools now (the reaper does it periodically).
    pub fn reap(&self) {
        self.inner.reap();
    }

    fn start_reaper(&self) {
        if self.inner.reaper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.settings.reap_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.reap();
            }
        });
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.inner.lock()
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single operations).
        self.pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reap(&self) {
        let s = &self.settings;
        let now = self.now_ms();
        let idle_pool_ms = u64::try_from(s.pool_idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut pools = self.lock();
        pools.retain(|_, entry| {
            drop(entry.pool.retain(|_, m| m.last_used() < s.idle_timeout));
            let st = entry.pool.status();
            let in_use = st.size.saturating_sub(st.available);
            let idle_for = now.saturating_sub(entry.last_used_ms.load(Ordering::Relaxed));
            let (shares_held, waiting_for_turn) = entry.gate.totals();
            let keep = in_use > 0
                || st.waiting > 0
                || shares_held > 0
                || waiting_for_turn > 0
                || idle_for < idle_pool_ms;
            if !keep {
                entry.pool.close();
            }
            keep
        });
    }
}

fn evict_least_recently_used(pools: &mut HashMap<Arc<str>, Entry>) {
    let victim = pools
        .iter()
        .min_by_key(|(_, e)| e.last_used_ms.load(Ordering::Relaxed))
        .map(|(k, _)| k.clone());
    if let Some(key) = victim
        && let Some(entry) = pools.remove(&key)
    {
        tracing::info!(target = %entry.label, "dropping the least recently used pool");
        entry.pool.close();
    }
}

/// `host:port/db` of a config, without user or password.
fn describe(pg: &tokio_postgres::Config) -> String {
    let mut label = format!("{}/{}", server_key(pg), pg.get_dbname().unwrap_or(""));
    if let Some(app) = pg.get_application_name() {
        label.push_str(&format!("?application_name={app}"));
    }
    label
}

impl fmt::Debug for TenantPools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantPools")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
