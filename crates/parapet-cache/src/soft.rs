//! Soft purges: entries marked stale instead of deleted, so the next request revalidates them
//! (a `304` refreshes them without a new body) and `stale-if-error` still has a copy to serve
//! while the origin is down.
//!
//! Two mechanisms, both reaching every instance:
//! - a URI or a tag: each entry is written back with a freshness lifetime of zero
//!   ([`Store::replace`]: Redis, and every instance's local copy dropped through the
//!   invalidation channel). An entry with neither a validator nor a stale window would have
//!   nothing left to offer, so it is deleted instead. A URI whose responses vary keeps its
//!   `Vary` marker, written back with the time of the purge (`stale_before`): its variants
//!   cannot be listed, so the lookup finds every variant received until then stale.
//! - a tenant: one time per tenant ([`Store::soft_purge_tenant`]), read with the lookup (cached
//!   like the generation); an entry received until then is served as stale.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::entry::{Entry, StoredValue, VaryMarker};
use crate::shared::Shared;
use crate::store::Store;

/// A copy of `entry` whose freshness lifetime is over.
pub(crate) fn stale_copy(entry: &Entry) -> Entry {
    let mut copy = entry.clone();
    copy.lifetime = Duration::ZERO;
    copy
}

/// Marks the entry under `key` stale on every instance (or deletes it, see the module docs);
/// true when an entry or a marker was found.
pub(crate) async fn soften_key(shared: &Shared, key: &[u8]) -> bool {
    let Some(found) = shared.store.get(key).await else {
        return false;
    };
    match found.value {
        StoredValue::Response(entry) => {
            let stale = stale_copy(&entry);
            let retention = stale.retention(SystemTime::now(), shared.revalidation_grace);
            if retention.is_zero() {
                shared.store.delete(key).await;
            } else {
                let value = StoredValue::Response(Arc::new(stale));
                shared.store.replace(key, value, retention).await;
            }
        }
        StoredValue::Vary(marker) => {
            let now = SystemTime::now();
            match marker.expires_at.duration_since(now) {
                Ok(ttl) if !ttl.is_zero() => {
                    let marker = VaryMarker {
                        stale_before: Some(now),
                        ..marker
                    };
                    shared
                        .store
                        .replace(key, StoredValue::Vary(marker), ttl)
                        .await;
                }
                // Its variants are gone too.
                _ => {
                    shared.store.delete(key).await;
                }
            }
        }
    }
    true
}

/// Soft-purges every key in `keys`; how many were found.
pub(crate) async fn soften_keys(shared: &Shared, keys: &[Bytes]) -> usize {
    let mut found = 0;
    for key in keys {
        if soften_key(shared, key).await {
            found += 1;
        }
    }
    found
}

/// A variant as a request sees it: stale when it was received no later than the last soft
/// purge of its URI (recorded in the URI's marker).
pub(crate) fn as_of_uri_soft_purge(marker: Option<&VaryMarker>, entry: Arc<Entry>) -> Arc<Entry> {
    match marker.and_then(|marker| marker.stale_before) {
        Some(mark) if !entry.lifetime.is_zero() && entry.times.response_time <= mark => {
            Arc::new(stale_copy(&entry))
        }
        _ => entry,
    }
}

/// `entry` as a request of its tenant sees it: stale when it was received no later than the
/// tenant's last soft purge.
pub(crate) async fn as_of_soft_purge(
    store: &dyn Store,
    tenant_prefix: &[u8],
    entry: Arc<Entry>,
) -> Arc<Entry> {
    if entry.lifetime.is_zero() {
        return entry;
    }
    let mark = match store.stale_before_now(tenant_prefix) {
        Some(mark) => mark,
        None => store.stale_before(tenant_prefix).await,
    };
    match mark {
        Some(mark) if entry.times.response_time <= mark => Arc::new(stale_copy(&entry)),
        _ => entry,
    }
}
