#!/usr/bin/env bash
# cache: a cache hit in process (criterion), against the bare handler and tower-http-cache.
# bench/benches/cache.rs: parapet's CacheLayer with and without TenantLayer; the table comes from
# criterion's estimates (bench/src/bin/cache_report.rs). Prints the markdown section.
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
