#!/usr/bin/env bash
# Instructions per call of each NIF hot path and of its bare-NIF floor
# (bench/floor_nif.c), and their ratio: `perf stat -e instructions` over
# 1 M and 31 M calls, the difference divided by 30 M (so start-up and
# loading cancel out). Unlike ops/s, the count does not change with the
# load of the machine, so a change can be judged while other work runs.
#   bash scripts/bench-instructions.sh [SHAPE...]
# Shapes: patomic_add patomic_read patomic_write inc_counter pread
# pread_direct pwrite (inc_counter is compared with patomic_add's floor).
set -euo pipefail
cd "$(dirname "$0")/.."
EMMAP_DEPS=bench bash scripts/deps.sh
command -v perf >/dev/null || { echo "needs perf (Debian: linux-perf)"; exit 1; }
perf stat -e instructions true >/dev/null 2>&1 || { echo "perf cannot count instructions here"; exit 1; }
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=disabled >/dev/null
meson compile -C build-release >/dev/null
count() {  # count SHAPE N: instructions of a whole run
  perf stat -x, -e instructions -- erl -noshell -pa build-release/erl/emmap/ebin -pa build-release/bench \
    -run emmap_bench_calls main "$1" "$2" 2>&1 >/dev/null | awk -F, '/instructions/ {print $1}'
}
per_call() { echo $(( ($(count "$1" 31000000) - $(count "$1" 1000000)) / 30000000 )); }
shapes=("$@")
((${#shapes[@]})) || shapes=(patomic_add patomic_read patomic_write inc_counter pread pread_direct pwrite)
printf '%-16s %12s %12s %8s\n' shape "instr/call" "floor" "ratio"
for s in "${shapes[@]}"; do
  f=floor_$s
  [ "$s" = inc_counter ] && f=floor_patomic_add
  ours=$(per_call "$s"); floor=$(per_call "$f")
  printf '%-16s %12d %12d %7.2fx\n' "$s" "$ours" "$floor" "$(echo "$floor / $ours" | bc -l)"
done
