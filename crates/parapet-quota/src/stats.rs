//! The layer's counters, and the throttled requests per tenant with a bounded set of tenants.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use parapet_tenant::TenantId;

/// A snapshot of a [`QuotaLayer`](crate::QuotaLayer)'s counters, cumulative since it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaStats {
    /// Requests let through.
    pub allowed: u64,
    /// Requests refused with 429.
    pub throttled: u64,
    /// Decisions Redis made (the limit shared by every instance).
    pub shared_decisions: u64,
    /// Decisions this process made alone: no Redis configured, or Redis unavailable.
    pub local_decisions: u64,
    /// Of the local decisions, those made because Redis was configured but did not answer in
    /// time or its breaker was open: the limit then held per instance only.
    pub fallbacks: u64,
    /// Cache hits that gave back part of their charge.
    pub refunds: u64,
    /// Of the shared decisions, refusals this instance answered without a round trip because
    /// Redis had already refused the tenant until a later time.
    pub remembered_refusals: u64,
    /// Refusals answered late by refusal pacing
    /// ([`refusal_delay`](crate::QuotaLayerBuilder::refusal_delay)).
    pub held_refusals: u64,
    /// Refusals being held now.
    pub held_now: u64,
    /// Refusals answered at once although pacing is on, because as many refusals were held
    /// already as [`max_held_refusals`](crate::QuotaLayerBuilder::max_held_refusals) or, for
    /// their tenant, [`max_held_per_tenant`](crate::QuotaLayerBuilder::max_held_per_tenant)
    /// allow.
    pub held_full: u64,
    /// Whether the last decision was shared (`Some(true)`), local while Redis is configured
    /// (`Some(false)`: the limit is per instance now), or `None` without Redis.
    pub shared: Option<bool>,
    /// Throttled requests of the tenants that have a series of their own (at most
    /// `top_tenants`: the first tenants throttled since start).
    pub throttled_by_tenant: Vec<(TenantId, u64)>,
    /// Throttled requests of every other tenant.
    pub throttled_other: u64,
}

#[derive(Debug)]
pub(crate) struct Counters {
    allowed: AtomicU64,
    throttled: AtomicU64,
    shared_decisions: AtomicU64,
    local_decisions: AtomicU64,
    fallbacks: AtomicU64,
    refunds: AtomicU64,
    remembered: AtomicU64,
    held: AtomicU64,
    held_now: AtomicU64,
    held_full: AtomicU64,
    redis: bool,
    shared: AtomicBool,
    /// The tenants with a throttled series of their own, in the order they were first
    /// throttled: read without a lock, a free slot taken under `claim`.
    top: Box<[Slot]>,
    claim: Mutex<()>,
    other: AtomicU64,
}

#[derive(Debug, Default)]
struct Slot {
    id: OnceLock<TenantId>,
    count: AtomicU64,
}

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Shared,
    Local,
    Fallback,
}

impl Counters {
    pub(crate) fn new(redis: bool, top_n: usize) -> Self {
        Self {
            allowed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            shared_decisions: AtomicU64::new(0),
            local_decisions: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            refunds: AtomicU64::new(0),
            remembered: AtomicU64::new(0),
            held: AtomicU64::new(0),
            held_now: AtomicU64::new(0),
            held_full: AtomicU64::new(0),
            redis,
            shared: AtomicBool::new(redis),
            top: (0..top_n).map(|_| Slot::default()).collect(),
            claim: Mutex::new(()),
            other: AtomicU64::new(0),
        }
    }

    pub(crate) fn decided(&self, source: Source, allowed: bool) {
        match source {
            Source::Shared => {
                self.shared_decisions.fetch_add(1, Ordering::Relaxed);
                if self.redis && !self.shared.load(Ordering::Relaxed) {
                    self.shared.store(true, Ordering::Relaxed);
                    tracing::info!("redis answers again: tenant quotas are shared again");
                }
            }
            Source::Local => {
                self.local_decisions.fetch_add(1, Ordering::Relaxed);
            }
            Source::Fallback => {
                self.local_decisions.fetch_add(1, Ordering::Relaxed);
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                if self.shared.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        "redis does not answer: tenant quotas hold per instance until it is back"
                    );
                }
            }
        }
        if allowed {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A refused request of `tenant`: its own series while there is room, `other` after.
    /// A tenant that has its series already is counted without a lock or an allocation.
    pub(crate) fn throttled(&self, tenant: &TenantId) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        if self.count_in_top(tenant) {
            return;
        }
        let Ok(_claim) = self.claim.lock() else {
            self.other.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Another request of the same tenant may have taken a slot meanwhile.
        if self.count_in_top(tenant) {
            return;
        }
        match self.top.iter().find(|slot| slot.id.get().is_none()) {
            Some(slot) => {
                // Counted before it is visible: a snapshot never shows a series at 0.
                slot.count.fetch_add(1, Ordering::Relaxed);
                let _ = slot.id.set(tenant.clone());
            }
            None => {
                self.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts `tenant` in its own series if it has one.
    fn count_in_top(&self, tenant: &TenantId) -> bool {
        for slot in &self.top {
            match slot.id.get() {
                Some(id) if id == tenant => {
                    slot.count.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Some(_) => {}
                // Slots are taken in order: no tenant further on.
                None => return false,
            }
        }
        false
    }

    /// A refusal answered from Redis's remembered refusal (also a shared decision).
    pub(crate) fn remembered(&self) {
        self.remembered.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a place for a held refusal if fewer than `max` are held; counts the refusal as
    /// held (and returns how many were held before it) or, when there is no place, as answered
    /// at once.
    pub(crate) fn hold_one(&self, max: u64) -> Option<u64> {
        if self.held_now.fetch_add(1, Ordering::AcqRel) >= max {
            self.held_now.fetch_sub(1, Ordering::AcqRel);
            self.held_full();
            return None;
        }
        Some(self.held.fetch_add(1, Ordering::Relaxed))
    }

    /// Gives back a place taken by [`hold_one`](Self::hold_one).
    pub(crate) fn release_one(&self) {
        self.held_now.fetch_sub(1, Ordering::AcqRel);
    }

    /// A refusal answered at once because as many are held as a bound allows.
    pub(crate) fn held_full(&self) {
        self.held_full.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refunded(&self) {
        self.refunds.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> QuotaStats {
        QuotaStats {
            allowed: self.allowed.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            shared_decisions: self.shared_decisions.load(Ordering::Relaxed),
            local_decisions: self.local_decisions.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            refunds: self.refunds.load(Ordering::Relaxed),
            remembered_refusals: self.remembered.load(Ordering::Relaxed),
            held_refusals: self.held.load(Ordering::Relaxed),
            held_now: self.held_now.load(Ordering::Relaxed),
            held_full: self.held_full.load(Ordering::Relaxed),
            shared: self.redis.then(|| self.shared.load(Ordering::Relaxed)),
            throttled_by_tenant: self
                .top
                .iter()
                .map_while(|slot| {
                    let id = slot.id.get()?;
                    Some((id.clone(), slot.count.load(Ordering::Relaxed)))
                })
                .collect(),
            throttled_other: self.other.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_beyond_the_bound_count_as_other() {
        let counters = Counters::new(false, 2);
        let id = |s: &str| TenantId::parse(s).unwrap();
        for tenant in ["a", "b", "a", "c", "d", "b", "c"] {
            counters.throttled(&id(tenant));
        }
        let stats = counters.snapshot();
        assert_eq!(stats.throttled, 7);
        assert_eq!(stats.throttled_by_tenant, vec![(id("a"), 2), (id("b"), 2)]);
        assert_eq!(stats.throttled_other, 3);
        assert_eq!(stats.shared, None);
    }

    #[test]
    fn threads_together_count_every_refusal_once() {
        let counters = Counters::new(false, 3);
        let id = |s: &str| TenantId::parse(s).unwrap();
        let tenants = ["a", "b", "c", "d", "e"].map(id);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..1000 {
                        counters.throttled(&tenants[i % tenants.len()]);
                    }
                });
            }
        });
        let stats = counters.snapshot();
        assert_eq!(stats.throttled, 4000);
        assert_eq!(stats.throttled_by_tenant.len(), 3);
        let mut seen: Vec<_> = stats.throttled_by_tenant.iter().map(|(t, _)| t).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3, "one series per tenant");
        let own: u64 = stats.throttled_by_tenant.iter().map(|(_, n)| n).sum();
        assert_eq!(own + stats.throttled_other, 4000);
        assert!(stats.throttled_by_tenant.iter().all(|(_, n)| *n == 800));
    }

    #[test]
    fn a_fallback_says_the_limit_is_per_instance() {
        let counters = Counters::new(true, 2);
        assert_eq!(counters.snapshot().shared, Some(true));
        counters.decided(Source::Fallback, true);
        let stats = counters.snapshot();
        assert_eq!(stats.shared, Some(false));
        assert_eq!(
            (stats.fallbacks, stats.local_decisions, stats.allowed),
            (1, 1, 1)
        );
        counters.decided(Source::Shared, false);
        let stats = counters.snapshot();
        assert_eq!(stats.shared, Some(true));
        assert_eq!(stats.allowed, 1);
    }
}
