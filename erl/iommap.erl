%%% @doc The iommap API on the emmap engine, with iommap's semantics: a
%%% program written for iommap runs unchanged. Handles are opaque; every
%%% call takes the handle first.
%%%
%%% Modes: `read', `write', `read_write' (the default of open/2).
%%% Options: `{size, N}', `shared' (default), `private', `lock' (mlock the
%%% pages), `populate', `nocache', `create', `truncate'.
%%%
%%% Where iommap and emmap differ, this module does as iommap does:
%%% <ul>
%%% <li>an access that does not fit inside the map (a read, a write, a
%%%     region, an advice) answers `{error, out_of_bounds}': no short read,
%%%     no `eof';</li>
%%% <li>a negative offset, length or size answers `{error, badarg}', as does
%%%     a path that is not a string or binary and a sync mode other than
%%%     `sync' or `async'; a path with a NUL byte, an unknown mode or a
%%%     non-integer offset raises `badarg';</li>
%%% <li>`{size, N}' never shrinks a file: the map covers the whole file, and
%%%     a file smaller than `N' (or new) grows to `N'; an empty file with no
%%%     size, and `truncate(H, 0)', answer `{error, einval}';</li>
%%% <li>`create' or `truncate' in `read' mode answer `{error, einval}' and
%%%     leave the file system as it was;</li>
%%% <li>a second `close/1' answers `{error, closed}'.</li>
%%% </ul>
%%% One difference is kept on purpose: an unknown option is
%%% `{error, {invalid_option, Opt}}' (iommap ignores it, so a typo such as
%%% `sahred' silently gives a different map).
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
open(Path, Mode, Options) when is_list(Path); is_binary(Path); is_atom(Path) ->
    proper_list(Options) orelse erlang:error(badarg, [Path, Mode, Options]),
    has_nul(Path) andalso erlang:error(badarg, [Path, Mode, Options]),
    ModeOpts = case Mode of
                   read -> [read];
                   write -> [read, write];
                   read_write -> [read, write];
                   _ -> erlang:error(badarg, [Path, Mode, Options])
               end,
    Changes = lists:member(create, Options) orelse lists:member(truncate, Options),
    case [N || {size, N} <- Options] of
        _ when Mode =:= read, Changes -> {error, einval};
        [N | _] when not is_integer(N); N < 0 -> {error, badarg};
        Sizes -> open_sized(Path, ModeOpts, Options, lists:max([0 | Sizes]))
    end;
open(_Path, _Mode, _Options) ->
    {error, badarg}.

open_sized(Path, ModeOpts, Options, Size) ->
    %% In iommap `lock' means mlock; emmap's own `lock' is its access gate.
    %% `fit' maps an existing file whole; a smaller one is then mapped again
    %% at Size, which grows it (a live map is never resized: this works
    %% where the backend cannot resize, darwin).
    Opts = [case O of lock -> mlock; _ -> O end || O <- Options, not is_size(O)],
    SizeOpt = [{size, Size} || Size > 0],
    case emmap:open(Path, 0, 0, ModeOpts ++ [fit | SizeOpt] ++ Opts) of
        {ok, Mem, #{size := 0}} when Size =:= 0 ->
            emmap_nif:close(handle_of(Mem)),
            {error, einval};                    % an empty file and no size: nothing to map
        {ok, Mem, #{size := Mapped}} when Mapped < Size, ModeOpts =:= [read] ->
            emmap_nif:close(handle_of(Mem)),
            {error, eacces};                    % growing the file needs write access
        {ok, Mem, #{size := Mapped}} when Mapped < Size ->
            %% The file exists now: neither create nor truncate again.
            Again = [O || O <- Opts, O =/= create, O =/= truncate],
            Grown = emmap:open(Path, 0, Size, ModeOpts ++ Again),
            emmap_nif:close(handle_of(Mem)),
            case Grown of
                {ok, G, _} -> {ok, handle_of(G)};
                {error, _} = E -> E
            end;
        {ok, Mem, _} -> {ok, handle_of(Mem)};
        {error, _} = E -> E
    end.

%% @doc Closes the mapping; region binaries taken from it stay valid. A
%% second close answers `{error, closed}'.
-spec close(handle()) -> ok | {error, closed}.
close(H) ->
    case emmap_nif:info(H) of
        #{closed := true} -> {error, closed};
        _ -> emmap_nif:close(H)
    end.

%% @doc Copies the `Len' bytes at `Off'; `{error, out_of_bounds}' unless
%% they are all inside the map.
-spec pread(handle(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
pread(H, Off, Len) when is_integer(Off), is_integer(Len), Off >= 0, Len >= 0 ->
    case emmap_nif:pread(H, Off, Len) of
        {ok, Bin} = R when byte_size(Bin) =:= Len -> R;
        {ok, _Short} -> {error, out_of_bounds};
        eof -> empty_at(H, Off, Len);
        {error, _} = E -> E
    end;
pread(_H, Off, Len) when is_integer(Off), is_integer(Len) -> {error, badarg};
pread(H, Off, Len) -> erlang:error(badarg, [H, Off, Len]).

%% The NIF says eof at the very end of the map, where iommap reads 0 bytes.
empty_at(H, Off, 0) ->
    case emmap_nif:info(H) of
        #{closed := true} -> {error, closed};
        #{size := Off} -> {ok, <<>>};
        #{} -> {error, out_of_bounds}
    end;
empty_at(_H, _Off, _Len) -> {error, out_of_bounds}.

%% @doc Writes `Data' at `Off'; `{error, out_of_bounds}' unless it fits
%% inside the map.
-spec pwrite(handle(), non_neg_integer(), iodata()) -> ok | {error, term()}.
pwrite(H, Off, Data) when is_integer(Off), Off >= 0, is_binary(Data) -> write_at(H, Off, Data);
pwrite(H, Off, Data) when is_integer(Off), Off >= 0, is_list(Data) ->
    write_at(H, Off, iolist_to_binary(Data));
pwrite(_H, Off, Data) when is_integer(Off), (is_binary(Data) orelse is_list(Data)) ->
    {error, badarg};
pwrite(H, Off, Data) -> erlang:error(badarg, [H, Off, Data]).

write_at(H, Off, Bin) ->
    case emmap_nif:pwrite(H, Off, Bin) of
        {error, einval} -> beyond(H, Off, byte_size(Bin), {error, einval});
        R -> R
    end.

%% out_of_bounds when [Off, Off+Len) does not fit in the map, else Other.
beyond(H, Off, Len, Other) ->
    case emmap_nif:info(H) of
        #{closed := true} -> {error, closed};
        #{size := Size} when Off > Size; Len > Size - Off -> {error, out_of_bounds};
        #{} -> Other
    end.

%% @doc A zero-copy binary over exactly `[Off, Off+Len)'; it keeps the
%% mapping alive for as long as it (or a sub-binary) is reachable.
%%
%% Its bytes change when the map is written (here or by another OS
%% process), which the VM does not expect of a binary: do not pass one that
%% may be written meanwhile to `binary_to_term/1' (it can crash the VM) or
%% use it as a key; take `binary:copy/1' of it, or use `pread/3', which
%% copies.
-spec region_binary(handle(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
region_binary(H, Off, Len) when is_integer(Off), is_integer(Len), Off >= 0, Len >= 0 ->
    case emmap_nif:region(H, Off, Len) of
        {error, einval} -> beyond(H, Off, Len, {error, einval});
        R -> R
    end;
region_binary(_H, Off, Len) when is_integer(Off), is_integer(Len) -> {error, badarg};
region_binary(H, Off, Len) -> erlang:error(badarg, [H, Off, Len]).

%% @doc Returns when the mapping is on stable storage.
-spec sync(handle()) -> ok | {error, term()}.
sync(H) -> sync(H, sync).

%% @doc `sync' waits for stable storage; `async' starts the same sync in the
%% background and returns at once.
-spec sync(handle(), sync | async) -> ok | {error, term()}.
sync(H, sync) -> emmap_nif:sync(H, 0, 16#FFFFFFFFFFFFFFFF);
sync(H, async) -> emmap_nif:sync_async(H, undefined);
sync(_H, _Mode) -> {error, badarg}.

%% @doc Resizes the file and the mapping to `Size' bytes (at least 1).
%% `{error, fixed_size}' where the backend cannot resize a live map
%% (darwin): the map and the file stay as they were.
-spec truncate(handle(), pos_integer()) -> ok | {error, term()}.
truncate(H, Size) when is_integer(Size), Size > 0 ->
    case emmap_nif:resize(H, Size) of
        {ok, _} -> ok;
        {error, _} = E -> E
    end;
truncate(_H, 0) -> {error, einval};
truncate(_H, Size) when is_integer(Size) -> {error, badarg};
truncate(H, Size) -> erlang:error(badarg, [H, Size]).

%% @doc The mapped size.
-spec position(handle()) -> {ok, non_neg_integer()} | {error, term()}.
position(H) ->
    case emmap_nif:info(H) of
        #{closed := true} -> {error, closed};
        #{size := Size} -> {ok, Size}
    end.

%% @doc A hint to the kernel for `[Off, Off+Len)' (see `emmap:advise/4');
%% `{error, out_of_bounds}' unless the range is inside the map.
-spec advise(handle(), non_neg_integer(), non_neg_integer(), hint()) -> ok | {error, term()}.
advise(H, Off, Len, Hint) when is_integer(Off), is_integer(Len), Off >= 0, Len >= 0 ->
    lists:member(Hint, [normal, random, sequential, willneed, dontneed])
        orelse erlang:error(badarg, [H, Off, Len, Hint]),
    case beyond(H, Off, Len, ok) of
        ok -> emmap_nif:advise(H, Off, Len, Hint);
        E -> E
    end;
advise(_H, Off, Len, _Hint) when is_integer(Off), is_integer(Len) -> {error, badarg};
advise(H, Off, Len, Hint) -> erlang:error(badarg, [H, Off, Len, Hint]).

handle_of(Mem) -> element(3, Mem).

is_size({size, _}) -> true;
is_size(_) -> false.

proper_list(L) ->
    try length(L) of _ -> true
    catch error:badarg -> false
    end.

has_nul(Path) when is_binary(Path) -> binary:match(Path, <<0>>) =/= nomatch;
has_nul(Path) when is_atom(Path) -> has_nul(atom_to_binary(Path));
has_nul(Path) ->
    try unicode:characters_to_list(Path) of
        L when is_list(L) -> lists:member(0, L);
        _ -> false  % not a valid name: emmap:open says so
    catch error:_ -> false
    end.
