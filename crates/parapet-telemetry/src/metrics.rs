//! The instruments parapet records: the HTTP server's (recorded by
//! [`TelemetryLayer`](crate::TelemetryLayer)), and, behind the `cache` and `pool` features,
//! observable instruments reading parapet-cache's counters (`observe_cache`) and
//! parapet-pool's status (`observe_pool`). `process.memory.usage` comes from
//! [`MemoryMonitor`](crate::MemoryMonitor).

use opentelemetry::{
    KeyValue,
    metrics::{Histogram, Meter, UpDownCounter},
};
use opentelemetry_semantic_conventions::{attribute, metric};

#[cfg(feature = "cache")]
mod cache;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "quota")]
mod quota;

#[cfg(feature = "cache")]
pub use cache::{CACHE_RESULT, CACHE_TIER, observe_cache};
#[cfg(feature = "pool")]
pub use pool::observe_pool;
#[cfg(feature = "quota")]
pub use quota::{QUOTA_SOURCE, TENANT_ID, observe_quota};

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
    /// the method, scheme, status, route and error type.
    pub(crate) fn finished(
        &self,
        active: &[KeyValue],
        seconds: f64,
        status: Option<u16>,
        route: Option<&str>,
        error_type: Option<&str>,
    ) {
        self.active.add(-1, active);
        let mut attributes = Vec::with_capacity(5);
        attributes.extend_from_slice(active);
        if let Some(status) = status {
            attributes.push(KeyValue::new(
                attribute::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status),
            ));
        }
        if let Some(route) = route {
            attributes.push(KeyValue::new(attribute::HTTP_ROUTE, route.to_owned()));
        }
        if let Some(error_type) = error_type {
            attributes.push(KeyValue::new(attribute::ERROR_TYPE, error_type.to_owned()));
        }
        self.duration.record(seconds, &attributes);
    }
}
