//! Invalidation epochs: a response fetched before an invalidation of its tenant began is not
//! stored after it.
//!
//! The race this closes: a miss calls the origin, which reads the old data; a write commits and
//! purges (its tag, or its URI) while that call is in flight, when the key is not stored yet, so
//! the purge finds nothing; the miss then stores the old data, which every later read is served
//! until its TTL, though it started after the write had been answered.
//!
//! Each tenant hashes to a slot holding a counter behind an async `RwLock`. An invalidation
//! (a tag or tenant purge, a purge of a URI, an unsafe method's invalidation) bumps its
//! tenant's counter under the write lock before it reads or deletes anything. A fill reads the
//! counter before it calls the origin, and stores under the read lock only if the counter has
//! not moved: either the bump came first and the fill stores nothing, or the store (its tag
//! indexes included) is complete before the bump, and the invalidation then finds and deletes
//! it. Slots are shared by tenants that hash alike: a purge of one may cost the other a store,
//! never a stale entry. The hit path never touches them.
//!
//! Limit: this covers the invalidations of this instance. Another instance's purge reaches
//! this one through Redis pub/sub, after the fact; what a fill here stores in Redis just after
//! another instance's purge stays until its TTL or the next purge.

use tokio::sync::{RwLock, RwLockReadGuard};

/// Slots of tenants; a power of two.
const SLOTS: usize = 64;

/// Per-tenant-slot invalidation counters of one cache layer.
#[derive(Debug)]
pub(crate) struct Epochs {
    slots: Box<[RwLock<u64>]>,
}

impl Default for Epochs {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| RwLock::new(0)).collect(),
        }
    }
}

/// FNV-1a: the slot of a tenant prefix.
fn slot(tenant_prefix: &[u8]) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant_prefix {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash as usize) & (SLOTS - 1)
}

impl Epochs {
    /// The tenant's counter now: read before a fill calls the origin.
    pub(crate) async fn current(&self, tenant_prefix: &[u8]) -> u64 {
        *self.slots[slot(tenant_prefix)].read().await
    }

    /// Marks the start of an invalidation of the tenant: fills that read the counter before
    /// this will not store. Waits for stores of the slot in progress, so that they are indexed
    /// before the invalidation looks.
    pub(crate) async fn bump(&self, tenant_prefix: &[u8]) {
        *self.slots[slot(tenant_prefix)].write().await += 1;
    }

    /// Holds off the tenant's invalidations while a fill stores, if none began since `seen`
    /// (what [`current`](Self::current) returned before the fill); `None` when one did.
    pub(crate) async fn store_guard(
        &self,
        tenant_prefix: &[u8],
        seen: u64,
    ) -> Option<RwLockReadGuard<'_, u64>> {
        let guard = self.slots[slot(tenant_prefix)].read().await;
        (*guard == seen).then_some(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bump_between_the_read_and_the_store_refuses_the_store() {
        let epochs = Epochs::default();
        let seen = epochs.current(b"p:tacme|").await;
        assert!(epochs.store_guard(b"p:tacme|", seen).await.is_some());
        epochs.bump(b"p:tacme|").await;
        assert!(epochs.store_guard(b"p:tacme|", seen).await.is_none());
        let seen = epochs.current(b"p:tacme|").await;
        assert!(epochs.store_guard(b"p:tacme|", seen).await.is_some());
    }

    #[tokio::test]
    async fn a_bump_waits_for_the_store_in_progress() {
        let epochs = std::sync::Arc::new(Epochs::default());
        let seen = epochs.current(b"p:tacme|").await;
        let guard = epochs.store_guard(b"p:tacme|", seen).await.unwrap();
        let bumper = {
            let epochs = epochs.clone();
            tokio::spawn(async move { epochs.bump(b"p:tacme|").await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!bumper.is_finished(), "the bump waits for the store");
        drop(guard);
        bumper.await.unwrap();
        assert_eq!(epochs.current(b"p:tacme|").await, seen + 1);
    }
}
