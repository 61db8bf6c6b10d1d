//! [`EnvConfig`]: the stack configured from environment variables.

use std::{collections::HashMap, path::PathBuf, str::FromStr, time::Duration};

use http::HeaderName;
use parapet_cache::{CacheLayer, RedisConfig, store::redact_url};
use parapet_pool::{Isolation, IsolationScope, TenantPools};
use parapet_postgres::redact;
use parapet_quota::{QuotaLayer, Rule};
use parapet_telemetry::TelemetryLayer;
use parapet_tenant::{
    HeaderResolver, HostResolver, JwtResolver, PathResolver, PgDirectory, TenantId, TenantLayer,
};

use crate::Parapet;

/// Why the environment does not describe a stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable that must be set is missing.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable is set to something that does not parse.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cache could not be built (an invalid Redis URL, say).
    #[error("cache: {0}")]
    Cache(#[from] parapet_cache::BuildError),
    /// The pools could not be built.
    #[error("pool: {0}")]
    Pool(#[from] parapet_pool::PoolError),
    /// The quota layer could not be built (an invalid Redis URL, say).
    #[error("quota: {0}")]
    Quota(#[from] parapet_quota::BuildError),
}

/// The stack's settings as read from environment variables; [`build`](Self::build) turns them
/// into a [`Parapet`].
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `DATABASE_URL` | required | the shared PostgreSQL database: the `tenants` directory and the pools; libpq's `sslmode` / `sslrootcert` / `sslcert` / `sslkey` apply (see [`PgConfig`](crate::postgres::PgConfig)) |
/// | `REDIS_URL` | unset: local tier only | Redis behind the local cache tier: `redis://`, `rediss://` (TLS), `redis+sentinel://host:26379,…/service` |
/// | `REDIS_CLUSTER_URLS` | unset | a Redis Cluster instead (not with `REDIS_URL`): seed nodes `redis://h1:7000,redis://h2:7001,…` (all `redis://` or all `rediss://`); the rest of the cluster is discovered from them (see [`RedisConfig::cluster`]) |
/// | `PARAPET_REDIS_CA_CERT` | unset: public roots | PEM file of the CA that signed the Redis servers' certificates (`rediss://`, one server or a Cluster's nodes) |
/// | `PARAPET_REDIS_CLIENT_CERT`, `PARAPET_REDIS_CLIENT_KEY` | unset | PEM files of a client certificate and its key (mutual TLS); both or neither |
/// | `PARAPET_TENANT_HEADER` | `x-tenant-id`; off when `PARAPET_TENANT_JWT_SECRET` is set | header naming the tenant; empty to disable. Beside a JWT, set it explicitly to turn it on: it may then only name the token's tenant |
/// | `PARAPET_TENANT_HOST` | unset | base domain: `{tenant}.<base>` names the tenant |
/// | `PARAPET_TENANT_APEX_HOSTS` | `127.0.0.1,[::1]` | hosts that name no tenant (with `PARAPET_TENANT_HOST`): requests to them use the other resolvers |
/// | `PARAPET_TENANT_PATH_PREFIX` | unset | path prefix: `<prefix>/{tenant}/…` names the tenant |
/// | `PARAPET_TENANT_JWT_SECRET` | unset | HS256 secret, at least 32 bytes: the `tenant_id` claim of a bearer JWT names the tenant, and every request needs a valid token (the header, host and path may only name the token's tenant) |
/// | `PARAPET_TENANT_JWT_AUDIENCE` | unset: not checked | the `aud` the tokens must carry (set it in production) |
/// | `PARAPET_TENANT_JWT_ISSUER` | unset: not checked | the `iss` the tokens must carry (set it in production) |
/// | `PARAPET_TENANT_JWT_LEEWAY_SECS` | `60` | clock skew allowed on `exp` and `nbf`, at most 300 |
/// | `PARAPET_CACHE` | `on` | `off` leaves the cache out |
/// | `PARAPET_CACHE_LOCAL_BYTES` | `67108864` (64 MiB) | bytes of the local tier; `0` for Redis only |
/// | `PARAPET_CACHE_TENANT_SHARE` | unset: no cap | the fraction in `(0, 1]` of the local tier one tenant's entries may hold; a tenant at its share has new entries refused by the local tier (see [`CacheLayerBuilder::local_tenant_share`](crate::cache::CacheLayerBuilder::local_tenant_share)) |
/// | `PARAPET_CACHE_PREFIX` | `parapet:cache:` | prefix of every Redis key |
/// | `PARAPET_CACHE_DEFAULT_TTL` | unset | `prefix=seconds,…`: responses under a path prefix that carry no freshness of their own are cached that long (`/api/=10`) |
/// | `PARAPET_CACHE_MAX_BODY_BYTES` | the cache's default | larger responses stream through uncached |
/// | `PARAPET_CACHE_TARGETED_FIELDS` | `CDN-Cache-Control` | the targeted cache-control fields (RFC 9213) the cache obeys, in precedence order, comma-separated (`Parapet-Cache-Control,CDN-Cache-Control`); `none` for `Cache-Control` alone |
/// | `PARAPET_QUOTA` | `off` | `on` adds per-tenant rate limits between the tenant layer and the cache (shared through `REDIS_URL` / `REDIS_CLUSTER_URLS` when set) |
/// | `PARAPET_QUOTA_PLANS` | `free=20/s:40,pro=200/s:400` | `plan=rule,…`: the rule of each plan (`COUNT/PERIOD[:BURST]`, periods `s`, `min`, `h`; or `unlimited`), see [`Rate`](crate::quota::Rate) |
/// | `PARAPET_QUOTA_TENANTS` | unset | `tenant=rule,…`: tenants' own rules, whatever their plan |
/// | `PARAPET_QUOTA_DEFAULT` | `unlimited` | the rule of plans not in `PARAPET_QUOTA_PLANS` |
/// | `PARAPET_QUOTA_HIT_COST` | `0.1` | the share of a request a cache hit costs (0 to 1) |
/// | `PARAPET_QUOTA_PREFIX` | `parapet:quota:` | prefix of the Redis keys |
/// | `PARAPET_QUOTA_REFUSAL_DELAY_MS` | `0`: off | refusal pacing: a refused request is answered between half this and this much later, so a client retrying in a loop slows to one attempt per delay on each connection (see [`QuotaLayerBuilder::refusal_delay`](crate::quota::QuotaLayerBuilder::refusal_delay)) |
/// | `PARAPET_QUOTA_MAX_HELD` | `10000` | the most refusals held at once by refusal pacing; more are answered at once |
/// | `PARAPET_QUOTA_MAX_HELD_PER_TENANT` | a quarter of `PARAPET_QUOTA_MAX_HELD` | the most refusals of one tenant held at once |
/// | `PARAPET_ISOLATION` | `rls` | `rls`, `schema` or `database` (see [`Isolation`]) |
/// | `PARAPET_ISOLATION_SCOPE` | `session` | `transaction` behind a transaction-mode pooler: PgBouncer, pgcat, Supavisor (see [`IsolationScope`]) |
/// | `PARAPET_POOL_BUDGET` | read from each server | connections all pools together may hold to one database server |
/// | `PARAPET_POOL_REPLICAS` | `1` | processes sharing each server: the budget read from it is divided by this |
/// | `PARAPET_POOL_MAX_PER_POOL` | `20` | connections one pool may hold |
/// | `PARAPET_POOL_TENANT_SHARE` | `max(2, max_per_pool / 4)` connections | the fraction in `(0, 1]` of the shared pool one tenant may hold at once (`0.25`); waiting tenants are served in turn whatever the share (see [`TenantPoolsBuilder::tenant_share`](crate::pool::TenantPoolsBuilder::tenant_share)) |
/// | `PARAPET_POOL_WAIT_TIMEOUT_MS` | `2000` | how long a checkout waits before a 503 |
/// | `PARAPET_SLOW_QUERY_MS` | `500` | queries slower than this are a WARN |
/// | `PARAPET_TELEMETRY` | `on` | `off` leaves the telemetry layer out |
/// | `PARAPET_SLOW_REQUEST_MS` | `1000` | requests slower than this are a WARN |
/// | `PARAPET_TELEMETRY_EXCLUDE` | `/healthz,/readyz` | paths that get no span or metrics |
/// | `PARAPET_TRACEPARENT_RESPONSE` | `off` | `on` adds a `traceparent` header to responses |
///
/// `OTEL_*` variables (service name, OTLP endpoint and protocol, sampler) are read by
/// [`parapet_telemetry::init`], which installs the exporters the layer's spans go to.
/// Its `Debug` output hides secrets (URL passwords, a `password=` in a URL's query or a libpq
/// key=value string, the JWT secret), so it can be logged; so do its errors.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct EnvConfig {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `REDIS_URL`.
    pub redis_url: Option<String>,
    /// `REDIS_CLUSTER_URLS`: the seed nodes of a Redis Cluster (empty when unset).
    pub redis_cluster_urls: Vec<String>,
    /// `PARAPET_REDIS_CA_CERT`.
    pub redis_ca_cert: Option<PathBuf>,
    /// `PARAPET_REDIS_CLIENT_CERT` and `PARAPET_REDIS_CLIENT_KEY`.
    pub redis_client_cert: Option<(PathBuf, PathBuf)>,
    /// `PARAPET_TENANT_HEADER` (`None` when disabled).
    pub tenant_header: Option<HeaderName>,
    /// `PARAPET_TENANT_HOST`.
    pub tenant_host: Option<String>,
    /// `PARAPET_TENANT_APEX_HOSTS`.
    pub tenant_apex_hosts: Vec<String>,
    /// `PARAPET_TENANT_PATH_PREFIX`.
    pub tenant_path_prefix: Option<String>,
    /// `PARAPET_TENANT_JWT_SECRET` (at least 32 bytes when set).
    pub tenant_jwt_secret: Option<String>,
    /// `PARAPET_TENANT_JWT_AUDIENCE`.
    pub tenant_jwt_audience: Option<String>,
    /// `PARAPET_TENANT_JWT_ISSUER`.
    pub tenant_jwt_issuer: Option<String>,
    /// `PARAPET_TENANT_JWT_LEEWAY_SECS`.
    pub tenant_jwt_leeway: Duration,
    /// `PARAPET_CACHE`.
    pub cache: bool,
    /// `PARAPET_CACHE_LOCAL_BYTES`.
    pub cache_local_bytes: u64,
    /// `PARAPET_CACHE_TENANT_SHARE`.
    pub cache_tenant_share: Option<Share>,
    /// `PARAPET_CACHE_PREFIX`.
    pub cache_prefix: Option<String>,
    /// `PARAPET_CACHE_DEFAULT_TTL`.
    pub cache_default_ttls: Vec<(String, Duration)>,
    /// `PARAPET_CACHE_MAX_BODY_BYTES`.
    pub cache_max_body_bytes: Option<usize>,
    /// `PARAPET_CACHE_TARGETED_FIELDS` (`None`: the cache's default; empty for `none`).
    pub cache_targeted_fields: Option<Vec<HeaderName>>,
    /// `PARAPET_QUOTA`.
    pub quota: bool,
    /// `PARAPET_QUOTA_PLANS`.
    pub quota_plans: Vec<(String, Rule)>,
    /// `PARAPET_QUOTA_TENANTS`.
    pub quota_tenants: Vec<(TenantId, Rule)>,
    /// `PARAPET_QUOTA_DEFAULT`.
    pub quota_default: Rule,
    /// `PARAPET_QUOTA_HIT_COST`.
    pub quota_hit_cost: f64,
    /// `PARAPET_QUOTA_PREFIX`.
    pub quota_prefix: Option<String>,
    /// `PARAPET_QUOTA_REFUSAL_DELAY_MS` (zero: off).
    pub quota_refusal_delay: Duration,
    /// `PARAPET_QUOTA_MAX_HELD`.
    pub quota_max_held: u64,
    /// `PARAPET_QUOTA_MAX_HELD_PER_TENANT`.
    pub quota_max_held_per_tenant: Option<u32>,
    /// `PARAPET_ISOLATION`.
    pub isolation: Isolation,
    /// `PARAPET_ISOLATION_SCOPE`.
    pub isolation_scope: IsolationScope,
    /// `PARAPET_POOL_BUDGET`.
    pub pool_budget: Option<usize>,
    /// `PARAPET_POOL_REPLICAS`.
    pub pool_replicas: usize,
    /// `PARAPET_POOL_MAX_PER_POOL`.
    pub pool_max_per_pool: usize,
    /// `PARAPET_POOL_TENANT_SHARE`.
    pub pool_tenant_share: Option<Share>,
    /// `PARAPET_POOL_WAIT_TIMEOUT_MS`.
    pub pool_wait_timeout: Duration,
    /// `PARAPET_SLOW_QUERY_MS`.
    pub slow_query: Duration,
    /// `PARAPET_TELEMETRY`.
    pub telemetry: bool,
    /// `PARAPET_SLOW_REQUEST_MS`.
    pub slow_request: Duration,
    /// `PARAPET_TELEMETRY_EXCLUDE`.
    pub telemetry_exclude: Vec<String>,
    /// `PARAPET_TRACEPARENT_RESPONSE`.
    pub traceparent_response: bool,
}

impl std::fmt::Debug for EnvConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cluster: Vec<String> = self
            .redis_cluster_urls
            .iter()
            .map(|u| redact_url(u))
            .collect();
        f.debug_struct("EnvConfig")
            .field("database_url", &redact(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_cluster_urls", &cluster)
            .field("redis_ca_cert", &self.redis_ca_cert)
            .field("redis_client_cert", &self.redis_client_cert)
            .field("tenant_header", &self.tenant_header)
            .field("tenant_host", &self.tenant_host)
            .field("tenant_apex_hosts", &self.tenant_apex_hosts)
            .field("tenant_path_prefix", &self.tenant_path_prefix)
            .field(
                "tenant_jwt_secret",
                &self.tenant_jwt_secret.as_ref().map(|_| "***"),
            )
            .field("tenant_jwt_audience", &self.tenant_jwt_audience)
            .field("tenant_jwt_issuer", &self.tenant_jwt_issuer)
            .field("tenant_jwt_leeway", &self.tenant_jwt_leeway)
            .field("cache", &self.cache)
            .field("cache_local_bytes", &self.cache_local_bytes)
            .field("cache_tenant_share", &self.cache_tenant_share)
            .field("cache_prefix", &self.cache_prefix)
            .field("cache_default_ttls", &self.cache_default_ttls)
            .field("cache_max_body_bytes", &self.cache_max_body_bytes)
            .field("cache_targeted_fields", &self.cache_targeted_fields)
            .field("quota", &self.quota)
            .field("quota_plans", &self.quota_plans)
            .field("quota_tenants", &self.quota_tenants)
            .field("quota_default", &self.quota_default)
            .field("quota_hit_cost", &self.quota_hit_cost)
            .field("quota_prefix", &self.quota_prefix)
            .field("quota_refusal_delay", &self.quota_refusal_delay)
            .field("quota_max_held", &self.quota_max_held)
            .field("quota_max_held_per_tenant", &self.quota_max_held_per_tenant)
            .field("isolation", &self.isolation)
            .field("isolation_scope", &self.isolation_scope)
            .field("pool_budget", &self.pool_budget)
            .field("pool_replicas", &self.pool_replicas)
            .field("pool_max_per_pool", &self.pool_max_per_pool)
            .field("pool_tenant_share", &self.pool_tenant_share)
            .field("pool_wait_timeout", &self.pool_wait_timeout)
            .field("slow_query", &self.slow_query)
            .field("telemetry", &self.telemetry)
            .field("slow_request", &self.slow_request)
            .field("telemetry_exclude", &self.telemetry_exclude)
            .field("traceparent_response", &self.traceparent_response)
            .finish()
    }
}

impl EnvConfig {
    /// Reads the process environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a missing `DATABASE_URL` or a value that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(std::env::vars())
    }

    /// Reads the given variables instead of the process environment (for tests and for
    /// configuration files turned into variables).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a missing `DATABASE_URL` or a value that does not parse.
    pub fn from_map<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let database_url = get("DATABASE_URL").ok_or(ConfigError::Missing("DATABASE_URL"))?;
        let tenant_jwt_secret = get("PARAPET_TENANT_JWT_SECRET");
        if let Some(secret) = &tenant_jwt_secret
            && secret.len() < JwtResolver::MIN_SECRET_LEN
        {
            return Err(ConfigError::Invalid {
                name: "PARAPET_TENANT_JWT_SECRET",
                // Never the secret itself.
                value: "***".to_owned(),
                reason: format!(
                    "{} bytes long; an HS256 secret needs at least {} (generate one with `openssl rand -base64 48`)",
                    secret.len(),
                    JwtResolver::MIN_SECRET_LEN
                ),
            });
        }
        let tenant_header = match vars.get("PARAPET_TENANT_HEADER").map(|v| v.trim()) {
            // Beside a JWT the header is off unless asked for: a request must not name a tenant
            // without a token.
            None if tenant_jwt_secret.is_some() => None,
            None => Some(HeaderName::from_static("x-tenant-id")),
            Some("") => None,
            Some(name) => Some(
                HeaderName::from_str(name).map_err(|e| ConfigError::Invalid {
                    name: "PARAPET_TENANT_HEADER",
                    value: name.to_owned(),
                    reason: e.to_string(),
                })?,
            ),
        };
        let isolation = match get("PARAPET_ISOLATION").as_deref() {
            None | Some("rls") => Isolation::row_level_security(),
            Some("schema") => Isolation::schema_per_tenant(),
            Some("database") => Isolation::DatabasePerTenant,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "PARAPET_ISOLATION",
                    value: other.to_owned(),
                    reason: "expected rls, schema or database".to_owned(),
                });
            }
        };
        let redis_client_cert = match (
            get("PARAPET_REDIS_CLIENT_CERT"),
            get("PARAPET_REDIS_CLIENT_KEY"),
        ) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(ConfigError::Invalid {
                    name: "PARAPET_REDIS_CLIENT_CERT",
                    value: cert,
                    reason: "PARAPET_REDIS_CLIENT_KEY must be set too".to_owned(),
                });
            }
            (None, Some(key)) => {
                return Err(ConfigError::Invalid {
                    name: "PARAPET_REDIS_CLIENT_KEY",
                    value: key,
                    reason: "PARAPET_REDIS_CLIENT_CERT must be set too".to_owned(),
                });
            }
        };
        let redis_url = get("REDIS_URL");
        let redis_cluster_urls = cluster_urls(&get, redis_url.is_some())?;
        let isolation_scope = match get("PARAPET_ISOLATION_SCOPE").as_deref() {
            None | Some("session") => IsolationScope::Session,
            Some("transaction") => IsolationScope::Transaction,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "PARAPET_ISOLATION_SCOPE",
                    value: other.to_owned(),
                    reason: "expected session or transaction".to_owned(),
                });
            }
        };
        let pool_replicas = match number::<usize>(&get, "PARAPET_POOL_REPLICAS")? {
            None => 1,
            Some(0) => {
                return Err(ConfigError::Invalid {
                    name: "PARAPET_POOL_REPLICAS",
                    value: "0".to_owned(),
                    reason: "expected at least 1".to_owned(),
                });
            }
            Some(n) => n,
        };
        Ok(Self {
            database_url,
            redis_url,
            redis_cluster_urls,
            redis_ca_cert: get("PARAPET_REDIS_CA_CERT").map(PathBuf::from),
            redis_client_cert,
            tenant_header,
            tenant_host: get("PARAPET_TENANT_HOST"),
            tenant_apex_hosts: list(&get, "PARAPET_TENANT_APEX_HOSTS", "127.0.0.1,[::1]"),
            tenant_path_prefix: get("PARAPET_TENANT_PATH_PREFIX"),
            tenant_jwt_secret,
            tenant_jwt_audience: get("PARAPET_TENANT_JWT_AUDIENCE"),
            tenant_jwt_issuer: get("PARAPET_TENANT_JWT_ISSUER"),
            tenant_jwt_leeway: jwt_leeway(&get)?,
            cache: switch(&get, "PARAPET_CACHE", true)?,
            cache_local_bytes: number(&get, "PARAPET_CACHE_LOCAL_BYTES")?.unwrap_or(64 << 20),
            cache_tenant_share: number(&get, "PARAPET_CACHE_TENANT_SHARE")?,
            cache_prefix: get("PARAPET_CACHE_PREFIX"),
            cache_default_ttls: list(&get, "PARAPET_CACHE_DEFAULT_TTL", "")
                .iter()
                .map(|entry| route_ttl(entry))
                .collect::<Result<_, _>>()?,
            cache_max_body_bytes: number(&get, "PARAPET_CACHE_MAX_BODY_BYTES")?,
            cache_targeted_fields: targeted_fields(&get)?,
            quota: switch(&get, "PARAPET_QUOTA", false)?,
            quota_plans: quota_plans(&get)?,
            quota_tenants: quota_tenants(&get)?,
            quota_default: match get("PARAPET_QUOTA_DEFAULT") {
                None => Rule::Unlimited,
                Some(value) => value.parse().map_err(|e| ConfigError::Invalid {
                    name: "PARAPET_QUOTA_DEFAULT",
                    value: value.clone(),
                    reason: format!("{e}"),
                })?,
            },
            quota_hit_cost: hit_cost(&get)?,
            quota_prefix: get("PARAPET_QUOTA_PREFIX"),
            quota_refusal_delay: millis(&get, "PARAPET_QUOTA_REFUSAL_DELAY_MS")?
                .unwrap_or(Duration::ZERO),
            quota_max_held: number(&get, "PARAPET_QUOTA_MAX_HELD")?
                .unwrap_or(parapet_quota::DEFAULT_MAX_HELD),
            quota_max_held_per_tenant: number(&get, "PARAPET_QUOTA_MAX_HELD_PER_TENANT")?,
            isolation,
            isolation_scope,
            pool_budget: number(&get, "PARAPET_POOL_BUDGET")?,
            pool_replicas,
            pool_max_per_pool: number(&get, "PARAPET_POOL_MAX_PER_POOL")?.unwrap_or(20),
            pool_tenant_share: number(&get, "PARAPET_POOL_TENANT_SHARE")?,
            pool_wait_timeout: millis(&get, "PARAPET_POOL_WAIT_TIMEOUT_MS")?
                .unwrap_or(Duration::from_secs(2)),
            slow_query: millis(&get, "PARAPET_SLOW_QUERY_MS")?
                .unwrap_or(Duration::from_millis(500)),
            telemetry: switch(&get, "PARAPET_TELEMETRY", true)?,
            slow_request: millis(&get, "PARAPET_SLOW_REQUEST_MS")?
                .unwrap_or(Duration::from_secs(1)),
            telemetry_exclude: list(&get, "PARAPET_TELEMETRY_EXCLUDE", "/healthz,/readyz"),
            traceparent_response: switch(&get, "PARAPET_TRACEPARENT_RESPONSE", false)?,
        })
    }

    /// Builds the stack: the PostgreSQL tenant directory and the pools on `DATABASE_URL`, the
    /// cache (with Redis when `REDIS_URL` or `REDIS_CLUSTER_URLS` is set), and the telemetry
    /// layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid URL or pool setting. A server that is down is not an
    /// error: requests get 503 (PostgreSQL) or local-tier caching (Redis) until it is back.
    pub async fn build(self) -> Result<Parapet, ConfigError> {
        let mut builder = Parapet::builder();
        if self.telemetry {
            let exclude = self.telemetry_exclude.clone();
            builder = builder.telemetry(
                TelemetryLayer::new()
                    .filter(move |req| !exclude.iter().any(|p| p == req.uri.path()))
                    .slow_request_threshold(self.slow_request)
                    .traceparent_in_response(self.traceparent_response),
            );
        }
        builder = builder.tenant(self.tenant_layer()?);
        if self.quota {
            let mut quota = QuotaLayer::builder()
                .default_rule(self.quota_default)
                .hit_cost(self.quota_hit_cost);
            for (plan, rule) in &self.quota_plans {
                quota = quota.plan(plan.clone(), *rule);
            }
            for (tenant, rule) in &self.quota_tenants {
                quota = quota.tenant(tenant.clone(), *rule);
            }
            if let Some(redis) = self.redis_config() {
                quota = quota.redis(redis);
            }
            if let Some(prefix) = &self.quota_prefix {
                quota = quota.prefix(prefix.clone());
            }
            quota = quota
                .refusal_delay(self.quota_refusal_delay)
                .max_held_refusals(self.quota_max_held);
            if let Some(n) = self.quota_max_held_per_tenant {
                quota = quota.max_held_per_tenant(n);
            }
            builder = builder.quota(quota.build()?);
        }
        if self.cache {
            let mut cache = CacheLayer::builder();
            let redis = self.redis_config();
            if self.cache_local_bytes > 0 || redis.is_none() {
                cache = cache.local(self.cache_local_bytes);
            }
            if let Some(redis) = redis {
                cache = cache.redis(redis);
            }
            if let Some(prefix) = &self.cache_prefix {
                cache = cache.prefix(prefix.clone());
            }
            for (prefix, ttl) in &self.cache_default_ttls {
                cache = cache.default_ttl_for(prefix.clone(), *ttl);
            }
            if let Some(bytes) = self.cache_max_body_bytes {
                cache = cache.max_body_size(bytes);
            }
            if let Some(share) = self.cache_tenant_share {
                cache = cache.local_tenant_share(share.get());
            }
            if let Some(fields) = &self.cache_targeted_fields {
                cache = cache.targeted_fields(fields);
            }
            builder = builder.cache(cache.build()?);
        }
        let mut pools = TenantPools::builder(self.database_url.clone())
            .isolation(self.isolation.clone())
            .scope(self.isolation_scope)
            .replicas(self.pool_replicas)
            .max_per_pool(self.pool_max_per_pool)
            .wait_timeout(self.pool_wait_timeout)
            .slow_query(self.slow_query);
        if let Some(budget) = self.pool_budget {
            pools = pools.budget(budget);
        }
        if let Some(share) = self.pool_tenant_share {
            pools = pools.tenant_share(share.get());
        }
        Ok(builder.pools(pools.build().await?).build())
    }

    /// The Redis tier: one URL or a Cluster's seed nodes, with the TLS files either way.
    fn redis_config(&self) -> Option<RedisConfig> {
        let mut redis = match (&self.redis_url, self.redis_cluster_urls.as_slice()) {
            (Some(url), _) => RedisConfig::new(url.clone()),
            (None, []) => return None,
            (None, nodes) => RedisConfig::cluster(nodes.iter().cloned()),
        };
        if let Some(ca) = &self.redis_ca_cert {
            redis = redis.ca_cert_file(ca.clone());
        }
        if let Some((cert, key)) = &self.redis_client_cert {
            redis = redis.client_cert_files(cert.clone(), key.clone());
        }
        Some(redis)
    }

    fn tenant_layer(&self) -> Result<TenantLayer, ConfigError> {
        // The `tenants` table, behind the layer's cached lookup.
        let directory =
            PgDirectory::connect(&self.database_url).map_err(|e| ConfigError::Invalid {
                name: "DATABASE_URL",
                value: redact(&self.database_url),
                reason: e.to_string(),
            })?;
        let mut layer = TenantLayer::builder(directory);
        if let Some(header) = &self.tenant_header {
            layer = layer.resolver(HeaderResolver::new().header(header.clone()));
        }
        if let Some(host) = &self.tenant_host {
            layer =
                layer.resolver(HostResolver::new(host).apex_hosts(self.tenant_apex_hosts.iter()));
        }
        if let Some(prefix) = &self.tenant_path_prefix {
            layer = layer.resolver(PathResolver::new(prefix));
        }
        if let Some(secret) = &self.tenant_jwt_secret {
            layer = layer.resolver(self.jwt_resolver(secret)?);
        }
        Ok(layer.build())
    }

    /// The JWT resolver: the authority of the chain, so every request needs a valid token.
    fn jwt_resolver(&self, secret: &str) -> Result<JwtResolver, ConfigError> {
        let mut jwt = JwtResolver::hs256(secret.as_bytes()).map_err(|e| ConfigError::Invalid {
            name: "PARAPET_TENANT_JWT_SECRET",
            value: "***".to_owned(),
            reason: e.to_string(),
        })?;
        jwt = jwt.leeway(self.tenant_jwt_leeway.as_secs());
        if let Some(audience) = &self.tenant_jwt_audience {
            jwt = jwt.audience(audience);
        }
        if let Some(issuer) = &self.tenant_jwt_issuer {
            jwt = jwt.issuer(issuer);
        }
        if self.tenant_jwt_audience.is_none() || self.tenant_jwt_issuer.is_none() {
            tracing::warn!(
                "PARAPET_TENANT_JWT_AUDIENCE or PARAPET_TENANT_JWT_ISSUER is not set: tokens \
                 issued with this secret for another service are accepted"
            );
        }
        Ok(jwt)
    }
}

/// `REDIS_CLUSTER_URLS`: seed URLs of one scheme, `redis://` or `rediss://`; an error when
/// `REDIS_URL` is set too, since the two name different deployments.
fn cluster_urls(
    get: &impl Fn(&str) -> Option<String>,
    redis_url_set: bool,
) -> Result<Vec<String>, ConfigError> {
    const NAME: &str = "REDIS_CLUSTER_URLS";
    let urls = list(get, NAME, "");
    let invalid = |reason: &str| ConfigError::Invalid {
        name: NAME,
        value: urls
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(","),
        reason: reason.to_owned(),
    };
    if urls.is_empty() {
        return Ok(urls);
    }
    if redis_url_set {
        return Err(invalid(
            "REDIS_URL is set too: set REDIS_URL for one server (or Sentinel), REDIS_CLUSTER_URLS for a Cluster, not both",
        ));
    }
    let scheme = |url: &str| {
        ["redis://", "rediss://"]
            .into_iter()
            .find(|scheme| url.starts_with(scheme))
    };
    let first = scheme(&urls[0]);
    if urls.iter().any(|url| scheme(url).is_none()) {
        return Err(invalid(
            "every seed node must be a redis:// or rediss:// URL",
        ));
    }
    if urls.iter().any(|url| scheme(url) != first) {
        return Err(invalid(
            "mixes redis:// and rediss://: a Cluster's nodes are all reached with TLS or all without",
        ));
    }
    Ok(urls)
}

/// `PARAPET_TENANT_JWT_LEEWAY_SECS`: seconds, at most [`JwtResolver::MAX_LEEWAY`].
fn jwt_leeway(get: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    const NAME: &str = "PARAPET_TENANT_JWT_LEEWAY_SECS";
    match number::<u64>(get, NAME)? {
        None => Ok(Duration::from_secs(JwtResolver::DEFAULT_LEEWAY)),
        Some(secs) if secs > JwtResolver::MAX_LEEWAY => Err(ConfigError::Invalid {
            name: NAME,
            value: secs.to_string(),
            reason: format!("at most {} seconds", JwtResolver::MAX_LEEWAY),
        }),
        Some(secs) => Ok(Duration::from_secs(secs)),
    }
}

/// `PARAPET_QUOTA_PLANS`: `plan=rule,…`; an error names the plan and the field.
fn quota_plans(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<(String, Rule)>, ConfigError> {
    const NAME: &str = "PARAPET_QUOTA_PLANS";
    list(get, NAME, "free=20/s:40,pro=200/s:400")
        .iter()
        .map(|entry| {
            let (plan, rule) = entry.split_once('=').ok_or_else(|| ConfigError::Invalid {
                name: NAME,
                value: entry.clone(),
                reason: "expected plan=rule (free=20/s:40)".to_owned(),
            })?;
            let plan = plan.trim();
            let rule = rule.parse::<Rule>().map_err(|e| ConfigError::Invalid {
                name: NAME,
                value: entry.clone(),
                reason: format!("plan {plan}: {e}"),
            })?;
            Ok((plan.to_owned(), rule))
        })
        .collect()
}

/// `PARAPET_QUOTA_TENANTS`: `tenant=rule,…`; an error names the tenant and the field.
fn quota_tenants(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<(TenantId, Rule)>, ConfigError> {
    const NAME: &str = "PARAPET_QUOTA_TENANTS";
    list(get, NAME, "")
        .iter()
        .map(|entry| {
            let invalid = |reason: String| ConfigError::Invalid {
                name: NAME,
                value: entry.clone(),
                reason,
            };
            let (tenant, rule) = entry
                .split_once('=')
                .ok_or_else(|| invalid("expected tenant=rule (acme=500/s:1000)".to_owned()))?;
            let tenant = tenant.trim();
            let id = TenantId::parse(tenant)
                .map_err(|e| invalid(format!("tenant {tenant:?}: id: {e}")))?;
            let rule = rule
                .parse::<Rule>()
                .map_err(|e| invalid(format!("tenant {tenant}: {e}")))?;
            Ok((id, rule))
        })
        .collect()
}

/// `PARAPET_QUOTA_HIT_COST`: a fraction from 0 to 1.
fn hit_cost(get: &impl Fn(&str) -> Option<String>) -> Result<f64, ConfigError> {
    let Some(value) = get("PARAPET_QUOTA_HIT_COST") else {
        return Ok(parapet_quota::DEFAULT_HIT_COST);
    };
    match value.parse::<f64>() {
        Ok(cost) if (0.0..=1.0).contains(&cost) => Ok(cost),
        _ => Err(ConfigError::Invalid {
            name: "PARAPET_QUOTA_HIT_COST",
            value,
            reason: "expected a number from 0 to 1".to_owned(),
        }),
    }
}

fn list(get: &impl Fn(&str) -> Option<String>, name: &str, default: &str) -> Vec<String> {
    get(name)
        .unwrap_or_else(|| default.to_owned())
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `PARAPET_CACHE_TARGETED_FIELDS`: header names in order, or `none`.
fn targeted_fields(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Vec<HeaderName>>, ConfigError> {
    const NAME: &str = "PARAPET_CACHE_TARGETED_FIELDS";
    let Some(value) = get(NAME) else {
        return Ok(None);
    };
    if value.trim().eq_ignore_ascii_case("none") {
        return Ok(Some(Vec::new()));
    }
    let mut fields = Vec::new();
    for name in list(get, NAME, "") {
        let invalid = |reason: &str| ConfigError::Invalid {
            name: NAME,
            value: value.clone(),
            reason: format!("{name:?}: {reason}"),
        };
        let field =
            HeaderName::try_from(name.as_str()).map_err(|_| invalid("not a header name"))?;
        if field == http::header::CACHE_CONTROL {
            return Err(invalid("cache-control is what targeted fields replace"));
        }
        fields.push(field);
    }
    Ok(Some(fields))
}

fn route_ttl(entry: &str) -> Result<(String, Duration), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "PARAPET_CACHE_DEFAULT_TTL",
        value: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let (prefix, seconds) = entry
        .rsplit_once('=')
        .ok_or_else(|| invalid("expected prefix=seconds"))?;
    if !prefix.starts_with('/') {
        return Err(invalid("the prefix must start with /"));
    }
    let seconds: u64 = seconds
        .trim()
        .parse()
        .map_err(|_| invalid("seconds must be a whole number"))?;
    Ok((prefix.trim().to_owned(), Duration::from_secs(seconds)))
}

fn switch(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("on" | "true" | "1" | "yes") => Ok(true),
        Some("off" | "false" | "0" | "no") => Ok(false),
        Some(other) => Err(ConfigError::Invalid {
            name,
            value: other.to_owned(),
            reason: "expected on or off".to_owned(),
        }),
    }
}

fn number<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    get(name)
        .map(|v| {
            v.parse::<T>().map_err(|e| ConfigError::Invalid {
                name,
                value: v.clone(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// A fraction in `(0, 1]`: the share of a pool or of the local cache tier one tenant may hold.
///
/// Parses from a decimal (`0.25`); `0`, negative values, values above 1 and `NaN` are refused.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Share(f64);

// Never NaN (refused when made), so equality is total.
impl Eq for Share {}

impl Share {
    /// `share` when it is in `(0, 1]`.
    #[must_use]
    pub fn new(share: f64) -> Option<Self> {
        (share > 0.0 && share <= 1.0).then_some(Self(share))
    }

    /// The fraction.
    #[must_use]
    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for Share {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let share: f64 = s
            .trim()
            .parse()
            .map_err(|e| format!("expected a fraction such as 0.25: {e}"))?;
        Self::new(share).ok_or_else(|| "expected a fraction in (0, 1], such as 0.25".to_owned())
    }
}

fn millis(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Duration>, ConfigError> {
    Ok(number::<u64>(get, name)?.map(Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: (&str, &str) = ("DATABASE_URL", "postgres://app:secret@127.0.0.1:5432/crm");
    /// An HS256 secret of the minimum length.
    const SECRET: &str = "jwt-secret-jwt-secret-jwt-secret";

    #[test]
    fn defaults() {
        let c = EnvConfig::from_map([URL]).unwrap();
        assert_eq!(
            c.tenant_header,
            Some(HeaderName::from_static("x-tenant-id"))
        );
        assert!(c.cache && c.telemetry && !c.traceparent_response);
        assert_eq!(c.cache_local_bytes, 64 << 20);
        assert_eq!(c.isolation, Isolation::row_level_security());
        assert_eq!(c.isolation_scope, IsolationScope::Session);
        assert_eq!(c.pool_budget, None);
        assert_eq!(c.pool_replicas, 1);
        assert_eq!(c.pool_max_per_pool, 20);
        assert_eq!(c.pool_tenant_share, None);
        assert_eq!(c.cache_tenant_share, None);
        assert_eq!(c.slow_query, Duration::from_millis(500));
        assert_eq!(c.slow_request, Duration::from_secs(1));
        assert_eq!(c.telemetry_exclude, ["/healthz", "/readyz"]);
        assert_eq!(c.redis_url, None);
        assert!(c.redis_cluster_urls.is_empty());
        assert_eq!((c.redis_ca_cert, c.redis_client_cert), (None, None));
        assert_eq!(c.tenant_apex_hosts, ["127.0.0.1", "[::1]"]);
        assert_eq!(c.tenant_jwt_secret, None);
        assert_eq!((c.tenant_jwt_audience, c.tenant_jwt_issuer), (None, None));
        assert_eq!(c.tenant_jwt_leeway, Duration::from_secs(60));
    }

    #[test]
    fn quota_variables() {
        use parapet_quota::Rate;

        let c = EnvConfig::from_map([URL]).unwrap();
        assert!(!c.quota, "off unless asked for");
        assert_eq!(
            c.quota_plans,
            [
                (
                    "free".to_owned(),
                    Rule::Limited(Rate::per_second(20).burst(40))
                ),
                (
                    "pro".to_owned(),
                    Rule::Limited(Rate::per_second(200).burst(400))
                ),
            ]
        );
        assert_eq!(c.quota_default, Rule::Unlimited);
        assert!((c.quota_hit_cost - 0.1).abs() < f64::EPSILON);
        assert_eq!(
            c.quota_refusal_delay,
            Duration::ZERO,
            "no pacing unless asked for"
        );
        assert_eq!(c.quota_max_held, 10_000);
        assert_eq!(c.quota_max_held_per_tenant, None);

        let c = EnvConfig::from_map([
            URL,
            ("PARAPET_QUOTA", "on"),
            ("PARAPET_QUOTA_PLANS", "free=5/s, team=1000/min:50"),
            ("PARAPET_QUOTA_TENANTS", "acme=unlimited,globex=1/s:2"),
            ("PARAPET_QUOTA_DEFAULT", "10/s"),
            ("PARAPET_QUOTA_HIT_COST", "0"),
            ("PARAPET_QUOTA_PREFIX", "q:"),
            ("PARAPET_QUOTA_REFUSAL_DELAY_MS", "750"),
            ("PARAPET_QUOTA_MAX_HELD", "400"),
            ("PARAPET_QUOTA_MAX_HELD_PER_TENANT", "30"),
        ])
        .unwrap();
        assert!(c.quota);
        assert_eq!(c.quota_plans[1].0, "team");
        assert_eq!(
            c.quota_tenants,
            [
                (TenantId::parse("acme").unwrap(), Rule::Unlimited),
                (
                    TenantId::parse("globex").unwrap(),
                    Rule::Limited(Rate::per_second(1).burst(2))
                ),
            ]
        );
        assert_eq!(c.quota_default, Rule::Limited(Rate::per_second(10)));
        assert_eq!(c.quota_hit_cost, 0.0);
        assert_eq!(c.quota_prefix.as_deref(), Some("q:"));
        assert_eq!(c.quota_refusal_delay, Duration::from_millis(750));
        assert_eq!(
            (c.quota_max_held, c.quota_max_held_per_tenant),
            (400, Some(30))
        );
    }

    #[test]
    fn quota_errors_name_the_plan_or_tenant_and_the_field() {
        let error = |name: &str, value: &str| {
            EnvConfig::from_map([URL, (name, value)])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("PARAPET_QUOTA_TENANTS", "acme=20/s:0"),
            "PARAPET_QUOTA_TENANTS=\"acme=20/s:0\": tenant acme: burst: must be at least 1"
        );
        assert_eq!(
            error("PARAPET_QUOTA_PLANS", "free=20/s,pro=lots/s"),
            "PARAPET_QUOTA_PLANS=\"pro=lots/s\": plan pro: count: \"lots\" is not a whole number"
        );
        assert!(error("PARAPET_QUOTA_PLANS", "free=20/week").contains("plan free: period:"));
        assert!(error("PARAPET_QUOTA_TENANTS", "../x=1/s").contains("tenant \"../x\": id:"));
        assert!(error("PARAPET_QUOTA_TENANTS", "acme").contains("expected tenant=rule"));
        assert!(error("PARAPET_QUOTA_HIT_COST", "2").contains("from 0 to 1"));
        assert!(error("PARAPET_QUOTA_DEFAULT", "fast").contains("syntax"));
        assert!(error("PARAPET_QUOTA", "maybe").contains("expected on or off"));
        assert!(
            error("PARAPET_QUOTA_REFUSAL_DELAY_MS", "1s")
                .starts_with("PARAPET_QUOTA_REFUSAL_DELAY_MS=\"1s\"")
        );
        assert!(
            error("PARAPET_QUOTA_MAX_HELD_PER_TENANT", "-1")
                .starts_with("PARAPET_QUOTA_MAX_HELD_PER_TENANT=")
        );
    }

    #[test]
    fn targeted_fields_are_header_names_in_order_or_none() {
        let read = |value: &str| {
            EnvConfig::from_map([URL, ("PARAPET_CACHE_TARGETED_FIELDS", value)])
                .map(|c| c.cache_targeted_fields)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            EnvConfig::from_map([URL]).unwrap().cache_targeted_fields,
            None
        );
        assert_eq!(read(" None "), Ok(Some(Vec::new())));
        assert_eq!(
            read("CDN-Cache-Control"),
            Ok(Some(vec![HeaderName::from_static("cdn-cache-control")]))
        );
        let bad = read("CDN-Cache-Control, bad name").unwrap_err();
        assert!(bad.contains("\"bad name\": not a header name"), "{bad}");
        let cc = read("Cache-Control").unwrap_err();
        assert!(cc.contains("what targeted fields replace"), "{cc}");
    }

    #[test]
    fn every_variable_is_read() {
        let c = EnvConfig::from_map([
            URL,
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("PARAPET_REDIS_CA_CERT", "/etc/redis/ca.pem"),
            ("PARAPET_REDIS_CLIENT_CERT", "/etc/redis/client.pem"),
            ("PARAPET_REDIS_CLIENT_KEY", "/etc/redis/client.key"),
            ("PARAPET_TENANT_HEADER", "X-Org"),
            ("PARAPET_TENANT_HOST", "example.com"),
            ("PARAPET_TENANT_PATH_PREFIX", "/t"),
            ("PARAPET_TENANT_APEX_HOSTS", "api.example.com"),
            ("PARAPET_TENANT_JWT_SECRET", SECRET),
            ("PARAPET_TENANT_JWT_AUDIENCE", "crm-api"),
            ("PARAPET_TENANT_JWT_ISSUER", "https://auth.example.com"),
            ("PARAPET_TENANT_JWT_LEEWAY_SECS", "15"),
            ("PARAPET_CACHE", "off"),
            ("PARAPET_CACHE_LOCAL_BYTES", "1024"),
            ("PARAPET_CACHE_PREFIX", "app:"),
            ("PARAPET_CACHE_MAX_BODY_BYTES", "4096"),
            (
                "PARAPET_CACHE_TARGETED_FIELDS",
                "Parapet-Cache-Control, CDN-Cache-Control",
            ),
            ("PARAPET_CACHE_DEFAULT_TTL", "/api/=10, /static/=3600"),
            ("PARAPET_ISOLATION", "schema"),
            ("PARAPET_ISOLATION_SCOPE", "transaction"),
            ("PARAPET_POOL_BUDGET", "30"),
            ("PARAPET_POOL_REPLICAS", "3"),
            ("PARAPET_POOL_MAX_PER_POOL", "5"),
            ("PARAPET_POOL_TENANT_SHARE", "0.4"),
            ("PARAPET_CACHE_TENANT_SHARE", "1"),
            ("PARAPET_POOL_WAIT_TIMEOUT_MS", "250"),
            ("PARAPET_SLOW_QUERY_MS", "100"),
            ("PARAPET_TELEMETRY", "false"),
            ("PARAPET_SLOW_REQUEST_MS", "300"),
            ("PARAPET_TELEMETRY_EXCLUDE", " /ping , /live "),
            ("PARAPET_TRACEPARENT_RESPONSE", "on"),
        ])
        .unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(c.redis_ca_cert, Some(PathBuf::from("/etc/redis/ca.pem")));
        assert_eq!(
            c.redis_client_cert,
            Some((
                PathBuf::from("/etc/redis/client.pem"),
                PathBuf::from("/etc/redis/client.key")
            ))
        );
        assert_eq!(c.tenant_header, Some(HeaderName::from_static("x-org")));
        assert_eq!(c.tenant_host.as_deref(), Some("example.com"));
        assert_eq!(c.tenant_path_prefix.as_deref(), Some("/t"));
        assert_eq!(c.tenant_apex_hosts, ["api.example.com"]);
        assert_eq!(c.tenant_jwt_secret.as_deref(), Some(SECRET));
        assert_eq!(c.tenant_jwt_audience.as_deref(), Some("crm-api"));
        assert_eq!(
            c.tenant_jwt_issuer.as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(c.tenant_jwt_leeway, Duration::from_secs(15));
        assert!(!c.cache && !c.telemetry && c.traceparent_response);
        assert_eq!(c.cache_local_bytes, 1024);
        assert_eq!(c.cache_prefix.as_deref(), Some("app:"));
        assert_eq!(c.cache_max_body_bytes, Some(4096));
        assert_eq!(
            c.cache_targeted_fields,
            Some(vec![
                HeaderName::from_static("parapet-cache-control"),
                HeaderName::from_static("cdn-cache-control")
            ])
        );
        assert_eq!(
            c.cache_default_ttls,
            [
                ("/api/".to_owned(), Duration::from_secs(10)),
                ("/static/".to_owned(), Duration::from_secs(3600))
            ]
        );
        assert_eq!(c.isolation, Isolation::schema_per_tenant());
        assert_eq!(c.isolation_scope, IsolationScope::Transaction);
        assert_eq!(c.pool_budget, Some(30));
        assert_eq!(c.pool_replicas, 3);
        assert_eq!(c.pool_max_per_pool, 5);
        assert_eq!(c.pool_tenant_share, Share::new(0.4));
        assert_eq!(c.cache_tenant_share.map(Share::get), Some(1.0));
        assert_eq!(c.pool_wait_timeout, Duration::from_millis(250));
        assert_eq!(c.slow_query, Duration::from_millis(100));
        assert_eq!(c.slow_request, Duration::from_millis(300));
        assert_eq!(c.telemetry_exclude, ["/ping", "/live"]);
    }

    #[test]
    fn a_cluster_is_its_seed_nodes_with_the_tls_files() {
        let c = EnvConfig::from_map([
            URL,
            (
                "REDIS_CLUSTER_URLS",
                " rediss://:pw@10.0.0.1:7000 , rediss://:pw@10.0.0.2:7001,",
            ),
            ("PARAPET_REDIS_CA_CERT", "/etc/redis/ca.pem"),
            ("PARAPET_REDIS_CLIENT_CERT", "/etc/redis/client.pem"),
            ("PARAPET_REDIS_CLIENT_KEY", "/etc/redis/client.key"),
        ])
        .unwrap();
        assert_eq!(c.redis_url, None);
        assert_eq!(
            c.redis_cluster_urls,
            ["rediss://:pw@10.0.0.1:7000", "rediss://:pw@10.0.0.2:7001"]
        );
        let redis = format!("{:?}", c.redis_config().unwrap());
        assert!(redis.contains("cluster"), "{redis}");
        assert!(
            redis.contains("10.0.0.1:7000") && redis.contains("10.0.0.2:7001"),
            "{redis}"
        );
        assert!(redis.contains("/etc/redis/ca.pem"), "{redis}");
        assert!(redis.contains("client_cert: true"), "{redis}");
        assert!(!redis.contains("pw@"), "{redis}");
        // An empty value is unset, as for every variable.
        let c = EnvConfig::from_map([URL, ("REDIS_CLUSTER_URLS", " ")]).unwrap();
        assert!(c.redis_cluster_urls.is_empty() && c.redis_config().is_none());
    }

    #[test]
    fn a_cluster_and_a_redis_url_together_are_an_error_naming_both() {
        let err = EnvConfig::from_map([
            URL,
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_CLUSTER_URLS", "redis://:secret@127.0.0.1:7000"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("REDIS_CLUSTER_URLS="), "{text}");
        assert!(text.contains("REDIS_URL is set too"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_cluster_seed_must_be_a_redis_url_of_one_scheme() {
        for (value, reason) in [
            (
                "redis://a:7000,127.0.0.1:7001",
                "every seed node must be a redis:// or rediss:// URL",
            ),
            (
                "redis+sentinel://a:26379/cache",
                "every seed node must be a redis:// or rediss:// URL",
            ),
            (
                "redis://a:7000,rediss://b:7001",
                "mixes redis:// and rediss://",
            ),
        ] {
            let err = EnvConfig::from_map([URL, ("REDIS_CLUSTER_URLS", value)]).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("REDIS_CLUSTER_URLS="), "{text}");
            assert!(text.contains(reason), "{value}: {text}");
        }
    }

    #[tokio::test]
    async fn an_unreadable_redis_ca_is_an_error_at_build_for_a_cluster_too() {
        let c = EnvConfig::from_map([
            URL,
            (
                "REDIS_CLUSTER_URLS",
                "rediss://:pw@127.0.0.1:7000,rediss://:pw@127.0.0.1:7001",
            ),
            ("PARAPET_REDIS_CA_CERT", "/nonexistent/cluster-ca.pem"),
            ("PARAPET_TELEMETRY", "off"),
        ])
        .unwrap();
        let text = c.build().await.unwrap_err().to_string();
        assert!(text.contains("/nonexistent/cluster-ca.pem"), "{text}");
        assert!(
            text.contains("127.0.0.1:7000") && !text.contains("pw"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_header_disables_the_header_resolver() {
        let c = EnvConfig::from_map([URL, ("PARAPET_TENANT_HEADER", "")]).unwrap();
        assert_eq!(c.tenant_header, None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            (
                "PARAPET_ISOLATION",
                "tenantless",
                "PARAPET_ISOLATION=\"tenantless\"",
            ),
            ("PARAPET_POOL_BUDGET", "-3", "PARAPET_POOL_BUDGET=\"-3\""),
            (
                "PARAPET_ISOLATION_SCOPE",
                "statement",
                "PARAPET_ISOLATION_SCOPE=\"statement\"",
            ),
            ("PARAPET_POOL_REPLICAS", "0", "PARAPET_POOL_REPLICAS=\"0\""),
            (
                "PARAPET_POOL_REPLICAS",
                "two",
                "PARAPET_POOL_REPLICAS=\"two\"",
            ),
            ("PARAPET_CACHE", "maybe", "PARAPET_CACHE=\"maybe\""),
            (
                "PARAPET_TENANT_HEADER",
                "bad header",
                "PARAPET_TENANT_HEADER=\"bad header\"",
            ),
            (
                "PARAPET_SLOW_QUERY_MS",
                "1.5s",
                "PARAPET_SLOW_QUERY_MS=\"1.5s\"",
            ),
            (
                "PARAPET_CACHE_DEFAULT_TTL",
                "api=10",
                "PARAPET_CACHE_DEFAULT_TTL=\"api=10\"",
            ),
            (
                "PARAPET_CACHE_DEFAULT_TTL",
                "/api/",
                "PARAPET_CACHE_DEFAULT_TTL=\"/api/\"",
            ),
            (
                "PARAPET_REDIS_CLIENT_CERT",
                "/c.pem",
                "PARAPET_REDIS_CLIENT_CERT=\"/c.pem\": PARAPET_REDIS_CLIENT_KEY must be set too",
            ),
            (
                "PARAPET_REDIS_CLIENT_KEY",
                "/c.key",
                "PARAPET_REDIS_CLIENT_KEY=\"/c.key\": PARAPET_REDIS_CLIENT_CERT must be set too",
            ),
        ];
        for (name, value, expected) in cases {
            let err = EnvConfig::from_map([URL, (name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(expected), "{name}: {err}");
        }
        let err = EnvConfig::from_map([("REDIS_URL", "redis://x")]).unwrap_err();
        assert_eq!(err.to_string(), "DATABASE_URL is not set");
    }

    #[test]
    fn a_short_jwt_secret_stops_the_start_naming_the_variable_not_the_secret() {
        for secret in ["s3cret", "31-bytes-31-bytes-31-bytes-31-b"] {
            let err =
                EnvConfig::from_map([URL, ("PARAPET_TENANT_JWT_SECRET", secret)]).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("PARAPET_TENANT_JWT_SECRET="), "{text}");
            assert!(text.contains("at least 32"), "{text}");
            assert!(!text.contains(secret), "{text}");
        }
        let err =
            EnvConfig::from_map([URL, ("PARAPET_TENANT_JWT_LEEWAY_SECS", "3600")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("PARAPET_TENANT_JWT_LEEWAY_SECS=\"3600\": at most 300"),
            "{err}"
        );
    }

    #[test]
    fn a_jwt_secret_turns_the_header_off_unless_it_is_asked_for() {
        let c = EnvConfig::from_map([URL, ("PARAPET_TENANT_JWT_SECRET", SECRET)]).unwrap();
        assert_eq!(c.tenant_header, None);
        let c = EnvConfig::from_map([
            URL,
            ("PARAPET_TENANT_JWT_SECRET", SECRET),
            ("PARAPET_TENANT_HEADER", "x-tenant-id"),
        ])
        .unwrap();
        assert_eq!(
            c.tenant_header,
            Some(HeaderName::from_static("x-tenant-id"))
        );
    }

    /// The tenant layer the variables build answers `headers` with this status; resolution
    /// fails before any lookup, so no database is reached.
    async fn status_of(vars: &[(&str, &str)], headers: &[(&str, &str)]) -> u16 {
        use tower::{Layer, ServiceExt};
        let config = EnvConfig::from_map(vars.iter().copied()).unwrap();
        let layer = config.tenant_layer().unwrap();
        let inner = tower::service_fn(|_: http::Request<axum::body::Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
        });
        let mut req = http::Request::get("/api/leads");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = layer
            .layer(inner)
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            res.headers()[http::header::CONTENT_TYPE],
            "application/problem+json"
        );
        res.status().as_u16()
    }

    fn token(tenant: &str, aud: &str) -> String {
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        let claims = serde_json::json!({ "tenant_id": tenant, "aud": aud, "iss": "https://auth.test", "exp": exp });
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        format!("Bearer {token}")
    }

    #[tokio::test]
    async fn with_a_jwt_secret_no_request_names_a_tenant_without_a_token() {
        let jwt = [
            URL,
            ("PARAPET_TENANT_JWT_SECRET", SECRET),
            ("PARAPET_TENANT_JWT_AUDIENCE", "crm"),
            ("PARAPET_TENANT_JWT_ISSUER", "https://auth.test"),
            ("PARAPET_TENANT_HOST", "localhost"),
        ];
        let acme = token("acme", "crm");
        // No token: the header (off by default here) and the host name no tenant on their own.
        assert_eq!(status_of(&jwt, &[("x-tenant-id", "globex")]).await, 401);
        assert_eq!(status_of(&jwt, &[("host", "globex.localhost")]).await, 401);
        assert_eq!(status_of(&jwt, &[]).await, 401);
        // A token for acme may not be pointed at globex.
        assert_eq!(
            status_of(
                &jwt,
                &[("authorization", &acme), ("host", "globex.localhost")]
            )
            .await,
            403
        );
        // A token for another audience is refused.
        let other = token("acme", "billing");
        assert_eq!(status_of(&jwt, &[("authorization", &other)]).await, 401);
        // The header turned on explicitly beside the JWT may only agree with the token.
        let mut with_header = jwt.to_vec();
        with_header.push(("PARAPET_TENANT_HEADER", "x-tenant-id"));
        assert_eq!(
            status_of(&with_header, &[("x-tenant-id", "globex")]).await,
            401
        );
        assert_eq!(
            status_of(
                &with_header,
                &[("authorization", &acme), ("x-tenant-id", "globex")]
            )
            .await,
            403
        );
    }

    #[tokio::test]
    async fn an_unreadable_redis_ca_is_an_error_at_build() {
        let c = EnvConfig::from_map([
            URL,
            ("REDIS_URL", "rediss://:pw@127.0.0.1:6380"),
            ("PARAPET_REDIS_CA_CERT", "/nonexistent/redis-ca.pem"),
            ("PARAPET_TELEMETRY", "off"),
        ])
        .unwrap();
        let text = c.build().await.unwrap_err().to_string();
        assert!(text.contains("/nonexistent/redis-ca.pem"), "{text}");
        assert!(
            text.contains("127.0.0.1:6380") && !text.contains("pw"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_database_url_is_reported_without_its_password() {
        let config = EnvConfig::from_map([(
            "DATABASE_URL",
            "postgres://app:hunter2@127.0.0.1:notaport/crm",
        )])
        .unwrap();
        let err = config.tenant_layer().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("DATABASE_URL="), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("app:***@"), "{text}");
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let config = EnvConfig::from_map([
            ("DATABASE_URL", "postgres://app:pg-secret@db/crm"),
            ("REDIS_URL", "rediss://default:redis-secret@cache:6380"),
            ("PARAPET_TENANT_JWT_SECRET", SECRET),
        ])
        .unwrap();
        let text = format!("{config:?}");
        for secret in ["pg-secret", "redis-secret", SECRET] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        // Passwords in a URL's query, with an unencoded `@` or `/`, in a cluster's seeds, and
        // in key=value strings quoted or spaced.
        for (vars, secret) in [
            (
                vec![("DATABASE_URL", "postgres://app@db/crm?password=q-secret")],
                "q-secret",
            ),
            (
                vec![("DATABASE_URL", "postgres://app:at@sl/ash@db/crm")],
                "sl/ash",
            ),
            (
                vec![("DATABASE_URL", "host=db password = 'sp ace' dbname=crm")],
                "sp ace",
            ),
            (
                vec![
                    URL,
                    (
                        "REDIS_CLUSTER_URLS",
                        "redis://:c-secret@a:7000,redis://:c-secret@b:7001",
                    ),
                ],
                "c-secret",
            ),
            (
                vec![URL, ("REDIS_URL", "redis://lone-secret@cache")],
                "lone-secret",
            ),
            (
                vec![URL, ("REDIS_URL", "redis+unix:///r.sock?pass=u-secret")],
                "u-secret",
            ),
        ] {
            let config = EnvConfig::from_map(vars.clone()).unwrap();
            let text = format!("{config:?}");
            assert!(!text.contains(secret), "{vars:?}: {text}");
            assert!(text.contains("***"), "{vars:?}: {text}");
        }
        assert!(text.contains("postgres://app:***@db/crm"), "{text}");
        let key_value = EnvConfig::from_map([(
            "DATABASE_URL",
            "host=db user=app password=kv-secret dbname=crm",
        )])
        .unwrap();
        let text = format!("{key_value:?}");
        assert!(
            !text.contains("kv-secret") && text.contains("password=***"),
            "{text}"
        );
    }

    #[test]
    fn a_share_outside_zero_to_one_is_refused_naming_the_variable() {
        for name in ["PARAPET_POOL_TENANT_SHARE", "PARAPET_CACHE_TENANT_SHARE"] {
            for value in ["0", "0.0", "-0.1", "1.5", "NaN", "a quarter"] {
                let err = EnvConfig::from_map([URL, (name, value)]).unwrap_err();
                match &err {
                    ConfigError::Invalid { name: named, .. } => assert_eq!(*named, name),
                    other => panic!("{name}={value}: {other}"),
                }
                assert!(err.to_string().starts_with(name), "{err}");
            }
            assert!(EnvConfig::from_map([URL, (name, "0.25")]).is_ok());
        }
    }
}
