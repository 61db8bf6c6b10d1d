//! The local limiter: one atomic TAT per tenant in this process, charged with a
//! compare-and-swap. Used when no Redis is configured, and as the fallback while Redis does not
//! answer (the limit then holds per instance).
//!
//! With Redis, the same cell also remembers until when Redis refused the tenant (the "denied
//! until" memo of `service.rs`), on the same clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parapet_tenant::TenantId;

use crate::gcra::{Decision, Gcra};

/// A tenant's state in this process, microseconds on [`LocalLimiter::now`].
#[derive(Debug, Default)]
pub(crate) struct TenantCell {
    /// The local limiter's theoretical arrival time.
    pub(crate) tat: AtomicU64,
    /// With Redis: until when Redis's last answer refuses the tenant (0: no refusal known).
    pub(crate) denied_until: AtomicU64,
    /// With Redis: refunds this instance made on Redis so far; a refusal decided before one of
    /// them reached Redis is not remembered.
    refunds: AtomicU64,
    /// Refusals of this tenant held at once (refusal pacing).
    pub(crate) held: AtomicU32,
}

/// A tenant's state, shared by its requests.
pub(crate) type Cell = Arc<TenantCell>;

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
                .get_with(id.clone(), || Arc::new(TenantCell::default())),
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

impl LocalLimiter {
    /// What [`Self::remember_denial`] needs to know no refund came between: read before the
    /// round trip.
    pub(crate) fn refunds_so_far(cell: &TenantCell) -> u64 {
        cell.refunds.load(Ordering::SeqCst)
    }

    /// Remembers that Redis, asked at `asked` (on [`Self::now`], read before the round
    /// trip, with `refunds` = [`Self::refunds_so_far`] then), refused the tenant for `wait`
    /// more microseconds. Redis decided after `asked`, so `asked + wait` is never later than
    /// the time Redis named. When one of this instance's refunds reached Redis meanwhile, the
    /// refusal may predate it: nothing is remembered (either this check or the refund's
    /// [`Self::forget_denial`] clears it, whichever runs last).
    pub(crate) fn remember_denial(cell: &TenantCell, asked: u64, wait: u64, refunds: u64) {
        cell.denied_until
            .fetch_max(asked.saturating_add(wait), Ordering::SeqCst);
        if cell.refunds.load(Ordering::SeqCst) != refunds {
            cell.denied_until.store(0, Ordering::SeqCst);
        }
    }

    /// Forgets a remembered refusal once a refund of this instance reached Redis (the tenant
    /// may have room Redis would now grant).
    pub(crate) fn forget_denial(cell: &TenantCell) {
        cell.refunds.fetch_add(1, Ordering::SeqCst);
        cell.denied_until.store(0, Ordering::SeqCst);
    }

    /// The refusal Redis's last answer still stands for, if any: what a charge of a whole
    /// request would answer now (`used` is `wait + τ − T` for every refusal of one).
    pub(crate) fn remembered_denial(&self, cell: &TenantCell, gcra: &Gcra) -> Option<Decision> {
        let until = cell.denied_until.load(Ordering::SeqCst);
        if until == 0 {
            return None;
        }
        let now = self.now();
        let wait = until.checked_sub(now).filter(|wait| *wait > 0)?;
        Some(Decision {
            allowed: false,
            tat: 0,
            used: (wait + gcra.tolerance())
                .saturating_sub(gcra.interval())
                .min(gcra.tolerance()),
            wait,
        })
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
                        if limiter.charge(&cell.tat, &gcra, gcra.interval()).allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 100);
        let other = limiter.cell(&TenantId::parse("globex").unwrap());
        assert!(limiter.charge(&other.tat, &gcra, gcra.interval()).allowed);
    }

    #[test]
    fn a_remembered_denial_lasts_until_the_time_redis_named() {
        let limiter = LocalLimiter::new(100, Duration::from_secs(600));
        let gcra = Gcra::new(1_000_000, 3);
        let cell = limiter.cell(&TenantId::parse("acme").unwrap());
        assert_eq!(limiter.remembered_denial(&cell, &gcra), None);
        // Asked long ago: the refusal is over.
        LocalLimiter::remember_denial(&cell, 0, 1, 0);
        assert_eq!(limiter.remembered_denial(&cell, &gcra), None);
        // Asked now, refused for an hour: refused with what a charge would answer.
        let asked = limiter.now();
        LocalLimiter::remember_denial(&cell, asked, 3_600_000_000, 0);
        let d = limiter.remembered_denial(&cell, &gcra).unwrap();
        assert!(!d.allowed);
        assert!(d.wait <= 3_600_000_000 && d.wait > 3_500_000_000, "{d:?}");
        assert_eq!(d.used, gcra.tolerance(), "capped at the tolerance");
        // An earlier refusal does not shorten a later one.
        LocalLimiter::remember_denial(&cell, asked, 1, 0);
        assert!(limiter.remembered_denial(&cell, &gcra).is_some());
        // The wait/used arithmetic of a charge's refusal.
        let charge = gcra.charge(
            asked + 3 * gcra.interval() - 400_000,
            asked,
            gcra.interval(),
        );
        assert!(!charge.allowed);
        LocalLimiter::forget_denial(&cell);
        assert_eq!(limiter.remembered_denial(&cell, &gcra), None);
        // A refusal asked before that refund reached Redis is not remembered.
        LocalLimiter::remember_denial(&cell, limiter.now(), charge.wait, 0);
        assert_eq!(limiter.remembered_denial(&cell, &gcra), None);
        let refunds = LocalLimiter::refunds_so_far(&cell);
        assert_eq!(refunds, 1);
        LocalLimiter::remember_denial(&cell, limiter.now(), charge.wait, refunds);
        let d = limiter.remembered_denial(&cell, &gcra).unwrap();
        assert!(
            d.wait <= charge.wait && d.used <= charge.used,
            "{d:?} {charge:?}"
        );
        assert_eq!(d.used - d.wait, charge.used - charge.wait);
    }

    #[test]
    fn a_refund_makes_room_for_one_more() {
        let limiter = LocalLimiter::new(100, Duration::from_secs(600));
        let gcra = Gcra::new(3_600_000_000, 2);
        let cell = limiter.cell(&TenantId::parse("acme").unwrap());
        let tat = &cell.tat;
        assert!(limiter.charge(tat, &gcra, gcra.interval()).allowed);
        assert!(limiter.charge(tat, &gcra, gcra.interval()).allowed);
        assert!(!limiter.charge(tat, &gcra, gcra.interval()).allowed);
        limiter.refund(tat, &gcra, gcra.interval());
        assert!(limiter.charge(tat, &gcra, gcra.interval()).allowed);
        assert!(!limiter.charge(tat, &gcra, gcra.interval()).allowed);
    }
}
