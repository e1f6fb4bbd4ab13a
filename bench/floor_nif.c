/* The least a NIF can do for each hot-path shape of emmap: the same
 * arguments and the same result, over a static 64 KiB buffer, with no
 * resource lookup, no access gate and no bounds check beyond the buffer's
 * own. bench/emmap_bench.erl prints each emmap shape's ratio to these.
 * Same arities as emmap_nif's functions; the first argument is ignored. */
#include <erl_nif.h>
#include <stdint.h>
#include <string.h>

#define BUF_SIZE (64 * 1024)

static _Alignas(64) unsigned char buf[BUF_SIZE];
static ErlNifResourceType* region_type;
static void* region; /* one resource standing for the map, for direct binaries */
static ERL_NIF_TERM atom_ok, atom_error, atom_einval, atom_add;

static ERL_NIF_TERM einval(ErlNifEnv* env) { return enif_make_tuple2(env, atom_error, atom_einval); }

static int load(ErlNifEnv* env, void** priv, ERL_NIF_TERM info) {
  (void)priv;
  (void)info;
  atom_ok = enif_make_atom(env, "ok");
  atom_error = enif_make_atom(env, "error");
  atom_einval = enif_make_atom(env, "einval");
  atom_add = enif_make_atom(env, "add");
  region_type = enif_open_resource_type(env, NULL, "floor_region", NULL, ERL_NIF_RT_CREATE, NULL);
  if (!region_type) return 1;
  region = enif_alloc_resource(region_type, 8);
  return region ? 0 : 1;
}

/* patomic(_, Pos, add, V) -> {ok, Old} */
static ERL_NIF_TERM patomic(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  (void)argc;
  ErlNifUInt64 pos;
  ErlNifSInt64 v;
  if (!enif_get_uint64(env, argv[1], &pos) || argv[2] != atom_add || !enif_get_int64(env, argv[3], &v))
    return enif_make_badarg(env);
  if (pos > BUF_SIZE - 8 || pos % 8) return einval(env);
  int64_t old = __atomic_fetch_add((int64_t*)(buf + pos), v, __ATOMIC_SEQ_CST);
  return enif_make_tuple2(env, atom_ok, enif_make_int64(env, old));
}

/* patomic_read(_, Pos) -> {ok, V} */
static ERL_NIF_TERM patomic_read(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  (void)argc;
  ErlNifUInt64 pos;
  if (!enif_get_uint64(env, argv[1], &pos)) return enif_make_badarg(env);
  if (pos > BUF_SIZE - 8 || pos % 8) return einval(env);
  int64_t v = __atomic_load_n((int64_t*)(buf + pos), __ATOMIC_SEQ_CST);
  return enif_make_tuple2(env, atom_ok, enif_make_int64(env, v));
}

/* patomic_write(_, Pos, V) -> ok */
static ERL_NIF_TERM patomic_write(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  (void)argc;
  ErlNifUInt64 pos;
  ErlNifSInt64 v;
  if (!enif_get_uint64(env, argv[1], &pos) || !enif_get_int64(env, argv[2], &v)) return enif_make_badarg(env);
  if (pos > BUF_SIZE - 8 || pos % 8) return einval(env);
  __atomic_store_n((int64_t*)(buf + pos), v, __ATOMIC_SEQ_CST);
  return atom_ok;
}

/* pread(_, Pos, Len) -> {ok, Bin}: a copy */
static ERL_NIF_TERM pread(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  (void)argc;
  ErlNifUInt64 pos, len;
  if (!enif_get_uint64(env, argv[1], &pos) || !enif_get_uint64(env, argv[2], &len)) return enif_make_badarg(env);
  if (pos > BUF_SIZE || len > BUF_SIZE - pos) return einval(env);
  ERL_NIF_TERM bin;
  memcpy(enif_make_new_binary(env, len, &bin), buf + pos, len);
  return enif_make_tuple2(env, atom_ok, bin);
}

/* pread_direct(_, Pos, Len) -> {ok, Bin}: a resource binary over the buffer */
static ERL_NIF_TERM pread_direct(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  (void)argc;
  ErlNifUInt64 pos, len;
  if (!enif_get_uint64(env, argv[1], &pos) || !enif_get_uint64(env, argv[2], &len)) return enif_make_badarg(env);
  if (pos > BUF_SIZE || len > BUF_SIZE - pos) return einval(env);
  return enif_make_tuple2(env, atom_ok, enif_make_resource_binary(env, region, buf + pos, len));
}

/* pwrite(_, Pos, Bin) -> ok */
static ERL_NIF_TERM pwrite(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  (void)argc;
  ErlNifUInt64 pos;
  ErlNifBinary data;
  if (!enif_get_uint64(env, argv[1], &pos) || !enif_inspect_binary(env, argv[2], &data)) return enif_make_badarg(env);
  if (pos > BUF_SIZE || data.size > BUF_SIZE - pos) return einval(env);
  memcpy(buf + pos, data.data, data.size);
  return atom_ok;
}

static ErlNifFunc funcs[] = {
    {"patomic", 4, patomic, 0},       {"patomic_read", 2, patomic_read, 0}, {"patomic_write", 3, patomic_write, 0},
    {"pread", 3, pread, 0},           {"pread_direct", 3, pread_direct, 0}, {"pwrite", 3, pwrite, 0},
};
ERL_NIF_INIT(emmap_bench_floor, funcs, load, NULL, NULL, NULL)
