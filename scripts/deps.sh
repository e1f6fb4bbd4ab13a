#!/usr/bin/env bash
# Installs the Debian packages emmap needs that are missing (Debian 12).
# Sourced or run by scripts/run.sh and scripts/test.sh; a no-op when all are there.
set -euo pipefail

packages=(meson ninja-build g++ pkg-config libgtest-dev libbenchmark-dev liburing-dev
          valgrind erlang-nox erlang-dev erlang-eunit)
# The "as a dependency" stage of the tests: rebar3, mix, dialyzer, edoc, git.
if [ "${EMMAP_DEPS:-}" = test ]; then
  packages+=(rebar3 elixir erlang-dialyzer erlang-edoc git)
fi
# scripts/bench.sh draws its chart with gnuplot; scripts/bench-instructions.sh
# counts instructions with perf (and bc for the ratios).
if [ "${EMMAP_DEPS:-}" = bench ]; then
  packages+=(gnuplot-nox linux-perf bc)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "emmap: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
