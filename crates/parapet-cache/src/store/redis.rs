//! The shared tier: Redis through a `ConnectionManager`, a Redis Cluster through a
//! `ClusterConnection`, or the primary that Sentinel names; failing open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterConfig;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{ErrorKind, RedisError, RedisResult};
use tokio::sync::OnceCell;

use super::breaker::Breaker;
use super::redis_config::RedisConfig;
use super::redis_target::{Target, plan};

use super::subscriber::Subscription;
use super::{Found, Store, Tier};
use crate::encoding::{decode, encode};
use crate::entry::StoredValue;
use crate::key::{generation_key, soft_purge_key};
use crate::stats::{Counters, bump};

/// The time a readiness `PING` may take, a first connection (and its TLS handshake) included.
const PING_BUDGET: Duration = Duration::from_secs(1);

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

/// Tenant soft-purge times (ms since the Unix epoch) read from Redis, with when they were read;
/// kept like [`Generations`].
pub(crate) type SoftPurges = moka::future::Cache<Bytes, (Option<u64>, Instant)>;

/// The Redis tier: every value under its own key with a TTL (`SET … PX`), encoded compactly
/// (see the `encoding` module docs), single-key commands only, so it works the same on a
/// single server, on a Redis Cluster ([`RedisConfig::cluster`]) and on the primary that
/// Sentinel names ([`RedisConfig::sentinel`]), over TLS or not.
///
/// Fails open: each operation runs under the configured time budget and behind a breaker;
/// an error, a timeout, an open breaker or a value that does not decode is a miss. The
/// connection is made lazily on first use and re-made by the connection itself (through the
/// sentinels again after a failover).
pub struct RedisStore {
    target: Target,
    /// Where the invalidation subscriber listens.
    subscription: Subscription,
    connection: OnceCell<Connection>,
    config: RedisConfig,
    /// The servers, for logs (`host:port`, no credentials).
    hosts: String,
    breaker: Breaker,
    counters: Arc<Counters>,
    generations: Generations,
    soft_purges: SoftPurges,
    /// When a failure was last logged as a warning (ms since `started`).
    warned_at: AtomicU64,
    started: Instant,
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
    /// When a URL is not a valid Redis URL, a cluster or Sentinel has no node, or the TLS
    /// settings are unusable: a CA or client certificate that cannot be read or holds no
    /// certificate, a key that does not match its certificate, or certificates given for a
    /// URL that is not `rediss://`. The error names the servers and the reason. (A CA that
    /// parses but did not sign the server's certificate is found at the first connection:
    /// the cache fails open, and the reason is logged as a warning.)
    pub fn new(config: RedisConfig) -> Result<Self, RedisError> {
        Self::with_counters(config, Arc::default())
    }

    pub(crate) fn with_counters(
        config: RedisConfig,
        counters: Arc<Counters>,
    ) -> Result<Self, RedisError> {
        let (target, subscription, hosts) = plan(&config)?;
        let breaker = Breaker::new(
            config.breaker_threshold,
            config.breaker_cool_down,
            counters.clone(),
        );
        Ok(Self {
            target,
            subscription,
            connection: OnceCell::new(),
            breaker,
            counters,
            generations: moka::future::Cache::builder().max_capacity(100_000).build(),
            soft_purges: moka::future::Cache::builder().max_capacity(100_000).build(),
            config,
            hosts,
            warned_at: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// The shared connection, made on first use (in the background for a cluster, whose
    /// commands fail until its nodes are reached).
    async fn connection(&self) -> RedisResult<Connection> {
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
                        ConnectionManager::new_lazy_with_config((**client).clone(), config)
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
                    Target::Sentinel(_) => Err(RedisError::from((
                        ErrorKind::Client,
                        "a sentinel primary has no shared connection",
                    ))),
                }
            })
            .await?;
        Ok(connection.clone())
    }

    /// Runs one command under the breaker and the time budget; `None` on any failure.
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Option<T> {
        self.run_within(cmd, self.config.timeout).await
    }

    /// [`run`](Self::run) with a time budget of its own.
    async fn run_within<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
        budget: Duration,
    ) -> Option<T> {
        self.run_op(Op::Cmd(cmd), budget).await
    }

    /// Runs a Lua script (`EVALSHA`, loading it first when the server does not know it) under
    /// the store's time budget and breaker, on the same connection as the cache's commands;
    /// `None` on any failure, a timeout or an open breaker.
    ///
    /// For other layers that share Redis with the cache's settings (parapet-quota's shared
    /// limiter). On a Redis Cluster the script must touch the keys it is given only, and those
    /// in one slot.
    pub async fn invoke_script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        self.run_op(Op::Script(invocation), self.config.timeout)
            .await
    }

    /// Whether the breaker lets the next operation through: false while it is open, so a
    /// caller can take its fallback at once instead of awaiting a skipped operation.
    #[must_use]
    pub fn available(&self) -> bool {
        self.breaker.is_closed_or_due()
    }

    async fn run_op<T: redis::FromRedisValue>(&self, op: Op<'_>, budget: Duration) -> Option<T> {
        let permit = self.breaker.permit()?;
        // The Sentinel connection used, dropped when the command fails (a failover).
        let used = AtomicU64::new(0);
        let result = tokio::time::timeout(budget, async {
            if let Target::Sentinel(primary) = &self.target {
                let mut primary = primary.connection().await?;
                used.store(primary.id, Ordering::Relaxed);
                return op.on(&mut primary.connection).await;
            }
            match self.connection().await? {
                Connection::Single(mut connection) => op.on(&mut connection).await,
                Connection::Cluster(mut connection) => op.on(&mut connection).await,
            }
        })
        .await;
        match result {
            Ok(Ok(value)) => {
                self.breaker.record(permit, true);
                return Some(value);
            }
            Ok(Err(error)) => self.warn_throttled(&error),
            Err(_) => tracing::debug!(?budget, "redis cache operation timed out"),
        }
        if let Target::Sentinel(primary) = &self.target {
            primary.failed(used.load(Ordering::Relaxed));
        }
        self.breaker.record(permit, false);
        None
    }

    /// Logs a failed operation: a warning at most every 10 s (naming the servers and the
    /// reason, e.g. a certificate the CA did not sign), the rest at debug level.
    fn warn_throttled(&self, error: &RedisError) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.warned_at.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self
                .warned_at
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(redis = %self.hosts, %error, "redis cache operation failed; serving without it");
        } else {
            tracing::debug!(redis = %self.hosts, %error, "redis cache operation failed");
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

    /// One `DEL` of many keys per slot (on one server: per 512 keys, `DELETE_BATCH`), all sent at
    /// once on the multiplexed connection: one round trip however many keys, each command
    /// tried twice. False when a command got no answer.
    fn delete_many<'a>(&'a self, keys: &'a [Bytes]) -> BoxFuture<'a, bool> {
        async move {
            let batches = self.delete_batches(keys);
            let deletes = batches.iter().map(|cmd| self.run_twice::<i64>(cmd));
            join_all(deletes).await.iter().all(Option::is_some)
        }
        .boxed()
    }

    /// `SET … PX`, confirmed.
    fn replace<'a>(
        &'a self,
        key: &'a [u8],
        value: StoredValue,
        ttl: Duration,
    ) -> BoxFuture<'a, bool> {
        self.put_confirmed(key, value, ttl).boxed()
    }

    /// The `GET` of the tenant's soft-purge key, cached like the generation.
    fn stale_before<'a>(&'a self, tenant_prefix: &'a [u8]) -> BoxFuture<'a, Option<SystemTime>> {
        async move {
            let cached = self.soft_purges.get(tenant_prefix).await;
            let millis = match cached {
                Some((millis, read_at)) if read_at.elapsed() < self.config.generation_ttl => millis,
                _ => {
                    let read: Option<Option<u64>> = self
                        .run(redis::Cmd::get(&soft_purge_key(tenant_prefix)[..]))
                        .await;
                    match read {
                        Some(millis) => {
                            self.soft_purges
                                .insert(
                                    Bytes::copy_from_slice(tenant_prefix),
                                    (millis, Instant::now()),
                                )
                                .await;
                            millis
                        }
                        None => cached.and_then(|(millis, _)| millis),
                    }
                }
            };
            millis.map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        }
        .boxed()
    }

    /// `SET` of the tenant's soft-purge key to `at` (rounded up to the millisecond), unless it
    /// already holds a later time: one small script on one key, tried twice.
    fn soft_purge_tenant<'a>(
        &'a self,
        tenant_prefix: &'a [u8],
        at: SystemTime,
    ) -> BoxFuture<'a, bool> {
        async move {
            let key = soft_purge_key(tenant_prefix);
            let millis = epoch_ms(at).saturating_add(1);
            let script = redis::Script::new(SOFT_PURGE_SCRIPT);
            let mut invocation = script.key(&key[..]);
            invocation.arg(millis);
            let mut stored = self.invoke_script::<u64>(&invocation).await;
            if stored.is_none() {
                stored = self.invoke_script::<u64>(&invocation).await;
            }
            let Some(stored) = stored else {
                tracing::warn!("tenant soft purge could not reach redis");
                return false;
            };
            self.soft_purges
                .insert(
                    Bytes::copy_from_slice(tenant_prefix),
                    (Some(stored), Instant::now()),
                )
                .await;
            true
        }
        .boxed()
    }

    fn index_members<'a>(&'a self, index: &'a [u8]) -> BoxFuture<'a, Vec<Bytes>> {
        async move {
            let mut live = redis::cmd("ZRANGEBYSCORE");
            live.arg(index)
                .arg(format!("({}", epoch_ms(SystemTime::now())))
                .arg("+inf");
            let members: Vec<Vec<u8>> = self.run(live).await.unwrap_or_default();
            members.into_iter().map(Bytes::from).collect()
        }
        .boxed()
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

    /// `PING` under the breaker, with a budget long enough for a first (TLS) connection: an
    /// open breaker answers `Some(false)` at once, as the cache itself then skips Redis.
    fn ping(&self) -> BoxFuture<'_, Option<bool>> {
        async move {
            let budget = self.config.timeout.max(PING_BUDGET);
            let pong: Option<String> = self.run_within(redis::cmd("PING"), budget).await;
            Some(pong.is_some())
        }
        .boxed()
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

    /// `ZRANGEBYSCORE` of the members not yet expired and `DEL`, in one round trip (one key,
    /// so one slot); the `DEL` is sent once more alone when that failed.
    pub(crate) async fn index_take_inner(&self, index: &[u8]) -> Vec<Bytes> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGEBYSCORE")
            .arg(index)
            .arg(format!("({}", epoch_ms(SystemTime::now())))
            .arg("+inf")
            .cmd("DEL")
            .arg(index)
            .ignore();
        let taken: Option<(Vec<Vec<u8>>,)> = self.run_op(Op::Pipe(pipe), self.config.timeout).await;
        match taken {
            Some((members,)) => members.into_iter().map(Bytes::from).collect(),
            None => {
                let _: Option<i64> = self.run(redis::Cmd::del(index)).await;
                Vec::new()
            }
        }
    }

    /// Publishes `payload` on `channel` (fails open like every operation): `SPUBLISH` on a
    /// cluster, which reaches only the shard that owns the channel's slot, where the other
    /// instances listen; `PUBLISH` otherwise.
    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) {
        let cmd = match self.target {
            Target::Cluster(_) => {
                let mut cmd = redis::cmd("SPUBLISH");
                cmd.arg(channel).arg(payload);
                cmd
            }
            Target::Single(_) | Target::Sentinel(_) => redis::Cmd::publish(channel, payload),
        };
        let _: Option<i64> = self.run(cmd).await;
    }

    /// Where the invalidation subscriber listens.
    pub(crate) fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// The `DEL` commands removing `keys`: one per slot on a cluster (a multi-key command
    /// must stay in one slot), batches of [`DELETE_BATCH`] keys otherwise.
    fn delete_batches(&self, keys: &[Bytes]) -> Vec<redis::Cmd> {
        let del = |keys: &[&Bytes]| {
            let mut cmd = redis::cmd("DEL");
            for key in keys {
                cmd.arg(&key[..]);
            }
            cmd
        };
        match self.target {
            Target::Cluster(_) => {
                let mut by_slot: std::collections::HashMap<Slot, Vec<&Bytes>> =
                    std::collections::HashMap::new();
                for key in keys {
                    by_slot.entry(Slot::for_key(key)).or_default().push(key);
                }
                by_slot.values().map(|keys| del(keys)).collect()
            }
            Target::Single(_) | Target::Sentinel(_) => keys
                .chunks(DELETE_BATCH)
                .map(|chunk| del(&chunk.iter().collect::<Vec<_>>()))
                .collect(),
        }
    }

    /// `SET … PX` of an encoded value; false when Redis did not confirm it.
    pub(crate) async fn put_confirmed(
        &self,
        key: &[u8],
        value: StoredValue,
        ttl: Duration,
    ) -> bool {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return self.run_twice::<i64>(&redis::Cmd::del(key)).await.is_some();
        }
        let encoded = encode(&value, self.config.compress_threshold);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(&encoded[..]).arg("PX").arg(millis);
        self.run::<redis::Value>(cmd).await.is_some()
    }

    /// The soft-purge times read so far (the subscriber drops one when a soft purge is
    /// announced).
    pub(crate) fn soft_purges(&self) -> &SoftPurges {
        &self.soft_purges
    }

    /// The generations read so far (the subscriber drops one when a purge is announced).
    pub(crate) fn generations(&self) -> &Generations {
        &self.generations
    }
}

/// Keys per `DEL` on one server (a cluster needs one per slot anyway).
const DELETE_BATCH: usize = 512;

/// Sets the soft-purge key to the later of its value and `ARGV[1]`; returns the value kept.
const SOFT_PURGE_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = tonumber(ARGV[1])
if at > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return at
end
return current
";

/// What [`RedisStore::run_op`] sends: a command, or a script invocation.
enum Op<'a> {
    Cmd(redis::Cmd),
    /// Commands sent together (on a cluster, all on one slot).
    Pipe(redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl Op<'_> {
    async fn on<T, C>(self, connection: &mut C) -> RedisResult<T>
    where
        T: redis::FromRedisValue,
        C: redis::aio::ConnectionLike + Send,
    {
        match self {
            Self::Cmd(cmd) => cmd.query_async(connection).await,
            Self::Pipe(pipe) => pipe.query_async(connection).await,
            Self::Script(invocation) => invocation.invoke_async(connection).await,
        }
    }
}

/// Milliseconds since the Unix epoch.
fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
