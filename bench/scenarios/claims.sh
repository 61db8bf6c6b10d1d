#!/usr/bin/env bash
# claims: the original plan's claims, on the demo CRM with and without the cache.
# The demo twice, side by side, on a PostgreSQL cluster of the scenario's own: with the cache and
# with PARAPET_CACHE=off (both with PARAPET_QUOTA=off: the claims are the cache's, and wrk asks
# far more of globex than its free plan allows); wrk with a mix of reads over both seeded tenants
# in rounds, then in connection steps that double from 8 until each server's limit is found (up
# to 4,096). Prints the markdown section. Shorter runs: CLAIMS_SECS (10 s per round),
# CLAIMS_STEP_SECS (5 s per step), CLAIMS_ROUNDS (3), CLAIMS_SEED (100000 leads per tenant),
# CLAIMS_MAX_CONNS (4096).
source "$(dirname "$0")/../lib.sh"

heading claims "The original plan's claims, on the demo's data"
# shellcheck source=../lib-demo.sh
source bench/lib-demo.sh
secs=${CLAIMS_SECS:-10} step_secs=${CLAIMS_STEP_SECS:-5} rounds=${CLAIMS_ROUNDS:-3}
threads=2 conns=32 seed=${CLAIMS_SEED:-100000} budget=40 max_conns=${CLAIMS_MAX_CONNS:-4096}
# wrk holds every connection open, and so does the demo it talks to (they inherit this limit):
# the largest step needs that many descriptors in each, with room for the rest.
want_fds=$((max_conns * 2 + 1024))
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((max_conns + 512)) ]; then
  echo "claims: ulimit -n is $(ulimit -n) (hard limit $(ulimit -Hn)); $max_conns connections need at least $((max_conns + 512)): raise the hard limit or set CLAIMS_MAX_CONNS lower" >&2
  exit 1
fi
fds=$(ulimit -n)
demo_setup claims 100
t0=$(date +%s)
demo_start claims "$work/on.log" DATABASE_URL="$db" PARAPET_POOL_BUDGET=$budget PARAPET_QUOTA=off -- --seed "$seed"
t1=$(date +%s)
on=$addr
demo_start claims "$work/off.log" DATABASE_URL="$db" PARAPET_POOL_BUDGET=$budget PARAPET_CACHE=off PARAPET_QUOTA=off -- --seed "$seed"
off=$addr
# A mixed list of reads for both seeded tenants: each wrk connection walks the list in turn.
{
  cat <<'LUA'
local paths = {
  "/api/leads?limit=20", "/api/deals?stage=won&limit=20", "/api/activity?limit=20",
  "/api/subscription", "/api/leads?limit=50", "/api/deals?stage=proposal&limit=20",
  "/api/deals?stage=negotiation&limit=10", "/api/activity?limit=50",
}
local tenants = {"acme", "globex"}
local n = 0
request = function()
  n = n + 1
  local p = paths[(n % #paths) + 1]
  local t = tenants[(math.floor(n / #paths) % #tenants) + 1]
  return wrk.format("GET", p, {["X-Tenant-Id"] = t})
end
LUA
  wrk_report_lua
} > "$work/mix.lua"

# check <server> <regex>: the second of two identical requests must answer 200 with a
# Cache-Status matching (a hit when the cache is on; no hit when it is off); prints it quoted.
check() {
  local u="http://$1/api/leads?limit=20" value
  curl -s -o /dev/null -H "X-Tenant-Id: acme" "$u"
  value=$(header_check claims "$1" "$u" cache-status "$2" -H "X-Tenant-Id: acme") || exit 1
  echo "\`${value:-no Cache-Status header}\`"
}
check_on=$(check "$on" '^parapet; hit') || exit 1
check_off=$(check "$off" '^$|^[^h]*$') || exit 1

# run <server> <conns> <secs>: prints "rps p50 p99 errors status-errors".
run() {
  local out n us q50 q99 e s
  out=$(wrk -t"$threads" -c"$2" -d"$3s" --timeout 2s -s "$work/mix.lua" "http://$1")
  read -r n us q50 q99 e s <<< "$(wrk_line "$out")"
  echo "$(rps "$n" "$us") $q50 $q99 $e $s"
}
declare -A rps_all=() p50_all=() p99_all=() errs=()
for v in on off; do
  run "${!v}" "$conns" 2 > /dev/null  # warm-up
done
for round in $(seq 1 "$rounds"); do
  for v in on off; do
    read -r r q50 q99 e s <<< "$(run "${!v}" "$conns" "$secs")"
    rps_all[$v]+="$r " p50_all[$v]+="$q50 " p99_all[$v]+="$q99 "
    errs[$v]=$(( ${errs[$v]:-0} + e ))
    echo "claims: round $round, cache $v: $r requests/s, p99 $((q99 / 1000)) ms, $e errors" >&2
  done
done
# Connection steps, doubling from 8 up to $max_conns: a server's limit is the largest step whose
# p99 stays under 100 ms with no errors; its first step over that ends its steps, and the steps
# go on while either server's limit is not found.
steps=()
for ((c = 8; c <= max_conns; c *= 2)); do steps+=("$c"); done
declare -A step_p99=() step_rps=() step_err=() best=() found=()
for c in "${steps[@]}"; do
  [ -n "${found[on]:-}" ] && [ -n "${found[off]:-}" ] && break
  last_step=$c
  for v in on off; do
    [ -n "${found[$v]:-}" ] && continue
    read -r r q50 q99 e s <<< "$(run "${!v}" "$c" "$step_secs")"
    step_p99[$v$c]=$q99 step_rps[$v$c]=$r step_err[$v$c]=$e
    if [ "$q99" -lt 100000 ] && [ "$e" = 0 ]; then best[$v]=$c; else found[$v]=$c; fi
    echo "claims: $c connections, cache $v: $r requests/s, p99 $((q99 / 1000)) ms, $e errors" >&2
  done
done
mem_on=$(awk '/^VmHWM/{printf "%.1f MiB", $2 / 1024}' "/proc/${pids[0]}/status")
mem_off=$(awk '/^VmHWM/{printf "%.1f MiB", $2 / 1024}' "/proc/${pids[1]}/status")
demo_cleanup
trap - EXIT

# The section.
rps_on=$(median <<< "${rps_all[on]}") rps_off=$(median <<< "${rps_all[off]}")
p50_on=$(median <<< "${p50_all[on]}") p50_off=$(median <<< "${p50_all[off]}")
p99_on=$(median <<< "${p99_all[on]}") p99_off=$(median <<< "${p99_all[off]}")
gain_rps=$(awk -v a="$rps_on" -v b="$rps_off" 'BEGIN{printf "%.0f", (a / b - 1) * 100}')
gain_p50=$(awk -v a="$p50_on" -v b="$p50_off" 'BEGIN{printf "%.0f", (1 - a / b) * 100}')
gain_p99=$(awk -v a="$p99_on" -v b="$p99_off" 'BEGIN{printf "%.0f", (1 - a / b) * 100}')
met_rps=$(awk -v g="$gain_rps" 'BEGIN{print (g >= 40 ? "yes" : "**no**")}')
met_p50=$(awk -v g="$gain_p50" 'BEGIN{print (g >= 40 ? "yes" : "**no**")}')
bon=${best[on]:-0} boff=${best[off]:-0}
if [ "$boff" -gt 0 ] && [ -n "${found[off]:-}" ]; then
  ratio_c=$(awk -v a="$bon" -v b="$boff" 'BEGIN{printf "%.1fx", a / b}')
  met_c=$(awk -v a="$bon" -v b="$boff" 'BEGIN{print (a / b >= 10 ? "yes" : "**no**")}')
  # When the stack passed every step, its limit was not found: the ratio is a lower bound.
  if [ -z "${found[on]:-}" ]; then
    ratio_c="≥ $ratio_c"
    [ "$met_c" = yes ] || met_c="**not shown** (a lower bound below 10x)"
  fi
elif [ "$boff" -gt 0 ]; then
  ratio_c="n/a (without the cache every step up to $boff stayed under 100 ms)"; met_c="**not shown**"
else
  ratio_c="n/a (without the cache no step stayed under 100 ms)"; met_c="—"
fi
note_on="" note_off=""
[ -z "${found[on]:-}" ] && note_on=" (the largest step tried: the real limit may be higher)"
[ -z "${found[off]:-}" ] && note_off=" (the largest step tried: the real limit may be higher)"
[ "$bon" = 0 ] && note_on=" (no step passed)"
[ "$boff" = 0 ] && note_off=" (no step passed)"
echo "| claim | with the stack (cache on) | without the cache (\`PARAPET_CACHE=off\`) | measured | claimed | met |"
echo "|---|---|---|---|---|---|"
echo "| API throughput, $conns connections (median of $rounds) | $rps_on requests/s | $rps_off requests/s | +${gain_rps} % ($(awk -v a="$rps_on" -v b="$rps_off" 'BEGIN{printf "%.2fx", a / b}')) | 40-60 % faster | $met_rps |"
echo "| API latency p50 | $(ms "$p50_on") | $(ms "$p50_off") | ${gain_p50} % lower | 40-60 % faster | $met_p50 |"
echo "| API latency p99 | $(ms "$p99_on") | $(ms "$p99_off") | ${gain_p99} % lower | | |"
echo "| concurrent clients served with p99 < 100 ms | ${bon}${note_on} | ${boff}${note_off} | $ratio_c | 10x | $met_c |"
# The last two claims are measured by the pool scenario: quoted from its last results.
pool_md="$(dirname "$0")/../results/pool.md"
if [ -f "$pool_md" ]; then
  pool_when=$(grep -o 'Measured [0-9-]* [0-9:]* UTC' "$pool_md" | head -1 | sed 's/Measured //')
  cut=$(grep -o 'cut the summed median latency by \*\*[0-9.]* %' "$pool_md" | grep -o '[0-9.]* %' | head -1)
  cut_met=$(awk -v c="${cut% %}" 'BEGIN{print (c > 80 ? "yes (exceeded)" : (c >= 60 ? "yes" : "**no**"))}')
  naive=$(grep '^| one pool of 20 per tenant' "$pool_md" | head -1)
  ours=$(grep '^| parapet, shared database' "$pool_md" | head -1)
  conn_naive=$(echo "$naive" | awk -F'|' '{gsub(/ /, "", $4); print $4}')
  conn_ours=$(echo "$ours" | awk -F'|' '{gsub(/ /, "", $4); print $4}')
  mem_naive=$(echo "$naive" | awk -F'|' '{gsub(/^ +| +$/, "", $7); print $7}')
  mem_ours=$(echo "$ours" | awk -F'|' '{gsub(/^ +| +$/, "", $7); print $7}')
  less_met=$(awk -v a="$conn_naive" -v b="$conn_ours" -v m="${mem_naive% MiB}" -v n="${mem_ours% MiB}" \
    'BEGIN{ok = (b <= a * 0.7 && n <= m * 0.7); ex = (b <= a * 0.5 && n <= m * 0.5); print (ex ? "yes (exceeded)" : (ok ? "yes" : "**no**"))}')
  echo "| query latency with vs without the performance indexes | | | see [Pools](#pools-parapet-pool) ($pool_when): ${cut} lower summed p50 over six query shapes | 60-80 % faster | $cut_met |"
  echo "| memory and server connections, pool of 20 per tenant vs parapet | | | see [Pools](#pools-parapet-pool) ($pool_when): $conn_naive vs $conn_ours server connections and $mem_naive vs $mem_ours client growth for 1,000 tenants | 30-50 % less | $less_met |"
else
  echo "| query latency with vs without the performance indexes | | | not measured: \`bash bench/run.sh pool\` | 60-80 % faster | — |"
  echo "| memory and server connections, pool of 20 per tenant vs parapet | | | not measured: \`bash bench/run.sh pool\` | 30-50 % less | — |"
fi
echo
echo "Rounds (requests/s): cache on $(echo "${rps_all[on]}" | sed 's/ $//; s/ /, /g'); cache off $(echo "${rps_all[off]}" | sed 's/ $//; s/ /, /g'). Errors over all rounds: cache on ${errs[on]}, cache off ${errs[off]}."
echo
echo "Connection steps ($step_secs s each, the same mix; a step counts when p99 < 100 ms and it had no errors; the steps double from 8 until both servers have had a step that does not count, up to $max_conns, and a server has no more steps after its first that does not count, \`—\`):"
echo
echo "| connections | cache on: requests/s | cache on: p99 | cache off: requests/s | cache off: p99 |"
echo "|---|---|---|---|---|"
# step_cells <on|off> <connections>: the step's requests/s and p99 cells, or dashes.
step_cells() {
  if [ -z "${step_rps[$1$2]:-}" ]; then echo "— | —"; return; fi
  echo "${step_rps[$1$2]} | $(ms "${step_p99[$1$2]}")$([ "${step_err[$1$2]}" != 0 ] && echo " (${step_err[$1$2]} errors)")"
}
for c in "${steps[@]}"; do
  echo "| $c | $(step_cells on "$c") | $(step_cells off "$c") |"
  [ "$c" = "$last_step" ] && break
done
echo
echo "How it was run:"
echo
echo "- The demo (\`target/release/example-crm --seed $seed\`: acme and globex with $seed leads, $((seed / 4)) deals, $((seed / 2)) activity entries and $((seed / 10)) billing events each; seeding and start-up took $((t1 - t0)) s) twice, side by side, against one database \`parapet_bench_claims\` on a PostgreSQL 15 cluster of the scenario's own (\`initdb\`, \`fsync=off\`, \`max_connections=100\`, removed afterwards): once with the defaults (telemetry → tenant → cache → pool, local cache tier only, no \`REDIS_URL\`, \`PARAPET_CACHE_DEFAULT_TTL=/api/=10\` as the demo sets it) and once with \`PARAPET_CACHE=off\` (telemetry → tenant → pool). Both with \`PARAPET_POOL_BUDGET=$budget\`, \`PARAPET_QUOTA=off\` (the demo turns its per-plan quotas on by default; wrk asks far more of globex than its free plan's 20 requests/s) and \`RUST_LOG=warn\`; the scenario raised \`ulimit -n\` to $fds for wrk and both servers. Peak resident memory (VmHWM): cache on $mem_on, cache off $mem_off."
echo "- \`wrk -t$threads -c$conns -d${secs}s --timeout 2s\` on 127.0.0.1 with a Lua script that rotates 8 read URLs (\`/api/leads?limit=20\` and \`?limit=50\`, \`/api/deals?stage=won|proposal&limit=20\` and \`?stage=negotiation&limit=10\`, \`/api/activity?limit=20|50\`, \`/api/subscription\`) over the two tenants (\`X-Tenant-Id\`), after a 2 s warm-up of each server; the two servers are measured in turn, in $rounds rounds, and the rows are the median round. Errors are wrk's socket errors plus responses with a status ≥ 400."
echo "- Before measuring, the second of two identical requests to \`/api/leads?limit=20\` was checked: cache on answered $check_on, cache off $check_off."
echo "- 16 distinct URLs (8 paths, 2 tenants), the cache's TTL 10 s. Both servers and wrk share the machine's $(nproc) cores with PostgreSQL."
echo "- The mix leaves out \`GET /api/deals\` without \`stage\` (a sort of the tenant's $((seed / 4)) deals per call)."
echo "- The two claims on indexes and pools are measured by the [Pools](#pools-parapet-pool) scenario (\`bench/src/bin/pool.rs\`) on its own 1,000,000-lead database and 1,000-tenant run; they are not re-measured here."
