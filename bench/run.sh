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

all=(pool stack cache cache-bytes telemetry)
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${all[@]}")
if [ "${scenarios[0]}" = "--report" ]; then
  scenarios=()
else
  cargo build --release --locked -p parapet-bench --bins
fi

# Stack cost (issue 6, scenario 2): wrk against each variant of bench/src/bin/stack.rs (one server
# process per variant), nginx proxy_cache and Varnish in front of the bare server. Prints the
# markdown section; fails loudly when a variant does not answer the way it must be measured.
stack_scenario() {
  local tool
  for tool in wrk nginx varnishd curl redis-cli; do
    if ! command -v "$tool" >/dev/null; then
      apt-get update -qq >&2 && apt-get install -y -qq wrk nginx varnish curl redis-tools >&2
      break
    fi
  done
  local bin=./target/release/stack threads=2 conns=64 secs=${STACK_SECS:-10} warm=2 tenant=acme workers=2
  local rounds=${STACK_ROUNDS:-3}
  work=$(mktemp -d)
  prefix="parapet:bench:stack:$$:$(date +%s):"
  pids=()
  order=()
  declare -gA errs=() label=()
  addr=""
  # shellcheck disable=SC2317
  stack_cleanup() {
    local p k
    for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    redis-cli --scan --pattern "${prefix}*" | while read -r k; do redis-cli del "$k" >/dev/null; done
    rm -rf "$work"
  }
  trap 'stack_cleanup' EXIT
  cat > "$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
LUA
  # start <name> <variant> [flags]: starts `stack serve` and sets $addr to where it listens.
  start() {
    local name=$1 i
    shift
    "$bin" serve "$@" --workers "$workers" > "$work/$name.log" 2>&1 &
    pids+=($!)
    for i in $(seq 1 300); do
      addr=$(awk '/^listening /{print $2; exit}' "$work/$name.log")
      [ -n "$addr" ] && return 0
      kill -0 "${pids[-1]}" 2>/dev/null || break
      sleep 0.1
    done
    echo "stack: the $name server did not start:" >&2
    cat "$work/$name.log" >&2
    exit 1
  }
  wait_port() {
    local i
    for i in $(seq 1 100); do
      curl -s -o /dev/null "http://$1/" && return 0
      sleep 0.1
    done
    return 1
  }
  # check <name> <url> <header> <regex>: one request; status 200 and the header matching, or
  # the scenario stops: a misconfigured variant must not silently measure the wrong path.
  check() {
    local head status value
    head=$(curl -s -o /dev/null -D - -H "X-Tenant-Id: $tenant" "$2" | tr -d '\r')
    status=$(printf '%s\n' "$head" | awk 'NR==1{print $2}')
    value=$(printf '%s\n' "$head" | awk -v h="$3" \
      'index(tolower($0), tolower(h) ": ") == 1 {print substr($0, length(h) + 3); exit}')
    if [ "$status" != 200 ] || ! [[ "$value" =~ $4 ]]; then
      echo "stack: $1 is misconfigured: status '$status', $3: '$value' (expected /$4/)" >&2
      exit 1
    fi
    [ "${round:-0}" -le 1 ] && echo "- $1: \`$3: $value\`" >> "$work/checks"
    return 0
  }
  # measure <name>: a warm-up run, then the measured one; adds this round's figures.
  measure() {
    local out n us q50 q99 e r
    wrk -t"$threads" -c"$conns" -d"${warm}s" -H "X-Tenant-Id: $tenant" "${urls[$1]}" > /dev/null
    out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 2s --latency \
      -H "X-Tenant-Id: $tenant" -s "$work/report.lua" "${urls[$1]}")
    read -r _ n us q50 q99 e <<< "$(grep '^WRK ' <<< "$out")"
    r=$(awk -v n="$n" -v us="$us" 'BEGIN{printf "%.0f", n / (us / 1e6)}')
    rps_all[$1]+="$r "
    p50_all[$1]+="$q50 "
    p99_all[$1]+="$q99 "
    errs[$1]=$(( ${errs[$1]:-0} + e ))
    echo "stack: round $round, ${label[$1]}: $r requests/s, p99 $((q99 / 1000)) ms, $e errors" >&2
  }
  # verify <name>: asserts, with one request (after one that may refill an expired entry), that
  # the variant answers from the path it is meant to measure.
  verify() {
    local u=${urls[$1]} n
    case "$1" in
      bare | redis-get) check "$1" "$u" cache-control '^public, max-age=60$' ;;
      miss) check miss "$u" cache-status '^parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store$' ;;
      hit | redis-hit)
        curl -s -o /dev/null -H "X-Tenant-Id: $tenant" "$u"
        check "$1" "$u" cache-status "^parapet; hit; ttl=[0-9]+; detail=$([ "$1" = hit ] && echo local || echo redis)\$"
        ;;
      nginx)
        curl -s -o /dev/null "$u"
        check nginx "$u" cache-status '^nginx; HIT$'
        ;;
      varnish)
        curl -s -o /dev/null "$u"
        # A hit names two transactions: this request's and the one that fetched the object.
        check varnish "$u" x-varnish '^[0-9]+ [0-9]+$'
        ;;
      thc)
        # tower-http-cache sets no header on a hit: the origin numbers its calls in
        # x-origin-call, and a hit replays the number of the call that filled the entry.
        n=$(curl -s -o /dev/null -D - "$u" | tr -d '\r' | awk 'tolower($1) == "x-origin-call:" {print $2}')
        check thc "$u" x-origin-call "^${n:-none}\$"
        ;;
    esac
  }
  median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
  # counters <name>: the cache counters and exported spans a server printed when stopped.
  counters() {
    grep -E '^(cache-stats|spans-exported|origin-calls) ' "$work/$1.log" | tr '\n' ' ' | sed 's/ $//'
  }
  declare -gA urls=() rps_all=() p50_all=() p99_all=()
  label=(
    [bare]="bare axum"
    [miss]="full stack, cache miss (handler says \`no-store\`)"
    [hit]="full stack, local-tier hit"
    [nginx]="nginx proxy_cache in front of bare axum"
    [varnish]="Varnish in front of bare axum"
    [redis-hit]="full stack, Redis-tier hit"
    [redis-get]="bare axum + one Redis \`GET\`"
    [thc]="tower-http-cache 0.5, in-memory hit (no other layer)"
  )
  local origin key size round name

  # Every server is started once and stays up (idle ones cost nothing); the variants are then
  # measured in turn, in $rounds rounds, and each row reports the median round.
  start bare bare
  origin=$addr
  urls[bare]="http://$addr/api/item"
  check bare "${urls[bare]}" content-type '^application/json$'
  body_bytes=$(curl -s "${urls[bare]}" | wc -c)
  start miss miss --prefix "${prefix}miss:"
  urls[miss]="http://$addr/api/item"
  start hit hit --prefix "${prefix}hit:"
  urls[hit]="http://$addr/api/item"
  check hit "${urls[hit]}" cache-status '^parapet; fwd=uri-miss; fwd-status=200; ttl=[0-9]+; stored$'
  start redis-hit redis-hit --prefix "${prefix}redis:"
  urls[redis-hit]="http://$addr/api/item"
  check redis-hit "${urls[redis-hit]}" cache-status '^parapet; fwd=uri-miss; fwd-status=200; ttl=[0-9]+; stored$'
  key=$(redis-cli --scan --pattern "${prefix}redis:*" | head -1)
  size=$(redis-cli strlen "$key")
  label[redis-get]+=" of ${size} B"
  start redis-get redis-get --prefix "${prefix}get:" --value-size "$size"
  urls[redis-get]="http://$addr/api/item"
  start thc thc-hit
  urls[thc]="http://$addr/api/item"

  # nginx proxy_cache in front of the bare server (run as the current user, in a temp dir).
  local nport
  nport=$("$bin" free-port)
  mkdir -p "$work/nginx/logs" "$work/nginx/cache"
  {
    [ "$(id -u)" = 0 ] && echo "user root;"
    cat <<NGINX
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  proxy_cache_path $work/nginx/cache keys_zone=stack:10m max_size=64m;
  upstream origin { server $origin; keepalive 32; }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache stack;
      proxy_cache_valid 200 60s;
      add_header Cache-Status "nginx; \$upstream_cache_status";
    }
  }
}
NGINX
  } > "$work/nginx/nginx.conf"
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" > "$work/nginx.log" 2>&1 &
  pids+=($!)
  if ! wait_port "127.0.0.1:$nport"; then
    echo "stack: nginx did not start:" >&2
    cat "$work/nginx.log" "$work/nginx/logs/error.log" >&2
    exit 1
  fi
  urls[nginx]="http://127.0.0.1:$nport/api/item"

  # Varnish in front of the bare server.
  local vport varnish_note=""
  vport=$("$bin" free-port)
  varnishd -F -a "127.0.0.1:$vport" -b "$origin" -s malloc,64m -n "$work/varnish" \
    > "$work/varnish.log" 2>&1 &
  pids+=($!)
  order=(bare miss hit nginx)
  if wait_port "127.0.0.1:$vport"; then
    urls[varnish]="http://127.0.0.1:$vport/api/item"
    order+=(varnish)
  else
    varnish_note="Varnish could not run here, so it has no row: $(tail -3 "$work/varnish.log" | tr '\n' ' ')"
  fi
  order+=(redis-hit redis-get thc)

  for round in $(seq 1 "$rounds"); do
    for name in "${order[@]}"; do
      verify "$name"
      measure "$name"
    done
  done
  # The servers print their counters when stopped.
  for name in "${!pids[@]}"; do kill "${pids[$name]}" 2>/dev/null || true; done
  for name in "${!pids[@]}"; do wait "${pids[$name]}" 2>/dev/null || true; done
  pids=()

  # The table.
  declare -gA rps=() p50=() p99=()
  for name in "${order[@]}"; do
    rps[$name]=$(median <<< "${rps_all[$name]}")
    p50[$name]=$(median <<< "${p50_all[$name]}" | awk '{printf "%.2f ms", $1 / 1000}')
    p99[$name]=$(median <<< "${p99_all[$name]}" | awk '{printf "%.2f ms", $1 / 1000}')
  done
  local base=${rps[bare]}
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}'; }
  meets() { awk -v r="$1" -v t="$2" 'BEGIN{print (r >= t ? "yes" : "**no**")}'; }
  echo "| variant | requests/s (median of $rounds) | rounds | p50 | p99 | errors | vs bare axum | target | met |"
  echo "|---|---|---|---|---|---|---|---|---|"
  local r target met rn rg
  for name in "${order[@]}"; do
    r=$(ratio "${rps[$name]}" "$base")
    target="" met=""
    case "$name" in
      miss) target="≥ 0.8x bare"; met=$(meets "$r" 0.8) ;;
      hit)
        rn=$(ratio "${rps[hit]}" "${rps[nginx]:-0}")
        target="≥ 0.95x bare; ≥ 1.6x nginx (${rn}x)"
        met="$(meets "$r" 0.95) / $(meets "$rn" 1.6)"
        ;;
      redis-hit)
        rg=$(ratio "${rps[redis-hit]}" "${rps[redis-get]:-0}")
        target="≥ 0.9x the Redis-GET handler (${rg}x)"
        met=$(meets "$rg" 0.9)
        ;;
    esac
    echo "| ${label[$name]} | ${rps[$name]} | $(echo "${rps_all[$name]}" | sed 's/ $//; s/ /, /g') | ${p50[$name]} | ${p99[$name]} | ${errs[$name]} | ${r}x | $target | $met |"
  done
  echo
  echo "How it was run:"
  echo
  echo "- \`wrk -t$threads -c$conns -d${secs}s --timeout 2s --latency -H 'X-Tenant-Id: $tenant'\` per variant after a ${warm} s warm-up with the same settings, one variant at a time, \`GET /api/item\` on 127.0.0.1, in $rounds rounds over all the variants (every server stays up for the whole run); each row is the median round, the \`rounds\` column every round's requests/s, so the noise of the shared machine is in view; wrk sends \`Host: 127.0.0.1:<port>\`. The same header goes to every variant (only the stack reads it). Errors are wrk's socket errors (connect, read, write, timeout) plus responses with a status ≥ 400 (wrk's count: it does not count 1xx/3xx, which this handler never sends)."
  echo "- wrk and the servers share the machine's $(nproc) cores: wrk runs $threads threads; each axum server is its own process with a Tokio runtime of $workers worker threads (\`stack serve <variant> --workers $workers\`); nginx runs \`worker_processes auto\` ($(nproc) workers, the same count as Tokio's), Varnish its default thread pools (2 pools, at least 100 threads each, mostly idle); Redis (one thread) and the other work on this machine share them too."
  echo "- Every variant answers the same ${body_bytes}-byte JSON body. The stack is \`TelemetryLayer\` → \`TenantLayer\` (\`StaticDirectory\` with tenant \`acme\`, \`HeaderResolver\`: \`X-Tenant-Id\`) → \`CacheLayer\` → \`PoolLayer\` (\`TenantPools\` on \`postgres://postgres@127.0.0.1:5432/postgres\`; the handler takes no \`Db\`, so nothing is checked out and PostgreSQL is not measured)."
  echo "- Telemetry: the subscriber and providers \`parapet_telemetry::TelemetryBuilder\` builds (as \`init()\`), sampler always-on, a \`BatchSpanProcessor\` whose exporter counts and discards the spans (so recording, batching and the export thread all run; only the network is left out), a periodic metric reader with a discarding exporter, logs off (\`RUST_LOG=warn\`)."
  echo "- Cache miss: the handler answers \`Cache-Control: no-store\`, so every request takes the cache's whole miss path (tenant-scoped key, local-tier lookup, the per-key coalescing of misses, forwarding, the storability check) and only the store is skipped: \`no-store\` rather than \`private\` because a shared cache refuses both the same way, and \`no-store\` is what a real no-cache endpoint sends. A first-time miss of a cacheable response would also buffer and store the body."
  echo "- Local-tier hit: \`CacheLayer::builder().local(64 MiB)\`; Redis-tier hit: \`CacheLayer::builder().redis(..)\` and no local tier, keys under a prefix unique to the run (\`${prefix}\`, deleted afterwards). The Redis-GET handler reads one value of the size of the entry the cache stored (\`STRLEN\` of its key: $size bytes) through a \`redis::aio::ConnectionManager\`, then answers like the bare handler."
  echo "- nginx $(nginx -v 2>&1 | sed 's|.*nginx/||'): config generated into a temp dir, \`proxy_cache_path\` there, \`proxy_cache_valid 200 60s\`, keepalive to the origin, \`access_log off\`, run with \`nginx -p <tmp> -c <tmp>/nginx.conf\` (\`daemon off\`) and stopped afterwards. Varnish $(varnishd -V 2>&1 | grep -o 'varnish-[0-9.]*' | head -1 | sed 's/varnish-//'): \`varnishd -F -a 127.0.0.1:<port> -b <bare axum> -s malloc,64m -n <tmp>\` (built-in VCL; the origin's \`max-age=60\` sets the TTL), stopped afterwards."
  [ -n "$varnish_note" ] && echo "- $varnish_note"
  echo "- tower-http-cache 0.5 (\`default-features = false, features = [\"in-memory\"]\`: its moka backend), \`CacheLayer::builder(InMemoryBackend::new(10_000)).ttl(60 s)\`, defaults otherwise, directly around the handler with no other layer (it has no tenant scoping to configure). Adding it to the benchmark crate doubled no heavy dependency: \`cargo tree -d\` gains only \`hashbrown\` 0.14 (through \`dashmap\` 6) next to 0.17; axum, hyper, redis and moka stay single. It sets no header on a hit, so its origin numbers its calls in \`x-origin-call\` and the check expects the number of the call that filled the entry."
  echo "- Before every measured run (each round) one request checked the variant and the scenario stops if it is wrong: status 200 and, on hits, after one request that refills an entry that may have expired since the last round (entries live 60 s), a hit. The answers before the first round:"
  echo
  cat "$work/checks"
  echo
  echo "- Server-side counters when the servers stopped, over all rounds and checks (a hit row has one miss per expiry of its 60 s entry; \`spans-exported\` is within a few hundred of the requests either way: a request cut off when wrk stops has a span but may not reach the cache's counters, and the SDK's batch processor drops spans when its 2,048-span queue is full):"
  echo
  for name in miss hit redis-hit thc; do
    echo "  - $name: \`$(counters "$name")\`"
  done
  cat <<'PROFILE'

### Where the stack's time goes (callgrind, 2026-11-26)

A profile of the server side, not re-measured by this script: `valgrind --tool=callgrind
./target/release/stack serve <variant>` driven by `wrk -t1 -c8 -d15s` (release build,
`debug = "line-tables-only"`). Instructions per request, server process only (start-up included,
under 3 %): bare axum ~14,300; full stack local-tier hit ~76,300 (5.3x); full stack no-store miss
~83,300 (5.8x). Shares of the hit profile's instructions (inclusive, so nested items overlap):

- **Telemetry, ~40 %** of the hit's instructions (about half of what the stack adds):
  `crates/parapet-telemetry/src/span.rs:46-111` `request_span` (15 %): a `format!` for the span
  name, an `info_span!` with 19 fields, then up to six separate `span.record` calls, each one a trip
  through the layered subscriber (`Span::record_all` 12 % of the total, in which
  tracing-opentelemetry's `on_record` turns every value into an owned `KeyValue`); the metrics at
  `layer.rs:255-256` and `layer.rs:347` (`http.server.active_requests` added at start and end and
  the duration histogram, each hashing its attribute set: ~5 %); span close and `SpanData` drop
  (~4 %); the batch exporter thread (~4 %).
- **Tenant, ~12 %** own: a moka lookup of the tenant per request (`CachedDirectory`, 3 %) and
  `Span::current().record("tenant.id")` (`crates/parapet-tenant/src/layer.rs:203`, 3 %).
- **Cache, ~25 %** on a hit: `CacheStatus::append_to` (`crates/parapet-cache/src/status.rs:132`,
  6 %: a `String` built with `write!` for the header, then recorded on the span again);
  `decide` (`policy/serve.rs:77-78`, 6 %) re-parses the stored response's `Cache-Control` on every
  hit (`ResponseDirectives::from_headers` 5 %); `lookup::serve` clones the stored `HeaderMap`
  (`lookup.rs:125`); the tenant id copied into a `String` and the key built per request
  (`service.rs:94`, `service.rs:118`, 2-3 %); boxed futures on every path (`service.rs:78`). The
  moka lookup itself is 2.5 %. On a miss, `fetch` clones the request's `HeaderMap`
  (`fill.rs:45`) and `policy_for` clones the `PolicyConfig` (`layer.rs:89-90`).
- **Pool**: inserting the handle does not show (under 0.5 %).

Redis-tier hit: ~96,800 instructions per request against ~27,900 for the bare handler doing one
Redis `GET`. The Redis read itself is ~10 % of the stack's (`RedisStore::get`,
`crates/parapet-cache/src/store/redis.rs:155`, under its time budget and breaker, including
`encoding::decode` rebuilding the entry's `HeaderMap`, 3 % of the total, `encoding.rs:107` and `:282`); the gap is
the same fixed cost of telemetry, tenant and the cache's hit path as above. Because the handler is
trivial, a local hit saves little over a no-store miss (~76,300 against ~83,300 instructions).

On the miss path, every no-store miss looks the local tier up twice (`service.rs:125`, then
again as the flight's leader at `service.rs:259`; the run's own counters show `local_misses` =
2 x `misses`), and `service.rs:251` makes every concurrent miss of one key wait for a leader even
when the response turns out to be `no-store`: nothing remembers that a URI is uncacheable
(Varnish's hit-for-pass), so concurrent requests to a hot uncacheable URI queue behind one
upstream call and then each make their own. With this trivial handler it costs wake-ups; with a
slow one it would add a whole upstream latency to every waiter. The profile serialises threads,
so that queueing is not in its numbers.
PROFILE
  stack_cleanup
}

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
    cache)
      cargo bench --locked -p parapet-bench --bench cache -- --warm-up-time 1 --measurement-time 3 >&2
      {
        echo "## Cache hit in process (parapet-cache)"
        echo
        stamp cache
        echo
        echo "Criterion, in process (\`bench/benches/cache.rs\`): \`GET /api/item\` answered with the same 86-byte"
        echo "JSON body and \`Cache-Control: public, max-age=60\`, on a current-thread runtime, the caches filled"
        echo "first; the bench fails if the handler runs during a cached variant's measurement. Medians;"
        echo "the machine is shared, so compare the ratios of one run. The same comparison over loopback"
        echo "with wrk, against nginx and Varnish, is the stack scenario."
        echo
        ./target/release/cache_report
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
    stack)
      {
        echo "## Stack cost (telemetry → tenant → cache → pool)"
        echo
        stamp stack
        echo
        stack_scenario
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
