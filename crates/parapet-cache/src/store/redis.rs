//! The shared tier: Redis through a `ConnectionManager`, or a Redis Cluster through a
//! `ClusterConnection`, failing open.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use tokio::sync::OnceCell;

use super::breaker::Breaker;
use super::{Found, Store, Tier};
use crate::encoding::{DEFAULT_COMPRESS_THRESHOLD, decode, encode};
use crate::entry::StoredValue;
use crate::key::generation_key;
use crate::stats::{Counters, bump};

/// Settings of the Redis tier.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisConfig {
    /// One URL for a single server; the seed nodes of a cluster.
    pub(crate) urls: Vec<String>,
    pub(crate) cluster: bool,
    pub(crate) timeout: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cool_down: Duration,
    pub(crate) compress_threshold: usize,
    pub(crate) generation_ttl: Duration,
}

impl RedisConfig {
    /// Settings for the Redis at `url` (`redis://host:port/db`), with a 50 ms budget per
    /// operation, a breaker that opens after 5 consecutive failures for 5 s, and lz4 for bodies
    /// of 1 KiB or more.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            cluster: false,
            timeout: Duration::from_millis(50),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(5),
            compress_threshold: DEFAULT_COMPRESS_THRESHOLD,
            generation_ttl: Duration::from_secs(1),
        }
    }

    /// Settings for a Redis Cluster reached through `nodes` (seed URLs such as
    /// `redis://127.0.0.1:7000`; the rest of the cluster is discovered from them), with the
    /// same defaults as [`new`](Self::new).
    ///
    /// Every command the cache sends names a single key, so none fails with `CROSSSLOT`.
    /// Invalidations are published with `PUBLISH`, which a cluster broadcasts to every node;
    /// each instance listens on one node's plain connection, moving to the next seed node when
    /// that one fails.
    ///
    /// ```
    /// use parapet_cache::{CacheLayer, RedisConfig};
    ///
    /// let cache = CacheLayer::builder()
    ///     .local(64 * 1024 * 1024)
    ///     .redis(RedisConfig::cluster([
    ///         "redis://10.0.0.1:6379",
    ///         "redis://10.0.0.2:6379",
    ///         "redis://10.0.0.3:6379",
    ///     ]))
    ///     .build()?; // no connection is made before the first request
    /// # Ok::<(), parapet_cache::BuildError>(())
    /// ```
    pub fn cluster<I>(nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut config = Self::new(String::new());
        config.urls = nodes.into_iter().map(Into::into).collect();
        config.cluster = true;
        config
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

    /// How long an instance reuses a tenant's generation read from Redis (default 1 s).
    ///
    /// With a local tier in front, a tenant purge on another instance is also announced over
    /// pub/sub and takes effect at once; this bounds how long a purge can go unseen by an
    /// instance without a local tier, or one that missed the announcement.
    pub fn generation_ttl(mut self, ttl: Duration) -> Self {
        self.generation_ttl = ttl;
        self
    }
}

/// Where commands go.
enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// A connection made lazily, then shared (both kinds are cheap clones of a multiplexed
/// connection that reconnects by itself).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Tenant generations read from Redis, with when they were read; kept past their TTL as the
/// fallback when Redis cannot be reached.
pub(crate) type Generations = moka::future::Cache<Bytes, (u64, Instant)>;

/// The Redis tier: every value under its own key with a TTL (`SET … PX`), encoded compactly
/// (see the `encoding` module docs), single-key commands only, so it works the same on a
/// single server and on a Redis Cluster ([`RedisConfig::cluster`]).
///
/// Fails open: each operation runs under the configured time budget and behind a breaker;
/// an error, a timeout, an open breaker or a value that does not decode is a miss. The
/// connection is made lazily on first use and re-made by the connection itself.
pub struct RedisStore {
    target: Target,
    /// Plain connections for pub/sub: the server, or each seed node of a cluster.
    pubsub: Vec<redis::Client>,
    connection: OnceCell<Connection>,
    config: RedisConfig,
    breaker: Breaker,
    counters: Arc<Counters>,
    generations: Generations,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .field("connected", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A Redis tier; no connection is made until the first operation.
    ///
    /// # Errors
    ///
    /// When a URL is not a valid Redis URL, or a cluster has no seed node.
    pub fn new(config: RedisConfig) -> Result<Self, redis::RedisError> {
        Self::with_counters(config, Arc::default())
    }

    pub(crate) fn with_counters(
        config: RedisConfig,
        counters: Arc<Counters>,
    ) -> Result<Self, redis::RedisError> {
        let pubsub = config
            .urls
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let target = if config.cluster {
            let client = ClusterClient::builder(config.urls.iter().map(String::as_str))
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(1)
                .build()?;
            Target::Cluster(Box::new(client))
        } else {
            match pubsub.first() {
                Some(client) => Target::Single(client.clone()),
                None => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "no redis url",
                    )));
                }
            }
        };
        let breaker = Breaker::new(
            config.breaker_threshold,
            config.breaker_cool_down,
            counters.clone(),
        );
        Ok(Self {
            target,
            pubsub,
            connection: OnceCell::new(),
            breaker,
            counters,
            generations: moka::future::Cache::builder().max_capacity(100_000).build(),
            config,
        })
    }

    /// The shared connection, made on first use (in the background for a cluster, whose
    /// commands fail until its nodes are reached).
    async fn connection(&self) -> redis::RedisResult<Connection> {
        let budget = self.config.timeout;
        let connection = self
            .connection
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(budget))
                            .set_response_timeout(Some(budget))
                            .set_number_of_retries(1)
                            .set_max_delay(Duration::from_millis(100));
                        ConnectionManager::new_lazy_with_config(client.clone(), config)
                            .map(Connection::Single)
                    }
                    Target::Cluster(client) => {
                        let config = ClusterConfig::new()
                            .set_connection_timeout(budget)
                            .set_response_timeout(budget);
                        Ok(Connection::Cluster(
                            client.get_pending_async_connection_with_config(config),
                        ))
                    }
                }
            })
            .await?;
        Ok(connection.clone())
    }

    /// Runs one command under the breaker and the time budget; `None` on any failure.
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Option<T> {
        let permit = self.breaker.permit()?;
        let budget = self.config.timeout;
        let result = tokio::time::timeout(budget, async {
            match self.connection().await? {
                Connection::Single(mut connection) => cmd.query_async::<T>(&mut connection).await,
                Connection::Cluster(mut connection) => cmd.query_async::<T>(&mut connection).await,
            }
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

    /// Runs a command that must land (an invalidation), trying once more on failure.
    async fn run_twice<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        match self.run(cmd.clone()).await {
            Some(value) => Some(value),
            None => self.run(cmd.clone()).await,
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

    /// `DEL`, tried twice; false when neither try got an answer.
    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, bool> {
        async move { self.run_twice::<i64>(&redis::Cmd::del(key)).await.is_some() }.boxed()
    }

    /// The `GET` of the tenant's generation key, reused for the generation TTL; when Redis
    /// cannot answer, the last generation read (or 0).
    fn generation<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, u64> {
        async move {
            let cached = self.generations.get(tenant_prefix).await;
            if let Some((generation, read_at)) = cached
                && read_at.elapsed() < self.config.generation_ttl
            {
                return generation;
            }
            let read: Option<Option<u64>> = self
                .run(redis::Cmd::get(&generation_key(tenant_prefix)[..]))
                .await;
            match read {
                Some(generation) => {
                    let generation = generation.unwrap_or(0);
                    self.generations
                        .insert(
                            Bytes::copy_from_slice(tenant_prefix),
                            (generation, Instant::now()),
                        )
                        .await;
                    generation
                }
                None => cached.map_or(0, |(generation, _)| generation),
            }
        }
        .boxed()
    }

    /// `INCR` of the tenant's generation key (one key: O(1) and safe on a cluster), tried
    /// twice. The keys of the old generation are never read again and expire with their TTL.
    fn purge_tenant<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, bool> {
        async move {
            let key = generation_key(tenant_prefix);
            let Some(generation) = self.run_twice::<u64>(&redis::Cmd::incr(&key[..], 1)).await
            else {
                tracing::warn!("tenant purge could not reach redis");
                return false;
            };
            self.generations
                .insert(
                    Bytes::copy_from_slice(tenant_prefix),
                    (generation, Instant::now()),
                )
                .await;
            true
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

    fn index_take<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>> {
        self.index_take_inner(index).boxed()
    }
}

impl RedisStore {
    /// `ZADD … GT` with the member's expiry as its score, `ZREMRANGEBYSCORE` of the members
    /// already expired, then `PEXPIRE … GT` / `NX` so the index lives as long as its longest
    /// member (single-key commands only).
    pub(crate) async fn index_add_inner(&self, index: &[u8], member: &[u8], ttl: Duration) {
        let now = epoch_ms(SystemTime::now());
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut add = redis::cmd("ZADD");
        add.arg(index)
            .arg("GT")
            .arg(now.saturating_add(millis))
            .arg(member);
        let _: Option<i64> = self.run(add).await;
        let mut trim = redis::cmd("ZREMRANGEBYSCORE");
        trim.arg(index).arg("-inf").arg(now);
        let _: Option<i64> = self.run(trim).await;
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(index).arg(millis).arg("GT");
        let _: Option<i64> = self.run(expire).await;
        // GT never sets an expiry on a key without one (a new index): set it then.
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(index).arg(millis).arg("NX");
        let _: Option<i64> = self.run(expire).await;
    }

    /// `ZRANGEBYSCORE` of the members not yet expired, then `DEL`.
    pub(crate) async fn index_take_inner(&self, index: &[u8]) -> Vec<Bytes> {
        let mut live = redis::cmd("ZRANGEBYSCORE");
        live.arg(index)
            .arg(format!("({}", epoch_ms(SystemTime::now())))
            .arg("+inf");
        let members: Vec<Vec<u8>> = self.run(live).await.unwrap_or_default();
        let _: Option<i64> = self.run_twice(&redis::Cmd::del(index)).await;
        members.into_iter().map(Bytes::from).collect()
    }

    /// Publishes `payload` on `channel` (fails open like every operation; on a cluster,
    /// `PUBLISH` reaches the subscribers of every node).
    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) {
        let _: Option<i64> = self.run(redis::Cmd::publish(channel, payload)).await;
    }

    /// Clients for a dedicated pub/sub connection: the server, or each cluster seed node.
    pub(crate) fn pubsub_clients(&self) -> &[redis::Client] {
        &self.pubsub
    }

    /// The generations read so far (the subscriber drops one when a purge is announced).
    pub(crate) fn generations(&self) -> &Generations {
        &self.generations
    }
}

/// Milliseconds since the Unix epoch.
fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
