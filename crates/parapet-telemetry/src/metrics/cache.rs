//! The counters of a parapet-cache [`CacheLayer`](parapet_cache::CacheLayer) as observable
//! instruments.

use std::sync::{Mutex, PoisonError};

use opentelemetry::{
    KeyValue,
    metrics::{AsyncInstrument, Meter},
};
use parapet_cache::{CacheHandle, CacheStats, TenantRequests};

/// The attribute naming the outcome of a request or a lookup (`hit`, `miss`, …).
pub const CACHE_RESULT: &str = "cache.result";
/// The attribute naming the tier of a lookup: `local` (the in-process tier) or `redis`.
pub const CACHE_TIER: &str = "cache.tier";

/// Registers observable instruments that read [`CacheHandle::stats`] at every collection.
///
/// | instrument | kind, unit | attributes | from [`CacheStats`] |
/// |---|---|---|---|
/// | `parapet.cache.requests` | counter, `{request}` | `cache.result` = `hit` / `stale` / `miss` / `bypass` | `hits`, `stale`, `misses`, `bypass` |
/// | `parapet.cache.tenant.requests` | counter, `{request}` | `tenant.id`: [`TOP_TENANTS`](super::TOP_TENANTS) tenants, the busiest when first collected (see below), the rest summed as [`OTHER_TENANTS`](super::OTHER_TENANTS); `cache.result` as above | [`CacheHandle::requests_by_tenant`] |
/// | `parapet.cache.passes` | counter, `{request}` | | `passes` (hit-for-pass: forwarded without coalescing; counted as misses too) |
/// | `parapet.cache.lookups` | counter, `{lookup}` | `cache.tier` = `local` / `redis`, `cache.result` = `hit` / `miss` | `local_hits`, `local_misses`, `redis_hits`, `redis_misses` |
/// | `parapet.cache.stored` | counter, `{response}` | | `stored` |
/// | `parapet.cache.revalidated` | counter, `{response}` | | `revalidated` |
/// | `parapet.cache.coalesced` | counter, `{request}` | | `coalesced` |
/// | `parapet.cache.invalidations` | counter, `{key}` | | `invalidations` |
/// | `parapet.cache.local.size` | up-down counter, `By` | | `local_bytes` |
/// | `parapet.cache.local.tenant.size` | up-down counter, `By` | `tenant.id`: the [`TOP_TENANTS`](super::TOP_TENANTS) tenants holding the most, the rest summed as [`OTHER_TENANTS`](super::OTHER_TENANTS) | [`CacheHandle::local_bytes_by_tenant`] |
/// | `parapet.cache.local.refused` | counter, `{response}` | | `local_refused` (the tenant held its share of the local tier) |
/// | `parapet.cache.redis.errors` | counter, `{error}` | | `redis_errors` |
/// | `parapet.cache.redis.skipped` | counter, `{operation}` | | `redis_skipped` (breaker open) |
/// | `parapet.cache.breaker.opens` | counter, `{open}` | | `breaker_opens` |
/// | `parapet.cache.breaker.open` | gauge, `1` | | `breaker_open` (1 open, 0 closed) |
///
/// The counters are cumulative since the layer was built. The tenants named by
/// `parapet.cache.tenant.requests` are the busiest at the collections where there was room for
/// them: each collection names the busiest tenants not named yet until [`TOP_TENANTS`](super::TOP_TENANTS)
/// are, and a named tenant keeps its series; a tenant summed under `_other` stays there. So every
/// series, `_other`'s included, only goes up (a tenant moving out of `_other` would make it go
/// down, which a backend reads as a counter reset), at the price of a tenant that becomes busy
/// later being summed until the process restarts. The callbacks keep the handle (and so
/// the cache's shared state) alive as long as the meter provider lives. Observe one cache per
/// meter: two caches on one meter would report under the same names and attributes.
///
/// # Example
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// use opentelemetry_sdk::metrics::SdkMeterProvider;
/// use parapet_cache::CacheLayer;
///
/// let cache = CacheLayer::builder().local(64 << 20).build()?;
/// // With `init()`: `opentelemetry::global::meter("parapet")`.
/// let provider = SdkMeterProvider::default();
/// parapet_telemetry::metrics::observe_cache(&provider.meter("parapet"), cache.handle());
/// // `Router::new().route(..).layer(cache)`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn observe_cache(meter: &Meter, cache: CacheHandle) {
    let counter = |name: &'static str,
                   unit: &'static str,
                   description: &'static str,
                   read: fn(&CacheStats, &dyn AsyncInstrument<u64>)| {
        let cache = cache.clone();
        meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| read(&cache.stats(), observer))
            .build();
    };
    counter(
        "parapet.cache.requests",
        "{request}",
        "Requests the cache handled, by outcome.",
        |s, o| {
            for (value, result) in [
                (s.hits, "hit"),
                (s.stale, "stale"),
                (s.misses, "miss"),
                (s.bypass, "bypass"),
            ] {
                o.observe(value, &[KeyValue::new(CACHE_RESULT, result)]);
            }
        },
    );
    let handle = cache.clone();
    let named = Mutex::new(Vec::new());
    meter
        .u64_observable_counter("parapet.cache.tenant.requests")
        .with_unit("{request}")
        .with_description(
            "Requests the cache handled, by tenant and outcome (the busiest tenants when first seen; the rest summed).",
        )
        .with_callback(move |o| {
            let all = handle.requests_by_tenant(usize::MAX);
            let mut named = named.lock().unwrap_or_else(PoisonError::into_inner);
            for (tenant, counts) in sticky_top(&mut named, &all, super::TOP_TENANTS) {
                let id = super::tenant_attribute(tenant);
                for (value, result) in counts.into_iter().zip(["hit", "stale", "miss", "bypass"]) {
                    o.observe(value, &[id.clone(), KeyValue::new(CACHE_RESULT, result)]);
                }
            }
        })
        .build();
    counter(
        "parapet.cache.passes",
        "{request}",
        "Requests forwarded at once, without coalescing, because their key's last response could not be stored (hit-for-pass).",
        |s, o| o.observe(s.passes, &[]),
    );
    counter(
        "parapet.cache.lookups",
        "{lookup}",
        "Lookups in each cache tier, by outcome.",
        |s, o| {
            for (value, tier, result) in [
                (s.local_hits, "local", "hit"),
                (s.local_misses, "local", "miss"),
                (s.redis_hits, "redis", "hit"),
                (s.redis_misses, "redis", "miss"),
            ] {
                o.observe(
                    value,
                    &[
                        KeyValue::new(CACHE_TIER, tier),
                        KeyValue::new(CACHE_RESULT, result),
                    ],
                );
            }
        },
    );
    counter(
        "parapet.cache.stored",
        "{response}",
        "Responses stored in the cache.",
        |s, o| o.observe(s.stored, &[]),
    );
    counter(
        "parapet.cache.revalidated",
        "{response}",
        "Stored responses revalidated upstream with a 304.",
        |s, o| o.observe(s.revalidated, &[]),
    );
    counter(
        "parapet.cache.coalesced",
        "{request}",
        "Requests that waited for another request's miss instead of calling the service.",
        |s, o| o.observe(s.coalesced, &[]),
    );
    counter(
        "parapet.cache.invalidations",
        "{key}",
        "Primary keys invalidated by unsafe methods and purges.",
        |s, o| o.observe(s.invalidations, &[]),
    );
    counter(
        "parapet.cache.redis.errors",
        "{error}",
        "Redis operations that failed or timed out (each one a miss).",
        |s, o| o.observe(s.redis_errors, &[]),
    );
    counter(
        "parapet.cache.redis.skipped",
        "{operation}",
        "Redis operations skipped because the breaker was open.",
        |s, o| o.observe(s.redis_skipped, &[]),
    );
    counter(
        "parapet.cache.breaker.opens",
        "{open}",
        "Times the Redis breaker opened.",
        |s, o| o.observe(s.breaker_opens, &[]),
    );
    let handle = cache.clone();
    meter
        .i64_observable_up_down_counter("parapet.cache.local.size")
        .with_unit("By")
        .with_description("Approximate bytes held by the local cache tier.")
        .with_callback(move |o| {
            o.observe(
                i64::try_from(handle.stats().local_bytes).unwrap_or(i64::MAX),
                &[],
            );
        })
        .build();
    counter(
        "parapet.cache.local.refused",
        "{response}",
        "Entries the local tier refused because their tenant held its share of it.",
        |s, o| o.observe(s.local_refused, &[]),
    );
    let handle = cache.clone();
    meter
        .i64_observable_up_down_counter("parapet.cache.local.tenant.size")
        .with_unit("By")
        .with_description(
            "Bytes held by each tenant's entries in the local cache tier (the busiest tenants; the rest summed).",
        )
        .with_callback(move |o| {
            for held in handle.local_bytes_by_tenant(super::TOP_TENANTS) {
                o.observe(
                    i64::try_from(held.bytes).unwrap_or(i64::MAX),
                    &[super::tenant_attribute(held.tenant.as_deref())],
                );
            }
        })
        .build();
    meter
        .u64_observable_gauge("parapet.cache.breaker.open")
        .with_unit("1")
        .with_description("Whether the Redis breaker is open (1) or closed (0).")
        .with_callback(move |o| o.observe(u64::from(cache.stats().breaker_open), &[]))
        .build();
}

/// The series of one collection of `parapet.cache.tenant.requests`: the named tenants' counts
/// (hits, stale, misses, bypass), then, when any request is left, their sum as `None`. `all` is
/// busiest first (as [`CacheHandle::requests_by_tenant`] gives it); the busiest tenants not
/// named yet are named while there is room for `top`, and a named tenant stays named.
fn sticky_top<'a>(
    named: &mut Vec<String>,
    all: &'a [TenantRequests],
    top: usize,
) -> Vec<(Option<&'a str>, [u64; 4])> {
    for requests in all {
        if named.len() >= top {
            break;
        }
        if let Some(tenant) = &requests.tenant
            && !named.contains(tenant)
        {
            named.push(tenant.clone());
        }
    }
    let mut series = Vec::with_capacity(named.len() + 1);
    let mut other: Option<[u64; 4]> = None;
    for requests in all {
        let counts = [
            requests.hits,
            requests.stale,
            requests.misses,
            requests.bypass,
        ];
        match &requests.tenant {
            Some(tenant) if named.contains(tenant) => series.push((Some(tenant.as_str()), counts)),
            _ => {
                let sum = other.get_or_insert([0; 4]);
                for (total, n) in sum.iter_mut().zip(counts) {
                    *total += n;
                }
            }
        }
    }
    if let Some(sum) = other {
        series.push((None, sum));
    }
    series
}
