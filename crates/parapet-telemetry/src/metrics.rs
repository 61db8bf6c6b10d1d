//! The instruments parapet records: the HTTP server's (recorded by
//! [`TelemetryLayer`](crate::TelemetryLayer)), and, behind the `cache` and `pool` features,
//! observable instruments reading parapet-cache's counters (`observe_cache`) and
//! parapet-pool's status (`observe_pool`). `process.memory.usage` comes from
//! [`MemoryMonitor`](crate::MemoryMonitor).

use opentelemetry::{
    KeyValue, Value,
    metrics::{Histogram, Meter, UpDownCounter},
};
use opentelemetry_semantic_conventions::{attribute, metric};

#[cfg(feature = "cache")]
mod cache;
#[cfg(feature = "pool")]
mod pool;

#[cfg(feature = "cache")]
pub use cache::{CACHE_RESULT, CACHE_TIER, observe_cache};
#[cfg(feature = "pool")]
pub use pool::observe_pool;

/// The explicit bucket boundaries the semantic conventions give `http.server.request.duration`.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The instruments of one [`TelemetryLayer`](crate::TelemetryLayer), created on first use.
#[derive(Debug, Clone)]
pub(crate) struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
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
        }
    }

    /// The attributes of `http.server.active_requests`.
    pub(crate) fn active_attributes(method: &'static str, scheme: &'static str) -> [KeyValue; 2] {
        [
            KeyValue::new(attribute::HTTP_REQUEST_METHOD, method),
            KeyValue::new(attribute::URL_SCHEME, scheme),
        ]
    }

    pub(crate) fn started(&self, attributes: &[KeyValue]) {
        self.active.add(1, attributes);
    }

    /// A request dropped before its response: only the active count goes down.
    pub(crate) fn cancelled(&self, active: &[KeyValue]) {
        self.active.add(-1, active);
    }

    /// Records one finished request: the active count goes down, the duration is recorded with
    /// the method, scheme, status, route and error type. The attribute set is built on the stack
    /// from values that are `'static` or integers (the route is interned), so nothing is
    /// allocated for it.
    pub(crate) fn finished(
        &self,
        active: &[KeyValue; 2],
        seconds: f64,
        status: Option<u16>,
        route: Option<&'static str>,
        error_type: Option<Value>,
    ) {
        self.active.add(-1, active);
        let [method, scheme] = active.clone();
        let mut attributes = [
            method,
            scheme,
            KeyValue::new("", false),
            KeyValue::new("", false),
            KeyValue::new("", false),
        ];
        let mut len = 2;
        let optional = [
            status.map(|s| KeyValue::new(attribute::HTTP_RESPONSE_STATUS_CODE, i64::from(s))),
            route.map(|r| KeyValue::new(attribute::HTTP_ROUTE, r)),
            error_type.map(|e| KeyValue::new(attribute::ERROR_TYPE, e)),
        ];
        for kv in optional.into_iter().flatten() {
            attributes[len] = kv;
            len += 1;
        }
        self.duration.record(seconds, &attributes[..len]);
    }
}
