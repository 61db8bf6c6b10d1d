//! Counters of the cache, kept as atomics and read with [`CacheLayer::stats`](crate::CacheLayer::stats).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Live counters shared by the layer and its stores.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) revalidated: AtomicU64,
    pub(crate) bypass: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) store_skipped: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) passes: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) local_hits: AtomicU64,
    pub(crate) local_misses: AtomicU64,
    pub(crate) redis_hits: AtomicU64,
    pub(crate) redis_misses: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) redis_skipped: AtomicU64,
    pub(crate) breaker_opens: AtomicU64,
    pub(crate) breaker_open: AtomicBool,
    pub(crate) local_bytes: AtomicU64,
    pub(crate) local_refused: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            stale: get(&self.stale),
            revalidated: get(&self.revalidated),
            bypass: get(&self.bypass),
            stored: get(&self.stored),
            store_skipped: get(&self.store_skipped),
            coalesced: get(&self.coalesced),
            passes: get(&self.passes),
            invalidations: get(&self.invalidations),
            local_hits: get(&self.local_hits),
            local_misses: get(&self.local_misses),
            redis_hits: get(&self.redis_hits),
            redis_misses: get(&self.redis_misses),
            redis_errors: get(&self.redis_errors),
            redis_skipped: get(&self.redis_skipped),
            breaker_opens: get(&self.breaker_opens),
            breaker_open: self.breaker_open.load(Ordering::Relaxed),
            local_bytes: get(&self.local_bytes),
            local_refused: get(&self.local_refused),
        }
    }
}

/// A snapshot of the cache's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Responses served from the cache while fresh (or stale within `max-stale`).
    pub hits: u64,
    /// Cacheable requests that found nothing usable and went to the inner service.
    pub misses: u64,
    /// Stale responses served (`stale-while-revalidate`, `stale-if-error`).
    pub stale: u64,
    /// Stored responses revalidated upstream with a 304.
    pub revalidated: u64,
    /// Requests the cache did not handle (unsafe methods, no tenant, …).
    pub bypass: u64,
    /// Responses stored.
    pub stored: u64,
    /// Responses not stored because an invalidation of their tenant began while they were
    /// fetched (they may predate it).
    pub store_skipped: u64,
    /// Requests that waited for another request's miss instead of calling the inner service.
    pub coalesced: u64,
    /// Requests forwarded at once, without coalescing, because their key's last response could
    /// not be stored (hit-for-pass, see
    /// [`CacheLayerBuilder::pass_ttl`](crate::CacheLayerBuilder::pass_ttl)); counted in
    /// `misses` too.
    pub passes: u64,
    /// Primary keys invalidated (unsafe methods and purges).
    pub invalidations: u64,
    /// Lookups answered by the local tier.
    pub local_hits: u64,
    /// Lookups the local tier could not answer.
    pub local_misses: u64,
    /// Lookups answered by Redis.
    pub redis_hits: u64,
    /// Lookups Redis answered with nothing (or with a value that did not decode).
    pub redis_misses: u64,
    /// Redis operations that failed or timed out.
    pub redis_errors: u64,
    /// Redis operations skipped because the breaker was open.
    pub redis_skipped: u64,
    /// Times the breaker opened.
    pub breaker_opens: u64,
    /// Whether the breaker is open now.
    pub breaker_open: bool,
    /// Approximate bytes held by the local tier at its last write.
    pub local_bytes: u64,
    /// Entries the local tier refused because their tenant held its share of it (see
    /// [`CacheLayerBuilder::local_tenant_share`](crate::CacheLayerBuilder::local_tenant_share)).
    pub local_refused: u64,
}
