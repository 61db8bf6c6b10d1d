//! A circuit breaker: after `threshold` consecutive failures, skip the backend for a cool-down,
//! then let one probe through; a success closes it, a failure opens it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::stats::{Counters, bump};

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which calls are skipped; 0 when closed.
    open_until: AtomicU64,
    probing: AtomicBool,
    counters: Arc<Counters>,
}

/// Permission to call the backend; report the outcome with [`Breaker::record`].
#[derive(Debug)]
pub(crate) struct Permit {
    probe: bool,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration, counters: Arc<Counters>) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            counters,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `None` while open (the call is skipped); a probe is allowed once the cool-down is over.
    pub(crate) fn permit(&self) -> Option<Permit> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Some(Permit { probe: false });
        }
        if self.now_ms() >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(Permit { probe: true });
        }
        bump(&self.counters.redis_skipped);
        None
    }

    /// Whether [`permit`](Self::permit) may let a call through now: closed, or open with its
    /// cool-down over (a probe is due). Takes nothing.
    pub(crate) fn is_closed_or_due(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until == 0 || self.now_ms() >= until
    }

    /// Records the outcome of a permitted call.
    pub(crate) fn record(&self, permit: Permit, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Release);
            if self.open_until.swap(0, Ordering::AcqRel) != 0 {
                self.counters.breaker_open.store(false, Ordering::Relaxed);
                tracing::info!("redis is back: cache breaker closed");
            }
        } else {
            bump(&self.counters.redis_errors);
            let failures = self
                .failures
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            if permit.probe || failures >= self.threshold {
                let until = self
                    .now_ms()
                    .saturating_add(u64::try_from(self.cool_down.as_millis()).unwrap_or(u64::MAX))
                    .max(1);
                if self.open_until.swap(until, Ordering::AcqRel) == 0 {
                    bump(&self.counters.breaker_opens);
                    self.counters.breaker_open.store(true, Ordering::Relaxed);
                    tracing::warn!(failures, "redis failing: cache breaker open");
                }
            }
        }
        if permit.probe {
            self.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes() {
        let counters = Arc::new(Counters::default());
        let breaker = Breaker::new(3, Duration::from_millis(40), counters.clone());
        for _ in 0..2 {
            let p = breaker.permit().unwrap();
            breaker.record(p, false);
        }
        assert!(!counters.breaker_open.load(Ordering::Relaxed));
        let p = breaker.permit().unwrap();
        breaker.record(p, false);
        assert!(counters.breaker_open.load(Ordering::Relaxed));
        assert!(breaker.permit().is_none(), "skipped while open");

        std::thread::sleep(Duration::from_millis(60));
        let probe = breaker.permit().unwrap();
        assert!(breaker.permit().is_none(), "one probe at a time");
        breaker.record(probe, false);
        assert!(breaker.permit().is_none(), "a failed probe reopens");

        std::thread::sleep(Duration::from_millis(60));
        let probe = breaker.permit().unwrap();
        breaker.record(probe, true);
        assert!(!counters.breaker_open.load(Ordering::Relaxed));
        assert!(breaker.permit().is_some());
        let stats = counters.snapshot();
        assert_eq!(stats.breaker_opens, 1, "a failed probe keeps it open");
        assert_eq!(stats.redis_errors, 4);
        assert!(stats.redis_skipped >= 3);
    }
}
