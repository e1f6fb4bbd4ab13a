#!/usr/bin/env bash
# Installs BUILD_DIR into a staging directory and builds a small C++ program
# against it with pkg-config, as a user of the C++ library would.
set -euo pipefail
build=${1:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --quiet
pc=$(dirname "$(find "$stage" -name emmap.pc | head -1)")
[ -n "$pc" ] || { echo "emmap.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH="$pc" PKG_CONFIG_SYSROOT_DIR="$stage"
cat > "$stage/use.cpp" <<'CPP'
#include <emmap/emmap.h>
#include <cstdio>
int main() {
  emmap::OpenOptions o;
  o.write = o.anonymous = true;
  auto r = emmap::Mapping::open("", 0, 4096, o);
  if (!r) return 1;
  if (r->mapping->write(0, "installed", 9)) return 2;
  char buf[9];
  auto n = r->mapping->read(0, buf, 9);
  if (!n || *n != 9) return 3;
  std::printf("%.9s via pkg-config (%s backend)\n", buf, r->mapping->backend().name().data());
  return 0;
}
CPP
# shellcheck disable=SC2046
g++ -std=c++20 -o "$stage/use" "$stage/use.cpp" $(pkg-config --cflags --libs emmap)
libdir=$(dirname "$(find "$stage" -name 'libemmap.so*' | head -1)")
LD_LIBRARY_PATH="$libdir" "$stage/use"
