#!/usr/bin/env bash
# cache: a cache hit in process (criterion), against the bare handler and tower-http-cache.
# bench/benches/cache.rs: parapet's CacheLayer with and without TenantLayer; the table comes from
# criterion's estimates (bench/src/bin/cache_report.rs); then the instructions per request of the
# same variants under callgrind (bench/src/bin/cache_hits.rs). Prints the markdown section.
# Shorter runs: CACHE_HITS (20000 requests per count).
source "$(dirname "$0")/../lib.sh"

# Short criterion runs: the figures are medians of 100 samples each.
cargo bench --locked -p parapet-bench --bench cache -- --warm-up-time 1 --measurement-time 3 >&2
heading cache "Cache hit in process (parapet-cache)"
cat <<'TEXT'
Criterion, in process (`bench/benches/cache.rs`): `GET /api/item` answered with the same 86-byte
JSON body and `Cache-Control: public, max-age=60`, on a current-thread runtime, the caches filled
first; the bench fails if the handler runs during a cached variant's measurement. Medians;
the machine is shared, so compare the ratios of one run. The same comparison over loopback
with wrk, against nginx and Varnish, is the stack scenario.

TEXT
"$bench_bin/cache_report"

# Instructions per request (callgrind), the repeatable figure beside criterion's times: the
# same handler and caches in bench/src/bin/cache_hits.rs, N requests minus none.
need valgrind -- valgrind
hits=${CACHE_HITS:-20000}
# total <mode> <n>: the instructions of `cache_hits <mode> <n>`, the whole process.
total() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bench_bin/cache_hits" "$1" "$2" 2>&1 |
    awk '/Collected :/{print $NF}'
}
declare -A per=()
for mode in bare single tenant thc; do
  a=$(total "$mode" 0) b=$(total "$mode" "$hits")
  if [ -z "$a" ] || [ -z "$b" ]; then
    echo "cache: callgrind counted nothing for cache_hits $mode" >&2
    exit 1
  fi
  per[$mode]=$(((b - a) / hits))
  echo "cache: $mode: ${per[$mode]} instructions per request" >&2
done
echo
echo "Instructions per request (callgrind), \`valgrind --tool=callgrind $bench_bin/cache_hits <mode> N\` with N = $hits and N = 0 (the fill and a warm-up hit), the difference divided by N; the same handler and caches as the criterion bench, on a current-thread runtime (\`bench/src/bin/cache_hits.rs\`; it fails if the handler runs during the hits):"
echo
echo "| variant | instructions per request | vs bare | tower-http-cache's count / this one |"
echo "|---|---|---|---|"
declare -A what=(
  [bare]="bare axum handler (runs every time)"
  [single]="parapet \`CacheLayer\`, local-tier hit (single-tenant)"
  [tenant]="\`TenantLayer\` + parapet \`CacheLayer\`, local-tier hit"
  [thc]="tower-http-cache 0.6.1 \`CacheLayer\`, in-memory hit"
)
for mode in bare single tenant thc; do
  echo "| ${what[$mode]} | ${per[$mode]} | $(awk -v a="${per[$mode]}" -v b="${per[bare]}" 'BEGIN{printf "%.2fx", a / b}') | $(awk -v a="${per[thc]}" -v b="${per[$mode]}" 'BEGIN{printf "%.2fx", a / b}') |"
done
