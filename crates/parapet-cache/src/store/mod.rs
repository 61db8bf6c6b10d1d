//! Storage tiers: the [`Store`] trait, the byte-bounded local [`MemoryStore`], the fail-open
//! [`RedisStore`] and the [`TieredStore`] that puts the first in front of the second.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

    /// Removes the values under `keys`, in as few round trips as the backend allows (one
    /// pipeline, one announcement); false when a backend could not confirm it (see
    /// [`delete`](Self::delete)). By default, one [`delete`](Self::delete) after another.
    fn delete_many<'a>(&'a self, keys: &'a [Bytes]) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let mut all = true;
            for key in keys {
                all &= self.delete(key).await;
            }
            all
        })
    }

    /// Replaces the value under `key` (for `ttl`) on every instance: stores it, and has the
    /// instances sharing the backend drop their local copies so they read the new one (a
    /// soft purge writes an entry back marked stale). False when a backend could not take it:
    /// the key is then deleted instead, as by [`delete`](Self::delete). By default, a
    /// [`put`](Self::put).
    fn replace<'a>(
        &'a self,
        key: &'a [u8],
        value: StoredValue,
        ttl: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.put(key, value, ttl).await;
            true
        })
    }

    /// When the tenant whose keys start with `tenant_prefix` was last soft-purged: its
    /// entries received until then are stale. `None` when never.
    fn stale_before<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, Option<SystemTime>>;

    /// Marks every value of the tenant received until `at` stale (a soft tenant purge): O(1),
    /// one key. False when it could not be stored.
    fn soft_purge_tenant<'a>(
        &'a self,
        tenant_prefix: &'a [u8],
        at: SystemTime,
    ) -> BoxFuture<'a, bool>;

    /// The members of the index `index` whose time is not over, leaving the index in place.
    fn index_members<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>>;

    /// The current generation of the tenant whose keys start with `tenant_prefix` (0 until
    /// its first purge). Keys are built with it (see
    /// [`PrimaryKey::new`](crate::PrimaryKey::new)).
    fn generation<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, u64>;

    /// [`generation`](Self::generation), when the store knows it without waiting (a local
    /// tier that is its own authority): the cache then reads it without making a future.
    /// `None` (the default) means "ask [`generation`](Self::generation)".
    fn generation_now(&self, tenant_prefix: &[u8]) -> Option<u64> {
        let _ = tenant_prefix;
        None
    }

    /// [`stale_before`](Self::stale_before), when the store knows it without waiting:
    /// `Some(answer)`. `None` (the default) means "ask [`stale_before`](Self::stale_before)".
    fn stale_before_now(&self, tenant_prefix: &[u8]) -> Option<Option<SystemTime>> {
        let _ = tenant_prefix;
        None
    }

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

    fn delete_many<'a>(&'a self, keys: &'a [Bytes]) -> BoxFuture<'a, bool> {
        (**self).delete_many(keys)
    }

    fn replace<'a>(
        &'a self,
        key: &'a [u8],
        value: StoredValue,
        ttl: Duration,
    ) -> BoxFuture<'a, bool> {
        (**self).replace(key, value, ttl)
    }

    fn stale_before<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, Option<SystemTime>> {
        (**self).stale_before(tenant_prefix)
    }

    fn soft_purge_tenant<'a>(
        &'a self,
        tenant_prefix: &'a [u8],
        at: SystemTime,
    ) -> BoxFuture<'a, bool> {
        (**self).soft_purge_tenant(tenant_prefix, at)
    }

    fn index_members<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>> {
        (**self).index_members(index)
    }

    fn generation<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, u64> {
        (**self).generation(tenant_prefix)
    }

    fn generation_now(&self, tenant_prefix: &[u8]) -> Option<u64> {
        (**self).generation_now(tenant_prefix)
    }

    fn stale_before_now(&self, tenant_prefix: &[u8]) -> Option<Option<SystemTime>> {
        (**self).stale_before_now(tenant_prefix)
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
