%%% EUnit suite for iommap: the reference README's quick start and every
%%% function, on the emmap engine.
-module(iommap_tests).
-include_lib("eunit/include/eunit.hrl").

tmp(Name) ->
    Dir = case os:getenv("TMPDIR") of false -> "/tmp"; "" -> "/tmp"; D -> D end,
    filename:join(Dir, lists:flatten(io_lib:format("iommap-~s-~p-~s",
                                                   [Name, erlang:unique_integer([positive]), os:getpid()]))).

%% The backend this build compiled in (emmap:info/1 says). darwin cannot
%% resize a live map (README.md, "Backends"): truncate/2 answers
%% {error, fixed_size} there.
can_resize() ->
    {ok, M, _} = emmap:open("", 0, 4096, [anon, read, write]),
    #{backend := B} = emmap:info(M),
    ok = emmap:close(M),
    B =/= darwin.

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
    ?assertEqual({error, out_of_bounds}, iommap:region_binary(H, 60, 5)),
    ?assertEqual({error, out_of_bounds}, iommap:region_binary(H, 16#FFFFFFFFFFFFFFFF, 2)),
    ?assertEqual({error, out_of_bounds}, iommap:region_binary(H, 65, 0)),
    ?assertEqual({error, badarg}, iommap:region_binary(H, -1, 2)),
    ok = iommap:close(H),
    ?assertEqual(<<"VIEW">>, V),                      % keeps the mapping alive
    file:delete(F).

truncate_position_sync_advise_test() ->
    F = tmp("trunc"),
    {ok, H} = iommap:open(F, [create, {size, 4096}]),
    ok = iommap:pwrite(H, 0, <<"keep">>),
    case can_resize() of
        true ->
            ok = iommap:truncate(H, 1 bsl 20),
            ?assertEqual({ok, 1 bsl 20}, iommap:position(H)),
            ?assertEqual(1 bsl 20, filelib:file_size(F)),
            ok = iommap:pwrite(H, (1 bsl 20) - 4, <<"tail">>),
            ok = iommap:truncate(H, 4),
            ?assertEqual({error, out_of_bounds}, iommap:pread(H, 0, 100));
        false ->
            ?assertEqual({error, fixed_size}, iommap:truncate(H, 1 bsl 20)),
            ?assertEqual({error, fixed_size}, iommap:truncate(H, 4)),
            ?assertEqual({ok, 4096}, iommap:position(H)),
            ?assertEqual(4096, filelib:file_size(F)),
            ?assertEqual({error, out_of_bounds}, iommap:pread(H, 4000, 100))
    end,
    ?assertEqual({ok, <<"keep">>}, iommap:pread(H, 0, 4)),
    ?assertEqual(ok, iommap:sync(H, sync)),
    ?assertEqual(ok, iommap:sync(H, async)),
    ?assertEqual({error, badarg}, iommap:sync(H, later)),
    [?assertEqual(ok, iommap:advise(H, 0, 4, Hint)) || Hint <- [normal, random, sequential, willneed, dontneed]],
    receive Unexpected -> ?assertEqual(no_message, Unexpected) after 100 -> ok end,
    ok = iommap:close(H),
    ?assertEqual({error, closed}, iommap:position(H)),
    file:delete(F).

%%% ---------------------------------------------------------------------------
%%% iommap's own semantics where they differ from emmap's (issue 11)
%%% ---------------------------------------------------------------------------

%% Nothing short, nothing past the end: an access fits inside the map or
%% answers out_of_bounds; zero bytes at the very end are fine.
bounds_test() ->
    F = tmp("bounds"),
    {ok, H} = iommap:open(F, read_write, [create, {size, 100}]),
    ?assertEqual({error, out_of_bounds}, iommap:pread(H, 90, 20)),
    ?assertEqual({error, out_of_bounds}, iommap:pread(H, 100, 1)),
    ?assertEqual({error, out_of_bounds}, iommap:pread(H, 101, 0)),
    ?assertEqual({error, out_of_bounds}, iommap:pread(H, 16#FFFFFFFFFFFFFFFF, 16#FFFFFFFFFFFFFFFF)),
    ?assertEqual({ok, <<>>}, iommap:pread(H, 100, 0)),
    ?assertEqual({ok, <<>>}, iommap:pread(H, 0, 0)),
    ?assertEqual({ok, <<0:800>>}, iommap:pread(H, 0, 100)),
    ?assertEqual({error, out_of_bounds}, iommap:pwrite(H, 90, <<"12345678901234567890">>)),
    ?assertEqual({error, out_of_bounds}, iommap:pwrite(H, 100, <<"x">>)),
    ?assertEqual({error, out_of_bounds}, iommap:pwrite(H, 101, <<>>)),
    ?assertEqual(ok, iommap:pwrite(H, 100, <<>>)),
    ?assertEqual({ok, <<0:800>>}, iommap:pread(H, 0, 100)),     % nothing was written
    ?assertEqual(ok, iommap:advise(H, 0, 100, normal)),
    ?assertEqual({error, out_of_bounds}, iommap:advise(H, 90, 20, normal)),
    ?assertEqual({error, out_of_bounds}, iommap:advise(H, 4000, 200, willneed)),
    %% a shrinking truncate moves the end (darwin: fixed_size, the end stays)
    ok = iommap:pwrite(H, 90, <<"at end">>),
    case can_resize() of
        true ->
            ok = iommap:truncate(H, 50),
            ?assertEqual({ok, 50}, iommap:position(H)),
            ?assertEqual({error, out_of_bounds}, iommap:pread(H, 90, 6)),
            ?assertEqual({error, out_of_bounds}, iommap:pwrite(H, 49, <<"ab">>));
        false ->
            ?assertEqual({error, fixed_size}, iommap:truncate(H, 50)),
            ?assertEqual({ok, 100}, iommap:position(H)),
            ?assertEqual({ok, <<"at end">>}, iommap:pread(H, 90, 6)),
            ?assertEqual({error, out_of_bounds}, iommap:pwrite(H, 99, <<"ab">>))
    end,
    ok = iommap:close(H),
    file:delete(F).

%% Bad values are answered, not raised; bad types and a NUL in a path raise.
bad_arguments_test() ->
    F = tmp("badarg"),
    {ok, H} = iommap:open(F, read_write, [create, {size, 100}]),
    ?assertEqual({error, badarg}, iommap:pread(H, -1, 10)),
    ?assertEqual({error, badarg}, iommap:pread(H, 0, -10)),
    ?assertEqual({error, badarg}, iommap:pwrite(H, -1, <<"test">>)),
    ?assertEqual({error, badarg}, iommap:region_binary(H, 0, -1)),
    ?assertEqual({error, badarg}, iommap:advise(H, -1, 10, normal)),
    ?assertEqual({error, badarg}, iommap:truncate(H, -1)),
    ?assertEqual({error, einval}, iommap:truncate(H, 0)),
    ?assertEqual({ok, 100}, iommap:position(H)),
    ?assertEqual({error, badarg}, iommap:open(42, read_write, [])),
    ?assertEqual({error, badarg}, iommap:open(F ++ "x", read_write, [create, {size, -1}])),
    ?assertError(badarg, iommap:pread(H, foo, 1)),
    ?assertError(badarg, iommap:pwrite(H, 0, 42)),
    ?assertError(badarg, iommap:advise(H, 0, 1, sideways)),
    ?assertError(badarg, iommap:open(F ++ [0] ++ "x", read_write, [create, {size, 10}])),
    ?assertError(badarg, iommap:open(<<"/tmp/a", 0, "b">>, read_write, [create, {size, 10}])),
    ?assertError(badarg, iommap:open(F, read_write, [create | size])),
    ok = iommap:close(H),
    file:delete(F).

double_close_test() ->
    F = tmp("close2"),
    {ok, H} = iommap:open(F, read_write, [create, {size, 100}]),
    ?assertEqual(ok, iommap:close(H)),
    ?assertEqual({error, closed}, iommap:close(H)),
    [?assertEqual({error, closed}, R)
     || R <- [iommap:pread(H, 0, 10), iommap:pwrite(H, 0, <<"test">>), iommap:sync(H),
              iommap:position(H), iommap:truncate(H, 200), iommap:advise(H, 0, 100, normal),
              iommap:region_binary(H, 0, 1)]],
    file:delete(F).

%% create or truncate in read mode: einval, and no file appears (nor does an
%% existing one lose its bytes).
read_mode_cannot_change_the_file_test() ->
    New = tmp("ro-new"),
    ?assertEqual({error, einval}, iommap:open(New, read, [create, {size, 10}])),
    ?assertEqual({error, einval}, iommap:open(New, read, [create])),
    ?assertEqual({error, einval}, iommap:open(New, read, [truncate])),
    ?assertNot(filelib:is_file(New)),
    Old = tmp("ro-old"),
    ok = file:write_file(Old, <<"precious">>),
    ?assertEqual({error, einval}, iommap:open(Old, read, [truncate])),
    ?assertEqual({ok, <<"precious">>}, file:read_file(Old)),
    file:delete(Old).

%% {size, N} never shrinks: the map covers the whole file; a smaller file
%% grows to N; an empty file needs a size.
size_never_shrinks_test() ->
    F = tmp("size"),
    ok = file:write_file(F, binary:copy(<<"z">>, 1000)),
    {ok, H} = iommap:open(F, read_write, [{size, 100}]),
    ?assertEqual({ok, 1000}, iommap:position(H)),
    ?assertEqual({ok, <<"zz">>}, iommap:pread(H, 998, 2)),
    ?assertEqual(1000, filelib:file_size(F)),
    ok = iommap:close(H),
    {ok, G} = iommap:open(F, read_write, [{size, 4096}]),
    ?assertEqual({ok, 4096}, iommap:position(G)),
    ?assertEqual(4096, filelib:file_size(F)),
    ?assertEqual({ok, <<"z", 0>>}, iommap:pread(G, 999, 2)),
    ok = iommap:close(G),
    {ok, R} = iommap:open(F, read, []),
    ?assertEqual({ok, 4096}, iommap:position(R)),
    ok = iommap:close(R),
    %% Growing the file takes write access.
    ?assertEqual({error, eacces}, iommap:open(F, read, [{size, 8192}])),
    ?assertEqual(4096, filelib:file_size(F)),
    %% A private map of a smaller file grows the file too (zeros), and
    %% keeps its own writes.
    {ok, P} = iommap:open(F, read_write, [private, {size, 8192}]),
    ?assertEqual({ok, 8192}, iommap:position(P)),
    ?assertEqual(8192, filelib:file_size(F)),
    ok = iommap:pwrite(P, 0, <<"mine">>),
    ok = iommap:close(P),
    ?assertMatch({ok, <<"zzzz", _/binary>>}, file:read_file(F)),
    Empty = tmp("empty"),
    ok = file:write_file(Empty, <<>>),
    ?assertEqual({error, einval}, iommap:open(Empty, read_write, [])),
    ?assertEqual({error, einval}, iommap:open(Empty, read, [])),
    {ok, E} = iommap:open(Empty, read_write, [{size, 10}]),
    ?assertEqual({ok, 10}, iommap:position(E)),
    ok = iommap:close(E),
    [file:delete(X) || X <- [F, Empty]].
