%%% EUnit suite for iommap: the reference README's quick start and every
%%% function, on the emmap engine.
-module(iommap_tests).
-include_lib("eunit/include/eunit.hrl").

tmp(Name) ->
    Dir = case os:getenv("TMPDIR") of false -> "/tmp"; "" -> "/tmp"; D -> D end,
    filename:join(Dir, lists:flatten(io_lib:format("iommap-~s-~p-~s",
                                                   [Name, erlang:unique_integer([positive]), os:getpid()]))).

quick_start_test() ->
    F = tmp("quick"),
    {ok, H} = iommap:open(F, read_write, [create, {size, 4096}]),
    ok = iommap:pwrite(H, 0, <<"Hello, iommap!">>),
    {ok, <<"Hello, iommap!">>} = iommap:pread(H, 0, 14),
    ok = iommap:sync(H),
    ok = iommap:close(H),
    ?assertEqual({error, closed}, iommap:pread(H, 0, 1)),
    file:delete(F).

modes_and_options_test() ->
    F = tmp("modes"),
    {ok, W} = iommap:open(F, [create, {size, 100}, shared, populate, nocache]),
    ok = iommap:pwrite(W, 0, ["io", <<"list">>]),
    {ok, R} = iommap:open(F, read, []),
    ?assertEqual({ok, <<"iolist">>}, iommap:pread(R, 0, 6)),
    ?assertEqual({error, eacces}, iommap:pwrite(R, 0, <<"x">>)),
    {ok, P} = iommap:open(F, read_write, [private]),
    ok = iommap:pwrite(P, 0, <<"PRIV">>),
    ?assertEqual({ok, <<"iolist">>}, iommap:pread(W, 0, 6)),
    %% lock means mlock here: it works, or says why (RLIMIT_MEMLOCK)
    case iommap:open(F, read, [lock]) of
        {ok, L} -> iommap:close(L);
        {error, Reason} -> ?assert(lists:member(Reason, [enomem, eperm, eagain]))
    end,
    {ok, T} = iommap:open(F, write, [truncate, create, {size, 10}]),
    ?assertEqual({ok, 10}, iommap:position(T)),
    ?assertEqual({error, {invalid_option, bogus}}, iommap:open(F, [bogus])),
    ?assertError(badarg, iommap:open(F, append, [])),
    [iommap:close(X) || X <- [W, R, P, T]],
    file:delete(F).

region_binary_test() ->
    F = tmp("region"),
    {ok, H} = iommap:open(F, [create, {size, 64}]),
    ok = iommap:pwrite(H, 10, <<"view">>),
    {ok, V} = iommap:region_binary(H, 10, 4),
    ?assertEqual(<<"view">>, V),
    ok = iommap:pwrite(H, 10, <<"VIEW">>),
    ?assertEqual(<<"VIEW">>, V),                      % zero-copy: sees the write
    ?assertEqual({ok, <<>>}, iommap:region_binary(H, 64, 0)),
    ?assertEqual({error, einval}, iommap:region_binary(H, 60, 5)),
    ?assertEqual({error, einval}, iommap:region_binary(H, 16#FFFFFFFFFFFFFFFF, 2)),
    ok = iommap:close(H),
    ?assertEqual(<<"VIEW">>, V),                      % keeps the mapping alive
    file:delete(F).

truncate_position_sync_advise_test() ->
    F = tmp("trunc"),
    {ok, H} = iommap:open(F, [create, {size, 4096}]),
    ok = iommap:pwrite(H, 0, <<"keep">>),
    ok = iommap:truncate(H, 1 bsl 20),
    ?assertEqual({ok, 1 bsl 20}, iommap:position(H)),
    ?assertEqual(1 bsl 20, filelib:file_size(F)),
    ok = iommap:pwrite(H, (1 bsl 20) - 4, <<"tail">>),
    ok = iommap:truncate(H, 4),
    ?assertEqual({ok, <<"keep">>}, iommap:pread(H, 0, 100)),
    ?assertEqual(ok, iommap:sync(H, sync)),
    ?assertEqual(ok, iommap:sync(H, async)),
    ?assertError(badarg, iommap:sync(H, later)),
    [?assertEqual(ok, iommap:advise(H, 0, 4, Hint)) || Hint <- [normal, random, sequential, willneed, dontneed]],
    receive Unexpected -> ?assertEqual(no_message, Unexpected) after 100 -> ok end,
    ok = iommap:close(H),
    ?assertEqual({error, closed}, iommap:position(H)),
    file:delete(F).
