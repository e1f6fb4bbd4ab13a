// macOS: MAP_NOCACHE, F_FULLFSYNC (msync alone leaves data in the drive's
// cache), F_PREALLOCATE for block reservation (see extend). No mremap and, by the
// contract, no resize: capabilities().resize is false and the core answers
// fixed_size. Only macros macOS defines are used, each behind its own
// #ifdef, so this backend also builds and passes the contract tests on Linux
// (where it falls back to the portable POSIX paths).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "posix_backend.h"

namespace emmap {
namespace {

class DarwinBackend final : public posix::PosixBackend {
 public:
  DarwinBackend() {
    caps_.resize = false;
    caps_.extend_in_place = false;
    use_robust_mutex_ = false;  // macOS has no robust mutexes: the owner-pid lock
#ifdef MAP_NOCACHE
    caps_.nocache = true;
#endif
#ifdef F_FULLFSYNC
    caps_.full_fsync = true;
#endif
  }

  std::string_view name() const noexcept override { return "darwin"; }

#ifdef F_PREALLOCATE
  // Blocks past the physical end first (the length stays), then the length.
  // Holes inside a file cannot be given blocks without writing: left alone
  // (no posix_fallocate here). Only threads of this process are excluded
  // (see LengthLock): two processes growing one file at once can lower
  // each other's length.
  Error extend(FileId fd, std::uint64_t size, std::uint64_t end, bool) noexcept override {
    fstore_t store{};
    store.fst_flags = F_ALLOCATECONTIG;
    store.fst_posmode = F_PEOFPOSMODE;
    store.fst_offset = 0;
    store.fst_length = static_cast<off_t>(end - size);
    if (::fcntl(fd, F_PREALLOCATE, &store) == -1) {
      store.fst_flags = F_ALLOCATEALL;
      if (::fcntl(fd, F_PREALLOCATE, &store) == -1) return posix::last_error();
    }
    if (::ftruncate(fd, static_cast<off_t>(end)) != 0) return posix::last_error();
    return {};
  }
#endif

  Error sync(void* addr, std::size_t len, FileId fd, bool map_sync) noexcept override {
    if (Error e = PosixBackend::sync(addr, len, fd, map_sync)) return e;
#ifdef F_FULLFSYNC
    if (fd != kNoFile && ::fcntl(fd, F_FULLFSYNC) == -1) return posix::last_error();
#endif
    return {};
  }

  Error extend_reservation(void*, std::size_t, std::size_t) noexcept override {
    return Error(Errc::eopnotsupp, EOPNOTSUPP);
  }

 protected:
  Result<int> os_map_flags(const MapRequest& req) const noexcept override {
    if (req.map_sync || req.huge != HugePages::none) return Error(Errc::eopnotsupp, EOPNOTSUPP);
    int f = 0;
#ifdef MAP_NOCACHE
    if (req.nocache) f |= MAP_NOCACHE;
#endif
    return f;
  }
};

}  // namespace

// No asymmetric barrier here: the access gate uses CPU fences on both sides.
bool heavy_barrier_available() noexcept { return false; }
void heavy_barrier() noexcept {}

std::shared_ptr<MappingBackend> make_backend() {
  static const std::shared_ptr<MappingBackend> backend = std::make_shared<DarwinBackend>();
  return backend;
}

}  // namespace emmap
