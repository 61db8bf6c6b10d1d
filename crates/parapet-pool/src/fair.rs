//! Fair shares of one pool: a tenant holds at most its share of the pool's connections, and
//! tenants waiting for a connection are served round-robin, one checkout per tenant in turn.
//!
//! Every checkout of a pool passes its [`FairGate`] before it asks deadpool for a connection.
//! The gate hands out at most `capacity` (the pool's maximum size) slots, at most `per_tenant`
//! of them to one tenant. A checkout that cannot have a slot now waits in its tenant's queue;
//! the tenants with waiters form a ring, and each released slot goes to the first waiter of the
//! next tenant in the ring that is under its share. One tenant's queue, however long, therefore
//! delays another tenant's checkout by at most one turn per tenant.
//!
//! A slot is a [`SharePermit`]: dropping it returns the slot and serves the next waiter. A
//! waiter that is dropped (its request cancelled, or its wait timed out) leaves its queue; if a
//! slot was handed to it in the instant before, the slot is returned, never lost: handing a slot
//! over and leaving a queue both happen under the gate's lock, so the waiter finds out which
//! came first.
//!
//! The uncontended checkout takes the lock once, looks its tenant up, and counts: no
//! allocation beyond the tenant's entry, no wakeup.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use parapet_tenant::TenantId;
use tokio::sync::oneshot;

/// The slots of one pool, shared fairly among tenants.
pub(crate) struct FairGate {
    capacity: usize,
    per_tenant: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Slots handed out, across tenants.
    in_use: usize,
    /// Checkouts waiting, across tenants.
    waiting: usize,
    /// Tenants holding slots or waiting for one; an entry goes when it holds and waits for none.
    tenants: HashMap<TenantId, Tenant>,
    /// Tenants with waiters, in the order they are served.
    ring: VecDeque<TenantId>,
    next_id: u64,
}

#[derive(Default)]
struct Tenant {
    held: usize,
    queue: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

/// The wait for a slot ran past its deadline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WaitTimedOut;

/// One tenant's use of a gate, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TenantUse {
    pub(crate) tenant: TenantId,
    pub(crate) in_use: usize,
    pub(crate) waiting: usize,
}

impl FairGate {
    /// A gate of `capacity` slots, at most `per_tenant` (clamped to 1..=capacity) to a tenant.
    pub(crate) fn new(capacity: usize, per_tenant: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            per_tenant: per_tenant.clamp(1, capacity),
            state: Mutex::new(State::default()),
        }
    }

    /// The most slots one tenant may hold.
    pub(crate) fn per_tenant(&self) -> usize {
        self.per_tenant
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the counts consistent before it can panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `tenant`, waiting in the tenant's queue until `deadline` when none is free
    /// to it now. Returns the permit and whether it had to wait.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        tenant: &TenantId,
        deadline: Instant,
    ) -> Result<(SharePermit, bool), WaitTimedOut> {
        let (id, wake) = {
            let mut st = self.lock();
            let st = &mut *st;
            let free = st.in_use < self.capacity;
            match st.tenants.get_mut(tenant) {
                Some(t) if free && t.held < self.per_tenant && t.queue.is_empty() => {
                    t.held += 1;
                    st.in_use += 1;
                    return Ok((self.permit(tenant), false));
                }
                None if free => {
                    st.tenants.insert(
                        tenant.clone(),
                        Tenant {
                            held: 1,
                            queue: VecDeque::new(),
                        },
                    );
                    st.in_use += 1;
                    return Ok((self.permit(tenant), false));
                }
                _ => {}
            }
            let id = st.next_id;
            st.next_id = st.next_id.wrapping_add(1);
            let (tx, rx) = oneshot::channel();
            let t = st.tenants.entry(tenant.clone()).or_default();
            t.queue.push_back(Waiter { id, wake: tx });
            if t.queue.len() == 1 {
                st.ring.push_back(tenant.clone());
            }
            st.waiting += 1;
            (id, rx)
        };
        let mut guard = WaitGuard {
            gate: self,
            tenant,
            id,
            armed: true,
        };
        let woken = tokio::time::timeout_at(deadline.into(), wake).await;
        match woken {
            Ok(Ok(())) => {
                guard.armed = false;
                Ok((self.permit(tenant), true))
            }
            // Timed out, or (never: the gate outlives this borrow) the sender was dropped: the
            // guard leaves the queue, or returns a slot handed over meanwhile.
            _ => Err(WaitTimedOut),
        }
    }

    fn permit(self: &Arc<Self>, tenant: &TenantId) -> SharePermit {
        SharePermit {
            gate: self.clone(),
            tenant: tenant.clone(),
        }
    }

    /// Returns one of `tenant`'s slots and serves the waiters it frees.
    fn release(&self, tenant: &TenantId) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(t) = st.tenants.get_mut(tenant) {
            t.held = t.held.saturating_sub(1);
            if t.held == 0 && t.queue.is_empty() {
                st.tenants.remove(tenant);
            }
        }
        st.in_use = st.in_use.saturating_sub(1);
        self.dispatch(st);
    }

    /// Hands free slots to waiters, one per tenant in ring order, skipping tenants at their
    /// share, until no slot is free or no waiter can take one.
    fn dispatch(&self, st: &mut State) {
        let mut skipped = 0;
        while st.in_use < self.capacity && skipped < st.ring.len() {
            let Some(id) = st.ring.pop_front() else { break };
            let Some(t) = st.tenants.get_mut(&id) else {
                continue;
            };
            if t.held >= self.per_tenant {
                st.ring.push_back(id);
                skipped += 1;
                continue;
            }
            if let Some(waiter) = t.queue.pop_front() {
                t.held += 1;
                st.in_use += 1;
                st.waiting -= 1;
                // The receiver is alive: a waiter leaves its queue (under this lock) before
                // its receiver is dropped.
                let _ = waiter.wake.send(());
                skipped = 0;
            }
            if t.queue.is_empty() {
                if t.held == 0 {
                    st.tenants.remove(&id);
                }
            } else {
                st.ring.push_back(id);
            }
        }
    }

    /// Leaves `tenant`'s queue; when the waiter is no longer in it, a slot was handed to it
    /// and is returned.
    fn abandon(&self, tenant: &TenantId, id: u64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(t) = st.tenants.get_mut(tenant) else {
            return;
        };
        if let Some(pos) = t.queue.iter().position(|w| w.id == id) {
            t.queue.remove(pos);
            st.waiting -= 1;
            if t.queue.is_empty() {
                st.ring.retain(|r| r != tenant);
                if t.held == 0 {
                    st.tenants.remove(tenant);
                }
            }
            return;
        }
        drop(guard);
        self.release(tenant);
    }

    /// `(slots in use, checkouts waiting)`.
    pub(crate) fn totals(&self) -> (usize, usize) {
        let st = self.lock();
        (st.in_use, st.waiting)
    }

    /// Every tenant holding or waiting for a slot.
    pub(crate) fn tenants(&self) -> Vec<TenantUse> {
        self.lock()
            .tenants
            .iter()
            .map(|(id, t)| TenantUse {
                tenant: id.clone(),
                in_use: t.held,
                waiting: t.queue.len(),
            })
            .collect()
    }
}

impl fmt::Debug for FairGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (in_use, waiting) = self.totals();
        f.debug_struct("FairGate")
            .field("capacity", &self.capacity)
            .field("per_tenant", &self.per_tenant)
            .field("in_use", &in_use)
            .field("waiting", &waiting)
            .finish()
    }
}

/// Leaves the queue when a wait ends without its slot (timeout or cancellation).
struct WaitGuard<'a> {
    gate: &'a FairGate,
    tenant: &'a TenantId,
    id: u64,
    armed: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.gate.abandon(self.tenant, self.id);
        }
    }
}

/// A tenant's slot of a pool; returned (and the next waiter served) when dropped.
pub(crate) struct SharePermit {
    gate: Arc<FairGate>,
    tenant: TenantId,
}

impl SharePermit {
    /// Whether this slot is of `gate` (a pool dropped and made again has a new gate).
    pub(crate) fn is_of(&self, gate: &Arc<FairGate>) -> bool {
        Arc::ptr_eq(&self.gate, gate)
    }
}

impl Drop for SharePermit {
    fn drop(&mut self) {
        self.gate.release(&self.tenant);
    }
}

impl fmt::Debug for SharePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharePermit")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The default share of a pool of `max_size` connections: `max(2, max_size / 4)`, at most the
/// pool.
pub(crate) fn default_share(max_size: usize) -> usize {
    (max_size / 4).max(2).min(max_size.max(1))
}

/// The connections a `share` (a fraction in `(0, 1]`) of a pool of `max_size` is: rounded
/// up, at least 1.
pub(crate) fn share_of(share: f64, max_size: usize) -> usize {
    let max = max_size.max(1);
    // `share` is validated to (0, 1], so the product is within 0..=max.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let slots = (share * max as f64).ceil() as usize;
    slots.clamp(1, max)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn shares() {
        assert_eq!(default_share(20), 5);
        assert_eq!(default_share(4), 2);
        assert_eq!(default_share(1), 1);
        assert_eq!(default_share(100), 25);
        assert_eq!(share_of(0.25, 20), 5);
        assert_eq!(share_of(0.01, 20), 1);
        assert_eq!(share_of(1.0, 20), 20);
        assert_eq!(share_of(0.3, 10), 3);
    }

    #[tokio::test]
    async fn a_tenant_gets_its_share_and_no_more_and_others_still_get_in() {
        let gate = Arc::new(FairGate::new(4, 2));
        let (a, b) = (id("a"), id("b"));
        let a1 = gate.acquire(&a, soon()).await.unwrap();
        let _a2 = gate.acquire(&a, soon()).await.unwrap();
        assert!(!a1.1, "no wait while free");
        let short = Instant::now() + Duration::from_millis(20);
        assert_eq!(gate.acquire(&a, short).await.unwrap_err(), WaitTimedOut);
        assert_eq!(gate.totals(), (2, 0), "the timed-out waiter left its queue");
        let (_b1, waited) = gate.acquire(&b, soon()).await.unwrap();
        assert!(!waited, "b is under its share and the pool has room");
        drop(a1);
        let (_a3, _) = gate.acquire(&a, soon()).await.unwrap();
        assert_eq!(gate.totals(), (3, 0));
    }

    #[tokio::test]
    async fn waiters_of_two_tenants_are_served_in_turn() {
        let gate = Arc::new(FairGate::new(1, 1));
        let hog = gate.acquire(&id("h"), soon()).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for name in ["a", "a", "a", "b", "b", "b"] {
            let (g, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = g.acquire(&id(name), soon()).await.unwrap();
                order.lock().unwrap().push(name);
                tokio::task::yield_now().await;
                drop(permit);
            }));
            // Queue in this order.
            while gate.totals().1 < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(hog);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a", "b", "a", "b", "a", "b"]);
        assert_eq!(gate.totals(), (0, 0));
        assert!(gate.tenants().is_empty(), "no entry left behind");
    }

    #[tokio::test]
    async fn a_waiter_dropped_after_its_slot_was_handed_over_returns_it() {
        let gate = Arc::new(FairGate::new(1, 1));
        let held = gate.acquire(&id("a"), soon()).await.unwrap();
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.acquire(&id("b"), soon()).await.map(|_| ()) })
        };
        while gate.totals().1 == 0 {
            tokio::task::yield_now().await;
        }
        // Hand the slot over and cancel the waiter before it can see it.
        waiting.abort();
        drop(held);
        let _ = waiting.await;
        assert_eq!(gate.totals(), (0, 0), "the handed-over slot came back");
        let (_again, waited) = gate.acquire(&id("c"), soon()).await.unwrap();
        assert!(!waited);
    }

    #[tokio::test]
    async fn cancelled_waiters_leave_no_trace() {
        let gate = Arc::new(FairGate::new(2, 1));
        let _a = gate.acquire(&id("a"), soon()).await.unwrap();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.acquire(&id("a"), soon()).await.map(|_| ()) })
            })
            .collect();
        while gate.totals().1 < 10 {
            tokio::task::yield_now().await;
        }
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        assert_eq!(gate.totals(), (1, 0));
        assert_eq!(gate.tenants().len(), 1);
        assert_eq!(gate.lock().ring.len(), 0);
    }
}
