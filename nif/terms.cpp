#include "terms.h"

#include <cstring>

namespace emmap::nif {

namespace {

// Any integer (bignums too) is the right type; a float or anything else is
// not. In range: [0, 2^64-1], plus [-2^63, -1] when negatives are allowed
// (as their two's complement bit pattern).
U64Arg get_integer(ErlNifEnv* env, ERL_NIF_TERM t, bool allow_negative) {
  U64Arg a;
  ErlNifUInt64 u;
  ErlNifSInt64 s;
  if (enif_get_uint64(env, t, &u)) {
    a.is_integer = a.in_range = true;
    a.value = u;
  } else if (enif_get_int64(env, t, &s)) {
    a.is_integer = true;
    a.in_range = allow_negative;
    a.value = static_cast<std::uint64_t>(s);
  } else if (enif_is_number(env, t)) {
    double d;
    a.is_integer = !enif_get_double(env, t, &d);
  }
  return a;
}

}  // namespace

U64Arg get_u64(ErlNifEnv* env, ERL_NIF_TERM t) { return get_integer(env, t, false); }

U64Arg get_i64_bits(ErlNifEnv* env, ERL_NIF_TERM t) { return get_integer(env, t, true); }

namespace {

ERL_NIF_TERM invalid(ErlNifEnv* env, Priv* p, ERL_NIF_TERM opt) {
  return enif_make_tuple2(env, p->atoms.error, enif_make_tuple2(env, p->atoms.invalid_option, opt));
}

}  // namespace

ERL_NIF_TERM parse_options(ErlNifEnv* env, Priv* p, ERL_NIF_TERM list, OpenOptions* o, HandleFlags* f,
                           bool* badarg) {
  const Atoms& a = p->atoms;
  bool saw_read = false, saw_write = false, saw_shared = false, saw_private = false;
  bool saw_validate = false;
  ERL_NIF_TERM head;
  *badarg = false;
  if (!enif_is_list(env, list)) {
    *badarg = true;
    return 0;
  }
  while (enif_get_list_cell(env, list, &head, &list)) {
    int arity;
    const ERL_NIF_TERM* tuple;
    if (enif_is_atom(env, head)) {
      if (head == a.read) saw_read = true;
      else if (head == a.write) saw_write = true;
      else if (head == a.read_write) saw_read = saw_write = true;
      else if (head == a.create) o->create = true;
      else if (head == a.truncate) o->truncate = true;
      else if (head == a.shared) saw_shared = true;
      else if (head == a.private_) saw_private = true;
      else if (head == a.shared_validate) saw_validate = true;
      else if (head == a.direct) f->direct = true;
      else if (head == a.lock) f->nolock = false;
      else if (head == a.nolock) f->nolock = true;
      else if (head == a.mlock) o->mlock = true;
      else if (head == a.auto_unlink) o->auto_unlink = true;
      else if (head == a.anon) o->anonymous = true;
      else if (head == a.populate) o->populate = true;
      else if (head == a.nonblock) o->nonblock = true;
      else if (head == a.noreserve) o->noreserve = true;
      else if (head == a.nocache) o->nocache = true;
      else if (head == a.uninitialized) o->uninitialized = true;
      else if (head == a.sync) o->map_sync = true;
      else if (head == a.dax_if_available) o->dax_if_available = true;
      else if (head == a.hugetlb) o->huge = HugePages::default_size;
      else if (head == a.huge_2mb) o->huge = HugePages::size_2mb;
      else if (head == a.huge_1gb) o->huge = HugePages::size_1gb;
      else if (head == a.fixed) o->fixed = true;
      else if (head == a.fixed_size) o->fixed_size = true;
      else if (head == a.fit) o->fit = true;
      else if (head == a.debug) f->debug = true;
      else return invalid(env, p, head);
    } else if (enif_get_tuple(env, head, &arity, &tuple) && arity == 2 && enif_is_atom(env, tuple[0])) {
      const U64Arg v = get_u64(env, tuple[1]);
      if (!v.in_range) return invalid(env, p, head);
      if (tuple[0] == a.size) {
        o->size = v.value;
      } else if (tuple[0] == a.address) {
        if (v.value == 0 || v.value > UINTPTR_MAX) return invalid(env, p, head);
        o->address = static_cast<std::uintptr_t>(v.value);
      } else if (tuple[0] == a.chmod) {
        if (v.value > 07777) return invalid(env, p, head);
        o->mode = static_cast<std::uint32_t>(v.value);
      } else if (tuple[0] == a.max_inc_size) {
        if (v.value == 0) return invalid(env, p, head);
        o->max_inc_size = v.value;
      } else {
        return invalid(env, p, head);
      }
    } else {
      return invalid(env, p, head);
    }
  }
  if (!enif_is_empty_list(env, list)) {  // an improper list
    *badarg = true;
    return 0;
  }
  o->write = saw_write;
  o->read = true;  // every map is readable; `read` alone is the default
  (void)saw_read;
  if (saw_private && (saw_shared || saw_validate)) return error_term(env, p, Errc::einval);
  if (saw_private) o->sharing = Sharing::private_;
  else if (saw_validate) o->sharing = Sharing::shared_validate;
  else o->sharing = Sharing::shared;
  return 0;
}

ERL_NIF_TERM ignored_list(ErlNifEnv* env, Priv* p, const Mapping& m, const HandleFlags& f) {
  const Atoms& a = p->atoms;
  ERL_NIF_TERM list = enif_make_list(env, 0);
  const std::uint32_t ign = m.ignored();
  // Listed in the order the options appear in the docs, last first.
  if (f.nolock) list = enif_make_list_cell(env, a.nolock, list);
  if (ign & kIgnoredSharedValidate) list = enif_make_list_cell(env, a.shared_validate, list);
  if (ign & kIgnoredUninitialized) list = enif_make_list_cell(env, a.uninitialized, list);
  if (ign & kIgnoredNocache) list = enif_make_list_cell(env, a.nocache, list);
  if (ign & kIgnoredNoreserve) list = enif_make_list_cell(env, a.noreserve, list);
  if (ign & kIgnoredNonblock) list = enif_make_list_cell(env, a.nonblock, list);
  if (ign & kIgnoredPopulate) list = enif_make_list_cell(env, a.populate, list);
  return list;
}

ERL_NIF_TERM info_map(ErlNifEnv* env, Priv* p, HandleRes* h) {
  const Atoms& a = p->atoms;
  const Mapping& m = *h->map;
  const std::string_view backend = m.backend().name();
  ERL_NIF_TERM mode = m.writable() ? a.read_write : a.read;
  const Persistence pers = m.persistence();
  ERL_NIF_TERM keys[] = {a.size,     a.path,   a.mode,        a.options,    a.backend,
                         a.ignored,  a.position, a.closed,    a.persistence, a.device_dax,
                         a.pmem_forced};
  ERL_NIF_TERM vals[] = {
      enif_make_uint64(env, m.size()),
      enif_make_copy(env, h->path_term),
      mode,
      enif_make_copy(env, h->options_term),
      enif_make_atom_len(env, backend.data(), backend.size()),
      0,
      enif_make_uint64(env, h->position.load(std::memory_order_relaxed)),
      m.closed() ? a.true_ : a.false_,
      pers == Persistence::flush ? a.flush : pers == Persistence::eadr ? a.eadr : a.msync,
      m.device_dax_align() ? a.true_ : a.false_,
      m.pmem_forced() ? a.true_ : a.false_,
  };
  vals[5] = ignored_list(env, p, m, h->flags);
  ERL_NIF_TERM map;
  enif_make_map_from_arrays(env, keys, vals, sizeof keys / sizeof keys[0], &map);
  return map;
}

}  // namespace emmap::nif
