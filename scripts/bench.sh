#!/usr/bin/env bash
# Builds emmap (optimised) and runs the benchmarks: the C++ core against
# memcpy/std::atomic, then the Erlang API against its floors. Each prints
# figures and the ratio to a baseline measured in the same run, and draws
# bench/results/emmap-bench.svg (gnuplot) from the Erlang figures.
set -euo pipefail
cd "$(dirname "$0")/.."
EMMAP_DEPS=bench bash scripts/deps.sh
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=disabled >/dev/null
meson compile -C build-release >/dev/null
echo "== C++ core =="
./build-release/bench/core_bench --benchmark_min_time=0.2 | sed -n '/^operation/,$p'
echo
echo "== Erlang =="
out=build-release/bench-out
mkdir -p "$out" bench/results
EMMAP_BENCH_OUT="$out" erl -noshell -pa build-release/erl/emmap/ebin -pa build-release/bench \
    -eval 'emmap_bench:main(), halt().' | tee "$out/erlang.txt"
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -m), Linux $(uname -r | cut -d- -f1)"
gnuplot -e "data='$out'; out='bench/results/emmap-bench.svg'; title='emmap benchmarks, $(date -u +%Y-%m-%d), $machine'" bench/chart.gp
cp "$out/erlang.txt" bench/results/emmap-bench.txt
echo "chart: bench/results/emmap-bench.svg (figures: bench/results/emmap-bench.txt)"
