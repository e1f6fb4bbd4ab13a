// Linux: MAP_POPULATE, MAP_SHARED_VALIDATE|MAP_SYNC (DAX), MAP_FIXED_NOREPLACE,
// MAP_NORESERVE, MAP_UNINITIALIZED, MAP_HUGETLB, fallocate(2), and a
// cache-line flush instead of msync on MAP_SYNC mappings.
//
// Why no mremap for growth: mremap can only grow a single VMA in place, and
// our region is the file mapping followed by the PROT_NONE reservation. To
// use it we would first have to unmap the reservation tail, leaving a window
// in which another thread's mmap (the BEAM's allocators run concurrently)
// could take those addresses. Mapping the new range MAP_FIXED over our own
// reservation, and extending the reservation with MAP_FIXED_NOREPLACE, is
// atomic and never moves memory a caller still points into.
#include <fcntl.h>
#include <linux/membarrier.h>
#include <linux/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>

#include "errors.h"
#include "posix_backend.h"
#include "uring_sync.h"

namespace emmap {
namespace {

class LinuxBackend final : public posix::PosixBackend {
 public:
  LinuxBackend() {
    caps_.extend_in_place = true;
#if defined(MAP_SHARED_VALIDATE) && defined(MAP_SYNC)  // Linux 4.15
    caps_.map_sync = true;
    caps_.shared_validate = true;
#endif
#ifdef MAP_FIXED_NOREPLACE  // Linux 4.17; older kernels treat it as a hint, which reserve_exact checks
    caps_.fixed_noreplace = true;
#endif
#ifdef MAP_POPULATE
    caps_.populate = true;
#endif
#ifdef MAP_NORESERVE
    caps_.noreserve = true;
#endif
#ifdef MAP_UNINITIALIZED  // honoured only with CONFIG_MMAP_ALLOW_UNINITIALIZED
    caps_.uninitialized = true;
#endif
#ifdef MAP_HUGETLB
    caps_.huge_pages = true;
#endif
    caps_.async_fsync = linux_uring::available();
  }

  Error submit_async_fsync(FileId fd, SyncDone done) noexcept override {
    return linux_uring::submit_fsync(fd, std::move(done));
  }

  std::string_view name() const noexcept override { return "linux"; }

  // fallocate keeping the length: blocks for the holes, writing nothing.
  Error fill_holes(FileId fd, std::uint64_t from, std::uint64_t to) noexcept override {
    return for_each_hole(fd, from, to, [](FileId f, std::uint64_t a, std::uint64_t b) -> Error {
      if (keep_size_fallocate(f, a, b) == 0 || errno == EOPNOTSUPP) return {};  // cannot: left sparse
      return posix::last_error();
    });
  }

  // Blocks past the end first, with the length kept, then the length: by
  // ftruncate under the lock (fallocate mode 0 raising the length loses
  // other processes' stores to the old last block on ext4, measured on 6.18
  // even with the lock held), else by fallocate mode 0 of the last byte,
  // which can never lower a length. A failure leaves the length as it was
  // and gives back the blocks it took past the end.
  Error extend(FileId fd, std::uint64_t size, std::uint64_t end, bool locked) noexcept override {
    if (keep_size_fallocate(fd, size, end) != 0) {
      // File systems without fallocate (some network and FUSE ones): only
      // writing can reserve, and only the added range.
      if (errno == EOPNOTSUPP) return append_zeros(fd, size, end);
      const Error e = posix::last_error();
      struct stat st {};
      if (locked && ::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) == size)
        (void)::ftruncate(fd, static_cast<off_t>(size));  // the same length: frees blocks past it
      return e;
    }
    int r;
    do {
      r = locked ? ::ftruncate(fd, static_cast<off_t>(end)) : ::fallocate(fd, 0, static_cast<off_t>(end - 1), 1);
    } while (r != 0 && errno == EINTR);
    if (r != 0) return posix::last_error();
    return {};
  }

  static int keep_size_fallocate(FileId fd, std::uint64_t from, std::uint64_t to) noexcept {
    int r;
    do {
      r = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from), static_cast<off_t>(to - from));
    } while (r != 0 && errno == EINTR);
    return r;
  }

  Error sync(void* addr, std::size_t len, FileId fd, bool map_sync) noexcept override {
#if defined(__x86_64__) || defined(__i386__)
    if (map_sync) {
      // MAP_SYNC guarantees the file metadata is durable for every written
      // page; only the CPU caches stand between our stores and the media.
      constexpr std::uintptr_t line = 64;
      auto p = reinterpret_cast<std::uintptr_t>(addr) & ~(line - 1);
      const auto end = reinterpret_cast<std::uintptr_t>(addr) + len;
      for (; p < end; p += line) __builtin_ia32_clflush(reinterpret_cast<const void*>(p));
      __builtin_ia32_sfence();
      return {};
    }
#endif
    return PosixBackend::sync(addr, len, fd, map_sync);
  }

 protected:
  Result<int> os_map_flags(const MapRequest& req) const noexcept override {
    int f = 0;
    if (req.map_sync) {
#if defined(MAP_SHARED_VALIDATE) && defined(MAP_SYNC)
      if (req.sharing == Sharing::private_ || req.fd == kNoFile) return Error(Errc::einval, EINVAL);
      f |= MAP_SHARED_VALIDATE | MAP_SYNC;
#else
      return Error(Errc::eopnotsupp, EOPNOTSUPP);
#endif
    } else if (req.sharing == Sharing::shared_validate) {
#ifdef MAP_SHARED_VALIDATE
      f |= MAP_SHARED_VALIDATE;
#endif
    }
#ifdef MAP_POPULATE
    if (req.populate) f |= MAP_POPULATE;
#endif
#ifdef MAP_NORESERVE
    if (req.noreserve) f |= MAP_NORESERVE;
#endif
#ifdef MAP_UNINITIALIZED
    if (req.uninitialized && req.fd == kNoFile) f |= MAP_UNINITIALIZED;
#endif
    if (req.huge != HugePages::none) {
#ifdef MAP_HUGETLB
      f |= MAP_HUGETLB;
      if (req.huge == HugePages::size_2mb) {
#ifdef MAP_HUGE_2MB
        f |= MAP_HUGE_2MB;
#else
        return Error(Errc::eopnotsupp, EOPNOTSUPP);
#endif
      } else if (req.huge == HugePages::size_1gb) {
#ifdef MAP_HUGE_1GB
        f |= MAP_HUGE_1GB;
#else
        return Error(Errc::eopnotsupp, EOPNOTSUPP);
#endif
      }
#else
      return Error(Errc::eopnotsupp, EOPNOTSUPP);
#endif
    }
    return f;
  }

  int noreplace_flags() const noexcept override {
#ifdef MAP_FIXED_NOREPLACE
    return MAP_FIXED_NOREPLACE;
#else
    return 0;
#endif
  }
};

}  // namespace

// membarrier(2) PRIVATE_EXPEDITED (Linux 4.14): the access gate's writer
// (close, resize) pays an IPI to this process's running threads so that
// every read, write and atomic pays no fence at all. Registration is needed
// once per process; without it (old kernel, seccomp) the gate uses fences.
// (MEMBARRIER_CMD_* are enumerators, not macros: test for the system call.)
bool heavy_barrier_available() noexcept {
#if defined(__NR_membarrier)
  const long cmds = ::syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return ::syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
  return false;
#endif
}

void heavy_barrier() noexcept {
#if defined(__NR_membarrier)
  // Cannot fail once registered; EINTR is not among its errors.
  (void)::syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
#endif
}

std::shared_ptr<MappingBackend> make_backend() {
  static const std::shared_ptr<MappingBackend> backend = std::make_shared<LinuxBackend>();
  return backend;
}

}  // namespace emmap
