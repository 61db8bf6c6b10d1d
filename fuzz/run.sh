#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: fuzz/run.sh [seconds-per-target] [target...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and libFuzzer's nightly flags, which a
# stable toolchain accepts with RUSTC_BOOTSTRAP=1 (set here). Each target starts from its
# committed corpus (corpus/<target>/) and adds what it finds there; a crash is saved under
# artifacts/<target>/ and stops the script with a non-zero status. Afterwards, minimise a
# corpus before committing it: cargo fuzz cmin --fuzz-dir fuzz <target>
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: fuzz/run.sh [seconds-per-target] [target...]" >&2; exit 2 ;;
esac
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir .)
fi

cargo fuzz build --fuzz-dir .
for target in "${targets[@]}"; do
  echo "==> $target for ${seconds}s"
  mkdir -p "corpus/$target"
  # -max_len: the encoded cache entries are longer than the default 4 KiB's use.
  max_len=4096
  [ "$target" = decode_entry ] && max_len=65536
  cargo fuzz run --fuzz-dir . "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "all ${#targets[@]} targets ran ${seconds}s each without a crash"
