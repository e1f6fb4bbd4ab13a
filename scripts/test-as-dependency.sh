#!/usr/bin/env bash
# emmap as a dependency, as users consume it, offline (no hex):
#   1. a fresh rebar3 app depending on this checkout by git URL (its HEAD):
#      compile, call emmap, build a release, move it, start it, call emmap
#   2. the same app with emmap under _checkouts (this working tree)
#   3. a fresh mix app depending on this working tree by path, and one by
#      git URL: compile, call emmap
#   4. examples/elixir: its ExUnit tests
#   5. in this checkout: rebar3 eunit, rebar3 dialyzer (no warning), rebar3
#      edoc and a check that the docs cover every exported function
#   6. the build hook's message when Meson is missing
# Prints "as a dependency: N passed, N failed"; exits non-zero on failure.
# Caches (rebar3's dialyzer PLT, mix's home) live in a temporary directory:
# shared between these steps, never between runs.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
epmd_before=$(pgrep -x epmd || true)
cleanup() {
  # A release left running by a failed step, and the epmd it started.
  [ -x "$work/rel/bin/depapp" ] && "$work/rel/bin/depapp" stop >/dev/null 2>&1
  [ -z "$epmd_before" ] && pgrep -x epmd >/dev/null && epmd -kill >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

export REBAR_CACHE_DIR="$work/rebar3-cache"
export MIX_HOME="$work/mix-home" HEX_OFFLINE=1 MIX_REBAR3
MIX_REBAR3=$(command -v rebar3)
export TMPDIR="$work"

passed=0
failed=0
# step NAME COMMAND...: runs COMMAND, its output in a log shown on failure.
step() {
  local name=$1 log
  shift
  log="$work/log-$((passed + failed)).txt"
  if (set -e; "$@") >"$log" 2>&1; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    sed 's/^/     | /' "$log" | tail -60
    failed=$((failed + 1))
  fi
}

head=$(git -C "$top" rev-parse HEAD)

# A module the apps call: a file map, atomics, a queue; prints where the NIF
# was found, so a release shows it runs its own copy.
demo_erl='-module(depapp_demo).
-export([run/0]).
run() ->
    File = filename:join(os:getenv("TMPDIR", "/tmp"), "depapp-" ++ os:getpid()),
    {ok, M, _} = emmap:open(File, [create, read, write, auto_unlink, {size, 4096}]),
    ok = emmap:pwrite(M, 0, <<"as a dependency">>),
    {ok, <<"as a dependency">>} = emmap:pread(M, 0, 15),
    {ok, 0} = emmap:patomic_add(M, 64, 5),
    {ok, 5} = emmap:patomic_read_integer(M, 64),
    ok = emmap:close(M),
    {ok, Q} = emmap_queue:open(File ++ ".q", 4096, [auto_unlink]),
    ok = emmap_queue:push(Q, {event, 1}),
    {event, 1} = emmap_queue:pop(Q),
    ok = emmap_queue:close(Q),
    {ok, emmap_works, code:priv_dir(emmap)}.'

new_rebar3_app() {
  cd "$work"
  rebar3 new app depapp
  cd depapp
  cat >rebar.config <<EOF
{erl_opts, [debug_info]}.
{deps, [{emmap, {git, "file://$top", {ref, "$head"}}}]}.
{relx, [{release, {depapp, "0.1.0"}, [depapp, emmap]},
        {dev_mode, false}, {include_erts, true}, {include_src, false},
        {extended_start_script, true}]}.
EOF
  printf '%s\n' "$demo_erl" >src/depapp_demo.erl
}

call_rebar3_app() {
  out=$(erl -noshell -pa _build/default/lib/*/ebin -eval 'io:format("~p~n", [depapp_demo:run()]), halt().')
  echo "$out"
  grep -Eq "\{ok, ?emmap_works, ?\"[^\"]*/emmap/priv\"\}" <<<"$out"
}

rebar3_git_dep() {
  new_rebar3_app
  rebar3 compile
  test -f _build/default/lib/emmap/priv/emmap_nif.so
  call_rebar3_app
}

rebar3_release() {
  cd "$work/depapp"
  rebar3 release
  # Moved away from the build: the release carries its own NIF.
  mv _build/default/rel/depapp "$work/rel"
  test -f "$work/rel/lib/emmap-$(cat "$top/VERSION")/priv/emmap_nif.so"
  "$work/rel/bin/depapp" daemon
  for _ in $(seq 100); do "$work/rel/bin/depapp" ping >/dev/null 2>&1 && break; sleep 0.1; done
  out=$("$work/rel/bin/depapp" eval 'depapp_demo:run().')
  "$work/rel/bin/depapp" stop
  echo "$out"
  grep -Eq "\{ok, ?emmap_works, ?\"$work/rel/lib/emmap-[0-9.]+/priv\"\}" <<<"$out"
}

rebar3_checkouts() {
  cd "$work/depapp"
  rm -rf _build rebar.lock
  mkdir -p _checkouts
  ln -s "$top" _checkouts/emmap
  rebar3 compile
  call_rebar3_app
  rm _checkouts/emmap
}

new_mix_app() {
  cd "$work"
  mix new "$1"
  cd "$1"
  sed -i "s|      # {:dep_from_hexpm, \"~> 0.3.0\"},|      $2,|" mix.exs
  grep -q ':emmap' mix.exs
  mix deps.get
  mix compile
  out=$(mix run -e 'IO.inspect(:emmap.open(Path.join(System.tmp_dir!(), "mix.bin"), [:create, :read, :write, :auto_unlink, size: 64]) |> elem(0)); {:ok, q} = :emmap_queue.open(Path.join(System.tmp_dir!(), "mix.q"), 4096, [:auto_unlink]); :ok = :emmap_queue.push(q, %{from: :elixir}); IO.inspect(:emmap_queue.pop(q))')
  echo "$out"
  grep -q '^:ok$' <<<"$out"
  grep -q '%{from: :elixir}' <<<"$out"
}

elixir_example() {
  cd "$top/examples/elixir"
  rm -rf _build deps
  mix test
}

rebar3_eunit() { cd "$top" && rebar3 eunit; }

rebar3_dialyzer() {
  cd "$top"
  out=$(rebar3 dialyzer 2>&1)
  echo "$out"
  # rebar3 fails on warnings; say so plainly if any slipped through.
  ! grep -q "Warnings occurred" <<<"$out"
}

docs() {
  cd "$top"
  rm -rf doc
  rebar3 edoc
  for m in emmap emmap_queue iommap; do test -s "doc/$m.html"; done
  grep -q "Zero-copy binaries change under you" doc/overview-summary.html
  escript scripts/check_docs.escript
}

missing_meson_message() {
  rm -rf "$work/nomeson"
  git clone -q "$top" "$work/nomeson"
  cd "$work/nomeson"
  if out=$(MESON=/nonexistent/meson sh scripts/build-nif.sh 2>&1); then return 1; fi
  echo "$out"
  [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q "^emmap: building the NIF needs Meson" <<<"$out"
}

step "rebar3 app, emmap as a git dependency: compile and call" rebar3_git_dep
step "rebar3 release with emmap: moved, started, called" rebar3_release
step "rebar3 app, emmap under _checkouts: compile and call" rebar3_checkouts
step "mix app, emmap by path: compile and call" new_mix_app depmix_path "{:emmap, path: \"$top\"}"
step "mix app, emmap by git URL: compile and call" new_mix_app depmix_git "{:emmap, git: \"file://$top\", ref: \"$head\"}"
step "examples/elixir: mix test" elixir_example
step "rebar3 eunit in the checkout" rebar3_eunit
step "rebar3 dialyzer: no warning" rebar3_dialyzer
step "rebar3 edoc: every exported function documented" docs
step "no Meson: one clear line" missing_meson_message

echo "as a dependency: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
