%%% EUnit suite for emmap_queue: the reference README's examples as
%%% written, the API, space reuse, and two harnesses with real OS processes:
%%% VMs killed with SIGKILL while pushing and popping, and two producer VMs
%%% with two consumer VMs on one file.
-module(emmap_queue_tests).
-include_lib("eunit/include/eunit.hrl").

tmp(Name) ->
    Dir = case os:getenv("TMPDIR") of false -> "/tmp"; "" -> "/tmp"; D -> D end,
    filename:join(Dir, lists:flatten(io_lib:format("emmap-queue-~s-~p-~s",
                                                   [Name, erlang:unique_integer([positive]), os:getpid()]))).

%%% ---------------------------------------------------------------------------
%%% The reference README's examples, as written
%%% ---------------------------------------------------------------------------

reference_container_example_test() ->
    Filename = tmp("ref"),
    {ok, Q} = emmap_queue:open(Filename, 1024, [auto_unlink]),
    ok = emmap_queue:push(Q, a),
    ok = emmap_queue:push(Q, {b,1}),
    ok = emmap_queue:push(Q, {c,d}),

    a     = emmap_queue:pop(Q),
    {b,1} = emmap_queue:pop(Q),
    {c,d} = emmap_queue:pop(Q),
    nil   = emmap_queue:pop_and_purge(Q),
    ok = emmap_queue:close(Q),
    ?assertNot(filelib:is_file(Filename)).

reference_gen_server_example_test() ->
    Filename = tmp("refgs"),
    {ok, Pid} = emmap_queue:start_link(?MODULE, Filename, 1024, [auto_unlink]),
    ok = emmap_queue:enqueue(Pid, a),
    ok = emmap_queue:enqueue(Pid, {b,1}),
    ok = emmap_queue:enqueue(Pid, {c,d}),

    a     = emmap_queue:dequeue(Pid),
    {b,1} = emmap_queue:dequeue(Pid),
    {c,d} = emmap_queue:dequeue(Pid),
    nil   = emmap_queue:dequeue(Pid),
    %% by registered name too
    ok = emmap_queue:enqueue(?MODULE, by_name),
    by_name = emmap_queue:dequeue(?MODULE),
    unlink(Pid),
    ok = emmap_queue:stop(Pid),
    ?assertNot(filelib:is_file(Filename)).

%%% ---------------------------------------------------------------------------
%%% The API
%%% ---------------------------------------------------------------------------

api_test() ->
    F = tmp("api"),
    {ok, Q} = emmap_queue:open(F, 4096, []),
    ?assert(emmap_queue:is_empty(Q)),
    ?assertEqual(nil, emmap_queue:peek(Q)),
    ok = emmap_queue:push(Q, <<"raw binary">>),
    ok = emmap_queue:push(Q, #{a => [1, 2.5, "x"]}),
    ok = emmap_queue:push(Q, nil),
    ?assertEqual(3, emmap_queue:length(Q)),
    ?assertEqual(<<"raw binary">>, emmap_queue:peek(Q)),
    ?assertEqual(<<"raw binary">>, emmap_queue:pop(Q)),
    ?assertEqual(#{a => [1, 2.5, "x"]}, emmap_queue:pop(Q)),
    ?assertNot(emmap_queue:is_empty(Q)),
    ?assertEqual(nil, emmap_queue:pop(Q)),
    ?assert(emmap_queue:is_empty(Q)),
    [ok = emmap_queue:push(Q, N) || N <- lists:seq(1, 100)],
    ok = emmap_queue:purge(Q),
    ?assertEqual(0, emmap_queue:length(Q)),
    ?assertMatch(#{length := 0, file_size := _}, emmap_queue:info(Q)),
    ok = emmap_queue:close(Q),
    ?assertError(badarg, emmap_queue:push(not_a_queue, x)),
    ?assertError(badarg, emmap_queue:open(F, -1, [])),
    ?assertEqual({error, {invalid_option, {sync, sometimes}}}, emmap_queue:open(F, 4096, [{sync, sometimes}])),
    ?assertEqual({error, {invalid_option, bogus}}, emmap_queue:open(F, 4096, [bogus])),
    ok = file:write_file(F ++ "-foreign", binary:copy(<<"not a queue">>, 1000)),
    ?assertEqual({error, corrupt}, emmap_queue:open(F ++ "-foreign", 4096, [])),
    file:delete(F), file:delete(F ++ "-foreign").

reopen_keeps_order_test() ->
    F = tmp("reopen"),
    {ok, Q} = emmap_queue:open(F, 4096, []),
    [ok = emmap_queue:push(Q, {n, N}) || N <- lists:seq(1, 1000)],     % grows past 4096
    [{n, N} = emmap_queue:pop(Q) || N <- lists:seq(1, 400)],
    ok = emmap_queue:close(Q),
    {ok, Q2} = emmap_queue:open(F, 4096, []),
    ?assertEqual(600, emmap_queue:length(Q2)),
    ?assertEqual([{n, N} || N <- lists:seq(401, 1000)], [emmap_queue:pop(Q2) || _ <- lists:seq(401, 1000)]),
    ?assertEqual(nil, emmap_queue:pop(Q2)),
    ok = emmap_queue:close(Q2),
    file:delete(F).

fixed_size_and_purge_test() ->
    F = tmp("fixed"),
    {ok, Q} = emmap_queue:open(F, 4096, [fixed_size]),
    Results = [emmap_queue:push(Q, binary:copy(<<"x">>, 100)) || _ <- lists:seq(1, 100)],
    ?assert(lists:member({error, full}, Results)),
    ?assertEqual(ok, hd(Results)),
    _ = emmap_queue:pop(Q),
    ?assertEqual(ok, emmap_queue:push(Q, <<"fits again">>)),
    ok = emmap_queue:close(Q),
    G = tmp("purge"),
    {ok, P} = emmap_queue:open(G, 4096, []),
    [ok = emmap_queue:push(P, binary:copy(<<"y">>, 1000)) || _ <- lists:seq(1, 200)],
    ?assert(filelib:file_size(G) > 100000),
    [_ = emmap_queue:pop_and_purge(P) || _ <- lists:seq(1, 200)],
    ?assertEqual(nil, emmap_queue:pop_and_purge(P)),
    ?assertEqual(4096 + 4096, filelib:file_size(G)),
    ok = emmap_queue:close(P),
    file:delete(F), file:delete(G).

kept_short_stays_small_test_() ->
    {timeout, 120, fun() ->
        F = tmp("short"),
        {ok, Q} = emmap_queue:open(F, 65536, []),
        Item = binary:copy(<<"z">>, 200),
        lists:foreach(fun(I) ->
                              ok = emmap_queue:push(Q, Item),
                              case I rem 3 of 2 -> ok; _ -> Item = emmap_queue:pop(Q) end,
                              case I rem 1000 of 999 -> drain(Q); _ -> ok end
                      end, lists:seq(1, 50000)),
        ?assert(filelib:file_size(F) =< 4 bsl 20),
        ok = emmap_queue:close(Q),
        file:delete(F)
    end}.

drain(Q) ->
    case emmap_queue:pop(Q) of
        nil -> ok;
        _ -> drain(Q)
    end.

sync_modes_test() ->
    F = tmp("sync"),
    {ok, A} = emmap_queue:open(F, 4096, [{sync, always}]),
    ok = emmap_queue:push(A, durable),
    ?assertEqual(durable, emmap_queue:pop(A)),
    ok = emmap_queue:close(A),
    {ok, I} = emmap_queue:open(F, 4096, [{sync, {interval, 10}}]),
    ok = emmap_queue:push(I, later),
    timer:sleep(30),
    ?assertEqual(later, emmap_queue:pop(I)),
    ok = emmap_queue:close(I),
    file:delete(F).

%%% ---------------------------------------------------------------------------
%%% Harnesses with real OS processes
%%% ---------------------------------------------------------------------------

vm(Eval) ->
    Erl = os:find_executable("erl"),
    Ebin = filename:join(code:lib_dir(emmap), "ebin"),
    open_port({spawn_executable, Erl},
              [{args, ["-noshell", "-pa", Ebin, "-eval", Eval]},
               exit_status, {line, 1024}, stderr_to_stdout]).

%% Collects "N" lines until the VM is gone; the first line is its OS pid.
collect(Port, Acc) ->
    receive
        {Port, {data, {eol, Line}}} -> collect(Port, [Line | Acc]);
        {Port, {data, {noeol, _}}} -> collect(Port, Acc);
        {Port, {exit_status, _}} -> lists:reverse(Acc)
    after 60000 -> erlang:error({vm_timeout, lists:reverse(Acc)})
    end.

%% Starts a VM, waits until it reports its first item, lets it work for a
%% random while, then kills it with SIGKILL. The VM records each item with
%% a raw (unbuffered) file write right after the queue call returned, so
%% what the file holds is what really happened, give or take the one item
%% in flight at the kill.
run_and_kill(Eval, Log, MaxMs) ->
    Port = vm(Eval),
    OsPid = receive
                {Port, {data, {eol, "pid:" ++ P}}} -> P
            after 60000 -> erlang:error(vm_did_not_start)
            end,
    wait_for_log(Log, 60000),
    timer:sleep(rand:uniform(MaxMs)),
    os:cmd("kill -9 " ++ OsPid),
    _ = collect(Port, []),
    {ok, Bin} = file:read_file(Log),
    [binary_to_integer(L) || L <- binary:split(Bin, <<"\n">>, [global, trim_all])].

wait_for_log(Log, Ms) when Ms =< 0 -> erlang:error({no_progress, Log});
wait_for_log(Log, Ms) ->
    case filelib:file_size(Log) of
        0 -> timer:sleep(5), wait_for_log(Log, Ms - 5);
        _ -> ok
    end.

pad(N) -> binary:copy(<<"p">>, N rem 700).   % sizes vary, so the ring wraps and grows

kill9_test_() ->
    {timeout, 600, fun() -> [kill9_round(R) || R <- lists:seq(1, 20)] end}.

kill9_round(Round) ->
    F = tmp("kill" ++ integer_to_list(Round)),
    Acks = F ++ "-acks",
    Pops = F ++ "-pops",
    %% 1. A producer VM, killed while pushing (and growing: the ring starts at 4 KiB).
    Producer = lists:flatten(io_lib:format(
        "io:format(\"pid:~~s~~n\", [os:getpid()]),"
        "{ok, Log} = file:open(~p, [raw, write, binary]),"
        "{ok, Q} = emmap_queue:open(~p, 4096, []),"
        "L = fun Loop(N) -> ok = emmap_queue:push(Q, {item, N, binary:copy(<<\"p\">>, N rem 700)}),"
        "                   ok = file:write(Log, [integer_to_list(N), $\\n]), Loop(N + 1) end,"
        "L(1).", [Acks, F])),
    Acked = run_and_kill(Producer, Acks, 300),
    ?assertEqual(lists:seq(1, length(Acked)), Acked),
    %% 2. A consumer VM, killed while popping.
    Consumer = lists:flatten(io_lib:format(
        "io:format(\"pid:~~s~~n\", [os:getpid()]),"
        "{ok, Log} = file:open(~p, [raw, write, binary]),"
        "{ok, Q} = emmap_queue:open(~p, 4096, []),"
        "L = fun Loop() -> case emmap_queue:pop(Q) of"
        "                    {item, N, _} -> ok = file:write(Log, [integer_to_list(N), $\\n]), Loop();"
        "                    nil -> timer:sleep(1), Loop() end end,"
        "L().", [Pops, F])),
    Popped = run_and_kill(Consumer, Pops, 50),
    %% 3. What is left: every acked push not popped, in order, none torn.
    {ok, Q} = emmap_queue:open(F, 4096, []),
    Left = drain_items(Q, []),
    ok = emmap_queue:close(Q),
    [file:delete(X) || X <- [F, Acks, Pops]],
    All = Popped ++ Left,
    ?assertEqual(lists:seq(1, length(Popped)), Popped),         % popped in push order
    ?assertEqual(lists:sort(Left), Left),                       % the rest in order
    ?assertEqual(lists:usort(All), lists:sort(All)),            % nothing twice
    %% At most the one item popped (committed) when the kill cut its record.
    Missing = lists:seq(1, lists:max([0 | All])) -- All,
    ?assert(length(Missing) =< 1),
    [?assertEqual(length(Popped) + 1, M) || M <- Missing],
    %% Every acked push is there; a push done but not yet recorded may be too.
    ?assert(lists:max([0 | All]) >= lists:max([0 | Acked])),
    ?assert(lists:max([0 | All]) =< lists:max([0 | Acked]) + 1).

drain_items(Q, Acc) ->
    case emmap_queue:pop(Q) of
        nil -> lists:reverse(Acc);
        {item, N, Pad} -> ?assertEqual(pad(N), Pad), drain_items(Q, [N | Acc])
    end.

two_producers_two_consumers_test_() ->
    {timeout, 600, fun() ->
        F = tmp("mpmc"),
        N = 20000,
        {ok, Q} = emmap_queue:open(F, 4096, []),
        Producer = fun(P) -> lists:flatten(io_lib:format(
            "{ok, Q} = emmap_queue:open(~p, 4096, []),"
            "[ok = emmap_queue:push(Q, {~p, I}) || I <- lists:seq(1, ~p)],"
            "halt(0).", [F, P, N])) end,
        Consumer = fun(C) -> lists:flatten(io_lib:format(
            "{ok, Q} = emmap_queue:open(~p, 4096, []),"
            "L = fun Loop(Acc) -> case emmap_queue:pop(Q) of"
            "                       stop -> lists:reverse(Acc);"
            "                       nil -> timer:sleep(1), Loop(Acc);"
            "                       Item -> Loop([Item | Acc]) end end,"
            "ok = file:write_file(~p, term_to_binary(L([]))),"
            "halt(0).", [F, F ++ "-out" ++ integer_to_list(C)])) end,
        Ps = [vm(Producer(P)) || P <- [1, 2]],
        Cs = [vm(Consumer(C)) || C <- [1, 2]],
        [?assertEqual([], collect(P, [])) || P <- Ps],
        ok = emmap_queue:push(Q, stop),
        ok = emmap_queue:push(Q, stop),
        [?assertEqual([], collect(C, [])) || C <- Cs],
        Outs = [begin
                    {ok, B} = file:read_file(F ++ "-out" ++ integer_to_list(C)),
                    binary_to_term(B)
                end || C <- [1, 2]],
        %% Each item exactly once, and each producer's items in order in every consumer.
        All = lists:append(Outs),
        ?assertEqual(2 * N, length(All)),
        ?assertEqual(lists:sort([{P, I} || P <- [1, 2], I <- lists:seq(1, N)]), lists:sort(All)),
        [?assertEqual(lists:sort(Mine), Mine) || Out <- Outs, P <- [1, 2],
                                                 Mine <- [[I || {Pp, I} <- Out, Pp =:= P]]],
        ?assertEqual(0, emmap_queue:length(Q)),
        ok = emmap_queue:close(Q),
        [file:delete(X) || X <- [F, F ++ "-out1", F ++ "-out2"]]
    end}.
