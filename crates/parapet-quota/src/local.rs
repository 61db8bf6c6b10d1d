//! The local limiter: one atomic TAT per tenant in this process, charged with a
//! compare-and-swap. Used when no Redis is configured, and as the fallback while Redis does not
//! answer (the limit then holds per instance).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parapet_tenant::TenantId;

use crate::gcra::{Decision, Gcra};

/// A tenant's state: its theoretical arrival time, microseconds on [`LocalLimiter::now`].
pub(crate) type Cell = Arc<AtomicU64>;

pub(crate) struct LocalLimiter {
    cells: moka::sync::Cache<TenantId, Cell>,
    epoch: Instant,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("tenants", &self.cells.entry_count())
            .finish_non_exhaustive()
    }
}

impl LocalLimiter {
    /// At most `capacity` tenants; a tenant idle for `idle` is forgotten (its state is then
    /// the same as a fresh one's, so `idle` must be at least the longest refill).
    pub(crate) fn new(capacity: u64, idle: Duration) -> Self {
        Self {
            cells: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle)
                .build(),
            epoch: Instant::now(),
        }
    }

    /// Microseconds since the limiter was made (monotonic).
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The tenant's cell, made on its first request (the only allocation).
    pub(crate) fn cell(&self, id: &TenantId) -> Cell {
        match self.cells.get(id.as_str()) {
            Some(cell) => cell,
            None => self
                .cells
                .get_with(id.clone(), || Arc::new(AtomicU64::new(0))),
        }
    }

    /// Charges `cost` microseconds to `cell`.
    pub(crate) fn charge(&self, cell: &AtomicU64, gcra: &Gcra, cost: u64) -> Decision {
        let now = self.now();
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            let decision = gcra.charge(tat, now, cost);
            if !decision.allowed {
                if decision.tat != tat {
                    // A clock step backwards: keep the clamped TAT (best effort).
                    let _ = cell.compare_exchange(
                        tat,
                        decision.tat,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                return decision;
            }
            match cell.compare_exchange_weak(tat, decision.tat, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return decision,
                Err(current) => tat = current,
            }
        }
    }

    /// Gives back `amount` microseconds to `cell`.
    pub(crate) fn refund(&self, cell: &AtomicU64, gcra: &Gcra, amount: u64) {
        let now = self.now();
        let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
            Some(gcra.refund(tat, now, amount))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_together_get_the_burst_and_no_more() {
        let limiter = Arc::new(LocalLimiter::new(100, Duration::from_secs(600)));
        // One request per hour, a burst of 100: nothing refills during the test.
        let gcra = Gcra::new(3_600_000_000, 100);
        let id = TenantId::parse("acme").unwrap();
        let allowed = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        let cell = limiter.cell(&id);
                        if limiter.charge(&cell, &gcra, gcra.interval()).allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 100);
        let other = limiter.cell(&TenantId::parse("globex").unwrap());
        assert!(limiter.charge(&other, &gcra, gcra.interval()).allowed);
    }

    #[test]
    fn a_refund_makes_room_for_one_more() {
        let limiter = LocalLimiter::new(100, Duration::from_secs(600));
        let gcra = Gcra::new(3_600_000_000, 2);
        let cell = limiter.cell(&TenantId::parse("acme").unwrap());
        assert!(limiter.charge(&cell, &gcra, gcra.interval()).allowed);
        assert!(limiter.charge(&cell, &gcra, gcra.interval()).allowed);
        assert!(!limiter.charge(&cell, &gcra, gcra.interval()).allowed);
        limiter.refund(&cell, &gcra, gcra.interval());
        assert!(limiter.charge(&cell, &gcra, gcra.interval()).allowed);
        assert!(!limiter.charge(&cell, &gcra, gcra.interval()).allowed);
    }
}
