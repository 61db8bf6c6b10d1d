#!/usr/bin/env bash
# telemetry: the telemetry layers' cost per request (criterion), against OIT and TraceLayer.
# bench/benches/telemetry.rs: parapet's TelemetryLayer against opentelemetry-instrumentation-tower
# (OIT) and tower-http's TraceLayer; the table comes from criterion's estimates
# (bench/src/bin/telemetry_report.rs). Prints the markdown section.
source "$(dirname "$0")/../lib.sh"

# Short criterion runs: the figures are medians of 100 samples each.
cargo bench --locked -p parapet-bench --bench telemetry -- --warm-up-time 1 --measurement-time 3 >&2
heading telemetry "Telemetry overhead (parapet-telemetry)"
cat <<'TEXT'
Criterion, in process (`bench/benches/telemetry.rs`): `GET /leads/42` on an axum route `/leads/{id}`
answered `200`, on a current-thread runtime, through each layer. Every variant exports the same
way: spans to a batch span processor in front of an exporter that drops them, metrics to a
60 s periodic reader in front of one that drops them. parapet's variants run the subscriber
`TelemetryBuilder` builds (the server span made with the OpenTelemetry API, handler spans through
tracing-opentelemetry); tower-http's `TraceLayer` runs through the same subscriber, with its span
and response event at INFO so they are exported too;
opentelemetry-instrumentation-tower (OIT) calls the OpenTelemetry API from the global
providers. Medians; the machine is shared, so compare the ratios of one run.

TEXT
"$bench_bin/telemetry_report"
