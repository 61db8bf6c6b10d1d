#!/usr/bin/env bash
# parapet's benchmark suite: builds in release, runs the scenarios side by side, and rewrites
# BENCHMARKS.md with the figures, the command, the machine and the date.
#
#   bash bench/run.sh            # every scenario, in one run
#   bash bench/run.sh pool       # only the named ones; the others keep their last figures
#   bash bench/run.sh telemetry  # criterion, in process: the telemetry layers' cost per request
#   bash bench/run.sh --report   # only rebuild BENCHMARKS.md from bench/results/
#
# Each scenario writes bench/results/<scenario>.md (stamped with its own date and command);
# BENCHMARKS.md is the machine header followed by every section in a fixed order. Scenarios start
# their own servers where they need to stop or reconfigure one, send traffic to 127.0.0.1 only,
# and every loop is bounded in count or time.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(pool cache-bytes telemetry)
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${all[@]}")
if [ "${scenarios[0]}" = "--report" ]; then
  scenarios=()
else
  cargo build --release --locked -p parapet-bench --bins
fi

stamp() {
  echo "_Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`bash bench/run.sh $1\` on $(nproc) cores, $(rustc --version | awk '{print $1, $2}')._"
}

for s in "${scenarios[@]+"${scenarios[@]}"}"; do
  tmp=$(mktemp)
  case "$s" in
    pool)
      {
        echo "## Pools (parapet-pool)"
        echo
        stamp pool
        echo
        ./target/release/pool
      } > "$tmp"
      ;;
    cache-bytes)
      {
        echo "## Local tier byte bound (parapet-cache)"
        echo
        stamp cache-bytes
        echo
        ./target/release/cache_bytes
      } > "$tmp"
      ;;
    telemetry)
      # Short criterion runs: the figures are medians of 100 samples each.
      cargo bench --locked -p parapet-bench --bench telemetry -- --warm-up-time 1 --measurement-time 3 >&2
      {
        echo "## Telemetry overhead (parapet-telemetry)"
        echo
        stamp telemetry
        echo
        echo "Criterion, in process (\`bench/benches/telemetry.rs\`): \`GET /leads/42\` on an axum route \`/leads/{id}\`"
        echo "answered \`200\`, on a current-thread runtime, through each layer. Every variant exports the same"
        echo "way: spans to a batch span processor in front of an exporter that drops them, metrics to a"
        echo "60 s periodic reader in front of one that drops them. parapet's variants run the subscriber"
        echo "\`TelemetryBuilder\` builds (tracing + tracing-opentelemetry); tower-http's \`TraceLayer\` runs"
        echo "through the same one, with its span and response event at INFO so they are exported too;"
        echo "opentelemetry-instrumentation-tower (OIT) calls the OpenTelemetry API from the global"
        echo "providers. Medians; the machine is shared, so compare the ratios of one run."
        echo
        ./target/release/telemetry_report
      } > "$tmp"
      ;;
    *) echo "unknown scenario: $s (known: ${all[*]})" >&2; rm -f "$tmp"; exit 2 ;;
  esac
  mv "$tmp" "bench/results/$s.md"
done

out=$(mktemp)
{
  echo "# Benchmarks"
  echo
  echo "Speed claims live here, measured side by side in one run with a command anyone can rerun;"
  echo "never in timed unit tests. Targets are goals to measure against, not assertions: the tables"
  echo "report what the run showed, misses included."
  echo
  echo "- Command: \`bash bench/run.sh\` (all scenarios) or \`bash bench/run.sh <scenario>...\`; each section says when and how it was last measured"
  echo "- Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); shared with other work, so absolute figures move between runs; ratios from one run are what to compare"
  echo "- Toolchain: $(rustc --version); PostgreSQL $(psql --version | awk '{print $3}')"
  for s in "${all[@]}"; do
    if [ -f "bench/results/$s.md" ]; then
      echo
      cat "bench/results/$s.md"
    fi
  done
} > "$out"
mv "$out" BENCHMARKS.md
echo "BENCHMARKS.md rewritten"
