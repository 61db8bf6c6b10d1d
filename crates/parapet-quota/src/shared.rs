//! The shared limiter: the tenant's TAT in Redis, read and written by one Lua script in one
//! round trip, on Redis's clock (`TIME`), so every instance enforces one limit together.
//!
//! The key is `<prefix>{<tenant>}`: the hash tag puts each tenant's key in a slot of its own
//! choosing on a Redis Cluster, and the script touches that key only. The connection, its time
//! budget and its breaker are parapet-cache's [`RedisStore`] (single server, Cluster, Sentinel,
//! TLS): a failure, a timeout or an open breaker is `None`, and the layer decides locally.

use parapet_cache::{RedisConfig, RedisStore};
use redis::{RedisError, Script};

use crate::gcra::{Decision, Gcra};

/// The GCRA of `gcra.rs` in Lua. `KEYS[1]`: the tenant's key. `ARGV`: cost (µs), tolerance
/// (µs), and `charge` or `refund`. Answers `{allowed, used, wait}` in µs. The TAT is written
/// with `%.0f` because Lua's default number format keeps 14 digits and a TAT has 16.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
local stepped = tat > now + tolerance
if tat < now then tat = now end
if stepped then tat = now + tolerance end
local function store(v)
  if v > now then
    redis.call('SET', KEYS[1], string.format('%.0f', v), 'PX', math.floor((v - now) / 1000) + 1000)
  else
    redis.call('DEL', KEYS[1])
  end
end
if ARGV[3] == 'refund' then
  local v = tat - cost
  if v < now then v = now end
  store(v)
  return {1, v - now, 0}
end
local v = tat + cost
if v - now > tolerance then
  if stepped then store(tat) end
  return {0, tat - now, v - now - tolerance}
end
store(v)
return {1, v - now, 0}
";

pub(crate) struct SharedLimiter {
    store: RedisStore,
    script: Script,
    prefix: String,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedLimiter {
    pub(crate) fn new(config: RedisConfig, prefix: String) -> Result<Self, RedisError> {
        Ok(Self {
            store: RedisStore::new(config)?,
            script: Script::new(SCRIPT),
            prefix,
        })
    }

    /// Whether Redis may be asked now (false while the breaker is open).
    pub(crate) fn available(&self) -> bool {
        self.store.available()
    }

    /// The tenant's key: `<prefix>{<tenant>}`.
    pub(crate) fn key(&self, tenant: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + tenant.len() + 2);
        key.push_str(&self.prefix);
        key.push('{');
        key.push_str(tenant);
        key.push('}');
        key
    }

    /// Charges `cost` µs; `None` when Redis did not answer in time.
    pub(crate) async fn charge(&self, key: &str, gcra: &Gcra, cost: u64) -> Option<Decision> {
        let (allowed, used, wait) = self.run(key, gcra, cost, "charge").await?;
        Some(Decision {
            allowed: allowed == 1,
            tat: 0,
            used,
            wait,
        })
    }

    /// Gives back `amount` µs; false when Redis did not answer.
    pub(crate) async fn refund(&self, key: &str, gcra: &Gcra, amount: u64) -> bool {
        self.run(key, gcra, amount, "refund").await.is_some()
    }

    async fn run(&self, key: &str, gcra: &Gcra, cost: u64, op: &str) -> Option<(u8, u64, u64)> {
        let mut invocation = self.script.key(key);
        invocation.arg(cost).arg(gcra.tolerance()).arg(op);
        self.store.invoke_script(&invocation).await
    }
}
