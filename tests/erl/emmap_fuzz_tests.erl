%%% Calls every exported function of emmap and emmap_queue with random
%%% arguments: live, closed and foreign handles, huge and negative
%%% integers, atoms, floats, binaries, lists, tuples. The VM must stay up
%%% and every answer must have a documented shape: a value, an
%%% {error, Atom} (or {error, {invalid_option, _}}), or a badarg exception.
%%% EMMAP_FUZZ_CALLS sets the count (10^5 in the test command, 10^6 in the
%%% stress suite).
-module(emmap_fuzz_tests).
-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-export([run/1]).

fuzz_test_() ->
    N = case os:getenv("EMMAP_FUZZ_CALLS") of
            false -> 100000;
            S -> list_to_integer(S)
        end,
    {timeout, 3600, fun() -> run(N) end}.

tmpdir() ->
    case os:getenv("TMPDIR") of false -> "/tmp"; "" -> "/tmp"; D -> D end.

run(N) ->
    Dir = filename:join(tmpdir(), "emmap-fuzz-" ++ os:getpid()),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    rand:seed(exsss, {erlang:phash2(N), 7, 42}),
    %% Junk arguments ("string", <<"bin">>, foo) are file names too: relative
    %% ones must land in the fuzz's own directory, not in the caller's.
    {ok, Cwd} = file:get_cwd(),
    ok = file:set_cwd(Dir),
    Counts = try
                 Env = setup(Dir),
                 C = loop(N, Env, #{}),
                 teardown(Env),
                 C
             after
                 ok = file:set_cwd(Cwd)
             end,
    [file:delete(F) || F <- filelib:wildcard(filename:join(Dir, "*"))],
    file:del_dir(Dir),
    %% Every function was called, and the VM is alive to say so.
    ?assertEqual(length(functions()), maps:size(Counts)),
    ok.

setup(Dir) ->
    F = fun(Name) -> filename:join(Dir, Name) end,
    {ok, Live, _} = emmap:open(F("live"), [create, read, write, {size, 65536}]),
    {ok, Direct, _} = emmap:open(F("live"), [read, write, direct]),
    {ok, RO, _} = emmap:open(F("live"), [read]),
    {ok, Closed, _} = emmap:open(F("closed"), [create, read, write, {size, 4096}]),
    ok = emmap:close(Closed),
    {ok, Blocks, _} = emmap:open(F("blocks"), [create, read, write, {size, 8192}]),
    ok = emmap:init_block_storage(Blocks, 128),
    {ok, Q} = emmap_queue:open(F("queue"), 4096, []),
    {ok, QClosed} = emmap_queue:open(F("queue-closed"), 4096, []),
    ok = emmap_queue:close(QClosed),
    C = emmap:open_counters(F("counters"), 4),
    #{dir => Dir,
      handles => [Live, Direct, RO, Closed, Blocks,
                  #file_descriptor{module = emmap, data = make_ref()},
                  #file_descriptor{module = emmap, data = <<"not a resource">>},
                  #file_descriptor{module = prim_file, data = x}],
      queues => [Q, QClosed],
      counters => [C],
      files => [F("live"), F("fuzzfile"), F("new-" ++ integer_to_list(rand:uniform(5))), F("q2"),
                list_to_binary(F("bin")), F("nul") ++ [0], Dir]}.

teardown(#{handles := Hs, queues := [Q | _], counters := [C]}) ->
    [catch emmap:close(H) || H <- Hs],
    catch emmap_queue:close(Q),
    catch emmap:close_counters(C).

functions() ->
    [{emmap, F, A} || {F, A} <- emmap:module_info(exports), F =/= module_info]
    ++ [{emmap_queue, F, A} || {F, A} <- emmap_queue:module_info(exports),
                               F =/= module_info,
                               %% gen_server plumbing and starting servers are not data calls
                               not lists:member(F, [init, handle_call, handle_cast, handle_info,
                                                    terminate, start_link, stop])].

loop(0, _Env, Counts) -> Counts;
loop(N, Env, Counts) ->
    Fns = functions(),
    {M, F, A} = lists:nth(rand:uniform(length(Fns)), Fns),
    Args = [arg(M, F, I, Env) || I <- lists:seq(1, A)],
    Result = try {value, apply(M, F, Args)}
             catch
                 error:badarg -> badarg;
                 error:{emmap_counters, R} when is_atom(R); is_tuple(R) -> counters_error;
                 %% gen_server's own answers for a name or pid that is no queue server
                 exit:{noproc, _} when F =:= enqueue; F =:= dequeue; F =:= try_dequeue; F =:= inspect; F =:= info -> no_server;
                 exit:{calling_self, _} when F =:= enqueue; F =:= dequeue; F =:= try_dequeue; F =:= inspect; F =:= info -> no_server;
                 C:R:S -> erlang:error({undocumented, {M, F, Args}, C, R, S})
             end,
    check(M, F, Result, Args),
    loop(N - 1, Env, maps:update_with({M, F, A}, fun(X) -> X + 1 end, 1, Counts)).

check(_M, _F, {value, {error, R}}, _Args) when is_atom(R) -> ok;
check(_M, _F, {value, {error, {invalid_option, _}}}, _Args) -> ok;
check(_M, _F, {value, {error, {N, R}}}, _Args) when is_integer(N), is_atom(R) -> ok;   % pwrite/2
check(M, F, {value, {error, Other}}, Args) ->
    erlang:error({bad_error_shape, {M, F, Args}, Other});
check(emmap, open, {value, {ok, Mem, Info}}, _Args) when is_map(Info) ->
    emmap:close(Mem);   % do not pile up maps
check(emmap_queue, open, {value, {ok, Q}}, _Args) ->
    emmap_queue:close(Q);
check(emmap, open_counters, {value, C}, _Args) ->
    emmap:close_counters(C);
check(_M, _F, _Result, _Args) -> ok.

%% Arguments: mostly plausible ones for the position, with junk mixed in.
arg(M, F, I, Env) ->
    case rand:uniform(4) of
        1 -> junk(Env);
        _ -> plausible(M, F, I, Env)
    end.

plausible(emmap_queue, _F, 1, #{queues := Qs}) -> pick(Qs);
plausible(emmap, F, 1, #{counters := Cs}) when F =:= inc_counter; F =:= dec_counter;
                                              F =:= set_counter; F =:= read_counter;
                                              F =:= close_counters -> pick(Cs);
plausible(_M, F, 1, #{files := Fs}) when F =:= open; F =:= open_counters -> pick(Fs);
plausible(emmap, _F, 1, #{handles := Hs}) -> pick(Hs);
plausible(_M, open, _I, _Env) -> options();
plausible(_M, _F, _I, Env) ->
    case rand:uniform(3) of
        1 -> integer();
        2 -> data();
        3 -> junk(Env)
    end.

options() ->
    All = [read, write, create, truncate, shared, private, direct, lock, nolock, anon,
           populate, nonblock, noreserve, nocache, uninitialized, shared_validate, sync,
           hugetlb, huge_2mb, huge_1gb, fixed, fixed_size, fit, bogus,
           {address, integer()}, {chmod, integer()}, {size, integer()}, {max_inc_size, integer()},
           {sync, pick([never, always, {interval, 5}, sometimes])}, {size, "x"}],
    %% Never auto_unlink or debug noise: the fuzz must not delete its own files.
    [O || O <- [pick(All) || _ <- lists:seq(1, rand:uniform(5))], O =/= debug].

%% Sizes stay small or absurd: nothing in between that would really fill a disk.
integer() ->
    pick([0, 1, 7, 8, 9, 16, 64, 100, 4095, 4096, 4097, 65535, 65536, rand:uniform(70000),
          -1, -8, -(1 bsl 63), -(1 bsl 70), 1 bsl 62, (1 bsl 63) - 1, (1 bsl 64) - 1,
          1 bsl 64, 1 bsl 100, 16#7FFFFFFFFFFFFFF8]).

data() ->
    pick([<<>>, <<"x">>, crypto:strong_rand_bytes(rand:uniform(300)), "iolist",
          [<<"a">>, "b", [$c]], [300], [-1], [<<"a">> | <<"b">>]]).

junk(Env) ->
    pick([undefined, foo, 0.5, -1.5, make_ref(), self(), {a, b}, {}, [], [a | b], #{k => v},
          fun() -> ok end, <<1:3>>, <<"bin">>, "string", integer(), pick(maps:get(handles, Env)),
          pick(maps:get(queues, Env))]).

pick(L) -> lists:nth(rand:uniform(length(L)), L).
