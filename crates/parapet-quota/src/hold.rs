//! Refusal pacing: a refused request answered up to a set time late, so a client that sends its next
//! request when the last one is answered (a script in a loop, a load tool, a retry without
//! backoff) is slowed to one request per delay on each connection, and costs a timer while it
//! waits instead of a decision, a response and a write per attempt. HAProxy's `tarpit` does the
//! same for denied requests.
//!
//! The holds are spread between half the delay and the whole of it, in a low-discrepancy
//! sequence (each held refusal takes the next point of a golden-ratio Weyl sequence): connections
//! refused together, as a flood's are at its start, would otherwise come back together every
//! delay, and their refusals would arrive as one wave that the other tenants' requests queue
//! behind.
//!
//! Holding a refusal keeps its connection open, so the held refusals are bounded: in all
//! ([`max_held_refusals`](crate::QuotaLayerBuilder::max_held_refusals)) and per tenant
//! ([`max_held_per_tenant`](crate::QuotaLayerBuilder::max_held_per_tenant)). A refusal over
//! either bound is answered at once. A held refusal gives its place back when it is answered or
//! when its client goes away (the response future is dropped).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::layer::Shared;
use crate::local::Cell;

/// How refusals are held, when they are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    /// How long a refusal is held.
    pub(crate) delay: Duration,
    /// The most refusals held at once, in all.
    pub(crate) max_held: u64,
    /// The most refusals of one tenant held at once.
    pub(crate) max_per_tenant: u32,
}

impl Pacing {
    /// The hold of the `n`-th held refusal: between half the delay and the delay, spread evenly
    /// by the fractional parts of `n` times the golden ratio (the first is the whole delay).
    pub(crate) fn hold(&self, n: u64) -> Duration {
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15; // 2^64 / φ
        let fraction = n.wrapping_mul(GOLDEN) >> 11; // 53 bits
        #[allow(clippy::cast_precision_loss)] // 53 bits: exact in an f64
        let fraction = fraction as f64 / (1u64 << 53) as f64;
        self.delay.mul_f64(1.0 - fraction / 2.0)
    }
}

/// A held refusal's place: counted in all and in its tenant's cell until dropped.
#[derive(Debug)]
pub(crate) struct HeldSlot {
    shared: Arc<Shared>,
    cell: Cell,
    hold: Duration,
}

impl HeldSlot {
    /// A place for one more held refusal of `cell`'s tenant, or `None` when pacing is off or a
    /// bound is reached (the refusal is then answered at once).
    pub(crate) fn take(shared: &Arc<Shared>, cell: &Cell) -> Option<Self> {
        let pacing = shared.pacing?;
        let counters = &shared.counters;
        // The tenant's bound first, then the one in all (which counts the refusal as held).
        if cell.held.fetch_add(1, Ordering::AcqRel) >= pacing.max_per_tenant {
            cell.held.fetch_sub(1, Ordering::AcqRel);
            counters.held_full();
            return None;
        }
        let Some(n) = counters.hold_one(pacing.max_held) else {
            cell.held.fetch_sub(1, Ordering::AcqRel);
            return None;
        };
        Some(Self {
            shared: Arc::clone(shared),
            cell: Arc::clone(cell),
            hold: pacing.hold(n),
        })
    }

    /// How long the refusal is held.
    pub(crate) fn delay(&self) -> Duration {
        self.hold
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        self.cell.held.fetch_sub(1, Ordering::AcqRel);
        self.shared.counters.release_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_spread_between_half_the_delay_and_the_delay() {
        let pacing = Pacing {
            delay: Duration::from_secs(1),
            max_held: 10,
            max_per_tenant: 10,
        };
        assert_eq!(
            pacing.hold(0),
            Duration::from_secs(1),
            "the first is the whole delay"
        );
        let holds: Vec<Duration> = (0..1000).map(|n| pacing.hold(n)).collect();
        assert!(
            holds
                .iter()
                .all(|h| (Duration::from_millis(500)..=Duration::from_secs(1)).contains(h))
        );
        // Evenly spread: each tenth of the range holds about a tenth of them.
        let mut tenths = [0u32; 10];
        for h in &holds {
            let i = usize::try_from((h.as_micros() - 500_000) / 50_000).unwrap();
            tenths[i.min(9)] += 1;
        }
        assert!(tenths.iter().all(|n| (95..=105).contains(n)), "{tenths:?}");
        // Wherever the sequence starts, ten consecutive holds are spread too.
        let mut ten: Vec<Duration> = (500..510).map(|n| pacing.hold(n)).collect();
        ten.sort();
        let widest = ten.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(widest < Duration::from_millis(150), "{ten:?}");
    }
}
