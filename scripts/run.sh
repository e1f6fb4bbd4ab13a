#!/usr/bin/env bash
# The main job: builds emmap and runs the Erlang demo on a temporary file
# (shared memory between two OS processes, counters that survive a restart,
# a zero-copy binary that sees a write). `--cpp` runs the C++ demo instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
if [ "${1:-}" = "--cpp" ]; then
  exec ./build/examples/emmap_demo
fi
root=$PWD
cd build/erl/emmap   # not beside loose beams: "." is on the code path
exec erl -noshell -pa "$root/build/erl/emmap/ebin" -pa "$root/build/examples" -eval 'emmap_demo:main().'
