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
%%% <ul>
%%% <li>`never' (default): nothing is forced to disk; a push survives the
%%%     death of any process, not a power loss (after one the queue holds
%%%     pushed items, each at most once, in order, never a torn one).</li>
%%% <li>`always': every push and pop that returned `ok' is on stable storage
%%%     (`{error, eio}' means the item is not in the queue).</li>
%%% <li>`{interval, Ms}': the queue is synced every `Ms' milliseconds for as
%%%     long as it is open (by any process): a power loss loses at most the
%%%     last `Ms' (plus one sync) of pushes and pops.</li>
%%% </ul>
%%% README.md ("Persistent queue") gives the whole contract, with several
%%% writers and I/O errors.
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
              q :: reference()}).

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
    case take_sync(Options) of
        {{error, _} = E, _} -> E;
        {Sync, Rest} -> open_queue(File, InitialSize, Options, Sync, Rest, 10)
    end;
open(File, InitialSize, Options) ->
    erlang:error(badarg, [File, InitialSize, Options]).

open_queue(File, InitialSize, Options, Sync, Rest, Tries) ->
    Capacity = max(InitialSize, 4096),
    %% fixed_size and auto_unlink belong to the queue (full instead of
    %% growing; the last handle removes the file): the map itself must always
    %% be able to follow the file, which other handles may grow or shrink.
    MapOpts = [create, read, write, shared, fit, {size, ?HEADER + Capacity}
               | [O || O <- Rest, O =/= read, O =/= write, O =/= private, O =/= direct,
                       O =/= fixed_size, O =/= auto_unlink]],
    case emmap:open(File, 0, 0, MapOpts) of
        {ok, Mem, _} ->
            {Durability, Ms} = case Sync of {interval, I} -> {interval, I}; M -> {M, 0} end,
            case emmap_nif:queue_open(element(3, Mem), Capacity, Durability, Ms,
                                      lists:member(fixed_size, Options), lists:member(auto_unlink, Options)) of
                {ok, Q, _Report} ->
                    {ok, #emq{mem = Mem, q = Q}};
                {error, estale} when Tries > 0 ->
                    %% The last handle of an auto_unlink queue removed the
                    %% file while this one opened it: open the new one.
                    emmap:close(Mem),
                    open_queue(File, InitialSize, Options, Sync, Rest, Tries - 1);
                {error, _} = E ->
                    emmap:close(Mem),
                    E
            end;
        {error, _} = E -> E
    end.

%% @doc Closes the queue (its items stay in the file).
-spec close(queue()) -> ok.
close(#emq{mem = Mem, q = Q}) ->
    ok = emmap_nif:queue_close(Q),
    emmap:close(Mem);
close(Q) -> erlang:error(badarg, [Q]).

%% @doc Appends `Term'. `{error, full}' when a `fixed_size' queue has no room.
-spec push(queue(), term()) -> ok | {error, term()}.
push(#emq{q = Q}, Bin) when is_binary(Bin) ->
    retry(fun() -> emmap_nif:queue_push(Q, Bin, ?BINARY) end);
push(#emq{q = Q}, Term) ->
    Bin = term_to_binary(Term),
    retry(fun() -> emmap_nif:queue_push(Q, Bin, ?TERM) end);
push(Q, Term) -> erlang:error(badarg, [Q, Term]).

%% @doc Takes the oldest item; `nil' when the queue is empty.
-spec pop(queue()) -> term() | nil | {error, term()}.
pop(#emq{q = Q}) -> retry(fun() -> emmap_nif:queue_pop(Q, pop) end);
pop(Q) -> erlang:error(badarg, [Q]).

%% @doc The oldest item, left in the queue; `nil' when empty.
-spec peek(queue()) -> term() | nil | {error, term()}.
peek(#emq{q = Q}) -> retry(fun() -> emmap_nif:queue_pop(Q, peek) end);
peek(Q) -> erlang:error(badarg, [Q]).

%% @doc Like `pop/1'; when the queue becomes (or is) empty the file shrinks
%% back to its initial size.
-spec pop_and_purge(queue()) -> term() | nil | {error, term()}.
pop_and_purge(#emq{q = Q}) -> retry(fun() -> emmap_nif:queue_pop(Q, purge) end);
pop_and_purge(Q) -> erlang:error(badarg, [Q]).

%% @doc The number of items in the queue.
-spec length(queue()) -> non_neg_integer() | {error, term()}.
length(#emq{q = Q}) -> retry(fun() -> emmap_nif:queue_length(Q) end);
length(Q) -> erlang:error(badarg, [Q]).

%% @doc Whether the queue holds no item.
-spec is_empty(queue()) -> boolean() | {error, term()}.
is_empty(Q) ->
    case ?MODULE:length(Q) of
        N when is_integer(N) -> N =:= 0;
        E -> E
    end.

%% @doc Drops every item and gives the space back.
-spec purge(queue()) -> ok | {error, term()}.
purge(#emq{q = Q}) -> retry(fun() -> emmap_nif:queue_purge(Q) end);
purge(Q) -> erlang:error(badarg, [Q]).

%% @doc The queue's state: `length', `file_size', `capacity' (bytes of
%% ring), `used' (bytes the items take), `epoch' (bumped by every
%% recovery), `repairs' (lock holders that died holding the lock, repaired
%% by the next taker, over the file's life), `strict' (a handle with
%% `{sync, always | interval}' has used the file) and `syncs' (syncs this
%% handle's `{interval, Ms}' timer completed).
-spec info(queue()) -> map() | {error, term()}.
info(#emq{mem = Mem, q = Q}) ->
    case {emmap:info(Mem), retry(fun() -> emmap_nif:queue_info(Q) end)} of
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

%% The queue's lock may be held by another OS process (or a stuck one): a
%% NIF waits for it only briefly on a dirty scheduler and answers ebusy;
%% the waiting happens here, in the calling process, where it costs no
%% scheduler.
retry(F) -> retry(F, 0).

retry(F, N) ->
    case F() of
        {error, ebusy} ->
            timer:sleep(min(1 bsl min(N, 4), 16)),
            retry(F, N + 1);
        R -> R
    end.

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

%% @doc Stops the server; the queue is closed, its items stay in the file.
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
