# Helpers shared by the benchmark scenarios (bench/scenarios/*.sh) and bench/run.sh. Sourced,
# not run: it turns on strict mode and moves to the repository root, so every path below is
# relative to it.
# shellcheck shell=bash
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Every scenario (bench/scenarios/<name>.sh), in the order of BENCHMARKS.md.
# shellcheck disable=SC2034 # for run.sh and report.sh
scenarios=(claims pool stack wallclock instructions cache cache-bytes telemetry scale propagation noisy)

# The release binaries `cargo build --release` wrote (it honours CARGO_TARGET_DIR too).
# shellcheck disable=SC2034 # for the scenarios
bench_bin="${CARGO_TARGET_DIR:-target}/release"

# need <apt package>... -- <command>...: installs the packages when one of the commands is
# missing (the scenarios run on a disposable machine as root; elsewhere, install them first).
need() {
  local packages=() tool
  while [ "$1" != -- ]; do packages+=("$1"); shift; done
  shift
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null; then
      apt-get update -qq >&2 && apt-get install -y -qq "${packages[@]}" >&2
      return
    fi
  done
}

# wait_listening <scenario> <name> <log> <pid> [tries]: waits (tries x 0.1 s, 300 by default) for
# the `listening <addr>` line a bench server (`stack serve`) prints, and sets $addr to it; shows
# the log and exits when the server died or never said it.
wait_listening() {
  local i
  addr=""
  for ((i = 0; i < ${5:-300}; i++)); do
    addr=$(awk '/^listening /{print $2; exit}' "$3")
    [ -n "$addr" ] && return 0
    kill -0 "$4" 2> /dev/null || break
    sleep 0.1
  done
  echo "$1: the $2 server did not start:" >&2
  cat "$3" >&2
  exit 1
}

# heading <scenario> <title>: the section's heading and the line that says when, with which
# command and on what it was measured.
heading() {
  echo "## $2"
  echo
  echo "_Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`bash bench/run.sh $1\` on $(nproc) cores, $(rustc --version | awk '{print $1, $2}')._"
  echo
}

# median: the median of the whitespace-separated numbers on stdin (the upper one of an even count).
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# ms <µs>: microseconds as milliseconds with two decimals.
ms() { awk -v u="$1" 'BEGIN{printf "%.2f ms", u / 1000}'; }

# wrk_report_lua: wrk's `done` hook, to append to a wrk script. It prints one line,
#   WRK <requests> <duration µs> <p50 µs> <p99 µs> <errors> <status errors>
# where errors are the socket errors (connect, read, write, timeout) plus responses with a
# status ≥ 400 (wrk's status count; it does not count 1xx/3xx), and status errors the latter.
wrk_report_lua() {
  cat <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, e.status))
end
LUA
}

# wrk_line <wrk output>: the fields of the WRK line, without the tag.
wrk_line() { grep '^WRK ' <<< "$1" | cut -d' ' -f2-; }

# rps <requests> <duration µs>: requests per second, rounded.
rps() { awk -v n="$1" -v us="$2" 'BEGIN{printf "%.0f", n / (us / 1e6)}'; }

# header_check <scenario> <name> <url> <header> <regex> [curl option...]: one GET. Prints the
# header's value when the status is 200 and the value matches <regex>; otherwise says what came
# back and exits, since a misconfigured server must not silently measure the wrong path. Call it
# as `value=$(header_check ...) || exit 1`: an exit inside $(...) only ends that subshell.
header_check() {
  local scenario=$1 name=$2 url=$3 header=$4 regex=$5 head status value
  shift 5
  head=$(curl -s -o /dev/null -D - "$@" "$url" | tr -d '\r')
  status=$(printf '%s\n' "$head" | awk 'NR==1{print $2}')
  value=$(printf '%s\n' "$head" | awk -v h="$header" \
    'index(tolower($0), tolower(h) ": ") == 1 {print substr($0, length(h) + 3); exit}')
  if [ "$status" != 200 ] || ! [[ "$value" =~ $regex ]]; then
    echo "$scenario: $name is misconfigured: status '$status', $header: '$value' (expected /$regex/)" >&2
    exit 1
  fi
  printf '%s\n' "$value"
}
