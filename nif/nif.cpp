// The erl_nif glue: decode arguments, call the core, encode the result.
// No syscalls here; every OS call is in platform/ behind the core.
//
// Scheduler choice, per function (see the table at the bottom):
//  * O(1) work (atomics, direct reads, small copies, info, position) runs on
//    the normal scheduler and never blocks: it enters the map's access gate
//    with Wait::no, and if a resize or close holds the map, or a copy is
//    larger than kDirtyCopy, it sets Call::retry and the entry wrapper
//    reschedules the same function as a dirty I/O job, where waiting is fine.
//  * Everything that can block in the kernel for long (open, close, sync,
//    resize, advise) is registered dirty I/O from the start.
// So no normal scheduler is held for more than about 1 ms.
#include <erl_nif.h>

#include <cstring>
#include <limits>
#include <new>

#include "blocks.h"
#include "ext_size.h"
#include "queue.h"
#include "resources.h"
#include "terms.h"

namespace emmap::nif {
namespace {

// ~100 us of memcpy even when cold; above it a copy goes to a dirty scheduler.
constexpr std::size_t kDirtyCopy = 1u << 20;
// Results up to this size become heap binaries (ERL_ONHEAP_BIN_LIMIT).
constexpr std::size_t kHeapBinMax = 64;

// A binary holding [data, data+n), or false when memory cannot be had:
// enif_make_new_binary aborts the VM then, so it is used only for small
// (heap) binaries; larger ones come from enif_alloc_binary, which fails.
bool copy_binary(ErlNifEnv* env, const void* data, std::size_t n, ERL_NIF_TERM* out) {
  if (n <= kHeapBinMax) {
    std::memcpy(enif_make_new_binary(env, n, out), data, n);
    return true;
  }
  ErlNifBinary b;
  if (!enif_alloc_binary(n, &b)) return false;
  std::memcpy(b.data, data, n);
  *out = enif_make_binary(env, &b);
  return true;
}

// One NIF call: its environment, the library's data, and where it runs.
struct Call {
  ErlNifEnv* env;
  Priv* p;
  bool dirty;          // on a dirty scheduler: may wait
  bool retry = false;  // set when the call must be redone on a dirty scheduler

  Wait wait() const { return dirty ? Wait::yes : Wait::no; }
  // For the persistent queue, whose lock another OS process may hold: on a
  // dirty scheduler wait only briefly, then {error, ebusy}, which the
  // Erlang side retries from the process (a stuck holder elsewhere must
  // not tie up the dirty schedulers).
  Wait queue_wait() const { return dirty ? Wait::briefly : Wait::no; }
  ERL_NIF_TERM badarg() const { return enif_make_badarg(env); }
  ERL_NIF_TERM ok() const { return p->atoms.ok; }
  ERL_NIF_TERM ok(ERL_NIF_TERM v) const { return pair(env, p->atoms.ok, v); }
  ERL_NIF_TERM error(Error e) {
    if (e == Errc::ebusy && !dirty) {
      retry = true;
      return 0;
    }
    return e == Errc::eof ? p->atoms.eof : error_term(env, p, e);
  }
  bool handle(ERL_NIF_TERM t, HandleRes** h) const {
    return enif_get_resource(env, t, p->handle_type, reinterpret_cast<void**>(h));
  }
};

using Impl = ERL_NIF_TERM (*)(Call&, int, const ERL_NIF_TERM[]);

template <Impl F>
ERL_NIF_TERM dirty_entry(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  Call c{env, priv(env), true};
  return F(c, argc, argv);
}

template <Impl F>
ERL_NIF_TERM normal_entry(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  const std::uint64_t start = ticks();
  Call c{env, priv(env), false};
  const ERL_NIF_TERM r = F(c, argc, argv);
  c.p->timeslice.charge(env, start);
  if (c.retry) return enif_schedule_nif(env, "emmap_dirty_retry", ERL_NIF_DIRTY_JOB_IO_BOUND, dirty_entry<F>, argc, argv);
  return r;
}

// Decodes a 64-bit integer argument with `get` (get_u64 or get_i64_bits):
// badarg for a non-integer, einval (returned in *err) for one out of range.
template <typename T>
bool arg_int(Call& c, ERL_NIF_TERM t, U64Arg (*get)(ErlNifEnv*, ERL_NIF_TERM), T* out, ERL_NIF_TERM* err) {
  const U64Arg a = get(c.env, t);
  if (!a.is_integer) {
    *err = c.badarg();
    return false;
  }
  if (!a.in_range) {
    *err = error_term(c.env, c.p, Errc::einval);
    return false;
  }
  *out = static_cast<T>(a.value);
  return true;
}

[[gnu::noinline]] bool arg_u64_general(Call& c, ERL_NIF_TERM t, std::uint64_t* out, ERL_NIF_TERM* err) {
  return arg_int(c, t, get_u64, out, err);
}

[[gnu::noinline]] bool arg_i64_general(Call& c, ERL_NIF_TERM t, std::int64_t* out, ERL_NIF_TERM* err) {
  return arg_int(c, t, get_i64_bits, out, err);
}

// Inline, these try one enif_get_int64 first (the cheapest decoder erl_nif
// has, and every realistic position, length and value fits it); anything
// else (bignums, wrong types, negatives) takes the general path above.
[[gnu::always_inline]] inline bool arg_u64(Call& c, ERL_NIF_TERM t, std::uint64_t* out, ERL_NIF_TERM* err) {
  ErlNifSInt64 s;
  if (enif_get_int64(c.env, t, &s) && s >= 0) [[likely]] {
    *out = static_cast<std::uint64_t>(s);
    return true;
  }
  return arg_u64_general(c, t, out, err);
}

[[gnu::always_inline]] inline bool arg_i64(Call& c, ERL_NIF_TERM t, std::int64_t* out, ERL_NIF_TERM* err) {
  ErlNifSInt64 s;
  if (enif_get_int64(c.env, t, &s)) [[likely]] {
    *out = s;
    return true;
  }
  return arg_i64_general(c, t, out, err);
}

// A position and a second integer (a length, or a value when `Signed`),
// as the hot calls take them: one enif_get_int64 each inline; anything else
// decodes both again out of line, where a wrong type (badarg) wins over a
// value out of range ({error, einval}) whichever argument has which, as the
// Erlang guards these calls no longer have decided it.
template <bool Signed, typename T>
[[gnu::noinline, gnu::cold]] bool arg_pos_and_general(Call& c, const ERL_NIF_TERM* a, std::uint64_t* pos, T* second,
                                                     ERL_NIF_TERM* err) {
  ERL_NIF_TERM e1 = 0, e2 = 0;
  const bool ok1 = arg_u64_general(c, a[0], pos, &e1);
  bool ok2;
  if constexpr (Signed) {
    ok2 = arg_i64_general(c, a[1], second, &e2);
  } else {
    ok2 = arg_u64_general(c, a[1], second, &e2);
  }
  if (ok1 && ok2) return true;
  if (!ok1 && enif_is_exception(c.env, e1)) *err = e1;
  else if (!ok2 && enif_is_exception(c.env, e2)) *err = e2;
  else *err = ok1 ? e2 : e1;
  return false;
}

template <bool Signed, typename T>
[[gnu::always_inline]] inline bool arg_pos_and(Call& c, const ERL_NIF_TERM* a, std::uint64_t* pos, T* second,
                                               ERL_NIF_TERM* err) {
  ErlNifSInt64 p, v;
  if (enif_get_int64(c.env, a[0], &p) && p >= 0 && enif_get_int64(c.env, a[1], &v) && (Signed || v >= 0)) [[likely]] {
    *pos = static_cast<std::uint64_t>(p);
    *second = static_cast<T>(v);
    return true;
  }
  return arg_pos_and_general<Signed>(c, a, pos, second, err);
}

// Reads [pos, pos+len) as {ok, Binary}: zero-copy for direct handles (or
// when `zero_copy`), a heap or refc copy otherwise.
ERL_NIF_TERM read_binary(Call& c, HandleRes* h, std::uint64_t pos, std::uint64_t len, bool zero_copy = false) {
  const std::size_t want =
      len > std::numeric_limits<std::size_t>::max() ? std::numeric_limits<std::size_t>::max() : len;
  auto r = h->map->with_range(
      pos, want,
      [&](const char* data, std::size_t n, Region& region) -> Result<ERL_NIF_TERM> {
        if (zero_copy || h->flags.direct) {
          RegionRes* rr = h->region_res(c.p, region);
          if (!rr) return Error(Errc::enomem);
          return enif_make_resource_binary(c.env, rr, data, n);
        }
        if (n > kDirtyCopy && !c.dirty) return Error(Errc::ebusy);  // -> retry on a dirty scheduler
        ERL_NIF_TERM bin;
        if (!copy_binary(c.env, data, n, &bin)) return Error(Errc::enomem);  // fails, never aborts the VM
        return bin;
      },
      c.wait());
  if (!r) return c.error(r.error());
  return c.ok(*r);
}

// Claims [pos, pos+n) of the handle's position for an access of up to `len`
// bytes (exactly `len` when `exact`); false at or past the end.
bool claim(HandleRes* h, std::uint64_t len, bool exact, std::uint64_t* pos, std::uint64_t* n) {
  std::uint64_t cur = h->position.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t size = h->map->size();
    const std::uint64_t room = cur < size ? size - cur : 0;
    if (exact ? len > room : room == 0) return false;
    const std::uint64_t take = len < room ? len : room;
    if (h->position.compare_exchange_weak(cur, cur + take, std::memory_order_relaxed)) {
      *pos = cur;
      *n = take;
      return true;
    }
  }
}

// ---- open / close / info ------------------------------------------------------

// open(PathBin, PathAsGiven, Offset, Length, Options)
ERL_NIF_TERM open_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  ErlNifBinary path;
  if (!enif_inspect_binary(c.env, argv[0], &path)) return c.badarg();
  std::uint64_t off, len;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[2], &off, &err) || !arg_u64(c, argv[3], &len, &err)) return err;
  OpenOptions o;
  HandleFlags flags;
  bool badarg = false;
  if (ERL_NIF_TERM bad = parse_options(c.env, c.p, argv[4], &o, &flags, &badarg)) return bad;
  if (badarg) return c.badarg();

  auto opened = Mapping::open(std::string_view(reinterpret_cast<const char*>(path.data), path.size), off, len, o);
  if (!opened) return c.error(opened.error());
  void* mem = enif_alloc_resource(c.p->handle_type, sizeof(HandleRes));
  if (!mem) return c.error(Errc::enomem);
  auto* h = new (mem) HandleRes();
  h->map = std::move(opened->mapping);
  h->flags = flags;
  h->info_env = enif_alloc_env();
  h->path_term = enif_make_copy(h->info_env, argv[1]);
  h->options_term = enif_make_copy(h->info_env, argv[4]);
  const ERL_NIF_TERM handle = enif_make_resource(c.env, h);
  enif_release_resource(h);  // the term owns it now

  const Atoms& a = c.p->atoms;
  ERL_NIF_TERM keys[] = {a.exist, a.size, a.ignored};
  ERL_NIF_TERM vals[] = {opened->existed ? a.true_ : a.false_, enif_make_uint64(c.env, h->map->size()),
                         ignored_list(c.env, c.p, *h->map, flags)};
  ERL_NIF_TERM info;
  enif_make_map_from_arrays(c.env, keys, vals, 3, &info);
  return enif_make_tuple3(c.env, a.ok, handle, info);
}

ERL_NIF_TERM close_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  h->map->close();  // waits for accesses in flight; memory stays while direct binaries hold it
  h->release_regions();
  return c.ok();
}

ERL_NIF_TERM info_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  return info_map(c.env, c.p, h);
}

// ---- reading -------------------------------------------------------------------

ERL_NIF_TERM pread_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t pos, len;
  ERL_NIF_TERM err;
  if (!arg_pos_and<false>(c, argv + 1, &pos, &len, &err)) return err;
  return read_binary(c, h, pos, len);
}

// region(H, Pos, Len): a zero-copy binary over exactly [Pos, Pos+Len).
ERL_NIF_TERM region_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t pos, len;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &pos, &err) || !arg_u64(c, argv[2], &len, &err)) return err;
  if (h->map->closed()) return c.error(Errc::closed);
  const std::uint64_t size = h->map->size();
  if (pos > size || len > size - pos) return c.error(Errc::einval);
  if (len == 0) {
    ERL_NIF_TERM empty;
    enif_make_new_binary(c.env, 0, &empty);
    return c.ok(empty);
  }
  return read_binary(c, h, pos, len, true);
}

// {ok, _}: the access happened (0 stands for "retry", never a term).
bool is_ok_tuple(const Call& c, ERL_NIF_TERM r) {
  int arity;
  const ERL_NIF_TERM* elems;
  return r != 0 && enif_get_tuple(c.env, r, &arity, &elems) && arity == 2 && elems[0] == c.p->atoms.ok;
}

// Undoes claim() of [pos, pos+n) when the access did not happen, unless
// another process has moved the position since.
void give_back(HandleRes* h, std::uint64_t pos, std::uint64_t n) {
  std::uint64_t expected = pos + n;
  h->position.compare_exchange_strong(expected, pos, std::memory_order_relaxed);
}

ERL_NIF_TERM read_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t len;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &len, &err)) return err;
  if (h->map->closed()) return c.error(Errc::closed);
  std::uint64_t pos, n;
  if (!claim(h, len, false, &pos, &n)) return c.p->atoms.eof;
  const ERL_NIF_TERM r = read_binary(c, h, pos, n);
  if (c.retry || !is_ok_tuple(c, r)) give_back(h, pos, n);  // nothing was read: the position stays
  return r;
}

// The line [pos, pos+len) as file:read_line/1 gives it: with `crlf` (it
// ends in CR LF) the CR is dropped, and the line is then a copy even for a
// direct handle, since its bytes are no longer one range of the map.
ERL_NIF_TERM read_line_at(Call& c, HandleRes* h, std::uint64_t pos, std::uint64_t len, bool crlf) {
  if (!crlf) return read_binary(c, h, pos, len);
  auto r = h->map->with_range(
      pos, len - 2,
      [&](const char* data, std::size_t n, Region&) -> Result<ERL_NIF_TERM> {
        if (n > kDirtyCopy && !c.dirty) return Error(Errc::ebusy);
        ErlNifBinary b;
        if (!enif_alloc_binary(n + 1, &b)) return Error(Errc::enomem);
        std::memcpy(b.data, data, n);
        b.data[n] = '\n';
        return enif_make_binary(c.env, &b);
      },
      c.wait());
  if (!r) return c.error(r.error());
  return c.ok(*r);
}

ERL_NIF_TERM read_line_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  for (;;) {
    const std::uint64_t start = h->position.load(std::memory_order_relaxed);
    // On a normal scheduler look at most kDirtyCopy bytes for the newline.
    const std::size_t window = c.dirty ? std::numeric_limits<std::size_t>::max() : kDirtyCopy;
    struct Line {
      std::uint64_t len;
      bool crlf;
    };
    auto line = h->map->with_range(
        start, window,
        [&](const char* data, std::size_t n, Region&) -> Result<Line> {
          if (const void* nl = std::memchr(data, '\n', n)) {
            const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(nl) - data);
            return Line{at + 1, at > 0 && data[at - 1] == '\r'};
          }
          if (n == window) return Error(Errc::ebusy);  // a longer line: look further on a dirty scheduler
          return Line{n, false};                       // the last line of the map has no newline
        },
        c.wait());
    if (!line) return c.error(line.error());
    std::uint64_t expected = start;
    if (!h->position.compare_exchange_strong(expected, start + line->len, std::memory_order_relaxed))
      continue;  // another process moved the position: read again from there
    const ERL_NIF_TERM r = read_line_at(c, h, start, line->len, line->crlf);
    if (c.retry || !is_ok_tuple(c, r)) give_back(h, start, line->len);
    return r;
  }
}

// position(H, bof | cur | eof, Offset) -> {ok, NewPos}
ERL_NIF_TERM position_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  const Atoms& a = c.p->atoms;
  std::int64_t off;
  ErlNifSInt64 s;
  if (!enif_get_int64(c.env, argv[2], &s)) {
    return get_u64(c.env, argv[2]).is_integer ? c.error(Errc::einval) : c.badarg();
  }
  off = s;
  if (h->map->closed()) return c.error(Errc::closed);
  std::uint64_t base;
  if (argv[1] == a.bof) base = 0;
  else if (argv[1] == a.cur) base = h->position.load(std::memory_order_relaxed);
  else if (argv[1] == a.eof) base = h->map->size();
  else return c.badarg();
  std::uint64_t next;
  if (off < 0) {
    const std::uint64_t back = static_cast<std::uint64_t>(-(off + 1)) + 1;  // no overflow at INT64_MIN
    if (back > base) return c.error(Errc::einval);
    next = base - back;
  } else {
    if (static_cast<std::uint64_t>(off) > std::numeric_limits<std::uint64_t>::max() - base)
      return c.error(Errc::einval);
    next = base + static_cast<std::uint64_t>(off);
  }
  h->position.store(next, std::memory_order_relaxed);
  return c.ok(enif_make_uint64(c.env, next));
}

// ---- writing --------------------------------------------------------------------

ERL_NIF_TERM write_at(Call& c, HandleRes* h, std::uint64_t pos, const ErlNifBinary& data) {
  if (data.size > kDirtyCopy && !c.dirty) return c.error(Errc::ebusy);
  const Error e = h->map->with_writable(
      pos, data.size,
      [&](char* dst, std::size_t n) -> Error {
        h->map->store(dst, data.data, n);  // memcpy; non-temporal on persistent memory
        return {};
      },
      c.wait());
  return e ? c.error(e) : c.ok();
}

// pwrite(H, Pos, Binary); emmap.erl flattens iolists first (a yielding BIF).
ERL_NIF_TERM pwrite_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  ErlNifBinary data;
  if (!c.handle(argv[0], &h) || !enif_inspect_binary(c.env, argv[2], &data)) return c.badarg();
  std::uint64_t pos;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &pos, &err)) return err;
  return write_at(c, h, pos, data);
}

ERL_NIF_TERM write_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  ErlNifBinary data;
  if (!c.handle(argv[0], &h) || !enif_inspect_binary(c.env, argv[1], &data)) return c.badarg();
  if (h->map->closed()) return c.error(Errc::closed);
  if (!h->map->writable()) return c.error(Errc::eacces);
  std::uint64_t pos, n;
  if (!claim(h, data.size, true, &pos, &n)) return c.error(Errc::einval);
  const ERL_NIF_TERM r = write_at(c, h, pos, data);
  if (c.retry || r != c.p->atoms.ok) give_back(h, pos, n);
  return r;
}

// ---- atomics ----------------------------------------------------------------------

// patomic_add(H, Pos, V) and its siblings: the operation is the function,
// not an atom to decode (emmap:patomic/4 picks the function by its atom). With `Counter` (emmap's counters) the old value
// comes back bare, and an error is raised as {emmap_counters, Reason}
// (badarg stays badarg), so that the Erlang caller can tail-call this.
template <AtomicOp Op, bool Counter = false>
[[gnu::always_inline]] inline ERL_NIF_TERM patomic_op_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t pos;
  std::int64_t v;
  ERL_NIF_TERM err;
  if (!arg_pos_and<true>(c, argv + 1, &pos, &v, &err)) {
    if (Counter && !enif_is_exception(c.env, err))  // a wrong value: {error, einval}
      return enif_raise_exception(c.env, pair(c.env, c.p->atoms.emmap_counters, c.p->errc[int(Errc::einval)]));
    return err;
  }
  auto r = h->map->atomic_fetch(Op, pos, v, c.wait());
  if (!r) {
    const ERL_NIF_TERM e = c.error(r.error());
    if (!Counter || c.retry) return e;  // retried on a dirty scheduler: no error yet
    return enif_raise_exception(c.env, pair(c.env, c.p->atoms.emmap_counters, c.p->errc[int(r.error().code())]));
  }
  const ERL_NIF_TERM old = enif_make_int64(c.env, *r);
  return Counter ? old : c.ok(old);
}

ERL_NIF_TERM patomic_cas_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t pos;
  std::int64_t expected, desired;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &pos, &err) || !arg_i64(c, argv[2], &expected, &err) ||
      !arg_i64(c, argv[3], &desired, &err))
    return err;
  auto r = h->map->atomic_cas(pos, expected, desired, c.wait());
  if (!r) return c.error(r.error());
  return enif_make_tuple2(c.env, r->first ? c.p->atoms.true_ : c.p->atoms.false_, enif_make_int64(c.env, r->second));
}

[[gnu::always_inline]] inline ERL_NIF_TERM patomic_read_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t pos;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &pos, &err)) return err;
  auto r = h->map->atomic_load(pos, c.wait());
  return r ? c.ok(enif_make_int64(c.env, *r)) : c.error(r.error());
}

[[gnu::always_inline]] inline ERL_NIF_TERM patomic_write_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t pos;
  std::int64_t v;
  ERL_NIF_TERM err;
  if (!arg_pos_and<true>(c, argv + 1, &pos, &v, &err)) return err;
  const Error e = h->map->atomic_store(pos, v, c.wait());
  return e ? c.error(e) : c.ok();
}

// ---- size and durability (dirty I/O) -----------------------------------------------

ERL_NIF_TERM resize_impl(Call& c, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  Result<std::uint64_t> r = Error(Errc::einval);
  if (argc == 1) {
    r = h->map->grow();
  } else {
    std::uint64_t size;
    ERL_NIF_TERM err;
    if (!arg_u64(c, argv[1], &size, &err)) return err;
    r = h->map->resize(size);
  }
  if (!r) return c.error(r.error());
  return c.ok(enif_make_uint64(c.env, *r));
}

ERL_NIF_TERM sync_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t pos, len;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &pos, &err) || !arg_u64(c, argv[2], &len, &err)) return err;
  const Error e = h->map->sync(pos, len);
  return e ? c.error(e) : c.ok();
}

// sync_async(H, Ref): the caller later receives {emmap_sync, Ref, Result};
// with Ref = undefined nobody is told (iommap:sync(H, async)). The sync runs
// through io_uring where the core has it, else on the core's background thread.
struct SyncReply {
  ErlNifEnv* env = enif_alloc_env();
  ERL_NIF_TERM ref = 0;
  ErlNifPid to{};
  bool reply = false;
  ~SyncReply() { enif_free_env(env); }
};

ERL_NIF_TERM sync_async_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  const bool reply = argv[1] != c.p->atoms.undefined;
  if (!c.handle(argv[0], &h) || (reply && !enif_is_ref(c.env, argv[1]))) return c.badarg();
  std::shared_ptr<SyncReply> r;
  try {
    r = std::make_shared<SyncReply>();
  } catch (...) {
    return c.error(Errc::enomem);
  }
  if (!r->env || !enif_self(c.env, &r->to)) return c.error(Errc::enomem);
  r->reply = reply;
  r->ref = enif_make_copy(r->env, argv[1]);
  const Error e = h->map->sync_async([r](Error result) {
    if (!r->reply) return;
    ErlNifEnv* env = r->env;
    const ERL_NIF_TERM res =
        result.ok() ? enif_make_atom(env, "ok")
                    : enif_make_tuple2(env, enif_make_atom(env, "error"),
                                       enif_make_atom_len(env, result.name().data(), result.name().size()));
    enif_send(nullptr, &r->to, env, enif_make_tuple3(env, enif_make_atom(env, "emmap_sync"), r->ref, res));
  });
  return e ? c.error(e) : c.ok();
}

ERL_NIF_TERM advise_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  const Atoms& a = c.p->atoms;
  Advice advice;
  if (argv[3] == a.normal) advice = Advice::normal;
  else if (argv[3] == a.random) advice = Advice::random;
  else if (argv[3] == a.sequential) advice = Advice::sequential;
  else if (argv[3] == a.willneed) advice = Advice::willneed;
  else if (argv[3] == a.dontneed) advice = Advice::dontneed;
  else if (enif_is_atom(c.env, argv[3])) return c.error(Errc::einval);
  else return c.badarg();
  std::uint64_t pos, len;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &pos, &err) || !arg_u64(c, argv[2], &len, &err)) return err;
  const Error e = h->map->advise(pos, len, advice);
  return e ? c.error(e) : c.ok();
}

// ---- block storage ------------------------------------------------------------------

ERL_NIF_TERM block_init_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  unsigned size;
  if (!c.handle(argv[0], &h)) return c.badarg();
  if (!enif_get_uint(c.env, argv[1], &size)) return get_u64(c.env, argv[1]).is_integer ? c.error(Errc::einval) : c.badarg();
  const Error e = blocks::init(*h->map, size, c.wait());
  return e ? c.error(e) : c.ok();
}

// block_store(H, Bin) -> Addr | {error, Reason}; growing the file retries dirty.
ERL_NIF_TERM block_store_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  ErlNifBinary data;
  if (!c.handle(argv[0], &h) || !enif_inspect_binary(c.env, argv[1], &data)) return c.badarg();
  if (data.size > kDirtyCopy && !c.dirty) return c.error(Errc::ebusy);  // a long copy: dirty
  auto r = blocks::store(*h->map, data.data, data.size, c.wait());
  return r ? enif_make_uint64(c.env, *r) : c.error(r.error());
}

// block_read(H, Addr) -> Bin | eof | {error, Reason}
ERL_NIF_TERM block_read_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t addr;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &addr, &err)) return err;
  // Straight into the binary the caller gets: no intermediate copy, and an
  // allocation that fails answers enomem instead of aborting the VM.
  struct Sink {
    ErlNifBinary bin{};
    bool have = false;
    bool dirty;
    bool too_long = false;  // a long copy: redo on a dirty scheduler
  } sink;
  sink.dirty = c.dirty;
  auto r = blocks::read_into(
      *h->map, addr,
      [](void* ctx, std::size_t n) -> char* {
        auto* s = static_cast<Sink*>(ctx);
        if (n > kDirtyCopy && !s->dirty) {
          s->too_long = true;
          return nullptr;
        }
        if (s->have) {
          if (s->bin.size != n && !enif_realloc_binary(&s->bin, n)) return nullptr;
        } else {
          if (!enif_alloc_binary(n, &s->bin)) return nullptr;
          s->have = true;
        }
        return reinterpret_cast<char*>(s->bin.data);
      },
      &sink, c.wait());
  if (!r) {
    if (sink.have) enif_release_binary(&sink.bin);
    return c.error(sink.too_long ? Error(Errc::ebusy) : r.error());
  }
  if (sink.bin.size != *r) (void)enif_realloc_binary(&sink.bin, *r);  // shrinking never fails
  return enif_make_binary(c.env, &sink.bin);
}

// block_free(H, Addr) -> true | false | {error, Reason}
ERL_NIF_TERM block_free_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t addr;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &addr, &err)) return err;
  auto r = blocks::free(*h->map, addr, c.wait());
  if (!r) return c.error(r.error());
  return *r ? c.p->atoms.true_ : c.p->atoms.false_;
}

// block_scan(H, Start, Count) -> {[{Addr, Bin}], Cont | eof} (dirty: may be long)
ERL_NIF_TERM block_scan_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t start, count;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &start, &err) || !arg_u64(c, argv[2], &count, &err)) return err;
  ERL_NIF_TERM list = enif_make_list(c.env, 0);
  bool out_of_memory = false;
  auto r = blocks::scan(
      *h->map, start, count,
      [&](std::uint64_t addr, std::string_view data) {
        ERL_NIF_TERM bin;
        if (!copy_binary(c.env, data.data(), data.size(), &bin)) {
          out_of_memory = true;
          return;
        }
        list = enif_make_list_cell(c.env, enif_make_tuple2(c.env, enif_make_uint64(c.env, addr), bin), list);
      },
      c.wait());
  if (!r) return c.error(r.error());
  if (out_of_memory) return c.error(Errc::enomem);
  ERL_NIF_TERM ordered;
  enif_make_reverse_list(c.env, list, &ordered);
  return enif_make_tuple2(c.env, ordered, *r == blocks::kEof ? c.p->atoms.eof : enif_make_uint64(c.env, *r));
}

// block_repair(H, Start, Count) -> Cont | eof (dirty)
ERL_NIF_TERM block_repair_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t start, count;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &start, &err) || !arg_u64(c, argv[2], &count, &err)) return err;
  auto r = blocks::repair(*h->map, start, count, c.wait());
  if (!r) return c.error(r.error());
  return *r == blocks::kEof ? c.p->atoms.eof : enif_make_uint64(c.env, *r);
}

// ---- persistent queue -------------------------------------------------------------

// A queue item as a term, for Queue::take/claim/scan visitors.
struct ItemOut {
  ErlNifEnv* env;
  bool dirty;
  ERL_NIF_TERM item;
};

Errc item_to_term(void* ctx, std::uint8_t kind, const char* data, std::size_t len) {
  auto* o = static_cast<ItemOut*>(ctx);
  // Copying or decoding a large item takes long: on a dirty scheduler
  // (the item stays queued meanwhile).
  if (len > kDirtyCopy && !o->dirty) return Errc::ebusy;
  if (kind == queue::kBinary) return copy_binary(o->env, data, len, &o->item) ? Errc::ok : Errc::enomem;
  if (kind == queue::kErlangTerm) {
    // {'$emmap_queue_z', Bin}: emmap_queue decodes it (enif_binary_to_term
    // does not take compressed terms) after the pop, so the memory check
    // (below, for plain terms) is made here, from the uncompressed size.
    const auto need = compressed_decoded_bytes(reinterpret_cast<const unsigned char*>(data), len);
    if (need && *need > kDirtyCopy && (*need > SIZE_MAX / 3 || !can_allocate(3 * *need))) return Errc::enomem;
    ERL_NIF_TERM bin;
    if (!copy_binary(o->env, data, len, &bin)) return Errc::enomem;
    o->item = enif_make_tuple2(o->env, enif_make_atom(o->env, "$emmap_queue_z"), bin);
    return Errc::ok;
  }
  // The VM aborts when it cannot allocate a decoded term: a large one is
  // first checked against what can be allocated now, and left queued with
  // enomem when it does not fit. Three times the term: the fragment it is
  // built in, and the new heap (up to 1.2x larger) the next garbage
  // collection copies it into while the fragment still exists; measured
  // under `ulimit -v`, twice was not enough.
  if (len > kDirtyCopy) {
    const auto need = decoded_bytes(reinterpret_cast<const unsigned char*>(data), len);
    if (need && (*need > SIZE_MAX / 3 || !can_allocate(3 * *need))) return Errc::enomem;
  }
  // A checksummed record that is no external term: corrupt, left queued.
  return enif_binary_to_term(o->env, reinterpret_cast<const unsigned char*>(data), len, &o->item, 0) != 0
             ? Errc::ok
             : Errc::corrupt;
}

bool queue_arg(Call& c, ERL_NIF_TERM t, queue::Queue** q) {
  QueueRes* r;
  if (!enif_get_resource(c.env, t, c.p->queue_type, reinterpret_cast<void**>(&r)) || !r->q) return false;
  *q = r->q.get();
  return true;
}

// queue_open(H, InitialCapacity, never | interval | always, IntervalMs, FixedSize, AutoUnlink) ->
//   {ok, Q, #{count, dropped, initialised, recovered}} (dirty: flock, may scan every record)
ERL_NIF_TERM queue_open_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!c.handle(argv[0], &h)) return c.badarg();
  std::uint64_t cap, interval;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &cap, &err) || !arg_u64(c, argv[3], &interval, &err)) return err;
  const Atoms& a = c.p->atoms;
  queue::Options o;
  if (argv[2] == a.always) {
    o.durability = queue::Durability::always;
  } else if (argv[2] == a.interval) {
    o.durability = queue::Durability::interval;
  } else if (argv[2] != a.never) {
    return c.badarg();
  }
  if (interval > UINT32_MAX) return error_term(c.env, c.p, Errc::einval);
  o.sync_interval_ms = static_cast<std::uint32_t>(interval);
  for (int i : {4, 5})
    if (argv[i] != a.true_ && argv[i] != a.false_) return c.badarg();
  o.fixed_size = argv[4] == a.true_;
  o.auto_unlink = argv[5] == a.true_;
  auto r = queue::Queue::open(h->map, cap, o);
  if (!r) return c.error(r.error());
  void* mem = enif_alloc_resource(c.p->queue_type, sizeof(QueueRes));
  if (!mem) return c.error(Errc::enomem);
  auto* qr = new (mem) QueueRes{std::move(*r)};
  const ERL_NIF_TERM qt = enif_make_resource(c.env, qr);
  enif_release_resource(qr);
  const queue::OpenReport& rep = qr->q->report();
  ERL_NIF_TERM keys[] = {a.count, a.dropped, a.initialised, a.recovered};
  ERL_NIF_TERM vals[] = {enif_make_uint64(c.env, rep.count), enif_make_uint64(c.env, rep.dropped),
                         rep.initialised ? a.true_ : a.false_, rep.recovered ? a.true_ : a.false_};
  ERL_NIF_TERM map;
  enif_make_map_from_arrays(c.env, keys, vals, 4, &map);
  return enif_make_tuple3(c.env, a.ok, qt, map);
}

// queue_push(Q, Bin, Kind) -> ok | {error, Reason}
ERL_NIF_TERM queue_push_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  queue::Queue* q;
  ErlNifBinary data;
  unsigned kind;
  if (!queue_arg(c, argv[0], &q) || !enif_inspect_binary(c.env, argv[1], &data) ||
      !enif_get_uint(c.env, argv[2], &kind) || kind < queue::kTerm || kind > queue::kErlangTerm)
    return c.badarg();
  // msync waits for the disk; a large copy takes long: both dirty.
  if (!c.dirty && (q->options().durability == queue::Durability::always || data.size > kDirtyCopy))
    return c.error(Errc::ebusy);
  const Error e = q->push(static_cast<std::uint8_t>(kind), data.data, data.size, c.queue_wait());
  return e ? c.error(e) : c.ok();
}

// queue_pop(Q, pop | peek | purge) -> Item | nil | {error, Reason}: a binary
// item as it was pushed, any other term decoded here, straight from the map
// (under the queue's lock: no other writer can change the bytes meanwhile).
ERL_NIF_TERM queue_pop_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  queue::Queue* q;
  if (!queue_arg(c, argv[0], &q)) return c.badarg();
  const Atoms& a = c.p->atoms;
  queue::Take how;
  if (argv[1] == a.pop) {
    how = queue::Take::pop;
  } else if (argv[1] == a.peek) {
    how = queue::Take::peek;
  } else if (argv[1] == a.purge) {
    how = queue::Take::pop_and_purge;
  } else if (argv[1] == a.back) {
    how = queue::Take::peek_back;
  } else {
    return c.badarg();
  }
  ItemOut out{c.env, c.dirty, 0};
  auto r = q->take(how, item_to_term, &out, c.queue_wait());
  if (!r) return c.error(r.error());
  if (!*r) return a.nil;
  return out.item;
}

// queue_claim(Q) -> {Item, Claim} | nil | {error, Reason}: the head, claimed
// (see Queue::claim); the claim ends with queue_commit/2, queue_release/1 or
// when Claim is garbage.
ERL_NIF_TERM queue_claim_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  QueueRes* qr;
  if (!enif_get_resource(c.env, argv[0], c.p->queue_type, reinterpret_cast<void**>(&qr)) || !qr->q)
    return c.badarg();
  void* mem = enif_alloc_resource(c.p->claim_type, sizeof(ClaimRes));
  if (!mem) return c.error(Errc::enomem);
  auto* cr = new (mem) ClaimRes();
  ItemOut out{c.env, c.dirty, 0};
  auto r = qr->q->claim(item_to_term, &out, c.queue_wait());
  if (!r || !*r) {
    enif_release_resource(cr);
    if (!r) return c.error(r.error());
    return c.p->atoms.nil;
  }
  cr->q = qr->q;
  cr->claim = std::move(*r);
  const ERL_NIF_TERM claim = enif_make_resource(c.env, cr);
  enif_release_resource(cr);
  return enif_make_tuple2(c.env, out.item, claim);
}

bool claim_arg(Call& c, ERL_NIF_TERM t, ClaimRes** cr) {
  return enif_get_resource(c.env, t, c.p->claim_type, reinterpret_cast<void**>(cr));
}

// queue_commit(Claim, Purge) -> ok | {error, Reason}: pops the claimed item
ERL_NIF_TERM queue_commit_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  ClaimRes* cr;
  if (!claim_arg(c, argv[0], &cr) || (argv[1] != c.p->atoms.true_ && argv[1] != c.p->atoms.false_))
    return c.badarg();
  if (!cr->claim || !cr->q) return c.error(Errc::estale);
  const Error e = cr->q->commit(*cr->claim, argv[1] == c.p->atoms.true_, c.queue_wait());
  return e ? c.error(e) : c.ok();
}

// queue_release(Claim) -> ok: the item stays at the head, for anyone
ERL_NIF_TERM queue_release_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  ClaimRes* cr;
  if (!claim_arg(c, argv[0], &cr)) return c.badarg();
  if (cr->claim) queue::Queue::release(*cr->claim);
  return c.ok();
}

// queue_scan(Q, Seq, Pos, Max, WithItems) -> {[{Seq, Pos, Item}] | [{Seq, Pos}], {NextSeq, NextPos}, More}
ERL_NIF_TERM queue_scan_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  queue::Queue* q;
  if (!queue_arg(c, argv[0], &q)) return c.badarg();
  std::uint64_t seq, pos, max;
  ERL_NIF_TERM err;
  if (!arg_u64(c, argv[1], &seq, &err) || !arg_u64(c, argv[2], &pos, &err) || !arg_u64(c, argv[3], &max, &err))
    return err;
  const Atoms& a = c.p->atoms;
  if (argv[4] != a.true_ && argv[4] != a.false_) return c.badarg();
  struct Scan {
    ItemOut item;
    bool with_items;
    std::vector<ERL_NIF_TERM> out;
  } sc{{c.env, c.dirty, 0}, argv[4] == a.true_, {}};
  try {
    sc.out.reserve(max < 1024 ? max : 1024);
  } catch (...) {
    return c.error(Errc::enomem);
  }
  auto r = q->scan(
      {seq, pos}, max < 1024 ? max : 1024,
      [](void* ctx, queue::Queue::ScanPos at, std::uint8_t kind, const char* data, std::size_t len) -> Errc {
        auto* s = static_cast<Scan*>(ctx);
        ErlNifEnv* env = s->item.env;
        if (s->with_items) {
          if (Errc e = item_to_term(&s->item, kind, data, len); e != Errc::ok) return e;
          s->out.push_back(enif_make_tuple3(env, enif_make_uint64(env, at.seq), enif_make_uint64(env, at.pos),
                                            s->item.item));
        } else {
          s->out.push_back(enif_make_tuple2(env, enif_make_uint64(env, at.seq), enif_make_uint64(env, at.pos)));
        }
        return Errc::ok;
      },
      &sc, c.queue_wait());
  if (!r) return c.error(r.error());
  const ERL_NIF_TERM list = enif_make_list_from_array(c.env, sc.out.data(), static_cast<unsigned>(sc.out.size()));
  const ERL_NIF_TERM next =
      enif_make_tuple2(c.env, enif_make_uint64(c.env, r->next.seq), enif_make_uint64(c.env, r->next.pos));
  return enif_make_tuple3(c.env, list, next, r->more ? a.true_ : a.false_);
}

ERL_NIF_TERM queue_length_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  queue::Queue* q;
  if (!queue_arg(c, argv[0], &q)) return c.badarg();
  auto r = q->length(c.queue_wait());
  return r ? enif_make_uint64(c.env, *r) : c.error(r.error());
}

// queue_info(Q) -> #{count, capacity, used, epoch, repairs, strict, syncs}
ERL_NIF_TERM queue_info_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  queue::Queue* q;
  if (!queue_arg(c, argv[0], &q)) return c.badarg();
  auto r = q->stats(c.queue_wait());
  if (!r) return c.error(r.error());
  const Atoms& a = c.p->atoms;
  ERL_NIF_TERM keys[] = {a.count, a.capacity, a.used, a.epoch, a.repairs, a.strict, a.syncs, a.head, a.tail};
  ERL_NIF_TERM vals[] = {enif_make_uint64(c.env, r->count),   enif_make_uint64(c.env, r->capacity),
                         enif_make_uint64(c.env, r->used),    enif_make_uint64(c.env, r->epoch),
                         enif_make_uint64(c.env, r->repairs), r->strict ? a.true_ : a.false_,
                         enif_make_uint64(c.env, r->syncs),   enif_make_uint64(c.env, r->head),
                         enif_make_uint64(c.env, r->tail)};
  ERL_NIF_TERM map;
  enif_make_map_from_arrays(c.env, keys, vals, 9, &map);
  return map;
}

// queue_purge(Q) -> ok: drops every item; queue_purge(Q, if_empty) -> true |
// false: gives the space of an empty queue back, leaves one with items.
ERL_NIF_TERM queue_purge_impl(Call& c, int argc, const ERL_NIF_TERM argv[]) {
  queue::Queue* q;
  if (!queue_arg(c, argv[0], &q)) return c.badarg();
  if (argc == 2 && !enif_is_identical(argv[1], enif_make_atom(c.env, "if_empty"))) return c.badarg();
  auto r = q->purge(argc == 2, c.queue_wait());
  if (!r) return c.error(r.error());
  if (argc == 1) return c.ok();
  return *r ? c.p->atoms.true_ : c.p->atoms.false_;
}

// queue_sync(Q) -> ok | {error, Reason}: the durable point of {sync, {interval, Ms}}
ERL_NIF_TERM queue_sync_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  queue::Queue* q;
  if (!queue_arg(c, argv[0], &q)) return c.badarg();
  const Error e = q->sync(c.queue_wait());
  return e ? c.error(e) : c.ok();
}

// queue_close(Q) -> ok: lets go of the file (the map is closed too)
ERL_NIF_TERM queue_close_impl(Call& c, int, const ERL_NIF_TERM argv[]) {
  queue::Queue* q;
  if (!queue_arg(c, argv[0], &q)) return c.badarg();
  q->close();
  return c.ok();
}

// ---- load / upgrade / unload ---------------------------------------------------------

Priv* make_priv(ErlNifEnv* env, ErlNifResourceFlags flags) {
  Priv* p = new (std::nothrow) Priv();
  if (!p) return nullptr;
  p->timeslice.calibrate();
  p->atoms.make(env);
  for (int i = 0; i < kErrcCount; ++i) {
    const std::string_view name = errc_name(static_cast<Errc>(i));
    p->errc[i] = enif_make_atom_len(env, name.data(), name.size());
  }
  if (!open_resource_types(env, p, flags)) {
    delete p;
    return nullptr;
  }
  return p;
}

int load(ErlNifEnv* env, void** priv_data, ERL_NIF_TERM) {
  Priv* p = make_priv(env, ERL_NIF_RT_CREATE);
  if (!p) return 1;
  *priv_data = p;
  return 0;
}

// A new version of the module loaded while the old one still runs: take the
// resource types over (handles made by the old code keep working and are
// destroyed by this code's destructors). The library is linked with
// -z nodelete, so objects made by the old instance keep valid code pointers.
int upgrade(ErlNifEnv* env, void** priv_data, void**, ERL_NIF_TERM) {
  Priv* p = make_priv(env, static_cast<ErlNifResourceFlags>(ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER));
  if (!p) return 1;
  *priv_data = p;
  return 0;
}

void unload(ErlNifEnv*, void* priv_data) { delete static_cast<Priv*>(priv_data); }

constexpr unsigned kDirtyIo = ERL_NIF_DIRTY_JOB_IO_BOUND;

// normal_entry: O(1) or bounded, reschedules itself dirty when it would
// block or copy a lot. dirty_entry + kDirtyIo: may block in the kernel.
ErlNifFunc functions[] = {
    {"open", 5, dirty_entry<open_impl>, kDirtyIo},        // open(2), fallocate, populate
    {"close", 1, dirty_entry<close_impl>, kDirtyIo},      // munmap of a large map, waits for accesses
    {"info", 1, normal_entry<info_impl>, 0},              // O(1)
    {"pread", 3, normal_entry<pread_impl>, 0},            // dirty above 1 MiB or when busy
    {"read", 2, normal_entry<read_impl>, 0},              // same
    {"region", 3, normal_entry<region_impl>, 0},          // O(1): zero-copy
    {"read_line", 1, normal_entry<read_line_impl>, 0},    // scans <= 1 MiB here, further dirty
    {"position", 3, normal_entry<position_impl>, 0},      // O(1)
    {"pwrite", 3, normal_entry<pwrite_impl>, 0},          // dirty above 1 MiB or when busy
    {"write", 2, normal_entry<write_impl>, 0},            // same
    {"patomic_add", 3, normal_entry<patomic_op_impl<AtomicOp::add>>, 0},  // O(1); dirty only when busy
    {"patomic_sub", 3, normal_entry<patomic_op_impl<AtomicOp::sub>>, 0},
    {"patomic_and", 3, normal_entry<patomic_op_impl<AtomicOp::and_>>, 0},
    {"patomic_or", 3, normal_entry<patomic_op_impl<AtomicOp::or_>>, 0},
    {"patomic_xor", 3, normal_entry<patomic_op_impl<AtomicOp::xor_>>, 0},
    {"patomic_xchg", 3, normal_entry<patomic_op_impl<AtomicOp::xchg>>, 0},
    {"counter_add", 3, normal_entry<patomic_op_impl<AtomicOp::add, true>>, 0},  // Old, or raises
    {"counter_sub", 3, normal_entry<patomic_op_impl<AtomicOp::sub, true>>, 0},
    {"counter_xchg", 3, normal_entry<patomic_op_impl<AtomicOp::xchg, true>>, 0},
    {"patomic_cas", 4, normal_entry<patomic_cas_impl>, 0},
    {"patomic_read", 2, normal_entry<patomic_read_impl>, 0},
    {"patomic_write", 3, normal_entry<patomic_write_impl>, 0},
    {"resize", 1, dirty_entry<resize_impl>, kDirtyIo},    // fallocate, mmap
    {"resize", 2, dirty_entry<resize_impl>, kDirtyIo},
    {"sync", 3, dirty_entry<sync_impl>, kDirtyIo},        // msync(MS_SYNC) waits for the disk
    {"sync_async", 2, normal_entry<sync_async_impl>, 0},  // O(1): queues the job
    {"advise", 4, dirty_entry<advise_impl>, kDirtyIo},    // WILLNEED may start I/O
    {"block_init", 2, dirty_entry<block_init_impl>, kDirtyIo},     // may grow the file
    {"block_store", 2, normal_entry<block_store_impl>, 0},         // O(free slots); grows and copies > 1 MiB dirty
    {"block_read", 2, normal_entry<block_read_impl>, 0},           // O(1); copies > 1 MiB dirty
    {"block_free", 2, normal_entry<block_free_impl>, 0},           // O(1)
    {"block_scan", 3, dirty_entry<block_scan_impl>, kDirtyIo},     // O(slots)
    {"block_repair", 3, dirty_entry<block_repair_impl>, kDirtyIo}, // O(slots)
    {"queue_open", 6, dirty_entry<queue_open_impl>, kDirtyIo},     // flock, scans records, msync
    {"queue_push", 3, normal_entry<queue_push_impl>, 0},           // lock + copy; dirty if busy, growing or always
    {"queue_pop", 2, normal_entry<queue_pop_impl>, 0},             // same; purge and always dirty
    {"queue_length", 1, normal_entry<queue_length_impl>, 0},
    {"queue_info", 1, normal_entry<queue_info_impl>, 0},         // O(1); dirty when busy
    {"queue_purge", 1, dirty_entry<queue_purge_impl>, kDirtyIo},   // shrinks the file
    {"queue_purge", 2, dirty_entry<queue_purge_impl>, kDirtyIo},
    {"queue_claim", 1, normal_entry<queue_claim_impl>, 0},         // as queue_pop
    {"queue_commit", 2, normal_entry<queue_commit_impl>, 0},       // as queue_pop
    {"queue_release", 1, normal_entry<queue_release_impl>, 0},     // O(1): queues the unlock
    {"queue_scan", 5, normal_entry<queue_scan_impl>, 0},           // <= 1 MiB of items here, more dirty
    {"queue_sync", 1, dirty_entry<queue_sync_impl>, kDirtyIo},     // msync of the whole map
    {"queue_close", 1, dirty_entry<queue_close_impl>, kDirtyIo},   // munmap
};

}  // namespace
}  // namespace emmap::nif

ERL_NIF_INIT(emmap_nif, emmap::nif::functions, emmap::nif::load, nullptr, emmap::nif::upgrade, emmap::nif::unload)
