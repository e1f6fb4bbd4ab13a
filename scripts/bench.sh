#!/usr/bin/env bash
# Builds emmap (optimised) and runs the benchmarks: the C++ core against
# memcpy/std::atomic, then the Erlang API against its floors. Each prints
# figures and the ratio to a baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=disabled >/dev/null
meson compile -C build-release >/dev/null
echo "== C++ core =="
./build-release/bench/core_bench --benchmark_min_time=0.2 | sed -n '/^operation/,$p'
echo
echo "== Erlang =="
erl -noshell -pa build-release/erl/emmap/ebin -pa build-release/bench \
    -eval 'emmap_bench:main(), halt().'
