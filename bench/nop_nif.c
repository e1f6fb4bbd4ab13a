/* A NIF that does nothing: the benchmark's measure of what any NIF call
 * costs on this machine, printed beside the floors for context. */
#include <erl_nif.h>

static ERL_NIF_TERM nop(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  (void)env;
  (void)argc;
  return argv[0];
}

static ErlNifFunc funcs[] = {{"nop", 3, nop, 0}};
ERL_NIF_INIT(emmap_bench_nop, funcs, NULL, NULL, NULL, NULL)
