//! The counters of a parapet-quota [`QuotaLayer`](parapet_quota::QuotaLayer) as observable
//! instruments.

use opentelemetry::{KeyValue, metrics::Meter};
use parapet_quota::{QuotaLayer, QuotaStats};

use super::{OTHER_TENANTS, TENANT_ID};

/// The attribute naming where a decision was made: `shared` (Redis), `local` (no Redis
/// configured) or `fallback` (Redis configured but not answering: the limit is per instance).
pub const QUOTA_SOURCE: &str = "quota.source";

/// Registers observable instruments that read [`QuotaLayer::stats`] at every collection.
///
/// | instrument | kind, unit | attributes |
/// |---|---|---|
/// | `parapet.quota.decisions` | counter, `{request}` | `quota.source` = `shared` / `local` / `fallback` |
/// | `parapet.quota.throttled` | counter, `{request}` | `tenant.id`: the tenant, or `_other` |
/// | `parapet.quota.refunds` | counter, `{request}` | |
/// | `parapet.quota.remembered` | counter, `{request}` | refusals answered without a Redis round trip, Redis having refused the tenant until a later time |
/// | `parapet.quota.held` | counter, `{request}` | refusals answered late by refusal pacing |
/// | `parapet.quota.held.full` | counter, `{request}` | refusals answered at once although pacing is on: as many were held already as the bounds allow |
/// | `parapet.quota.held.active` | gauge, `{request}` | refusals being held now |
/// | `parapet.quota.shared` | gauge, `1` | 1 while Redis decides (one limit for every instance), 0 while each instance decides alone; absent without Redis |
///
/// `tenant.id` is bounded: at most `top_tenants` tenants (the builder's setting, 10 by
/// default; the first throttled since start) get a series of their own, every other tenant is
/// counted as `_other`, so a flood of tenants cannot grow the number of series.
///
/// # Example
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// use opentelemetry_sdk::metrics::SdkMeterProvider;
/// use parapet_quota::{QuotaLayer, Rate};
///
/// let quota = QuotaLayer::builder().plan("free", Rate::per_second(20)).build()?;
/// let provider = SdkMeterProvider::default();
/// parapet_telemetry::metrics::observe_quota(&provider.meter("parapet"), quota.clone());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn observe_quota(meter: &Meter, quota: QuotaLayer) {
    let layer = quota.clone();
    meter
        .u64_observable_counter("parapet.quota.decisions")
        .with_unit("{request}")
        .with_description("Quota decisions, by where they were made.")
        .with_callback(move |o| {
            let s = layer.stats();
            let shared = s.shared_decisions;
            let fallback = s.fallbacks;
            let local = s.local_decisions.saturating_sub(fallback);
            for (value, source) in [(shared, "shared"), (local, "local"), (fallback, "fallback")] {
                o.observe(value, &[KeyValue::new(QUOTA_SOURCE, source)]);
            }
        })
        .build();
    let layer = quota.clone();
    meter
        .u64_observable_counter("parapet.quota.throttled")
        .with_unit("{request}")
        .with_description("Requests refused with 429, by tenant (a bounded set, then _other).")
        .with_callback(move |o| {
            let s = layer.stats();
            for (tenant, count) in &s.throttled_by_tenant {
                o.observe(*count, &[KeyValue::new(TENANT_ID, tenant.to_string())]);
            }
            o.observe(
                s.throttled_other,
                &[KeyValue::new(TENANT_ID, OTHER_TENANTS)],
            );
        })
        .build();
    // One counter each, without attributes.
    type Read = fn(&QuotaStats) -> u64;
    let counters: [(&str, &str, Read); 4] = [
        (
            "parapet.quota.refunds",
            "Cache hits that gave back part of their charge.",
            |s| s.refunds,
        ),
        (
            "parapet.quota.remembered",
            "Refusals answered without a Redis round trip (Redis refused until later).",
            |s| s.remembered_refusals,
        ),
        (
            "parapet.quota.held",
            "Refusals answered late by refusal pacing.",
            |s| s.held_refusals,
        ),
        (
            "parapet.quota.held.full",
            "Refusals answered at once because as many were held as allowed.",
            |s| s.held_full,
        ),
    ];
    for (name, description, read) in counters {
        let layer = quota.clone();
        meter
            .u64_observable_counter(name)
            .with_unit("{request}")
            .with_description(description)
            .with_callback(move |o| o.observe(read(&layer.stats()), &[]))
            .build();
    }
    let layer = quota.clone();
    meter
        .u64_observable_gauge("parapet.quota.held.active")
        .with_unit("{request}")
        .with_description("Refusals being held now by refusal pacing.")
        .with_callback(move |o| o.observe(layer.stats().held_now, &[]))
        .build();
    meter
        .u64_observable_gauge("parapet.quota.shared")
        .with_unit("1")
        .with_description(
            "Whether Redis decides (1: one limit for every instance) or each instance alone (0).",
        )
        .with_callback(move |o| {
            if let Some(shared) = quota.stats().shared {
                o.observe(u64::from(shared), &[]);
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use parapet_quota::Rate;

    use super::*;

    #[test]
    fn throttled_requests_by_tenant_are_bounded() {
        let quota = QuotaLayer::builder()
            .plan("free", Rate::per_second(1))
            .top_tenants(1)
            .build()
            .unwrap();
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        observe_quota(&provider.meter("parapet"), quota);
        provider.force_flush().unwrap();
        let metrics: Vec<ResourceMetrics> = exporter.get_finished_metrics().unwrap();
        let names: Vec<String> = metrics
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .map(|m| m.name().to_owned())
            .collect();
        for name in [
            "parapet.quota.decisions",
            "parapet.quota.throttled",
            "parapet.quota.refunds",
            "parapet.quota.remembered",
            "parapet.quota.held",
            "parapet.quota.held.full",
            "parapet.quota.held.active",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        let throttled = metrics
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .find(|m| m.name() == "parapet.quota.throttled")
            .unwrap();
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = throttled.data() else {
            panic!("a u64 sum");
        };
        assert_eq!(
            sum.data_points().count(),
            1,
            "only `other` before any throttle"
        );
    }
}
