//! The layer's counters, and the throttled requests per tenant with a bounded set of tenants.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    redis: bool,
    shared: AtomicBool,
    top: Mutex<Vec<(TenantId, u64)>>,
    top_n: usize,
    other: AtomicU64,
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
            redis,
            shared: AtomicBool::new(redis),
            top: Mutex::new(Vec::with_capacity(top_n)),
            top_n,
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
    pub(crate) fn throttled(&self, tenant: &TenantId) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let Ok(mut top) = self.top.lock() else {
            self.other.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some((_, count)) = top.iter_mut().find(|(id, _)| id == tenant) {
            *count += 1;
        } else if top.len() < self.top_n {
            top.push((tenant.clone(), 1));
        } else {
            drop(top);
            self.other.fetch_add(1, Ordering::Relaxed);
        }
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
            shared: self.redis.then(|| self.shared.load(Ordering::Relaxed)),
            throttled_by_tenant: self.top.lock().map(|top| top.clone()).unwrap_or_default(),
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
