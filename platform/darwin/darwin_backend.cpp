// macOS: MAP_NOCACHE, F_FULLFSYNC (msync alone leaves data in the drive's
// cache), F_PREALLOCATE for block reservation. No mremap and, by the
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

  Error allocate(FileId fd, std::uint64_t offset, std::uint64_t len) noexcept override {
    if (len == 0) return {};
    if (offset > UINT64_MAX - len) return Error(Errc::efbig, EFBIG);
    if (Error e = check_file_size_limit(offset + len)) return e;
#ifdef F_PREALLOCATE
    // Reserve the blocks, contiguous if possible, then set the length.
    fstore_t store{};
    store.fst_flags = F_ALLOCATECONTIG;
    store.fst_posmode = F_PEOFPOSMODE;
    store.fst_offset = 0;
    store.fst_length = static_cast<off_t>(offset + len);
    if (::fcntl(fd, F_PREALLOCATE, &store) == -1) {
      store.fst_flags = F_ALLOCATEALL;
      if (::fcntl(fd, F_PREALLOCATE, &store) == -1) return posix::last_error();
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) return posix::last_error();
    if (static_cast<std::uint64_t>(st.st_size) < offset + len)
      return set_file_size(fd, offset + len);
    return {};
#else
    return allocate_portable(fd, offset, len);
#endif
  }

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
