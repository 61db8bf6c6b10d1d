//! The local tier: a moka cache bounded in bytes, with a per-entry expiry.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use moka::Expiry;
use moka::future::Cache;

use super::{Found, Store, Tier};
use crate::entry::{SLOT_OVERHEAD, StoredValue};
use crate::stats::{Counters, bump};

/// A value in the local tier with its time to live and weight.
#[derive(Debug, Clone)]
struct Slot {
    value: StoredValue,
    ttl: Duration,
    weight: u32,
}

/// Expires each slot after its own TTL (freshness plus stale windows).
struct SlotExpiry;

impl Expiry<Bytes, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &Bytes, slot: &Slot, _: Instant) -> Option<Duration> {
        Some(slot.ttl)
    }

    fn expire_after_update(
        &self,
        _: &Bytes,
        slot: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }
}

/// The in-process tier: a moka cache whose capacity is in **bytes**, not entries.
///
/// Each entry weighs its key, body and headers plus a fixed overhead, so a million small
/// entries and ten large ones are held to the same budget. Entries expire after their own
/// retention (freshness plus the stale windows). Entries heavier than `u32::MAX` bytes are
/// never kept.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<Bytes, Slot>,
    /// Sets of keys by index (tags), bounded in members, expiring with their longest entry.
    indexes: Cache<Bytes, Index>,
    /// Tenant generations (this tier alone is the authority when there is no Redis).
    generations: Arc<Mutex<HashMap<Bytes, u64>>>,
    counters: Arc<Counters>,
}

/// One set of keys, each with the instant its entry expires.
#[derive(Debug, Clone, Default)]
struct Index {
    members: Arc<Mutex<HashMap<Bytes, Instant>>>,
}

impl Index {
    /// The bytes the index takes in the local tier: its slot and key, and for each member its
    /// bytes, their allocation and its map slot (key and expiry), so long keys weigh what they
    /// cost.
    fn weight(&self, key: &[u8]) -> u32 {
        let members: usize = lock(&self.members)
            .keys()
            .map(|member| member.len() + MEMBER_OVERHEAD)
            .sum();
        u32::try_from(SLOT_OVERHEAD + key.len() + members).unwrap_or(u32::MAX)
    }

    /// How long until the last member expires.
    fn remaining(&self) -> Duration {
        let now = Instant::now();
        lock(&self.members)
            .values()
            .max()
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }
}

/// What one index member costs beyond its bytes: the map slot (`Bytes` and `Instant`, its
/// control byte and the map's spare room) and the allocation of the copied key.
const MEMBER_OVERHEAD: usize = size_of::<(Bytes, Instant)>() + 8 + 16;

/// The bytes the tag indexes may take beside a local tier of `max_bytes`: a sixteenth, and at
/// least 64 KiB.
fn index_capacity(max_bytes: u64) -> u64 {
    max_bytes / 16 + 64 * 1024
}

/// Expires an index after its longest-lived member.
struct IndexExpiry;

impl Expiry<Bytes, Index> for IndexExpiry {
    fn expire_after_create(&self, _: &Bytes, index: &Index, _: Instant) -> Option<Duration> {
        Some(index.remaining())
    }

    fn expire_after_update(
        &self,
        _: &Bytes,
        index: &Index,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(index.remaining())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.cache.entry_count())
            .field("weighted_bytes", &self.cache.weighted_size())
            .field("max_bytes", &self.cache.policy().max_capacity())
            .finish()
    }
}

impl MemoryStore {
    /// A local tier holding at most about `max_bytes` bytes.
    #[must_use]
    pub fn new(max_bytes: u64) -> Self {
        Self::with_counters(max_bytes, Arc::default())
    }

    pub(crate) fn with_counters(max_bytes: u64, counters: Arc<Counters>) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, slot: &Slot| slot.weight)
            .expire_after(SlotExpiry)
            .support_invalidation_closures()
            .build();
        let indexes = Cache::builder()
            .max_capacity(index_capacity(max_bytes))
            .weigher(|key: &Bytes, index: &Index| index.weight(key))
            .expire_after(IndexExpiry)
            .support_invalidation_closures()
            .build();
        Self {
            cache,
            indexes,
            generations: Arc::default(),
            counters,
        }
    }

    /// The approximate number of bytes held (after moka's pending maintenance).
    #[must_use]
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// The approximate number of entries held.
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs moka's pending maintenance (evictions, expirations, size accounting) now.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    async fn put_slot(&self, key: &[u8], value: StoredValue, ttl: Duration) {
        if ttl.is_zero() {
            self.cache.invalidate(key).await;
            return;
        }
        let weight = value.weight().saturating_add(key.len());
        let Ok(weight) = u32::try_from(weight) else {
            return;
        };
        let slot = Slot { value, ttl, weight };
        self.cache.insert(Bytes::copy_from_slice(key), slot).await;
        self.counters
            .local_bytes
            .store(self.cache.weighted_size(), Ordering::Relaxed);
    }
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Option<Found>> {
        async move {
            let found = self.cache.get(key).await;
            bump(if found.is_some() {
                &self.counters.local_hits
            } else {
                &self.counters.local_misses
            });
            found.map(|slot| Found {
                value: slot.value,
                tier: Tier::Local,
            })
        }
        .boxed()
    }

    fn put<'a>(&'a self, key: &'a [u8], value: StoredValue, ttl: Duration) -> BoxFuture<'a, ()> {
        self.put_slot(key, value, ttl).boxed()
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, bool> {
        async move {
            self.cache.invalidate(key).await;
            true
        }
        .boxed()
    }

    fn generation<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, u64> {
        let generation = lock(&self.generations)
            .get(tenant_prefix)
            .copied()
            .unwrap_or(0);
        futures_util::future::ready(generation).boxed()
    }

    /// Bumps the tenant's generation and drops its entries and indexes.
    fn purge_tenant<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, bool> {
        {
            let mut generations = lock(&self.generations);
            let generation = generations
                .entry(Bytes::copy_from_slice(tenant_prefix))
                .or_insert(0);
            *generation = generation.wrapping_add(1);
        }
        self.purge_prefix(tenant_prefix);
        futures_util::future::ready(true).boxed()
    }

    fn index_add<'a>(
        &'a self,
        index: &'a [u8],
        member: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, ()> {
        async move {
            let entry = self
                .indexes
                .entry(Bytes::copy_from_slice(index))
                .or_default()
                .await
                .into_value();
            {
                let now = Instant::now();
                let until = now + ttl;
                let mut members = lock(&entry.members);
                members.retain(|_, expires| *expires > now);
                let expires = members
                    .entry(Bytes::copy_from_slice(member))
                    .or_insert(until);
                *expires = (*expires).max(until);
            }
            // Re-insert so moka sees the new weight and expiry.
            self.indexes
                .insert(Bytes::copy_from_slice(index), entry)
                .await;
        }
        .boxed()
    }

    fn index_take<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>> {
        async move {
            match self.indexes.remove(index).await {
                Some(entry) => {
                    let now = Instant::now();
                    lock(&entry.members)
                        .drain()
                        .filter(|(_, expires)| *expires > now)
                        .map(|(member, _)| member)
                        .collect()
                }
                None => Vec::new(),
            }
        }
        .boxed()
    }
}

impl MemoryStore {
    /// Drops every entry and index whose key starts with `prefix` (a tenant's, when the
    /// tenant is purged on this or another instance).
    pub(crate) fn purge_prefix(&self, prefix: &[u8]) {
        let prefix = Bytes::copy_from_slice(prefix);
        // Registered predicates apply to lookups at once and are swept in the background.
        let index_prefix = prefix.clone();
        let purged = self
            .cache
            .invalidate_entries_if(move |key, _| key.starts_with(&prefix))
            .and_then(|_| {
                self.indexes
                    .invalidate_entries_if(move |key, _| key.starts_with(&index_prefix))
            });
        if let Err(error) = purged {
            tracing::warn!(%error, "local cache purge failed; clearing the local tier");
            self.clear();
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.cache.invalidate_all();
        self.indexes.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use crate::policy::StoredTimes;
    use http::{HeaderMap, StatusCode};
    use std::time::SystemTime;

    fn value(body_len: usize) -> StoredValue {
        let now = SystemTime::now();
        let times = StoredTimes::from_response(now, now, &HeaderMap::new());
        let entry = Entry::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![0; body_len]),
            times,
            Duration::from_secs(60),
        );
        StoredValue::Response(Arc::new(entry))
    }

    #[tokio::test]
    async fn get_put_delete_and_expiry() {
        let store = MemoryStore::new(1 << 20);
        assert!(store.get(b"k").await.is_none());
        store.put(b"k", value(10), Duration::from_secs(60)).await;
        let found = store.get(b"k").await.unwrap();
        assert_eq!(found.tier, Tier::Local);
        store.delete(b"k").await;
        assert!(store.get(b"k").await.is_none());

        for key in [&b"t1:a"[..], b"t1:b", b"t2:a"] {
            store.put(key, value(1), Duration::from_secs(60)).await;
        }
        assert_eq!(store.generation(b"t1:").await, 0);
        assert!(store.purge_tenant(b"t1:").await);
        assert_eq!(store.generation(b"t1:").await, 1);
        assert_eq!(store.generation(b"t2:").await, 0);
        assert!(store.get(b"t1:a").await.is_none());
        assert!(store.get(b"t1:b").await.is_none());
        assert!(store.get(b"t2:a").await.is_some());
        store.clear();
        assert!(store.get(b"t2:a").await.is_none());

        store
            .index_add(b"tag", b"k1", Duration::from_secs(60))
            .await;
        store.index_add(b"tag", b"k2", Duration::from_secs(1)).await;
        store.index_add(b"tag", b"k1", Duration::from_secs(1)).await;
        let mut members = store.index_take(b"tag").await;
        members.sort();
        assert_eq!(members, [&b"k1"[..], b"k2"]);
        assert!(store.index_take(b"tag").await.is_empty());

        // Members whose entries expired are trimmed on the next add and never returned.
        store
            .index_add(b"tag", b"old", Duration::from_millis(30))
            .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        store
            .index_add(b"tag", b"new", Duration::from_secs(60))
            .await;
        let entry = store.indexes.get(&b"tag"[..]).await.unwrap();
        assert_eq!(
            lock(&entry.members).len(),
            1,
            "the expired member was trimmed"
        );
        store
            .index_add(b"tag", b"short", Duration::from_millis(30))
            .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(store.index_take(b"tag").await, [&b"new"[..]]);

        store
            .put(b"short", value(10), Duration::from_millis(50))
            .await;
        assert!(store.get(b"short").await.is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.get(b"short").await.is_none(), "expired after its ttl");
    }

    /// The tag index weighs its members' real bytes: a tag listing long keys weighs more than
    /// one listing short keys, by at least the difference in key bytes.
    #[tokio::test]
    async fn tag_indexes_weigh_their_members_bytes() {
        let store = MemoryStore::new(1 << 20);
        let long = vec![b'k'; 2000];
        for i in 0..10u8 {
            let mut short = b"k".to_vec();
            short.push(i);
            store
                .index_add(b"short", &short, Duration::from_secs(60))
                .await;
            let mut member = long.clone();
            member.push(i);
            store
                .index_add(b"long!", &member, Duration::from_secs(60))
                .await;
        }
        let short_weight = store
            .indexes
            .get(&b"short"[..])
            .await
            .unwrap()
            .weight(b"short");
        let long_weight = store
            .indexes
            .get(&b"long!"[..])
            .await
            .unwrap()
            .weight(b"long!");
        assert!(
            u64::from(long_weight) >= u64::from(short_weight) + 10 * 1999,
            "{long_weight} vs {short_weight}"
        );
        let floor = SLOT_OVERHEAD + 10 * (2 + MEMBER_OVERHEAD);
        assert!(short_weight as usize >= floor, "{short_weight}");
        // Bounded: a local tier of 64 KiB keeps far fewer than 1,000 indexes of 2 KB members.
        let small = MemoryStore::new(64 * 1024);
        let capacity = index_capacity(64 * 1024);
        for i in 0..1_000 {
            let index = format!("tag-{i}");
            small
                .index_add(index.as_bytes(), &long, Duration::from_secs(60))
                .await;
        }
        small.indexes.run_pending_tasks().await;
        let weighted = small.indexes.weighted_size();
        assert!(weighted <= capacity, "{weighted}");
        assert!(
            small.indexes.entry_count() <= capacity / 2000,
            "{}",
            small.indexes.entry_count()
        );
        assert!(small.indexes.entry_count() > 0);
    }

    #[tokio::test]
    async fn bounded_in_bytes() {
        let capacity = 256 * 1024;
        let store = MemoryStore::new(capacity);
        for i in 0..2_000 {
            let key = format!("key-{i}");
            store
                .put(key.as_bytes(), value(1024), Duration::from_secs(60))
                .await;
        }
        store.run_pending_tasks().await;
        assert!(
            store.weighted_size() <= capacity,
            "{}",
            store.weighted_size()
        );
        // Each entry weighs at least its body, so far fewer than 2,000 fit.
        assert!(store.entry_count() <= capacity / 1024);
        assert!(store.entry_count() > 0);
    }

    /// The byte bound with many small entries (the weigher's fixed overhead counts): after
    /// every maintenance round the weighted size is within the capacity, and far fewer than
    /// the written entries are held. `bench/run.sh cache-bytes` measures RSS for 1,000,000.
    #[tokio::test]
    async fn weighted_size_never_exceeds_capacity_with_many_small_entries() {
        let capacity = 2 * 1024 * 1024;
        let store = MemoryStore::new(capacity);
        let mut max_weighted = 0;
        for i in 0..100_000 {
            let key = format!("parapet:cache:t4:acme|n1:0|mGET|u9:/items/{i}|");
            store
                .put(key.as_bytes(), value(100), Duration::from_secs(60))
                .await;
            if i % 5_000 == 4_999 {
                store.run_pending_tasks().await;
                let weighted = store.weighted_size();
                assert!(weighted <= capacity, "{weighted} > {capacity} after {i}");
                max_weighted = max_weighted.max(weighted);
            }
        }
        // The capacity was reached (so the bound was exercised), and each entry weighs at
        // least its body, key and the fixed overhead.
        assert!(max_weighted > capacity / 2, "{max_weighted}");
        let min_weight = u64::try_from(value(100).weight() + 40).unwrap();
        assert!(store.entry_count() <= capacity / min_weight);
        assert!(store.entry_count() > 1_000);
    }
}
