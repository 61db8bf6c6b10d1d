#!/usr/bin/env bash
# wallclock: where a request's CPU time goes, bare axum against the full stack's local-tier hit (perf).
# The stack scenario's `bare` and `hit` servers, one at a time, under its wrk load (-t2 -c64):
# `perf stat` counts the server process's CPU time, context switches and system calls while wrk
# runs, then `perf record` samples where that CPU time goes (kernel, the binary, libc; threads;
# symbols). Prints the markdown section; fails when perf cannot count on this machine. Shorter
# runs: WALL_SECS (10 s per count and per profile).
source "$(dirname "$0")/../lib.sh"

heading wallclock "Where the wall-clock time goes (perf)"
need wrk linux-perf curl -- wrk perf curl
if ! perf stat -e task-clock true > /dev/null 2>&1; then
  echo "wallclock: perf stat cannot count on this machine (perf_event_paranoid $(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null))" >&2
  exit 1
fi
bin=$bench_bin/stack threads=2 conns=64 secs=${WALL_SECS:-10} futex_secs=3 tenant=acme workers=2
# Other allocators, preloaded into both servers for one more CPU count each, where installed
# (Debian's libjemalloc2 and libmimalloc2.0); none is needed.
declare -A preload=()
for a in jemalloc mimalloc; do
  for f in /usr/lib/*-linux-gnu/lib$a.so.2; do
    [ -e "$f" ] && preload[$a]=$f
  done
done
work=$(mktemp -d)
prefix="parapet:bench:wallclock:$$:$(date +%s):"
pid=""
syscalls=(writev recvfrom epoll_wait futex)
# Two counts: CPU time and scheduling alone, then the system calls, whose tracepoints slow every
# call down (their numbers are counts, not times, so that does not change them much).
events="task-clock,context-switches,cpu-migrations"
sys_events="raw_syscalls:sys_enter"
for s in "${syscalls[@]}"; do sys_events+=",syscalls:sys_enter_$s"; done
if ! perf stat -e "$sys_events" true > /dev/null 2>&1; then
  echo "wallclock: perf cannot count the system call tracepoints here (run as root, with tracefs)" >&2
  exit 1
fi
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null
  rm -rf "$work"
}
trap cleanup EXIT
wrk_report_lua > "$work/report.lua"
declare -A label=([bare]="bare axum" [hit]="full stack, local-tier hit")
declare -A res=()

# run <variant> [allocator]: starts the server (with the allocator preloaded, if given), checks
# it, counts, profiles, stops it. With an allocator only the CPU count runs, under the key
# <variant>.<allocator>.
run() {
  local v=$1 alloc=${2:-} k=$1 env=()
  if [ -n "$alloc" ]; then
    k=$v.$alloc env=(env "LD_PRELOAD=${preload[$alloc]}")
  fi
  "${env[@]}" "$bin" serve "$v" --prefix "${prefix}$k:" --workers "$workers" > "$work/$k.log" 2>&1 &
  pid=$!
  wait_listening wallclock "$k" "$work/$k.log" "$pid"
  local url="http://$addr/api/item"
  curl -s -o /dev/null -H "X-Tenant-Id: $tenant" "$url"
  if [ "$v" = hit ]; then
    res[$k,check]=$(header_check wallclock "$k" "$url" cache-status '^parapet; hit' -H "X-Tenant-Id: $tenant") || exit 1
  else
    res[$k,check]=$(header_check wallclock "$k" "$url" content-type '^application/json' -H "X-Tenant-Id: $tenant") || exit 1
  fi
  wrk -t$threads -c$conns -d2s -H "X-Tenant-Id: $tenant" "$url" > /dev/null # warm-up
  # Each count lasts exactly one wrk run (perf stat runs wrk and counts the server): requests
  # are wrk's, the counts the server's.
  count "$k" "$url" "$events" cpu
  if [ -z "$alloc" ]; then
    count "$k" "$url" "$sys_events" sys
    # The profile: samples of the server's threads during a load of the same shape.
    wrk -t$threads -c$conns -d$((secs + 2))s --timeout 2s -H "X-Tenant-Id: $tenant" "$url" > /dev/null &
    local wpid=$!
    sleep 1
    perf record -q -F 1999 -p "$pid" -o "$work/$v.data" -- sleep "$secs" > /dev/null 2>&1
    wait "$wpid"
    perf report -i "$work/$v.data" --stdio --sort dso 2> /dev/null | grep '%' | grep -v '^#' > "$work/$v.dso" || true
    perf report -i "$work/$v.data" --stdio --sort comm 2> /dev/null | grep '%' | grep -v '^#' > "$work/$v.comm" || true
    perf report -i "$work/$v.data" --stdio --sort dso,sym 2> /dev/null | grep '%' | grep -v '^#' | head -14 > "$work/$v.sym" || true
    # Where the futex calls come from: each call's stack, sorted into what made it.
    wrk -t$threads -c$conns -d$((futex_secs + 2))s --timeout 2s -H "X-Tenant-Id: $tenant" "$url" > /dev/null &
    wpid=$!
    sleep 1
    perf record -q -e syscalls:sys_enter_futex --call-graph dwarf,16384 -p "$pid" \
      -o "$work/$v.futex.data" -- sleep "$futex_secs" > /dev/null 2>&1
    wait "$wpid"
    perf script -i "$work/$v.futex.data" 2> /dev/null | futex_origins > "$work/$v.futex" || true
  fi
  kill "$pid" 2> /dev/null
  wait "$pid" 2> /dev/null || true
  pid=""
  echo "wallclock: $k: ${res[$k,cpu.rps]} requests/s, $(per "$k" cpu 1000) µs of CPU per request" >&2
}

# futex_origins: reads `perf script` of futex calls with their stacks; prints "<share> <origin>"
# lines, largest first. A call is put under the first of these its stack shows, nearest first.
futex_origins() {
  awk '
    function origin(stack) {
      if (stack ~ /__lll_lock_wa/) {
        if (stack ~ /SpanData/) return "glibc allocator, an arena lock: span data freed on the export thread"
        return "glibc allocator, an arena lock: a worker malloc or free"
      }
      if (stack ~ /span_processor|BatchMessage/) return "the batch span processor: its channel and its thread"
      if (stack ~ /multi_thread::(park|worker)|Condvar|Parker|unpark|notify/) return "Tokio workers parking and waking one another"
      return "other"
    }
    /^[^ \t]/ { if (n) { c[origin(stack)]++; total++ } stack = ""; n = 1; next }
    /^[ \t]/ { stack = stack " " $0; next }
    END {
      if (n) { c[origin(stack)]++; total++ }
      for (k in c) printf "%.1f %% %s\n", 100 * c[k] / total, k
    }' | sort -rn
}

# count <variant> <url> <events> <run>: one wrk run under `perf stat -p <server>`; sets the
# run's requests and requests/s, and the counters.
count() {
  local v=$1 url=$2 events=$3 r=$4 n us e value k
  perf stat -x, -e "$events" -p "$pid" -o "$work/$v.$r.stat" -- \
    wrk -t$threads -c$conns -d"${secs}s" --timeout 2s -s "$work/report.lua" \
    -H "X-Tenant-Id: $tenant" "$url" > "$work/$v.$r.wrk"
  read -r n us _ _ e _ <<< "$(wrk_line "$(cat "$work/$v.$r.wrk")")"
  if [ "$e" != 0 ]; then
    echo "wallclock: $v: $e errors under load" >&2
    exit 1
  fi
  res[$v,$r.req]=$n
  res[$v,$r.rps]=$(rps "$n" "$us")
  while IFS=, read -r value _ k _; do
    case "$k" in
      task-clock) res[$v,cpu]=$value ;; # milliseconds
      context-switches) res[$v,cs]=$value ;;
      cpu-migrations) res[$v,mig]=$value ;;
      raw_syscalls:sys_enter) res[$v,sys]=$value ;;
      syscalls:sys_enter_*) res[$v,${k#syscalls:sys_enter_}]=$value ;;
    esac
  done < <(grep -v '^#' "$work/$v.$r.stat" | grep ,)
}

# per <variant> <counter> [scale]: the counter per request (times scale), two decimals.
per() {
  local r=cpu
  case "$2" in cpu | cs | mig) ;; *) r=sys ;; esac
  awk -v c="${res[$1,$2]:-0}" -v n="${res[$1,$r.req]}" -v s="${3:-1}" 'BEGIN{printf "%.3f", c * s / n}'
}
# share <variant> <pattern>: the summed share of the DSOs matching the awk pattern.
share() { awk -v p="$2" '$2 ~ p {gsub("%", "", $1); s += $1} END{printf "%.1f %%", s}' "$work/$1.dso"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", (b > 0 ? a / b : 0)}'; }

run bare
run hit
allocs=()
for a in jemalloc mimalloc; do
  [ -n "${preload[$a]:-}" ] || continue
  allocs+=("$a")
  run bare "$a"
  run hit "$a"
done

echo "| per request, under \`wrk -t$threads -c$conns\` | ${label[bare]} | ${label[hit]} | hit / bare |"
echo "|---|---|---|---|"
row() { # <label> <counter> [scale]
  local a b
  a=$(per bare "$2" "${3:-1}") b=$(per hit "$2" "${3:-1}")
  echo "| $1 | $a | $b | $(ratio "$b" "$a") |"
}
echo "| requests/s while CPU time was counted | ${res[bare,cpu.rps]} | ${res[hit,cpu.rps]} | $(ratio "${res[hit,cpu.rps]}" "${res[bare,cpu.rps]}") |"
row "CPU time, µs (all the server's threads)" cpu 1000
for a in "${allocs[@]+"${allocs[@]}"}"; do
  b=$(per "bare.$a" cpu 1000) h=$(per "hit.$a" cpu 1000)
  echo "| CPU time, µs, with $a preloaded into both servers (requests/s ${res[bare.$a,cpu.rps]} and ${res[hit.$a,cpu.rps]}: $(ratio "${res[hit.$a,cpu.rps]}" "${res[bare.$a,cpu.rps]}")) | $b | $h | $(ratio "$h" "$b") |"
done
row "context switches" cs
row "CPU migrations" mig
echo "| requests/s while system calls were counted (tracepoints slow them) | ${res[bare,sys.rps]} | ${res[hit,sys.rps]} | $(ratio "${res[hit,sys.rps]}" "${res[bare,sys.rps]}") |"
row "system calls, all" sys
for s in "${syscalls[@]}"; do row "\`$s\`" "$s"; done
for d in kernel "the binary" libc; do
  case "$d" in
    kernel) p='kernel' ;;
    "the binary") p='^stack$' ;;
    libc) p='^libc' ;;
  esac
  echo "| share of CPU samples: $d | $(share bare "$p") | $(share hit "$p") | |"
done
echo
echo "Threads of the full stack's server, share of its CPU samples:"
echo
awk '{printf "- `%s` %s\n", $2, $1}' "$work/hit.comm"
echo
echo "Where the futex calls come from (share of the calls, by the stack of each, over ${futex_secs} s of the same load):"
echo
echo "| origin | bare axum | full stack, local-tier hit |"
echo "|---|---|---|"
cat "$work/hit.futex" "$work/bare.futex" | cut -d' ' -f3- | awk '!seen[$0]++' | while read -r o; do
  fb=$(awk -v o="$o" '{k = $0; sub(/^[^%]*% /, "", k)} k == o {print $1 " %"}' "$work/bare.futex")
  fh=$(awk -v o="$o" '{k = $0; sub(/^[^%]*% /, "", k)} k == o {print $1 " %"}' "$work/hit.futex")
  echo "| $o | ${fb:-0 %} | ${fh:-0 %} |"
done
echo
echo "The full stack's hottest symbols (share of all its CPU samples, self time):"
echo
awk '{sym = ""; for (i = 4; i <= NF; i++) sym = sym (i > 4 ? " " : "") $i; printf "- %s `%s` (%s)\n", $1, sym, $2}' "$work/hit.sym"
echo
echo "How it was run:"
echo
echo "- The servers of the stack scenario (\`$bin serve bare|hit --workers $workers\`, release build with \`debug = \"line-tables-only\"\`, one at a time; the hit answers from the local tier, checked before: \`cache-status: ${res[hit,check]}\`), each under \`wrk -t$threads -c$conns -H 'X-Tenant-Id: $tenant'\` on \`GET /api/item\` after a 2 s warm-up."
echo "- The counts: \`perf stat -e $events -p <server> -- wrk … -d${secs}s\`, then the same with \`-e $sys_events\`; per request = the count / wrk's requests in that run. CPU time is the server's, all its threads (Tokio's workers, the batch span processor's, the metric reader's); wrk's own is not in it."
echo "- The profile: \`perf record -F 1999 -p <server>\` for $secs s inside a second wrk run of the same shape; \`perf report --sort dso\`, \`--sort comm\` and \`--sort dso,sym\`. \`[kernel.kallsyms]\` is the kernel's time on the server's behalf (its sockets, epoll, futex wake-ups, scheduling)."
echo "- The futex origins: \`perf record -e syscalls:sys_enter_futex --call-graph dwarf -p <server>\` for ${futex_secs} s inside a third wrk run, each call's stack read with \`perf script\` and put under the first origin it shows: glibc's allocator waiting for or waking an arena's lock (\`__lll_lock_wait_private\`, \`__lll_lock_wake_private\`; with \`SpanData\` in the stack when the batch span processor's thread frees a span the workers allocated), the batch span processor's channel, Tokio's workers parking and waking."
[ ${#allocs[@]} -gt 0 ] && echo "- With an allocator preloaded (\`LD_PRELOAD=${preload[${allocs[0]}]}\`${allocs[1]:+ and \`${preload[${allocs[1]}]}\`}), both servers ran again under the same load for the CPU count alone; the binaries are the same."
echo "- wrk (2 threads) and the server (2 worker threads) share the machine's $(nproc) cores, as in the stack scenario; perf $(perf version 2> /dev/null | awk '{print $3}')."
