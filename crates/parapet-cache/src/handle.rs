//! [`CacheHandle`]: purging entries from outside the request flow.

use std::fmt;
use std::sync::Arc;

use parapet_tenant::TenantId;

use crate::key::{PrimaryKey, tag_index, tenant_prefix};
use crate::shared::Shared;
use crate::stats::{CacheStats, bump};
use crate::store::TenantBytes;

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
    pub async fn purge(&self, tenant: Option<&TenantId>, path_and_query: &str) {
        let key = self.key_for(tenant, path_and_query).await;
        self.shared.epochs.bump(key.tenant_prefix()).await;
        self.shared.store.delete(key.as_bytes()).await;
        bump(&self.shared.counters.invalidations);
    }

    /// Removes every stored response of `tenant` tagged `tag` (by a `Cache-Tag` or
    /// `Surrogate-Key` response header), from every tier and every instance's local tier.
    ///
    /// Uses one index per tag and single-key commands only, so it works on Redis Cluster.
    /// Returns how many keys the tag listed whose entries had not expired (some may already
    /// have been gone).
    pub async fn purge_tag(&self, tenant: Option<&TenantId>, tag: &str) -> usize {
        let prefix = tenant_prefix(&self.shared.prefix, tenant.map(TenantId::as_str));
        self.shared.epochs.bump(&prefix).await;
        let members = self.shared.store.index_take(&tag_index(&prefix, tag)).await;
        for key in &members {
            self.shared.store.delete(key).await;
            bump(&self.shared.counters.invalidations);
        }
        members.len()
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
}
