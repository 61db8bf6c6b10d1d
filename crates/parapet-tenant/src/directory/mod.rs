//! Tenant directories: where tenant records come from, and the cache in front of them.

mod cached;
#[cfg(feature = "postgres")]
mod postgres;
mod servable;
mod static_dir;

use std::{future::Future, pin::Pin, sync::Arc};

pub use cached::{CacheStats, CachedDirectory, CachedDirectoryBuilder};
#[cfg(feature = "postgres")]
pub use postgres::{PgDirectory, PgDirectoryError};
pub use static_dir::StaticDirectory;

use crate::{Features, TenantId, TenantRecord};

/// A boxed, `Send` future, as returned by [`TenantDirectory`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where tenant records come from.
///
/// Implementations do the I/O; [`CachedDirectory`] in front of them caches, coalesces concurrent
/// lookups, bounds negative answers and times out. Return `Ok(None)` for an unknown id and an
/// error only when the directory itself failed.
pub trait TenantDirectory: Send + Sync + 'static {
    /// The record of `id`, or `None` when no tenant has it.
    fn lookup<'a>(
        &'a self,
        id: &'a TenantId,
    ) -> BoxFuture<'a, Result<Option<TenantRecord>, DirectoryError>>;

    /// The features granted by `id`'s active subscriptions.
    fn features<'a>(&'a self, id: &'a TenantId) -> BoxFuture<'a, Result<Features, DirectoryError>>;
}

impl<D: TenantDirectory> TenantDirectory for Arc<D> {
    fn lookup<'a>(
        &'a self,
        id: &'a TenantId,
    ) -> BoxFuture<'a, Result<Option<TenantRecord>, DirectoryError>> {
        D::lookup(self, id)
    }

    fn features<'a>(&'a self, id: &'a TenantId) -> BoxFuture<'a, Result<Features, DirectoryError>> {
        D::features(self, id)
    }
}

/// The directory failed (it did not say the tenant is unknown).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The backing store failed (connection, query, ...).
    #[error("tenant directory unavailable")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The lookup did not finish within the directory's timeout.
    #[error("tenant directory lookup timed out")]
    Timeout,
    /// The store holds a record that does not make sense (an unknown status, ...).
    #[error("invalid tenant record: {0}")]
    InvalidRecord(String),
}

impl DirectoryError {
    /// A failure of the backing store.
    pub fn unavailable(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Arc::new(source))
    }
}
