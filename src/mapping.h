// emmap — a memory-mapped file (or anonymous memory) behind bounds checks.
//
// Design in one page
// ------------------
// * A Mapping owns the file descriptor and the current *generation*: a
//   Region of reserved address space into which the file is mapped. The
//   region is reserved with head-room at open, so growth maps more of the
//   file in place and the data pointer never moves; shrinking replaces the
//   tail with read-only zero pages. Only when the head-room is exhausted and
//   cannot be extended does a resize move to a new Region; the old one stays
//   mapped for as long as anyone still holds it (see pin()).
// * Every data access (read, write, atomics, sync, advise) runs inside an
//   AccessGate reader section; resize and close take the gate exclusively.
//   So an access never sees a half-resized map, and close never unmaps
//   memory under a running access. The read side bumps no shared counter.
// * Every offset/length check is written so that it cannot overflow
//   (`pos > size || len > size - pos`), including offsets near 2^64.
// * Errors are emmap::Error values (see error.h); nothing throws.
// * Lifecycle: open -> closed. close() is idempotent; after it every call
//   returns Errc::closed. Memory handed out through pin() stays valid until
//   the last pin is gone; `auto_unlink` removes the file at that moment.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>

#include "access_gate.h"
#include "backend.h"
#include "error.h"

namespace emmap {

inline constexpr std::uint64_t kDefaultMaxIncSize = 64ull << 20;

struct OpenOptions {
  bool read = true;
  bool write = false;
  bool create = false;
  bool truncate = false;
  bool anonymous = false;  // no file: zero-filled memory
  Sharing sharing = Sharing::shared;
  bool populate = false;       // hint: prefault
  bool nonblock = false;       // hint: do not block on prefault
  bool noreserve = false;      // hint: no swap reservation
  bool nocache = false;        // hint: keep out of the page cache
  bool uninitialized = false;  // hint: anonymous pages need not be zeroed
  bool map_sync = false;       // DAX: MAP_SYNC; refused where unsupported
  bool dax_if_available = false;  // MAP_SYNC where the file is on DAX, else an ordinary shared map
  HugePages huge = HugePages::none;  // refused where unsupported
  bool mlock = false;          // lock the pages in memory
  std::uintptr_t address = 0;  // nonzero: map exactly here, never replacing anything
  bool fixed = false;          // requires `address`
  bool fixed_size = false;     // resize refused
  bool auto_unlink = false;    // unlink the file when the last reference is gone
  std::uint32_t mode = 0600;   // permissions of a created file
  std::optional<std::uint64_t> size;  // length when the file is created or grown
  bool fit = false;            // an existing non-empty file keeps its own length: `size` applies to new or empty files
  std::uint64_t max_inc_size = kDefaultMaxIncSize;  // growth policy, see resize_policy()
};

// Pure hints that had no effect on this backend (reported, never silent).
enum IgnoredHint : std::uint32_t {
  kIgnoredPopulate = 1u << 0,
  kIgnoredNonblock = 1u << 1,
  kIgnoredNoreserve = 1u << 2,
  kIgnoredNocache = 1u << 3,
  kIgnoredUninitialized = 1u << 4,
  kIgnoredSharedValidate = 1u << 5,
};

enum class AtomicOp : std::uint8_t { add, sub, and_, or_, xor_, xchg };

// Whether a data access may wait behind a resize or close in progress.
// Callers that must not block (an Erlang NIF on a normal scheduler) pass
// Wait::no and get Errc::ebusy instead, then retry where blocking is fine.
// Wait::briefly blocks like yes for the map, but waits for a lock another
// process may hold (the queue's) only a short while before answering
// ebusy: a caller with few threads to spare (dirty schedulers) retries
// from somewhere cheaper rather than sit behind a stuck holder.
enum class Wait : std::uint8_t { yes, no, briefly };

// The growth policy: double while below `max_inc`, then add `max_inc`.
// Returns 0 when the next size would overflow.
std::uint64_t resize_policy(std::uint64_t current, std::uint64_t max_inc, std::size_t page) noexcept;

class Region;

class Mapping {
 public:
  struct Opened;

  // Maps `length` bytes of `path` starting at byte `offset` (any offset; the
  // page alignment is internal). length == 0 means: `options.size` if given,
  // else the rest of the file. A writable map that reaches past the end of
  // the file grows the file (blocks reserved: enospc here, never SIGBUS
  // later); a read-only one is clamped to the file's end.
  // Errors: einval (NUL in path, bad combination such as fixed without
  // address, private with map_sync; on a device DAX: truncate, private, an
  // offset or length not a multiple of its alignment, a range past its
  // end), eacces, enoent, eexist (address taken), enospc, efbig, eopnotsupp
  // (map_sync without DAX, huge pages where unsupported), enodev (a device
  // DAX whose sysfs cannot be read), enomem, and other open(2)/mmap(2) codes.
  //
  // Persistence (see persistence()): a map with MAP_SYNC (`map_sync`, or
  // `dax_if_available` on a DAX file), a device DAX, and any shared file
  // map while the backend is forced (EMMAP_PMEM_FORCE=1, no MAP_SYNC
  // asked for) persist by cache-line flush (or a fence with eADR).
  static Result<Opened> open(std::string_view path, std::uint64_t offset, std::uint64_t length,
                             const OpenOptions& options,
                             std::shared_ptr<MappingBackend> backend = make_backend());

  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  // ---- information (valid after close too) -------------------------------
  std::uint64_t size() const noexcept;
  const std::string& path() const noexcept { return path_; }
  const OpenOptions& options() const noexcept { return options_; }
  std::uint32_t ignored() const noexcept { return ignored_; }
  bool closed() const noexcept;
  bool writable() const noexcept { return options_.write; }
  // How sync() makes stores durable: msync, or on persistent memory a
  // cache-line flush (flush) or a store fence (eadr), with no system call.
  Persistence persistence() const noexcept { return persistence_; }
  // The alignment of a device-DAX map (0: not a device DAX).
  std::uint64_t device_dax_align() const noexcept { return devdax_align_; }
  // Flush persistence only because EMMAP_PMEM_FORCE was set at open: the
  // page cache is not persistent memory, nothing survives a power loss.
  bool pmem_forced() const noexcept { return pmem_forced_; }
  // Copies n bytes into the map at dst (inside with_writable()): on a
  // flush-persistence map, large copies go around the cache with
  // non-temporal stores and one fence (durable on return, as PMDK's
  // pmem_memcpy_persist); otherwise memcpy.
  // The source may lie in the map itself (a direct binary written back):
  // overlapping ranges are moved, never copied around the cache.
  void store(char* dst, const void* src, std::size_t n) const noexcept {
    if (n == 0) return;
    const auto* s = static_cast<const char*>(src);
    const bool overlap = s < dst + n && dst < s + n;
    if (persistence_ == Persistence::flush && n >= kNtThreshold) {
      if (overlap) {
        std::memmove(dst, src, n);
        pmem_flush(dst, n);
      } else {
        pmem_copy_nt(dst, src, n);
      }
      pmem_fence();
    } else {
      std::memmove(dst, src, n);
    }
  }
  const MappingBackend& backend() const noexcept { return *backend_; }
  const std::shared_ptr<MappingBackend>& shared_backend() const noexcept { return backend_; }

  // ---- data ---------------------------------------------------------------
  // Every data access below also fails with ebusy when called with Wait::no
  // while a resize or close holds the map.

  // Copies up to `len` bytes at `pos` into `dst`; returns the count (short at
  // the end). Errors: eof (pos >= size), closed.
  Result<std::size_t> read(std::uint64_t pos, void* dst, std::size_t len, Wait w = Wait::yes) noexcept;
  // Writes exactly `len` bytes at `pos`. Errors: einval (past the end),
  // eacces (read-only), closed.
  Error write(std::uint64_t pos, const void* src, std::size_t len, Wait w = Wait::yes) noexcept;

  // Calls f(const char* data, std::size_t n, Region& generation) inside the
  // gate for the readable part of [pos, pos+len); `generation` is the region
  // the pointer lies in (Region::shared_from_this() keeps it valid after the
  // call). f must not call back into this Mapping. Errors: eof, closed,
  // ebusy; f's own result is passed through.
  template <typename F>
  auto with_range(std::uint64_t pos, std::size_t len, F&& f, Wait w = Wait::yes) noexcept
      -> decltype(f(nullptr, 0, std::declval<Region&>()));
  // Like with_range, for writing: f(char* data, std::size_t n) over exactly
  // [pos, pos+len). Errors: einval (past the end), eacces, closed, ebusy.
  template <typename F>
  auto with_writable(std::uint64_t pos, std::size_t len, F&& f, Wait w = Wait::yes) noexcept
      -> decltype(f(nullptr, 0));

  // Calls f(char* data, std::uint64_t size) over the whole map inside the
  // gate (formats such as block storage and the queue live on top of this).
  // With `for_write` a read-only map is refused. Errors: eacces, closed, ebusy.
  template <typename F>
  auto with_map(F&& f, bool for_write, Wait w = Wait::yes) noexcept -> decltype(f(nullptr, 0));
  // Grows the map to at least `min_size` (never shrinks): concurrent callers
  // cannot undo each other's growth. With `grow_file` false the map only
  // follows a file that someone else made longer: it covers at most what the
  // file holds and the file is never changed. Same errors as resize().
  Result<std::uint64_t> ensure_size(std::uint64_t min_size, bool grow_file = true) noexcept;

  // ---- atomics (8-byte aligned signed 64-bit, native byte order) ----------
  // Errors: einval (unaligned or out of range), eacces (write on read-only), closed.
  Result<std::int64_t> atomic_fetch(AtomicOp op, std::uint64_t pos, std::int64_t value,
                                    Wait w = Wait::yes) noexcept;
  // Returns {swapped, value seen}.
  Result<std::pair<bool, std::int64_t>> atomic_cas(std::uint64_t pos, std::int64_t expected,
                                                   std::int64_t desired, Wait w = Wait::yes) noexcept;
  Result<std::int64_t> atomic_load(std::uint64_t pos, Wait w = Wait::yes) noexcept;
  Error atomic_store(std::uint64_t pos, std::int64_t value, Wait w = Wait::yes) noexcept;

  // ---- size and durability ------------------------------------------------
  // Sets the mapped length. The file grows (blocks reserved) as needed and
  // shrinks only for a shared writable map that reached the file's end.
  // Pointers handed out earlier stay readable (zeros past a shrink).
  // Errors: fixed_size (option, or backend cannot resize), eacces (the file
  // must change and the map is read-only), enospc, efbig, enomem, einval, closed.
  Result<std::uint64_t> resize(std::uint64_t new_size) noexcept;
  // Grows by resize_policy(). Same errors.
  Result<std::uint64_t> grow() noexcept;
  // Durable on return (never MS_ASYNC). On a flush/eadr map: the cache
  // lines of exactly [pos, pos+len) are flushed, then one fence; no system
  // call. Errors: einval, eio, closed, and on a flush/eadr map truncated,
  // sigbus (a page lost to truncation).
  Error sync(std::uint64_t pos, std::uint64_t len) noexcept;
  Error sync() noexcept;
  // Starts sync() of the whole map and returns at once; done(result) runs
  // later on a background thread (the io_uring completion thread where the
  // backend has one: IORING_OP_FSYNC with datasync, equivalent on Linux to
  // msync(MS_SYNC) of every shared page; on a flush/eadr map the
  // background thread flushes the map, no system call). At most kMaxAsyncSyncs jobs are
  // in flight in the process (each holds a descriptor): past that, eagain.
  // Errors (done is then not called): closed, enomem, emfile, eagain.
  Error sync_async(SyncDone done) noexcept;
  static constexpr int kMaxAsyncSyncs = 256;
  // Errors: einval, closed.
  Error advise(std::uint64_t pos, std::uint64_t len, Advice advice) noexcept;

  // For formats with a maintenance pass over shared state (block repair):
  // their ordinary writes hold this shared, the pass holds it exclusively,
  // so no write of this handle is half done while the pass runs.
  std::shared_mutex& format_lock() noexcept { return format_lock_; }
  // Cross-process: a handle that writes such a format says so with a shared
  // flock on its open file description, held until it is closed (taken
  // once; with `wait` false ebusy while another handle is alone with the
  // file). try_alone() converts it to exclusive if no other handle holds
  // one: then no other process can be in the middle of a write, and the
  // caller ends with end_alone(). Errors: closed, einval (anonymous), and
  // the backend's lock_file errors.
  Error announce(bool wait) noexcept;
  Result<bool> try_alone() noexcept;
  void end_alone() noexcept;

  // One user at a time may keep per-handle state about a format in this
  // map (the queue's handle): claim() says whether this caller is it.
  bool claim() noexcept { return !claimed_.exchange(true); }
  void unclaim() noexcept { claimed_.store(false); }

  // A second descriptor for the mapped file, owned by the caller (who
  // closes it through backend().close_file). It shares the open file
  // description, so flock locks taken on it are this handle's.
  // Errors: closed, einval (anonymous map), emfile.
  Result<FileId> duplicate_file() noexcept;

  // Makes the map cover exactly what the file holds now (from the map's
  // offset), growing or shrinking the map but never changing the file: for
  // a handle that must catch up with another handle's resize. Pointers
  // handed out earlier stay readable (zeros past a shrink). Errors: as
  // resize(), and fixed_size where the map cannot change.
  Result<std::uint64_t> follow_file() noexcept;

  // sync(pos, len) for a caller already inside with_map()/with_range() of
  // this Mapping (entering the gate again there could wait behind a
  // resize that waits for the caller). Errors: einval, eio.
  Error sync_inside(std::uint64_t pos, std::uint64_t len) noexcept;

  // The current generation, kept alive by the returned pointer (for
  // zero-copy views that outlive the call). Errors: closed.
  Result<std::shared_ptr<Region>> pin() noexcept;

  // Makes the handle unusable and drops its reference to the memory (which
  // is unmapped once no pin remains). Idempotent.
  void close() noexcept;

 private:
  class FileLife;
  Mapping() = default;

  // A fresh reservation able to hold `map_len` bytes plus head-room, the file
  // mapped into it (and locked with `mlock`). On failure nothing is left.
  Result<std::shared_ptr<Region>> new_region(std::size_t map_len, void* at) noexcept;
  // After a failed map_into/zero_fill over [from, to) of the current region:
  // puts back what was there (zero pages below the readable end, the
  // inaccessible reservation above it), or gives the range up if a hole the
  // failure left cannot be taken back.
  void restore(std::size_t from, std::size_t to) noexcept;
  Result<std::uint64_t> grow_locked(std::uint64_t new_size, std::size_t new_map, std::uint64_t file_size,
                                    bool change_file) noexcept;
  Result<std::uint64_t> shrink_locked(std::uint64_t new_size, std::size_t new_map, std::uint64_t file_size,
                                      bool change_file) noexcept;
  // With `change_file` false the file is left as it is (follow_file).
  Result<std::uint64_t> resize_locked(std::uint64_t new_size, bool change_file = true) noexcept;
  Result<char*> check_atomic(std::uint64_t pos, bool write) noexcept;
  // The request that maps bytes [from, to) of the region (relative to its base).
  MapRequest request(std::size_t from, std::size_t to) const noexcept;
  std::size_t granularity() const noexcept;
  // Inside the gate, before touching the map: a truncated map is refused,
  // and the thread's fault note is cleared.
  Error begin_access() const noexcept;
  // After touching it: did a page fault (caught by the guard)? The error
  // for the kind of fault, or ok.
  static Error access_faulted() noexcept {
    const std::uint8_t kind = t_fault;
    if (kind == kFaultNone) return {};
    t_fault = kFaultNone;
    return kind == kFaultHardware ? Errc::eio : kind == kFaultHole ? Errc::efault : Errc::sigbus;
  }

  std::shared_ptr<MappingBackend> backend_;
  std::shared_ptr<FileLife> file_;
  std::string path_;
  OpenOptions options_;
  std::uint32_t ignored_ = 0;
  FileId fd_ = kNoFile;
  bool fill_holes_ = false;           // growth gives the file's holes blocks too (see open)
  Persistence persistence_ = Persistence::msync;
  std::uint64_t devdax_align_ = 0;    // device DAX: its alignment (the map's granularity)
  bool pmem_forced_ = false;          // persistence_ from EMMAP_PMEM_FORCE, not from the hardware
  std::uint64_t aligned_offset_ = 0;  // file offset of the region's base
  std::size_t delta_ = 0;             // user offset - aligned offset (< granularity)

  // Protected by gate_: readers see them stable, the writer changes them.
  mutable AccessGate gate_;
  std::shared_ptr<Region> region_;     // null once closed
  char* data_ = nullptr;               // region base + delta_
  std::uint64_t size_ = 0;             // bytes visible to the user
  std::size_t mapped_len_ = 0;         // bytes from base that map the file
  std::atomic<bool> closed_{false};
  std::atomic<bool> claimed_{false};
  std::atomic<bool> announced_{false};
  std::shared_mutex format_lock_;
  std::atomic<std::uint64_t> size_seen_{0};  // size_ for lock-free size()
};

struct Mapping::Opened {
  std::shared_ptr<Mapping> mapping;
  bool existed = false;  // the file was there before open
};

// One generation of address space. Unmapped when the last owner is gone.
class Region : public std::enable_shared_from_this<Region> {
 public:
  // [alloc, alloc+alloc_len) is what the OS gave; base is `alloc` rounded up
  // to the mapping granularity (the huge page size for huge-page maps).
  Region(std::shared_ptr<MappingBackend> backend, char* alloc, std::size_t alloc_len, char* base,
         std::size_t reserved, std::shared_ptr<void> keep) noexcept
      : backend_(std::move(backend)), alloc_(alloc), alloc_len_(alloc_len), base_(base),
        reserved_(reserved), keep_(std::move(keep)) {}
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  char* base() const noexcept { return base_; }
  std::size_t reserved() const noexcept { return reserved_; }
  // Set (from the SIGBUS handler) once a page here was lost to truncation.
  bool truncated() const noexcept { return truncated_.load(std::memory_order_relaxed); }
  bool contains(const void* p, std::size_t n) const noexcept {
    auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(base_);
    return a >= b && a - b <= reserved_ && n <= reserved_ - (a - b);
  }

 private:
  friend class Mapping;
  // Guards what is ours of [alloc_, alloc_ + alloc_len_) against SIGBUS and
  // SIGSEGV: the pieces outside the lost range. Guards the new range before
  // the old one is let go, so no moment is unguarded.
  void guard() noexcept;
  // [from, to) (from base) is no longer reliably ours: a failed MAP_FIXED
  // left a hole there that could not be taken back. It is never mapped or
  // released again, and nothing past `from` is used for growth. With
  // `taken` somebody else has mapped into it: it is not guarded either;
  // otherwise the guard still answers stray reads with zero pages.
  void lose(std::size_t from, std::size_t to, bool taken) noexcept;

  static constexpr int kMaxGuards = 2;
  std::shared_ptr<MappingBackend> backend_;
  char* alloc_;
  std::size_t alloc_len_;
  char* base_;
  std::size_t reserved_;
  std::size_t readable_ = 0;  // [base_, base_ + readable_) maps the file, then zero pages (after a shrink)
  std::shared_ptr<void> keep_;  // the file's life (auto_unlink), shared by all generations
  std::atomic<bool> truncated_{false};
  bool guarded_ = false;        // the range asked for a guard (file maps only)
  int guards_[kMaxGuards] = {-1, -1};
  std::size_t lost_from_ = 0, lost_to_ = 0;  // at most one lost range; more: leaked whole
  bool lost_taken_ = false;                    // somebody else mapped into it: unguarded
  bool leak_ = false;
};

[[gnu::always_inline]] inline Error Mapping::begin_access() const noexcept {
  if (region_->truncated()) return Errc::truncated;
  t_fault = kFaultNone;
  return {};
}

// The atomics are inline: each is a handful of instructions around one
// locked instruction, and a call per layer was most of their cost.
[[gnu::always_inline]] inline Result<char*> Mapping::check_atomic(std::uint64_t pos, bool write) noexcept {
  if (!region_) return Error(Errc::closed);
  if (Error e = begin_access()) return e;
  if (pos > size_ || size_ - pos < sizeof(std::int64_t)) return Error(Errc::einval);
  char* p = data_ + pos;
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(std::int64_t) != 0) return Error(Errc::einval);
  if (write && !options_.write) return Error(Errc::eacces);
  return p;
}

[[gnu::always_inline]] inline Result<std::int64_t> Mapping::atomic_fetch(AtomicOp op, std::uint64_t pos, std::int64_t v, Wait w) noexcept {
  AccessGate::Reader in(gate_, w != Wait::no);
  if (!in.entered()) return Error(Errc::ebusy);
  auto p = check_atomic(pos, true);
  if (!p) return p.error();
  std::atomic_ref<std::int64_t> a(*reinterpret_cast<std::int64_t*>(*p));
  std::int64_t old = 0;
  switch (op) {
    case AtomicOp::add: old = a.fetch_add(v); break;
    case AtomicOp::sub: old = a.fetch_sub(v); break;
    case AtomicOp::and_: old = a.fetch_and(v); break;
    case AtomicOp::or_: old = a.fetch_or(v); break;
    case AtomicOp::xor_: old = a.fetch_xor(v); break;
    case AtomicOp::xchg: old = a.exchange(v); break;
  }
  if (Error e = access_faulted()) return e;
  return old;
}

[[gnu::always_inline]] inline Result<std::pair<bool, std::int64_t>> Mapping::atomic_cas(std::uint64_t pos, std::int64_t expected,
                                                          std::int64_t desired, Wait w) noexcept {
  AccessGate::Reader in(gate_, w != Wait::no);
  if (!in.entered()) return Error(Errc::ebusy);
  auto p = check_atomic(pos, true);
  if (!p) return p.error();
  std::atomic_ref<std::int64_t> a(*reinterpret_cast<std::int64_t*>(*p));
  const bool swapped = a.compare_exchange_strong(expected, desired);
  if (Error e = access_faulted()) return e;
  return std::pair<bool, std::int64_t>(swapped, expected);  // expected now holds what was seen
}

[[gnu::always_inline]] inline Result<std::int64_t> Mapping::atomic_load(std::uint64_t pos, Wait w) noexcept {
  AccessGate::Reader in(gate_, w != Wait::no);
  if (!in.entered()) return Error(Errc::ebusy);
  auto p = check_atomic(pos, false);
  if (!p) return p.error();
  const std::int64_t v = std::atomic_ref<std::int64_t>(*reinterpret_cast<std::int64_t*>(*p)).load();
  if (Error e = access_faulted()) return e;
  return v;
}

[[gnu::always_inline]] inline Error Mapping::atomic_store(std::uint64_t pos, std::int64_t value, Wait w) noexcept {
  AccessGate::Reader in(gate_, w != Wait::no);
  if (!in.entered()) return Error(Errc::ebusy);
  auto p = check_atomic(pos, true);
  if (!p) return p.error();
  std::atomic_ref<std::int64_t>(*reinterpret_cast<std::int64_t*>(*p)).store(value);
  if (Error e = access_faulted()) return e;
  return {};
}

template <typename F>
auto Mapping::with_range(std::uint64_t pos, std::size_t len, F&& f, Wait w) noexcept
    -> decltype(f(nullptr, 0, std::declval<Region&>())) {
  AccessGate::Reader in(gate_, w != Wait::no);
  if (!in.entered()) return Error(Errc::ebusy);
  if (!region_) return Error(Errc::closed);
  if (Error e = begin_access()) return e;
  if (pos >= size_) return Error(Errc::eof);
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, size_ - pos));
  auto r = f(static_cast<const char*>(data_ + pos), n, *region_);
  if (Error e = access_faulted()) return e;
  return r;
}

template <typename F>
auto Mapping::with_map(F&& f, bool for_write, Wait w) noexcept -> decltype(f(nullptr, 0)) {
  AccessGate::Reader in(gate_, w != Wait::no);
  if (!in.entered()) return Error(Errc::ebusy);
  if (!region_) return Error(Errc::closed);
  if (for_write && !options_.write) return Error(Errc::eacces);
  if (Error e = begin_access()) return e;
  auto r = f(data_, size_);
  if (Error e = access_faulted()) return e;
  return r;
}

template <typename F>
auto Mapping::with_writable(std::uint64_t pos, std::size_t len, F&& f, Wait w) noexcept
    -> decltype(f(nullptr, 0)) {
  AccessGate::Reader in(gate_, w != Wait::no);
  if (!in.entered()) return Error(Errc::ebusy);
  if (!region_) return Error(Errc::closed);
  if (!options_.write) return Error(Errc::eacces);
  if (Error e = begin_access()) return e;
  if (pos > size_ || len > size_ - pos) return Error(Errc::einval);
  auto r = f(data_ + pos, len);
  if (Error e = access_faulted()) return e;
  return r;
}

}  // namespace emmap
