# Helpers for the scenarios that run the demo CRM (claims, noisy, propagation, scale): a
# PostgreSQL cluster of the scenario's own (initdb on a free port, fsync off, stopped and removed
# afterwards), the demo binary started against it, the tenants a scenario adds. Sourced after
# lib.sh. They append to $pids and $pg_dirs, which the scenario's EXIT trap cleans up with
# demo_stop and pg_stop_all.
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

# demo_setup <scenario> <max_connections>: the shape every demo scenario starts with: a
# temporary directory $work, the EXIT trap (demo_cleanup), a cluster of its own in $work/pg and
# $db, the URL of the scenario's database on it (parapet_bench_<scenario>; the demo creates it).
demo_setup() {
  work=$(mktemp -d)
  trap demo_cleanup EXIT
  pg_start "$work/pg" "$2"
  db="postgres://postgres@127.0.0.1:$pg_port/parapet_bench_$1"
}

# demo_prepare <scenario> <seed> [VAR=value...]: a first start of the demo on $db that creates,
# migrates and seeds the database (quota off), then stops it, so tenants added afterwards exist
# before the first measured request.
demo_prepare() {
  local name=$1 seed=$2
  shift 2
  demo_start "$name" "$work/prep.log" DATABASE_URL="$db" "$@" PARAPET_QUOTA=off -- --seed "$seed"
  demo_stop "$demo_pid"
  pids=()
}

# demo_add_tenants <id prefix> <digits> <count> <leads each> <deals each> <name prefix>: adds
# <count> tenants on plan free (<id prefix> and a number padded to <digits>: q01, t0001; named
# <name prefix> and the number) with their leads and deals to $db, then ANALYZE.
demo_add_tenants() {
  local p=$1 w=$2 n=$3 leads=$4 deals=$5 label=$6
  psql -q -v ON_ERROR_STOP=1 "$db" <<SQL
INSERT INTO tenants (id, name, plan)
  SELECT '$p' || lpad(i::text, $w, '0'), '$label' || i, 'free' FROM generate_series(1, $n) AS i;
INSERT INTO leads (org_id, name, email, status, created_at)
  SELECT '$p' || lpad(i::text, $w, '0'), 'Lead ' || j, 'lead' || j || '@$p' || i || '.example',
         (ARRAY['new','contacted','qualified','lost','converted'])[1 + j % 5],
         now() - make_interval(secs => j * 37)
  FROM generate_series(1, $n) AS i, generate_series(1, $leads) AS j;
INSERT INTO deals (org_id, title, stage, amount)
  SELECT '$p' || lpad(i::text, $w, '0'), 'Deal ' || j,
         (ARRAY['prospecting','qualification','proposal','negotiation','won','lost'])[1 + j % 6],
         (i * 7919 + j) % 5000000
  FROM generate_series(1, $n) AS i, generate_series(1, $deals) AS j;
ANALYZE;
SQL
}
