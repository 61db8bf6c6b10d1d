#!/usr/bin/env bash
# noisy: one tenant floods the demo CRM; what 20 quiet tenants see, with and without quotas and fair connections.
# On a PostgreSQL cluster of the scenario's own, the demo three times, side by side: with the
# quota layer off and no fair share of the pool (PARAPET_QUOTA=off, PARAPET_POOL_TENANT_SHARE=1),
# with per-plan quotas and the pool's default fair share, and the same with refusal pacing
# (PARAPET_QUOTA_REFUSAL_DELAY_MS). On each: the quiet tenants alone, then the same quiet load
# while globex floods uncached reads. Prints the markdown section; fails when a server does not
# answer the way it must. Shorter runs: NOISY_SECS (30 s per measurement), NOISY_SEED (100000
# leads for the flooding tenant), NOISY_QUIET_DELAY_MS (80), NOISY_PACE_MS (1000).
source "$(dirname "$0")/../lib.sh"

heading noisy "Noisy neighbour: one tenant floods, 20 others keep their latency"
# shellcheck source=../lib-demo.sh
source bench/lib-demo.sh
secs=${NOISY_SECS:-30} seed=${NOISY_SEED:-100000} delay=${NOISY_QUIET_DELAY_MS:-80}
pace=${NOISY_PACE_MS:-1000}
quiet_conns=16 flood_conns=256 steady_conns=4 steady_delay=150 quiet_tenants=20 lead=2 budget=40
plans="free=20/s:40,pro=200/s:400"
flooder=globex
demo_setup noisy 150
# A first start creates, migrates and seeds the database (acme and globex); the quiet tenants
# are then added and the three demos started, so every tenant exists before the first request.
t0=$(date +%s)
demo_prepare noisy "$seed" PARAPET_POOL_BUDGET=$budget
demo_add_tenants q 2 "$quiet_tenants" 2000 500 'Quiet '
common=(DATABASE_URL="$db" PARAPET_POOL_BUDGET=$budget)
demo_start noisy "$work/off.log" "${common[@]}" PARAPET_QUOTA=off PARAPET_POOL_TENANT_SHARE=1 -- --seed "$seed"
off=$addr
demo_start noisy "$work/on.log" "${common[@]}" PARAPET_QUOTA=on PARAPET_QUOTA_PLANS="$plans" -- --seed "$seed"
on=$addr
demo_start noisy "$work/paced.log" "${common[@]}" PARAPET_QUOTA=on PARAPET_QUOTA_PLANS="$plans" \
  PARAPET_QUOTA_REFUSAL_DELAY_MS="$pace" -- --seed "$seed"
paced=$addr
t1=$(date +%s)

# status_lua: wrk hooks that count responses by status class over all threads and print
#   STATUS <2xx> <429> <5xx> <other>
# (wrk's own counts do not tell a 429 from a 503).
status_lua() {
  cat <<'LUA'
local threads = {}
setup = function(thread) table.insert(threads, thread) end
s2xx, s429, s5xx, sother = 0, 0, 0, 0
response = function(status, headers, body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status >= 500 then s5xx = s5xx + 1
  else sother = sother + 1 end
end
local report = done
done = function(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("s2xx"); b = b + t:get("s429"); c = c + t:get("s5xx"); d = d + t:get("sother")
  end
  io.write(string.format("STATUS %d %d %d %d\n", a, b, c, d))
  report(summary, latency, requests)
end
LUA
}
# The quiet tenants: every request to the next of q01…q20, each connection waiting $delay ms
# between its requests (a steady load far below their plan's limit); reads the cache does not
# answer (`Cache-Control: no-cache`), so each one checks out a connection.
{
  cat <<LUA
local paths = {"/api/leads?limit=20", "/api/deals?stage=won&limit=20", "/api/leads?limit=50"}
local n = 0
request = function()
  n = n + 1
  local t = string.format("q%02d", (n % $quiet_tenants) + 1)
  return wrk.format("GET", paths[(math.floor(n / $quiet_tenants) % #paths) + 1],
    {["X-Tenant-Id"] = t, ["Cache-Control"] = "no-cache"})
end
delay = function() return $delay end
LUA
  wrk_report_lua
  status_lua
} > "$work/quiet.lua"
# The flooder: as fast as 256 connections go, the uncached reads of its large tables (the
# deals sorted by amount, the newest leads and activity entries).
{
  cat <<LUA
local paths = {"/api/deals?limit=50", "/api/leads?limit=50", "/api/activity?limit=50"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1],
    {["X-Tenant-Id"] = "$flooder", ["Cache-Control"] = "no-cache"})
end
LUA
  wrk_report_lua
  status_lua
} > "$work/flood.lua"
# The same tenant and reads at about its plan's rate (4 connections, each waiting $steady_delay ms
# between its requests): what its allowed share alone costs the quiet tenants.
{
  sed '/^end$/q' "$work/flood.lua" # its request function
  echo "delay = function() return $steady_delay end"
  wrk_report_lua
  status_lua
} > "$work/steady.lua"

# Before measuring: each server answers a quiet tenant and the flooder with 200 from the
# handler (not the cache), with the plan's RateLimit-Policy when quotas are on and none when off.
for t in q01 q20 "$flooder"; do
  header_check noisy "quotas on ($t)" "http://$on/api/leads?limit=20" ratelimit-policy \
    '^"free";q=40;w=2$' -H "X-Tenant-Id: $t" -H 'Cache-Control: no-cache' > /dev/null || exit 1
  header_check noisy "quotas on, paced ($t)" "http://$paced/api/leads?limit=20" ratelimit-policy \
    '^"free";q=40;w=2$' -H "X-Tenant-Id: $t" -H 'Cache-Control: no-cache' > /dev/null || exit 1
  header_check noisy "quotas off ($t)" "http://$off/api/leads?limit=20" ratelimit-policy \
    '^$' -H "X-Tenant-Id: $t" -H 'Cache-Control: no-cache' > /dev/null || exit 1
  for s in "$on" "$off" "$paced"; do
    header_check noisy "$s ($t)" "http://$s/api/leads?limit=20" cache-status '^parapet; fwd=' \
      -H "X-Tenant-Id: $t" -H 'Cache-Control: no-cache' > /dev/null || exit 1
  done
done

# quiet <server> <secs>: the quiet load; prints "requests rps p50 p99 errors 2xx 429 5xx other".
quiet() {
  local out n us q50 q99 e s a b c d
  out=$(wrk -t1 -c"$quiet_conns" -d"$2s" --timeout 2s -s "$work/quiet.lua" "http://$1")
  read -r n us q50 q99 e s <<< "$(wrk_line "$out")"
  read -r a b c d <<< "$(grep '^STATUS ' <<< "$out" | cut -d' ' -f2-)"
  echo "$n $(rps "$n" "$us") $q50 $q99 $e $a $b $c $d"
}
declare -A res=()
# measure <case> <server> <flood?>: the quiet load for $secs s, inside a flood when asked
# (started $lead s before and ending $lead s after); the figures go to res[<case>,<name>].
measure() {
  local fpid="" n r q50 q99 e a b c d k
  if [ "$3" = flood ] || [ "$3" = steady ]; then
    local fc=$flood_conns
    [ "$3" = steady ] && fc=$steady_conns
    wrk -t1 -c"$fc" -d"$((secs + 2 * lead))s" --timeout 5s -s "$work/$3.lua" \
      "http://$2" > "$work/flood-$1.out" &
    fpid=$!
    sleep "$lead"
  fi
  read -r n r q50 q99 e a b c d <<< "$(quiet "$2" "$secs")"
  if [ -n "$fpid" ]; then
    wait "$fpid"
    read -r "res[$1,f2xx]" "res[$1,f429]" "res[$1,f5xx]" "res[$1,fother]" \
      <<< "$(grep '^STATUS ' "$work/flood-$1.out" | cut -d' ' -f2-)"
    read -r "res[$1,fn]" _ _ _ "res[$1,fe]" _ <<< "$(wrk_line "$(cat "$work/flood-$1.out")")"
    sleep "$lead" # the backlog drains before the next measurement
  fi
  for k in n r q50 q99 e a b c d; do res[$1,$k]=${!k}; done
  if [ "$n" = 0 ] || [ "$a" = 0 ]; then
    echo "noisy: $1: the quiet tenants got no answer ($n requests, $a 2xx)" >&2
    exit 1
  fi
  echo "noisy: $1: quiet $r requests/s, p50 $((q50 / 1000)) ms, p99 $((q99 / 1000)) ms, $e errors;" \
    "flood ${res[$1,f2xx]:--} 2xx, ${res[$1,f429]:--} 429, ${res[$1,f5xx]:--} 5xx" >&2
}
quiet "$off" 2 > /dev/null # warm-up
measure alone-off "$off" -
measure flood-off "$off" flood
quiet "$on" 2 > /dev/null # warm-up
measure alone-on "$on" -
measure flood-on "$on" flood
quiet "$paced" 2 > /dev/null # warm-up
measure alone-paced "$paced" -
measure flood-paced "$paced" flood
measure steady-paced "$paced" steady
mem_on=$(awk '/^VmHWM/{printf "%.1f MiB", $2 / 1024}' "/proc/${pids[1]}/status")
mem_off=$(awk '/^VmHWM/{printf "%.1f MiB", $2 / 1024}' "/proc/${pids[0]}/status")
mem_paced=$(awk '/^VmHWM/{printf "%.1f MiB", $2 / 1024}' "/proc/${pids[2]}/status")
log_errors=$(sed 's/\x1b\[[0-9;]*m//g' "$work/on.log" "$work/off.log" "$work/paced.log" | grep -ciE ' error |panic' || true)
demo_cleanup
trap - EXIT

# A flood that the quota layer did not refuse at all, or refused with the layer off, means the
# servers were not configured as described: no figures then.
for c in flood-on flood-paced; do
  if [ "${res[$c,f429]}" = 0 ]; then
    echo "noisy: $c: with quotas on, the flooder got no 429 (${res[$c,f2xx]} 2xx): the quota layer is not limiting" >&2
    exit 1
  fi
done
if [ "${res[flood-off,f429]}" != 0 ]; then
  echo "noisy: with quotas off, the flooder got ${res[flood-off,f429]} 429s" >&2
  exit 1
fi

# The section.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", (b > 0 ? a / b : 0)}'; }
errors() {
  local e=${res[$1,e]} b=${res[$1,b]} c=${res[$1,c]} d=${res[$1,d]}
  if [ "$e" = 0 ]; then echo 0; else echo "$e (429: $b, 5xx: $c, other status: $d, socket: $((e - b - c - d)))"; fi
}
flood() {
  [ -n "${res[$1,fn]:-}" ] || { echo "—"; return; }
  echo "${res[$1,f2xx]} / ${res[$1,f429]} / ${res[$1,f5xx]}$([ "${res[$1,fother]}" != 0 ] && echo " (other: ${res[$1,fother]})")"
}
# met <flood case> <alone case>: the target's three parts.
met() {
  local p e f
  p=$(awk -v a="${res[$1,q99]}" -v b="${res[$2,q99]}" 'BEGIN{print (a <= 1.5 * b ? "yes" : "**no**")}')
  e=$([ "${res[$1,e]}" = 0 ] && echo yes || echo "**no**")
  f=$([ "${res[$1,f5xx]}" = 0 ] && echo yes || echo "**no**")
  echo "$p / $e / $f"
}
declare -A label=(
  [alone-off]="(a) quiet tenants alone; quotas off, no fair share"
  [flood-off]="(b) during the flood; quotas off, no fair share"
  [alone-on]="(a) quiet tenants alone; per-plan quotas, fair share"
  [flood-on]="(c) during the flood; per-plan quotas, fair share"
  [alone-paced]="(a) quiet tenants alone; quotas, fair share, refusals paced ${pace} ms"
  [flood-paced]="(d) during the flood; quotas, fair share, refusals paced ${pace} ms"
  [steady-paced]="(e) the same tenant at about its plan's rate instead of a flood; quotas, fair share, refusals paced ${pace} ms"
)
echo "| case | quiet requests/s | quiet p50 | quiet p99 | p99 vs alone | quiet errors | flood 2xx / 429 / 5xx | target | met |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in alone-off flood-off alone-on flood-on alone-paced flood-paced steady-paced; do
  base=alone-${c#*-}
  target="" met=""
  if [ "$c" = flood-on ] || [ "$c" = flood-paced ]; then
    target="p99 ≤ 1.5x alone; 0 quiet errors; the flooder gets 429s, no 5xx"
    met=$(met "$c" "$base")
  fi
  echo "| ${label[$c]} | ${res[$c,r]} | $(ms "${res[$c,q50]}") | $(ms "${res[$c,q99]}") | $(ratio "${res[$c,q99]}" "${res[$base,q99]}") | $(errors "$c") | $(flood "$c") | $target | $met |"
done
echo
echo "How it was run:"
echo
echo "- A PostgreSQL 15 cluster of the scenario's own (\`initdb\`, \`fsync=off\`, \`max_connections=100\`, removed afterwards), database \`parapet_bench_noisy\`: a first start of the demo (\`target/release/example-crm --seed $seed\`: acme and globex with $seed leads, $((seed / 4)) deals and $((seed / 2)) activity entries each) created, migrated and seeded it; then $quiet_tenants quiet tenants \`q01\`…\`q$quiet_tenants\` (plan \`free\`, 2,000 leads and 500 deals each) were inserted. Seeding and the starts took $((t1 - t0)) s."
echo "- The demo three times, side by side, each with \`PARAPET_POOL_BUDGET=$budget\`, \`RUST_LOG=warn\`, local cache tier only (no \`REDIS_URL\`), the defaults otherwise (a shared pool of 20 connections for the tenants of the shared database): once with \`PARAPET_QUOTA=off PARAPET_POOL_TENANT_SHARE=1\` (no rate limit; one tenant may hold the whole pool), once with \`PARAPET_QUOTA=on PARAPET_QUOTA_PLANS=$plans\` (per instance, no Redis) and the pool's default share (5 of 20 connections per tenant), and once more like that with \`PARAPET_QUOTA_REFUSAL_DELAY_MS=$pace\` (refusal pacing: a refused request is answered $pace ms late, at most 10,000 held at once, 2,500 of one tenant). Waiting tenants are served in turn by the pool in all three. Peak resident memory (VmHWM): quotas on $mem_on, off $mem_off, paced $mem_paced; the three logs had $log_errors error or panic lines."
echo "- Quiet load: \`wrk -t1 -c$quiet_conns -d${secs}s --timeout 2s\` with a Lua script that sends each request as the next of the $quiet_tenants quiet tenants (\`X-Tenant-Id\`) and makes every connection wait $delay ms between its requests (a steady load, about $((1000 * quiet_conns / delay / quiet_tenants)) requests/s per tenant at most, half the \`free\` plan's rate); it rotates \`GET /api/leads?limit=20\`, \`/api/deals?stage=won&limit=20\` and \`/api/leads?limit=50\`, all with \`Cache-Control: no-cache\`, so the cache forwards every one and each checks out a pooled connection. A 2 s warm-up on each server first. Latency is wrk's, from sending a request to its response (the wait between requests is not in it); errors are socket errors plus statuses ≥ 400."
echo "- Flood: \`wrk -t1 -c$flood_conns -d$((secs + 2 * lead))s --timeout 5s\` as \`$flooder\` (plan \`free\`) with no pause, rotating \`GET /api/deals?limit=50\` (the tenant's $((seed / 4)) deals sorted by amount), \`/api/leads?limit=50\` and \`/api/activity?limit=50\`, all with \`Cache-Control: no-cache\`; started $lead s before the quiet load and ending $lead s after it (its counts cover the whole $((secs + 2 * lead)) s). The status classes are counted by wrk's \`response\` hook."
echo "- (e): the flooding tenant's reads again, on the paced server, but from $steady_conns connections that each wait $steady_delay ms between their requests (about its plan's 20 requests/s, a little over once its burst is spent: the counts show how many were refused), for the same $((secs + 2 * lead)) s around the quiet load: what the share its plan allows costs the quiet tenants, with no flood on top."
echo "- Before measuring, \`q01\`, \`q$quiet_tenants\` and \`$flooder\` were checked on every server: 200, \`Cache-Status: parapet; fwd=…\` (not a hit), and \`RateLimit-Policy: \"free\";q=40;w=2\` with quotas on, none with quotas off. The scenario also stops when the flooder got no 429 with quotas on, or any with quotas off."
echo "- wrk (two processes during a flood), the three demos and PostgreSQL share the machine's $(nproc) cores."
