%%% @doc The iommap API on the emmap engine: a program written for iommap
%%% runs unchanged. Handles are opaque; every call takes the handle first.
%%%
%%% Modes: `read', `write', `read_write' (the default of open/2).
%%% Options: `{size, N}', `shared' (default), `private', `lock' (mlock the
%%% pages), `populate', `nocache', `create', `truncate'.
-module(iommap).

-export([open/2, open/3, close/1, pread/3, pwrite/3, region_binary/3,
         sync/1, sync/2, truncate/2, position/1, advise/4]).

-export_type([handle/0, mode/0, option/0]).

-opaque handle() :: reference().
-type mode() :: read | write | read_write.
-type option() :: {size, non_neg_integer()} | shared | private | lock | populate
                | nocache | create | truncate.
-type hint() :: normal | random | sequential | willneed | dontneed.

%% @doc Opens `Path' for reading and writing.
-spec open(file:name_all(), [option()]) -> {ok, handle()} | {error, term()}.
open(Path, Options) -> open(Path, read_write, Options).

%% @doc Opens `Path' in mode `read', `write' or `read_write' with `Options'
%% (see the module doc).
-spec open(file:name_all(), mode(), [option()]) -> {ok, handle()} | {error, term()}.
open(Path, Mode, Options) when is_list(Options) ->
    try length(Options) catch error:badarg -> erlang:error(badarg, [Path, Mode, Options]) end,
    ModeOpts = case Mode of
                   read -> [read];
                   write -> [read, write];
                   read_write -> [read, write];
                   _ -> erlang:error(badarg, [Path, Mode, Options])
               end,
    %% In iommap `lock' means mlock; emmap's own `lock' is its access gate.
    Opts = [case O of lock -> mlock; _ -> O end || O <- Options],
    case emmap:open(Path, 0, 0, ModeOpts ++ Opts) of
        {ok, Mem, _Info} -> {ok, handle_of(Mem)};
        {error, _} = E -> E
    end;
open(Path, Mode, Options) ->
    erlang:error(badarg, [Path, Mode, Options]).

%% @doc Closes the mapping; region binaries taken from it stay valid.
-spec close(handle()) -> ok.
close(H) -> emmap_nif:close(H).

%% @doc Copies up to `Len' bytes at `Off' (shorter at the end; `eof' past it).
-spec pread(handle(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | eof | {error, term()}.
pread(H, Off, Len) when is_integer(Off), is_integer(Len) -> emmap_nif:pread(H, Off, Len);
pread(H, Off, Len) -> erlang:error(badarg, [H, Off, Len]).

%% @doc Writes `Data' at `Off'; past the end is `{error, einval}'.
-spec pwrite(handle(), non_neg_integer(), iodata()) -> ok | {error, term()}.
pwrite(H, Off, Data) when is_integer(Off), is_binary(Data) -> emmap_nif:pwrite(H, Off, Data);
pwrite(H, Off, Data) when is_integer(Off), is_list(Data) -> emmap_nif:pwrite(H, Off, iolist_to_binary(Data));
pwrite(H, Off, Data) -> erlang:error(badarg, [H, Off, Data]).

%% @doc A zero-copy binary over exactly `[Off, Off+Len)'; it keeps the
%% mapping alive for as long as it (or a sub-binary) is reachable.
%%
%% Its bytes change when the map is written (here or by another OS
%% process), which the VM does not expect of a binary: do not pass one that
%% may be written meanwhile to `binary_to_term/1' (it can crash the VM) or
%% use it as a key; take `binary:copy/1' of it, or use `pread/3', which
%% copies.
-spec region_binary(handle(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
region_binary(H, Off, Len) when is_integer(Off), is_integer(Len) -> emmap_nif:region(H, Off, Len);
region_binary(H, Off, Len) -> erlang:error(badarg, [H, Off, Len]).

%% @doc Returns when the mapping is on stable storage.
-spec sync(handle()) -> ok | {error, term()}.
sync(H) -> sync(H, sync).

%% @doc `sync' waits for stable storage; `async' starts the same sync in the
%% background and returns at once.
-spec sync(handle(), sync | async) -> ok | {error, term()}.
sync(H, sync) -> emmap_nif:sync(H, 0, 16#FFFFFFFFFFFFFFFF);
sync(H, async) -> emmap_nif:sync_async(H, undefined);
sync(H, Mode) -> erlang:error(badarg, [H, Mode]).

%% @doc Resizes the file and the mapping to `Size' bytes.
-spec truncate(handle(), non_neg_integer()) -> ok | {error, term()}.
truncate(H, Size) when is_integer(Size) ->
    case emmap_nif:resize(H, Size) of
        {ok, _} -> ok;
        {error, _} = E -> E
    end;
truncate(H, Size) -> erlang:error(badarg, [H, Size]).

%% @doc The mapped size.
-spec position(handle()) -> {ok, non_neg_integer()} | {error, term()}.
position(H) ->
    case emmap_nif:info(H) of
        #{closed := true} -> {error, closed};
        #{size := Size} -> {ok, Size}
    end.

%% @doc A hint to the kernel for `[Off, Off+Len)' (see `emmap:advise/4').
-spec advise(handle(), non_neg_integer(), non_neg_integer(), hint()) -> ok | {error, term()}.
advise(H, Off, Len, Hint) when is_integer(Off), is_integer(Len), is_atom(Hint) ->
    emmap_nif:advise(H, Off, Len, Hint);
advise(H, Off, Len, Hint) -> erlang:error(badarg, [H, Off, Len, Hint]).

handle_of(Mem) -> element(3, Mem).
