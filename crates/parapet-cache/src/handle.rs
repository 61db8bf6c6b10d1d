//! [`CacheHandle`]: purging entries from outside the request flow.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use parapet_tenant::TenantId;

use crate::key::{PrimaryKey, tag_index, tenant_prefix};
use crate::shared::Shared;
use crate::soft::{soften_key, soften_keys};
use crate::stats::{CacheStats, bump};
use crate::store::TenantBytes;
use crate::tenant_stats::TenantRequests;

/// Purges entries of the [`CacheLayer`](crate::CacheLayer) it came from (cheap to clone).
#[derive(Clone)]
pub struct CacheHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHandle")
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

impl CacheHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Whether the shared tier (Redis: one server, a Cluster or a Sentinel primary, over TLS
    /// or not) answers `PING` now, through the cache's own connection, within a second; `None`
    /// when the cache has no shared tier. For readiness probes: a cache without Redis still
    /// serves (it fails open), so `Some(false)` means degraded, not down.
    pub async fn shared_tier_ready(&self) -> Option<bool> {
        self.shared.store.ping().await
    }

    /// Removes every stored response (all `Vary` variants) of `path_and_query` for `tenant`
    /// (`None` in single-tenant mode), from every tier this instance uses.
    ///
    /// With both tiers, the other instances sharing the Redis drop it from their local tier
    /// too (through Redis pub/sub). When Redis cannot confirm the delete, this instance stops
    /// reading that key from Redis and retries the delete in the background (see
    /// [`TieredStore`](crate::TieredStore)).
    ///
    /// It also ends this instance's hit-for-pass on the URI (see
    /// [`CacheLayerBuilder::pass_ttl`](crate::CacheLayerBuilder::pass_ttl)): its next miss is
    /// coalesced again. The other instances' passes run out by themselves.
    pub async fn purge(&self, tenant: Option<&TenantId>, path_and_query: &str) {
        let key = self.key_for(tenant, path_and_query).await;
        self.shared.epochs.bump(key.tenant_prefix()).await;
        self.shared.store.delete(key.as_bytes()).await;
        self.shared.passes.end(key.as_bytes()).await;
        bump(&self.shared.counters.invalidations);
    }

    /// Removes every stored response of `tenant` tagged `tag` (by a `Cache-Tag` or
    /// `Surrogate-Key` response header), from every tier and every instance's local tier.
    ///
    /// Uses one index per tag, so it works on Redis Cluster. The round trips to Redis do not
    /// grow with the number of keys: the index is read and removed (two commands), the keys
    /// are deleted by one `DEL` per slot sent together (one per 512 keys on a single server),
    /// and one message announces them all to the other instances.
    /// Returns how many keys the tag listed whose entries had not expired (some may already
    /// have been gone).
    pub async fn purge_tag(&self, tenant: Option<&TenantId>, tag: &str) -> usize {
        let prefix = tenant_prefix(&self.shared.prefix, tenant.map(TenantId::as_str));
        self.shared.epochs.bump(&prefix).await;
        let members = self.shared.store.index_take(&tag_index(&prefix, tag)).await;
        self.shared.store.delete_many(&members).await;
        for key in &members {
            self.shared.passes.end(key).await;
            bump(&self.shared.counters.invalidations);
        }
        members.len()
    }

    /// Soft purge of one URI: marks every stored response of `path_and_query` for `tenant`
    /// stale instead of removing it, on every tier and every instance. The next request
    /// revalidates it with the origin (a `304` refreshes it without a new body), and while the
    /// origin fails, `stale-if-error` can still serve it.
    ///
    /// An entry with neither a validator (`ETag`, `Last-Modified`) nor a stale window has
    /// nothing to offer once stale and is removed instead. A URI whose responses vary (`Vary`)
    /// keeps its variants: its marker records the time of the purge, and every variant
    /// received until then is found stale (as with [`soft_purge_tenant`](Self::soft_purge_tenant),
    /// entries are compared by the time their instance received them). Like
    /// [`purge`](Self::purge), it ends this instance's hit-for-pass on the URI.
    pub async fn soft_purge(&self, tenant: Option<&TenantId>, path_and_query: &str) {
        let key = self.key_for(tenant, path_and_query).await;
        self.shared.epochs.bump(key.tenant_prefix()).await;
        soften_key(&self.shared, key.as_bytes()).await;
        self.shared.passes.end(key.as_bytes()).await;
        bump(&self.shared.counters.invalidations);
    }

    /// Soft purge of a tag: marks every stored response of `tenant` tagged `tag` stale (see
    /// [`soft_purge`](Self::soft_purge)); the tag index stays, so a later purge of the tag
    /// still finds them. Returns how many of the tag's keys held an entry.
    pub async fn soft_purge_tag(&self, tenant: Option<&TenantId>, tag: &str) -> usize {
        let prefix = tenant_prefix(&self.shared.prefix, tenant.map(TenantId::as_str));
        self.shared.epochs.bump(&prefix).await;
        let members = self
            .shared
            .store
            .index_members(&tag_index(&prefix, tag))
            .await;
        let found = soften_keys(&self.shared, &members).await;
        for _ in 0..found {
            bump(&self.shared.counters.invalidations);
        }
        found
    }

    /// Soft purge of a tenant: every response of `tenant` stored until now is stale from now
    /// on, on every instance (see [`soft_purge`](Self::soft_purge)).
    ///
    /// O(1) and safe on Redis Cluster: one key per tenant holds the time of its last soft
    /// purge, read with the lookup (cached per instance like the generation, and dropped on
    /// every instance when a soft purge is announced). Entries are compared by the time their
    /// instance received them, so the instances' clocks must agree (to within the time
    /// between a response and the purge that should cover it). Without a local tier there is
    /// no subscriber, so another instance sees it within `generation_ttl`. Returns false when
    /// the time could not be stored in Redis (the soft purge then reached no instance: try
    /// again).
    pub async fn soft_purge_tenant(&self, tenant: Option<&TenantId>) -> bool {
        let prefix = tenant_prefix(&self.shared.prefix, tenant.map(TenantId::as_str));
        self.shared.epochs.bump(&prefix).await;
        let stored = self
            .shared
            .store
            .soft_purge_tenant(&prefix, SystemTime::now())
            .await;
        bump(&self.shared.counters.invalidations);
        stored
    }

    /// Removes every stored response of `tenant` (`None`: of the single-tenant deployment)
    /// from every tier, and from the local tiers of the other instances sharing the Redis.
    ///
    /// O(1) and safe on Redis Cluster: it bumps the tenant's generation (one `INCR`), which
    /// is part of every key, so the old entries are never read again; they expire with
    /// their TTL. Returns false when the bump could not be stored in Redis (the purge then
    /// only reached this instance's local tier: try again).
    pub async fn purge_tenant(&self, tenant: Option<&TenantId>) -> bool {
        let prefix = tenant_prefix(&self.shared.prefix, tenant.map(TenantId::as_str));
        self.shared.epochs.bump(&prefix).await;
        let purged = self.shared.store.purge_tenant(&prefix).await;
        bump(&self.shared.counters.invalidations);
        purged
    }

    /// The primary key a URI has for a tenant now (as stored in Redis; it carries the
    /// tenant's current generation).
    pub async fn key_for(&self, tenant: Option<&TenantId>, path_and_query: &str) -> PrimaryKey {
        self.shared
            .key_for(tenant.map(TenantId::as_str), path_and_query)
            .await
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.shared.counters.snapshot()
    }

    /// The bytes each tenant's entries hold in the local tier: the `top` tenants holding the
    /// most, then one entry with `tenant: None` summing the others (only when some were left
    /// out), so the list is bounded whatever the number of tenants. Empty without a local tier.
    /// Entries of single-tenant mode belong to no tenant and are not listed.
    #[must_use]
    pub fn local_bytes_by_tenant(&self, top: usize) -> Vec<TenantBytes> {
        self.shared
            .tenants
            .as_ref()
            .map_or_else(Vec::new, |ledger| ledger.top(top))
    }

    /// The requests each tenant made of the cache, by outcome (as [`CacheStats`] counts them:
    /// hits, stale, misses, bypass), since the layer was built: the `top` tenants with the most
    /// requests, then one entry with `tenant: None` summing the others (only when some were
    /// left out), so the list is bounded whatever the number of tenants. Requests without a
    /// tenant are not listed.
    ///
    /// Counting is one atomic increment per request on a slot found by hashing the tenant id.
    /// The first 1,024 or so tenants seen get a slot of their own for the layer's life; the
    /// requests of tenants that find none are only ever counted in the sum of the others.
    #[must_use]
    pub fn requests_by_tenant(&self, top: usize) -> Vec<TenantRequests> {
        self.shared.tenant_counters.top(top)
    }
}
