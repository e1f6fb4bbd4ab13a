%%% @doc Memory-mapped files.
%%%
%%% A handle is a `#file_descriptor{module = emmap}', so the `file' module
%%% works on it (`file:pread/3', `file:write/2', `file:position/2',
%%% `file:close/1', ...). Wrong argument types raise `badarg'; wrong values
%%% return `{error, Atom}'. After `close/1' every call returns
%%% `{error, closed}'. The overview (README.md) lists the options, the errors
%%% and the guarantees.
%%%
%%% With the `direct' option, reads return binaries that point into the
%%% map (zero-copy). Such a binary changes when the map is written, by this
%%% VM or another OS process, though the VM assumes binaries never change:
%%% never hand one whose bytes may be written meanwhile to
%%% `binary_to_term/1' (it reads its input twice and can crash the VM), nor
%%% use it as a key or hash it. Copy it first (`binary:copy/1'), or open
%%% without `direct', where `pread' copies; README.md, "Zero-copy binaries
%%% change under you", has the whole list.
-module(emmap).

-include_lib("kernel/include/file.hrl").

-export([open/2, open/4, close/1, info/1,
         pread/2, pread/3, pwrite/2, pwrite/3, read/2, write/2, read_line/1,
         position/2, truncate/1,
         sync/1, sync/3, datasync/1, flush/1, sync_async/1, advise/4,
         resize/1, resize/2]).
-export([patomic_add/3, patomic_sub/3, patomic_and/3, patomic_or/3, patomic_xor/3,
         patomic_xchg/3, patomic_cas/4, patomic_read_integer/2, patomic_write_integer/3,
         patomic/4, patomic_read/2, patomic_write/3]).
-export([open_counters/1, open_counters/2, close_counters/1,
         inc_counter/2, inc_counter/3, dec_counter/2, dec_counter/3,
         set_counter/3, read_counter/2]).

-export([init_block_storage/2, store_block/2, read_block/2, free_block/2,
         read_blocks/1, read_blocks/3, repair_block_storage/1, repair_block_storage/3]).

-export_type([mmap_file/0, open_option/0, open_info/0, counters/0]).

-type mmap_file() :: #file_descriptor{}.
-type open_option() ::
        read | write | read_write | create | truncate | shared | private | direct | lock | nolock | mlock
      | auto_unlink | anon | populate | nonblock | noreserve | nocache | uninitialized
      | shared_validate | sync | dax_if_available | hugetlb | huge_2mb | huge_1gb | fixed | fixed_size | fit
      | debug | {address, pos_integer()} | {chmod, non_neg_integer()}
      | {size, non_neg_integer()} | {max_inc_size, pos_integer()}.
-type open_info() :: #{exist := boolean(), size := non_neg_integer(), ignored := [open_option()]}.
-type reason() :: atom() | {invalid_option, term()}.
-type location() :: integer() | {bof, integer()} | {cur, integer()} | {eof, integer()} | bof | cur | eof.
-type hint() :: normal | random | sequential | willneed | dontneed.
-type atomic_op() :: add | sub | 'band' | 'bor' | 'bxor' | xchg.

-define(ALL, 16#FFFFFFFFFFFFFFFF).

%%% ---------------------------------------------------------------------------
%%% Opening and closing
%%% ---------------------------------------------------------------------------

%% @doc Maps a whole file: its length, or `{size, N}' when it is created.
-spec open(file:name_all(), [open_option()]) ->
          {ok, mmap_file(), open_info()} | {error, reason()}.
open(File, Options) ->
    open(File, 0, 0, Options).

%% @doc Maps `Length' bytes from byte `Offset' (any offset). `Length' 0 means
%% `{size, N}' if given, else the rest of the file.
-spec open(file:name_all(), non_neg_integer(), non_neg_integer(), [open_option()]) ->
          {ok, mmap_file(), open_info()} | {error, reason()}.
open(File, Offset, Length, Options)
  when is_integer(Offset), is_integer(Length), is_list(Options) ->
    Bin = name_to_binary(File),
    case emmap_nif:open(Bin, File, Offset, Length, Options) of
        {ok, Res, #{exist := Existed, size := Size} = Info} ->
            lists:member(debug, Options) andalso
                report("opened ~tp at ~b, ~b bytes (~s)",
                       [File, Offset, Size, case Existed of true -> existing; false -> created end]),
            {ok, #file_descriptor{module = ?MODULE, data = Res}, Info};
        {error, _} = E -> E
    end;
open(File, Offset, Length, Options) ->
    erlang:error(badarg, [File, Offset, Length, Options]).

%% @doc Closes the map. Idempotent. Zero-copy binaries taken from it stay
%% valid; the memory is unmapped when the last of them is collected.
-spec close(mmap_file()) -> ok.
close(Mem) ->
    R = res(Mem),
    case debug_path(R) of
        false -> emmap_nif:close(R);
        {true, Path} ->
            ok = emmap_nif:close(R),
            report("closed ~tp", [Path])
    end.

%% @doc `#{size, path, mode, options, backend, ignored, position,
%% persistence, device_dax, pmem_forced}'.
%% `backend' is the OS backend of this build: `linux', `darwin' (no resize
%% of a live map: `{error, fixed_size}') or `bsd'; README.md, "Backends".
%% `persistence' says how `sync' makes the map durable: `msync' (through
%% the page cache), `flush' (persistent memory: the range's cache lines are
%% flushed, then one fence; no system call) or `eadr' (persistent memory
%% whose CPU caches are persistent: a fence). A map gets `flush' or `eadr'
%% with `sync' (MAP_SYNC), with `dax_if_available' on a DAX file, on a
%% device DAX (`device_dax' is then `true'), and for every shared writable
%% file map while `EMMAP_PMEM_FORCE=1' is in the environment: then
%% `pmem_forced' is `true', and nothing is durable across a power loss
%% (README.md, "Persistent memory").
-spec info(mmap_file()) -> map() | {error, closed}.
info(Mem) ->
    case emmap_nif:info(res(Mem)) of
        #{closed := true} -> {error, closed};
        Info -> maps:remove(closed, Info)
    end.

%%% ---------------------------------------------------------------------------
%%% Reading and writing
%%% ---------------------------------------------------------------------------
%%% The hot calls (pread/3, pwrite/3 of a binary, the patomic functions,
%%% the counters) match the handle and pass their integers on unguarded:
%%% the NIF checks each one and raises badarg itself (for a wrong type
%%% before any out-of-range value, as the guards did), so guards here would
%%% check twice.

%% @doc Reads up to `Len' bytes at `Pos' (shorter at the end); `eof' at or past it.
-spec pread(mmap_file(), non_neg_integer(), non_neg_integer()) ->
          {ok, binary()} | eof | {error, reason()}.
pread(#file_descriptor{module = ?MODULE, data = R}, Pos, Len) ->
    emmap_nif:pread(R, Pos, Len);
pread(Mem, Pos, Len) ->
    erlang:error(badarg, [Mem, Pos, Len]).

%% @doc The list form of `file:pread/2'.
-spec pread(mmap_file(), [{non_neg_integer(), non_neg_integer()}]) ->
          {ok, [binary() | eof]} | {error, reason()}.
pread(Mem, LocNums) when is_list(LocNums) ->
    R = res(Mem),
    pread_list(R, LocNums, []);
pread(Mem, LocNums) ->
    erlang:error(badarg, [Mem, LocNums]).

pread_list(_R, [], Acc) ->
    {ok, lists:reverse(Acc)};
pread_list(R, [{Pos, Len} | T], Acc) when is_integer(Pos), is_integer(Len) ->
    case emmap_nif:pread(R, Pos, Len) of
        {ok, Bin} -> pread_list(R, T, [Bin | Acc]);
        eof -> pread_list(R, T, [eof | Acc]);
        {error, _} = E -> E
    end;
pread_list(_R, _, _) ->
    erlang:error(badarg).

%% @doc Writes `Data' (iodata) at `Pos'; past the end is `{error, einval}'.
-spec pwrite(mmap_file(), non_neg_integer(), iodata()) -> ok | {error, reason()}.
pwrite(#file_descriptor{module = ?MODULE, data = R}, Pos, Data) when is_binary(Data) ->
    emmap_nif:pwrite(R, Pos, Data);
pwrite(Mem, Pos, Data) when is_integer(Pos), is_list(Data) ->
    emmap_nif:pwrite(res(Mem), Pos, iolist_to_binary(Data));
pwrite(Mem, Pos, Data) ->
    erlang:error(badarg, [Mem, Pos, Data]).

%% @doc The list form of `file:pwrite/2': `{error, {N, Reason}}' after N writes.
-spec pwrite(mmap_file(), [{non_neg_integer(), iodata()}]) ->
          ok | {error, {non_neg_integer(), reason()}}.
pwrite(Mem, LocBytes) when is_list(LocBytes) ->
    R = res(Mem),
    pwrite_list(R, LocBytes, 0);
pwrite(Mem, LocBytes) ->
    erlang:error(badarg, [Mem, LocBytes]).

pwrite_list(_R, [], _N) ->
    ok;
pwrite_list(R, [{Pos, Data} | T], N) when is_integer(Pos), is_binary(Data) orelse is_list(Data) ->
    case emmap_nif:pwrite(R, Pos, iolist_to_binary(Data)) of
        ok -> pwrite_list(R, T, N + 1);
        {error, Reason} -> {error, {N, Reason}}
    end;
pwrite_list(_R, _, _) ->
    erlang:error(badarg).

%% @doc Reads up to `Len' bytes at the handle's position, which advances.
-spec read(mmap_file(), non_neg_integer()) -> {ok, binary()} | eof | {error, reason()}.
read(Mem, Len) when is_integer(Len) ->
    emmap_nif:read(res(Mem), Len);
read(Mem, Len) ->
    erlang:error(badarg, [Mem, Len]).

%% @doc Writes at the handle's position, which advances.
-spec write(mmap_file(), iodata()) -> ok | {error, reason()}.
write(Mem, Data) when is_binary(Data) ->
    emmap_nif:write(res(Mem), Data);
write(Mem, Data) when is_list(Data) ->
    emmap_nif:write(res(Mem), iolist_to_binary(Data));
write(Mem, Data) ->
    erlang:error(badarg, [Mem, Data]).

%% @doc The next line, newline included (the last line may have none).
-spec read_line(mmap_file()) -> {ok, binary()} | eof | {error, reason()}.
read_line(Mem) -> emmap_nif:read_line(res(Mem)).

%% @doc As `file:position/2'; `{eof, -N}' is N bytes before the end.
-spec position(mmap_file(), location()) -> {ok, non_neg_integer()} | {error, reason()}.
position(Mem, Pos) when is_integer(Pos) -> emmap_nif:position(res(Mem), bof, Pos);
position(Mem, bof) -> emmap_nif:position(res(Mem), bof, 0);
position(Mem, cur) -> emmap_nif:position(res(Mem), cur, 0);
position(Mem, eof) -> emmap_nif:position(res(Mem), eof, 0);
position(Mem, {Whence, Off}) when (Whence =:= bof orelse Whence =:= cur orelse Whence =:= eof),
                                  is_integer(Off) ->
    emmap_nif:position(res(Mem), Whence, Off);
position(Mem, Where) ->
    erlang:error(badarg, [Mem, Where]).

%% @doc `file:truncate/1': the map (and the file) end at the current position.
-spec truncate(mmap_file()) -> ok | {error, reason()}.
truncate(Mem) ->
    R = res(Mem),
    case emmap_nif:position(R, cur, 0) of
        {ok, Pos} ->
            case emmap_nif:resize(R, Pos) of
                {ok, _} -> ok;
                {error, _} = E -> E
            end;
        {error, _} = E -> E
    end.

%%% ---------------------------------------------------------------------------
%%% Size and durability
%%% ---------------------------------------------------------------------------

%% @doc Returns when the whole map is on stable storage (never MS_ASYNC;
%% on persistent memory a cache-line flush, see `info/1').
-spec sync(mmap_file()) -> ok | {error, reason()}.
sync(Mem) -> emmap_nif:sync(res(Mem), 0, ?ALL).

%% @doc Returns when `[Pos, Pos+Len)' is on stable storage.
-spec sync(mmap_file(), non_neg_integer(), non_neg_integer()) -> ok | {error, reason()}.
sync(Mem, Pos, Len) when is_integer(Pos), is_integer(Len) ->
    emmap_nif:sync(res(Mem), Pos, Len);
sync(Mem, Pos, Len) ->
    erlang:error(badarg, [Mem, Pos, Len]).

%% @doc Same as `sync/1' (for `file:datasync/1').
-spec datasync(mmap_file()) -> ok | {error, reason()}.
datasync(Mem) -> sync(Mem).

%% @doc Same as `sync/1': a flush that returns is durable.
-spec flush(mmap_file()) -> ok | {error, reason()}.
flush(Mem) -> sync(Mem).

%% @doc Starts a sync in the background; the caller later receives
%% `{emmap_sync, Ref, ok | {error, Reason}}'. `{error, eagain}' when 256
%% syncs are already in flight in the VM (each holds a descriptor). On
%% persistent memory (`persistence' `flush' or `eadr') a background thread
%% flushes the map: no system call, no io_uring.
-spec sync_async(mmap_file()) -> {ok, reference()} | {error, reason()}.
sync_async(Mem) ->
    R = res(Mem),
    Ref = make_ref(),
    case emmap_nif:sync_async(R, Ref) of
        ok -> {ok, Ref};
        {error, _} = E -> E
    end.

%% @doc A hint to the kernel for `[Pos, Pos+Len)': `normal', `random' (no
%% read-ahead: scattered small accesses to a large cold file), `sequential',
%% `willneed' (read ahead now), `dontneed'. `{error, einval}' for another atom.
-spec advise(mmap_file(), non_neg_integer(), non_neg_integer(), hint()) -> ok | {error, reason()}.
advise(Mem, Pos, Len, Hint) when is_integer(Pos), is_integer(Len), is_atom(Hint) ->
    emmap_nif:advise(res(Mem), Pos, Len, Hint);
advise(Mem, Pos, Len, Hint) ->
    erlang:error(badarg, [Mem, Pos, Len, Hint]).

%% @doc Grows by policy: doubles below `max_inc_size' (64 MiB by default),
%% then adds `max_inc_size'.
-spec resize(mmap_file()) -> {ok, non_neg_integer()} | {error, reason()}.
resize(Mem) -> resized(res(Mem), emmap_nif:resize(res(Mem))).

%% @doc Sets the length. `{error, fixed_size}' with `fixed_size' or where the
%% backend cannot resize. Zero-copy binaries stay valid (zeros past a shrink).
-spec resize(mmap_file(), non_neg_integer()) -> {ok, non_neg_integer()} | {error, reason()}.
resize(Mem, Size) when is_integer(Size) -> resized(res(Mem), emmap_nif:resize(res(Mem), Size));
resize(Mem, Size) -> erlang:error(badarg, [Mem, Size]).

%%% ---------------------------------------------------------------------------
%%% Atomics: 64-bit signed integers, native byte order, 8-byte aligned
%%% ---------------------------------------------------------------------------

%% @doc Adds `V' to the 64-bit signed integer at `Pos' (8-byte aligned, native
%% byte order); returns `{ok, Old}'. Wraps around on overflow.
-spec patomic_add(mmap_file(), non_neg_integer(), integer()) -> {ok, integer()} | {error, reason()}.
patomic_add(#file_descriptor{module = ?MODULE, data = R}, Pos, V) ->
    emmap_nif:patomic_add(R, Pos, V);
patomic_add(Mem, Pos, V) -> erlang:error(badarg, [Mem, Pos, V]).
%% @doc Subtracts `V' at `Pos' atomically; returns `{ok, Old}'.
-spec patomic_sub(mmap_file(), non_neg_integer(), integer()) -> {ok, integer()} | {error, reason()}.
patomic_sub(#file_descriptor{module = ?MODULE, data = R}, Pos, V) ->
    emmap_nif:patomic_sub(R, Pos, V);
patomic_sub(Mem, Pos, V) -> erlang:error(badarg, [Mem, Pos, V]).
%% @doc Bitwise and of `V' into `Pos' atomically; returns `{ok, Old}'.
-spec patomic_and(mmap_file(), non_neg_integer(), integer()) -> {ok, integer()} | {error, reason()}.
patomic_and(#file_descriptor{module = ?MODULE, data = R}, Pos, V) ->
    emmap_nif:patomic_and(R, Pos, V);
patomic_and(Mem, Pos, V) -> erlang:error(badarg, [Mem, Pos, V]).
%% @doc Bitwise or of `V' into `Pos' atomically; returns `{ok, Old}'.
-spec patomic_or(mmap_file(), non_neg_integer(), integer()) -> {ok, integer()} | {error, reason()}.
patomic_or(#file_descriptor{module = ?MODULE, data = R}, Pos, V) ->
    emmap_nif:patomic_or(R, Pos, V);
patomic_or(Mem, Pos, V) -> erlang:error(badarg, [Mem, Pos, V]).
%% @doc Bitwise xor of `V' into `Pos' atomically; returns `{ok, Old}'.
-spec patomic_xor(mmap_file(), non_neg_integer(), integer()) -> {ok, integer()} | {error, reason()}.
patomic_xor(#file_descriptor{module = ?MODULE, data = R}, Pos, V) ->
    emmap_nif:patomic_xor(R, Pos, V);
patomic_xor(Mem, Pos, V) -> erlang:error(badarg, [Mem, Pos, V]).
%% @doc Stores `V' at `Pos' atomically; returns `{ok, Old}'.
-spec patomic_xchg(mmap_file(), non_neg_integer(), integer()) -> {ok, integer()} | {error, reason()}.
patomic_xchg(#file_descriptor{module = ?MODULE, data = R}, Pos, V) ->
    emmap_nif:patomic_xchg(R, Pos, V);
patomic_xchg(Mem, Pos, V) -> erlang:error(badarg, [Mem, Pos, V]).

%% @doc `{true, Expected}' when swapped, `{false, Current}' when not.
-spec patomic_cas(mmap_file(), non_neg_integer(), integer(), integer()) ->
          {boolean(), integer()} | {error, reason()}.
patomic_cas(Mem, Pos, Expected, New) when is_integer(Pos), is_integer(Expected), is_integer(New) ->
    emmap_nif:patomic_cas(res(Mem), Pos, Expected, New);
patomic_cas(Mem, Pos, Expected, New) ->
    erlang:error(badarg, [Mem, Pos, Expected, New]).

%% @doc The 64-bit signed integer at `Pos', read atomically: `{ok, V}'.
-spec patomic_read_integer(mmap_file(), non_neg_integer()) -> {ok, integer()} | {error, reason()}.
patomic_read_integer(#file_descriptor{module = ?MODULE, data = R}, Pos) ->
    emmap_nif:patomic_read(R, Pos);
patomic_read_integer(Mem, Pos) -> erlang:error(badarg, [Mem, Pos]).

%% @doc Stores `V' at `Pos' atomically (a 64-bit store).
-spec patomic_write_integer(mmap_file(), non_neg_integer(), integer()) -> ok | {error, reason()}.
patomic_write_integer(#file_descriptor{module = ?MODULE, data = R}, Pos, V) ->
    emmap_nif:patomic_write(R, Pos, V);
patomic_write_integer(Mem, Pos, V) -> erlang:error(badarg, [Mem, Pos, V]).

%% @doc One atomic operation; returns the old value.
-spec patomic(mmap_file(), non_neg_integer(), atomic_op(), integer()) ->
          {ok, integer()} | {error, reason()}.
patomic(Mem, Pos, add, V) when is_integer(Pos), is_integer(V) -> patomic_add(Mem, Pos, V);
patomic(Mem, Pos, sub, V) when is_integer(Pos), is_integer(V) -> patomic_sub(Mem, Pos, V);
patomic(Mem, Pos, 'band', V) when is_integer(Pos), is_integer(V) -> patomic_and(Mem, Pos, V);
patomic(Mem, Pos, 'bor', V) when is_integer(Pos), is_integer(V) -> patomic_or(Mem, Pos, V);
patomic(Mem, Pos, 'bxor', V) when is_integer(Pos), is_integer(V) -> patomic_xor(Mem, Pos, V);
patomic(Mem, Pos, xchg, V) when is_integer(Pos), is_integer(V) -> patomic_xchg(Mem, Pos, V);
patomic(Mem, Pos, Op, V) ->
    erlang:error(badarg, [Mem, Pos, Op, V]).

%% @doc The value at `Pos' (bare), or `{error, Reason}'.
-spec patomic_read(mmap_file(), non_neg_integer()) -> integer() | {error, reason()}.
patomic_read(Mem, Pos) ->
    case patomic_read_integer(Mem, Pos) of
        {ok, V} -> V;
        {error, _} = E -> E
    end.

%% @doc Same as `patomic_write_integer/3'.
-spec patomic_write(mmap_file(), non_neg_integer(), integer()) -> ok | {error, reason()}.
patomic_write(Mem, Pos, V) -> patomic_write_integer(Mem, Pos, V).

%%% ---------------------------------------------------------------------------
%%% Persistent counters: a header, then one 64-bit counter per slot
%%%
%%%   0  magic   "EMMAPCNT"
%%%   8  version (1)
%%%   16 count   number of counters
%%%   24 reserved
%%%   32 counter 0, 40 counter 1, ...
%%% ---------------------------------------------------------------------------

-record(emmap_counters, {mem :: mmap_file(), count :: pos_integer()}).
-opaque counters() :: #emmap_counters{}.

-define(CNT_MAGIC, <<"EMMAPCNT">>).
-define(CNT_VERSION, 1).
-define(CNT_HEADER, 32).

%% @doc Opens (or creates) a counter file with one counter. Raises on error.
-spec open_counters(file:name_all()) -> counters().
open_counters(File) -> open_counters(File, 1).

%% @doc Opens (or creates) a counter file with at least `N' counters; an
%% existing file with fewer grows, one with more keeps its count. The header
%% is checked: a file that is not a counter file raises
%% `{emmap_counters, Reason}' and is left untouched.
%%
%% The map is opened at the size it needs (a live map is never resized, so
%% this works where the backend cannot resize, darwin): a file with fewer
%% counters is mapped again at the new length, which grows the file.
-spec open_counters(file:name_all(), pos_integer()) -> counters().
open_counters(File, N) when is_integer(N), N > 0, N =< 16#FFFFFFFF ->
    Size = ?CNT_HEADER + 8 * N,
    case open(File, 0, 0, [create, read, write, shared, fit, {size, Size}]) of
        {ok, Mem, #{size := Have}} ->
            case counters_header(File, Mem, Have, N) of
                {ok, Count} ->
                    #emmap_counters{mem = Mem, count = Count};
                grow ->
                    %% A second map of the new length grows the file (blocks
                    %% reserved); the first one is no longer needed.
                    Grown = open(File, 0, Size, [read, write, shared]),
                    close(Mem),
                    grow_counters(Grown, File, N);
                {error, Reason} ->
                    close(Mem),
                    erlang:error({emmap_counters, Reason}, [File, N])
            end;
        {error, Reason} ->
            erlang:error({emmap_counters, Reason}, [File, N])
    end;
open_counters(File, N) ->
    erlang:error(badarg, [File, N]).

%% What the header says, for N counters in a map of Have bytes:
%% {ok, Count} (the handle serves Count counters); grow (a counter file
%% with fewer than N, or a new file shorter than N need: the file is mapped
%% again at the new length, and init there); or {error, Reason}.
%%
%% A header with no count yet is a new file, or one another opener (or a
%% crash) left before its count: every opener initialises it the same way
%% (init_counters/2), so they agree.
%%
%% The count is raised only after the file covers it, so a count the map
%% does not cover is a file another process grew after this one mapped it,
%% unless the file itself is shorter: a damaged header.
counters_header(File, Mem, Have, N) when Have >= ?CNT_HEADER ->
    Covered = (Have - ?CNT_HEADER) div 8,
    case pread(Mem, 0, ?CNT_HEADER) of
        {ok, <<Magic:8/binary, V:64/native, 0:64, _:64>>}
          when (Magic =:= ?CNT_MAGIC orelse Magic =:= <<0:64>>), (V =:= ?CNT_VERSION orelse V =:= 0) ->
            if Covered >= N -> init_counters(Mem, N);       % a new file
               true -> grow
            end;
        {ok, <<"EMMAPCNT", ?CNT_VERSION:64/native, Count:64/native, _:64>>} ->
            case file_covers(File, ?CNT_HEADER + 8 * Count) of
                false -> {error, bad_header};
                true when Count >= N, Covered >= N -> {ok, min(Count, Covered)};
                true -> grow                                % raise the count to N, or map it all
            end;
        {ok, <<"EMMAPCNT", V:64/native, _/binary>>} ->
            {error, {version, V}};
        {ok, _} ->
            {error, bad_header};
        {error, _} = E -> E
    end;
counters_header(_File, _Mem, _Have, _N) ->
    {error, bad_header}.

file_covers(File, Bytes) ->
    case file:read_file_info(File) of
        {ok, #file_info{size = S}} -> S >= Bytes;
        {error, _} -> false
    end.

%% A new file: version, magic (the same words from every opener, each one
%% 8-byte store), then the count raised from zero, so a header is never
%% seen with a count before its magic. Openers creating the file at once
%% agree.
init_counters(Mem, N) ->
    <<Magic:64/native>> = ?CNT_MAGIC,
    ok = patomic_write_integer(Mem, 8, ?CNT_VERSION),
    ok = patomic_write_integer(Mem, 0, Magic),
    case raise_count(Mem, N) of
        ok -> {ok, N};
        {error, _} = E -> E
    end.

%% The map covers N counters now; a new file gets its header, and the count
%% goes up to N (never down: another process may have grown it further
%% meanwhile). The handle serves the N counters it maps.
grow_counters({ok, Mem, _}, File, N) ->
    Raised = case pread(Mem, 0, 16) of
                 {ok, <<M:8/binary, V:64/native>>}
                   when (M =:= ?CNT_MAGIC orelse M =:= <<0:64>>), (V =:= ?CNT_VERSION orelse V =:= 0) ->
                     init_counters(Mem, N);             % raises the count, never lowers it
                 {ok, _} -> {error, bad_header};       % another file took the name meanwhile
                 {error, _} = E -> E
             end,
    case Raised of
        {error, Reason} ->
            close(Mem),
            erlang:error({emmap_counters, Reason}, [File, N]);
        _ -> #emmap_counters{mem = Mem, count = N}
    end;
grow_counters({error, Reason}, File, N) ->
    erlang:error({emmap_counters, Reason}, [File, N]).

raise_count(Mem, N) ->
    case patomic_read_integer(Mem, 16) of
        {ok, Count} when Count >= N -> ok;
        {ok, Count} ->
            case patomic_cas(Mem, 16, Count, N) of
                {true, _} -> ok;
                {false, _} -> raise_count(Mem, N);
                {error, _} = E -> E
            end;
        {error, _} = E -> E
    end.

%% @doc Closes a counter file.
-spec close_counters(counters()) -> ok.
close_counters(#emmap_counters{mem = Mem}) -> close(Mem);
close_counters(C) -> erlang:error(badarg, [C]).

%% @doc Adds one to counter `I'; returns the old value.
-spec inc_counter(counters(), non_neg_integer()) -> integer().
inc_counter(C, I) -> inc_counter(C, I, 1).

%% @doc Adds `By' to counter `I'; returns the old value.
-spec inc_counter(counters(), non_neg_integer(), integer()) -> integer().
inc_counter(#emmap_counters{mem = #file_descriptor{module = ?MODULE, data = R}, count = N}, I, By)
  when is_integer(I), I >= 0, I < N ->
    emmap_nif:counter_add(R, ?CNT_HEADER + 8 * I, By);
inc_counter(C, I, By) -> erlang:error(badarg, [C, I, By]).

%% @doc Subtracts one from counter `I'; returns the old value.
-spec dec_counter(counters(), non_neg_integer()) -> integer().
dec_counter(C, I) -> dec_counter(C, I, 1).

%% @doc Subtracts `By' from counter `I'; returns the old value.
-spec dec_counter(counters(), non_neg_integer(), integer()) -> integer().
dec_counter(#emmap_counters{mem = #file_descriptor{module = ?MODULE, data = R}, count = N}, I, By)
  when is_integer(I), I >= 0, I < N ->
    emmap_nif:counter_sub(R, ?CNT_HEADER + 8 * I, By);
dec_counter(C, I, By) -> erlang:error(badarg, [C, I, By]).

%% @doc Sets counter `I'; returns the old value.
-spec set_counter(counters(), non_neg_integer(), integer()) -> integer().
set_counter(#emmap_counters{mem = #file_descriptor{module = ?MODULE, data = R}, count = N}, I, V)
  when is_integer(I), I >= 0, I < N ->
    emmap_nif:counter_xchg(R, ?CNT_HEADER + 8 * I, V);
set_counter(C, I, V) -> erlang:error(badarg, [C, I, V]).

%% @doc The current value of counter `I'.
-spec read_counter(counters(), non_neg_integer()) -> integer().
read_counter(#emmap_counters{mem = Mem, count = N} = C, I) when is_integer(I), I >= 0, I < N ->
    case patomic_read_integer(Mem, ?CNT_HEADER + 8 * I) of
        {ok, V} -> V;
        {error, Reason} -> erlang:error({emmap_counters, Reason}, [C, I])
    end;
read_counter(C, I) ->
    erlang:error(badarg, [C, I]).

%%% ---------------------------------------------------------------------------
%%% Block storage: fixed-size blocks in one file, addressed by slot number.
%%% The lowest free address is reused; the file grows when every slot is
%%% taken (unless `fixed_size'). Format: see src/blocks.h.
%%% ---------------------------------------------------------------------------

%% @doc Formats an empty map for blocks of up to `BlockSize' bytes, or checks
%% that a formatted one has that block size.
-spec init_block_storage(mmap_file(), pos_integer()) -> ok | {error, reason()}.
init_block_storage(Mem, BlockSize) when is_integer(BlockSize) ->
    emmap_nif:block_init(res(Mem), BlockSize);
init_block_storage(Mem, BlockSize) ->
    erlang:error(badarg, [Mem, BlockSize]).

%% @doc Stores `Data' in the lowest free block; returns its address.
-spec store_block(mmap_file(), iodata()) -> non_neg_integer() | {error, reason()}.
store_block(Mem, Data) when is_binary(Data) -> emmap_nif:block_store(res(Mem), Data);
store_block(Mem, Data) when is_list(Data) -> emmap_nif:block_store(res(Mem), iolist_to_binary(Data));
store_block(Mem, Data) -> erlang:error(badarg, [Mem, Data]).

%% @doc The block at `Addr', `eof' for a free one, `{error, einval}' past the storage.
-spec read_block(mmap_file(), non_neg_integer()) -> binary() | eof | {error, reason()}.
read_block(Mem, Addr) when is_integer(Addr) -> emmap_nif:block_read(res(Mem), Addr);
read_block(Mem, Addr) -> erlang:error(badarg, [Mem, Addr]).

%% @doc Frees `Addr'; `true' if it held a block. An address outside the
%% storage holds none: `false'.
-spec free_block(mmap_file(), non_neg_integer()) -> boolean() | {error, reason()}.
free_block(Mem, Addr) when is_integer(Addr) ->
    case emmap_nif:block_free(res(Mem), Addr) of
        {error, einval} -> false;
        Other -> Other
    end;
free_block(Mem, Addr) -> erlang:error(badarg, [Mem, Addr]).

%% @doc Every stored block, in address order.
-spec read_blocks(mmap_file()) -> [{non_neg_integer(), binary()}] | {error, reason()}.
read_blocks(Mem) ->
    case read_blocks(Mem, 0, 16#FFFFFFFFFFFFFFFF) of
        {error, _} = E -> E;
        {Blocks, _Cont} -> Blocks
    end.

%% @doc Up to `Count' blocks from address `Start'; `Cont' is where to go on.
-spec read_blocks(mmap_file(), non_neg_integer(), non_neg_integer()) ->
          {[{non_neg_integer(), binary()}], non_neg_integer() | eof} | {error, reason()}.
read_blocks(Mem, Start, Count) when is_integer(Start), is_integer(Count) ->
    emmap_nif:block_scan(res(Mem), Start, Count);
read_blocks(Mem, Start, Count) -> erlang:error(badarg, [Mem, Start, Count]).

%% @doc Frees blocks left half-written by a crash and rebuilds the counters.
-spec repair_block_storage(mmap_file()) -> ok | {error, reason()}.
repair_block_storage(Mem) ->
    case repair_block_storage(Mem, 0, 16#FFFFFFFFFFFFFFFF) of
        eof -> ok;
        {error, _} = E -> E
    end.

%% @doc Repairs up to `Count' slots from `Start'; returns where to go on.
-spec repair_block_storage(mmap_file(), non_neg_integer(), non_neg_integer()) ->
          non_neg_integer() | eof | {error, reason()}.
repair_block_storage(Mem, Start, Count) when is_integer(Start), is_integer(Count) ->
    emmap_nif:block_repair(res(Mem), Start, Count);
repair_block_storage(Mem, Start, Count) -> erlang:error(badarg, [Mem, Start, Count]).

%%% ---------------------------------------------------------------------------
%%% Internal
%%% ---------------------------------------------------------------------------

res(#file_descriptor{module = ?MODULE, data = Res}) -> Res;
res(_) -> erlang:error(badarg).

%% The `debug' option: open, resize and close are reported through logger
%% (level notice, domain [emmap]), so they reach the user's log handlers.
report(Format, Args) ->
    logger:notice("emmap: " ++ Format, Args, #{domain => [emmap]}).

%% {true, Path} when the handle was opened with `debug' and is still open.
debug_path(R) ->
    case emmap_nif:info(R) of
        #{closed := true} -> false;
        #{options := Options, path := Path} -> lists:member(debug, Options) andalso {true, Path};
        _ -> false
    end.

resized(R, {ok, Size} = Ok) ->
    case debug_path(R) of
        {true, Path} -> report("resized ~tp to ~b bytes", [Path, Size]);
        false -> ok
    end,
    Ok;
resized(_R, Error) ->
    Error.

name_to_binary(B) when is_binary(B) -> B;
name_to_binary(A) when is_atom(A) -> atom_to_binary(A, utf8);
name_to_binary(L) when is_list(L) ->
    %% Raw names (as file:name_all() allows) and unicode strings alike.
    case unicode:characters_to_binary(L, unicode, file:native_name_encoding()) of
        B when is_binary(B) -> B;
        _ ->
            try iolist_to_binary(L)
            catch error:badarg -> erlang:error(badarg, [L])
            end
    end;
name_to_binary(Other) ->
    erlang:error(badarg, [Other]).
