%%% @doc A persistent FIFO queue in a memory-mapped file.
%%%
%%% Crash-safe: after the OS process dies at any instant, `open/3' finds
%%% every item whose `push/2' returned `ok' and that was not popped, in
%%% order, and never a torn or corrupt one (records carry their length and a
%%% CRC32C). Several OS processes (several BEAM nodes) may push and pop the
%%% same file at once; a robust lock in the file keeps them apart, and a
%%% process killed while holding it does not stall the others. Space is a
%%% ring that is reused, growing only when full (unless `fixed_size').
%%%
%%% Durability against power loss, by the `{sync, Mode}' option:
%%%   never            (default) nothing is forced to disk: a push survives the
%%%                    death of any process, not a power loss
%%%   always           every push and pop is on stable storage before it returns
%%%   {interval, Ms}   the queue is synced every Ms milliseconds: a power loss
%%%                    loses at most the last Ms of pushes and pops
%%%
%%% Used directly (open/push/pop) or through a gen_server (start_link/4,
%%% enqueue/2, dequeue/1). Binaries are stored as they are; other terms go
%%% through term_to_binary/1.
-module(emmap_queue).
-behaviour(gen_server).

-export([open/3, close/1, push/2, pop/1, peek/1, pop_and_purge/1,
         length/1, is_empty/1, purge/1, info/1]).
-export([start_link/4, enqueue/2, dequeue/1, stop/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-export_type([queue/0, option/0]).

-record(emq, {mem :: emmap:mmap_file(),
              q :: reference(),
              syncer :: pid() | undefined}).

-opaque queue() :: #emq{}.
-type option() :: fixed_size | auto_unlink | {sync, never | always | {interval, pos_integer()}}
                | emmap:open_option().

-define(HEADER, 4096).
-define(TERM, 1).
-define(BINARY, 2).

%%% ---------------------------------------------------------------------------
%%% The queue as a value
%%% ---------------------------------------------------------------------------

%% @doc Opens (or creates) the queue in `File' with `InitialSize' bytes of
%% ring; an existing queue is checked record by record and recovered.
-spec open(file:name_all(), non_neg_integer(), [option()]) -> {ok, queue()} | {error, term()}.
open(File, InitialSize, Options) when is_integer(InitialSize), InitialSize >= 0, is_list(Options) ->
    proper_list(Options) orelse erlang:error(badarg, [File, InitialSize, Options]),
    {Sync, Rest} = take_sync(Options),
    case Sync of
        {error, _} = E -> E;
        _ ->
            Capacity = max(InitialSize, 4096),
            %% fixed_size belongs to the queue (full instead of growing): the
            %% map itself must always be able to follow the file, which other
            %% handles may grow or shrink.
            MapOpts = [create, read, write, shared, fit, {size, ?HEADER + Capacity}
                       | [O || O <- Rest, O =/= read, O =/= write, O =/= private, O =/= direct,
                               O =/= fixed_size]],
            case emmap:open(File, 0, 0, MapOpts) of
                {ok, Mem, _} ->
                    Durability = case Sync of {interval, _} -> interval; M -> M end,
                    FixedSize = lists:member(fixed_size, Options),
                    case emmap_nif:queue_open(element(3, Mem), Capacity, Durability, FixedSize) of
                        {ok, Q, _Report} ->
                            {ok, #emq{mem = Mem, q = Q, syncer = start_syncer(Sync, Q)}};
                        {error, _} = E ->
                            emmap:close(Mem),
                            E
                    end;
                {error, _} = E -> E
            end
    end;
open(File, InitialSize, Options) ->
    erlang:error(badarg, [File, InitialSize, Options]).

%% @doc Closes the queue (its items stay in the file).
-spec close(queue()) -> ok.
close(#emq{mem = Mem, q = Q, syncer = S}) ->
    stop_syncer(S),
    ok = emmap_nif:queue_close(Q),
    emmap:close(Mem);
close(Q) -> erlang:error(badarg, [Q]).

%% @doc Appends `Term'. `{error, full}' when a `fixed_size' queue has no room.
-spec push(queue(), term()) -> ok | {error, term()}.
push(#emq{q = Q}, Bin) when is_binary(Bin) ->
    emmap_nif:queue_push(Q, Bin, ?BINARY);
push(#emq{q = Q}, Term) ->
    emmap_nif:queue_push(Q, term_to_binary(Term), ?TERM);
push(Q, Term) -> erlang:error(badarg, [Q, Term]).

%% @doc Takes the oldest item; `nil' when the queue is empty.
-spec pop(queue()) -> term() | nil | {error, term()}.
pop(#emq{q = Q}) -> emmap_nif:queue_pop(Q, pop);
pop(Q) -> erlang:error(badarg, [Q]).

%% @doc The oldest item, left in the queue; `nil' when empty.
-spec peek(queue()) -> term() | nil | {error, term()}.
peek(#emq{q = Q}) -> emmap_nif:queue_pop(Q, peek);
peek(Q) -> erlang:error(badarg, [Q]).

%% @doc Like `pop/1'; when the queue becomes (or is) empty the file shrinks
%% back to its initial size.
-spec pop_and_purge(queue()) -> term() | nil | {error, term()}.
pop_and_purge(#emq{q = Q}) -> emmap_nif:queue_pop(Q, purge);
pop_and_purge(Q) -> erlang:error(badarg, [Q]).

-spec length(queue()) -> non_neg_integer() | {error, term()}.
length(#emq{q = Q}) -> emmap_nif:queue_length(Q);
length(Q) -> erlang:error(badarg, [Q]).

-spec is_empty(queue()) -> boolean() | {error, term()}.
is_empty(Q) ->
    case ?MODULE:length(Q) of
        N when is_integer(N) -> N =:= 0;
        E -> E
    end.

%% @doc Drops every item and gives the space back.
-spec purge(queue()) -> ok | {error, term()}.
purge(#emq{q = Q}) -> emmap_nif:queue_purge(Q);
purge(Q) -> erlang:error(badarg, [Q]).

%% @doc The queue's state: `length', `file_size', `capacity' (bytes of
%% ring), `used' (bytes the items take), `epoch' (bumped by every
%% recovery), `repairs' (lock holders that died holding the lock, repaired
%% by the next taker, over the file's life) and `strict' (a handle with
%% `{sync, always | interval}' has used the file).
-spec info(queue()) -> map() | {error, term()}.
info(#emq{mem = Mem, q = Q}) ->
    case {emmap:info(Mem), emmap_nif:queue_info(Q)} of
        {#{size := Size}, #{count := N} = I} ->
            maps:remove(count, I#{length => N, file_size => Size});
        {{error, _} = E, _} -> E;
        {_, {error, _} = E} -> E
    end;
info(Q) -> erlang:error(badarg, [Q]).

take_sync(Options) ->
    case [M || {sync, M} <- Options] of
        [] -> {never, Options};
        [M] when M =:= never; M =:= always -> {M, [O || O <- Options, not is_sync(O)]};
        [{interval, Ms} = M] when is_integer(Ms), Ms > 0 -> {M, [O || O <- Options, not is_sync(O)]};
        [Bad | _] -> {{error, {invalid_option, {sync, Bad}}}, Options}
    end.

proper_list(L) ->
    try erlang:length(L) of _ -> true
    catch error:badarg -> false
    end.

is_sync({sync, _}) -> true;
is_sync(_) -> false.

%% {interval, Ms}: a helper makes the queue durable every Ms (what was
%% committed when each sync began) until the queue is closed or its opener
%% exits.
start_syncer({interval, Ms}, Q) ->
    Owner = self(),
    spawn(fun() ->
                  Ref = monitor(process, Owner),
                  sync_loop(Ref, Q, Ms)
          end);
start_syncer(_, _) ->
    undefined.

sync_loop(Ref, Q, Ms) ->
    receive
        stop -> _ = emmap_nif:queue_sync(Q), ok;
        {'DOWN', Ref, process, _, _} -> ok
    after Ms ->
        case emmap_nif:queue_sync(Q) of
            ok -> sync_loop(Ref, Q, Ms);
            {error, closed} -> ok;
            {error, _} -> sync_loop(Ref, Q, Ms)
        end
    end.

stop_syncer(undefined) -> ok;
stop_syncer(Pid) ->
    Ref = monitor(process, Pid),
    Pid ! stop,
    receive {'DOWN', Ref, process, Pid, _} -> ok after 5000 -> ok end.

%%% ---------------------------------------------------------------------------
%%% The queue behind a gen_server
%%% ---------------------------------------------------------------------------

%% @doc Starts a server owning the queue in `File', registered as `Name'.
-spec start_link(atom(), file:name_all(), non_neg_integer(), [option()]) ->
          {ok, pid()} | {error, term()}.
start_link(Name, File, InitialSize, Options) when is_atom(Name) ->
    gen_server:start_link({local, Name}, ?MODULE, {File, InitialSize, Options}, []).

%% @doc Appends `Term' through the server (by name or pid).
-spec enqueue(atom() | pid(), term()) -> ok | {error, term()}.
enqueue(Server, Term) when is_atom(Server); is_pid(Server) ->
    gen_server:call(Server, {push, Term}, infinity);
enqueue(Server, Term) -> erlang:error(badarg, [Server, Term]).

%% @doc Takes the oldest item through the server; `nil' when empty.
-spec dequeue(atom() | pid()) -> term() | nil | {error, term()}.
dequeue(Server) when is_atom(Server); is_pid(Server) -> gen_server:call(Server, pop, infinity);
dequeue(Server) -> erlang:error(badarg, [Server]).

-spec stop(atom() | pid()) -> ok.
stop(Server) -> gen_server:stop(Server).

%% @private
-spec init({file:name_all(), non_neg_integer(), [option()]}) -> {ok, queue()} | {stop, term()}.
init({File, InitialSize, Options}) ->
    process_flag(trap_exit, true),
    case open(File, InitialSize, Options) of
        {ok, Q} -> {ok, Q};
        {error, Reason} -> {stop, Reason}
    end.

%% @private
-spec handle_call(term(), gen_server:from(), queue()) -> {reply, term(), queue()}.
handle_call({push, Term}, _From, Q) -> {reply, push(Q, Term), Q};
handle_call(pop, _From, Q) -> {reply, pop(Q), Q};
handle_call(peek, _From, Q) -> {reply, peek(Q), Q};
handle_call(length, _From, Q) -> {reply, ?MODULE:length(Q), Q};
handle_call(_Other, _From, Q) -> {reply, {error, badarg}, Q}.

%% @private
-spec handle_cast(term(), queue()) -> {noreply, queue()}.
handle_cast(_Msg, Q) -> {noreply, Q}.

%% @private
-spec handle_info(term(), queue()) -> {noreply, queue()}.
handle_info(_Msg, Q) -> {noreply, Q}.

%% @private
-spec terminate(term(), queue()) -> ok.
terminate(_Reason, Q) -> close(Q).
