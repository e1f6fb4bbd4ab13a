// Small, uniform decoders and encoders between Erlang terms and the core.
#pragma once

#include <erl_nif.h>

#include <cstdint>

#include "mapping.h"
#include "resources.h"

namespace emmap::nif {

// Decodes an option list. Returns 0 on success; otherwise the term to
// return: {error, {invalid_option, Opt}} or {error, einval} for
// contradictory options. Sets *badarg when the list is not a proper list.
ERL_NIF_TERM parse_options(ErlNifEnv* env, Priv* p, ERL_NIF_TERM list, OpenOptions* out, HandleFlags* flags,
                           bool* badarg);

// {A, B}: from an array, not enif_make_tuple2's varargs (half the
// instructions on the hot paths, where it builds every {ok, _}).
inline ERL_NIF_TERM pair(ErlNifEnv* env, ERL_NIF_TERM a, ERL_NIF_TERM b) {
  const ERL_NIF_TERM elems[2] = {a, b};
  return enif_make_tuple_from_array(env, elems, 2);
}

// {error, Atom} for a core error.
inline ERL_NIF_TERM error_term(ErlNifEnv* env, Priv* p, Error e) {
  return pair(env, p->atoms.error, p->errc[static_cast<int>(e.code())]);
}
inline ERL_NIF_TERM error_term(ErlNifEnv* env, Priv* p, Errc c) { return error_term(env, p, Error(c)); }

// A non-negative offset or length. Integers out of range (negative, or past
// 2^64-1) are a wrong *value*: *ok stays true and *in_range is false.
// Anything but an integer is a wrong *type*: *ok is false (badarg).
struct U64Arg {
  bool is_integer = false;
  bool in_range = false;
  std::uint64_t value = 0;
};
U64Arg get_u64(ErlNifEnv* env, ERL_NIF_TERM t);

// A 64-bit value for the atomics: any integer in [-2^63, 2^64-1]; values
// above 2^63-1 are taken as their two's complement bit pattern.
U64Arg get_i64_bits(ErlNifEnv* env, ERL_NIF_TERM t);

// The map returned by info/1.
ERL_NIF_TERM info_map(ErlNifEnv* env, Priv* p, HandleRes* h);

// The `ignored` list for an open's Info map.
ERL_NIF_TERM ignored_list(ErlNifEnv* env, Priv* p, const Mapping& m, const HandleFlags& flags);

}  // namespace emmap::nif
