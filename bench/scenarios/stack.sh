#!/usr/bin/env bash
# stack: the cost of telemetry → tenant → cache → pool over loopback, with nginx and Varnish.
# wrk against each variant of bench/src/bin/stack.rs (one server process per variant), nginx
# proxy_cache and Varnish in front of the bare server, measured in turn in rounds; each row is the
# median round. Prints the markdown section; fails loudly when a variant does not answer the way
# it must be measured. Shorter runs: STACK_SECS (10 s per measurement), STACK_ROUNDS (3).
source "$(dirname "$0")/../lib.sh"

heading stack "Stack cost (telemetry → tenant → cache → pool)"
need wrk nginx varnish curl redis-tools -- wrk nginx varnishd curl redis-cli
bin=$bench_bin/stack threads=2 conns=64 secs=${STACK_SECS:-10} warm=2 tenant=acme workers=2
rounds=${STACK_ROUNDS:-3}
work=$(mktemp -d)
prefix="parapet:bench:stack:$$:$(date +%s):"
pids=() order=() addr="" round=0
declare -A urls=() rps_all=() p50_all=() p99_all=() errs=()
declare -A label=(
  [bare]="bare axum"
  [miss]="full stack, cache miss (handler says \`no-store\`)"
  [hit]="full stack, local-tier hit"
  [nginx]="nginx proxy_cache in front of bare axum"
  [varnish]="Varnish in front of bare axum"
  [redis-hit]="full stack, Redis-tier hit"
  [redis-get]="bare axum + one Redis \`GET\`"
  [thc]="tower-http-cache 0.6.1, in-memory hit (no other layer)"
)

# cleanup: every server stopped, the run's Redis keys and the temporary directory deleted.
cleanup() {
  local p k
  for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  redis-cli --scan --pattern "${prefix}*" | while read -r k; do redis-cli del "$k" >/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
wrk_report_lua > "$work/report.lua"

# start <name> <variant> [flags]: starts `stack serve` and sets $addr to where it listens.
start() {
  local name=$1
  shift
  "$bin" serve "$@" --workers "$workers" > "$work/$name.log" 2>&1 &
  pids+=($!)
  wait_listening stack "$name" "$work/$name.log" "${pids[-1]}"
}

# wait_port <host:port>: waits up to 10 s for an HTTP answer.
wait_port() {
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://$1/" && return 0
    sleep 0.1
  done
  return 1
}

# check <name> <url> <header> <regex>: header_check with the tenant header; the answers before
# the first round are listed in the section.
check() {
  local value
  value=$(header_check stack "$1" "$2" "$3" "$4" -H "X-Tenant-Id: $tenant") || exit 1
  [ "$round" -le 1 ] && echo "- $1: \`$3: $value\`" >> "$work/checks"
  return 0
}

# measure <name>: a warm-up run, then the measured one; adds this round's figures.
measure() {
  local out n us q50 q99 e r
  wrk -t"$threads" -c"$conns" -d"${warm}s" -H "X-Tenant-Id: $tenant" "${urls[$1]}" > /dev/null
  out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 2s --latency \
    -H "X-Tenant-Id: $tenant" -s "$work/report.lua" "${urls[$1]}")
  read -r n us q50 q99 e _ <<< "$(wrk_line "$out")"
  r=$(rps "$n" "$us")
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
    # The first request of the key (and of each pass_ttl window) says why it was not stored;
    # the others pass (hit-for-pass).
    miss) check miss "$u" cache-status '^parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store(/pass)?$' ;;
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

# counters <name>: the cache counters and exported spans a server printed when stopped.
counters() {
  grep -E '^(cache-stats|spans-exported|origin-calls) ' "$work/$1.log" | tr '\n' ' ' | sed 's/ $//'
}

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

# Varnish in front of the bare server; a machine where it cannot run loses only its row.
varnish_note=""
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
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()

# The section.
declare -A med=() p50=() p99=()
for name in "${order[@]}"; do
  med[$name]=$(median <<< "${rps_all[$name]}")
  p50[$name]=$(ms "$(median <<< "${p50_all[$name]}")")
  p99[$name]=$(ms "$(median <<< "${p99_all[$name]}")")
done
base=${med[bare]}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}'; }
meets() { awk -v r="$1" -v t="$2" 'BEGIN{print (r >= t ? "yes" : "**no**")}'; }

echo "| variant | requests/s (median of $rounds) | rounds | p50 | p99 | errors | vs bare axum | target | met |"
echo "|---|---|---|---|---|---|---|---|---|"
for name in "${order[@]}"; do
  r=$(ratio "${med[$name]}" "$base")
  target="" met=""
  case "$name" in
    miss) target="≥ 0.8x bare"; met=$(meets "$r" 0.8) ;;
    hit)
      rn=$(ratio "${med[hit]}" "${med[nginx]:-0}")
      target="≥ 0.95x bare; ≥ 1.6x nginx (${rn}x)"
      met="$(meets "$r" 0.95) / $(meets "$rn" 1.6)"
      ;;
    redis-hit)
      rg=$(ratio "${med[redis-hit]}" "${med[redis-get]:-0}")
      target="≥ 0.9x the Redis-GET handler (${rg}x)"
      met=$(meets "$rg" 0.9)
      ;;
  esac
  echo "| ${label[$name]} | ${med[$name]} | $(echo "${rps_all[$name]}" | sed 's/ $//; s/ /, /g') | ${p50[$name]} | ${p99[$name]} | ${errs[$name]} | ${r}x | $target | $met |"
done
echo
echo "How it was run:"
echo
echo "- \`wrk -t$threads -c$conns -d${secs}s --timeout 2s --latency -H 'X-Tenant-Id: $tenant'\` per variant after a ${warm} s warm-up with the same settings, one variant at a time, \`GET /api/item\` on 127.0.0.1, in $rounds rounds over all the variants (every server stays up for the whole run); each row is the median round, the \`rounds\` column every round's requests/s, so the noise of the shared machine is in view; wrk sends \`Host: 127.0.0.1:<port>\`. The same header goes to every variant (only the stack reads it). Errors are wrk's socket errors (connect, read, write, timeout) plus responses with a status ≥ 400 (wrk's count: it does not count 1xx/3xx, which this handler never sends)."
echo "- wrk and the servers share the machine's $(nproc) cores: wrk runs $threads threads; each axum server is its own process with a Tokio runtime of $workers worker threads (\`stack serve <variant> --workers $workers\`); nginx runs \`worker_processes auto\` ($(nproc) workers, the same count as Tokio's), Varnish its default thread pools (2 pools, at least 100 threads each, mostly idle); Redis (one thread) and the other work on this machine share them too."
echo "- Every variant answers the same ${body_bytes}-byte JSON body. The stack is \`TelemetryLayer\` → \`TenantLayer\` (\`StaticDirectory\` with tenant \`acme\`, \`HeaderResolver\`: \`X-Tenant-Id\`) → \`CacheLayer\` → \`PoolLayer\` (\`TenantPools\` on \`postgres://postgres@127.0.0.1:5432/postgres\`; the handler takes no \`Db\`, so nothing is checked out and PostgreSQL is not measured)."
echo "- Telemetry: the subscriber and providers \`parapet_telemetry::TelemetryBuilder\` builds (as \`init()\`), sampler always-on, a \`BatchSpanProcessor\` whose exporter counts and discards the spans (so recording, batching and the export thread all run; only the network is left out), a periodic metric reader with a discarding exporter, logs off (\`RUST_LOG=warn\`)."
echo "- Cache miss: the handler answers \`Cache-Control: no-store\`, so every request takes the cache's miss path (tenant-scoped key, one local-tier lookup, forwarding, the storability check) and only the store is skipped; after the first request, the key is on a hit-for-pass (\`pass_ttl\`, 10 s by default), so the requests are not coalesced behind one another (the first of each window is)."
echo "- Local-tier hit: \`CacheLayer::builder().local(64 MiB)\`; Redis-tier hit: \`CacheLayer::builder().redis(..)\` and no local tier, keys under a prefix unique to the run (\`${prefix}\`, deleted afterwards). The Redis-GET handler reads one value of the size of the entry the cache stored (\`STRLEN\` of its key: $size bytes) through a \`redis::aio::ConnectionManager\`, then answers like the bare handler."
echo "- nginx $(nginx -v 2>&1 | sed 's|.*nginx/||'): config generated into a temp dir, \`proxy_cache_path\` there, \`proxy_cache_valid 200 60s\`, keepalive to the origin, \`access_log off\`, run with \`nginx -p <tmp> -c <tmp>/nginx.conf\` (\`daemon off\`) and stopped afterwards. Varnish $(varnishd -V 2>&1 | grep -o 'varnish-[0-9.]*' | head -1 | sed 's/varnish-//'): \`varnishd -F -a 127.0.0.1:<port> -b <bare axum> -s malloc,64m -n <tmp>\` (built-in VCL; the origin's \`max-age=60\` sets the TTL), stopped afterwards."
if [ -n "$varnish_note" ]; then echo "- $varnish_note"; fi
echo "- tower-http-cache 0.6.1 (\`default-features = false, features = [\"in-memory\"]\`: its moka backend), \`CacheLayer::builder(InMemoryBackend::new(10_000)).ttl(60 s)\`, defaults otherwise, directly around the handler with no other layer (it has no tenant scoping to configure). It sets no header on a hit, so its origin numbers its calls in \`x-origin-call\` and the check expects the number of the call that filled the entry."
echo "- Before every measured run (each round) one request checked the variant and the scenario stops if it is wrong: status 200 and, on hits, after one request that refills an entry that may have expired since the last round (entries live 60 s), a hit. The answers before the first round:"
echo
cat "$work/checks"
echo
echo "- Server-side counters when the servers stopped, over all rounds and checks:"
echo
for name in miss hit redis-hit thc; do
  echo "  - $name: \`$(counters "$name")\`"
done
