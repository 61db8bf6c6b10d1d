# Helpers for the scenarios that run the demo CRM (claims, scale): a PostgreSQL cluster of the
# scenario's own (initdb on a free port, fsync off, stopped and removed afterwards) and the demo
# binary started against it. Sourced after lib.sh. They append to $pids and $pg_dirs, which the
# scenario's EXIT trap cleans up with demo_stop and pg_stop_all.
# shellcheck shell=bash
: "${bench_bin:?source bench/lib.sh first}"

need wrk curl postgresql-client -- wrk curl psql
pids=() pg_dirs=()
pg_bin=""

# as_pg <command>...: runs it as the postgres user when root (initdb refuses root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# pg_start <dir> <max_connections>: initdb and start a cluster in <dir>; sets $pg_port.
pg_start() {
  pg_bin=$(find /usr/lib/postgresql -maxdepth 3 -name initdb -path '*/bin/*' | sort -V | tail -1 | xargs dirname)
  mkdir -p "$1"
  chmod a+x "$(dirname "$1")"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$1"
  as_pg "$pg_bin/initdb" -A trust -U postgres --no-sync -D "$1/data" > /dev/null
  pg_port=$("$bench_bin/stack" free-port)
  as_pg "$pg_bin/pg_ctl" -w -t 30 -l "$1/log" -D "$1/data" \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $1 -c fsync=off -c max_connections=$2" start > /dev/null
  pg_dirs+=("$1")
}

# pg_stop_all: stops and removes every cluster pg_start made.
pg_stop_all() {
  local d
  for d in "${pg_dirs[@]+"${pg_dirs[@]}"}"; do
    as_pg "$pg_bin/pg_ctl" -D "$d/data" -m fast -w stop > /dev/null 2>&1 || true
    rm -rf "$d"
  done
  pg_dirs=()
}

# demo_start <scenario> <log> [VAR=value...] -- [args]: starts the demo (release) on a free port
# with the given environment; sets $addr and $demo_pid. Exits when it does not come up.
demo_start() {
  local name=$1 log=$2 port env=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do env+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  port=$("$bench_bin/stack" free-port)
  env RUST_LOG=warn PARAPET_LISTEN="127.0.0.1:$port" "${env[@]}" "$bench_bin/example-crm" "$@" > "$log" 2>&1 &
  demo_pid=$!
  pids+=("$demo_pid")
  for _ in $(seq 1 1200); do
    if grep -q '^parapet demo CRM listening' "$log"; then
      # shellcheck disable=SC2034 # for the scenario
      addr="127.0.0.1:$port"
      return 0
    fi
    kill -0 "$demo_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name: the demo did not start:" >&2
  cat "$log" >&2
  exit 1
}

# demo_stop <pid>: stops a demo and waits for it.
demo_stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# demo_cleanup: the EXIT trap of a demo scenario: every demo stopped, every cluster removed,
# and the scenario's temporary directory $work deleted.
demo_cleanup() {
  local p
  for p in "${pids[@]+"${pids[@]}"}"; do demo_stop "$p"; done
  pids=()
  pg_stop_all
  rm -rf "${work:?}"
}
