//! The Generic Cell Rate Algorithm, pure: one number of state per tenant, the theoretical
//! arrival time (TAT), and no clock of its own.
//!
//! Times are microseconds on whatever clock the caller reads (the process's monotonic clock for
//! the local limiter, Redis's `TIME` for the shared one); the Lua script in `shared.rs` is the
//! same arithmetic, line for line.
//!
//! A rate of `count` per `period` with a burst of `burst` is an *interval* `T = period / count`
//! per request and a *tolerance* `τ = burst × T`. A request of cost `c` (in microseconds of
//! interval: a whole request is `T`) is allowed when `max(TAT, now) + c − now ≤ τ`, and then
//! moves the TAT there. So a tenant idle for `τ` has `burst` requests at once, then one every
//! `T`.
//!
//! Clock steps: a step forwards refills at most one burst (the TAT is never below `now`); a
//! step backwards would leave the TAT further ahead than `τ`, which no charge can produce, so
//! the TAT is clamped to `now + τ`: the tenant waits at most one burst's refill, never longer
//! than the step, and gains nothing.

/// The arithmetic of one limit: its interval and tolerance, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    interval: u64,
    tolerance: u64,
}

/// What one charge decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Whether the request may proceed.
    pub(crate) allowed: bool,
    /// The TAT to store. When the request is refused it is the old one clamped to the clock:
    /// storing it undoes a clock step backwards.
    pub(crate) tat: u64,
    /// Microseconds of the tolerance in use after the decision: how long until the tenant has
    /// its whole burst again.
    pub(crate) used: u64,
    /// When refused: microseconds until a request of this cost would be allowed (0 when
    /// allowed).
    pub(crate) wait: u64,
}

impl Decision {
    /// The same refusal answered `delay` later: its wait shrinks by it (what a refusal
    /// answered late says in `Retry-After`). The tolerance in use stays the decision's, so the
    /// refusal's `RateLimit` never shows a remaining request.
    pub(crate) fn later(&self, delay: std::time::Duration) -> Self {
        let delay = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        Self {
            wait: self.wait.saturating_sub(delay),
            ..*self
        }
    }
}

impl Gcra {
    /// The limit of `burst` requests at once and one more every `interval` microseconds
    /// (`interval` at least 1, `burst` at least 1).
    #[must_use]
    pub(crate) fn new(interval: u64, burst: u32) -> Self {
        let interval = interval.max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// Microseconds one whole request costs.
    #[must_use]
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// Microseconds of credit a tenant may hold: `burst` intervals.
    #[must_use]
    pub(crate) fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// The TAT as the algorithm sees it at `now`: not in the past, not beyond the tolerance.
    fn clamp(&self, tat: u64, now: u64) -> u64 {
        tat.clamp(now, now.saturating_add(self.tolerance))
    }

    /// Charges `cost` microseconds at `now` to a tenant whose stored TAT is `tat` (0 for a
    /// tenant never seen).
    #[must_use]
    pub(crate) fn charge(&self, tat: u64, now: u64, cost: u64) -> Decision {
        let tat = self.clamp(tat, now);
        let next = tat.saturating_add(cost);
        let used = next - now;
        if used <= self.tolerance {
            Decision {
                allowed: true,
                tat: next,
                used,
                wait: 0,
            }
        } else {
            Decision {
                allowed: false,
                tat,
                used: tat - now,
                wait: used - self.tolerance,
            }
        }
    }

    /// Gives back `amount` microseconds of a charge at `now` (a cache hit charged as a whole
    /// request): the TAT moves back, never below `now`.
    #[must_use]
    pub(crate) fn refund(&self, tat: u64, now: u64, amount: u64) -> u64 {
        self.clamp(tat, now).saturating_sub(amount).max(now)
    }

    /// Whole requests still allowed at once when `used` microseconds of the tolerance are in use.
    #[must_use]
    pub(crate) fn remaining(&self, used: u64) -> u64 {
        self.tolerance.saturating_sub(used) / self.interval
    }
}

/// Whole seconds, rounded up, of a number of microseconds.
#[must_use]
pub(crate) fn ceil_seconds(micros: u64) -> u64 {
    micros.div_ceil(1_000_000)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECOND: u64 = 1_000_000;

    /// 20 per second, a burst of 40.
    fn free() -> Gcra {
        Gcra::new(SECOND / 20, 40)
    }

    /// Charges whole requests at `now` until one is refused; the number allowed.
    fn drain(gcra: &Gcra, tat: &mut u64, now: u64) -> u64 {
        let mut allowed = 0;
        loop {
            let d = gcra.charge(*tat, now, gcra.interval());
            *tat = d.tat;
            if !d.allowed {
                return allowed;
            }
            allowed += 1;
        }
    }

    #[test]
    fn a_fresh_tenant_has_its_burst_then_one_per_interval() {
        let gcra = free();
        let now = 1_000 * SECOND;
        let mut tat = 0;
        assert_eq!(drain(&gcra, &mut tat, now), 40);
        let refused = gcra.charge(tat, now, gcra.interval());
        assert_eq!(refused.wait, SECOND / 20, "one interval until the next");
        assert_eq!(refused.used, 2 * SECOND, "two seconds to refill 40 at 20/s");
        // Half a second later: 10 more.
        assert_eq!(drain(&gcra, &mut tat, now + SECOND / 2), 10);
        // Long idle: the burst again, not more.
        assert_eq!(drain(&gcra, &mut tat, now + 3600 * SECOND), 40);
    }

    #[test]
    fn remaining_counts_whole_requests() {
        let gcra = free();
        let d = gcra.charge(0, SECOND, gcra.interval());
        assert!(d.allowed);
        assert_eq!(gcra.remaining(d.used), 39);
        assert_eq!(gcra.remaining(gcra.tolerance()), 0);
        assert_eq!(ceil_seconds(d.used), 1);
        assert_eq!(ceil_seconds(0), 0);
    }

    #[test]
    fn a_refund_gives_back_at_most_what_was_used() {
        let gcra = free();
        let now = 10 * SECOND;
        let d = gcra.charge(0, now, gcra.interval());
        assert_eq!(gcra.refund(d.tat, now, gcra.interval()), now);
        assert_eq!(gcra.refund(d.tat, now, 100 * gcra.interval()), now);
        let tenth = gcra.interval() / 10;
        assert_eq!(
            gcra.refund(d.tat, now, gcra.interval() - tenth),
            now + tenth
        );
    }

    #[test]
    fn a_clock_step_backwards_costs_at_most_one_refill() {
        let gcra = free();
        let now = 10_000 * SECOND;
        let mut tat = 0;
        assert_eq!(drain(&gcra, &mut tat, now), 40);
        // The clock goes back an hour: the tenant is full, and refused, but only until one
        // interval has passed on the new clock, not for an hour.
        let back = now - 3600 * SECOND;
        let refused = gcra.charge(tat, back, gcra.interval());
        assert!(!refused.allowed);
        assert_eq!(refused.wait, gcra.interval());
        // The refusal stores the TAT clamped to the new clock.
        assert_eq!(refused.tat, back + gcra.tolerance());
        tat = refused.tat;
        assert_eq!(drain(&gcra, &mut tat, back + SECOND), 20);
    }

    #[test]
    fn a_zero_cost_is_refused_only_past_the_tolerance() {
        let gcra = free();
        let d = gcra.charge(0, SECOND, 0);
        assert!(d.allowed);
        assert_eq!(d.used, 0);
    }

    proptest! {
        /// Over any sequence of arrivals on a clock that only moves forwards, the requests
        /// allowed in `[start, end]` never exceed `burst + (end - start) / interval`.
        #[test]
        fn never_more_than_burst_plus_rate(
            interval in 1u64..50_000,
            burst in 1u32..100,
            steps in proptest::collection::vec(0u64..100_000, 1..400),
        ) {
            let gcra = Gcra::new(interval, burst);
            let start = 5 * SECOND;
            let mut now = start;
            let mut tat = 0;
            let mut allowed = 0u64;
            for step in steps {
                now += step;
                let d = gcra.charge(tat, now, gcra.interval());
                tat = d.tat;
                allowed += u64::from(d.allowed);
                prop_assert!(d.used <= gcra.tolerance());
            }
            let bound = u64::from(burst) + (now - start) / interval;
            prop_assert!(allowed <= bound, "{allowed} allowed, bound {bound}");
        }

        /// Whatever the clock does (steps forwards and backwards), a refused request's wait is
        /// at most one burst's refill plus its cost, and the TAT stays within the tolerance.
        #[test]
        fn clock_steps_never_lock_a_tenant_out(
            interval in 1u64..50_000,
            burst in 1u32..100,
            times in proptest::collection::vec(0u64..(100 * SECOND), 1..200),
            cost_tenths in 0u64..=10,
        ) {
            let gcra = Gcra::new(interval, burst);
            let cost = gcra.interval() * cost_tenths / 10;
            let mut tat = 0;
            for now in times {
                let d = gcra.charge(tat, now, cost);
                prop_assert!(d.tat <= now + gcra.tolerance());
                prop_assert!(d.wait <= cost);
                if d.allowed {
                    prop_assert_eq!(d.wait, 0);
                    prop_assert!(d.tat >= now);
                } else {
                    // Waiting the announced time is enough on the clock as it is now.
                    prop_assert!(gcra.charge(d.tat, now + d.wait, cost).allowed);
                }
                tat = d.tat;
            }
        }

        /// A tenant that waits the announced time is allowed.
        #[test]
        fn waiting_the_announced_time_is_enough(
            interval in 1u64..50_000,
            burst in 1u32..100,
            extra in 0u64..1_000,
        ) {
            let gcra = Gcra::new(interval, burst);
            let now = SECOND;
            let mut tat = 0;
            drain(&gcra, &mut tat, now);
            let refused = gcra.charge(tat, now, gcra.interval());
            prop_assert!(!refused.allowed);
            let later = gcra.charge(tat, now + refused.wait + extra, gcra.interval());
            prop_assert!(later.allowed);
        }

        /// A refund never makes more than a whole burst available.
        #[test]
        fn refunds_never_exceed_the_burst(
            interval in 1u64..50_000,
            burst in 1u32..50,
            refunds in proptest::collection::vec(0u64..200_000, 0..50),
        ) {
            let gcra = Gcra::new(interval, burst);
            let now = SECOND;
            let mut tat = 0;
            for amount in refunds {
                tat = gcra.refund(tat, now, amount);
            }
            prop_assert_eq!(drain(&gcra, &mut tat, now), u64::from(burst));
        }
    }
}
