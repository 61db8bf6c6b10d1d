//! The shared tier: Redis through a `ConnectionManager`, failing open.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::breaker::Breaker;
use super::{Found, Store, Tier};
use crate::encoding::{DEFAULT_COMPRESS_THRESHOLD, decode, encode};
use crate::entry::StoredValue;
use crate::stats::{Counters, bump};

/// Settings of the Redis tier.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) timeout: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cool_down: Duration,
    pub(crate) compress_threshold: usize,
}

impl RedisConfig {
    /// Settings for the Redis at `url` (`redis://host:port/db`), with a 50 ms budget per
    /// operation, a breaker that opens after 5 consecutive failures for 5 s, and lz4 for bodies
    /// of 1 KiB or more.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_millis(50),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(5),
            compress_threshold: DEFAULT_COMPRESS_THRESHOLD,
        }
    }

    /// The time budget of each Redis operation (connecting included); past it, the operation
    /// counts as failed and the request goes on as a miss.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Consecutive failures that open the breaker, and how long it stays open before a probe.
    pub fn breaker(mut self, threshold: u32, cool_down: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cool_down = cool_down;
        self
    }

    /// Bodies at least this long are stored lz4-compressed.
    pub fn compress_threshold(mut self, bytes: usize) -> Self {
        self.compress_threshold = bytes;
        self
    }
}

/// The Redis tier: every value under its own key with a TTL (`SET … PX`), encoded compactly
/// (see the `encoding` module docs), single-key commands only (safe on Redis Cluster).
///
/// Fails open: each operation runs under the configured time budget and behind a breaker;
/// an error, a timeout, an open breaker or a value that does not decode is a miss. The
/// connection is made lazily on first use and re-made by the `ConnectionManager`.
pub struct RedisStore {
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
    config: RedisConfig,
    breaker: Breaker,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .field("connected", &self.manager.initialized())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A Redis tier; no connection is made until the first operation.
    ///
    /// # Errors
    ///
    /// When the URL is not a valid Redis URL.
    pub fn new(config: RedisConfig) -> Result<Self, redis::RedisError> {
        Self::with_counters(config, Arc::default())
    }

    pub(crate) fn with_counters(
        config: RedisConfig,
        counters: Arc<Counters>,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(config.url.as_str())?;
        let breaker = Breaker::new(
            config.breaker_threshold,
            config.breaker_cool_down,
            counters.clone(),
        );
        Ok(Self {
            client,
            manager: OnceCell::new(),
            config,
            breaker,
            counters,
        })
    }

    /// Runs one command under the breaker and the time budget; `None` on any failure.
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Option<T> {
        let permit = self.breaker.permit()?;
        let budget = self.config.timeout;
        let result = tokio::time::timeout(budget, async {
            let manager = self
                .manager
                .get_or_try_init(|| async {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(budget))
                        .set_response_timeout(Some(budget))
                        .set_number_of_retries(1)
                        .set_max_delay(Duration::from_millis(100));
                    ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                })
                .await?;
            let mut connection = manager.clone();
            cmd.query_async::<T>(&mut connection).await
        })
        .await;
        match result {
            Ok(Ok(value)) => {
                self.breaker.record(permit, true);
                Some(value)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "redis cache operation failed");
                self.breaker.record(permit, false);
                None
            }
            Err(_) => {
                tracing::debug!(?budget, "redis cache operation timed out");
                self.breaker.record(permit, false);
                None
            }
        }
    }
}

impl Store for RedisStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Option<Found>> {
        async move {
            let raw: Option<Vec<u8>> = self.run(redis::Cmd::get(key)).await.flatten();
            let value = raw.as_deref().and_then(decode);
            if raw.is_some() && value.is_none() {
                tracing::warn!("undecodable value in the redis cache, treated as a miss");
            }
            bump(if value.is_some() {
                &self.counters.redis_hits
            } else {
                &self.counters.redis_misses
            });
            value.map(|value| Found {
                value,
                tier: Tier::Redis,
            })
        }
        .boxed()
    }

    fn put<'a>(&'a self, key: &'a [u8], value: StoredValue, ttl: Duration) -> BoxFuture<'a, ()> {
        async move {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            if millis == 0 {
                let _: Option<i64> = self.run(redis::Cmd::del(key)).await;
                return;
            }
            let encoded = encode(&value, self.config.compress_threshold);
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(&encoded[..]).arg("PX").arg(millis);
            let _: Option<redis::Value> = self.run(cmd).await;
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            let _: Option<i64> = self.run(redis::Cmd::del(key)).await;
        }
        .boxed()
    }

    /// Walks the keyspace with `SCAN … MATCH prefix*` and deletes each key with its own `DEL`
    /// (no multi-key command, so it is safe on Redis Cluster slots). An administrative
    /// operation: it is never run on the request path. On a Cluster it covers the node the
    /// connection reaches.
    fn purge_prefix<'a>(&'a self, prefix: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            let pattern = glob_prefix(prefix);
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern[..])
                    .arg("COUNT")
                    .arg(500);
                let Some((next, keys)) = self.run::<(u64, Vec<Vec<u8>>)>(scan).await else {
                    return;
                };
                for key in keys {
                    let _: Option<i64> = self.run(redis::Cmd::del(key)).await;
                }
                if next == 0 {
                    return;
                }
                cursor = next;
            }
        }
        .boxed()
    }

    fn index_add<'a>(
        &'a self,
        index: &'a [u8],
        member: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, ()> {
        self.index_add_inner(index, member, ttl).boxed()
    }

    fn index_take<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<bytes::Bytes>> {
        self.index_take_inner(index).boxed()
    }
}

impl RedisStore {
    /// `SADD` then `PEXPIRE … GT` (the set lives as long as its longest member; single-key
    /// commands only).
    pub(crate) async fn index_add_inner(&self, index: &[u8], member: &[u8], ttl: Duration) {
        let _: Option<i64> = self.run(redis::Cmd::sadd(index, member)).await;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(index).arg(millis).arg("GT");
        let _: Option<i64> = self.run(expire).await;
        // GT never sets an expiry on a key without one (a new set): set it then.
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(index).arg(millis).arg("NX");
        let _: Option<i64> = self.run(expire).await;
    }

    /// `SMEMBERS` then `DEL`.
    pub(crate) async fn index_take_inner(&self, index: &[u8]) -> Vec<bytes::Bytes> {
        let members: Vec<Vec<u8>> = self
            .run(redis::Cmd::smembers(index))
            .await
            .unwrap_or_default();
        let _: Option<i64> = self.run(redis::Cmd::del(index)).await;
        members.into_iter().map(bytes::Bytes::from).collect()
    }

    /// Publishes `payload` on `channel` (fails open like every operation).
    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) {
        let _: Option<i64> = self.run(redis::Cmd::publish(channel, payload)).await;
    }

    /// The client, for a dedicated pub/sub connection.
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }
}

/// A `SCAN MATCH` pattern for keys starting with `prefix`, glob characters escaped.
fn glob_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 8);
    for byte in prefix {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(*byte);
    }
    out.push(b'*');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_prefixes_are_escaped() {
        assert_eq!(glob_prefix(b"p:t1:a|"), b"p:t1:a|*");
        assert_eq!(glob_prefix(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\*");
    }
}
