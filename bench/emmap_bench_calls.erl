%%% One shape, N calls, then halt: for counting instructions per call with
%%% `perf stat` (scripts/bench-instructions.sh), which needs no quiet machine
%%% (instructions retired do not depend on what else runs), unlike the
%%% ops/s of emmap_bench. Each emmap shape has a bare-NIF twin (floor_*).
-module(emmap_bench_calls).
-export([main/1]).

-define(BIN40, <<"0123456789012345678901234567890123456789">>).

main([Shape, NArg]) ->
    N = list_to_integer(NArg),
    File = filename:join(emmap_bench:tmpdir(), "emmap-bench-calls-" ++ os:getpid()),
    {ok, M, _} = emmap:open(File, [create, read, write, auto_unlink, {size, 65536}]),
    {ok, D, _} = emmap:open(File, [read, direct]),
    C = emmap:open_counters(File ++ ".cnt", 4),
    Offs = list_to_tuple([(I * 97) rem 65000 || I <- lists:seq(1, 4096)]),
    case list_to_atom(Shape) of
        patomic_add -> add(M, N);
        floor_patomic_add -> floor_add(N);
        patomic_read -> rd(M, N);
        floor_patomic_read -> floor_rd(N);
        patomic_write -> wr(M, N);
        floor_patomic_write -> floor_wr(N);
        inc_counter -> cnt(C, N);
        pread -> pread(M, Offs, N);
        floor_pread -> floor_pread(Offs, N);
        pread_direct -> pread(D, Offs, N);
        floor_pread_direct -> floor_direct(Offs, N);
        pwrite -> pwrite(M, Offs, N);
        floor_pwrite -> floor_pwrite(Offs, N)
    end,
    emmap:close_counters(C),
    file:delete(File ++ ".cnt"),
    halt().

add(_, 0) -> ok;
add(M, N) -> {ok, _} = emmap:patomic_add(M, 0, 1), add(M, N - 1).
floor_add(0) -> ok;
floor_add(N) -> {ok, _} = emmap_bench_floor:patomic(x, 0, add, 1), floor_add(N - 1).
rd(_, 0) -> ok;
rd(M, N) -> {ok, _} = emmap:patomic_read_integer(M, 0), rd(M, N - 1).
floor_rd(0) -> ok;
floor_rd(N) -> {ok, _} = emmap_bench_floor:patomic_read(x, 0), floor_rd(N - 1).
wr(_, 0) -> ok;
wr(M, N) -> ok = emmap:patomic_write_integer(M, 0, N), wr(M, N - 1).
floor_wr(0) -> ok;
floor_wr(N) -> ok = emmap_bench_floor:patomic_write(x, 0, N), floor_wr(N - 1).
cnt(_, 0) -> ok;
cnt(C, N) -> _ = emmap:inc_counter(C, 0, 1), cnt(C, N - 1).
pread(_, _, 0) -> ok;
pread(M, O, N) -> {ok, _} = emmap:pread(M, element((N band 4095) + 1, O), 40), pread(M, O, N - 1).
floor_pread(_, 0) -> ok;
floor_pread(O, N) -> {ok, _} = emmap_bench_floor:pread(x, element((N band 4095) + 1, O), 40), floor_pread(O, N - 1).
floor_direct(_, 0) -> ok;
floor_direct(O, N) ->
    {ok, _} = emmap_bench_floor:pread_direct(x, element((N band 4095) + 1, O), 40),
    floor_direct(O, N - 1).
pwrite(_, _, 0) -> ok;
pwrite(M, O, N) -> ok = emmap:pwrite(M, element((N band 4095) + 1, O), ?BIN40), pwrite(M, O, N - 1).
floor_pwrite(_, 0) -> ok;
floor_pwrite(O, N) -> ok = emmap_bench_floor:pwrite(x, element((N band 4095) + 1, O), ?BIN40), floor_pwrite(O, N - 1).
