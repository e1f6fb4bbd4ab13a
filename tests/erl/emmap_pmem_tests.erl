%%% EUnit suite for persistent memory in forced mode (README.md,
%%% "Persistent memory"): meson runs it with EMMAP_PMEM_FORCE=1 in the
%%% environment (the VM's own copy of the environment is what the NIF
%%% reads, so it cannot be set from inside the test). Without it (rebar3
%%% eunit) it checks that maps are ordinary.
-module(emmap_pmem_tests).

-include_lib("eunit/include/eunit.hrl").

tmp(Name) ->
    Dir = case os:getenv("TMPDIR") of
              false -> "/tmp";
              "" -> "/tmp";
              D -> D
          end,
    filename:join(Dir, lists:flatten(io_lib:format("emmap-pmem-~s-~p-~s",
                                     [Name, erlang:unique_integer([positive]), os:getpid()]))).

forced() -> os:getenv("EMMAP_PMEM_FORCE") =:= "1".

forced_shared_map_persists_by_flush_test() ->
    case forced() of
        true -> forced_checks(tmp("force"));
        false ->
            %% rebar3 eunit: the forced checks need the environment at VM
            %% start. Under meson (EMMAP_TEST_BACKEND set) it is always there.
            ?assertEqual(false, os:getenv("EMMAP_TEST_BACKEND"))
    end.

forced_checks(F) ->
    try
        {ok, P, _} = emmap:open(F, [create, read, write, sync, {size, 3 * 4096}]),
        #{persistence := Pers, device_dax := false, pmem_forced := true} = emmap:info(P),
        ?assert(lists:member(Pers, [flush, eadr])),
        Big = crypto:strong_rand_bytes(5000),
        ok = emmap:pwrite(P, 3, Big),                 % large: non-temporal stores
        ok = emmap:pwrite(P, 6000, <<"small">>),
        ?assertEqual(ok, emmap:sync(P, 3, 6010)),
        ?assertEqual(ok, emmap:sync(P)),
        ?assertEqual({error, einval}, emmap:sync(P, 1 bsl 40, 1)),
        {ok, Ref} = emmap:sync_async(P),
        receive {emmap_sync, Ref, R} -> ?assertEqual(ok, R)
        after 10000 -> ?assert(false)
        end,
        {ok, Bin} = file:read_file(F),
        ?assertEqual(Big, binary:part(Bin, 3, 5000)),
        ?assertEqual(<<"small">>, binary:part(Bin, 6000, 5)),
        ok = emmap:close(P),
        ?assertEqual({error, closed}, emmap:sync(P)),
        {ok, Priv, _} = emmap:open(F, [read, write, private]),
        ?assertMatch(#{persistence := msync}, emmap:info(Priv)),
        ok = emmap:close(Priv),
        {ok, Q} = emmap_queue:open(F ++ ".q", 4096, [{sync, always}]),
        [ok = emmap_queue:push(Q, {item, I}) || I <- lists:seq(1, 50)],
        ?assertEqual({item, 1}, emmap_queue:pop(Q)),
        ok = emmap_queue:close(Q)
    after
        file:delete(F),
        file:delete(F ++ ".q")
    end.
