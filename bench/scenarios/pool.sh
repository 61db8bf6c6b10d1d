#!/usr/bin/env bash
# pool: pooled checkout vs new connections, the indexes, 1,000 tenants on one server.
# bench/src/bin/pool.rs on a PostgreSQL cluster of its own: a pooled checkout vs a new connection
# per request, the query shapes with and without the performance indexes on 1,000,000 leads, and
# 1,000 tenants against one server. Prints the markdown section.
source "$(dirname "$0")/../lib.sh"

heading pool "Pools (parapet-pool)"
"$bench_bin/pool"
