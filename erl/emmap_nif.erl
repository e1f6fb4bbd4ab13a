%% @private The NIF stubs. Use the `emmap' module: it checks argument types
%% (raising badarg) and turns iodata into binaries before calling these.
-module(emmap_nif).

-export([open/5, close/1, info/1,
         pread/3, read/2, region/3, read_line/1, position/3, pwrite/3, write/2,
         patomic_add/3, patomic_sub/3, patomic_and/3, patomic_or/3, patomic_xor/3,
         patomic_xchg/3, counter_add/3, counter_sub/3, counter_xchg/3,
         patomic_cas/4, patomic_read/2, patomic_write/3,
         resize/1, resize/2, sync/3, sync_async/2, advise/4,
         block_init/2, block_store/2, block_read/2, block_free/2, block_scan/3, block_repair/3,
         queue_open/6, queue_push/3, queue_pop/2, queue_length/1, queue_purge/1,
         queue_sync/1, queue_close/1, queue_info/1, queue_purge/2, queue_claim/1,
         queue_commit/2, queue_release/1, queue_scan/5]).

-on_load(init/0).

-spec init() -> ok | {error, {atom(), string()}}.
init() ->
    Dir = case code:priv_dir(emmap) of
              {error, bad_name} ->
                  %% Not installed as an application: ../priv beside ebin.
                  filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
              D -> D
          end,
    erlang:load_nif(filename:join(Dir, "emmap_nif"), 0).

-define(NIF, erlang:nif_error({nif_not_loaded, ?MODULE})).

-type handle() :: reference().
-type queue() :: reference().
-type reason() :: atom() | {invalid_option, term()}.
-type error() :: {error, reason()}.

-spec open(binary(), file:name_all(), integer(), integer(), list()) -> {ok, handle(), map()} | error().
open(_PathBin, _Path, _Offset, _Length, _Options) -> ?NIF.
-spec close(handle()) -> ok.
close(_H) -> ?NIF.
-spec info(handle()) -> map().
info(_H) -> ?NIF.
-spec pread(handle(), integer(), integer()) -> {ok, binary()} | eof | error().
pread(_H, _Pos, _Len) -> ?NIF.
-spec read(handle(), integer()) -> {ok, binary()} | eof | error().
read(_H, _Len) -> ?NIF.
-spec region(handle(), integer(), integer()) -> {ok, binary()} | error().
region(_H, _Pos, _Len) -> ?NIF.
-spec read_line(handle()) -> {ok, binary()} | eof | error().
read_line(_H) -> ?NIF.
-spec position(handle(), bof | cur | eof, integer()) -> {ok, non_neg_integer()} | error().
position(_H, _Whence, _Offset) -> ?NIF.
-spec pwrite(handle(), integer(), binary()) -> ok | error().
pwrite(_H, _Pos, _Bin) -> ?NIF.
-spec write(handle(), binary()) -> ok | error().
write(_H, _Bin) -> ?NIF.
%% One atomic operation each (emmap:patomic/4 picks one by its atom).
-spec patomic_add(handle(), integer(), integer()) -> {ok, integer()} | error().
patomic_add(_H, _Pos, _Value) -> ?NIF.
-spec patomic_sub(handle(), integer(), integer()) -> {ok, integer()} | error().
patomic_sub(_H, _Pos, _Value) -> ?NIF.
-spec patomic_and(handle(), integer(), integer()) -> {ok, integer()} | error().
patomic_and(_H, _Pos, _Value) -> ?NIF.
-spec patomic_or(handle(), integer(), integer()) -> {ok, integer()} | error().
patomic_or(_H, _Pos, _Value) -> ?NIF.
-spec patomic_xor(handle(), integer(), integer()) -> {ok, integer()} | error().
patomic_xor(_H, _Pos, _Value) -> ?NIF.
-spec patomic_xchg(handle(), integer(), integer()) -> {ok, integer()} | error().
patomic_xchg(_H, _Pos, _Value) -> ?NIF.
%% The same for the counters: the old value bare, not in {ok, _}; an error
%% is raised as error:{emmap_counters, Reason} (badarg as badarg).
-spec counter_add(handle(), integer(), integer()) -> integer().
counter_add(_H, _Pos, _Value) -> ?NIF.
-spec counter_sub(handle(), integer(), integer()) -> integer().
counter_sub(_H, _Pos, _Value) -> ?NIF.
-spec counter_xchg(handle(), integer(), integer()) -> integer().
counter_xchg(_H, _Pos, _Value) -> ?NIF.
-spec patomic_cas(handle(), integer(), integer(), integer()) -> {boolean(), integer()} | error().
patomic_cas(_H, _Pos, _Expected, _New) -> ?NIF.
-spec patomic_read(handle(), integer()) -> {ok, integer()} | error().
patomic_read(_H, _Pos) -> ?NIF.
-spec patomic_write(handle(), integer(), integer()) -> ok | error().
patomic_write(_H, _Pos, _Value) -> ?NIF.
-spec resize(handle()) -> {ok, non_neg_integer()} | error().
resize(_H) -> ?NIF.
-spec resize(handle(), integer()) -> {ok, non_neg_integer()} | error().
resize(_H, _Size) -> ?NIF.
-spec sync(handle(), integer(), integer()) -> ok | error().
sync(_H, _Pos, _Len) -> ?NIF.
%% Ref: the reference of the {emmap_sync, Ref, Result} message, or
%% undefined for no message.
-spec sync_async(handle(), reference() | undefined) -> ok | error().
sync_async(_H, _Ref) -> ?NIF.
-spec advise(handle(), integer(), integer(), atom()) -> ok | error().
advise(_H, _Pos, _Len, _Hint) -> ?NIF.
-spec block_init(handle(), integer()) -> ok | error().
block_init(_H, _BlockSize) -> ?NIF.
-spec block_store(handle(), binary()) -> non_neg_integer() | error().
block_store(_H, _Bin) -> ?NIF.
-spec block_read(handle(), integer()) -> binary() | eof | error().
block_read(_H, _Addr) -> ?NIF.
-spec block_free(handle(), integer()) -> boolean() | error().
block_free(_H, _Addr) -> ?NIF.
-spec block_scan(handle(), integer(), integer()) ->
          {[{non_neg_integer(), binary()}], non_neg_integer() | eof} | error().
block_scan(_H, _Start, _Count) -> ?NIF.
-spec block_repair(handle(), integer(), integer()) -> non_neg_integer() | eof | error().
block_repair(_H, _Start, _Count) -> ?NIF.
-spec queue_open(handle(), integer(), never | always | interval, integer(), boolean(), boolean()) ->
          {ok, queue(), map()} | error().
queue_open(_H, _InitialCapacity, _Durability, _IntervalMs, _FixedSize, _AutoUnlink) -> ?NIF.
-spec queue_push(queue(), binary(), 1 | 2 | 3) -> ok | error().  % 1: term_to_binary output, 2: a binary, 3: a term emmap_queue decodes
queue_push(_Q, _Bin, _Kind) -> ?NIF.
%% The item itself (any term), nil when empty.
-spec queue_pop(queue(), pop | peek | purge | back) -> term().
queue_pop(_Q, _Mode) -> ?NIF.
-spec queue_length(queue()) -> non_neg_integer() | error().
queue_length(_Q) -> ?NIF.
-spec queue_purge(queue()) -> ok | error().
queue_purge(_Q) -> ?NIF.
-spec queue_sync(queue()) -> ok | error().
queue_sync(_Q) -> ?NIF.
-spec queue_close(queue()) -> ok.
queue_close(_Q) -> ?NIF.
-spec queue_info(queue()) -> map() | error().
queue_info(_Q) -> ?NIF.
-spec queue_purge(queue(), if_empty) -> boolean() | error().
queue_purge(_Q, _IfEmpty) -> ?NIF.
-spec queue_claim(queue()) -> {term(), reference()} | nil | error().
queue_claim(_Q) -> ?NIF.
-spec queue_commit(reference(), boolean()) -> ok | error().
queue_commit(_Claim, _Purge) -> ?NIF.
-spec queue_release(reference()) -> ok.
queue_release(_Claim) -> ?NIF.
-spec queue_scan(queue(), non_neg_integer(), non_neg_integer(), pos_integer(), boolean()) ->
          {[{non_neg_integer(), non_neg_integer(), term()} | {non_neg_integer(), non_neg_integer()}],
           {non_neg_integer(), non_neg_integer()}, boolean()} | error().
queue_scan(_Q, _Seq, _Pos, _Max, _WithItems) -> ?NIF.
