#!/usr/bin/env bash
# Rewrites the generated blocks of BENCHMARKS.md and leaves the rest, which is written by hand.
# A generated block sits between `<!-- begin generated: <source> -->` and
# `<!-- end generated: <source> -->`; <source> is `machine` (the machine and toolchain this runs
# on) or `bench/results/<scenario>.md` (that file, as the scenario last wrote it). A block whose
# results file does not exist keeps its text; a results file without a block is appended at the
# end. `bash bench/run.sh` calls this after its scenarios; run alone, it only reassembles.
source "$(dirname "$0")/lib.sh"

machine=$(mktemp) out=$(mktemp)
trap 'rm -f "$machine" "$out"' EXIT
{
  echo "- Command: \`bash bench/run.sh\` (all scenarios) or \`bash bench/run.sh <scenario>...\`; each section says when and how it was last measured"
  echo "- Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); shared with other work, so absolute figures move between runs; ratios from one run are what to compare"
  echo "- Toolchain: $(rustc --version); PostgreSQL $(psql --version | awk '{print $3}')"
} > "$machine"

if [ ! -f BENCHMARKS.md ]; then
  printf '# Benchmarks\n\n<!-- begin generated: machine -->\n<!-- end generated: machine -->\n' > BENCHMARKS.md
fi
# Each block: the marker, the source's lines, a blank line when the source does not end with
# one (so that a list or a table ends before the closing marker), the closing marker.
awk -v machine="$machine" '
  function emit(file,    line, last, n) {
    n = 0
    while ((getline line < file) > 0) { print line; last = line; n++ }
    close(file)
    if (n > 0 && last != "") print ""
    return n
  }
  /^<!-- begin generated: [^ ]+ -->$/ {
    if (open != "") { printf "BENCHMARKS.md:%d: a block opens inside %s\n", NR, open > "/dev/stderr"; bad = 1; exit 1 }
    open = $4
    print
    skip = (emit(open == "machine" ? machine : open) > 0)
    next
  }
  /^<!-- end generated: [^ ]+ -->$/ {
    if ($4 != open) { printf "BENCHMARKS.md:%d: closes %s, open: %s\n", NR, $4, open > "/dev/stderr"; bad = 1; exit 1 }
    open = ""; skip = 0
    print
    next
  }
  !skip { print }
  END {
    if (!bad && open != "") { printf "BENCHMARKS.md: %s is never closed\n", open > "/dev/stderr"; exit 1 }
  }
' BENCHMARKS.md > "$out"

for s in "${scenarios[@]}"; do
  f="bench/results/$s.md"
  if [ -f "$f" ] && ! grep -qxF "<!-- begin generated: $f -->" "$out"; then
    {
      echo
      echo "<!-- begin generated: $f -->"
      cat "$f"
      [ -z "$(tail -n 1 "$f")" ] || echo
      echo "<!-- end generated: $f -->"
    } >> "$out"
  fi
done
cat "$out" > BENCHMARKS.md
echo "BENCHMARKS.md rewritten"
