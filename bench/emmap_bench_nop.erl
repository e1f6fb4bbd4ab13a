%% Loads bench/nop_nif: a NIF call that does nothing (see emmap_bench).
-module(emmap_bench_nop).
-export([nop/3]).
-on_load(init/0).

init() ->
    erlang:load_nif(filename:join(filename:dirname(code:which(?MODULE)), "nop_nif"), 0).

nop(_, _, _) -> erlang:nif_error(nif_not_loaded).
