//! The local tier in front of Redis, with local tiers of all instances kept in step through
//! Redis pub/sub.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::{Found, MemoryStore, RedisStore, Store};
use crate::entry::StoredValue;

/// Reads the local tier, then Redis (filling the local tier from a Redis hit); writes and
/// deletes go to both.
///
/// A value filled from Redis is kept locally for the retention it has left, at most
/// `local_ttl_cap` (60 s by default). Deletes and purges are also published on a Redis
/// channel; every `TieredStore` on that channel (every instance of the app) removes the same
/// keys from its local tier. After losing its subscription (Redis down), an instance clears
/// its local tier when it subscribes again, since it may have missed invalidations; the cap
/// bounds how long a missed one can be served meanwhile.
#[derive(Debug)]
pub struct TieredStore {
    local: MemoryStore,
    redis: RedisStore,
    local_ttl_cap: Duration,
    revalidation_grace: Duration,
    channel: String,
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
            redis,
            local_ttl_cap: Duration::from_secs(60),
            revalidation_grace: Duration::from_secs(60),
            channel: "parapet:cache:invalidate".to_owned(),
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
        self.channel = channel.into();
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
        if self.subscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = self.redis.client().clone();
        let local = self.local.clone();
        let channel = self.channel.clone();
        let alive = self.alive.subscribe();
        tokio::spawn(subscribe(client, channel, local, alive));
    }

    async fn publish(&self, kind: u8, key: &[u8]) {
        let mut payload = Vec::with_capacity(key.len() + 1);
        payload.push(kind);
        payload.extend_from_slice(key);
        self.redis.publish(&self.channel, &payload).await;
    }
}

/// Listens for invalidations until the store is dropped, re-subscribing after errors.
async fn subscribe(
    client: redis::Client,
    channel: String,
    local: MemoryStore,
    mut alive: watch::Receiver<()>,
) {
    let mut first = true;
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            result = connected => result,
            _ = alive.changed() => return,
        };
        match pubsub {
            Ok(pubsub) => {
                if !first {
                    // Invalidations may have been missed while unsubscribed.
                    local.clear();
                }
                first = false;
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        _ = alive.changed() => return,
                    };
                    let Some(message) = message else { break };
                    match message.get_payload_bytes() {
                        [b'k', key @ ..] => local.delete(key).await,
                        [b'p', prefix @ ..] => local.purge_prefix(prefix).await,
                        _ => {}
                    }
                }
                tracing::debug!("cache invalidation subscription lost; re-subscribing");
            }
            Err(error) => tracing::debug!(%error, "cache invalidation subscription failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = alive.changed() => return,
        }
    }
}

impl Store for TieredStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Option<Found>> {
        async move {
            self.ensure_subscribed();
            if let Some(found) = self.local.get(key).await {
                return Some(found);
            }
            let found = self.redis.get(key).await?;
            let ttl = self.fill_ttl(&found.value);
            self.local.put(key, found.value.clone(), ttl).await;
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

    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            self.ensure_subscribed();
            self.local.delete(key).await;
            self.redis.delete(key).await;
            self.publish(b'k', key).await;
        }
        .boxed()
    }

    fn purge_prefix<'a>(&'a self, prefix: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            self.ensure_subscribed();
            self.local.purge_prefix(prefix).await;
            self.redis.purge_prefix(prefix).await;
            self.publish(b'p', prefix).await;
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

    fn index_take<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<bytes::Bytes>> {
        async move {
            let mut members = self.local.index_take(index).await;
            for member in self.redis.index_take(index).await {
                if !members.contains(&member) {
                    members.push(member);
                }
            }
            members
        }
        .boxed()
    }
}
