//! [`TenantSlot`]: how a layer outside [`TenantLayer`](crate::TenantLayer) learns the tenant.

use std::sync::{Arc, OnceLock};

use crate::TenantId;

/// A place in a request's extensions where [`TenantLayer`](crate::TenantLayer) leaves the id it
/// resolved, for a layer further out that no longer sees the request once it has passed it on.
///
/// parapet's telemetry layer inserts a fresh slot into every request it traces and reads it when
/// the response is ready, to set `tenant.id` on its server span and in its slow-request warning.
/// The id is there as soon as it is resolved, before the directory is asked, so a request for an
/// unknown or suspended tenant is named too. A slot belongs to one request: it is created with the
/// request and dropped with it, so no other request can see what it holds.
///
/// # Example
///
/// ```
/// use parapet_tenant::{TenantId, TenantSlot};
///
/// let slot = TenantSlot::new();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(slot.clone());
/// // ... TenantLayer fills it while handling `request` ...
/// # slot.fill(TenantId::parse("acme")?);
/// assert_eq!(slot.get().map(TenantId::as_str), Some("acme"));
/// # Ok::<(), parapet_tenant::TenantIdError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct TenantSlot(Arc<OnceLock<TenantId>>);

impl TenantSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves `id` in the slot; the first id stays (a request has one tenant).
    pub fn fill(&self, id: TenantId) {
        let _ = self.0.set(id);
    }

    /// The tenant id left in the slot, if any.
    pub fn get(&self) -> Option<&TenantId> {
        self.0.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_id_and_is_shared_by_its_clones() {
        let slot = TenantSlot::new();
        assert!(slot.get().is_none());
        let clone = slot.clone();
        clone.fill(TenantId::parse("acme").unwrap());
        clone.fill(TenantId::parse("globex").unwrap());
        assert_eq!(slot.get().map(TenantId::as_str), Some("acme"));
        assert!(TenantSlot::new().get().is_none(), "a new slot is empty");
    }
}
