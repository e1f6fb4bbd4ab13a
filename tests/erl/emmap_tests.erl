%%% EUnit suite for the emmap module: every exported function and option
%%% of API.md section 2, and the robustness cases the older libraries lacked.
-module(emmap_tests).

-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-export([log/2]).   % a logger handler for debug_reports_through_logger_test

%%% ---------------------------------------------------------------------------
%%% Helpers
%%% ---------------------------------------------------------------------------

tmp(Name) ->
    Dir = case os:getenv("TMPDIR") of
              false -> "/tmp";
              "" -> "/tmp";
              D -> D
          end,
    filename:join(Dir, lists:flatten(io_lib:format("emmap-eunit-~s-~p-~s",
                                     [Name, erlang:unique_integer([positive]), os:getpid()]))).

new_file(Name, Size) ->
    F = tmp(Name),
    {ok, M, Info} = emmap:open(F, [create, read, write, {size, Size}]),
    {F, M, Info}.

with_file(Name, Size, Fun) ->
    {F, M, _} = new_file(Name, Size),
    try Fun(F, M)
    after
        emmap:close(M),
        file:delete(F)
    end.

%% The backend this build compiled in, as emmap:info/1 reports it. Where
%% backends differ (README.md, "Backends": darwin cannot resize a live map,
%% `resize' answers {error, fixed_size}) the tests assert each one's own
%% documented answer.
backend() ->
    {ok, M, _} = emmap:open("", 0, 4096, [anon, read, write]),
    #{backend := B} = emmap:info(M),
    ok = emmap:close(M),
    B.

can_resize() -> backend() =/= darwin.

%% The backend the build was configured with: `meson test' says
%% (EMMAP_TEST_BACKEND); elsewhere (rebar3) the host's own.
configured_backend() ->
    case os:getenv("EMMAP_TEST_BACKEND") of
        false ->
            case os:type() of
                {unix, linux} -> linux;
                {unix, darwin} -> darwin;
                {unix, _} -> bsd
            end;
        Name -> list_to_atom(Name)
    end.

fd_count() ->
    {ok, L} = file:list_dir("/proc/self/fd"),
    length(L).

%% The descriptor count once it stays the same for 100 ms (at most Tries).
settled_fd_count(Last, 0) -> Last;
settled_fd_count(Last, Tries) ->
    timer:sleep(100),
    case fd_count() of
        Last -> Last;
        Now -> settled_fd_count(Now, Tries - 1)
    end.

-define(MAX64, 16#FFFFFFFFFFFFFFFF).

%%% ---------------------------------------------------------------------------
%%% Opening
%%% ---------------------------------------------------------------------------

open_create_info_test() ->
    F = tmp("open"),
    {ok, M, Info} = emmap:open(F, [create, read, write, {size, 1000}]),
    ?assertMatch(#{exist := false, size := 1000, ignored := _}, Info),
    ?assertEqual(1000, filelib:file_size(F)),
    {ok, #file_info{mode = Mode}} = file:read_file_info(F),
    ?assertEqual(8#600, Mode band 8#777),
    I = emmap:info(M),
    Backend = configured_backend(),
    ?assertMatch(#{size := 1000, mode := read_write, backend := Backend, position := 0}, I),
    ?assertEqual(F, maps:get(path, I)),
    ?assertEqual([create, read, write, {size, 1000}], maps:get(options, I)),
    ok = emmap:close(M),
    ok = emmap:close(M),
    ?assertEqual({error, closed}, emmap:info(M)),
    {ok, M2, Info2} = emmap:open(F, [read]),
    ?assertMatch(#{exist := true, size := 1000}, Info2),
    ?assertEqual(read, maps:get(mode, emmap:info(M2))),
    emmap:close(M2),
    file:delete(F).

open_names_test() ->
    Base = tmp("name"),
    Unicode = Base ++ [16#4E2D, 16#6587],
    lists:foreach(
      fun(Name) ->
              {ok, M, _} = emmap:open(Name, [create, write, {size, 16}]),
              ok = emmap:pwrite(M, 0, <<"x">>),
              emmap:close(M)
      end, [Base, list_to_binary(Base), Unicode]),
    ?assert(filelib:is_regular(Unicode)),
    file:delete(Base), file:delete(Unicode).

chmod_test() ->
    F = tmp("chmod"),
    {ok, M, _} = emmap:open(F, [create, write, {size, 8}, {chmod, 8#640}]),
    {ok, #file_info{mode = Mode}} = file:read_file_info(F),
    ?assertEqual(8#640, Mode band 8#777),
    emmap:close(M), file:delete(F).

open_errors_test_() ->
    F = tmp("err"),
    [?_assertEqual({error, enoent}, emmap:open(F, [read])),
     ?_assertEqual({error, {invalid_option, bogus}}, emmap:open(F, [create, bogus])),
     ?_assertEqual({error, {invalid_option, {size, -1}}}, emmap:open(F, [create, {size, -1}])),
     ?_assertEqual({error, {invalid_option, {size, x}}}, emmap:open(F, [create, {size, x}])),
     ?_assertEqual({error, {invalid_option, {address, 0}}}, emmap:open(F, [create, {address, 0}, fixed])),
     ?_assertEqual({error, {invalid_option, "str"}}, emmap:open(F, ["str"])),
     ?_assertEqual({error, einval}, emmap:open(F, [create, write, shared, private, {size, 8}])),
     ?_assertEqual({error, einval}, emmap:open(F, [create, write, fixed, {size, 8}])),
     ?_assertEqual({error, einval}, emmap:open(F, [create, write, {address, 4097}, {size, 8}])),
     ?_assertEqual({error, einval}, emmap:open(F ++ [0] ++ "x", [create, write, {size, 8}])),
     ?_assertEqual({error, einval}, emmap:open(<<"/tmp/a", 0, "b">>, [create, write, {size, 8}])),
     ?_assertEqual({error, eopnotsupp}, emmap:open(F, [create, write, shared_validate, sync, {size, 4096}])),
     ?_assertEqual({error, eopnotsupp}, emmap:open(F, [create, write, huge_2mb, {size, 4096}])),
     ?_assertEqual({error, einval}, emmap:open(F, -1, 10, [create, write])),
     ?_assertMatch({error, _}, emmap:open(F, 0, 1 bsl 62, [create, write])),
     ?_assertMatch({error, _}, emmap:open(F, 1 bsl 64, 1, [create, write])),
     ?_assertMatch({error, _}, emmap:open(F, [create, write, {size, ?MAX64}])),
     ?_assertError(badarg, emmap:open(F, not_a_list)),
     ?_assertError(badarg, emmap:open(F, [create | improper])),
     ?_assertError(badarg, emmap:open(F, 0.5, 10, [])),
     ?_assertError(badarg, emmap:open({not_a_name}, [])),
     ?_assertError(badarg, emmap:open(F, 0, foo, [])),
     ?_assertNot(filelib:is_file(F))].

empty_file_test() ->
    F = tmp("empty"),
    ok = file:write_file(F, <<>>),
    {ok, M, #{size := 0, exist := true}} = emmap:open(F, [read, write]),
    ?assertEqual(eof, emmap:pread(M, 0, 10)),
    ?assertEqual(eof, file:read(M, 1)),
    ?assertEqual({error, einval}, emmap:pwrite(M, 0, <<"x">>)),
    case can_resize() of
        true ->
            {ok, 100} = emmap:resize(M, 100),
            ok = emmap:pwrite(M, 0, <<"x">>);
        false ->
            %% darwin: the empty map stays empty and usable; a map of the
            %% length wanted is opened instead, which grows the file.
            ?assertEqual({error, fixed_size}, emmap:resize(M, 100)),
            ?assertEqual(eof, emmap:pread(M, 0, 1)),
            ?assertEqual(0, maps:get(size, emmap:info(M))),
            ?assertEqual(0, filelib:file_size(F)),
            {ok, M100, #{size := 100, exist := true}} = emmap:open(F, [read, write, {size, 100}]),
            ok = emmap:pwrite(M100, 0, <<"x">>),
            emmap:close(M100),
            ?assertEqual(100, filelib:file_size(F))
    end,
    %% Sized like a new file: {size, N} with `fit' on an empty one.
    {ok, Fit, #{size := 8}} = emmap:open(F ++ "-fit", [create, read, write, fit, {size, 8}]),
    emmap:close(Fit),
    ok = file:write_file(F ++ "-fit", <<>>),
    {ok, Fit2, #{size := 16, exist := true}} = emmap:open(F ++ "-fit", [read, write, fit, {size, 16}]),
    ok = emmap:pwrite(Fit2, 8, <<"12345678">>),
    emmap:close(Fit2),
    ?assertEqual(16, filelib:file_size(F ++ "-fit")),
    emmap:close(M), file:delete(F), file:delete(F ++ "-fit").

open_at_offset_test_() ->
    F = tmp("offset"),
    Data = << <<(X rem 251)>> || X <- lists:seq(0, 9999) >>,
    ok = file:write_file(F, Data),
    Check = fun(Off, Len) ->
                    {ok, M, #{size := Len}} = emmap:open(F, Off, Len, [read]),
                    R = emmap:pread(M, 0, Len),
                    emmap:close(M),
                    ?assertEqual({ok, binary:part(Data, Off, Len)}, R)
            end,
    {setup, fun() -> ok end, fun(_) -> file:delete(F) end,
     [?_test(Check(5, 100)), ?_test(Check(4100, 300)), ?_test(Check(0, 1)), ?_test(Check(4096, 5904))]}.

map_past_end_of_file_test() ->
    F = tmp("past"),
    ok = file:write_file(F, <<"0123456789">>),
    %% Read-only: clamped to the file.
    {ok, R, #{size := 7}} = emmap:open(F, 3, 1000, [read]),
    ?assertEqual({ok, <<"3456789">>}, emmap:pread(R, 0, 1000)),
    ?assertEqual(eof, emmap:pread(R, 7, 1)),
    emmap:close(R),
    %% Writable: the file grows (blocks reserved).
    {ok, W, #{size := 1000}} = emmap:open(F, 3, 1000, [read, write]),
    ok = emmap:pwrite(W, 999, <<"!">>),
    emmap:close(W),
    ?assertEqual(1003, filelib:file_size(F)),
    file:delete(F).

truncate_option_test() ->
    F = tmp("trunc"),
    ok = file:write_file(F, binary:copy(<<"a">>, 5000)),
    {ok, M, #{size := 10}} = emmap:open(F, [create, read, write, truncate, {size, 10}]),
    ?assertEqual({ok, <<0:80>>}, emmap:pread(M, 0, 10)),
    emmap:close(M), file:delete(F).

fit_option_test() ->
    F = tmp("fit"),
    ok = file:write_file(F, <<"abc">>),
    {ok, M, #{size := 3}} = emmap:open(F, [create, read, write, fit, {size, 100}]),
    emmap:close(M), file:delete(F).

anon_test() ->
    {ok, M, #{size := 8192}} = emmap:open("", 0, 8192, [anon, read, write]),
    ?assertEqual({ok, <<0:64>>}, emmap:pread(M, 100, 8)),
    ok = emmap:pwrite(M, 100, <<"anon">>),
    ?assertEqual({ok, <<"anon">>}, emmap:pread(M, 100, 4)),
    ?assertEqual({ok, 0}, emmap:patomic_add(M, 8, 1)),
    ?assertEqual({ok, 1}, emmap:patomic_read_integer(M, 8)),
    ?assertEqual(#{size => 8192, mode => read_write}, maps:with([size, mode], emmap:info(M))),
    case can_resize() of
        true ->
            {ok, 16384} = emmap:resize(M, 16384),
            ?assertEqual({ok, <<0:64>>}, emmap:pread(M, 16000, 8));
        false ->
            ?assertEqual({error, fixed_size}, emmap:resize(M, 16384)),   % darwin
            ?assertEqual({error, fixed_size}, emmap:resize(M)),
            ?assertEqual(8192, maps:get(size, emmap:info(M)))
    end,
    ?assertEqual({ok, <<"anon">>}, emmap:pread(M, 100, 4)),
    emmap:close(M),
    ?assertEqual({error, closed}, emmap:pread(M, 100, 4)),
    %% Two anonymous maps are two memories.
    {ok, A, _} = emmap:open("", 0, 4096, [anon, read, write]),
    {ok, B, _} = emmap:open("", 0, 4096, [anon, read, write]),
    ok = emmap:pwrite(A, 0, <<"a">>),
    ?assertEqual({ok, <<0>>}, emmap:pread(B, 0, 1)),
    emmap:close(A), emmap:close(B).

%% The `debug' option reports through OTP logger (level notice, domain
%% [emmap]), so a user's handlers see it; nothing goes to stderr.
debug_reports_through_logger_test() ->
    ok = logger:add_handler(emmap_test_h, ?MODULE, #{config => #{pid => self()}}),
    F = tmp("debug"),
    try
        {ok, M, _} = emmap:open(F, [create, read, write, debug, {size, 4096}]),
        Resizes = can_resize(),
        case Resizes of
            true ->
                {ok, 8192} = emmap:resize(M),
                {ok, 100} = emmap:resize(M, 100);
            false ->                                      % darwin: a refused resize says nothing
                {error, fixed_size} = emmap:resize(M),
                {error, fixed_size} = emmap:resize(M, 100)
        end,
        ok = emmap:close(M),
        ok = emmap:close(M),                              % a second close says nothing
        {ok, Quiet, _} = emmap:open(F, [read, write]),    % no debug: no report
        QuietResize = case can_resize() of true -> {ok, 200}; false -> {error, fixed_size} end,
        ?assertEqual(QuietResize, emmap:resize(Quiet, 200)),
        ok = emmap:close(Quiet),
        Reports = flush_reports([]),
        case Resizes of
            true ->
                ?assertMatch([{notice, "emmap: opened " ++ _},
                              {notice, "emmap: resized " ++ _},
                              {notice, "emmap: resized " ++ _},
                              {notice, "emmap: closed " ++ _}], Reports),
                [{_, Opened}, {_, Grown}, {_, Shrunk}, _] = Reports,
                ?assertNotEqual(nomatch, string:find(Grown, "to 8192 bytes")),
                ?assertNotEqual(nomatch, string:find(Shrunk, "to 100 bytes"));
            false ->
                ?assertMatch([{notice, "emmap: opened " ++ _},
                              {notice, "emmap: closed " ++ _}], Reports),
                [{_, Opened}, _] = Reports
        end,
        ?assertNotEqual(nomatch, string:find(Opened, "4096 bytes (created)"))
    after
        logger:remove_handler(emmap_test_h),
        file:delete(F)
    end.

log(#{level := Level, msg := {Format, Args}, meta := #{domain := [emmap]}}, #{config := #{pid := Pid}}) ->
    Pid ! {emmap_log, Level, lists:flatten(io_lib:format(Format, Args))};
log(_, _) ->
    ok.

flush_reports(Acc) ->
    receive {emmap_log, Level, Text} -> flush_reports([{Level, Text} | Acc])
    after 0 -> lists:reverse(Acc)
    end.

hints_test() ->
    F = tmp("hints"),
    {ok, M, #{ignored := Ign}} =
        emmap:open(F, [create, read, write, populate, nonblock, noreserve, nocache,
                       uninitialized, nolock, lock, debug, {max_inc_size, 4096}, {size, 4096}]),
    %% Pure hints with no effect on this backend are reported, never
    %% silently dropped (README.md, "Backends"): `noreserve' keeps a shared
    %% writable file's holes sparse everywhere, and is MAP_NORESERVE (for
    %% anonymous memory too) on Linux only; `nocache' is MAP_NOCACHE on macOS only (the darwin
    %% backend built elsewhere, as in the test command, has no such flag);
    %% `populate' works everywhere (a flag, or madvise WILLNEED).
    Backend = backend(),
    ?assertEqual(not (Backend =:= darwin andalso os:type() =:= {unix, darwin}),
                 lists:member(nocache, Ign)),
    ?assertNot(lists:member(noreserve, Ign)),
    {ok, A, #{ignored := AnonIgn}} = emmap:open("", 0, 4096, [anon, read, write, noreserve]),
    ?assertEqual(Backend =/= linux, lists:member(noreserve, AnonIgn)),
    ok = emmap:close(A),
    ?assert(lists:member(nonblock, Ign)),
    ?assert(lists:member(uninitialized, Ign)),
    ?assertNot(lists:member(populate, Ign)),
    ?assertNot(lists:member(nolock, Ign)),   % `lock' came after `nolock'
    case can_resize() of
        true ->
            ?assertEqual({ok, 8192}, emmap:resize(M)),
            ?assertEqual({ok, 12288}, emmap:resize(M));  % max_inc_size reached: + 4096
        false ->
            ?assertEqual({error, fixed_size}, emmap:resize(M))   % darwin
    end,
    emmap:close(M),
    {ok, M2, #{ignored := Ign2}} = emmap:open(F, [read, nolock]),
    ?assert(lists:member(nolock, Ign2)),
    emmap:close(M2),
    file:delete(F).

address_test() ->
    F = tmp("addr"),
    {ok, M1, _} = emmap:open(F, [create, read, write, {size, 4096}]),
    %% Find a free, aligned address by asking for one that is surely taken:
    %% the first map's own address is not exposed, so use a far one.
    Addr = 16#7e0000000000 + (erlang:unique_integer([positive]) rem 1024) * 16#100000,
    case emmap:open(F, [read, write, {address, Addr}, fixed]) of
        {ok, M2, _} ->
            ok = emmap:pwrite(M2, 0, <<"fixed">>),
            ?assertEqual({ok, <<"fixed">>}, emmap:pread(M1, 0, 5)),
            %% The same address again must be refused, not replaced.
            ?assertEqual({error, eexist}, emmap:open(F, [read, write, {address, Addr}, fixed])),
            ?assertEqual({ok, <<"fixed">>}, emmap:pread(M2, 0, 5)),
            emmap:close(M2);
        {error, eexist} ->
            ok
    end,
    emmap:close(M1), file:delete(F).

%%% ---------------------------------------------------------------------------
%%% Reading and writing, through emmap and through the file module
%%% ---------------------------------------------------------------------------

pread_pwrite_test() ->
    with_file("rw", 100, fun(_F, M) ->
        ok = emmap:pwrite(M, 10, <<"hello">>),
        ok = emmap:pwrite(M, 20, ["wor", [$l], <<"d">>]),
        ?assertEqual({ok, <<"hello">>}, emmap:pread(M, 10, 5)),
        ?assertEqual({ok, <<"world">>}, emmap:pread(M, 20, 5)),
        ?assertEqual({ok, <<0, 0>>}, emmap:pread(M, 98, 10)),     % short at the end
        ?assertEqual(eof, emmap:pread(M, 100, 1)),
        ?assertEqual(eof, emmap:pread(M, 1 bsl 63, 1)),
        ?assertEqual({ok, <<>>}, emmap:pread(M, 5, 0)),
        ?assertEqual({error, einval}, emmap:pwrite(M, 98, <<"abc">>)),
        ?assertEqual({error, einval}, emmap:pwrite(M, ?MAX64, <<"a">>)),
        ?assertEqual({error, einval}, emmap:pwrite(M, ?MAX64 - 1, <<"ab">>)),
        ?assertEqual({error, einval}, emmap:pwrite(M, 1 bsl 64, <<"a">>)),
        ?assertEqual({error, einval}, emmap:pwrite(M, -1, <<"a">>)),
        ?assertEqual({error, einval}, emmap:pread(M, -1, 1)),
        ?assertEqual({error, einval}, emmap:pread(M, 0, -1)),
        {ok, All} = emmap:pread(M, 0, 1 bsl 40),                 % huge length: clamped
        ?assertEqual(100, byte_size(All)),
        ?assertError(badarg, emmap:pread(M, a, 1)),
        ?assertError(badarg, emmap:pread(M, 1, 1.0)),
        ?assertError(badarg, emmap:pwrite(M, 1, atom)),
        ?assertError(badarg, emmap:pwrite(M, 1, [1000])),
        ?assertError(badarg, emmap:pread(not_a_handle, 0, 1)),
        ?assertError(badarg, emmap:pread(#file_descriptor{module = emmap, data = make_ref()}, 0, 1)),
        ?assertError(badarg, emmap:pread(#file_descriptor{module = other, data = x}, 0, 1))
    end).

list_forms_test() ->
    with_file("lists", 64, fun(_F, M) ->
        ok = file:pwrite(M, [{0, <<"ab">>}, {10, "cd"}]),
        ?assertEqual({ok, [<<"ab">>, <<"cd">>, eof]}, file:pread(M, [{0, 2}, {10, 2}, {64, 1}])),
        ?assertEqual({error, {1, einval}}, emmap:pwrite(M, [{0, <<"x">>}, {63, <<"yz">>}, {0, <<"q">>}])),
        ?assertEqual({ok, <<"x">>}, emmap:pread(M, 0, 1)),
        ?assertEqual({error, einval}, emmap:pread(M, [{-1, 1}]))
    end).

%% file:read_line/1 on a map gives what it gives on a file: the LF kept, a
%% CR right before it dropped (also for a direct map, whose lines are then
%% copies), a lone CR kept, the last line without LF as it is.
read_line_drops_cr_before_lf_test() ->
    Text = <<"a\r\nb\rc\n\r\n\n\r\r\nlast\r">>,
    Expected = [{ok, <<"a\n">>}, {ok, <<"b\rc\n">>}, {ok, <<"\n">>}, {ok, <<"\n">>},
                {ok, <<"\r\n">>}, {ok, <<"last\r">>}, eof],
    lists:foreach(
      fun(Opts) ->
          with_file("lines", byte_size(Text), fun(F, M0) ->
              ok = emmap:pwrite(M0, 0, Text),
              {ok, Raw} = file:open(F, [read, raw, binary]),
              FromFile = [file:read_line(Raw) || _ <- Expected],
              ok = file:close(Raw),
              ?assertEqual(Expected, FromFile),
              {ok, M, _} = emmap:open(F, 0, 0, [read | Opts]),
              ?assertEqual(Expected, [file:read_line(M) || _ <- Expected]),
              ok = emmap:close(M)
          end)
      end, [[], [direct]]).

file_module_test() ->
    with_file("file", 32, fun(F, M) ->
        ok = file:write(M, <<"line one\nline two\n">>),
        ?assertEqual({ok, 18}, file:position(M, cur)),
        ?assertEqual({ok, 0}, file:position(M, bof)),
        ?assertEqual({ok, <<"line one\n">>}, file:read_line(M)),
        ?assertEqual({ok, <<"line two\n">>}, file:read_line(M)),
        ?assertEqual({ok, <<0:(14*8)>>}, file:read_line(M)),     % last line, no newline
        ?assertEqual(eof, file:read_line(M)),
        ?assertEqual(eof, file:read(M, 1)),
        ?assertEqual({ok, 5}, file:position(M, 5)),
        ?assertEqual({ok, <<"one">>}, file:read(M, 3)),
        ?assertEqual({ok, 28}, file:position(M, {eof, -4})),
        ?assertEqual({ok, 30}, file:position(M, {cur, 2})),
        ?assertEqual({ok, <<0, 0>>}, file:read(M, 10)),
        ?assertEqual({error, einval}, file:position(M, {bof, -1})),
        ?assertEqual({error, einval}, file:position(M, {cur, -100})),
        ?assertEqual({ok, <<"line">>}, file:pread(M, 0, 4)),
        ok = file:pwrite(M, 0, <<"LINE">>),
        ?assertEqual({error, einval}, file:write(M, binary:copy(<<"x">>, 40))),
        ok = file:sync(M),
        ok = file:datasync(M),
        {ok, 9} = file:position(M, 9),
        Size = case can_resize() of
                   true ->
                       ok = file:truncate(M),
                       9;
                   false ->
                       %% darwin: truncate resizes the map, which it cannot
                       ?assertEqual({error, fixed_size}, file:truncate(M)),
                       ?assertEqual({ok, 9}, file:position(M, cur)),
                       32
               end,
        ?assertEqual(Size, maps:get(size, emmap:info(M))),
        ?assertEqual(Size, filelib:file_size(F)),
        ?assertEqual(ok, file:advise(M, 0, 9, willneed)),
        ok = file:close(M),
        ?assertEqual({error, closed}, file:read(M, 1)),
        {ok, Bin} = file:read_file(F),
        ?assertEqual(<<"LINE one\n">>, binary:part(Bin, 0, 9)),
        ?assertEqual(Size, byte_size(Bin))
    end).

read_only_test() ->
    F = tmp("ro"),
    ok = file:write_file(F, <<1:64/native, "data">>),
    {ok, M, _} = emmap:open(F, [read]),
    ?assertEqual({error, eacces}, emmap:pwrite(M, 0, <<"x">>)),
    ?assertEqual({error, eacces}, file:write(M, <<"x">>)),
    ?assertEqual({error, eacces}, emmap:patomic_add(M, 0, 1)),
    ?assertEqual({error, eacces}, emmap:patomic_write(M, 0, 5)),
    ?assertEqual({error, eacces}, emmap:patomic_cas(M, 0, 1, 2)),
    ?assertEqual({ok, 1}, emmap:patomic_read_integer(M, 0)),
    %% A resize that would grow the file needs write access; on darwin no
    %% map resizes, and that is the answer.
    ?assertEqual({error, case can_resize() of true -> eacces; false -> fixed_size end},
                 emmap:resize(M, 100)),
    emmap:close(M), file:delete(F).

private_test() ->
    F = tmp("priv"),
    ok = file:write_file(F, <<"aaaa">>),
    {ok, P, _} = emmap:open(F, [read, write, private]),
    ok = emmap:pwrite(P, 0, <<"PP">>),
    ?assertEqual({ok, <<"PPaa">>}, emmap:pread(P, 0, 4)),
    ok = emmap:sync(P),
    ?assertEqual({ok, <<"aaaa">>}, file:read_file(F)),
    emmap:close(P), file:delete(F).

%%% ---------------------------------------------------------------------------
%%% Direct (zero-copy) binaries
%%% ---------------------------------------------------------------------------

direct_sees_writes_and_outlives_close_test() ->
    F = tmp("direct"),
    {ok, M, _} = emmap:open(F, [create, read, write, direct, auto_unlink, {size, 64}]),
    {ok, Bin} = emmap:pread(M, 0, 5),
    ok = emmap:pwrite(M, 0, <<"test1">>),
    ?assertEqual(<<"test1">>, Bin),
    ok = emmap:pwrite(M, 0, <<"test2">>),
    ?assertEqual(<<"test2">>, Bin),
    {ok, B2} = file:read(M, 3),
    ?assertEqual(<<"tes">>, B2),
    ok = emmap:close(M),
    ?assertEqual({error, closed}, emmap:pread(M, 0, 5)),
    ?assertEqual({error, closed}, emmap:read(M, 1)),
    ?assertEqual({error, closed}, emmap:read_line(M)),
    %% auto_unlink waits for the binary. Bin must still be live here, and a
    %% variable is not enough: the compiler knows Bin =:= <<"test2">> from
    %% the match above and drops a second one, so Bin was dead at is_file/1
    %% and a GC there freed it (and unlinked the file). The process
    %% dictionary keeps it; the GC makes the check mean something.
    put(emmap_test_live_binary, Bin),
    erlang:garbage_collect(),
    ?assert(filelib:is_file(F)),
    ?assertEqual(<<"test2">>, erase(emmap_test_live_binary)),   % still mapped: the binary holds it
    ok.

direct_survives_resize_test() ->
    F = tmp("dresize"),
    {ok, M, _} = emmap:open(F, [create, read, write, direct, {size, 4096}]),
    ok = emmap:pwrite(M, 0, <<"keep me">>),
    {ok, Bin} = emmap:pread(M, 0, 4096),
    case can_resize() of
        true ->
            {ok, Size} = emmap:resize(M, 256 bsl 20),
            ?assertEqual(256 bsl 20, Size),
            ok = emmap:pwrite(M, (256 bsl 20) - 3, <<"end">>),
            {ok, 100} = emmap:resize(M, 100),
            ?assertEqual(<<"keep me">>, binary:part(Bin, 0, 7)),
            %% Past the new end the old binary reads zeros; it never faults.
            ?assertEqual(binary:copy(<<0>>, 96), binary:part(Bin, 4000, 96));
        false ->
            %% darwin: both resizes refused; the binary still sees the map.
            ?assertEqual({error, fixed_size}, emmap:resize(M, 256 bsl 20)),
            ?assertEqual({error, fixed_size}, emmap:resize(M, 100)),
            ok = emmap:pwrite(M, 4093, <<"end">>),
            ?assertEqual(<<"keep me">>, binary:part(Bin, 0, 7)),
            ?assertEqual(<<"end">>, binary:part(Bin, 4093, 3))
    end,
    ?assertEqual(4096, byte_size(Bin)),
    emmap:close(M),
    erlang:garbage_collect(),
    ?assertEqual(<<"keep me">>, binary:copy(binary:part(Bin, 0, 7))),   % outlives the handle
    file:delete(F).

%% The safe path README.md documents for zero-copy binaries whose bytes
%% another writer changes: binary:copy/1 first. The copy never changes, and
%% binary_to_term/1 over it answers a term or badarg (a torn copy), never
%% anything worse; the direct binary itself is seen to change meanwhile.
direct_binary_copy_is_the_safe_path_test_() ->
    {timeout, 120, fun() ->
        F = tmp("dcopy"),
        {ok, M, _} = emmap:open(F, [create, read, write, direct, {size, 4096}]),
        T1 = term_to_binary({first, lists:seq(1, 100), <<"payload">>}),
        T2 = term_to_binary({other, lists:seq(101, 200), <<"PAYLOAD">>}),
        ?assertEqual(byte_size(T1), byte_size(T2)),
        Len = byte_size(T1),
        Junk = binary:copy(<<131, 255>>, Len div 2),
        ok = emmap:pwrite(M, 0, T1),
        Self = self(),
        Writer = spawn_link(fun() -> flip(M, [T1, T2, Junk], Self) end),
        {ok, Direct} = emmap:pread(M, 0, Len),
        %% At least 20,000 reads, and on until the writer was seen at work
        %% (on a loaded machine it may not run during the first ones).
        Seen = read_copies_until_seen(Direct, read_copies(Direct, 20000, #{changed => 0, term => 0, badarg => 0}),
                                      erlang:monotonic_time(millisecond) + 30000),
        Writer ! stop,
        receive {flipped, Writer} -> ok end,
        ?assert(maps:get(changed, Seen) > 0),
        ?assert(maps:get(term, Seen) > 0),
        ok = emmap:close(M),
        file:delete(F)
    end}.

flip(M, Values, Parent) ->
    receive stop -> Parent ! {flipped, self()}
    after 0 ->
        [ok = emmap:pwrite(M, 0, V) || V <- Values],
        flip(M, Values, Parent)
    end.

read_copies_until_seen(Direct, #{changed := C, term := T} = Seen, Deadline) when C =:= 0; T =:= 0 ->
    case erlang:monotonic_time(millisecond) < Deadline of
        true -> read_copies_until_seen(Direct, read_copies(Direct, 1000, Seen), Deadline);
        false -> Seen
    end;
read_copies_until_seen(_Direct, Seen, _Deadline) -> Seen.

read_copies(_Direct, 0, Seen) -> Seen;
read_copies(Direct, N, Seen) ->
    Copy = binary:copy(Direct),
    Frozen = binary:copy(Copy),
    Kind = try binary_to_term(Copy) of
               _ -> term
           catch error:badarg -> badarg
           end,
    ?assertEqual(Frozen, Copy),                       % a copy never changes
    Changed = case Direct =:= Copy of true -> 0; false -> 1 end,
    read_copies(Direct, N - 1, Seen#{Kind := maps:get(Kind, Seen) + 1,
                                      changed := maps:get(changed, Seen) + Changed}).

auto_unlink_test() ->
    F = tmp("unlink"),
    {ok, M, _} = emmap:open(F, [create, read, write, auto_unlink, {size, 8}]),
    ?assert(filelib:is_file(F)),
    ok = emmap:close(M),
    ?assertNot(filelib:is_file(F)).

%%% ---------------------------------------------------------------------------
%%% Atomics
%%% ---------------------------------------------------------------------------

atomics_test() ->
    with_file("atom", 64, fun(_F, M) ->
        ?assertEqual({ok, 0}, emmap:patomic_add(M, 8, 10)),
        ?assertEqual({ok, 10}, emmap:patomic_sub(M, 8, 3)),
        ?assertEqual({ok, 7}, emmap:patomic_or(M, 8, 8)),
        ?assertEqual({ok, 15}, emmap:patomic_and(M, 8, 6)),
        ?assertEqual({ok, 6}, emmap:patomic_xor(M, 8, 3)),
        ?assertEqual({ok, 5}, emmap:patomic_xchg(M, 8, -1)),
        ?assertEqual({ok, -1}, emmap:patomic_read_integer(M, 8)),
        ?assertEqual({true, -1}, emmap:patomic_cas(M, 8, -1, 42)),
        ?assertEqual({false, 42}, emmap:patomic_cas(M, 8, -1, 0)),
        ok = emmap:patomic_write_integer(M, 16, 1 bsl 62),
        ?assertEqual(1 bsl 62, emmap:patomic_read(M, 16)),
        ok = emmap:patomic_write(M, 16, 3),
        ?assertEqual({ok, 3}, emmap:patomic(M, 16, add, 1)),
        ?assertEqual({ok, 4}, emmap:patomic(M, 16, sub, 1)),
        ?assertEqual({ok, 3}, emmap:patomic(M, 16, 'band', 1)),
        ?assertEqual({ok, 1}, emmap:patomic(M, 16, 'bor', 6)),
        ?assertEqual({ok, 7}, emmap:patomic(M, 16, 'bxor', 7)),
        ?assertEqual({ok, 0}, emmap:patomic(M, 16, xchg, 9)),
        %% unsigned bit patterns are accepted, read back signed
        ok = emmap:patomic_write(M, 24, ?MAX64),
        ?assertEqual(-1, emmap:patomic_read(M, 24)),
        ?assertEqual({error, einval}, emmap:patomic_write(M, 24, 1 bsl 64)),
        ?assertEqual({error, einval}, emmap:patomic_add(M, 24, -(1 bsl 63) - 1)),
        [?assertEqual({error, einval}, emmap:patomic_add(M, P, 1))
         || P <- [1, 4, 7, 60, 64, -8, ?MAX64, ?MAX64 - 7, 1 bsl 64, 1 bsl 70]],
        ?assertEqual({error, einval}, emmap:patomic_read(M, 3)),
        ?assertEqual({error, einval}, emmap:patomic_cas(M, 3, 0, 1)),
        ?assertError(badarg, emmap:patomic(M, 8, bogus, 1)),
        ?assertError(badarg, emmap:patomic(M, 8, add, 1.5)),
        ?assertError(badarg, emmap:patomic_add(M, x, 1)),
        ?assertError(badarg, emmap:patomic_cas(M, 0, a, 1))
    end).

atomics_many_processes_test() ->
    with_file("atomp", 64, fun(_F, M) ->
        Self = self(),
        N = 8, K = 5000,
        [spawn_link(fun() ->
                            [{ok, _} = emmap:patomic_add(M, 0, 1) || _ <- lists:seq(1, K)],
                            Self ! done
                    end) || _ <- lists:seq(1, N)],
        [receive done -> ok end || _ <- lists:seq(1, N)],
        ?assertEqual(N * K, emmap:patomic_read(M, 0))
    end).

%%% ---------------------------------------------------------------------------
%%% Size and durability
%%% ---------------------------------------------------------------------------

resize_test() ->
    with_file("resize", 4096, fun(F, M) ->
        ok = emmap:pwrite(M, 0, <<"data">>),
        case can_resize() of
            true -> resizes(F, M);
            false -> no_resize(F, M)
        end
    end).

resizes(F, M) ->
    ?assertEqual({ok, 8192}, emmap:resize(M)),
    ?assertEqual(8192, filelib:file_size(F)),
    ?assertEqual({ok, <<"data">>}, emmap:pread(M, 0, 4)),
    ?assertEqual({ok, 3}, emmap:resize(M, 3)),
    ?assertEqual({ok, <<"dat">>}, emmap:pread(M, 0, 10)),
    ?assertMatch({error, _}, emmap:resize(M, 1 bsl 62)),
    ?assertEqual({error, einval}, emmap:resize(M, -1)),
    ?assertError(badarg, emmap:resize(M, "big")),
    ?assertEqual({ok, <<"dat">>}, emmap:pread(M, 0, 10)).

%% darwin (README.md, "Backends"): every resize of a live map answers
%% {error, fixed_size} and leaves map and file as they were; bad values and
%% types are still told apart.
no_resize(F, M) ->
    [?assertEqual({error, fixed_size}, R)
     || R <- [emmap:resize(M), emmap:resize(M, 8192), emmap:resize(M, 3), emmap:resize(M, 4096),
              emmap:resize(M, 0), emmap:resize(M, 1 bsl 62)]],
    ?assertEqual({error, einval}, emmap:resize(M, -1)),
    ?assertError(badarg, emmap:resize(M, "big")),
    ?assertEqual(4096, maps:get(size, emmap:info(M))),
    ?assertEqual(4096, filelib:file_size(F)),
    ?assertEqual({ok, <<"data">>}, emmap:pread(M, 0, 4)),
    ok = emmap:pwrite(M, 4092, <<"last">>),
    ?assertEqual({error, einval}, emmap:pwrite(M, 4093, <<"last">>)).

fixed_size_test() ->
    F = tmp("fixed"),
    {ok, M, _} = emmap:open(F, [create, read, write, fixed_size, {size, 64}]),
    ?assertEqual({error, fixed_size}, emmap:resize(M, 128)),
    ?assertEqual({error, fixed_size}, emmap:resize(M)),
    emmap:close(M), file:delete(F).

%% README.md, "Durability": info/1 says how sync persists (forced
%% persistent memory is emmap_pmem_tests, run with EMMAP_PMEM_FORCE=1).
persistence_test() ->
    F = tmp("pmem"),
    {ok, M, _} = emmap:open(F, [create, read, write, {size, 3 * 4096}]),
    ?assertMatch(#{persistence := msync, device_dax := false, pmem_forced := false}, emmap:info(M)),
    ok = emmap:close(M),
    {ok, A, _} = emmap:open(F, [read, write, dax_if_available]),
    ?assertMatch(#{persistence := msync}, emmap:info(A)),  % no DAX here: an ordinary shared map
    ok = emmap:sync(A),
    ok = emmap:close(A),
    {ok, An, _} = emmap:open("", 0, 4096, [anon, read, write, dax_if_available]),
    ?assertMatch(#{persistence := msync}, emmap:info(An)),
    ok = emmap:close(An),
    file:delete(F).

sync_and_advise_test() ->
    with_file("sync", 3 * 4096, fun(F, M) ->
        ok = emmap:pwrite(M, 5000, <<"durable">>),
        ?assertEqual(ok, emmap:sync(M, 5000, 7)),
        ?assertEqual(ok, emmap:sync(M)),
        ?assertEqual(ok, emmap:flush(M)),
        {ok, Bin} = file:read_file(F),
        ?assertEqual(<<"durable">>, binary:part(Bin, 5000, 7)),
        ?assertEqual({error, einval}, emmap:sync(M, 1 bsl 40, 1)),
        {ok, Ref} = emmap:sync_async(M),
        receive {emmap_sync, Ref, R} -> ?assertEqual(ok, R)
        after 10000 -> ?assert(false)
        end,
        [?assertEqual(ok, emmap:advise(M, 0, 4096, H))
         || H <- [normal, random, sequential, willneed, dontneed]],
        ?assertEqual({ok, <<"durable">>}, emmap:pread(M, 5000, 7)),
        ?assertEqual({error, einval}, emmap:advise(M, 0, 10, bogus)),
        ?assertEqual({error, einval}, emmap:advise(M, 1 bsl 63, 10, normal)),
        ?assertError(badarg, emmap:advise(M, 0, 10, "normal"))
    end).

%%% ---------------------------------------------------------------------------
%%% After close
%%% ---------------------------------------------------------------------------

closed_handle_test() ->
    {F, M, _} = new_file("closed", 64),
    ok = emmap:close(M),
    Calls = [fun() -> emmap:pread(M, 0, 1) end,
             fun() -> emmap:pwrite(M, 0, <<"x">>) end,
             fun() -> emmap:read(M, 1) end,
             fun() -> emmap:write(M, <<"x">>) end,
             fun() -> emmap:read_line(M) end,
             fun() -> emmap:position(M, 0) end,
             fun() -> emmap:truncate(M) end,
             fun() -> emmap:sync(M) end,
             fun() -> emmap:sync_async(M) end,
             fun() -> emmap:advise(M, 0, 1, normal) end,
             fun() -> emmap:resize(M) end,
             fun() -> emmap:resize(M, 10) end,
             fun() -> emmap:patomic_add(M, 0, 1) end,
             fun() -> emmap:patomic_cas(M, 0, 0, 1) end,
             fun() -> emmap:patomic_read_integer(M, 0) end,
             fun() -> emmap:patomic_read(M, 0) end,
             fun() -> emmap:patomic_write(M, 0, 1) end,
             fun() -> emmap:info(M) end,
             fun() -> emmap:pread(M, [{0, 1}]) end],
    [?assertEqual({error, closed}, C()) || C <- Calls],
    ?assertEqual({error, {0, closed}}, emmap:pwrite(M, [{0, <<"x">>}])),
    ?assertEqual(ok, emmap:close(M)),
    file:delete(F).

%% The hot calls pass their integers to the NIF unguarded: a wrong type
%% must still raise badarg even when another argument is out of range (which
%% alone is {error, einval}), in either order, and a handle record must be
%% emmap's own even when its data is a live emmap resource.
a_wrong_type_wins_over_a_wrong_value_test() ->
    F = tmp("typewins"),
    {ok, M, _} = emmap:open(F, [create, read, write, {size, 4096}]),
    #file_descriptor{data = R} = M,
    {ok, I} = iommap:open(F, []),
    Foreign = [{file_descriptor, prim_file, R}, {file_descriptor, foo, R}, {file_descriptor, foo, I}],
    BadType = [fun() -> emmap:patomic_add(M, -1, foo) end,
               fun() -> emmap:patomic_add(M, foo, 1 bsl 70) end,
               fun() -> emmap:patomic_xchg(M, 1 bsl 64, 1.0) end,
               fun() -> emmap:patomic_write_integer(M, -8, "1") end,
               fun() -> emmap:patomic_write_integer(M, <<>>, -1 bsl 70) end,
               fun() -> emmap:pread(M, -1, foo) end,
               fun() -> emmap:pread(M, 1 bsl 64, 1.0) end,
               fun() -> emmap:pread(M, 1.0, -1) end] ++
              [fun() -> emmap:pread(H, 0, 4) end || H <- Foreign] ++
              [fun() -> emmap:pwrite(H, 0, <<1>>) end || H <- Foreign] ++
              [fun() -> emmap:patomic_add(H, 0, 1) end || H <- Foreign] ++
              [fun() -> emmap:patomic_read_integer(H, 0) end || H <- Foreign],
    [?assertError(badarg, B()) || B <- BadType],
    %% Values alone out of range, or past the end: einval, as before.
    ?assertEqual({error, einval}, emmap:patomic_add(M, -1, 1)),
    ?assertEqual({error, einval}, emmap:patomic_add(M, 0, 1 bsl 70)),
    ?assertEqual({error, einval}, emmap:pread(M, -1, 4)),
    ?assertEqual({error, einval}, emmap:patomic_write_integer(M, 1 bsl 64, 1)),
    ?assertEqual({ok, 0}, emmap:patomic_read_integer(M, 0)),     % nothing was written
    ok = iommap:close(I),
    ok = emmap:close(M),
    file:delete(F).

%%% ---------------------------------------------------------------------------
%%% Counters
%%% ---------------------------------------------------------------------------

counters_reference_example_test() ->
    F = tmp("counters"),
    C  = emmap:open_counters(F, 2),
    N1 = emmap:inc_counter(C, 0),
    N2 = emmap:inc_counter(C, 0, 5),
    N3 = emmap:inc_counter(C, 0),
    N4 = emmap:inc_counter(C, 0, 2),
    N5 = emmap:set_counter(C, 0, 15),
    N6 = emmap:read_counter(C, 0),
    Out = lists:flatten(io_lib:format("N1=~w, N2=~w, N3=~w, N4=~w, N5=~w, N6=~w",
                                      [N1, N2, N3, N4, N5, N6])),
    ?assertEqual("N1=0, N2=1, N3=6, N4=7, N5=9, N6=15", Out),
    ?assertEqual(0, emmap:dec_counter(C, 1)),
    ?assertEqual(-1, emmap:dec_counter(C, 1, 4)),
    ?assertError(badarg, emmap:inc_counter(C, 2)),
    ?assertError(badarg, emmap:inc_counter(C, -1)),
    ?assertError(badarg, emmap:inc_counter(C, 0, foo)),
    ?assertError(badarg, emmap:dec_counter(C, 2, 1)),
    ?assertError(badarg, emmap:set_counter(not_counters, 0, 1)),
    %% A value past 64 bits is a wrong value of the right type.
    ?assertError({emmap_counters, einval}, emmap:inc_counter(C, 0, 1 bsl 70)),
    ?assertEqual(15, emmap:read_counter(C, 0)),
    ok = emmap:close_counters(C),
    [?assertError({emmap_counters, closed}, Op()) ||
        Op <- [fun() -> emmap:inc_counter(C, 0) end, fun() -> emmap:dec_counter(C, 0, 2) end,
               fun() -> emmap:set_counter(C, 0, 3) end, fun() -> emmap:read_counter(C, 0) end]],
    %% Values survive closing and reopening; more counters grow the file.
    C2 = emmap:open_counters(F, 3),
    ?assertEqual(15, emmap:read_counter(C2, 0)),
    ?assertEqual(-5, emmap:read_counter(C2, 1)),
    ?assertEqual(0, emmap:read_counter(C2, 2)),
    ok = emmap:close_counters(C2),
    C3 = emmap:open_counters(F),
    ?assertEqual(15, emmap:read_counter(C3, 0)),
    ?assertEqual(0, emmap:inc_counter(C3, 2)),          % the file keeps its 3 counters
    ok = emmap:close_counters(C3),
    file:delete(F).

%% More counters grow the file while other handles keep their maps (a live
%% map is never resized, so this works on darwin too); the count in the
%% header only goes up, even when two processes grow it at once.
counters_grow_while_open_test() ->
    F = tmp("cntgrow"),
    C1 = emmap:open_counters(F, 2),
    ?assertEqual(0, emmap:inc_counter(C1, 1, 5)),
    C2 = emmap:open_counters(F, 4),
    ?assertEqual(32 + 4 * 8, filelib:file_size(F)),
    ?assertEqual(5, emmap:inc_counter(C2, 1)),
    ?assertEqual(6, emmap:read_counter(C1, 1)),             % one file, both handles
    ?assertEqual(0, emmap:inc_counter(C2, 3)),
    ?assertError(badarg, emmap:inc_counter(C1, 3)),          % C1 maps its two
    C3 = emmap:open_counters(F, 1),
    ?assertEqual(1, emmap:read_counter(C3, 3)),              % the file keeps its 4
    [ok = emmap:close_counters(C) || C <- [C1, C2, C3]],
    Self = self(),
    [spawn_link(fun() -> C = emmap:open_counters(F, N), ok = emmap:close_counters(C), Self ! {grown, N} end)
     || N <- [10, 20, 15]],
    [receive {grown, N} -> ok end || N <- [10, 20, 15]],
    C4 = emmap:open_counters(F),
    ?assertEqual(0, emmap:read_counter(C4, 19)),
    ?assertError(badarg, emmap:read_counter(C4, 20)),
    ?assertEqual(6, emmap:read_counter(C4, 1)),
    ok = emmap:close_counters(C4),
    ?assertEqual(32 + 20 * 8, filelib:file_size(F)),
    file:delete(F).

counters_bad_file_test() ->
    F = tmp("badcnt"),
    ok = file:write_file(F, binary:copy(<<"not a counter file">>, 4)),
    ?assertError({emmap_counters, bad_header}, emmap:open_counters(F, 1)),
    ?assertEqual({ok, binary:copy(<<"not a counter file">>, 4)}, file:read_file(F)),
    ok = file:write_file(F, <<"EMMAPCNT", 99:64/native, 1:64/native, 0:64, 0:64>>),
    ?assertError({emmap_counters, {version, 99}}, emmap:open_counters(F, 1)),
    ?assertError(badarg, emmap:open_counters(F, 0)),
    ?assertError(badarg, emmap:read_counter(not_counters, 0)),
    file:delete(F).

%% A header with no count yet (a crash right after the file was made, or
%% another opener between its magic and its count) is a new file: the open
%% grows it to what it needs and initialises it. A count the file does not
%% cover is a damaged header, and the file is left as it is.
counters_unfinished_and_damaged_headers_test() ->
    F = tmp("cnthdr"),
    ok = file:write_file(F, <<0:320>>),                             % 40 zero bytes, room for 1 counter
    C = emmap:open_counters(F, 10),
    ?assertEqual(0, emmap:inc_counter(C, 9)),
    ok = emmap:close_counters(C),
    ?assertEqual(32 + 8 * 10, filelib:file_size(F)),
    C2 = emmap:open_counters(F, 1),
    ?assertEqual(1, emmap:read_counter(C2, 9)),
    ok = emmap:close_counters(C2),
    ok = file:write_file(F, <<"EMMAPCNT", 1:64/native, 0:64, 0:64, 0:64, 0:64>>),   % magic, no count
    C3 = emmap:open_counters(F, 2),
    ?assertEqual(0, emmap:inc_counter(C3, 1)),
    ok = emmap:close_counters(C3),
    Damaged = <<"EMMAPCNT", 1:64/native, 1000:64/native, 0:64, 0:64>>,
    ok = file:write_file(F, Damaged),
    ?assertError({emmap_counters, bad_header}, emmap:open_counters(F, 1)),
    ?assertEqual({ok, Damaged}, file:read_file(F)),
    file:delete(F).

%%% ---------------------------------------------------------------------------
%%% Resource hygiene
%%% ---------------------------------------------------------------------------

no_fd_leaks_test_() ->
    {timeout, 120, fun() ->
        F = tmp("leak"),
        {ok, M0, _} = emmap:open(F, [create, read, write, {size, 4096}]),
        emmap:close(M0),
        %% Earlier tests' maps may still be closing (large ones are closed by
        %% the reaper thread, later on a loaded machine): count from a
        %% settled baseline, or a late close reads as fewer descriptors.
        Before = settled_fd_count(fd_count(), 50),
        [begin {ok, M, _} = emmap:open(F, [read, write]), ok = emmap:close(M) end
         || _ <- lists:seq(1, 1000)],
        ?assertEqual(Before, fd_count()),
        %% Dropped without close, then collected.
        {Pid, Ref} = spawn_monitor(fun() ->
                          [begin {ok, _, _} = emmap:open(F, [read, write, direct]) end
                           || _ <- lists:seq(1, 1000)]
                      end),
        receive {'DOWN', Ref, process, Pid, normal} -> ok end,
        erlang:garbage_collect(),
        wait_until(fun() -> fd_count() =:= Before end, 5000),
        ?assertEqual(Before, fd_count()),
        file:delete(F)
    end}.

wait_until(Fun, Ms) when Ms =< 0 -> Fun();
wait_until(Fun, Ms) ->
    case Fun() of
        true -> true;
        false -> timer:sleep(20), wait_until(Fun, Ms - 20)
    end.

%%% ---------------------------------------------------------------------------
%%% Two OS processes
%%% ---------------------------------------------------------------------------

other_vm(Eval) ->
    Erl = os:find_executable("erl"),
    Ebin = filename:join(code:lib_dir(emmap), "ebin"),
    Port = open_port({spawn_executable, Erl},
                     [{args, ["-noshell", "-pa", Ebin, "-eval", Eval]},
                      exit_status, binary, stderr_to_stdout]),
    Port.

wait_vm(Port, Acc) ->
    receive
        {Port, {data, D}} -> wait_vm(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, S}} -> {S, Acc}
    after 60000 -> {timeout, Acc}
    end.

two_vms_test_() ->
    {timeout, 120, fun() ->
        F = tmp("twovm"),
        {ok, M, _} = emmap:open(F, [create, read, write, shared, {size, 4096}]),
        {ok, P, _} = emmap:open(F, [read, write, private]),
        N = 20000,
        Eval = lists:flatten(io_lib:format(
                 "{ok, M, _} = emmap:open(~p, [read, write, shared]),"
                 "ok = emmap:pwrite(M, 100, <<\"from the other vm\">>),"
                 "[{ok, _} = emmap:patomic_add(M, 0, 1) || _ <- lists:seq(1, ~p)],"
                 "{ok, Q, _} = emmap:open(~p, [read, write, private]),"
                 "ok = emmap:pwrite(Q, 200, <<\"private\">>),"
                 "halt(0).", [F, N, F])),
        Port = other_vm(Eval),
        [{ok, _} = emmap:patomic_add(M, 0, 1) || _ <- lists:seq(1, N)],
        ok = emmap:pwrite(P, 300, <<"mine only">>),
        ?assertEqual({0, <<>>}, wait_vm(Port, <<>>)),
        ?assertEqual(2 * N, emmap:patomic_read(M, 0)),
        ?assertEqual({ok, <<"from the other vm">>}, emmap:pread(M, 100, 17)),
        {ok, FileBin} = file:read_file(F),
        ?assertEqual(<<"from the other vm">>, binary:part(FileBin, 100, 17)),
        ?assertEqual(<<0:56>>, binary:part(FileBin, 200, 7)),   % private writes stay private
        ?assertEqual(<<0:72>>, binary:part(FileBin, 300, 9)),
        ?assertEqual({ok, <<0:56>>}, emmap:pread(M, 200, 7)),
        emmap:close(M), emmap:close(P), file:delete(F)
    end}.

%%% ---------------------------------------------------------------------------
%%% Block storage
%%% ---------------------------------------------------------------------------

block_storage_test() ->
    F = tmp("blocks"),
    {ok, M, _} = emmap:open(F, [create, read, write, {size, 4096}]),
    ok = emmap:init_block_storage(M, 64),
    ok = emmap:init_block_storage(M, 64),
    ?assertEqual({error, einval}, emmap:init_block_storage(M, 32)),
    Addrs = [emmap:store_block(M, <<"block", (integer_to_binary(I))/binary>>) || I <- lists:seq(0, 4)],
    ?assertEqual([0, 1, 2, 3, 4], Addrs),
    ?assertEqual(<<"block3">>, emmap:read_block(M, 3)),
    ?assertEqual(true, emmap:free_block(M, 1)),
    ?assertEqual(false, emmap:free_block(M, 1)),
    ?assertEqual(eof, emmap:read_block(M, 1)),
    ?assertEqual(1, emmap:store_block(M, ["re", <<"used">>])),
    ?assertEqual({error, einval}, emmap:store_block(M, binary:copy(<<"x">>, 65))),
    %% Any address: a result or an error, never a read outside the storage.
    [?assertEqual({error, einval}, emmap:read_block(M, A)) || A <- [10000, -1, 1 bsl 64, 16#FFFFFFFFFFFFFFFF]],
    [?assertEqual(false, emmap:free_block(M, A)) || A <- [10000, -1, 1 bsl 64]],
    ?assertError(badarg, emmap:read_block(M, foo)),
    ?assertError(badarg, emmap:store_block(M, foo)),
    ?assertEqual([{0, <<"block0">>}, {1, <<"reused">>}, {2, <<"block2">>}, {3, <<"block3">>}, {4, <<"block4">>}],
                 emmap:read_blocks(M)),
    ?assertMatch({[{0, _}, {1, _}], 2}, emmap:read_blocks(M, 0, 2)),
    ?assertMatch({[{4, _}], _}, emmap:read_blocks(M, 4, 1)),
    {Rest, eof} = emmap:read_blocks(M, 2, 100),
    ?assertEqual([2, 3, 4], [A || {A, _} <- Rest]),
    ?assertEqual(ok, emmap:repair_block_storage(M)),
    ?assertEqual(eof, emmap:repair_block_storage(M, 0, 1 bsl 40)),
    ?assert(is_integer(emmap:repair_block_storage(M, 0, 2))),
    Stores = [emmap:store_block(M, <<I:64>>) || I <- lists:seq(1, 200)],
    case can_resize() of
        true ->
            %% Grows past the initial 4096 bytes.
            [?assert(is_integer(A)) || A <- Stores],
            ?assert(maps:get(size, emmap:info(M)) > 4096);
        false ->
            %% darwin: the map cannot grow; every slot of it is used, then
            %% {error, full} (README.md, "Backends"), and a freed slot is
            %% taken again.
            Slots = (4096 - 64) div 72,
            {Stored, Refused} = lists:split(Slots - 5, Stores),
            ?assertEqual(lists:seq(5, Slots - 1), Stored),
            ?assertEqual([{error, full}], lists:usort(Refused)),
            ?assertEqual(4096, maps:get(size, emmap:info(M))),
            ?assertEqual(true, emmap:free_block(M, 9)),
            ?assertEqual(9, emmap:store_block(M, <<"room again">>)),
            ?assertEqual({error, full}, emmap:store_block(M, <<"no room">>))
    end,
    ok = emmap:close(M),
    ?assertEqual({error, closed}, emmap:store_block(M, <<"x">>)),
    %% Reopened: the blocks are there.
    {ok, M2, _} = emmap:open(F, [read, write]),
    ok = emmap:init_block_storage(M2, 64),
    ?assertEqual(<<"reused">>, emmap:read_block(M2, 1)),
    emmap:close(M2),
    %% fixed_size: full instead of growing.
    {ok, M3, _} = emmap:open(F ++ "-fixed", [create, read, write, fixed_size, {size, 64 + 2 * 72}]),
    ok = emmap:init_block_storage(M3, 64),
    0 = emmap:store_block(M3, <<"a">>),
    1 = emmap:store_block(M3, <<"b">>),
    ?assertEqual({error, full}, emmap:store_block(M3, <<"c">>)),
    emmap:close(M3),
    %% A file that is not block storage is refused and left alone.
    ok = file:write_file(F ++ "-foreign", binary:copy(<<"z">>, 4096)),
    {ok, M4, _} = emmap:open(F ++ "-foreign", [read, write]),
    ?assertEqual({error, corrupt}, emmap:init_block_storage(M4, 64)),
    ?assertEqual({error, corrupt}, emmap:store_block(M4, <<"x">>)),
    emmap:close(M4),
    %% An empty file: the map grows to hold one slot; one that cannot
    %% (fixed_size, or any on darwin) is full. Opened at a size, it works.
    ok = file:write_file(F ++ "-empty", <<>>),
    {ok, M5, #{size := 0}} = emmap:open(F ++ "-empty", [read, write]),
    ?assertEqual(case can_resize() of true -> ok; false -> {error, full} end,
                 emmap:init_block_storage(M5, 64)),
    emmap:close(M5),
    {ok, M6, #{size := 0}} = emmap:open(F ++ "-empty-fixed", [create, read, write, fixed_size]),
    ?assertEqual({error, full}, emmap:init_block_storage(M6, 64)),
    ?assertEqual(0, maps:get(size, emmap:info(M6))),
    emmap:close(M6),
    ok = file:write_file(F ++ "-empty", <<>>),
    {ok, M7, #{size := 136}} = emmap:open(F ++ "-empty", [read, write, fit, {size, 64 + 72}]),
    ok = emmap:init_block_storage(M7, 64),
    0 = emmap:store_block(M7, <<"one">>),
    ?assertEqual(<<"one">>, emmap:read_block(M7, 0)),
    emmap:close(M7),
    [file:delete(X) || X <- [F, F ++ "-fixed", F ++ "-foreign", F ++ "-empty", F ++ "-empty-fixed"]].

%%% ---------------------------------------------------------------------------
%%% Hot code loading
%%% ---------------------------------------------------------------------------

hot_upgrade_test() ->
    {F, M, _} = new_file("upgrade", 64),
    {ok, D, _} = emmap:open(F, [read, write, direct]),
    ok = emmap:pwrite(M, 0, <<"before">>),
    {ok, Bin} = emmap:pread(D, 0, 6),
    %% Load the NIF module again: the running instance becomes old code and
    %% the new one takes the resource types over (upgrade); purging the old
    %% code unloads its instance. Handles made before keep working.
    code:purge(emmap_nif),
    ?assertEqual({module, emmap_nif}, code:load_file(emmap_nif)),
    ?assert(code:purge(emmap_nif) orelse true),
    ok = emmap:pwrite(M, 0, <<"after!">>),
    ?assertEqual(<<"after!">>, Bin),
    ?assertEqual({ok, 0}, emmap:patomic_add(M, 8, 1)),
    ?assertEqual({ok, 1}, emmap:patomic_read_integer(M, 8)),
    {ok, M2, _} = emmap:open(F, [read]),
    ?assertEqual({ok, <<"after!">>}, emmap:pread(M2, 0, 6)),
    %% Twice more, then drop everything: destructors of the newest code run.
    [begin code:purge(emmap_nif), {module, _} = code:load_file(emmap_nif) end || _ <- [1, 2]],
    code:purge(emmap_nif),
    ok = emmap:close(M), ok = emmap:close(D), ok = emmap:close(M2),
    ?assertEqual(<<"after!">>, Bin),
    erlang:garbage_collect(),
    file:delete(F).

%% Options that change meaning are honoured or refused with a reason.
shared_validate_and_huge_pages_test() ->
    F = tmp("validate"),
    {ok, M, #{ignored := Ign}} = emmap:open(F, [create, read, write, shared_validate, {size, 4096}]),
    %% MAP_SHARED_VALIDATE exists on Linux only; elsewhere it is a plain
    %% shared map, and `shared_validate' is listed as ignored.
    ?assertEqual(backend() =/= linux, lists:member(shared_validate, Ign)),
    ok = emmap:pwrite(M, 0, <<"v">>),
    emmap:close(M), file:delete(F),
    %% Huge pages work for anonymous maps when the system has them reserved;
    %% otherwise the OS says why. Never silently small pages.
    lists:foreach(
      fun({Opt, Size}) ->
              case emmap:open("", 0, Size, [anon, read, write, Opt]) of
                  {ok, H, _} -> ok = emmap:pwrite(H, 0, <<"huge">>), emmap:close(H);
                  {error, Reason} -> ?assert(lists:member(Reason, [enomem, einval, eopnotsupp]))
              end
      end, [{hugetlb, 2 bsl 20}, {huge_2mb, 2 bsl 20}, {huge_1gb, 1 bsl 30}]),
    ?assertEqual({error, eopnotsupp}, emmap:open(F, [create, write, hugetlb, {size, 4096}])),
    ?assertNot(filelib:is_file(F)).

sync_async_then_close_test() ->
    {F, M, _} = new_file("asyncclose", 1 bsl 20),
    ok = emmap:pwrite(M, 4000, <<"flushed">>),
    Refs = [begin {ok, R} = emmap:sync_async(M), R end || _ <- lists:seq(1, 20)],
    ok = emmap:close(M),
    [receive {emmap_sync, R, Res} -> ?assertEqual(ok, Res)
     after 20000 -> ?assert(false)
     end || R <- Refs],
    {ok, Bin} = file:read_file(F),
    ?assertEqual(<<"flushed">>, binary:part(Bin, 4000, 7)),
    ?assertError(badarg, emmap_nif:sync_async(element(3, M), not_a_ref)),
    file:delete(F).

%%% ---------------------------------------------------------------------------
%%% A file truncated under the map by another OS process
%%% ---------------------------------------------------------------------------

truncated_under_the_map_test() ->
    F = tmp("trunc-under"),
    {ok, M, _} = emmap:open(F, [create, read, write, {size, 3 * 4096}]),
    {ok, D, _} = emmap:open(F, [read, write, direct]),
    ok = emmap:pwrite(M, 8192, <<"doomed">>),
    {ok, Bin} = emmap:pread(D, 8192, 6),          % zero-copy, over the page about to go
    ?assertEqual(<<"doomed">>, Bin),
    %% The protection survives a hot reload of the NIF module and another
    %% NIF library loaded beside it.
    code:purge(emmap_nif),
    {module, emmap_nif} = code:load_file(emmap_nif),
    code:purge(emmap_nif),
    {ok, _} = application:ensure_all_started(crypto),
    _ = crypto:strong_rand_bytes(8),
    "" = os:cmd("truncate -s 0 " ++ F),           % another OS process
    %% NIF accesses over the lost range answer, and the VM lives on.
    ?assertEqual({error, sigbus}, emmap:pread(M, 8192, 6)),
    ?assertEqual({error, truncated}, emmap:pread(M, 0, 6)),
    ?assertEqual({error, truncated}, emmap:pwrite(M, 0, <<"x">>)),
    ?assertEqual({error, truncated}, emmap:patomic_add(M, 0, 1)),
    %% A read that did not happen leaves the position where it was.
    ?assertEqual({error, truncated}, emmap:read(M, 4)),
    ?assertEqual({error, truncated}, emmap:write(M, <<"w">>)),
    ?assertEqual({ok, 0}, emmap:position(M, cur)),
    ?assertEqual({error, sigbus}, emmap:patomic_add(D, 4096, 1)),
    ?assertEqual({error, truncated}, emmap:patomic_read_integer(D, 4096)),
    %% Erlang code touching the zero-copy binary over the lost page: zeros.
    ?assertEqual(<<0, 0, 0, 0, 0, 0>>, binary:copy(Bin)),
    ?assertEqual(ok, emmap:close(M)),
    ?assertEqual(ok, emmap:close(D)),
    file:delete(F).

%%% ---------------------------------------------------------------------------
%%% Races: workers on one handle while another process resizes and closes it
%%% ---------------------------------------------------------------------------

races_test_() ->
    {timeout, 300, fun() -> [race_round(R) || R <- lists:seq(1, 20)] end}.

race_round(Round) ->
    F = tmp("race" ++ integer_to_list(Round)),
    {ok, M, _} = emmap:open(F, [create, read, write, direct, {size, 65536}]),
    Parent = self(),
    Worker = fun(Kind) ->
                     spawn_link(fun() -> race_worker(Kind, M, Parent, 0, []) end)
             end,
    Ws = [Worker(K) || K <- [read, write, atomic, direct, read, atomic]],
    %% darwin: every resize is refused (README.md, "Backends"); the workers
    %% still race the close.
    Resized = case can_resize() of true -> ok; false -> {error, fixed_size} end,
    [begin
         R = emmap:resize(M, S),
         ?assertEqual(Resized, case R of {ok, S} -> ok; _ -> R end),
         erlang:yield()
     end || S <- lists:flatten(lists:duplicate(10, [1 bsl 20, 4096, 1 bsl 17, 70000]))],
    ok = emmap:close(M),
    %% Every worker ends on {error, closed}, having seen only documented answers.
    [receive {done, W, Seen} -> ?assertEqual([], Seen -- [ok, eof, einval, closed, value]) end || W <- Ws],
    ?assertEqual({error, closed}, emmap:pread(M, 0, 1)),
    file:delete(F).

race_worker(Kind, M, Parent, I, Seen) ->
    Pos = (I * 4099) rem 131072,
    R = case Kind of
            read -> emmap:pread(M, Pos, 256);
            write -> emmap:pwrite(M, Pos, <<"racing">>);
            atomic -> emmap:patomic_add(M, Pos band (bnot 7), 1);
            direct -> case emmap:pread(M, Pos, 64) of
                          {ok, B} -> _ = binary:copy(B), {ok, direct};   % touch it in Erlang
                          Other -> Other
                      end
        end,
    Tag = case R of
              ok -> ok;
              {ok, _} -> value;
              eof -> eof;
              {error, E} -> E
          end,
    Seen1 = lists:usort([Tag | Seen]),
    case Tag of
        closed -> Parent ! {done, self(), Seen1};
        _ -> race_worker(Kind, M, Parent, I + 1, Seen1)
    end.

%%% ---------------------------------------------------------------------------
%%% Allocation failure: an error, never an abort of the VM
%%% ---------------------------------------------------------------------------

%% Issue 9, case 4: reading a 256 MiB block in a VM that cannot get that
%% much more memory aborted the VM (enif_make_new_binary aborts when it
%% cannot allocate; the core built a std::string under noexcept). A VM that
%% caps its own address space (prlimit on itself) gets {error, enomem} and
%% carries on.
read_block_without_memory_is_enomem_test_() ->
    case os:getenv("EMMAP_TEST_SANITIZED") of
        false -> read_block_without_memory();
        _ -> []   % AddressSanitizer's shadow memory cannot live under RLIMIT_AS
    end.

read_block_without_memory() ->
    {timeout, 120, fun() ->
        F = tmp("enomem"),
        Block = 256 bsl 20,
        {ok, M, _} = emmap:open(F, [create, read, write, {size, 64 + Block + 8}]),
        ok = emmap:init_block_storage(M, Block),
        0 = emmap:store_block(M, binary:copy(<<"m">>, Block)),
        ok = emmap:close(M),
        Eval = lists:flatten(io_lib:format(
                 "{ok, M, _} = emmap:open(~p, [read, write]),"
                 "{ok, S} = file:read_file(\"/proc/self/status\"),"
                 "[Kb] = [list_to_integer(string:trim(binary_to_list(V), both, \" kB\\t\"))"
                 "        || <<\"VmSize:\", V/binary>> <- binary:split(S, <<\"\\n\">>, [global])],"
                 "_ = os:cmd(\"prlimit --pid \" ++ os:getpid() ++ \" --as=\" ++ integer_to_list((Kb + 65536) * 1024)),"
                 "io:format(\"~~p~~n\", [emmap:read_block(M, 0)]),"
                 "halt(0).", [F])),
        Port = other_vm(Eval),
        {Status, Out} = wait_vm(Port, <<>>),
        file:delete(F),
        ?assertEqual({0, <<"{error,enomem}\n">>}, {Status, Out})
    end}.
