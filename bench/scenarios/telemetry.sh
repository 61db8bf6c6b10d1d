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

# The same variants as whole processes under `perf stat`: CPU time per request on all threads
# (the batch span processor's included, which criterion's clock on the bench thread does not
# see) and the futex calls per request. Skipped where perf cannot count.
if ! perf stat -e task-clock,syscalls:sys_enter_futex true > /dev/null 2>&1; then
  echo
  echo "(The CPU-time table needs \`perf stat\` with the syscall tracepoints; not available on this machine.)"
  exit 0
fi
small=${TELEMETRY_SMALL:-20000} large=${TELEMETRY_LARGE:-220000} reps=3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# stat <variant> <N>: "<task-clock ms> <futex calls> <context switches>" of one run.
stat_run() {
  perf stat -x, -e task-clock,context-switches,syscalls:sys_enter_futex -o "$work/stat" \
    "$bench_bin/telemetry_layer" "$1" "$2" > /dev/null
  awk -F, '$3 == "task-clock" {t = $1} $3 == "context-switches" {c = $1} $3 == "syscalls:sys_enter_futex" {f = $1} END {print t, f, c}' "$work/stat"
}
declare -A cpu=() fx=() cs=()
variants=(bare parapet_spans_metrics oit_spans_metrics parapet_sampled_out oit_sampled_out)
for v in "${variants[@]}"; do
  ts=() fs=() cz=()
  for ((r = 0; r < reps; r++)); do
    read -r t0 f0 c0 <<< "$(stat_run "$v" "$small")"
    read -r t1 f1 c1 <<< "$(stat_run "$v" "$large")"
    ts+=("$(awk -v a="$t0" -v b="$t1" -v n=$((large - small)) 'BEGIN{printf "%.0f", (b - a) * 1e6 / n}')")
    fs+=("$(awk -v a="$f0" -v b="$f1" -v n=$((large - small)) 'BEGIN{printf "%.4f", (b - a) / n}')")
    cz+=("$(awk -v a="$c0" -v b="$c1" -v n=$((large - small)) 'BEGIN{printf "%.4f", (b - a) / n}')")
  done
  cpu[$v]=$(printf '%s\n' "${ts[@]}" | median)
  fx[$v]=$(printf '%s\n' "${fs[@]}" | median)
  cs[$v]=$(printf '%s\n' "${cz[@]}" | median)
  echo "telemetry: $v: ${ts[*]} ns of CPU per request" >&2
done
added() { echo $(($1 - ${cpu[bare]})); }
echo
echo "Whole processes, \`perf stat\` (\`bench/src/bin/telemetry_layer.rs\`: the same route, request, subscriber and dropping exporters, a current-thread runtime): CPU time per request on all the process's threads, the batch span processor's included, as (run of $large requests - run of $small) / $((large - small)), median of $reps; perf $(perf version 2> /dev/null | awk '{print $3}'):"
echo
echo "| variant | CPU ns per request | added vs bare | futex calls per request | context switches per request |"
echo "|---|---|---|---|---|"
declare -A vlabel=(
  [bare]="bare axum route (no layer)"
  [parapet_spans_metrics]="parapet \`TelemetryLayer\`, spans + metrics"
  [oit_spans_metrics]="opentelemetry-instrumentation-tower 0.19, spans + metrics"
  [parapet_sampled_out]="parapet \`TelemetryLayer\`, sampled out"
  [oit_sampled_out]="opentelemetry-instrumentation-tower 0.19, sampled out"
)
for v in "${variants[@]}"; do
  a="—"
  [ "$v" = bare ] || a="+$(added "${cpu[$v]}")"
  echo "| ${vlabel[$v]} | ${cpu[$v]} | $a | ${fx[$v]} | ${cs[$v]} |"
done
echo
r1=$(awk -v a="$(added "${cpu[parapet_spans_metrics]}")" -v b="$(added "${cpu[oit_spans_metrics]}")" 'BEGIN{printf "%.2f", a / b}')
r2=$(awk -v a="$(added "${cpu[parapet_sampled_out]}")" -v b="$(added "${cpu[oit_sampled_out]}")" 'BEGIN{printf "%.2f", a / b}')
echo "parapet's added CPU time against OIT's: spans + metrics **${r1}x**, sampled out **${r2}x** (target ≤ 1.0x)."
