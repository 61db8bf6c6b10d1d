#!/usr/bin/env bash
# parapet's benchmark suite: builds in release, runs the scenarios one after the other, and
# rewrites the generated parts of BENCHMARKS.md. Usage: `bash bench/run.sh --help`.
#
# Each scenario is bench/scenarios/<name>.sh: it prints its markdown section (heading, the date,
# command and machine, the measured tables, how it was run) on stdout, progress on stderr, and
# fails when a server it measures does not answer the way it must. This script keeps the section
# in bench/results/<name>.md only when the scenario succeeded, then bench/report.sh splices every
# results file into BENCHMARKS.md. Scenarios start their own servers where they need to stop or
# reconfigure one, send traffic to 127.0.0.1 only, and bound every loop in count or time.
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'USAGE'
Usage: bash bench/run.sh [--no-build] [scenario...]
       bash bench/run.sh --report | --list | --help

  (no scenario)   every scenario, in one run
  scenario...     only these; the others keep their last figures
  --no-build      use the release binaries already built (the scenarios need them)
  --report        only rebuild BENCHMARKS.md from bench/results/
  --list          the scenarios, one line each

Shorter runs (for a smoke test; the published figures use the defaults):
  STACK_SECS=10 STACK_ROUNDS=3
  CLAIMS_SECS=10 CLAIMS_STEP_SECS=5 CLAIMS_ROUNDS=3 CLAIMS_SEED=100000 CLAIMS_MAX_CONNS=4096
  SCALE_SECS=60
  INSTR_SMALL=200 INSTR_LARGE=700 INSTR_VARIANTS="quota-429 redis-429" (bare always runs)
  WALL_SECS=10 CACHE_HITS=20000
  NOISY_SECS=30 NOISY_SEED=100000 NOISY_QUIET_DELAY_MS=80 NOISY_PACE_MS=1000
USAGE
}

# describe <scenario>: the first line of the scenario's header comment.
describe() { sed -n '2s/^# //p' "bench/scenarios/$1.sh"; }

build=1 chosen=()
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --list) for s in "${scenarios[@]}"; do describe "$s"; done; exit 0 ;;
    --report) exec bash bench/report.sh ;;
    --no-build) build=0 ;;
    -*) usage >&2; exit 2 ;;
    *)
      if [ ! -f "bench/scenarios/$arg.sh" ]; then
        echo "unknown scenario: $arg (known: ${scenarios[*]})" >&2
        exit 2
      fi
      chosen+=("$arg")
      ;;
  esac
done
[ ${#chosen[@]} -gt 0 ] || chosen=("${scenarios[@]}")

if [ "$build" = 1 ]; then
  cargo build --release --locked -p example-crm -p parapet-bench --bins
fi
for s in "${chosen[@]}"; do
  echo "== $s" >&2
  tmp=$(mktemp)
  if ! bash "bench/scenarios/$s.sh" > "$tmp"; then
    rm -f "$tmp"
    echo "$s failed: bench/results/$s.md keeps its last figures" >&2
    exit 1
  fi
  cat "$tmp" > "bench/results/$s.md"
  rm -f "$tmp"
done
bash bench/report.sh
