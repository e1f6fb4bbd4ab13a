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
-export([push/3, peek_front/1, peek_back/1, try_pop/2, try_pop_and_purge/2,
         peek/3, rpeek/3, pop/3, erase/1, flush/1, metadata/1, purge_queue/1]).
-export([start_link/4, enqueue/2, dequeue/1, try_dequeue/2, inspect/1, stop/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-export_type([queue/0, option/0, fold_fun/0]).

-record(emq, {mem :: emmap:mmap_file(),
              q :: reference()}).

-opaque queue() :: #emq{}.
-type option() :: fixed_size | auto_unlink | {sync, never | always | {interval, pos_integer()}}
                | emmap:open_option().

-type fold_fun() :: fun((term(), Acc :: term()) -> {cont, term()} | {halt, term()}).

-define(HEADER, 4096).
-define(SCAN_BATCH, 256).
-define(TERM, 1).
-define(BINARY, 2).
-define(DECODE, 3).     % a term decoded here: compressed ones, and any that looks like ?Z
-define(Z, '$emmap_queue_z').

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
push(#emq{q = Q}, {?Z, _} = Term) ->
    %% Shaped like the NIF's wrapper of a term to decode: stored as one, so
    %% it comes back as itself.
    Bin = term_to_binary(Term),
    retry(fun() -> emmap_nif:queue_push(Q, Bin, ?DECODE) end);
push(#emq{q = Q}, Term) ->
    Bin = term_to_binary(Term),
    retry(fun() -> emmap_nif:queue_push(Q, Bin, ?TERM) end);
push(Q, Term) -> erlang:error(badarg, [Q, Term]).

%% @doc Takes the oldest item; `nil' when the queue is empty.
-spec pop(queue()) -> term() | nil | {error, term()}.
pop(#emq{q = Q}) -> item(retry(fun() -> emmap_nif:queue_pop(Q, pop) end));
pop(Q) -> erlang:error(badarg, [Q]).

%% @doc Appends `Term' compressed at `Level' (0-9, as `term_to_binary/2';
%% 0 is `push/2'). A compressed binary comes back as the same binary.
-spec push(queue(), term(), 0..9) -> ok | {error, term()}.
push(Q, Term, 0) -> push(Q, Term);
push(#emq{q = Q}, Term, Level) when is_integer(Level), Level >= 1, Level =< 9 ->
    Bin = term_to_binary(Term, [{compressed, Level}]),
    retry(fun() -> emmap_nif:queue_push(Q, Bin, ?DECODE) end);
push(Q, Term, Level) -> erlang:error(badarg, [Q, Term, Level]).

%% @doc The oldest item, left in the queue; `nil' when empty.
-spec peek(queue()) -> term() | nil | {error, term()}.
peek(#emq{q = Q}) -> item(retry(fun() -> emmap_nif:queue_pop(Q, peek) end));
peek(Q) -> erlang:error(badarg, [Q]).

%% @doc The oldest item, left in the queue; `nil' when empty (as `peek/1').
-spec peek_front(queue()) -> term() | nil | {error, term()}.
peek_front(Q) -> peek(Q).

%% @doc The newest item, left in the queue; `nil' when empty.
-spec peek_back(queue()) -> term() | nil | {error, term()}.
peek_back(#emq{q = Q}) -> item(retry(fun() -> emmap_nif:queue_pop(Q, back) end));
peek_back(Q) -> erlang:error(badarg, [Q]).

%% @doc Pops the oldest item only if `Fun(Item)' returns: the result is
%% `Fun''s, and the item is gone. If `Fun' raises (or the calling process
%% dies, or its OS process), the item stays at the head and the exception
%% propagates. `nil' when empty.
%%
%% While `Fun' runs the item is claimed: no other pop, try_pop or purge,
%% in any process or OS process, takes it (they wait), so an item goes to
%% at most one successful try_pop; pushes and peeks go on.
-spec try_pop(queue(), fun((term()) -> Result)) -> Result | nil | {error, term()}.
try_pop(Q, Fun) -> try_take(Q, Fun, false).

%% @doc As `try_pop/2'; when the queue becomes empty the file shrinks back
%% to its initial size (as `pop_and_purge/1').
-spec try_pop_and_purge(queue(), fun((term()) -> Result)) -> Result | nil | {error, term()}.
try_pop_and_purge(Q, Fun) -> try_take(Q, Fun, true).

try_take(#emq{q = Q}, Fun, Purge) when is_function(Fun, 1) ->
    case retry(fun() -> emmap_nif:queue_claim(Q) end) of
        {Item, Claim} ->
            Res = try Fun(item(Item))
                  catch Class:Reason:Stack ->
                          emmap_nif:queue_release(Claim),
                          erlang:raise(Class, Reason, Stack)
                  end,
            case retry(fun() -> emmap_nif:queue_commit(Claim, Purge) end) of
                ok -> Res;
                {error, _} = E ->
                    emmap_nif:queue_release(Claim),
                    E
            end;
        Other -> Other  % nil | {error, _}
    end;
try_take(Q, Fun, Purge) ->
    erlang:error(badarg, [Q, Fun, Purge]).

%% @doc Folds `Fun' over the items from the oldest, leaving them queued:
%% `Fun(Item, Acc)' returns `{cont, Acc1}' to go on or `{halt, Acc1}' to
%% stop. The fold sees the items in order, each once; items popped by
%% others while it runs are skipped, items pushed meanwhile may be seen.
-spec peek(queue(), Acc, fold_fun()) -> Acc | {error, term()}.
peek(#emq{q = Q}, Init, Fun) when is_function(Fun, 2) -> fold_front(Q, {0, 0}, Init, Fun, []);
peek(Q, Init, Fun) -> erlang:error(badarg, [Q, Init, Fun]).

fold_front(Q, {Seq, Pos}, Acc, Fun, []) ->
    case retry(fun() -> emmap_nif:queue_scan(Q, Seq, Pos, ?SCAN_BATCH, true) end) of
        {[], _, _} -> Acc;
        {Items, Next, More} -> fold_front(Q, {Next, More}, Acc, Fun, Items);
        {error, _} = E -> E
    end;
fold_front(Q, {Next, More}, Acc, Fun, [{_, _, Item} | Rest]) ->
    case Fun(item(Item), Acc) of
        {cont, Acc1} when Rest =:= [], not More -> Acc1;
        {cont, Acc1} when Rest =:= [] -> fold_front(Q, Next, Acc1, Fun, []);
        {cont, Acc1} -> fold_front(Q, {Next, More}, Acc1, Fun, Rest);
        {halt, Acc1} -> Acc1;
        Other -> erlang:error({bad_return, Other})
    end.

%% @doc Folds `Fun' over the items from the newest (as `peek/3', backwards):
%% the items that were queued when it began, skipping those popped since.
-spec rpeek(queue(), Acc, fold_fun()) -> Acc | {error, term()}.
rpeek(#emq{q = Q}, Init, Fun) when is_function(Fun, 2) ->
    case positions(Q, {0, 0}, []) of
        {error, _} = E -> E;
        Positions -> fold_back(Q, Positions, Init, Fun)
    end;
rpeek(Q, Init, Fun) -> erlang:error(badarg, [Q, Init, Fun]).

%% Where every item is, newest first.
positions(Q, {Seq, Pos}, Acc) ->
    case retry(fun() -> emmap_nif:queue_scan(Q, Seq, Pos, ?SCAN_BATCH, false) end) of
        {Batch, Next, More} ->
            Acc1 = lists:reverse(Batch, Acc),
            case More of
                true -> positions(Q, Next, Acc1);
                false -> Acc1
            end;
        {error, _} = E -> E
    end.

fold_back(_Q, [], Acc, _Fun) -> Acc;
fold_back(Q, [{Seq, Pos} | Older], Acc, Fun) ->
    case retry(fun() -> emmap_nif:queue_scan(Q, Seq, Pos, 1, true) end) of
        {[{Seq, _, Item}], _, _} ->
            case Fun(item(Item), Acc) of
                {cont, Acc1} -> fold_back(Q, Older, Acc1, Fun);
                {halt, Acc1} -> Acc1;
                Other -> erlang:error({bad_return, Other})
            end;
        {_, _, _} -> Acc;  % popped meanwhile, and so is every older one
        {error, _} = E -> E
    end.

%% @doc Pops items from the oldest while `Fun(Item, Acc)' returns
%% `{cont, Acc1}'; the item for which it returns `{halt, Acc1}' stays
%% queued, as does one for which it raises (the exception propagates).
%% Each item is claimed while `Fun' runs (see `try_pop/2'). When the fold
%% empties the queue, its space is given back (as `pop_and_purge/1').
-spec pop(queue(), Acc, fold_fun()) -> Acc | {error, term()}.
pop(#emq{q = Q} = Queue, Acc, Fun) when is_function(Fun, 2) ->
    case retry(fun() -> emmap_nif:queue_claim(Q) end) of
        nil -> Acc;
        {error, _} = E -> E;
        {Item, Claim} ->
            R = try Fun(item(Item), Acc)
                catch Class:Reason:Stack ->
                        emmap_nif:queue_release(Claim),
                        erlang:raise(Class, Reason, Stack)
                end,
            case R of
                {cont, Acc1} ->
                    case retry(fun() -> emmap_nif:queue_commit(Claim, true) end) of
                        ok -> pop(Queue, Acc1, Fun);
                        {error, _} = E ->
                            emmap_nif:queue_release(Claim),
                            E
                    end;
                {halt, Acc1} ->
                    emmap_nif:queue_release(Claim),
                    Acc1;
                Other ->
                    emmap_nif:queue_release(Claim),
                    erlang:error({bad_return, Other})
            end
    end;
pop(Q, Acc, Fun) -> erlang:error(badarg, [Q, Acc, Fun]).

%% @doc Like `pop/1'; when the queue becomes (or is) empty the file shrinks
%% back to its initial size.
-spec pop_and_purge(queue()) -> term() | nil | {error, term()}.
pop_and_purge(#emq{q = Q}) -> item(retry(fun() -> emmap_nif:queue_pop(Q, purge) end));
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

%% @doc Gives the space of an empty queue back (the file shrinks to its
%% initial size): `true'; a queue that holds items is left as it is:
%% `false'. (`erase/1' drops the items.)
-spec purge(queue()) -> boolean() | {error, term()}.
purge(#emq{q = Q}) -> retry(fun() -> emmap_nif:queue_purge(Q, if_empty) end);
purge(Q) -> erlang:error(badarg, [Q]).

%% @doc The older name of `purge/1'.
-spec purge_queue(queue()) -> boolean() | {error, term()}.
purge_queue(Q) -> purge(Q).

%% @doc Drops every item and gives the space back. Waits for a claimed
%% item's `try_pop' to finish.
-spec erase(queue()) -> ok | {error, term()}.
erase(#emq{q = Q}) -> retry(fun() -> emmap_nif:queue_purge(Q) end);
erase(Q) -> erlang:error(badarg, [Q]).

%% @doc Starts writing the queue's dirty pages back to the file, without
%% waiting (pushes and pops are durable as `{sync, Mode}' says anyway).
-spec flush(queue()) -> ok | {error, term()}.
flush(#emq{mem = Mem}) -> emmap:flush(Mem);
flush(Q) -> erlang:error(badarg, [Q]).

%% @doc Where the queue is in its file: `head' (file offset of the oldest
%% item), `tail' (where the next push goes), `next_tail' (the same: a
%% push here commits atomically), `size' (the file's size).
-spec metadata(queue()) -> #{head := non_neg_integer(), tail := non_neg_integer(),
                             next_tail := non_neg_integer(), size := non_neg_integer()}
                           | {error, term()}.
metadata(#emq{} = Q) ->
    case info(Q) of
        #{head := H, tail := T, file_size := Size} -> #{head => H, tail => T, next_tail => T, size => Size};
        {error, _} = E -> E
    end;
metadata(Q) -> erlang:error(badarg, [Q]).

%% @doc The queue's state: `length', `file_size', `capacity' (bytes of
%% ring), `used' (bytes the items take), `epoch' (bumped by every
%% recovery), `repairs' (lock holders that died holding the lock, repaired
%% by the next taker, over the file's life), `strict' (a handle with
%% `{sync, always | interval}' has used the file) and `syncs' (syncs this
%% handle's `{interval, Ms}' timer completed).
%%
%% Given a server (`start_link/4') instead, its queue's `metadata/1'.
-spec info(queue() | atom() | pid()) -> map() | {error, term()}.
info(Server) when is_atom(Server); is_pid(Server) -> gen_server:call(Server, metadata, infinity);
info(#emq{mem = Mem, q = Q}) ->
    case {emmap:info(Mem), retry(fun() -> emmap_nif:queue_info(Q) end)} of
        {#{size := Size}, #{count := N} = I} ->
            maps:remove(count, I#{length => N, file_size => Size});
        {{error, _} = E, _} -> E;
        {_, {error, _} = E} -> E
    end;
info(Q) -> erlang:error(badarg, [Q]).

%% A term the NIF leaves to this module to decode (see ?DECODE).
item({?Z, Bin}) when is_binary(Bin) -> binary_to_term(Bin);
item(Item) -> Item.

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

%% @doc Pops the oldest item through the server only if `Fun(Item)'
%% returns (see `try_pop_and_purge/2'); `Fun' runs in the server. An
%% exception in `Fun' leaves the item and is raised here.
-spec try_dequeue(atom() | pid(), fun((term()) -> Result)) -> Result | nil | {error, term()}.
try_dequeue(Server, Fun) when (is_atom(Server) orelse is_pid(Server)), is_function(Fun, 1) ->
    case gen_server:call(Server, {try_pop, Fun}, infinity) of
        {ok, Res} -> Res;
        {raise, Class, Reason, Stack} -> erlang:raise(Class, Reason, Stack)
    end;
try_dequeue(Server, Fun) -> erlang:error(badarg, [Server, Fun]).

%% @doc The oldest item through the server, left queued; `nil' when empty.
-spec inspect(atom() | pid()) -> term() | nil | {error, term()}.
inspect(Server) when is_atom(Server); is_pid(Server) -> gen_server:call(Server, peek, infinity);
inspect(Server) -> erlang:error(badarg, [Server]).

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
handle_call({try_pop, Fun}, _From, Q) ->
    Reply = try {ok, try_pop_and_purge(Q, Fun)}
            catch Class:Reason:Stack -> {raise, Class, Reason, Stack}
            end,
    {reply, Reply, Q};
handle_call(metadata, _From, Q) -> {reply, metadata(Q), Q};
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
