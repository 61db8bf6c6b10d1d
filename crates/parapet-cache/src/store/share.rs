//! Bytes of the local tier per tenant: counted for every entry, and optionally capped to a
//! share of the tier so that one tenant's traffic cannot evict the others' entries.
//!
//! An entry's bytes are added when it is admitted and taken off when moka lets it go
//! (eviction, expiry, replacement, invalidation, or not admitted: moka's listener reports them
//! all). The tenant is read from the key (`<prefix>t<len>:<id>|…`, see [`crate::key`]); keys of
//! single-tenant mode count for no tenant and are not capped.
//!
//! **Over its share, a tenant's new entry is refused** (the tier then behaves, for that
//! tenant, as if the entry were not cacheable locally: a miss, or a hit from Redis). Evicting
//! the tenant's own older entries instead would need an order per tenant that moka does not
//! keep; refusing is exact, cheap and cannot touch another tenant. Refusing a replacement also
//! removes the entry it would have replaced, so an outdated value is never served in its
//! place. The tenant's entries expire as usual, and new ones are admitted again as its bytes
//! fall under the share.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

/// Bytes held in the local tier per tenant, and the cap per tenant.
#[derive(Debug)]
pub(crate) struct TenantLedger {
    /// The cache's key prefix: a tenant component follows it.
    prefix: Bytes,
    /// The most bytes one tenant may hold (`None`: no cap).
    cap: Option<u64>,
    held: Mutex<HashMap<Bytes, u64>>,
}

/// Bytes a tenant holds in the local tier; see
/// [`CacheHandle::local_bytes_by_tenant`](crate::CacheHandle::local_bytes_by_tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantBytes {
    /// The tenant id; `None` for the sum of the tenants left out of the top.
    pub tenant: Option<String>,
    /// Bytes of its entries (keys, bodies, headers and a fixed overhead each).
    pub bytes: u64,
}

impl TenantLedger {
    /// A ledger for keys under `prefix`, capping a tenant at `cap` bytes when given.
    pub(crate) fn new(prefix: &str, cap: Option<u64>) -> Self {
        Self {
            prefix: Bytes::copy_from_slice(prefix.as_bytes()),
            cap,
            held: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Bytes, u64>> {
        // Single updates: a panic cannot leave the map half-changed.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tenant id of a key, when it has one.
    pub(crate) fn tenant_of<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let rest = key.strip_prefix(&*self.prefix)?.strip_prefix(b"t")?;
        let colon = rest.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let id = rest.get(colon + 1..colon + 1 + len)?;
        (rest.get(colon + 1 + len) == Some(&b'|')).then_some(id)
    }

    /// Counts `weight` more bytes for the key's tenant, unless that would take the tenant over
    /// its cap: then nothing is counted and `false` says the entry must not be stored.
    pub(crate) fn admit(&self, key: &[u8], weight: u64) -> bool {
        let Some(tenant) = self.tenant_of(key) else {
            return true;
        };
        let mut held = self.lock();
        let current = held.get(tenant).copied().unwrap_or(0);
        if self
            .cap
            .is_some_and(|cap| current.saturating_add(weight) > cap)
        {
            return false;
        }
        match held.get_mut(tenant) {
            Some(bytes) => *bytes += weight,
            None => {
                held.insert(Bytes::copy_from_slice(tenant), weight);
            }
        }
        true
    }

    /// Takes `weight` bytes off the key's tenant (the entry left the tier).
    pub(crate) fn release(&self, key: &[u8], weight: u64) {
        let Some(tenant) = self.tenant_of(key) else {
            return;
        };
        let mut held = self.lock();
        if let Some(bytes) = held.get_mut(tenant) {
            *bytes = bytes.saturating_sub(weight);
            if *bytes == 0 {
                held.remove(tenant);
            }
        }
    }

    /// The `top` tenants holding the most bytes (ties by id), then one entry summing the
    /// others when some were left out.
    pub(crate) fn top(&self, top: usize) -> Vec<TenantBytes> {
        let mut all: Vec<(Bytes, u64)> = self
            .lock()
            .iter()
            .map(|(tenant, bytes)| (tenant.clone(), *bytes))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let rest: u64 = all.iter().skip(top).map(|(_, bytes)| bytes).sum();
        let left_out = all.len() > top;
        let mut out: Vec<TenantBytes> = all
            .into_iter()
            .take(top)
            .map(|(tenant, bytes)| TenantBytes {
                tenant: Some(String::from_utf8_lossy(&tenant).into_owned()),
                bytes,
            })
            .collect();
        if left_out {
            out.push(TenantBytes {
                tenant: None,
                bytes: rest,
            });
        }
        out
    }

    /// The bytes every tenant holds together.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.lock().values().sum()
    }
}

/// The bytes a `share` (validated to `(0, 1]`) of a tier of `bytes` is, rounded down.
pub(crate) fn share_of(share: f64, bytes: u64) -> u64 {
    // Within 0..=bytes for a share in (0, 1]; precision loss above 2^53 bytes is immaterial.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let cap = (share * bytes as f64) as u64;
    cap.min(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::PrimaryKey;

    #[test]
    fn the_tenant_is_read_from_the_key() {
        let ledger = TenantLedger::new("p:", None);
        let key = PrimaryKey::new("p:", Some("a:b|c"), 3, "/x");
        assert_eq!(ledger.tenant_of(key.as_bytes()), Some(&b"a:b|c"[..]));
        let single = PrimaryKey::new("p:", None, 0, "/x");
        assert_eq!(ledger.tenant_of(single.as_bytes()), None);
        assert_eq!(ledger.tenant_of(b"q:t1:a|"), None, "another prefix");
        assert_eq!(ledger.tenant_of(b"p:t9:a|"), None, "truncated");
        assert_eq!(ledger.tenant_of(b"p:t1:ab"), None, "no terminator");
    }

    #[test]
    fn a_tenant_over_its_cap_is_refused_and_others_are_not() {
        let ledger = TenantLedger::new("p:", Some(100));
        let a = PrimaryKey::new("p:", Some("a"), 0, "/1");
        let b = PrimaryKey::new("p:", Some("b"), 0, "/1");
        assert!(ledger.admit(a.as_bytes(), 60));
        assert!(ledger.admit(a.as_bytes(), 40));
        assert!(!ledger.admit(a.as_bytes(), 1), "at its cap");
        assert!(ledger.admit(b.as_bytes(), 100), "b has its own share");
        ledger.release(a.as_bytes(), 40);
        assert!(ledger.admit(a.as_bytes(), 30));
        assert_eq!(ledger.total(), 190);
        let top = ledger.top(1);
        assert_eq!(
            top,
            [
                TenantBytes {
                    tenant: Some("b".to_owned()),
                    bytes: 100
                },
                TenantBytes {
                    tenant: None,
                    bytes: 90
                }
            ]
        );
        ledger.release(a.as_bytes(), 90);
        ledger.release(b.as_bytes(), 100);
        assert!(ledger.top(5).is_empty(), "no entry left behind");
    }
}
