// emmap — the interface between the portable core and the operating system.
//
// The core (src/) never calls the OS: it asks a MappingBackend. Exactly one
// implementation is compiled into a build (platform/linux, darwin or bsd,
// chosen by Meson's `backend` option); all of them share the POSIX code in
// platform/posix. OS quirks are normalised here: every method returns an
// emmap::Error whose code is portable, and nothing throws.
//
// Address-space model. A mapping lives inside a *reservation*: a range of
// address space made inaccessible (PROT_NONE, no memory committed) that is
// owned by one Mapping generation. File or anonymous memory is placed into
// the reservation with `map_into` (MAP_FIXED on our own range, so it can
// never clobber somebody else's memory). Growth maps more of the file after
// the mapped part; shrinking replaces the tail with read-only zero pages, so
// a pointer handed out earlier can still be read, it just reads zeros.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "error.h"

namespace emmap {

using FileId = int;  // an OS file descriptor; kNoFile for anonymous maps
inline constexpr FileId kNoFile = -1;

enum class Sharing : std::uint8_t {
  shared,           // writes reach the file and other mappers
  shared_validate,  // shared, and the OS must reject flags it does not know
  private_,         // copy-on-write: writes stay in this process
};

enum class Advice : std::uint8_t { normal, random, sequential, willneed, dontneed };

enum class HugePages : std::uint8_t { none, default_size, size_2mb, size_1gb };

// What this backend can do. The core and the Erlang layer read this to
// refuse an option that changes meaning, or to list a pure hint as ignored.
struct Capabilities {
  bool resize = false;           // a mapping's length can change at all
  bool extend_in_place = false;  // a reservation can grow without moving
  bool map_sync = false;         // MAP_SYNC (DAX) flag exists
  bool shared_validate = false;  // MAP_SHARED_VALIDATE exists
  bool fixed_noreplace = false;  // {address, A} can refuse occupied ranges atomically
  bool populate = false;         // prefaulting flag exists (else madvise WILLNEED)
  bool nocache = false;          // MAP_NOCACHE exists
  bool noreserve = false;        // MAP_NORESERVE exists
  bool uninitialized = false;    // MAP_UNINITIALIZED exists
  bool huge_pages = false;       // MAP_HUGETLB exists
  bool nosync = false;           // MAP_NOSYNC exists (BSD: no periodic flush)
  bool full_fsync = false;       // F_FULLFSYNC exists (drive cache flush)
  bool async_fsync = false;      // submit_async_fsync works (io_uring ring set up)
};

// A lock that lives in shared (mapped) memory and is shared by processes.
inline constexpr std::size_t kSharedLockBytes = 128;  // room for any OS's process-shared mutex
enum class LockState : std::uint8_t {
  acquired,    // held now
  owner_died,  // held now; the previous holder died holding it: repair, then mark consistent
  busy,        // not taken (only when not waiting)
};

// How the stores to a map become durable (see persist() and sync()).
enum class Persistence : std::uint8_t {
  msync,  // through the page cache: msync(MS_SYNC) (and F_FULLFSYNC where needed)
  flush,  // persistent memory (DAX): flush the range's cache lines, then one store fence
  eadr,   // persistent memory whose CPU caches are in the persistence domain: a store fence
};

// A device-DAX character device (/dev/daxX.Y): no file system, a fixed
// size, and every mapping aligned to the device's alignment.
struct DeviceDax {
  std::uint64_t size = 0;   // bytes the device holds
  std::uint64_t align = 0;  // offsets and lengths of mappings are multiples of this
};

// Called once an asynchronous sync has finished, on the backend's own thread.
using SyncDone = std::function<void(Error)>;

// Flags for opening the backing file.
struct FileOpen {
  bool write = false;
  bool create = false;
  bool truncate = false;
  bool exclusive = false;  // with create: fail with eexist if the file exists
  std::uint32_t mode = 0600;  // applied exactly (not filtered by the umask) to a file we create
};

struct FileStat {
  std::uint64_t size = 0;
  bool regular = false;
};

// One request to place memory at `at` (inside a reservation we own).
struct MapRequest {
  FileId fd = kNoFile;             // kNoFile: anonymous memory
  std::uint64_t file_offset = 0;   // page aligned
  std::size_t length = 0;          // multiple of the page size, > 0
  bool writable = false;
  Sharing sharing = Sharing::shared;
  bool populate = false;
  bool nocache = false;
  bool noreserve = false;
  bool uninitialized = false;
  bool map_sync = false;
  bool nosync = false;
  HugePages huge = HugePages::none;
};

class MappingBackend {
 public:
  virtual ~MappingBackend() = default;

  // "linux", "darwin" or "bsd".
  virtual std::string_view name() const noexcept = 0;
  virtual const Capabilities& capabilities() const noexcept = 0;
  virtual std::size_t page_size() const noexcept = 0;

  // ---- files -------------------------------------------------------------
  // Opens with O_CLOEXEC. Errors: enoent, eacces, eexist, eisdir, emfile,
  // enametoolong, einval (e.g. a NUL byte in the path) and other open(2) codes.
  virtual Result<FileId> open_file(const char* path, const FileOpen& how) noexcept = 0;
  // Errors: ebadf, eio.
  virtual Error close_file(FileId fd) noexcept = 0;
  // Errors: ebadf, eoverflow.
  virtual Result<FileStat> stat_file(FileId fd) noexcept = 0;
  // Sets the file length (ftruncate), unless the file is now longer than
  // `only_if_at_most` (another handle grew it past what the caller knew:
  // then nothing changes and the answer is ok). Errors: efbig (beyond
  // RLIMIT_FSIZE or the file system's limit; checked first, so no SIGXFSZ
  // is raised), einval, eio, erofs.
  virtual Error set_file_size(FileId fd, std::uint64_t size,
                              std::uint64_t only_if_at_most = UINT64_MAX) noexcept = 0;
  // Makes a regular file at least offset+len long, with disk blocks for
  // [offset, offset+len), so later stores through the map cannot fail for
  // lack of space: the range past the end, and the holes inside the file
  // where the OS can fill them without writing (Linux fallocate keeping the
  // length, posix_fallocate; found with SEEK_HOLE, so existing blocks cost
  // nothing). Never lowers the length where length changes by emmap handles
  // are serialised across processes (Linux; see PosixBackend::LengthLock).
  // On failure the length is as it was (the portable path may leave it
  // longer, never shorter). A device: enodev past its end, never written.
  // Errors: enospc, edquot, efbig, eio, enodev.
  virtual Error allocate(FileId fd, std::uint64_t offset, std::uint64_t len) noexcept = 0;
  // Errors: enoent, eacces, ebusy.
  virtual Error unlink(const char* path) noexcept = 0;
  // Unlinks `path` only if it still names the file open as `fd` (not one
  // created at the same path meanwhile). Errors: as unlink, and estale
  // when the path names another file now.
  virtual Error unlink_if_same(const char* path, FileId fd) noexcept = 0;
  // Whether `path` still names the file open as `fd`. Errors: as stat(2)
  // (enoent: nothing has that name now).
  virtual Result<bool> names_file(const char* path, FileId fd) const noexcept = 0;
  // A second descriptor for the same open file (close-on-exec), so an
  // asynchronous job never races the owner's close. Errors: emfile, ebadf.
  virtual Result<FileId> duplicate_file(FileId fd) noexcept = 0;
  // Starts a durable data sync of the whole file (fdatasync semantics: on
  // Linux this also writes back pages dirtied through shared mappings).
  // Takes ownership of `fd` and closes it when done; calls done(result) from
  // the backend's completion thread. Errors (then `fd` is still the
  // caller's and done is never called): eopnotsupp (no asynchronous path:
  // the caller runs the sync on a thread of its own), enomem, eagain.
  virtual Error submit_async_fsync(FileId fd, SyncDone done) noexcept;

  // ---- address space -----------------------------------------------------
  // Reserves `len` bytes of inaccessible address space. With `at` == nullptr
  // anywhere; otherwise exactly at `at` or fails with eexist (never replaces
  // an existing mapping). Errors: enomem, eexist, einval (unaligned `at`).
  virtual Result<void*> reserve(std::size_t len, void* at) noexcept = 0;
  // Grows the reservation [base, base+old_len) to new_len without moving it.
  // Errors: enomem (the addresses after it are taken), eopnotsupp.
  virtual Error extend_reservation(void* base, std::size_t old_len, std::size_t new_len) noexcept = 0;
  // Places the request's memory at `at`, which must lie in our reservation.
  // Errors: eacces (mode vs fd), enodev, enomem, eopnotsupp (a flag this OS or
  // this file system does not support, e.g. MAP_SYNC without DAX), eagain.
  virtual Error map_into(void* at, const MapRequest& req) noexcept = 0;
  // Replaces [at, at+len) with read-only zero pages (used when shrinking and
  // to neutralise pages lost to truncation). Errors: enomem.
  virtual Error zero_fill(void* at, std::size_t len) noexcept = 0;
  // Returns [at, at+len) to the inaccessible reservation. Errors: enomem.
  virtual Error unreserve_tail(void* at, std::size_t len) noexcept = 0;
  // Gives the whole reservation back to the OS. Errors: einval.
  virtual Error release(void* base, std::size_t len) noexcept = 0;
  // Whether every page of [addr, addr+len) is mapped (with any protection).
  // A failed MAP_FIXED call (map_into, zero_fill, unreserve_tail) may have
  // unmapped its range before failing (Linux before 6.12 does): this tells
  // the core whether a hole was left. Errors: einval.
  virtual Result<bool> probe_mapped(void* addr, std::size_t len) const noexcept = 0;

  // ---- data --------------------------------------------------------------
  // Makes [addr, addr+len) durable: when this returns ok the bytes are on
  // stable storage (msync MS_SYNC; F_FULLFSYNC where the OS needs it to get
  // past the drive cache; cache-line flush on MAP_SYNC maps). `addr` page
  // aligned. Errors: eio, enomem (range not mapped), einval.
  virtual Error sync(void* addr, std::size_t len, FileId fd, bool map_sync) noexcept = 0;
  // Makes [addr, addr+len) of a persistent-memory map durable with no
  // system call: `flush` flushes every cache line the range touches (the
  // instruction chosen at load, see flush_instruction()) then fences once;
  // `eadr` only fences; `msync` is not a persist (the caller uses sync()).
  // Any alignment. Never fails.
  virtual void persist(const void* addr, std::size_t len, Persistence p) noexcept;
  // Whether a shared file map must act as if it were on DAX without asking
  // the kernel for MAP_SYNC (EMMAP_PMEM_FORCE=1, after PMDK's
  // PMEM_IS_PMEM_FORCE; read at every open, for tests and development).
  virtual bool pmem_forced() const noexcept;
  // The persistence a DAX map gets on this machine: eadr where the
  // platform says the CPU caches are persistent, flush where the CPU has a
  // cache-line flush, else msync (which works on DAX too).
  virtual Persistence dax_persistence() const noexcept;
  // Whether `fd` is a device-DAX character device, and then its size and
  // alignment (Linux: from sysfs). Errors: enodev (a device DAX whose
  // sysfs attributes cannot be read), eio.
  virtual Result<std::optional<DeviceDax>> device_dax(FileId fd) const noexcept;

  // Errors: einval, enomem, eagain.
  virtual Error advise(void* addr, std::size_t len, Advice advice) noexcept = 0;
  // mlock. Errors: enomem (RLIMIT_MEMLOCK), eperm, eagain.
  virtual Error lock(void* addr, std::size_t len) noexcept = 0;

  // ---- cross-process lock in a shared map (the persistent queue's) ---------
  // Robust: a process killed while holding it never stalls the others; the
  // next holder learns it (owner_died). Lock and unlock must use the same
  // address. Linux and FreeBSD: a process-shared robust pthread mutex (the
  // kernel marks it when the holder dies, in any PID namespace). Elsewhere:
  // an owner-pid word whose owner is checked for life.
  // Initialises [mem, mem+kSharedLockBytes). Call only where no other
  // process can be using the lock (see lock_file). Errors: eagain, enomem, eperm.
  virtual Error shared_lock_init(void* mem) const noexcept = 0;
  // Waits up to `wait_ms` milliseconds (0: only tries; kForever: as long as
  // it takes); busy when the time ran out. Errors: einval (not
  // initialised), enotrecoverable, edeadlk.
  static constexpr std::uint32_t kForever = UINT32_MAX;
  virtual Result<LockState> shared_lock_acquire(void* mem, std::uint32_t wait_ms) const noexcept = 0;
  // After owner_died: the lock protects consistent data again. Call it
  // before any release, or the lock becomes unusable (ENOTRECOVERABLE).
  virtual void shared_lock_consistent(void* mem) const noexcept = 0;
  virtual void shared_lock_release(void* mem) const noexcept = 0;

  // Whole-file advisory lock (flock), owned by the open file description
  // of `fd` and dropped by the OS when its last descriptor closes or the
  // process dies (in any PID namespace). Shared or exclusive; converting a
  // held lock replaces it. With `wait` false, answers false at once when
  // another holder conflicts. Errors: ebadf, enolck, eintr.
  virtual Result<bool> lock_file(FileId fd, bool exclusive, bool wait) const noexcept = 0;
  virtual void unlock_file(FileId fd) const noexcept = 0;
};

// The backend this build was configured with (a process-wide singleton).
std::shared_ptr<MappingBackend> make_backend();

// ---- faults under the map (SIGBUS, SIGSEGV) -------------------------------------
// Guards [base, base+len): a fault there no longer kills the process. A page
// lost because the file shrank (or poisoned by a hardware memory error, or
// a hole a failed MAP_FIXED left) becomes a private zero page, the kind of
// fault is noted in t_fault on the touching thread, and for a lost page
// *truncated is set. Returns a token for unguard_range (-1: not guarded,
// e.g. too many maps). See platform/posix/sigbus.h.
int guard_range(void* base, std::size_t len, std::atomic<bool>* truncated) noexcept;
void unguard_range(int token) noexcept;
enum FaultKind : std::uint8_t {
  kFaultNone = 0,
  kFaultLost = 1,      // the file shrank under the map: {error, sigbus}
  kFaultHardware = 2,  // a hardware memory error (BUS_MCEERR_AR): {error, eio}
  kFaultHole = 3,      // an unmapped page inside our range: {error, efault}
};
// Set on a thread whose access just faulted; the core clears it. constinit:
// no TLS wrapper call (and its check) on every access.
extern thread_local constinit std::uint8_t t_fault __attribute__((tls_model("initial-exec")));

// ---- persistent memory: the CPU side (platform/posix/pmem.cpp) --------------------
// The cache-line flush chosen once, at load, from CPUID (x86: clwb, else
// clflushopt, else clflush; arm64: dc cvap where the CPU has it, else
// dc cvac), or none (no flush known: DAX maps use msync). The environment
// variable EMMAP_PMEM_FLUSH=clflush|clflushopt|clwb (read once) forces a
// weaker x86 one for tests; a name this CPU lacks is ignored.
enum class FlushInsn : std::uint8_t { none, clflush, clflushopt, clwb, dc_cvac, dc_cvap };
FlushInsn flush_instruction() noexcept;
std::string_view flush_name(FlushInsn f) noexcept;
// The choice itself, for tests: the best of `available` (a bit per
// FlushInsn value), or `forced` when it names an available one.
FlushInsn choose_flush(std::uint32_t available, const char* forced) noexcept;
// Bits of the FlushInsn values this CPU has.
std::uint32_t available_flushes() noexcept;
inline constexpr std::size_t kCacheLine = 64;
// Flushes every line of [addr, addr+len) with flush_instruction(); no fence.
void pmem_flush(const void* addr, std::size_t len) noexcept;
// The store fence that orders flushes and non-temporal stores before later stores.
void pmem_fence() noexcept;
// Copies with non-temporal stores (the lines only partly written are
// copied and flushed); followed by pmem_fence() the bytes are durable. Where
// the CPU has no non-temporal store, memcpy then pmem_flush.
void pmem_copy_nt(void* dst, const void* src, std::size_t len) noexcept;
// Below this many bytes a write to persistent memory is a plain copy (a
// persist flushes it later); from it on, non-temporal stores (PMDK's
// movnt threshold; see bench/pmem_bench.cpp).
inline constexpr std::size_t kNtThreshold = 256;
// Test hook: when set, called with the address of every cache line a
// persist flushes (before it is flushed). Not for production use.
using FlushObserver = void (*)(void* ctx, const void* line);
void set_flush_observer(FlushObserver f, void* ctx) noexcept;

// Asymmetric memory barrier for the core's AccessGate. When available,
// heavy_barrier() makes every thread of the process execute a full memory
// barrier before it returns (Linux: membarrier PRIVATE_EXPEDITED), so the
// frequent side of a Dekker-style handshake needs only a compiler fence.
// heavy_barrier_available() is asked once, when the core loads; when it
// says false, heavy_barrier() is never called.
bool heavy_barrier_available() noexcept;
void heavy_barrier() noexcept;

}  // namespace emmap
