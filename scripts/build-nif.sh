#!/bin/sh
# Builds the NIF for rebar3 and mix (rebar.config's pre_hooks run it in the
# application's directory, in a checkout, a git or path dependency, or
# under _checkouts): Meson, the one build of the C++ code, compiles
# emmap_nif.so against the Erlang that runs rebar3, and it is placed in
# priv/, where code:priv_dir(emmap) finds it.
#
#   sh scripts/build-nif.sh          build (incremental) and install into priv/
#   sh scripts/build-nif.sh clean    remove the build and priv/emmap_nif.so
#
# EMMAP_MESON_OPTIONS passes options to `meson setup`, for example
#   EMMAP_MESON_OPTIONS="-Dio_uring=disabled" rebar3 compile
# (see meson_options.txt; a change of options reconfigures the build).
# MESON, NINJA and CXX name other programs than meson, ninja and c++.
set -eu
app=$(cd "$(dirname "$0")/.." && pwd)
build="$app/_build/emmap-nif"
priv="$app/priv"

if [ "${1:-}" = clean ]; then
  rm -rf "$build" "$priv/emmap_nif.so"
  exit 0
fi

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "emmap: building the NIF needs $2 (Debian: apt-get install meson ninja-build g++ erlang-dev)" >&2
  exit 1
}
meson=${MESON:-meson}
need "$meson" "Meson >= 1.0"
need "${NINJA:-ninja}" "Ninja"
# Without CXX: the first of c++, g++, clang++ on PATH (Meson looks for the
# same ones), passed on to Meson so both use one compiler.
if [ -z "${CXX:-}" ]; then
  for c in c++ g++ clang++; do
    if command -v "$c" >/dev/null 2>&1; then CXX=$c; break; fi
  done
fi
cxx=${CXX:-c++}
need "$cxx" "a C++20 compiler (g++ >= 10 or clang++ >= 12)"
export CXX
if ! printf '#include <version>\n#if __cplusplus < 202002L\n#error\n#endif\nint main(){}\n' |
     "$cxx" -std=c++20 -x c++ - -o /dev/null >/dev/null 2>&1; then
  echo "emmap: building the NIF needs a C++20 compiler; $cxx is not one (Debian: apt-get install g++)" >&2
  exit 1
fi

# The Erlang running rebar3 (rebar3 exports its root and erts version to
# hooks); otherwise the erl on PATH.
if [ -n "${ERLANG_ROOT_DIR:-}" ] && [ -n "${ERLANG_ERTS_VER:-}" ] &&
   [ -f "$ERLANG_ROOT_DIR/erts-$ERLANG_ERTS_VER/include/erl_nif.h" ]; then
  erts_include="$ERLANG_ROOT_DIR/erts-$ERLANG_ERTS_VER/include"
else
  need erl "Erlang/OTP (erl)"
  erts_include=$(erl -noshell -eval 'io:format("~s", [filename:join([code:root_dir(), "usr", "include"])]), halt().')
fi
if [ ! -f "$erts_include/erl_nif.h" ]; then
  echo "emmap: building the NIF needs erl_nif.h, not found in $erts_include (Debian: apt-get install erlang-dev)" >&2
  exit 1
fi

options="--buildtype=release -Derlang=enabled -Dtests=disabled -Dbenchmarks=disabled -Derts_include=$erts_include ${EMMAP_MESON_OPTIONS:-}"
if [ ! -f "$build/build.ninja" ] || [ "$(cat "$build/.emmap-options" 2>/dev/null)" != "$options" ]; then
  rm -rf "$build"
  mkdir -p "$app/_build"
  # shellcheck disable=SC2086 # the options are words
  "$meson" setup "$build" "$app" $options >"$app/_build/emmap-nif-setup.log" 2>&1 || {
    cat "$app/_build/emmap-nif-setup.log" >&2
    echo "emmap: meson setup failed (log above)" >&2
    exit 1
  }
  printf '%s' "$options" >"$build/.emmap-options"
fi
"$meson" compile -C "$build" nif/emmap_nif >/dev/null || {
  echo "emmap: compiling the NIF failed; run: meson compile -C $build nif/emmap_nif" >&2
  exit 1
}
mkdir -p "$priv"
# Replace by rename: a running VM that has the old file loaded keeps it.
cp "$build/nif/emmap_nif.so" "$priv/.emmap_nif.so.new"
mv -f "$priv/.emmap_nif.so.new" "$priv/emmap_nif.so"
