//! Refusal pacing: a refused request answered a set time late, so a client that sends its next
//! request when the last one is answered (a script in a loop, a load tool, a retry without
//! backoff) is slowed to one request per delay on each connection, and costs a timer while it
//! waits instead of a decision, a response and a write per attempt. HAProxy's `tarpit` does the
//! same for denied requests.
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

/// A held refusal's place: counted in all and in its tenant's cell until dropped.
#[derive(Debug)]
pub(crate) struct HeldSlot {
    shared: Arc<Shared>,
    cell: Cell,
}

impl HeldSlot {
    /// A place for one more held refusal of `cell`'s tenant, or `None` when pacing is off or a
    /// bound is reached (the refusal is then answered at once).
    pub(crate) fn take(shared: &Arc<Shared>, cell: &Cell) -> Option<Self> {
        let pacing = shared.pacing?;
        let counters = &shared.counters;
        if !counters.hold_one(pacing.max_held) {
            return None;
        }
        let held = cell.held.fetch_add(1, Ordering::AcqRel);
        if held >= pacing.max_per_tenant {
            cell.held.fetch_sub(1, Ordering::AcqRel);
            counters.release_one();
            counters.unhold();
            return None;
        }
        Some(Self {
            shared: Arc::clone(shared),
            cell: Arc::clone(cell),
        })
    }
}

impl HeldSlot {
    /// How long the refusal is held.
    pub(crate) fn delay(&self) -> Duration {
        self.shared.pacing.map_or(Duration::ZERO, |p| p.delay)
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        self.cell.held.fetch_sub(1, Ordering::AcqRel);
        self.shared.counters.release_one();
    }
}
