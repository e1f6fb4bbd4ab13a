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

# The OTP application, where a packager ships it: ERL_LIBS finds it as any
# other library (code:priv_dir(emmap) holds the NIF).
app=$(find "$stage" -type d -name 'emmap-*' -path '*erlang/lib*' | head -1)
if [ -n "$app" ]; then
  ERL_LIBS=$(dirname "$app") erl -noshell -eval '
    ok = application:load(emmap),
    {ok, M, _} = emmap:open("", 0, 4096, [anon, read, write]),
    ok = emmap:pwrite(M, 0, <<"installed">>),
    {ok, <<"installed">>} = emmap:pread(M, 0, 9),
    io:format("installed emmap ~s via ERL_LIBS: ~s~n",
              [element(2, application:get_key(emmap, vsn)), code:priv_dir(emmap)]),
    halt(0).' || { echo "the installed OTP application does not work"; exit 1; }
elif [ -f "$build/erl/emmap/ebin/emmap.app" ]; then
  echo "the OTP application was not installed"; exit 1
fi
