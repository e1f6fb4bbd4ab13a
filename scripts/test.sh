#!/usr/bin/env bash
# Runs every test of emmap on a fresh Debian 12 machine (installs what is
# missing first). Stages, each in its own build directory:
#   build/         linux backend: GoogleTest contract suite (+ EUnit when built)
#   build-asan/    the same tests with -Db_sanitize=address,undefined
#   build-darwin/  darwin backend (portable paths): the same GoogleTest and
#                  EUnit suites, which assert darwin's documented answers
#                  where it differs (no resize of a live map: fixed_size, and
#                  a queue or block storage full at its capacity)
#   build-bsd/     bsd backend: the same GoogleTest and EUnit suites
#   valgrind       the GoogleTest suites of build/ under valgrind
#   install        `meson install` to a staging dir, then a C++ program built
#                  with `pkg-config --cflags --libs emmap` against it, and the
#                  installed OTP application through ERL_LIBS
#   as a dependency  fresh rebar3 and mix apps that depend on this checkout
#                  (git URL, _checkouts, path), a release, the Elixir example,
#                  rebar3 eunit / dialyzer / edoc (scripts/test-as-dependency.sh)
# Prints each stage's wall time, then ends with one line
# "emmap: N passed, N failed"; exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."

# begin NAME: ends the running stage (its wall time is noted) and starts
# NAME; `begin ""` only ends.
stage_times=()
stage_name=""
stage_start=$SECONDS
begin() {
  [ -n "$stage_name" ] && stage_times+=("$stage_name: $((SECONDS - stage_start)) s")
  stage_name=$1
  stage_start=$SECONDS
  [ -z "$1" ] || echo "=== $1 ==="
}

begin "dependencies"
EMMAP_DEPS=test bash scripts/deps.sh || exit 1

passed=0
failed=0
failures=()

# count BUILD_DIR [SETUP]: adds the results of the last `meson test` in BUILD_DIR.
count() {
  local log="$1/meson-logs/testlog${2:+-$2}.json" p f
  [ -f "$log" ] || { failed=$((failed + 1)); return; }
  read -r p f < <(python3 - "$log" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL", "SKIP"): ok += 1
    else: bad += 1
print(ok, bad)
PY
)
  passed=$((passed + p))
  failed=$((failed + f))
}

# stage NAME BUILD_DIR [meson setup args...] -- [meson test args...]
stage() {
  local name=$1 dir=$2
  shift 2
  local setup=() testargs=()
  while (($#)) && [ "$1" != "--" ]; do setup+=("$1"); shift; done
  (($#)) && shift
  testargs=("$@")
  begin "$name"
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "${setup[@]}" >/dev/null || { failures+=("$name: setup"); failed=$((failed + 1)); return; }
  else
    meson setup "$dir" "${setup[@]}" >/dev/null || { failures+=("$name: setup"); failed=$((failed + 1)); return; }
  fi
  if ! meson compile -C "$dir"; then
    failures+=("$name: build")
    failed=$((failed + 1))
    return
  fi
  # The stress suite (10^6-call fuzz) is its own target: meson test --suite stress
  meson test -C "$dir" --print-errorlogs --no-suite stress "${testargs[@]}" || failures+=("$name")
  count "$dir"
}

stage "linux backend" build -Dos_backend=linux
stage "address+undefined sanitizers" build-asan -Dos_backend=linux -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=disabled
# The Erlang layer too: every EUnit suite (the scheduler suite included:
# about 10 s) and the demo run on each backend.
stage "darwin backend" build-darwin -Dos_backend=darwin -Dbenchmarks=disabled -Derlang=enabled
stage "bsd backend" build-bsd -Dos_backend=bsd -Dbenchmarks=disabled -Derlang=enabled

begin "valgrind"
meson test -C build --setup valgrind --suite core --print-errorlogs || failures+=("valgrind")
count build valgrind

begin "install + pkg-config"
if bash scripts/check-install.sh build; then
  passed=$((passed + 1))
else
  failures+=("install")
  failed=$((failed + 1))
fi

begin "as a dependency"
dep_log=$(mktemp)
bash scripts/test-as-dependency.sh 2>&1 | tee "$dep_log"
dep_out=$(tail -1 "$dep_log")
rm -f "$dep_log"
if [[ $dep_out =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
  [ "${BASH_REMATCH[2]}" -eq 0 ] || failures+=("as a dependency")
else
  failures+=("as a dependency")
  failed=$((failed + 1))
fi

begin ""
printf 'time %s\n' "${stage_times[@]}" "total: $SECONDS s"
((${#failures[@]})) && printf 'failed stage: %s\n' "${failures[@]}"
echo "emmap: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
