//! The status of parapet-pool's [`TenantPools`] as observable instruments.

use opentelemetry::{KeyValue, metrics::Meter};
use opentelemetry_semantic_conventions::{attribute, metric};
use parapet_pool::TenantPools;

/// Registers observable instruments that read [`TenantPools::status`] at every collection.
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

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
