//! Shutdown with a hung collector: a listener that accepts the exporter's connections and never
//! answers, for OTLP over HTTP and over gRPC. Exports are in flight (a full span batch, a metric
//! export) when the guard shuts down; the shutdown must return within a bound, and nothing may
//! panic, neither then nor when the hung exports' own timeouts (10 s) expire afterwards.
//!
//! A file of its own: the test counts panics with a process-wide panic hook.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::metrics::MeterProvider as _;
use parapet_telemetry::TelemetryBuilder;

/// Builds telemetry against a black hole, starts hung exports, shuts down; returns how long the
/// shutdown took.
fn shut_down_against_black_hole(protocol: &str) -> Duration {
    let (addr, accepted) = parapet_testkit::otlp::black_hole();
    let (subscriber, guard) = TelemetryBuilder::from_env_map([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100".to_owned()),
        ("OTEL_SERVICE_NAME", "hung-collector".to_owned()),
    ])
    .log_output(false)
    .build()
    .unwrap();
    let counter = guard
        .meter_provider()
        .meter("hung-collector")
        .u64_counter("requests")
        .build();
    counter.add(1, &[]);
    tracing::subscriber::with_default(subscriber, || {
        // More than a batch (512): the batch processor exports at once, and the export hangs.
        for i in 0..1_500 {
            tracing::info_span!("request", i).in_scope(|| {});
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::Relaxed) < 2 {
        assert!(
            Instant::now() < deadline,
            "{protocol}: the exporters did not connect to the collector ({} connections)",
            accepted.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let result = guard.shutdown();
    let took = started.elapsed();
    eprintln!("{protocol}: shutdown with a hung collector took {took:?}: {result:?}");
    took
}

#[test]
fn shutdown_with_a_hung_collector_is_bounded_and_never_panics() {
    let panics = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        seen.lock().unwrap().push(format!("{thread}: {info}"));
        previous(info);
    }));

    let started = Instant::now();
    let runs: Vec<_> = ["http/protobuf", "grpc"]
        .into_iter()
        .map(|protocol| std::thread::spawn(move || shut_down_against_black_hole(protocol)))
        .collect();
    for run in runs {
        let took = run.join().expect("the shutdown panicked");
        assert!(
            took < Duration::from_secs(15),
            "shutdown took {took:?} with a hung collector"
        );
    }
    // The hung exports time out after 10 s (the default OTLP timeout): wait past that, so an
    // export thread that wakes up on a stopped runtime would panic within the test.
    let settle = Duration::from_secs(13).saturating_sub(started.elapsed());
    std::thread::sleep(settle.max(Duration::from_secs(3)));
    let panics = panics.lock().unwrap();
    assert!(
        panics.is_empty(),
        "panics during or after shutdown: {panics:#?}"
    );
}
