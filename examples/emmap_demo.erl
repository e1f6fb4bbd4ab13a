%%% The README's main job: emmap on a temporary file, shown end to end.
%%%   1. shared memory between this VM and a second OS process (another erl)
%%%   2. persistent counters that survive a restart of the VM
%%%   3. a zero-copy (direct) binary that sees a later write
-module(emmap_demo).
-export([main/0]).

main() ->
    Dir = tmp_dir(),
    Shm = filename:join(Dir, "shared.bin"),
    Cnt = filename:join(Dir, "counters.bin"),
    try
        shared_memory(Shm),
        counters(Cnt),
        direct(filename:join(Dir, "direct.bin")),
        io:format("demo: all steps behaved as expected~n"),
        halt(0)
    catch C:R:S ->
        io:format("demo FAILED: ~p:~p~n~p~n", [C, R, S]),
        halt(1)
    after
        [file:delete(F) || F <- filelib:wildcard(filename:join(Dir, "*"))],
        file:del_dir(Dir)
    end.

shared_memory(File) ->
    io:format("~n1. Shared memory between two OS processes (~s)~n", [File]),
    {ok, M, Info} = emmap:open(File, [create, read, write, shared, {size, 4096}]),
    io:format("   opened: ~p~n", [Info]),
    ok = emmap:pwrite(M, 0, <<"written by VM 1">>),
    N = 10000,
    Peer = peer_vm(lists:flatten(io_lib:format(
             "{ok, M, _} = emmap:open(~p, [read, write, shared]),"
             "{ok, Msg} = emmap:pread(M, 0, 15),"
             "io:format(\"   VM 2 (os pid ~~s) reads: ~~s~~n\", [os:getpid(), Msg]),"
             "ok = emmap:pwrite(M, 100, <<\"reply from VM 2\">>),"
             "[{ok, _} = emmap:patomic_add(M, 512, 1) || _ <- lists:seq(1, ~p)],"
             "halt(0).", [File, N]))),
    [{ok, _} = emmap:patomic_add(M, 512, 1) || _ <- lists:seq(1, N)],
    0 = wait_peer(Peer),
    {ok, Reply} = emmap:pread(M, 100, 15),
    Sum = emmap:patomic_read(M, 512),
    io:format("   VM 1 (os pid ~s) reads: ~s~n", [os:getpid(), Reply]),
    io:format("   both VMs added 1, ~p times each, at offset 512: ~p~n", [N, Sum]),
    Sum = 2 * N,
    {ok, Disk} = file:read_file(File),
    OnDisk = binary:part(Disk, 100, 15),
    io:format("   and the file itself says: ~s~n", [OnDisk]),
    ok = emmap:close(M).

counters(File) ->
    io:format("~n2. Persistent counters (~s)~n", [File]),
    C = emmap:open_counters(File, 2),
    N1 = emmap:inc_counter(C, 0),
    N2 = emmap:inc_counter(C, 0, 5),
    N3 = emmap:inc_counter(C, 0),
    N4 = emmap:inc_counter(C, 0, 2),
    N5 = emmap:set_counter(C, 0, 15),
    N6 = emmap:read_counter(C, 0),
    io:format("   N1=~w, N2=~w, N3=~w, N4=~w, N5=~w, N6=~w~n", [N1, N2, N3, N4, N5, N6]),
    ok = emmap:close_counters(C),
    %% A new VM (a restart) opens the same file: the count goes on.
    Peer = peer_vm(lists:flatten(io_lib:format(
             "C = emmap:open_counters(~p, 2),"
             "Old = emmap:inc_counter(C, 0, 100),"
             "io:format(\"   after a restart, another VM finds ~~p and adds 100~~n\", [Old]),"
             "halt(0).", [File]))),
    0 = wait_peer(Peer),
    C2 = emmap:open_counters(File, 2),
    V = emmap:read_counter(C2, 0),
    io:format("   reopened here: counter 0 = ~p~n", [V]),
    115 = V,
    ok = emmap:close_counters(C2).

direct(File) ->
    io:format("~n3. A zero-copy binary sees later writes~n"),
    {ok, M, _} = emmap:open(File, [create, read, write, direct, auto_unlink, {size, 64}]),
    ok = emmap:pwrite(M, 0, <<"before">>),
    {ok, Bin} = emmap:pread(M, 0, 6),
    io:format("   Bin = ~p~n", [Bin]),
    ok = emmap:pwrite(M, 0, <<"after!">>),
    io:format("   after a pwrite, the same Bin = ~p~n", [Bin]),
    <<"after!">> = Bin,
    ok = emmap:close(M),
    io:format("   after close it is still readable: ~p (the binary keeps the map alive)~n", [Bin]).

tmp_dir() ->
    Base = case os:getenv("TMPDIR") of false -> "/tmp"; "" -> "/tmp"; D -> D end,
    Dir = filename:join(Base, "emmap-demo-" ++ os:getpid()),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Dir.

peer_vm(Eval) ->
    Erl = os:find_executable("erl"),
    Ebin = filename:join(code:lib_dir(emmap), "ebin"),
    open_port({spawn_executable, Erl},
              [{args, ["-noshell", "-pa", Ebin, "-eval", Eval]}, exit_status, stderr_to_stdout]).

wait_peer(Port) ->
    receive
        {Port, {data, D}} -> io:put_chars(D), wait_peer(Port);
        {Port, {exit_status, S}} -> S
    after 60000 -> timeout
    end.
