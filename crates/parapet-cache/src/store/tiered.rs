//! The local tier in front of Redis, with local tiers of all instances kept in step through
//! Redis pub/sub.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::redis::{Generations, SoftPurges};
use super::seal::{Seal, batch, batch_keys};
use super::subscriber::{Handler, listen};
use super::{Found, MemoryStore, RedisStore, Store};
use crate::entry::StoredValue;

/// Keys whose Redis delete failed, until a background retry removes them.
type Tombstones = moka::future::Cache<Bytes, ()>;

/// Reads the local tier, then Redis (filling the local tier from a Redis hit); writes and
/// deletes go to both.
///
/// A value filled from Redis is kept locally for the retention it has left, at most
/// `local_ttl_cap` (60 s by default). Deletes and purges are also published on a Redis
/// channel; every `TieredStore` on that channel (every instance of the app) removes the same
/// keys from its local tier. After losing its subscription (Redis down), an instance clears
/// its local tier when it subscribes again, since it may have missed invalidations; the cap
/// bounds how long a missed one can be served meanwhile.
///
/// An invalidation that cannot reach Redis (the delete failed twice) leaves a **tombstone**:
/// the instance treats the key as absent in Redis, announces the tombstone to the other
/// instances (which do the same), and each retries the delete in the background (backing off
/// up to 5 s) until it lands or the tombstone's lifetime (10 min) ends. So a stale copy left
/// in Redis is not served by any instance that heard of the invalidation, and is removed once
/// Redis takes deletes again.
///
/// A value read from Redis is copied into the local tier only if no local removal (a delete,
/// a purge, another instance's announcement) happened while it was read: otherwise a read
/// that fetched the old copy just before a purge deleted it would put it back after the
/// purge, where no later purge finds it (it is in no local tag index).
#[derive(Debug)]
pub struct TieredStore {
    local: MemoryStore,
    /// Local removals so far (see above).
    removals: Arc<AtomicU64>,
    redis: Arc<RedisStore>,
    tombstones: Tombstones,
    local_ttl_cap: Duration,
    revalidation_grace: Duration,
    seal: Seal,
    subscribed: AtomicBool,
    /// Dropped with the store, which stops the subscriber task.
    alive: watch::Sender<()>,
}

impl TieredStore {
    /// Puts `local` in front of `redis`, publishing invalidations on the channel
    /// `parapet:cache:invalidate`.
    #[must_use]
    pub fn new(local: MemoryStore, redis: RedisStore) -> Self {
        Self {
            local,
            removals: Arc::default(),
            redis: Arc::new(redis),
            tombstones: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TOMBSTONE_LIFETIME)
                .build(),
            local_ttl_cap: Duration::from_secs(60),
            revalidation_grace: Duration::from_secs(60),
            seal: Seal::new(
                "parapet:cache:invalidate".to_owned(),
                "parapet:cache:",
                None,
            ),
            subscribed: AtomicBool::new(false),
            alive: watch::channel(()).0,
        }
    }

    /// The longest a value stays in the local tier.
    #[must_use]
    pub fn local_ttl_cap(mut self, cap: Duration) -> Self {
        self.local_ttl_cap = cap;
        self
    }

    /// The pub/sub channel of local-tier invalidations (instances sharing a cache must
    /// share it).
    #[must_use]
    pub fn invalidation_channel(mut self, channel: impl Into<String>) -> Self {
        self.seal = self.seal.with_channel(channel.into());
        self
    }

    /// The channel, the key prefix and the secret of invalidation messages: only messages for
    /// keys under `key_prefix` are obeyed (a purge only for one tenant's prefix), and with a
    /// secret only those carrying its HMAC (see [`CacheLayerBuilder::invalidation_secret`]).
    ///
    /// [`CacheLayerBuilder::invalidation_secret`]: crate::CacheLayerBuilder::invalidation_secret
    #[must_use]
    pub fn invalidation(
        mut self,
        channel: impl Into<String>,
        key_prefix: &str,
        secret: Option<&[u8]>,
    ) -> Self {
        self.seal = Seal::new(channel.into(), key_prefix, secret.map(Arc::from));
        self
    }

    pub(crate) fn revalidation_grace(mut self, grace: Duration) -> Self {
        self.revalidation_grace = grace;
        self
    }

    /// The local tier.
    #[must_use]
    pub fn local(&self) -> &MemoryStore {
        &self.local
    }

    /// The Redis tier.
    #[must_use]
    pub fn redis(&self) -> &RedisStore {
        &self.redis
    }

    fn fill_ttl(&self, value: &StoredValue) -> Duration {
        let now = SystemTime::now();
        let ttl = match value {
            StoredValue::Response(entry) => entry.retention(now, self.revalidation_grace),
            StoredValue::Vary(marker) => marker
                .expires_at
                .duration_since(now)
                .unwrap_or(Duration::ZERO),
        };
        ttl.min(self.local_ttl_cap)
    }

    /// Starts the subscriber task once (on the first operation, inside the runtime).
    fn ensure_subscribed(&self) {
        if self.subscribed.load(Ordering::Acquire) || self.subscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        let listener = Listener {
            seal: self.seal.clone(),
            local: self.local.clone(),
            removals: Arc::clone(&self.removals),
            generations: self.redis.generations().clone(),
            soft_purges: self.redis.soft_purges().clone(),
            repair: self.repair(),
        };
        tokio::spawn(listen(
            self.redis.subscription().clone(),
            self.seal.channel().to_owned(),
            self.alive.subscribe(),
            listener,
        ));
    }

    /// Whether a delete of `key` could not reach Redis and has not been retried successfully.
    pub fn has_tombstone(&self, key: &[u8]) -> bool {
        self.tombstones.contains_key(key)
    }

    /// A handle that leaves tombstones and retries deletes.
    fn repair(&self) -> Repair {
        Repair {
            redis: Arc::clone(&self.redis),
            seal: self.seal.clone(),
            tombstones: self.tombstones.clone(),
            alive: self.alive.subscribe(),
        }
    }

    async fn publish(&self, kind: u8, key: &[u8]) {
        publish(&self.redis, &self.seal, kind, key).await;
    }
}

/// Keys per batch announcement (`K`, `T`): a purge of more keys publishes one message per
/// this many.
const KEYS_PER_MESSAGE: usize = 4096;

/// Announces an invalidation of `kind` (`k` key, `t` tombstone, `p` tenant purge, `s` tenant
/// soft purge; `K` and `T` for several keys, see [`batch`]).
async fn publish(redis: &RedisStore, seal: &Seal, kind: u8, key: &[u8]) {
    redis.publish(seal.channel(), &seal.seal(kind, key)).await;
}

/// How long a tombstone (and its delete retries) lasts.
const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(600);

/// Leaves tombstones for keys whose Redis delete failed and retries the deletes.
#[derive(Clone)]
struct Repair {
    redis: Arc<RedisStore>,
    /// How a delete that finally landed is announced.
    seal: Seal,
    tombstones: Tombstones,
    alive: watch::Receiver<()>,
}

impl Repair {
    /// Leaves a tombstone for `key` and retries its Redis delete in the background (backing
    /// off from 100 ms to 5 s) until it lands (and then announces it to the other instances), the
    /// tombstone ends or the store is dropped.
    async fn tombstone(&self, key: &[u8]) {
        if self.tombstones.contains_key(key) {
            // Its retry is already running (e.g. this instance's own announcement came back).
            return;
        }
        let key = Bytes::copy_from_slice(key);
        self.tombstones.insert(key.clone(), ()).await;
        let this = self.clone();
        tokio::spawn(async move {
            let mut alive = this.alive;
            let mut pause = Duration::from_millis(100);
            while this.tombstones.contains_key(&key) {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = alive.changed() => return,
                }
                if this.redis.delete(&key).await {
                    this.tombstones.invalidate(&key).await;
                    // Announced again: when the delete failed, its tombstone's announcement may
                    // have failed with it (one broken connection, e.g. during a failover), and
                    // the other instances would keep serving their local copies.
                    publish(&this.redis, &this.seal, b'k', &key).await;
                    tracing::info!("cache invalidation retried: redis copy removed");
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// Applies other instances' invalidations to this instance's local tier.
struct Listener {
    seal: Seal,
    local: MemoryStore,
    removals: Arc<AtomicU64>,
    generations: Generations,
    soft_purges: SoftPurges,
    repair: Repair,
}

impl Handler for Listener {
    /// Invalidations may have been missed while unsubscribed: forget everything local.
    fn gap(&self) {
        self.removals.fetch_add(1, Ordering::SeqCst);
        self.local.clear();
        self.generations.invalidate_all();
        self.soft_purges.invalidate_all();
    }

    fn message<'a>(&'a self, payload: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            let Some((kind, key)) = self.seal.open(payload) else {
                tracing::debug!("cache invalidation message ignored: not sealed or not ours");
                return;
            };
            self.removals.fetch_add(1, Ordering::SeqCst);
            match (kind, key) {
                (b'k', key) => {
                    self.local.delete(key).await;
                    // The key's delete landed in Redis: a tombstone this instance holds for it
                    // has nothing left to guard, and its retry could otherwise delete a fresh
                    // copy stored since.
                    self.repair.tombstones.invalidate(key).await;
                }
                (b't', key) => {
                    // The sender could not delete it from Redis: skip the Redis copy here too.
                    self.local.delete(key).await;
                    self.repair.tombstone(key).await;
                }
                (b'K', body) => {
                    let keys: Vec<Bytes> = batch_keys(body)
                        .unwrap_or_default()
                        .into_iter()
                        .map(Bytes::copy_from_slice)
                        .collect();
                    self.local.delete_many(&keys).await;
                    for key in &keys {
                        // As for `k`; most keys have none, and a lookup is cheaper.
                        if self.repair.tombstones.contains_key(key) {
                            self.repair.tombstones.invalidate(key).await;
                        }
                    }
                }
                (b'T', body) => {
                    for key in batch_keys(body).unwrap_or_default() {
                        self.local.delete(key).await;
                        self.repair.tombstone(key).await;
                    }
                }
                (b's', prefix) => {
                    // Read the new soft-purge time on the next request.
                    self.soft_purges.invalidate(prefix).await;
                }
                (b'p', prefix) => {
                    // Read the bumped generation on the next request, and free the old entries.
                    self.generations.invalidate(prefix).await;
                    self.local.purge_prefix(prefix);
                }
                _ => {}
            }
        }
        .boxed()
    }
}

impl Store for TieredStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Option<Found>> {
        async move {
            self.ensure_subscribed();
            if let Some(found) = self.local.get(key).await {
                return Some(found);
            }
            if self.has_tombstone(key) {
                return None;
            }
            let removals = self.removals.load(Ordering::SeqCst);
            let found = self.redis.get(key).await?;
            let ttl = self.fill_ttl(&found.value);
            self.local.put(key, found.value.clone(), ttl).await;
            // A removal since the read may have missed this copy (it came after it), or have
            // come before it (the copy may be what it removed): take it back out. A removal
            // after this check happens after the put and removes it itself.
            if self.removals.load(Ordering::SeqCst) != removals {
                self.local.delete(key).await;
            }
            Some(found)
        }
        .boxed()
    }

    fn put<'a>(&'a self, key: &'a [u8], value: StoredValue, ttl: Duration) -> BoxFuture<'a, ()> {
        async move {
            self.ensure_subscribed();
            self.local
                .put(key, value.clone(), ttl.min(self.local_ttl_cap))
                .await;
            self.redis.put(key, value, ttl).await;
        }
        .boxed()
    }

    /// Deletes locally and in Redis (tried twice), and announces it to the other instances;
    /// when Redis could not confirm it, leaves a tombstone and retries in the background.
    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, bool> {
        async move {
            self.ensure_subscribed();
            self.removals.fetch_add(1, Ordering::SeqCst);
            self.local.delete(key).await;
            let deleted = self.redis.delete(key).await;
            if deleted {
                self.publish(b'k', key).await;
            } else {
                tracing::warn!(
                    "cache invalidation could not reach redis; retrying in the background"
                );
                self.repair().tombstone(key).await;
                self.publish(b't', key).await;
            }
            deleted
        }
        .boxed()
    }

    /// Deletes locally, then in Redis in one round trip ([`RedisStore`]'s pipelined `DEL`s),
    /// and announces all the keys in one message (per 4,096 keys); when Redis could not
    /// confirm it, leaves tombstones and retries in the background, as [`delete`] does.
    ///
    /// [`delete`]: Store::delete
    fn delete_many<'a>(&'a self, keys: &'a [Bytes]) -> BoxFuture<'a, bool> {
        async move {
            match keys {
                [] => return true,
                // Announced as `k`, which instances of earlier versions obey too.
                [key] => return self.delete(key).await,
                _ => {}
            }
            self.ensure_subscribed();
            self.removals.fetch_add(1, Ordering::SeqCst);
            self.local.delete_many(keys).await;
            let deleted = self.redis.delete_many(keys).await;
            if !deleted {
                tracing::warn!(
                    keys = keys.len(),
                    "cache invalidation could not reach redis; retrying in the background"
                );
                let repair = self.repair();
                for key in keys {
                    repair.tombstone(key).await;
                }
            }
            let kind = if deleted { b'K' } else { b'T' };
            for chunk in keys.chunks(KEYS_PER_MESSAGE) {
                self.publish(kind, &batch(chunk)).await;
            }
            deleted
        }
        .boxed()
    }

    /// Stores the value locally and in Redis (confirmed), and announces the key so the other
    /// instances drop their local copies; deletes it instead when Redis did not confirm it.
    fn replace<'a>(
        &'a self,
        key: &'a [u8],
        value: StoredValue,
        ttl: Duration,
    ) -> BoxFuture<'a, bool> {
        async move {
            self.ensure_subscribed();
            self.removals.fetch_add(1, Ordering::SeqCst);
            if !self.redis.put_confirmed(key, value.clone(), ttl).await {
                tracing::warn!("cache soft purge could not reach redis; deleting instead");
                self.delete(key).await;
                return false;
            }
            self.local
                .put(key, value, ttl.min(self.local_ttl_cap))
                .await;
            self.publish(b'k', key).await;
            true
        }
        .boxed()
    }

    fn stale_before<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, Option<SystemTime>> {
        async move {
            self.ensure_subscribed();
            self.redis.stale_before(tenant_prefix).await
        }
        .boxed()
    }

    /// Stores the soft-purge time in Redis and announces it, so the other instances read it
    /// again on their next request of the tenant.
    fn soft_purge_tenant<'a>(
        &'a self,
        tenant_prefix: &'a [u8],
        at: SystemTime,
    ) -> BoxFuture<'a, bool> {
        async move {
            self.ensure_subscribed();
            let stored = self.redis.soft_purge_tenant(tenant_prefix, at).await;
            self.publish(b's', tenant_prefix).await;
            stored
        }
        .boxed()
    }

    fn index_members<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>> {
        async move {
            union(
                self.local.index_members(index).await,
                self.redis.index_members(index).await,
            )
        }
        .boxed()
    }

    fn generation<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, u64> {
        async move {
            self.ensure_subscribed();
            self.redis.generation(tenant_prefix).await
        }
        .boxed()
    }

    /// Bumps the generation in Redis, frees this instance's entries of the tenant, and
    /// announces it so the other instances re-read the generation and free theirs.
    fn purge_tenant<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, bool> {
        async move {
            self.ensure_subscribed();
            let bumped = self.redis.purge_tenant(tenant_prefix).await;
            self.removals.fetch_add(1, Ordering::SeqCst);
            self.local.purge_prefix(tenant_prefix);
            self.publish(b'p', tenant_prefix).await;
            bumped
        }
        .boxed()
    }

    /// Indexes live in both tiers: Redis lists the keys of every instance (their local copies
    /// are reached through the deletes that a purge publishes), and the local copy lists this
    /// instance's keys even while Redis is down, so a purge still reaches the local tier then.
    fn index_add<'a>(
        &'a self,
        index: &'a [u8],
        member: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, ()> {
        async move {
            self.local
                .index_add(index, member, ttl.min(self.local_ttl_cap))
                .await;
            self.redis.index_add(index, member, ttl).await;
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Option<bool>> {
        self.redis.ping()
    }

    fn index_take<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>> {
        async move {
            union(
                self.local.index_take(index).await,
                self.redis.index_take(index).await,
            )
        }
        .boxed()
    }
}

/// The members of both tiers' copies of an index, each once.
fn union(mut members: Vec<Bytes>, more: Vec<Bytes>) -> Vec<Bytes> {
    if more.is_empty() {
        return members;
    }
    if members.is_empty() {
        return more;
    }
    let mut seen: std::collections::HashSet<Bytes> = members.iter().cloned().collect();
    for member in more {
        if seen.insert(member.clone()) {
            members.push(member);
        }
    }
    members
}
