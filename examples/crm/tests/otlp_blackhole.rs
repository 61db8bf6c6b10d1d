//! The demo with telemetry on and its OTLP collector black-holed: a listener that accepts the
//! exporter's connections and never answers. Requests are unaffected, and the spans waiting
//! for export stay bounded (the SDK's batch queue drops what does not fit), which the test
//! reads from the process's resident memory.
//!
//! A file of its own, so that no other test of the same process allocates while the resident
//! memory is compared.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::{Router, body::Body};
use example_crm::app;
use http::{Request, StatusCode, header};
use parapet::telemetry::TelemetryBuilder;
use parapet_testkit::unique_prefix;
use parapet_tests::TestDb;

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// A user agent of 4 KiB: every request span carries it, so spans kept without bound would
/// show in the resident memory (20,000 of them are over 80 MiB; with a receiver that keeps
/// what it is sent instead of the black hole, this test measured 111 MiB of growth).
fn agent() -> String {
    format!("chaos-client/{}", "x".repeat(4096))
}

/// `count` cached reads over `workers` concurrent tasks; every answer must be a 200. Returns
/// the slowest answer's time.
async fn reads(router: &Router, count: usize, workers: usize) -> Duration {
    let agent = Arc::new(agent());
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (router, agent) = (router.clone(), agent.clone());
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for i in (w..count).step_by(workers) {
                    let tenant = ["acme", "globex"][i % 2];
                    let uri = support::LISTS[i % support::LISTS.len()];
                    let request = Request::get(uri)
                        .header("x-tenant-id", tenant)
                        .header(header::USER_AGENT, agent.as_str())
                        .body(Body::empty())
                        .unwrap();
                    let sent = Instant::now();
                    let res = support::send(&router, request).await;
                    let took = sent.elapsed();
                    assert_eq!(res.status, StatusCode::OK, "{uri}: {}", res.text());
                    slowest = slowest.max(took);
                }
                slowest
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.unwrap());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_collector_neither_slows_requests_nor_grows_memory() {
    let (addr, accepted) = parapet_testkit::otlp::black_hole();
    let (subscriber, guard) = TelemetryBuilder::from_env_map([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000".to_owned()),
        ("OTEL_SERVICE_NAME", "crm-chaos".to_owned()),
    ])
    .log_output(false)
    .build()
    .unwrap();
    // The only test of this process: the spans of every worker thread go to this subscriber.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let db = TestDb::create("crm_chaos_otlp").await;
    let prefix = unique_prefix("crm-otlp");
    let vars = [
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", parapet_testkit::redis_url()),
        ("PARAPET_CACHE_PREFIX", prefix),
        ("PARAPET_TELEMETRY", "on".to_owned()),
        // 25,000 reads as fast as they go would spend globex's free plan: this test is about
        // the exporter, not rate limits.
        ("PARAPET_QUOTA", "off".to_owned()),
    ];
    let demo = app::build(vars.map(|(k, v)| (k.to_owned(), v)), 50)
        .await
        .unwrap_or_else(|e| panic!("the demo did not start: {e}"));

    // Warm: the tenants, the pool's connections, the cached lists.
    for tenant in ["acme", "globex"] {
        for uri in support::LISTS {
            let res = support::send(&demo.router, support::get(tenant, uri)).await;
            assert_eq!(res.status, StatusCode::OK, "{uri}: {}", res.text());
        }
    }
    // Enough spans to fill the batch queue (2,048) and start exports that hang.
    let first = reads(&demo.router, 5_000, 8).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the exporter never connected to the collector"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = resident();
    let started = Instant::now();
    let slowest = reads(&demo.router, 20_000, 8).await.max(first);
    let after = resident();
    let took = started.elapsed();

    let growth = after.saturating_sub(before);
    assert!(
        growth < 40 << 20,
        "20,000 requests of 4 KiB spans grew the resident memory by {} MiB ({} → {} MiB) \
         while the collector was black-holed",
        growth >> 20,
        before >> 20,
        after >> 20
    );
    eprintln!(
        "black-holed collector: 20,000 requests in {took:?}, slowest {slowest:?}, resident \
         {} → {} MiB, {} connections to the collector",
        before >> 20,
        after >> 20,
        accepted.load(Ordering::Relaxed)
    );
    // An export to the black hole hangs for its whole timeout (10 s): a request that waited
    // for one would take that long. (Answers of a second or more show up here with a healthy
    // collector too, on a busy machine: the bound is for the hang only.)
    assert!(
        slowest < Duration::from_secs(8),
        "the slowest request took {slowest:?}"
    );
    // Shutting down gives up on the collector within its bounds.
    let started = Instant::now();
    let _ = tokio::task::block_in_place(|| guard.shutdown());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "shutdown took {:?}",
        started.elapsed()
    );
}
