#!/usr/bin/env bash
# cache-bytes: the local tier's byte bound, 1,000,000 distinct entries into 64 and 256 MiB.
# bench/src/bin/cache_bytes.rs: weighted size and RSS growth against the capacity, each capacity
# in a process of its own. Prints the markdown section.
source "$(dirname "$0")/../lib.sh"

heading cache-bytes "Local tier byte bound (parapet-cache)"
"$bench_bin/cache_bytes"
