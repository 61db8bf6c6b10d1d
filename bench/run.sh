#!/usr/bin/env bash
# parapet's benchmark suite: builds in release, runs every scenario side by side in one run, and
# rewrites BENCHMARKS.md with the figures, the command, the machine and the date.
#
#   bash bench/run.sh            # all scenarios
#   bash bench/run.sh pool       # only the named ones
#
# Scenarios start their own servers (a PostgreSQL cluster on a free port) and send traffic to
# 127.0.0.1 only; every loop is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(pool)

cargo build --release --locked -p parapet-bench --bins

out=$(mktemp)
{
  echo "# Benchmarks"
  echo
  echo "Speed claims live here, measured side by side in one run with a command anyone can rerun;"
  echo "never in timed unit tests. Targets are goals to measure against, not assertions: the tables"
  echo "report what the run showed, misses included."
  echo
  echo "- Command: \`bash bench/run.sh ${scenarios[*]}\`"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); shared with other work, so absolute figures move between runs; ratios from one run are what to compare"
  echo "- Toolchain: $(rustc --version); PostgreSQL $(psql --version | awk '{print $3}') (a cluster of the benchmark's own, \`fsync=off\`)"
  echo
  for s in "${scenarios[@]}"; do
    case "$s" in
      pool)
        echo "## Pools (parapet-pool)"
        echo
        ./target/release/pool
        ;;
      *) echo "unknown scenario: $s" >&2; exit 2 ;;
    esac
  done
} > "$out"
mv "$out" BENCHMARKS.md
echo "BENCHMARKS.md rewritten"
