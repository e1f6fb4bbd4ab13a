// The erl_nif glue: decode arguments, call the core, encode the result.
// No syscalls here; every OS call is in platform/ behind the core.
//
// Scheduler choice, per function (see the table at the bottom):
//  * O(1) work (atomics, direct reads, small copies, info, position) runs on
//    the normal scheduler and never blocks: it enters the map's access gate
//    with Wait::no, and if a resize or close holds the map it reschedules
//    itself as a dirty I/O job that may wait.
//  * Copies above kDirtyCopy bytes, and everything that can block in the
//    kernel for long (open, close, sync, resize, advise), run on dirty I/O
//    schedulers, so no normal scheduler is held for more than about 1 ms.
#include <erl_nif.h>

#include <cstring>
#include <limits>
#include <new>

#include "resources.h"
#include "terms.h"

namespace emmap::nif {
namespace {

// ~100 us of memcpy even when cold; above it a copy goes to a dirty scheduler.
constexpr std::size_t kDirtyCopy = 1u << 20;
// Results up to this size become heap binaries (ERL_ONHEAP_BIN_LIMIT).
constexpr std::size_t kHeapBinMax = 64;

using NifFn = ERL_NIF_TERM (*)(ErlNifEnv*, int, const ERL_NIF_TERM[]);

bool on_dirty() {
  const int t = enif_thread_type();
  return t == ERL_NIF_THR_DIRTY_IO_SCHEDULER || t == ERL_NIF_THR_DIRTY_CPU_SCHEDULER;
}

// Re-runs `fn` with the same arguments on a dirty I/O scheduler.
ERL_NIF_TERM go_dirty(ErlNifEnv* env, const char* name, NifFn fn, int argc, const ERL_NIF_TERM argv[]) {
  return enif_schedule_nif(env, name, ERL_NIF_DIRTY_JOB_IO_BOUND, fn, argc, argv);
}

bool get_handle(ErlNifEnv* env, ERL_NIF_TERM t, HandleRes** h) {
  return enif_get_resource(env, t, priv(env)->handle_type, reinterpret_cast<void**>(h));
}

ERL_NIF_TERM ok_tuple(ErlNifEnv* env, ERL_NIF_TERM v) { return enif_make_tuple2(env, priv(env)->atoms.ok, v); }

// Turns a failed core call into its term; ebusy on a normal scheduler means
// "try again where waiting is allowed" and sets *retry.
ERL_NIF_TERM fail(ErlNifEnv* env, Error e, bool* retry) {
  if (e == Errc::ebusy && !on_dirty()) {
    *retry = true;
    return 0;
  }
  Priv* p = priv(env);
  return e == Errc::eof ? p->atoms.eof : error_term(env, p, e);
}

Wait wait_here() { return on_dirty() ? Wait::yes : Wait::no; }

// Reads [pos, pos+len) as a binary: zero-copy for direct handles, a heap or
// refc copy otherwise. *retry asks for a dirty reschedule.
ERL_NIF_TERM read_binary(ErlNifEnv* env, HandleRes* h, std::uint64_t pos, std::uint64_t len, bool* retry,
                         std::size_t* got) {
  Priv* p = priv(env);
  const std::size_t want = len > std::numeric_limits<std::size_t>::max() ? std::numeric_limits<std::size_t>::max()
                                                                          : static_cast<std::size_t>(len);
  bool too_big = false;
  auto r = h->map->with_range(
      pos, want,
      [&](const char* data, std::size_t n, Region& region) -> Result<ERL_NIF_TERM> {
        *got = n;
        if (h->flags.direct) {
          RegionRes* rr = h->region_res(p, region);
          if (!rr) return Error(Errc::enomem);
          return enif_make_resource_binary(env, rr, data, n);
        }
        ERL_NIF_TERM bin;
        if (n <= kHeapBinMax) {
          unsigned char* dst = enif_make_new_binary(env, n, &bin);
          std::memcpy(dst, data, n);
          return bin;
        }
        if (n > kDirtyCopy && !on_dirty()) {
          too_big = true;
          return Error(Errc::ebusy);
        }
        ErlNifBinary b;
        if (!enif_alloc_binary(n, &b)) return Error(Errc::enomem);  // fails, never aborts the VM
        std::memcpy(b.data, data, n);
        return enif_make_binary(env, &b);
      },
      wait_here());
  if (!r) return fail(env, r.error(), retry);
  (void)too_big;
  return ok_tuple(env, *r);
}

// ---- open / close / info ------------------------------------------------------

// open(PathBin, PathAsGiven, Offset, Length, Options)
ERL_NIF_TERM open_nif(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  Priv* p = priv(env);
  ErlNifBinary path;
  if (!enif_inspect_binary(env, argv[0], &path)) return enif_make_badarg(env);
  const U64Arg off = get_u64(env, argv[2]), len = get_u64(env, argv[3]);
  if (!off.is_integer || !len.is_integer) return enif_make_badarg(env);
  if (!off.in_range || !len.in_range) return error_term(env, p, Errc::einval);
  OpenOptions o;
  HandleFlags flags;
  bool badarg = false;
  if (ERL_NIF_TERM bad = parse_options(env, p, argv[4], &o, &flags, &badarg)) return bad;
  if (badarg) return enif_make_badarg(env);

  auto opened = Mapping::open(std::string_view(reinterpret_cast<const char*>(path.data), path.size), off.value,
                              len.value, o);
  if (!opened) return error_term(env, p, opened.error());
  void* mem = enif_alloc_resource(p->handle_type, sizeof(HandleRes));
  if (!mem) return error_term(env, p, Errc::enomem);
  auto* h = new (mem) HandleRes();
  h->map = std::move(opened->mapping);
  h->flags = flags;
  h->info_env = enif_alloc_env();
  h->path_term = enif_make_copy(h->info_env, argv[1]);
  h->options_term = enif_make_copy(h->info_env, argv[4]);
  ERL_NIF_TERM handle = enif_make_resource(env, h);
  enif_release_resource(h);  // the term owns it now
  if (flags.debug)
    enif_fprintf(stderr, "emmap: opened %T at %lu, %lu bytes (%s)\r\n", argv[1], off.value, h->map->size(),
                 opened->existed ? "existing" : "created");

  ERL_NIF_TERM keys[] = {p->atoms.exist, p->atoms.size, p->atoms.ignored};
  ERL_NIF_TERM vals[] = {opened->existed ? p->atoms.true_ : p->atoms.false_, enif_make_uint64(env, h->map->size()),
                         ignored_list(env, p, *h->map, flags)};
  ERL_NIF_TERM info;
  enif_make_map_from_arrays(env, keys, vals, 3, &info);
  return enif_make_tuple3(env, p->atoms.ok, handle, info);
}

ERL_NIF_TERM close_nif(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  if (h->flags.debug && !h->map->closed()) enif_fprintf(stderr, "emmap: closed %T\r\n", h->path_term);
  h->map->close();     // waits for accesses in flight; memory stays while direct binaries hold it
  h->release_regions();
  return priv(env)->atoms.ok;
}

ERL_NIF_TERM info_nif(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  return info_map(env, priv(env), h);
}

// ---- reading -------------------------------------------------------------------

ERL_NIF_TERM pread_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  const U64Arg pos = get_u64(env, argv[1]), len = get_u64(env, argv[2]);
  if (!pos.is_integer || !len.is_integer) return enif_make_badarg(env);
  if (!pos.in_range || !len.in_range) return error_term(env, priv(env), Errc::einval);
  bool retry = false;
  std::size_t got = 0;
  ERL_NIF_TERM r = read_binary(env, h, pos.value, len.value, &retry, &got);
  return retry ? go_dirty(env, "pread", pread_nif, argc, argv) : r;
}

// Claims [pos, pos+n) of the handle's position for a read or write of up to
// `len` bytes; returns false at or past the end (nothing claimed).
bool claim(HandleRes* h, std::uint64_t len, bool exact, std::uint64_t* pos, std::uint64_t* n) {
  std::uint64_t cur = h->position.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t size = h->map->size();
    if (cur >= size && !(exact && len == 0 && cur == size)) return false;
    const std::uint64_t room = cur < size ? size - cur : 0;
    if (exact && len > room) return false;
    const std::uint64_t take = len < room ? len : room;
    if (h->position.compare_exchange_weak(cur, cur + take, std::memory_order_relaxed)) {
      *pos = cur;
      *n = take;
      return true;
    }
  }
}

ERL_NIF_TERM read_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  const U64Arg len = get_u64(env, argv[1]);
  if (!len.is_integer) return enif_make_badarg(env);
  if (!len.in_range) return error_term(env, priv(env), Errc::einval);
  if (h->map->closed()) return error_term(env, priv(env), Errc::closed);
  if (len.value > kDirtyCopy && !on_dirty() && !h->flags.direct) return go_dirty(env, "read", read_nif, argc, argv);
  std::uint64_t pos, n;
  if (!claim(h, len.value, false, &pos, &n)) return priv(env)->atoms.eof;
  bool retry = false;
  std::size_t got = 0;
  ERL_NIF_TERM r = read_binary(env, h, pos, n, &retry, &got);
  if (retry) {
    h->position.fetch_sub(n, std::memory_order_relaxed);  // give the claim back, then wait on a dirty scheduler
    return go_dirty(env, "read", read_nif, argc, argv);
  }
  return r;
}

ERL_NIF_TERM read_line_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  Priv* p = priv(env);
  for (;;) {
    const std::uint64_t start = h->position.load(std::memory_order_relaxed);
    // On a normal scheduler look at most kDirtyCopy bytes for the newline.
    const std::size_t window = on_dirty() ? std::numeric_limits<std::size_t>::max() : kDirtyCopy;
    bool long_line = false;
    auto line_len = h->map->with_range(
        start, window,
        [&](const char* data, std::size_t n, Region&) -> Result<std::uint64_t> {
          const void* nl = std::memchr(data, '\n', n);
          if (nl) return static_cast<std::uint64_t>(static_cast<const char*>(nl) - data) + 1;
          if (n == window) long_line = true;
          return n;  // the last line of the map has no newline
        },
        wait_here());
    bool retry = false;
    if (!line_len) {
      ERL_NIF_TERM e = fail(env, line_len.error(), &retry);
      if (!retry) return e;
    }
    if (retry || long_line) return go_dirty(env, "read_line", read_line_nif, argc, argv);
    std::uint64_t expected = start;
    if (!h->position.compare_exchange_strong(expected, start + *line_len, std::memory_order_relaxed))
      continue;  // another process moved the position: read again from there
    std::size_t got = 0;
    ERL_NIF_TERM r = read_binary(env, h, start, *line_len, &retry, &got);
    if (retry) {
      h->position.store(start, std::memory_order_relaxed);
      return go_dirty(env, "read_line", read_line_nif, argc, argv);
    }
    (void)p;
    return r;
  }
}

// position(H, bof | cur | eof, Offset) -> {ok, NewPos}
ERL_NIF_TERM position_nif(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  Priv* p = priv(env);
  ErlNifSInt64 off;
  char whence[4];
  if (!enif_get_atom(env, argv[1], whence, sizeof whence, ERL_NIF_LATIN1)) return enif_make_badarg(env);
  if (!enif_get_int64(env, argv[2], &off)) {
    if (get_u64(env, argv[2]).is_integer) return error_term(env, p, Errc::einval);
    return enif_make_badarg(env);
  }
  if (h->map->closed()) return error_term(env, p, Errc::closed);
  std::uint64_t base;
  if (std::strcmp(whence, "bof") == 0) base = 0;
  else if (std::strcmp(whence, "cur") == 0) base = h->position.load(std::memory_order_relaxed);
  else if (std::strcmp(whence, "eof") == 0) base = h->map->size();
  else return enif_make_badarg(env);
  std::uint64_t next;
  if (off < 0) {
    const std::uint64_t back = static_cast<std::uint64_t>(-(off + 1)) + 1;  // no overflow at INT64_MIN
    if (back > base) return error_term(env, p, Errc::einval);
    next = base - back;
  } else {
    if (static_cast<std::uint64_t>(off) > std::numeric_limits<std::uint64_t>::max() - base)
      return error_term(env, p, Errc::einval);
    next = base + static_cast<std::uint64_t>(off);
  }
  h->position.store(next, std::memory_order_relaxed);
  return ok_tuple(env, enif_make_uint64(env, next));
}

// ---- writing --------------------------------------------------------------------

ERL_NIF_TERM write_at(ErlNifEnv* env, HandleRes* h, std::uint64_t pos, const ErlNifBinary& data, bool* retry) {
  Error e = h->map->with_writable(
      pos, data.size,
      [&](char* dst, std::size_t n) -> Error {
        if (n) std::memcpy(dst, data.data, n);
        return {};
      },
      wait_here());
  if (e) return fail(env, e, retry);
  return priv(env)->atoms.ok;
}

// pwrite(H, Pos, Binary); emmap.erl flattens iolists first (a yielding BIF).
ERL_NIF_TERM pwrite_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  ErlNifBinary data;
  if (!get_handle(env, argv[0], &h) || !enif_inspect_binary(env, argv[2], &data)) return enif_make_badarg(env);
  const U64Arg pos = get_u64(env, argv[1]);
  if (!pos.is_integer) return enif_make_badarg(env);
  if (!pos.in_range) return error_term(env, priv(env), Errc::einval);
  if (data.size > kDirtyCopy && !on_dirty()) return go_dirty(env, "pwrite", pwrite_nif, argc, argv);
  bool retry = false;
  ERL_NIF_TERM r = write_at(env, h, pos.value, data, &retry);
  return retry ? go_dirty(env, "pwrite", pwrite_nif, argc, argv) : r;
}

ERL_NIF_TERM write_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  ErlNifBinary data;
  if (!get_handle(env, argv[0], &h) || !enif_inspect_binary(env, argv[1], &data)) return enif_make_badarg(env);
  Priv* p = priv(env);
  if (h->map->closed()) return error_term(env, p, Errc::closed);
  if (!h->map->writable()) return error_term(env, p, Errc::eacces);
  if (data.size > kDirtyCopy && !on_dirty()) return go_dirty(env, "write", write_nif, argc, argv);
  std::uint64_t pos, n;
  if (!claim(h, data.size, true, &pos, &n)) return error_term(env, p, Errc::einval);
  bool retry = false;
  ERL_NIF_TERM r = write_at(env, h, pos, data, &retry);
  if (retry || (enif_is_tuple(env, r))) h->position.fetch_sub(n, std::memory_order_relaxed);
  return retry ? go_dirty(env, "write", write_nif, argc, argv) : r;
}

// ---- atomics ----------------------------------------------------------------------

ERL_NIF_TERM patomic_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  Priv* p = priv(env);
  const U64Arg pos = get_u64(env, argv[1]);
  const U64Arg val = get_i64_bits(env, argv[3]);
  AtomicOp op;
  if (argv[2] == p->atoms.add) op = AtomicOp::add;
  else if (argv[2] == p->atoms.sub) op = AtomicOp::sub;
  else if (argv[2] == p->atoms.band) op = AtomicOp::and_;
  else if (argv[2] == p->atoms.bor) op = AtomicOp::or_;
  else if (argv[2] == p->atoms.bxor) op = AtomicOp::xor_;
  else if (argv[2] == p->atoms.xchg) op = AtomicOp::xchg;
  else return enif_make_badarg(env);
  if (!pos.is_integer || !val.is_integer) return enif_make_badarg(env);
  if (!pos.in_range || !val.in_range) return error_term(env, p, Errc::einval);
  auto r = h->map->atomic_fetch(op, pos.value, static_cast<std::int64_t>(val.value), wait_here());
  bool retry = false;
  if (!r) {
    ERL_NIF_TERM e = fail(env, r.error(), &retry);
    return retry ? go_dirty(env, "patomic", patomic_nif, argc, argv) : e;
  }
  return ok_tuple(env, enif_make_int64(env, *r));
}

ERL_NIF_TERM patomic_cas_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  Priv* p = priv(env);
  const U64Arg pos = get_u64(env, argv[1]);
  const U64Arg expected = get_i64_bits(env, argv[2]), desired = get_i64_bits(env, argv[3]);
  if (!pos.is_integer || !expected.is_integer || !desired.is_integer) return enif_make_badarg(env);
  if (!pos.in_range || !expected.in_range || !desired.in_range) return error_term(env, p, Errc::einval);
  auto r = h->map->atomic_cas(pos.value, static_cast<std::int64_t>(expected.value),
                              static_cast<std::int64_t>(desired.value), wait_here());
  bool retry = false;
  if (!r) {
    ERL_NIF_TERM e = fail(env, r.error(), &retry);
    return retry ? go_dirty(env, "patomic_cas", patomic_cas_nif, argc, argv) : e;
  }
  return enif_make_tuple2(env, r->first ? p->atoms.true_ : p->atoms.false_, enif_make_int64(env, r->second));
}

ERL_NIF_TERM patomic_read_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  const U64Arg pos = get_u64(env, argv[1]);
  if (!pos.is_integer) return enif_make_badarg(env);
  if (!pos.in_range) return error_term(env, priv(env), Errc::einval);
  auto r = h->map->atomic_load(pos.value, wait_here());
  bool retry = false;
  if (!r) {
    ERL_NIF_TERM e = fail(env, r.error(), &retry);
    return retry ? go_dirty(env, "patomic_read", patomic_read_nif, argc, argv) : e;
  }
  return ok_tuple(env, enif_make_int64(env, *r));
}

ERL_NIF_TERM patomic_write_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  const U64Arg pos = get_u64(env, argv[1]), val = get_i64_bits(env, argv[2]);
  if (!pos.is_integer || !val.is_integer) return enif_make_badarg(env);
  if (!pos.in_range || !val.in_range) return error_term(env, priv(env), Errc::einval);
  Error e = h->map->atomic_store(pos.value, static_cast<std::int64_t>(val.value), wait_here());
  bool retry = false;
  if (e) {
    ERL_NIF_TERM t = fail(env, e, &retry);
    return retry ? go_dirty(env, "patomic_write", patomic_write_nif, argc, argv) : t;
  }
  return priv(env)->atoms.ok;
}

// ---- size and durability (all dirty I/O) ------------------------------------------

ERL_NIF_TERM resize_nif(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  Priv* p = priv(env);
  Result<std::uint64_t> r = Error(Errc::einval);
  if (argc == 1) {
    r = h->map->grow();
  } else {
    const U64Arg size = get_u64(env, argv[1]);
    if (!size.is_integer) return enif_make_badarg(env);
    if (!size.in_range) return error_term(env, p, Errc::einval);
    r = h->map->resize(size.value);
  }
  if (!r) return error_term(env, p, r.error());
  if (h->flags.debug) enif_fprintf(stderr, "emmap: resized %T to %lu bytes\r\n", h->path_term, *r);
  return ok_tuple(env, enif_make_uint64(env, *r));
}

ERL_NIF_TERM sync_nif(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  Priv* p = priv(env);
  const U64Arg pos = get_u64(env, argv[1]), len = get_u64(env, argv[2]);
  if (!pos.is_integer || !len.is_integer) return enif_make_badarg(env);
  if (!pos.in_range || !len.in_range) return error_term(env, p, Errc::einval);
  Error e = h->map->sync(pos.value, len.value);
  return e ? error_term(env, p, e) : p->atoms.ok;
}

// sync_async(H, Ref): the caller later receives {emmap_sync, Ref, Result}.
ERL_NIF_TERM sync_async_nif(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h) || !enif_is_ref(env, argv[1])) return enif_make_badarg(env);
  Priv* p = priv(env);
  if (h->map->closed()) return error_term(env, p, Errc::closed);
  ErlNifPid self;
  if (!enif_self(env, &self)) return enif_make_badarg(env);
  if (!p->sync_worker.submit(h->map, self, env, argv[1])) return error_term(env, p, Errc::enomem);
  return p->atoms.ok;
}

ERL_NIF_TERM advise_nif(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) {
  HandleRes* h;
  if (!get_handle(env, argv[0], &h)) return enif_make_badarg(env);
  Priv* p = priv(env);
  const U64Arg pos = get_u64(env, argv[1]), len = get_u64(env, argv[2]);
  Advice advice;
  if (argv[3] == p->atoms.normal) advice = Advice::normal;
  else if (argv[3] == p->atoms.random) advice = Advice::random;
  else if (argv[3] == p->atoms.sequential) advice = Advice::sequential;
  else if (argv[3] == p->atoms.willneed) advice = Advice::willneed;
  else if (argv[3] == p->atoms.dontneed) advice = Advice::dontneed;
  else if (enif_is_atom(env, argv[3])) return error_term(env, p, Errc::einval);
  else return enif_make_badarg(env);
  if (!pos.is_integer || !len.is_integer) return enif_make_badarg(env);
  if (!pos.in_range || !len.in_range) return error_term(env, p, Errc::einval);
  Error e = h->map->advise(pos.value, len.value, advice);
  return e ? error_term(env, p, e) : p->atoms.ok;
}

// ---- load / upgrade / unload ---------------------------------------------------------

Priv* make_priv(ErlNifEnv* env, ErlNifResourceFlags flags) {
  Priv* p = new (std::nothrow) Priv();
  if (!p) return nullptr;
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

// Scheduler per function: 0 = normal (O(1) or bounded, reschedules itself
// dirty when it would block or copy a lot); DIRTY_IO = may block in the kernel.
ErlNifFunc functions[] = {
    {"open", 5, open_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},          // open(2), fallocate, populate
    {"close", 1, close_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},        // munmap of a large map, waits for accesses
    {"info", 1, info_nif, 0},                                   // O(1)
    {"pread", 3, pread_nif, 0},                                 // dirty above 1 MiB or when busy
    {"read", 2, read_nif, 0},                                   // same
    {"read_line", 1, read_line_nif, 0},                         // scans <= 1 MiB here, the rest dirty
    {"position", 3, position_nif, 0},                           // O(1)
    {"pwrite", 3, pwrite_nif, 0},                               // dirty above 1 MiB or when busy
    {"write", 2, write_nif, 0},                                 // same
    {"patomic", 4, patomic_nif, 0},                             // O(1); dirty only when busy
    {"patomic_cas", 4, patomic_cas_nif, 0},                     // O(1)
    {"patomic_read", 2, patomic_read_nif, 0},                   // O(1)
    {"patomic_write", 3, patomic_write_nif, 0},                 // O(1)
    {"resize", 1, resize_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},      // fallocate, mmap
    {"resize", 2, resize_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},      // same
    {"sync", 3, sync_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},          // msync(MS_SYNC) waits for the disk
    {"sync_async", 2, sync_async_nif, 0},                       // O(1): queues the job
    {"advise", 4, advise_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},      // WILLNEED may start I/O
};

}  // namespace
}  // namespace emmap::nif

ERL_NIF_INIT(emmap_nif, emmap::nif::functions, emmap::nif::load, nullptr, emmap::nif::upgrade, emmap::nif::unload)
