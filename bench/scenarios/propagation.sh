#!/usr/bin/env bash
# propagation: three demo instances on one Redis Cluster; how long a write's invalidation takes to reach the other two.
# A Redis Cluster of three masters and a PostgreSQL cluster of the scenario's own, three demo
# instances on them (local tier on); 1,000 writes through the first, each followed by reads of
# the other two every 1 ms until they show it. Prints the markdown section. Shorter runs:
# PROPAGATION_WRITES (1,000).
source "$(dirname "$0")/../lib.sh"

heading propagation "Invalidation across three instances on a Redis Cluster"
# shellcheck source=../lib-demo.sh
source bench/lib-demo.sh
need redis-server redis-tools -- redis-server redis-cli
writes=${PROPAGATION_WRITES:-1000}
work=$(mktemp -d)
chmod a+rx "$work"

# redis_cluster_start: three `redis-server --cluster-enabled yes` on free ports in $work/redis,
# joined by `redis-cli --cluster create` (no replicas); sets $seeds. Their pids join $pids.
redis_cluster_start() {
  local port ports=() i
  mkdir -p "$work/redis"
  for i in 1 2 3; do
    port=$("$bench_bin/stack" free-port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file "$work/redis/nodes-$port.conf" \
      --dir "$work/redis" > "$work/redis/$port.log" 2>&1 &
    pids+=("$!")
    ports+=("$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      redis-cli -p "$port" ping > /dev/null 2>&1 && break
      sleep 0.1
    done
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes > "$work/redis/create.log" 2>&1 || {
    echo "propagation: redis-cli --cluster create failed:" >&2
    cat "$work/redis/create.log" >&2
    exit 1
  }
  for port in "${ports[@]}"; do
    for i in $(seq 1 300); do
      redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' && break
      [ "$i" = 300 ] && { echo "propagation: the cluster never reached cluster_state:ok" >&2; exit 1; }
      sleep 0.1
    done
  done
  seeds=$(printf 'redis://127.0.0.1:%s,' "${ports[@]}")
  seeds=${seeds%,}
}

trap demo_cleanup EXIT
redis_cluster_start
pg_start "$work/pg" 100
db="postgres://postgres@127.0.0.1:$pg_port/parapet_bench_propagation"
env=(DATABASE_URL="$db" REDIS_CLUSTER_URLS="$seeds" PARAPET_CACHE_PREFIX="parapet:bench:propagation:$$:"
  PARAPET_TELEMETRY=off PARAPET_QUOTA=off)
# The first start creates, migrates and seeds the database; the other two find it ready.
addrs=()
for i in 1 2 3; do
  demo_start propagation "$work/demo-$i.log" "${env[@]}" -- --seed 1000
  addrs+=("$addr")
done
readiness=$(curl -s "http://${addrs[1]}/readyz")
if ! grep -q '"redis":"up"' <<< "$readiness"; then
  echo "propagation: the demo does not reach the cluster: $readiness" >&2
  exit 1
fi
"$bench_bin/propagation" --writer "${addrs[0]}" --readers "${addrs[1]},${addrs[2]}" \
  --writes "$writes" --poll-ms 1 --deadline-ms 2000
errors=$(cat "$work"/demo-*.log | sed 's/\x1b\[[0-9;]*m//g' | grep -ciE ' (error|warn) |panic' || true)
demo_cleanup
trap - EXIT

echo
echo "How it was run:"
echo
echo "- A Redis Cluster of three masters (\`redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)\`, \`--cluster-enabled yes\`, no replicas, no persistence) and a PostgreSQL cluster (\`initdb\`, \`fsync=off\`), both on free ports of 127.0.0.1 and removed afterwards. Three demo processes (\`target/release/example-crm --seed 1000\`, \`RUST_LOG=warn\`, telemetry and quotas off: the client polls every 1 ms, beyond acme's plan) on one database, with \`REDIS_CLUSTER_URLS\` naming the three nodes, one \`PARAPET_CACHE_PREFIX\`, and the defaults otherwise: a 64 MiB local tier in front of the cluster, \`/api/=10\` s TTL. The demo's log had $errors warning, error or panic lines."
echo "- \`target/release/propagation\` (bench/src/bin/propagation.rs), one client on one thread: $writes rounds of (1) \`GET /api/leads?limit=5\` as acme on each instance until \`Cache-Status\` says \`hit\`, (2) \`POST /api/leads\` through the first instance (the demo purges the tenant's \`leads\` and \`activity\` tags before it answers), (3) the same GET on the other two instances concurrently, every 1 ms, until the newest lead is the one just written (deadline 2 s, counted as 2 s). Propagation is the time from the POST's response to the response of that first fresh read, so it includes one GET's own latency."
echo "- The client, the three demos, the three Redis nodes and PostgreSQL share the machine's $(nproc) cores."
