%% Loads bench/floor_nif: the least a NIF can do for each of emmap's hot
%% paths (same arguments, same result, a static buffer; see floor_nif.c).
-module(emmap_bench_floor).
-export([patomic/4, patomic_read/2, patomic_write/3, pread/3, pread_direct/3, pwrite/3]).
-on_load(init/0).

init() ->
    erlang:load_nif(filename:join(filename:dirname(code:which(?MODULE)), "floor_nif"), 0).

patomic(_, _, _, _) -> erlang:nif_error(nif_not_loaded).
patomic_read(_, _) -> erlang:nif_error(nif_not_loaded).
patomic_write(_, _, _) -> erlang:nif_error(nif_not_loaded).
pread(_, _, _) -> erlang:nif_error(nif_not_loaded).
pread_direct(_, _, _) -> erlang:nif_error(nif_not_loaded).
pwrite(_, _, _) -> erlang:nif_error(nif_not_loaded).
