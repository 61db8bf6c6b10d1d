#!/usr/bin/env bash
# instructions: instructions per request for each stack variant, counted by callgrind.
# The servers of bench/src/bin/stack.rs (the same variants as the stack scenario) under
# `valgrind --tool=callgrind`, each driven twice by one curl process over one keep-alive connection for an exact number of
# requests; the difference between the two runs divided by the difference in requests is the cost
# of one request, start-up and warm-up cancelled out. Repeatable on a busy machine, unlike the
# wall clock. Prints the markdown section. Shorter runs: INSTR_SMALL (1000), INSTR_LARGE (5000);
# some variants only: INSTR_VARIANTS="bare quota-429" (bare is always run: the ratios need it).
source "$(dirname "$0")/../lib.sh"

heading instructions "Instructions per request (callgrind)"
need valgrind curl redis-tools -- valgrind curl redis-cli
bin=$bench_bin/stack tenant=acme workers=2
small=${INSTR_SMALL:-1000} large=${INSTR_LARGE:-5000}
[ "$large" -gt "$small" ] || { echo "instructions: INSTR_LARGE must exceed INSTR_SMALL" >&2; exit 1; }
work=$(mktemp -d)
prefix="parapet:bench:instr:$$:$(date +%s):"
pid=""

cleanup() {
  local k
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  redis-cli --scan --pattern "${prefix}*" | while read -r k; do redis-cli del "$k" >/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# curl_config <requests> <url>: a curl config that sends <requests> GETs of <url> in turn (one
# curl process reuses its keep-alive connection) and writes each status on its own line.
curl_config() {
  local i
  echo 'header = "X-Tenant-Id: '"$tenant"'"'
  echo 'write-out = "%{http_code}\n"'
  for ((i = 0; i < $1; i++)); do
    echo "url = \"$2\""
    echo 'output = "/dev/null"'
  done
}

# instructions <variant> <requests> [flags]: the server under callgrind, <requests> requests over
# one keep-alive connection, then SIGTERM; prints the process's total instruction count.
instructions() {
  local variant=$1 requests=$2 out line
  shift 2
  out="$work/$variant.$requests"
  valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$bin" serve "$variant" \
    --workers "$workers" "$@" > "$out.log" 2>&1 &
  pid=$!
  wait_listening instructions "$variant (under valgrind)" "$out.log" "$pid" 600
  curl_config "$requests" "http://$addr/api/item" > "$work/curl.conf"
  line=$(curl -s --max-time 900 -K "$work/curl.conf" | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  case "$variant" in
    # One request an hour: the first is allowed, every other one refused.
    *-429) expect="200x1 429x$((requests - 1)) " ;;
    *) expect="200x$requests " ;;
  esac
  if [ "$line" != "$expect" ]; then
    echo "instructions: $variant: expected (status x count) $expect, got: $line" >&2
    exit 1
  fi
  awk '/^(summary|totals):/{print $2; exit}' "$out.cg"
}

declare -A label=(
  [bare]="bare axum"
  [hit]="full stack, local-tier hit"
  [miss]="full stack, cache miss (handler says \`no-store\`)"
  [redis-hit]="full stack, Redis-tier hit"
  [redis-get]="bare axum + one Redis \`GET\`"
  [thc-hit]="tower-http-cache, in-memory hit (no other layer)"
  [quota-429]="full stack + quota, tenant over its quota: 429 (local limiter)"
  [redis-429]="full stack + quota shared through Redis, tenant over its quota: 429"
)
order=(bare hit miss redis-hit redis-get thc-hit quota-429 redis-429)
if [ -n "${INSTR_VARIANTS:-}" ]; then
  order=(bare)
  for v in $INSTR_VARIANTS; do
    [ -n "${label[$v]:-}" ] || { echo "instructions: unknown variant $v" >&2; exit 1; }
    [ "$v" = bare ] || order+=("$v")
  done
fi
declare -A per=()
for v in "${order[@]}"; do
  flags=()
  case "$v" in
    hit | miss | redis-hit | redis-get | quota-429 | redis-429) flags=(--prefix "${prefix}$v:") ;;
  esac
  a=$(instructions "$v" "$small" "${flags[@]+"${flags[@]}"}")
  b=$(instructions "$v" "$large" "${flags[@]+"${flags[@]}"}")
  per[$v]=$(( (b - a) / (large - small) ))
  echo "instructions: $v: $a at $small requests, $b at $large: ${per[$v]} per request" >&2
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; }
meets() { awk -v r="$1" -v t="$2" 'BEGIN{print (r <= t ? "yes" : "**no**")}'; }
echo "| variant | instructions per request | vs bare axum | target | met |"
echo "|---|---|---|---|---|"
for v in "${order[@]}"; do
  r=$(ratio "${per[$v]}" "${per[bare]}") target="" met=""
  case "$v" in
    hit) target="≤ 2.0x bare"; met=$(meets "$r" 2.0) ;;
    redis-hit)
      if [ -n "${per[redis-get]:-}" ]; then
        rg=$(ratio "${per[redis-hit]}" "${per[redis-get]}")
        target="the Redis-GET handler's cost: ${rg}x"
      fi
      ;;
  esac
  echo "| ${label[$v]} | ${per[$v]} | ${r}x | $target | $met |"
done
echo
echo "How it was run:"
echo
echo "- Each variant is the server of the stack scenario (\`stack serve <variant> --workers $workers\`, release build, the same stack, handler and telemetry: a batch span processor and a periodic metric reader whose exporters discard) run under \`valgrind --tool=callgrind\` ($(valgrind --version)), twice: driven by one \`curl -K <config>\` that sends exactly $small, then $large requests \`GET /api/item\` (\`X-Tenant-Id: $tenant\`) in turn over one keep-alive connection, then stopped with SIGTERM. The figure is (total at $large - total at $small) / $((large - small)): the server process's instructions for one more request, start-up, the first miss and the shutdown cancelled out. Every answer was checked to be 200, save in the 429 variants: there the first was checked to be 200 and every other one 429 (plan \`pro\` = one request an hour, a burst of one, the quota layer between the tenant and the cache as in the demo)."
echo "- Valgrind runs the server's threads one at a time, so the counts are the work done, not how it overlaps; curl's own instructions are not counted. The hit variants answer from the cache after their first request; an entry lives 60 s, and each refill when it expires adds the cost of one miss to a run of thousands of requests."
