//! What [`CachedDirectory`](super::CachedDirectory) serves requests from: an active tenant's
//! record and features in one entry, and the expiry that keeps the record's TTL.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::Expiry;

use crate::{Tenant, TenantId};

/// A value loaded from the source, and when.
#[derive(Clone)]
pub(super) struct Stamped<T> {
    pub(super) value: T,
    pub(super) loaded: Instant,
}

impl<T> Stamped<T> {
    pub(super) fn now(value: T) -> Self {
        Self {
            value,
            loaded: Instant::now(),
        }
    }
}

/// An active tenant ready to serve, until its record or its features are too old.
pub(super) struct Servable {
    pub(super) tenant: Tenant,
    /// When the record's TTL ends: the entry leaves the cache then.
    pub(super) record_until: Instant,
    /// When the features' TTL ends: a lookup after it reloads them.
    pub(super) features_until: Instant,
}

/// A servable entry lives as long as its record, whenever it was (re)inserted: a refresh of
/// the features does not extend the record's TTL.
pub(super) struct UntilRecordExpires;

impl Expiry<TenantId, Arc<Servable>> for UntilRecordExpires {
    fn expire_after_create(
        &self,
        _id: &TenantId,
        value: &Arc<Servable>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.record_until.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _id: &TenantId,
        value: &Arc<Servable>,
        updated_at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.record_until.saturating_duration_since(updated_at))
    }
}
