// Every atom the NIF uses, made once at load and kept in priv_data.
#pragma once

#include <erl_nif.h>

// X(C++ name, atom text)
#define EMMAP_ATOMS(X)                      \
  X(ok, "ok")                               \
  X(error, "error")                         \
  X(eof, "eof")                             \
  X(true_, "true")                          \
  X(false_, "false")                        \
  X(undefined, "undefined")                 \
  X(invalid_option, "invalid_option")       \
  X(emmap_sync, "emmap_sync")               \
  X(emmap_counters, "emmap_counters")       \
  /* options */                             \
  X(read, "read")                           \
  X(write, "write")                         \
  X(create, "create")                       \
  X(truncate, "truncate")                   \
  X(shared, "shared")                       \
  X(private_, "private")                    \
  X(direct, "direct")                       \
  X(lock, "lock")                           \
  X(nolock, "nolock")                       \
  X(mlock, "mlock")                         \
  X(auto_unlink, "auto_unlink")             \
  X(anon, "anon")                           \
  X(populate, "populate")                   \
  X(nonblock, "nonblock")                   \
  X(noreserve, "noreserve")                 \
  X(nocache, "nocache")                     \
  X(uninitialized, "uninitialized")         \
  X(shared_validate, "shared_validate")     \
  X(sync, "sync")                           \
  X(hugetlb, "hugetlb")                     \
  X(huge_2mb, "huge_2mb")                   \
  X(huge_1gb, "huge_1gb")                   \
  X(fixed, "fixed")                         \
  X(address, "address")                     \
  X(fixed_size, "fixed_size")               \
  X(fit, "fit")                             \
  X(debug, "debug")                         \
  X(chmod, "chmod")                         \
  X(size, "size")                           \
  X(max_inc_size, "max_inc_size")           \
  /* info keys */                           \
  X(exist, "exist")                         \
  X(ignored, "ignored")                     \
  X(path, "path")                           \
  X(mode, "mode")                           \
  X(options, "options")                     \
  X(backend, "backend")                     \
  X(read_write, "read_write")               \
  X(position, "position")                   \
  X(closed, "closed")                       \
  X(bof, "bof")                             \
  X(nil, "nil")                             \
  X(pop, "pop")                             \
  X(peek, "peek")                           \
  X(purge, "purge")                         \
  X(back, "back")                           \
  X(head, "head")                           \
  X(tail, "tail")                           \
  X(cur, "cur")                             \
  /* advice */                              \
  X(normal, "normal")                       \
  X(random, "random")                       \
  X(sequential, "sequential")               \
  X(willneed, "willneed")                   \
  X(dontneed, "dontneed")                   \
  /* queue */                               \
  X(never, "never")                         \
  X(always, "always")                       \
  X(interval, "interval")                   \
  X(count, "count")                         \
  X(dropped, "dropped")                     \
  X(initialised, "initialised")             \
  X(recovered, "recovered")                 \
  X(capacity, "capacity")                   \
  X(used, "used")                           \
  X(epoch, "epoch")                         \
  X(repairs, "repairs")                     \
  X(strict, "strict")                       \
  X(syncs, "syncs")                         \
  X(dax_if_available, "dax_if_available")   \
  X(persistence, "persistence")             \
  X(msync, "msync")                         \
  X(flush, "flush")                         \
  X(eadr, "eadr")                           \
  X(device_dax, "device_dax")               \
  X(pmem_forced, "pmem_forced")

struct Atoms {
#define EMMAP_ATOM_FIELD(name, text) ERL_NIF_TERM name;
  EMMAP_ATOMS(EMMAP_ATOM_FIELD)
#undef EMMAP_ATOM_FIELD

  void make(ErlNifEnv* env) {
#define EMMAP_ATOM_MAKE(name, text) name = enif_make_atom(env, text);
    EMMAP_ATOMS(EMMAP_ATOM_MAKE)
#undef EMMAP_ATOM_MAKE
  }
};
