//! The status of parapet-pool's [`TenantPools`] as observable instruments.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry::{KeyValue, Value, metrics::Meter};
use opentelemetry_semantic_conventions::{attribute, metric};
use parapet_pool::TenantPools;
use parapet_tenant::TenantId;

/// The bucket boundaries of `db.client.connection.wait_time`, in seconds: from a connection
/// that was idle (well under a millisecond) to the pool's wait timeout (seconds).
pub const WAIT_BUCKETS: [f64; 15] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registers observable instruments that read [`TenantPools::status`] at every collection, and
/// the checkout wait histogram, recorded by the pools at each checkout
/// ([`TenantPools::observe_waits`]: this replaces any observer set before).
///
/// | instrument | kind, unit | attributes | from the status |
/// |---|---|---|---|
/// | `db.client.connection.count` | up-down counter, `{connection}` | `db.client.connection.pool.name`, `db.client.connection.state` = `idle` / `used` | `available`, `size - available` |
/// | `db.client.connection.max` | up-down counter, `{connection}` | `db.client.connection.pool.name` | `max_size` |
/// | `db.client.connection.pending_requests` | up-down counter, `{request}` | `db.client.connection.pool.name` | `waiting` |
/// | `parapet.pool.budget.in_use` | up-down counter, `{connection}` | | `budget_in_use` |
/// | `parapet.pool.budget.limit` | up-down counter, `{connection}` | | `budget` |
/// | `parapet.pool.count` | up-down counter, `{pool}` | | live pools |
/// | `parapet.pool.tenant.connections` | up-down counter, `{connection}` | `tenant.id`: the [`TOP_TENANTS`](super::TOP_TENANTS) busiest tenants, the rest summed as [`OTHER_TENANTS`](super::OTHER_TENANTS) | [`TenantPools::tenant_usage`]: `in_use` |
/// | `parapet.pool.tenant.pending_requests` | up-down counter, `{request}` | `tenant.id`, as above | [`TenantPools::tenant_usage`]: `waiting` (for the tenant's turn or for a connection within its share) |
/// | `db.client.connection.wait_time` | histogram, `s` ([`WAIT_BUCKETS`]) | `db.client.connection.pool.name`, `tenant.id`: the first [`TOP_TENANTS`](super::TOP_TENANTS) tenants to check a connection out, every later one as [`OTHER_TENANTS`](super::OTHER_TENANTS) | recorded at each checkout ([`TenantPools::observe_waits`]): the time until the connection was in hand, the tenant's turn included |
///
/// The `db.client.connection.*` names and attributes are the (development) database client
/// semantic conventions; the pool name is the target's label: `shared`, or the host and database
/// of a tenant's own database (never a password). A pool that was dropped stops being reported.
/// The callbacks keep the pools alive as long as the meter provider lives.
///
/// # Example
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// use opentelemetry_sdk::metrics::SdkMeterProvider;
/// use parapet_pool::TenantPools;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // With a fixed budget nothing connects before the first checkout.
/// let pools = TenantPools::builder("postgres://app@127.0.0.1:5432/crm")
///     .budget(40)
///     .build()
///     .await?;
/// // With `init()`: `opentelemetry::global::meter("parapet")`.
/// let provider = SdkMeterProvider::default();
/// parapet_telemetry::metrics::observe_pool(&provider.meter("parapet"), pools.clone());
/// // `Router::new().route(..).layer(PoolLayer::new(pools))`
/// # Ok(())
/// # }
/// ```
pub fn observe_pool(meter: &Meter, pools: TenantPools) {
    pools.observe_waits(wait_recorder(meter));
    let pool_name =
        |target: &str| KeyValue::new(attribute::DB_CLIENT_CONNECTION_POOL_NAME, target.to_owned());
    let p = pools.clone();
    meter
        .i64_observable_up_down_counter(metric::DB_CLIENT_CONNECTION_COUNT)
        .with_unit("{connection}")
        .with_description("The number of connections that are currently in the state described by the state attribute.")
        .with_callback(move |o| {
            for t in p.status().targets {
                let idle = t.available.min(t.size);
                for (value, state) in [(idle, "idle"), (t.size - idle, "used")] {
                    o.observe(
                        count(value),
                        &[
                            pool_name(&t.target),
                            KeyValue::new(attribute::DB_CLIENT_CONNECTION_STATE, state),
                        ],
                    );
                }
            }
        })
        .build();
    let p = pools.clone();
    meter
        .i64_observable_up_down_counter(metric::DB_CLIENT_CONNECTION_MAX)
        .with_unit("{connection}")
        .with_description("The maximum number of open connections allowed.")
        .with_callback(move |o| {
            for t in p.status().targets {
                o.observe(count(t.max_size), &[pool_name(&t.target)]);
            }
        })
        .build();
    let p = pools.clone();
    meter
        .i64_observable_up_down_counter(metric::DB_CLIENT_CONNECTION_PENDING_REQUESTS)
        .with_unit("{request}")
        .with_description("The number of current pending requests for an open connection.")
        .with_callback(move |o| {
            for t in p.status().targets {
                o.observe(count(t.waiting), &[pool_name(&t.target)]);
            }
        })
        .build();
    let p = pools.clone();
    meter
        .i64_observable_up_down_counter("parapet.pool.budget.in_use")
        .with_unit("{connection}")
        .with_description(
            "Connections open across all pools (permits of the global budget in use).",
        )
        .with_callback(move |o| o.observe(count(p.status().budget_in_use), &[]))
        .build();
    let p = pools.clone();
    meter
        .i64_observable_up_down_counter("parapet.pool.budget.limit")
        .with_unit("{connection}")
        .with_description("The global connection budget shared by all pools.")
        .with_callback(move |o| o.observe(count(p.status().budget), &[]))
        .build();
    let p = pools.clone();
    meter
        .i64_observable_up_down_counter("parapet.pool.tenant.connections")
        .with_unit("{connection}")
        .with_description(
            "Connections checked out per tenant (the busiest tenants; the rest summed).",
        )
        .with_callback(move |o| {
            for u in p.tenant_usage(super::TOP_TENANTS) {
                let tenant = u.tenant.as_ref().map(|t| t.as_str());
                o.observe(count(u.in_use), &[super::tenant_attribute(tenant)]);
            }
        })
        .build();
    let p = pools.clone();
    meter
        .i64_observable_up_down_counter("parapet.pool.tenant.pending_requests")
        .with_unit("{request}")
        .with_description(
            "Checkouts waiting per tenant, for the tenant's turn or a connection within its share (the busiest tenants; the rest summed).",
        )
        .with_callback(move |o| {
            for u in p.tenant_usage(super::TOP_TENANTS) {
                let tenant = u.tenant.as_ref().map(|t| t.as_str());
                o.observe(count(u.waiting), &[super::tenant_attribute(tenant)]);
            }
        })
        .build();
    meter
        .i64_observable_up_down_counter("parapet.pool.count")
        .with_unit("{pool}")
        .with_description("Live pools, one per database target.")
        .with_callback(move |o| o.observe(count(pools.status().targets.len()), &[]))
        .build();
}

/// Records each checkout's wait in `db.client.connection.wait_time`, by pool and tenant.
fn wait_recorder(meter: &Meter) -> impl Fn(&TenantId, &str, Duration) + Send + Sync + 'static {
    let histogram = meter
        .f64_histogram(metric::DB_CLIENT_CONNECTION_WAIT_TIME)
        .with_unit("s")
        .with_description("The time it took to obtain an open connection from the pool.")
        .with_boundaries(WAIT_BUCKETS.to_vec())
        .build();
    let tenants = TenantSeries::new(super::TOP_TENANTS);
    move |tenant, pool, wait| {
        histogram.record(
            wait.as_secs_f64(),
            &[
                KeyValue::new(attribute::DB_CLIENT_CONNECTION_POOL_NAME, pool.to_owned()),
                tenants.attribute(tenant),
            ],
        );
    }
}

/// The `tenant.id` of a recorded measurement, from a bounded set: the first `top` tenants get
/// their own value, every later one [`OTHER_TENANTS`](super::OTHER_TENANTS).
struct TenantSeries {
    top: usize,
    named: Mutex<Vec<(TenantId, KeyValue)>>,
    other: KeyValue,
}

impl TenantSeries {
    fn new(top: usize) -> Self {
        Self {
            top,
            named: Mutex::new(Vec::with_capacity(top)),
            other: KeyValue::new(super::TENANT_ID, super::OTHER_TENANTS),
        }
    }

    fn attribute(&self, tenant: &TenantId) -> KeyValue {
        let Ok(mut named) = self.named.lock() else {
            return self.other.clone();
        };
        if let Some((_, value)) = named.iter().find(|(id, _)| id == tenant) {
            return value.clone();
        }
        if named.len() >= self.top {
            return self.other.clone();
        }
        let value = KeyValue::new(
            super::TENANT_ID,
            Value::from(Arc::<str>::from(tenant.as_str())),
        );
        named.push((tenant.clone(), value.clone()));
        value
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use super::*;

    #[test]
    fn waits_are_recorded_by_pool_and_a_bounded_set_of_tenants() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let record = wait_recorder(&provider.meter("parapet"));
        let id = |i: usize| TenantId::parse(&format!("t{i}")).unwrap();
        // Tenants t0..t11 each wait i ms, twice; t0 once more on a tenant's own database.
        for i in 0..super::super::TOP_TENANTS + 2 {
            for _ in 0..2 {
                record(&id(i), "shared", Duration::from_millis(i as u64));
            }
        }
        record(&id(0), "db.example:5432/acme", Duration::from_millis(30));
        provider.force_flush().unwrap();
        let metrics = exporter.get_finished_metrics().unwrap();
        let metric = metrics
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .find(|m| m.name() == "db.client.connection.wait_time")
            .expect("db.client.connection.wait_time exported");
        assert_eq!(metric.unit(), "s");
        let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
            panic!("an f64 histogram");
        };
        let mut points: HashMap<(String, String), (u64, f64)> = HashMap::new();
        for point in histogram.data_points() {
            let mut pool = String::new();
            let mut tenant = String::new();
            for kv in point.attributes() {
                match kv.key.as_str() {
                    "db.client.connection.pool.name" => pool = kv.value.to_string(),
                    "tenant.id" => tenant = kv.value.to_string(),
                    other => panic!("unexpected attribute {other}"),
                }
            }
            assert_eq!(point.bounds().collect::<Vec<_>>(), WAIT_BUCKETS.to_vec());
            points.insert((pool, tenant), (point.count(), point.sum()));
        }
        // Ten tenants of their own on the shared pool, the last two summed, t0's own database.
        assert_eq!(points.len(), 12, "{points:?}");
        let key = |pool: &str, tenant: &str| (pool.to_owned(), tenant.to_owned());
        let (count, sum) = points[&key("shared", "t3")];
        assert_eq!(count, 2);
        assert!((sum - 0.006).abs() < 1e-9, "{sum}");
        let (count, sum) = points[&key("shared", "_other")];
        assert_eq!(count, 4, "t10 and t11 twice each");
        assert!((sum - 0.042).abs() < 1e-9, "{sum}");
        assert_eq!(points[&key("db.example:5432/acme", "t0")].0, 1);
    }
}
