//! The demo from a map of variables: what `main` runs with the process environment and the
//! tests run with theirs, so a test of a deployment mode runs the very start-up the README's
//! commands do.

use std::collections::HashMap;

use axum::Router;
use parapet::CacheHandle;

use crate::{
    Error,
    api::{self, AppState},
    setup,
};

/// `DATABASE_URL` when none is given.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/parapet_demo";

/// The started demo: its router and what it connected to. Its `Debug` hides the database
/// URL's password.
pub struct Demo {
    /// The app, ready to serve.
    pub router: Router,
    /// The URL the API serves over (as [`setup::APP_ROLE`] when `DATABASE_URL` names a role
    /// that bypasses row-level security).
    pub database_url: String,
    /// The cache's handle, when the cache is on.
    pub cache: Option<CacheHandle>,
    /// Whether `/admin/cache` is served (`PARAPET_ADMIN_TOKEN` is set).
    pub admin: bool,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("router", &self.router)
            .field(
                "database_url",
                &parapet_postgres::redact(&self.database_url),
            )
            .field("cache", &self.cache)
            .field("admin", &self.admin)
            .finish()
    }
}

/// Prepares the database (create, migrate, seed `leads_per_tenant` leads per tenant, over
/// `DATABASE_DIRECT_URL` when set) and builds the app from `vars`: `DATABASE_URL` (default
/// [`DEFAULT_DATABASE_URL`]), `REDIS_URL`, `PARAPET_ADMIN_TOKEN` and every variable of
/// [`parapet::EnvConfig`], with the demo's defaults `PARAPET_TENANT_HOST=localhost`,
/// `PARAPET_CACHE_DEFAULT_TTL=/api/=10` and `PARAPET_QUOTA=on` (the per-plan limits of
/// `PARAPET_QUOTA_PLANS`, by default `free=20/s:40,pro=200/s:400`: globex is on `free`, acme on
/// `pro`; shared through Redis when it is configured, under `PARAPET_QUOTA_PREFIX`).
pub async fn build(
    vars: impl IntoIterator<Item = (String, String)>,
    leads_per_tenant: u32,
) -> Result<Demo, Error> {
    let mut vars: HashMap<String, String> = vars.into_iter().collect();
    let get = |vars: &HashMap<String, String>, name: &str| {
        vars.get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let database_url =
        get(&vars, "DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let direct_url = get(&vars, "DATABASE_DIRECT_URL");
    tracing::info!(leads_per_tenant, "preparing the database");
    let app_url = setup::prepare(&database_url, direct_url.as_deref(), leads_per_tenant).await?;

    vars.insert("DATABASE_URL".to_owned(), app_url.clone());
    for (name, default) in [
        ("PARAPET_TENANT_HOST", "localhost"),
        ("PARAPET_CACHE_DEFAULT_TTL", "/api/=10"),
        ("PARAPET_QUOTA", "on"),
    ] {
        vars.entry(name.to_owned())
            .or_insert_with(|| default.to_owned());
    }
    let admin_token = get(&vars, "PARAPET_ADMIN_TOKEN");
    let config = parapet::EnvConfig::from_map(vars)?;
    let cache_on = config.cache;
    let redis_configured = config.redis_url.is_some() || !config.redis_cluster_urls.is_empty();
    let stack = config.build().await?;
    let cache = stack.cache();
    if cache_on && !redis_configured {
        tracing::warn!(
            "neither REDIS_URL nor REDIS_CLUSTER_URLS is set: the local cache tier serves alone"
        );
    }
    if let Some(handle) = &cache
        && handle.shared_tier_ready().await == Some(false)
    {
        tracing::warn!("Redis is unreachable: the local cache tier serves alone until it is back");
    }
    if admin_token.is_none() {
        tracing::info!("PARAPET_ADMIN_TOKEN is not set: /admin/cache is disabled");
    }
    let state = AppState::new(&stack);
    let admin = admin_token.is_some();
    let router = api::router(state, stack, admin_token);
    Ok(Demo {
        router,
        database_url: app_url,
        cache,
        admin,
    })
}
