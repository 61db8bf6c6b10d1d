//! [`CacheLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use http::request::Parts;
use tower_layer::Layer;

use crate::handle::CacheHandle;
use crate::policy::{ConfigError, PolicyConfig};
use crate::service::CacheService;
use crate::shared::{Shared, TtlFn};
use crate::stats::{CacheStats, Counters};
use crate::store::{
    MemoryStore, RedisConfig, RedisStore, Store, TenantLedger, TieredStore, share_of,
};

/// A Tower layer that caches responses as an RFC 9111 shared cache, with keys scoped by
/// tenant. See the [crate docs](crate) for an example.
///
/// Cloning is cheap: clones share the stores, counters and in-flight requests.
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl CacheLayer {
    /// Starts a builder (local tier of 64 MiB unless configured otherwise).
    pub fn builder() -> CacheLayerBuilder {
        CacheLayerBuilder::default()
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.shared.counters.snapshot()
    }

    /// The store behind the layer (the tiered store when both tiers are configured).
    #[must_use]
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.shared.store)
    }

    /// A handle to purge entries.
    pub fn handle(&self) -> CacheHandle {
        CacheHandle::new(Arc::clone(&self.shared))
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::new(inner, Arc::clone(&self.shared))
    }
}

/// Why a [`CacheLayer`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The policy settings are invalid.
    #[error("invalid cache policy: {0}")]
    Policy(#[from] ConfigError),
    /// The Redis URL is invalid.
    #[error("invalid redis configuration: {0}")]
    Redis(#[from] redis::RedisError),
    /// [`CacheLayerBuilder::local_tenant_share`] is not a fraction in `(0, 1]`.
    #[error("local_tenant_share must be a fraction of the local tier in (0, 1], not {0}")]
    TenantShare(f64),
    /// A name given to [`CacheLayerBuilder::targeted_fields`] is not a valid header name.
    #[error("targeted_fields: {0:?} is not a valid header field name")]
    TargetedField(String),
}

/// The prefix of every key unless [`CacheLayerBuilder::prefix`] sets another.
pub(crate) const DEFAULT_PREFIX: &str = "parapet:cache:";

/// Builds a [`CacheLayer`]: which tiers, the policy, limits and per-route default TTLs.
#[must_use]
pub struct CacheLayerBuilder {
    local_bytes: Option<u64>,
    local_tenant_share: Option<f64>,
    redis: Option<RedisConfig>,
    local_ttl_cap: Duration,
    policy: PolicyConfig,
    route_ttls: Vec<(String, Duration)>,
    ttl_fn: Option<Arc<TtlFn>>,
    prefix: String,
    max_body_size: usize,
    single_tenant: bool,
    coalesce_wait: Duration,
    pass_ttl: Duration,
    revalidation_grace: Duration,
    tag_headers: Vec<HeaderName>,
    expose_tags: bool,
    credential_headers: Vec<HeaderName>,
    key_on_credentials: bool,
    max_uri_length: usize,
    invalidation_secret: Option<Arc<[u8]>>,
    targeted_fields: Option<Vec<String>>,
}

impl Default for CacheLayerBuilder {
    fn default() -> Self {
        Self {
            local_bytes: None,
            local_tenant_share: None,
            redis: None,
            local_ttl_cap: Duration::from_secs(60),
            policy: PolicyConfig::default(),
            route_ttls: Vec::new(),
            ttl_fn: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            max_body_size: 1024 * 1024,
            single_tenant: false,
            coalesce_wait: Duration::from_secs(5),
            pass_ttl: Duration::from_secs(10),
            revalidation_grace: Duration::from_secs(60),
            tag_headers: vec![
                HeaderName::from_static("cache-tag"),
                HeaderName::from_static("surrogate-key"),
            ],
            expose_tags: false,
            credential_headers: vec![http::header::COOKIE],
            key_on_credentials: false,
            max_uri_length: 2048,
            invalidation_secret: None,
            targeted_fields: None,
        }
    }
}

impl fmt::Debug for CacheLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayerBuilder")
            .field("local_bytes", &self.local_bytes)
            .field("local_tenant_share", &self.local_tenant_share)
            .field("redis", &self.redis)
            .field("prefix", &self.prefix)
            .field("max_body_size", &self.max_body_size)
            .field("single_tenant", &self.single_tenant)
            .field("pass_ttl", &self.pass_ttl)
            .field("credential_headers", &self.credential_headers)
            .field("key_on_credentials", &self.key_on_credentials)
            .field("max_uri_length", &self.max_uri_length)
            .field("targeted_fields", &self.targeted_fields)
            .field(
                "invalidation_secret",
                &self.invalidation_secret.as_ref().map(|_| "***"),
            )
            .finish_non_exhaustive()
    }
}

impl CacheLayerBuilder {
    /// Uses a local (in-process) tier holding about `max_bytes` bytes.
    ///
    /// Without [`redis`](Self::redis) this is the only tier (64 MiB when neither is set).
    pub fn local(mut self, max_bytes: u64) -> Self {
        self.local_bytes = Some(max_bytes);
        self
    }

    /// Caps the bytes one tenant's entries may hold in the local tier to a share of it, a
    /// fraction in `(0, 1]` (off by default: any tenant may fill the tier).
    ///
    /// With `0.25`, a tenant whose traffic would fill the tier holds at most a quarter of it,
    /// so the entries of the others are not evicted to make room for its own. A tenant at its
    /// share has its new entries **refused** by the local tier (not stored there; with Redis
    /// they are still stored and served from Redis) until its older entries expire or are
    /// purged; [`CacheStats::local_refused`](crate::CacheStats::local_refused) counts them.
    /// Bytes per tenant are counted whether or not a share is set
    /// ([`CacheHandle::local_bytes_by_tenant`](crate::CacheHandle::local_bytes_by_tenant)).
    ///
    /// A value outside `(0, 1]` makes [`build`](Self::build) fail with
    /// [`BuildError::TenantShare`].
    pub fn local_tenant_share(mut self, share: f64) -> Self {
        self.local_tenant_share = Some(share);
        self
    }

    /// Uses Redis. With [`local`](Self::local) too, the local tier sits in front of it.
    pub fn redis(mut self, config: RedisConfig) -> Self {
        self.redis = Some(config);
        self
    }

    /// With both tiers, the longest a value stays in the local tier (default 60 s), which
    /// bounds how long an instance can serve a copy invalidated on another instance.
    pub fn local_ttl_cap(mut self, cap: Duration) -> Self {
        self.local_ttl_cap = cap;
        self
    }

    /// The RFC 9111 policy settings.
    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// The targeted cache-control fields (RFC 9213) this cache obeys, in precedence order
    /// (default: `CDN-Cache-Control`; an empty list obeys `Cache-Control` alone), e.g.
    /// `.targeted_fields(["Parapet-Cache-Control", "CDN-Cache-Control"])`.
    ///
    /// The first listed field that a response carries with a valid, non-empty Structured
    /// Field Dictionary value replaces its `Cache-Control` and `Expires` for this cache: a
    /// short targeted `max-age` wins over a long `Cache-Control` one, a targeted `max-age`
    /// makes a `Cache-Control: no-store` response storable, a targeted `no-store` or
    /// `private` keeps it out. An empty or invalid field is ignored (the next one, then
    /// `Cache-Control`, applies). Clients get the fields unchanged. Set here, the list
    /// replaces the one of [`policy`](Self::policy) (see
    /// [`PolicyConfig::targeted_fields`]). A name that is not a valid header name, or
    /// `Cache-Control`, makes [`build`](Self::build) fail.
    pub fn targeted_fields<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.targeted_fields = Some(
            names
                .into_iter()
                .map(|name| name.as_ref().to_owned())
                .collect(),
        );
        self
    }

    /// A default TTL for responses under a path prefix that carry no freshness information
    /// (opt-in; the longest matching prefix wins).
    pub fn default_ttl_for(mut self, path_prefix: impl Into<String>, ttl: Duration) -> Self {
        self.route_ttls.push((path_prefix.into(), ttl));
        self
    }

    /// A default TTL chosen per request (checked before the prefixes); `None` for none.
    pub fn default_ttl_with<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Option<Duration> + Send + Sync + 'static,
    {
        self.ttl_fn = Some(Arc::new(f));
        self
    }

    /// The prefix of every key (default `parapet:cache:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The largest body stored (default 1 MiB); larger responses stream through unbuffered.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Caches requests without a tenant (a single-tenant deployment or a proxy). Without
    /// this, a request with no `Tenant` in its extensions is passed through uncached.
    pub fn single_tenant(mut self) -> Self {
        self.single_tenant = true;
        self
    }

    /// How long concurrent misses wait for the first one before going through (default 5 s).
    pub fn coalesce_timeout(mut self, wait: Duration) -> Self {
        self.coalesce_wait = wait;
        self
    }

    /// Hit-for-pass: how long a key whose response could not be stored for a reason of the
    /// response (`no-store`, `private`, a refused `Set-Cookie`, an uncacheable status, a body
    /// over `max_body_size`...) goes upstream without coalescing (default 10 s; zero turns it
    /// off). Concurrent requests for such a key then reach the origin side by side instead of
    /// queueing behind one request whose response they cannot use, and skip the cache's second
    /// lookup; their `Cache-Status` says so after the reason, `fwd=uri-miss; fwd-status=200;
    /// detail=response-no-store/pass`. A storable response for
    /// the key is stored as usual and ends the pass, as do a purge of its URI (or of a tag it
    /// had) and a successful unsafe request invalidating it, on the instance that handles them.
    /// At most 100,000 keys pass at once.
    pub fn pass_ttl(mut self, ttl: Duration) -> Self {
        self.pass_ttl = ttl;
        self
    }

    /// How long a response with a validator is kept past its freshness, to be revalidated
    /// with a conditional request (default 60 s).
    pub fn revalidation_grace(mut self, grace: Duration) -> Self {
        self.revalidation_grace = grace;
        self
    }

    /// Response headers whose values (separated by commas or spaces) tag the stored response
    /// for [`CacheHandle::purge_tag`] (default `Cache-Tag` and `Surrogate-Key`).
    pub fn tag_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.tag_headers = names.into_iter().collect();
        self
    }

    /// Whether tag headers are sent on to clients (default: false, they are removed).
    pub fn expose_tags(mut self, expose: bool) -> Self {
        self.expose_tags = expose;
        self
    }

    /// Request headers that carry a client's own credentials, besides `Authorization`
    /// (default: `Cookie`). A request carrying one of them is passed through uncached, unless
    /// [`key_on_credentials`](Self::key_on_credentials) is set: a response to one user's
    /// session is never served to another user of the same tenant. (`Authorization` follows
    /// RFC 9111 §3.5: a response is stored for, and served to, such requests only when it says
    /// `public`, `s-maxage` or `must-revalidate`.)
    pub fn credential_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.credential_headers = names.into_iter().collect();
        self
    }

    /// Caches requests carrying [credential headers](Self::credential_headers) separately for
    /// each credential instead of passing them through (default: false): every stored response
    /// then varies on those headers, as if the origin had sent `Vary: Cookie`, so a request
    /// gets only what was stored for exactly its credentials (or for none). The values are
    /// kept in keys and entries as SHA-256 digests, never as sent.
    pub fn key_on_credentials(mut self, key: bool) -> Self {
        self.key_on_credentials = key;
        self
    }

    /// The longest request target (path and query, in bytes) the cache stores (default
    /// 2048); longer ones are passed through uncached, so a client cannot fill the tiers with
    /// huge keys.
    pub fn max_uri_length(mut self, bytes: usize) -> Self {
        self.max_uri_length = bytes;
        self
    }

    /// A secret shared by every instance of the cache: invalidation messages on the pub/sub
    /// channel carry its HMAC-SHA-256, and messages without a valid one are ignored, so
    /// whoever can `PUBLISH` on the Redis cannot empty the instances' local tiers. Without a
    /// secret (the default), messages are obeyed only for keys under this cache's
    /// [prefix](Self::prefix), and a tenant purge only for one tenant. All instances on one
    /// channel must use the same secret (or none).
    pub fn invalidation_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.invalidation_secret = Some(Arc::from(secret.as_ref()));
        self
    }

    /// Builds the layer. No connection to Redis is made here (it is made on first use).
    ///
    /// # Errors
    ///
    /// [`BuildError::Policy`] for invalid policy settings, [`BuildError::Redis`] for an
    /// invalid Redis URL, [`BuildError::TenantShare`] for a share outside `(0, 1]`,
    /// [`BuildError::TargetedField`] for a targeted field that is not a header name.
    pub fn build(mut self) -> Result<CacheLayer, BuildError> {
        if let Some(names) = self.targeted_fields.take() {
            let mut fields = Vec::with_capacity(names.len());
            for name in names {
                let parsed = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| BuildError::TargetedField(name.clone()))?;
                fields.push(parsed);
            }
            self.policy = self.policy.targeted_fields(fields);
        }
        self.policy.validate()?;
        if let Some(share) = self.local_tenant_share
            && !(share > 0.0 && share <= 1.0)
        {
            return Err(BuildError::TenantShare(share));
        }
        let counters = Arc::new(Counters::default());
        let local_bytes = match (self.local_bytes, &self.redis) {
            (None, None) => Some(64 * 1024 * 1024),
            (bytes, _) => bytes,
        };
        let local = local_bytes.map(|bytes| {
            let cap = self.local_tenant_share.map(|share| share_of(share, bytes));
            let ledger = Arc::new(TenantLedger::new(&self.prefix, cap));
            MemoryStore::with_counters(bytes, counters.clone(), ledger)
        });
        let tenants = local.as_ref().map(|local| local.tenants().clone());
        let redis = match self.redis {
            Some(config) => Some(RedisStore::with_counters(config, counters.clone())?),
            None => None,
        };
        let store: Arc<dyn Store> = match (local, redis) {
            (Some(local), Some(redis)) => Arc::new(
                TieredStore::new(local, redis)
                    .invalidation(
                        format!("{}invalidate", self.prefix),
                        &self.prefix,
                        self.invalidation_secret.as_deref(),
                    )
                    .local_ttl_cap(self.local_ttl_cap)
                    .revalidation_grace(self.revalidation_grace),
            ),
            (Some(local), None) => Arc::new(local),
            (None, Some(redis)) => Arc::new(redis),
            (None, None) => Arc::new(MemoryStore::with_counters(
                0,
                counters.clone(),
                Arc::new(TenantLedger::new(&self.prefix, None)),
            )),
        };
        Ok(CacheLayer {
            shared: Arc::new(Shared {
                store,
                policy: self.policy,
                route_ttls: self.route_ttls,
                ttl_fn: self.ttl_fn,
                prefix: self.prefix,
                max_body_size: self.max_body_size,
                single_tenant: self.single_tenant,
                coalesce_wait: self.coalesce_wait,
                passes: crate::coalesce::Passes::new(self.pass_ttl),
                revalidation_grace: self.revalidation_grace,
                tag_headers: self.tag_headers,
                expose_tags: self.expose_tags,
                credential_headers: self.credential_headers,
                key_on_credentials: self.key_on_credentials,
                max_uri_length: self.max_uri_length,
                counters,
                tenant_counters: crate::tenant_stats::TenantCounters::default(),
                tenants,
                flights: Arc::default(),
                refreshes: Arc::default(),
                epochs: crate::epoch::Epochs::default(),
            }),
        })
    }
}
