//! Requests per tenant by outcome, counted in a fixed table of slots: finding a tenant's slot
//! hashes its id and compares it with the ids of a few slots (no allocation, no lock), and
//! counting is one atomic increment. A tenant takes a free slot on its first request and keeps
//! it; when the slots its id may use are all taken by other tenants, its requests are counted
//! with the overflow, which is only ever reported in the sum of the tenants outside the top.
//! Read with [`CacheHandle::requests_by_tenant`](crate::CacheHandle::requests_by_tenant).

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use parapet_tenant::TenantId;

/// How many tenants get a slot of their own (more are counted together in the overflow).
const SLOTS: usize = 1024;
/// How many slots a tenant's id may use (consecutive ones from its hash).
const PROBES: usize = 16;

/// The outcome of a request, as `parapet.cache.requests` counts it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Hit = 0,
    Stale = 1,
    Miss = 2,
    Bypass = 3,
}

/// The slot of a request's tenant, found once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TenantSlot(u32);

impl TenantSlot {
    /// A request without a tenant: not counted per tenant.
    pub(crate) const NONE: Self = Self(u32::MAX);
    /// A tenant that found no free slot.
    const OVERFLOW: Self = Self(SLOTS as u32);
}

#[derive(Debug, Default)]
struct Slot {
    tenant: OnceLock<TenantId>,
    counts: [AtomicU64; 4],
}

/// Requests per tenant and outcome.
#[derive(Debug)]
pub(crate) struct TenantCounters {
    hasher: RandomState,
    slots: Box<[Slot]>,
    overflow: [AtomicU64; 4],
}

impl Default for TenantCounters {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            slots: std::iter::repeat_with(Slot::default).take(SLOTS).collect(),
            overflow: Default::default(),
        }
    }
}

/// The requests of a tenant by outcome; see
/// [`CacheHandle::requests_by_tenant`](crate::CacheHandle::requests_by_tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantRequests {
    /// The tenant id; `None` for the sum of the tenants left out of the top.
    pub tenant: Option<String>,
    /// Served from the cache while fresh (counted in [`CacheStats::hits`](crate::CacheStats::hits)).
    pub hits: u64,
    /// Served stale ([`CacheStats::stale`](crate::CacheStats::stale)).
    pub stale: u64,
    /// Went to the inner service for want of a usable entry ([`CacheStats::misses`](crate::CacheStats::misses)).
    pub misses: u64,
    /// Not handled by the cache ([`CacheStats::bypass`](crate::CacheStats::bypass)).
    pub bypass: u64,
}

impl TenantRequests {
    /// All its requests.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.hits + self.stale + self.misses + self.bypass
    }

    fn add(&mut self, counts: [u64; 4]) {
        self.hits += counts[Outcome::Hit as usize];
        self.stale += counts[Outcome::Stale as usize];
        self.misses += counts[Outcome::Miss as usize];
        self.bypass += counts[Outcome::Bypass as usize];
    }
}

fn load(counts: &[AtomicU64; 4]) -> [u64; 4] {
    counts.each_ref().map(|c| c.load(Ordering::Relaxed))
}

impl TenantCounters {
    /// The slot of `tenant`, taking a free one on its first request.
    pub(crate) fn slot(&self, tenant: Option<&TenantId>) -> TenantSlot {
        let Some(tenant) = tenant else {
            return TenantSlot::NONE;
        };
        let id = tenant.as_str();
        // Truncation is the point: the hash picks a slot.
        #[allow(clippy::cast_possible_truncation)]
        let start = self.hasher.hash_one(id) as usize;
        for probe in 0..PROBES {
            let index = (start.wrapping_add(probe)) % SLOTS;
            let slot = &self.slots[index];
            let owner = match slot.tenant.get() {
                Some(owner) => owner,
                None => slot.tenant.get_or_init(|| tenant.clone()),
            };
            if owner.as_str() == id {
                // Below SLOTS.
                #[allow(clippy::cast_possible_truncation)]
                return TenantSlot(index as u32);
            }
        }
        TenantSlot::OVERFLOW
    }

    /// Counts one request of the slot's tenant.
    pub(crate) fn count(&self, slot: TenantSlot, outcome: Outcome) {
        let counts = match self.slots.get(slot.0 as usize) {
            Some(slot) => &slot.counts,
            None if slot == TenantSlot::OVERFLOW => &self.overflow,
            None => return,
        };
        counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The `top` tenants with the most requests (ties by id), then one entry summing the
    /// others when some were left out (or counted in the overflow).
    pub(crate) fn top(&self, top: usize) -> Vec<TenantRequests> {
        let mut all: Vec<TenantRequests> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let tenant = slot.tenant.get()?;
                let mut requests = TenantRequests {
                    tenant: Some(tenant.as_str().to_owned()),
                    hits: 0,
                    stale: 0,
                    misses: 0,
                    bypass: 0,
                };
                requests.add(load(&slot.counts));
                Some(requests)
            })
            .collect();
        all.sort_by(|a, b| {
            b.total()
                .cmp(&a.total())
                .then_with(|| a.tenant.cmp(&b.tenant))
        });
        let overflow = load(&self.overflow);
        if all.len() <= top && overflow.iter().all(|&n| n == 0) {
            return all;
        }
        let mut other = TenantRequests {
            tenant: None,
            hits: 0,
            stale: 0,
            misses: 0,
            bypass: 0,
        };
        other.add(overflow);
        for rest in all.drain(top.min(all.len())..) {
            other.add([rest.hits, rest.stale, rest.misses, rest.bypass]);
        }
        all.push(other);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn a_tenant_keeps_its_slot_and_the_rest_are_summed() {
        let counters = TenantCounters::default();
        let a = counters.slot(Some(&id("a")));
        assert_eq!(a, counters.slot(Some(&id("a"))), "found again");
        let b = counters.slot(Some(&id("b")));
        let c = counters.slot(Some(&id("c")));
        assert_ne!(a, b);
        for _ in 0..3 {
            counters.count(a, Outcome::Hit);
        }
        counters.count(a, Outcome::Miss);
        counters.count(b, Outcome::Stale);
        counters.count(b, Outcome::Bypass);
        counters.count(c, Outcome::Miss);
        counters.count(TenantSlot::NONE, Outcome::Hit);
        let top = counters.top(1);
        assert_eq!(top.len(), 2, "{top:?}");
        assert_eq!(top[0].tenant.as_deref(), Some("a"));
        assert_eq!((top[0].hits, top[0].misses), (3, 1));
        assert_eq!(top[1].tenant, None);
        assert_eq!(
            (top[1].stale, top[1].bypass, top[1].misses, top[1].hits),
            (1, 1, 1, 0),
            "b and c summed; the request without a tenant is nobody's"
        );
        let all = counters.top(10);
        assert_eq!(all.len(), 3, "nobody left out: no sum");
        assert_eq!(all.iter().map(TenantRequests::total).sum::<u64>(), 7);
    }

    #[test]
    fn tenants_beyond_the_slots_count_in_the_sum() {
        let counters = TenantCounters::default();
        let mut overflowed = 0;
        for n in 0..SLOTS + 200 {
            let slot = counters.slot(Some(&id(&format!("t{n}"))));
            overflowed += usize::from(slot == TenantSlot::OVERFLOW);
            counters.count(slot, Outcome::Miss);
        }
        assert!(overflowed >= 200, "{overflowed}");
        let top = counters.top(5);
        assert_eq!(top.len(), 6);
        assert_eq!(top[5].tenant, None);
        assert_eq!(
            top.iter().map(|t| t.misses).sum::<u64>(),
            (SLOTS + 200) as u64,
            "every request counted once"
        );
    }
}
