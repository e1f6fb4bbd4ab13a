#!/usr/bin/env bash
# The main job: builds emmap and runs its demo on a temporary file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
exec ./build/examples/emmap_demo "$@"
