//! Storage tiers: the [`Store`] trait, the byte-bounded local [`MemoryStore`], the fail-open
//! [`RedisStore`] and the [`TieredStore`] that puts the first in front of the second.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::entry::StoredValue;

mod breaker;
mod memory;
mod redis;
mod redis_config;
mod redis_target;
mod seal;
mod sentinel;
mod share;
mod subscriber;
mod tiered;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
pub use self::redis_config::{RedisConfig, redact_url};
pub use self::share::TenantBytes;
pub(crate) use self::share::{TenantLedger, share_of};
pub use self::tiered::TieredStore;

/// Which tier answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The in-process moka tier.
    Local,
    /// Redis.
    Redis,
}

impl Tier {
    /// A short name for logs and `Cache-Status` details.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Redis => "redis",
        }
    }
}

/// A value found by [`Store::get`], and where.
#[derive(Debug, Clone)]
pub struct Found {
    /// The stored value.
    pub value: StoredValue,
    /// The tier that had it.
    pub tier: Tier,
}

/// Where the cache keeps values, by key.
///
/// Stores never fail: an unreachable backend, a timeout or a value that does not decode is a
/// miss (`None`) on read and nothing on write. That is how the cache fails open.
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// The value under `key`, if any.
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Option<Found>>;

    /// Stores `value` under `key` for `ttl` (a zero `ttl` stores nothing).
    fn put<'a>(&'a self, key: &'a [u8], value: StoredValue, ttl: Duration) -> BoxFuture<'a, ()>;

    /// Removes the value under `key`; false when a backend could not confirm it (the store
    /// then does what it can so the old value is not served, see [`TieredStore`]).
    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, bool>;

    /// The current generation of the tenant whose keys start with `tenant_prefix` (0 until
    /// its first purge). Keys are built with it (see
    /// [`PrimaryKey::new`](crate::PrimaryKey::new)).
    fn generation<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, u64>;

    /// Purges every value of the tenant whose keys start with `tenant_prefix` by bumping its
    /// generation: O(1), one key, so it is safe on Redis Cluster. False when the bump could
    /// not be stored.
    fn purge_tenant<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, bool>;

    /// Adds `member` to the index `index` (e.g. the keys carrying a tag) until `ttl` from now,
    /// dropping members whose time is over; the index lives as long as its longest member.
    fn index_add<'a>(
        &'a self,
        index: &'a [u8],
        member: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, ()>;

    /// Removes the index `index` and returns its members whose time is not over.
    fn index_take<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>>;

    /// Whether the store's shared tier (Redis) answers now, for a readiness probe: `None` for
    /// a store that has none (the local tier alone never fails).
    fn ping(&self) -> BoxFuture<'_, Option<bool>> {
        Box::pin(async { None })
    }
}

impl<T: Store + ?Sized> Store for Arc<T> {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Option<Found>> {
        (**self).get(key)
    }

    fn put<'a>(&'a self, key: &'a [u8], value: StoredValue, ttl: Duration) -> BoxFuture<'a, ()> {
        (**self).put(key, value, ttl)
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, bool> {
        (**self).delete(key)
    }

    fn generation<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, u64> {
        (**self).generation(tenant_prefix)
    }

    fn purge_tenant<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, bool> {
        (**self).purge_tenant(tenant_prefix)
    }

    fn index_add<'a>(
        &'a self,
        index: &'a [u8],
        member: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, ()> {
        (**self).index_add(index, member, ttl)
    }

    fn index_take<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>> {
        (**self).index_take(index)
    }

    fn ping(&self) -> BoxFuture<'_, Option<bool>> {
        (**self).ping()
    }
}
