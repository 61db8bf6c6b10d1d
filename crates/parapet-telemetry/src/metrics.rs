//! The instruments parapet records: the HTTP server's (recorded by
//! [`TelemetryLayer`](crate::TelemetryLayer)), and, behind the `cache` and `pool` features,
//! observable instruments reading parapet-cache's counters (`observe_cache`) and
//! parapet-pool's status and checkout waits (`observe_pool`). `process.memory.usage` comes from
//! [`MemoryMonitor`](crate::MemoryMonitor).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{OnceLock, RwLock},
};

use opentelemetry::{
    KeyValue, Value,
    metrics::{BoundHistogram, BoundUpDownCounter, Histogram, Meter, UpDownCounter},
};
use opentelemetry_semantic_conventions::{attribute, metric};

use crate::route::{KnownMethod, METHODS};

#[cfg(feature = "cache")]
mod cache;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "quota")]
mod quota;

#[cfg(feature = "cache")]
pub use cache::{CACHE_RESULT, CACHE_TIER, observe_cache};
#[cfg(feature = "pool")]
pub use pool::{WAIT_BUCKETS, observe_pool};
#[cfg(feature = "quota")]
pub use quota::{QUOTA_SOURCE, observe_quota};

/// How many tenants the per-tenant instruments name (`parapet.pool.tenant.*`,
/// `parapet.cache.local.tenant.size`): the busiest ones; the others are summed under
/// [`OTHER_TENANTS`], so the attribute's cardinality stays bounded whatever the number of
/// tenants.
pub const TOP_TENANTS: usize = 10;

/// The `tenant.id` of the sum of the tenants outside the top. No tenant id can take this value
/// (ids start with a lowercase letter or a digit).
pub const OTHER_TENANTS: &str = "_other";

/// The attribute naming the tenant of a per-tenant instrument.
pub const TENANT_ID: &str = "tenant.id";

/// `tenant.id` = the tenant, or [`OTHER_TENANTS`] for the sum of the rest.
#[cfg(any(feature = "cache", feature = "pool"))]
fn tenant_attribute(tenant: Option<&str>) -> KeyValue {
    KeyValue::new(TENANT_ID, tenant.unwrap_or(OTHER_TENANTS).to_owned())
}

/// The explicit bucket boundaries the semantic conventions give `http.server.request.duration`.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// How many attribute sets of `http.server.request.duration` get a bound handle; further sets
/// are recorded unbound (the SDK's own cardinality limit is 2,000 per instrument).
const BOUND_DURATIONS: usize = 2000;

/// What a request's `http.server.active_requests` attributes are made of.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActiveKey {
    method: KnownMethod,
    https: bool,
}

impl ActiveKey {
    pub(crate) fn new(method: KnownMethod, scheme: &'static str) -> Self {
        Self {
            method,
            https: scheme == "https",
        }
    }

    fn index(self) -> usize {
        self.method.index() * 2 + usize::from(self.https)
    }

    fn attributes(self) -> [KeyValue; 2] {
        [
            KeyValue::new(attribute::HTTP_REQUEST_METHOD, self.method.name()),
            KeyValue::new(
                attribute::URL_SCHEME,
                if self.https { "https" } else { "http" },
            ),
        ]
    }
}

/// What a request's `http.server.request.duration` attributes are made of. Every part is an
/// integer or a `'static` string (the route is interned), so a key is cheap to hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DurationKey {
    method: usize,
    https: bool,
    status: Option<u16>,
    route: Option<&'static str>,
    /// The error type of a service error (a 5xx's is its status).
    error: Option<&'static str>,
}

/// rustc's multiply-rotate hash (FxHash), for the map of bound duration histograms: its keys
/// are the layer's own (a method index, the response's status code, an interned route template,
/// an error type's name), never bytes a client chose, so SipHash's resistance to hash flooding
/// buys nothing there and costs ~400 instructions a request.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

type DurationMap = HashMap<DurationKey, BoundHistogram<f64>, BuildHasherDefault<KeyHasher>>;

/// The instruments of one [`TelemetryLayer`](crate::TelemetryLayer), created on first use.
///
/// Both are used through handles bound to an attribute set (OpenTelemetry's bound instruments),
/// made on the first request with that set: the SDK then adds to the set's aggregator directly
/// instead of hashing and looking up the attributes on every measurement (three per request).
/// The sets are few (method, scheme, status, route), so the handles live as long as the layer.
#[derive(Debug)]
pub(crate) struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    /// `http.server.active_requests` by method and scheme.
    active_bound: [OnceLock<BoundUpDownCounter<i64>>; METHODS * 2],
    duration_bound: RwLock<DurationMap>,
}

impl Instruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram(metric::HTTP_SERVER_REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter(metric::HTTP_SERVER_ACTIVE_REQUESTS)
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .build(),
            active_bound: std::array::from_fn(|_| OnceLock::new()),
            duration_bound: RwLock::new(DurationMap::default()),
        }
    }

    fn active(&self, key: ActiveKey) -> &BoundUpDownCounter<i64> {
        self.active_bound[key.index()].get_or_init(|| self.active.bind(&key.attributes()))
    }

    pub(crate) fn started(&self, key: ActiveKey) {
        self.active(key).add(1);
    }

    /// A request dropped before its response: only the active count goes down.
    pub(crate) fn cancelled(&self, key: ActiveKey) {
        self.active(key).add(-1);
    }

    /// Records one finished request: the active count goes down, the duration is recorded with
    /// the method, scheme, status, route and error type (`error` is a service error's type; a
    /// 5xx's is its status code).
    pub(crate) fn finished(
        &self,
        key: ActiveKey,
        seconds: f64,
        status: Option<u16>,
        route: Option<&'static str>,
        error: Option<&'static str>,
    ) {
        self.active(key).add(-1);
        let duration_key = DurationKey {
            method: key.method.index(),
            https: key.https,
            status,
            route,
            error,
        };
        if let Ok(bound) = self.duration_bound.read()
            && let Some(histogram) = bound.get(&duration_key)
        {
            histogram.record(seconds);
            return;
        }
        let [method, scheme] = key.attributes();
        let error_type = match (error, status) {
            (Some(error), _) => Some(Value::from(error)),
            (None, Some(status)) if status >= 500 => Some(Value::from(status.to_string())),
            _ => None,
        };
        let attributes: Vec<KeyValue> = [
            Some(method),
            Some(scheme),
            status.map(|s| KeyValue::new(attribute::HTTP_RESPONSE_STATUS_CODE, i64::from(s))),
            route.map(|r| KeyValue::new(attribute::HTTP_ROUTE, r)),
            error_type.map(|e| KeyValue::new(attribute::ERROR_TYPE, e)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let Ok(mut bound) = self.duration_bound.write() else {
            self.duration.record(seconds, &attributes);
            return;
        };
        if bound.len() >= BOUND_DURATIONS {
            drop(bound);
            self.duration.record(seconds, &attributes);
            return;
        }
        bound
            .entry(duration_key)
            .or_insert_with(|| self.duration.bind(&attributes))
            .record(seconds);
    }
}
