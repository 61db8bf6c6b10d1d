#!/usr/bin/env bash
# scale: 1,000 tenants on 1,000 connections, reads and writes, against the demo CRM for 60 s.
# On a PostgreSQL cluster of the scenario's own; twice, with the default pool size and with a pool
# size that lets the global budget bind; samples PostgreSQL's connections and the demo's memory.
# Prints the markdown section. Shorter runs: SCALE_SECS (60 s per column).
source "$(dirname "$0")/../lib.sh"

heading scale "Scale: 1,000 tenants, 1,000 connections, reads and writes"
# shellcheck source=../lib-demo.sh
source bench/lib-demo.sh
secs=${SCALE_SECS:-60} threads=2 conns=1000 tenants=1000 budget=40 per_pool=100 maxconn=100
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
demo_setup scale "$maxconn"
admin="postgres://postgres@127.0.0.1:$pg_port"
# A first start creates, migrates and seeds the database; then the 1,000 tenants are added
# and the demo started again, so every tenant exists before the first request.
demo_prepare scale 1000 PARAPET_POOL_BUDGET=$budget
demo_add_tenants t 4 "$tenants" 5 3 'Tenant '
{
  cat <<LUA
local stages = {"prospecting", "qualification", "proposal", "negotiation", "won", "lost"}
local n = 0
setup = function(thread) end
init = function(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000) end
request = function()
  n = n + 1
  local t = string.format("t%04d", math.random(1, $tenants))
  local r = math.random(1, 100)
  if r <= 10 then
    return wrk.format("POST", "/api/leads",
      {["X-Tenant-Id"] = t, ["Content-Type"] = "application/json"},
      string.format('{"name":"Scale lead %d","email":"s%d@%s.example"}', n, n, t))
  elseif r <= 55 then
    return wrk.format("GET", "/api/leads?limit=20", {["X-Tenant-Id"] = t})
  else
    return wrk.format("GET", "/api/deals?stage=" .. stages[math.random(1, #stages)] .. "&limit=20",
      {["X-Tenant-Id"] = t})
  end
end
response = function(status, headers, body)
  if status >= 300 then non2xx = (non2xx or 0) + 1 end
end
LUA
  wrk_report_lua
} > "$work/mix.lua"

# scale_run <variant> <PARAPET_POOL_MAX_PER_POOL>: one demo, one measured run; the figures go
# to res[<variant>,<name>].
declare -A res=()
scale_run() {
  demo_start scale "$work/demo-$1.log" DATABASE_URL="$db" PARAPET_POOL_BUDGET=$budget \
    PARAPET_POOL_MAX_PER_POOL="$2" PARAPET_QUOTA=off -- --seed 1000
  local pid=$demo_pid
  local head
  head=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tenant-Id: t0500' "http://$addr/api/leads?limit=20")
  if [ "$head" != 200 ]; then
    echo "scale: GET /api/leads for t0500 answered $head" >&2
    cat "$work/demo-$1.log" >&2
    exit 1
  fi
  # Sampler: every 500 ms, PostgreSQL's client backends (excluding the sampler's own) and the
  # demo's VmRSS; bounded by the run's length.
  local samples=$(( secs * 2 + 20 ))
  (
    for _ in $(seq 1 "$samples"); do
      c=$(psql -At "$admin/postgres" -c "SELECT count(*), count(*) FILTER (WHERE usename = 'parapet_app') FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" 2>/dev/null | tr '|' ' ')
      m=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null)
      echo "$c ${m:-0}"
      sleep 0.5
    done
  ) > "$work/samples-$1" &
  local sampler=$!
  local rss_before
  rss_before=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  local out log_start created_before
  created_before=$(psql -At "$db" -c "SELECT count(*) FROM leads WHERE name LIKE 'Scale lead %'")
  log_start=$(wc -l < "$work/demo-$1.log")
  out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 5s -s "$work/mix.lua" "http://$addr")
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  echo "$out" >&2
  local n us q50 q99 e
  read -r n us q50 q99 e _ <<< "$(wrk_line "$out")"
  local sockerr non2xx
  sockerr=$(grep -o 'Socket errors:.*' <<< "$out" || echo "Socket errors: none")
  non2xx=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' <<< "$out" | awk '{print $NF}' || true)
  local peak_all peak_app peak_rss hwm created
  peak_all=$(awk 'NF == 3 {if ($1 > m) m = $1} END {print m + 0}' "$work/samples-$1")
  peak_app=$(awk 'NF == 3 {if ($2 > m) m = $2} END {print m + 0}' "$work/samples-$1")
  peak_rss=$(awk 'NF == 3 {if ($3 > m) m = $3} END {printf "%.1f", m / 1024}' "$work/samples-$1")
  local nsamples
  nsamples=$(awk 'NF == 3' "$work/samples-$1" | wc -l)
  hwm=$(awk '/^VmHWM/{printf "%.1f", $2 / 1024}' "/proc/$pid/status")
  created=$(( $(psql -At "$db" -c "SELECT count(*) FROM leads WHERE name LIKE 'Scale lead %'") - created_before ))
  local log_errors
  # The log lines the run added (ANSI colours stripped), and the start-up's warnings.
  sed 's/\x1b\[[0-9;]*m//g' "$work/demo-$1.log" > "$work/demo-$1.txt"
  log_errors=$(tail -n +"$((log_start + 1))" "$work/demo-$1.txt" | grep -ciE 'error|panic' || true)
  local log_sample startup_errors
  log_sample=$(tail -n +"$((log_start + 1))" "$work/demo-$1.txt" | grep -iE 'error|panic' | head -3 | cut -c1-300 || true)
  startup_errors=$(head -n "$log_start" "$work/demo-$1.txt" | grep -c ' ERROR ' || true)
  demo_stop "$pid"
  pids=()
  local rps k
  rps=$(rps "$n" "$us")
  for k in n rps q50 q99 e non2xx sockerr peak_all peak_app peak_rss hwm rss_before nsamples created log_errors log_sample startup_errors; do
    res[$1,$k]=${!k}
  done
}
scale_run default 20
scale_run budget "$per_pool"
demo_cleanup
trap - EXIT

# The section.
echo "| measure | defaults: \`PARAPET_POOL_MAX_PER_POOL\` 20 | \`PARAPET_POOL_MAX_PER_POOL=$per_pool\`: the budget binds | target | met (defaults / budget binds) |"
echo "|---|---|---|---|---|"
row=""
for v in default budget; do row+=" ${res[$v,n]} (${res[$v,rps]} requests/s) |"; done
echo "| requests in ${secs} s |$row | |"
row="" met=""
for v in default budget; do
  row+=" ${res[$v,e]} (non-2xx/3xx: ${res[$v,non2xx]:-0}; ${res[$v,sockerr]}) |"
  met+="$([ "${res[$v,e]}" = 0 ] && [ "${res[$v,non2xx]:-0}" = 0 ] && echo yes || echo "**no**") / "
done
echo "| errors (socket errors + status ≥ 400) |$row 0 | ${met% / } |"
row=""
for v in default budget; do row+=" $(ms "${res[$v,q50]}") / $(ms "${res[$v,q99]}") |"; done
echo "| latency p50 / p99 |$row | |"
row="" met=""
for v in default budget; do
  row+=" ${res[$v,peak_all]} in all, ${res[$v,peak_app]} as \`parapet_app\` (${res[$v,nsamples]} samples) |"
  met+="$([ "${res[$v,peak_all]}" -le $((budget + 4)) ] && echo yes || echo "**no**") / "
done
echo "| peak PostgreSQL client connections (pg_stat_activity) |$row the pools ≤ \`PARAPET_POOL_BUDGET=$budget\`; with the tenant directory's own 4: ≤ $((budget + 4)) (server \`max_connections=$maxconn\`) | ${met% / } |"
row=""
for v in default budget; do row+=" peak sampled VmRSS ${res[$v,peak_rss]} MiB (VmHWM ${res[$v,hwm]} MiB; $(awk -v k="${res[$v,rss_before]}" 'BEGIN{printf "%.1f", k / 1024}') MiB before the run) |"; done
echo "| demo resident memory |$row | |"
row=""
for v in default budget; do row+=" ${res[$v,created]} |"; done
echo "| leads created by the run's POSTs |$row | |"
echo
echo "How it was run:"
echo
echo "- A PostgreSQL 15 cluster of the scenario's own (\`initdb\`, \`fsync=off\`, \`max_connections=$maxconn\`, removed afterwards), database \`parapet_bench_scale\`: a first start of the demo (\`target/release/example-crm --seed 1000\`) created, migrated and seeded it (acme and globex with 1,000 leads each); then $tenants tenants \`t0001\`…\`t$(printf '%04d' "$tenants")\` with 5 leads and 3 deals each were inserted, and the demo was started again for each column, one after the other, with \`PARAPET_POOL_BUDGET=$budget\`, \`RUST_LOG=warn\`, \`PARAPET_QUOTA=off\` (the scenario measures the pools; the demo's quotas are the noisy scenario's), the defaults otherwise (telemetry → tenant → cache → pool, local cache tier only, \`/api/=10\` s TTL)."
echo "- The two columns differ only in \`PARAPET_POOL_MAX_PER_POOL\`. These tenants all live in the shared database, so they share one pool: with the default of 20 per pool, that pool and not the budget bounds the connections (left column); with $per_pool per pool the budget of $budget is what bounds them (right column)."
echo "- \`ulimit -n 20000\`, then \`wrk -t$threads -c$conns -d${secs}s --timeout 5s\` on 127.0.0.1 with a Lua script that picks a random tenant per request (\`X-Tenant-Id\`) and sends 45 % \`GET /api/leads?limit=20\`, 45 % \`GET /api/deals?stage=<random stage>&limit=20\`, 10 % \`POST /api/leads\` (JSON name and email; each write purges the tenant's leads and activity entries from the cache). Errors are wrk's socket errors (connect, read, write, timeout) plus responses with a status ≥ 400 (wrk's count); non-2xx/3xx is wrk's own count."
echo "- PostgreSQL connections: \`count(*)\` of \`pg_stat_activity\` rows with \`backend_type = 'client backend'\` other than the sampler's own, sampled in a loop of one \`psql\` query and a 500 ms sleep (about every $(awk -v n="${res[default,nsamples]}" -v s="$secs" 'BEGIN{printf "%.0f", (n > 0 ? s * 1000 / n : 0)}') ms) from just before the run until wrk finished; \"in all\" includes the demo's tenant-directory pool (4 connections of its own, outside the budget). Memory: the demo's \`VmRSS\` from \`/proc/<pid>/status\`, sampled at the same times."
fence='```'
for v in default budget; do
  printf '%s' "- The demo's log ($v column, \`RUST_LOG=warn\`): ${res[$v,startup_errors]} \`ERROR\` lines at start-up (before the run) and ${res[$v,log_errors]} lines mentioning an error or a panic during the run"
  sample=${res[$v,log_sample]}
  if [ -n "$sample" ]; then
    printf '; the first ones:\n\n  %s\n  %s\n  %s' "$fence" "${sample//$'\n'/$'\n'  }" "$fence"
  fi
  echo
done
echo "- wrk, the demo and PostgreSQL share the machine's $(nproc) cores."
