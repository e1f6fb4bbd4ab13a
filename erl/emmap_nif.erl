%% @private The NIF stubs. Use the `emmap' module: it checks argument types
%% (raising badarg) and turns iodata into binaries before calling these.
-module(emmap_nif).

-export([open/5, close/1, info/1,
         pread/3, read/2, region/3, read_line/1, position/3, pwrite/3, write/2,
         patomic/4, patomic_cas/4, patomic_read/2, patomic_write/3,
         resize/1, resize/2, sync/3, sync_async/2, advise/4,
         block_init/2, block_store/2, block_read/2, block_free/2, block_scan/3, block_repair/3,
         queue_open/6, queue_push/3, queue_pop/2, queue_length/1, queue_purge/1,
         queue_sync/1, queue_close/1, queue_info/1]).

-on_load(init/0).

init() ->
    Dir = case code:priv_dir(emmap) of
              {error, bad_name} ->
                  %% Not installed as an application: ../priv beside ebin.
                  filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
              D -> D
          end,
    erlang:load_nif(filename:join(Dir, "emmap_nif"), 0).

-define(NIF, erlang:nif_error({nif_not_loaded, ?MODULE})).

open(_PathBin, _Path, _Offset, _Length, _Options) -> ?NIF.
close(_H) -> ?NIF.
info(_H) -> ?NIF.
pread(_H, _Pos, _Len) -> ?NIF.
read(_H, _Len) -> ?NIF.
region(_H, _Pos, _Len) -> ?NIF.
read_line(_H) -> ?NIF.
position(_H, _Whence, _Offset) -> ?NIF.
pwrite(_H, _Pos, _Bin) -> ?NIF.
write(_H, _Bin) -> ?NIF.
patomic(_H, _Pos, _Op, _Value) -> ?NIF.
patomic_cas(_H, _Pos, _Expected, _New) -> ?NIF.
patomic_read(_H, _Pos) -> ?NIF.
patomic_write(_H, _Pos, _Value) -> ?NIF.
resize(_H) -> ?NIF.
resize(_H, _Size) -> ?NIF.
sync(_H, _Pos, _Len) -> ?NIF.
sync_async(_H, _Ref) -> ?NIF.
advise(_H, _Pos, _Len, _Hint) -> ?NIF.
block_init(_H, _BlockSize) -> ?NIF.
block_store(_H, _Bin) -> ?NIF.
block_read(_H, _Addr) -> ?NIF.
block_free(_H, _Addr) -> ?NIF.
block_scan(_H, _Start, _Count) -> ?NIF.
block_repair(_H, _Start, _Count) -> ?NIF.
queue_open(_H, _InitialCapacity, _Durability, _IntervalMs, _FixedSize, _AutoUnlink) -> ?NIF.
queue_push(_Q, _Bin, _Kind) -> ?NIF.
queue_pop(_Q, _Mode) -> ?NIF.
queue_length(_Q) -> ?NIF.
queue_purge(_Q) -> ?NIF.
queue_sync(_Q) -> ?NIF.
queue_close(_Q) -> ?NIF.
queue_info(_Q) -> ?NIF.
