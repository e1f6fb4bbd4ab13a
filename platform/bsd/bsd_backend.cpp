// FreeBSD, NetBSD, OpenBSD: MAP_PREFAULT_READ for populate, MAP_NOSYNC for
// maps whose file is thrown away anyway (auto_unlink), MAP_EXCL to refuse
// occupied fixed addresses; growth maps more of the file into our own
// reservation (these systems have no mremap). Every flag sits behind its own
// #ifdef, so the backend also builds and passes the contract tests on Linux.
#include <sys/mman.h>

#include <cerrno>

#include "errors.h"
#include "posix_backend.h"

namespace emmap {
namespace {

class BsdBackend final : public posix::PosixBackend {
 public:
  BsdBackend() {
    caps_.extend_in_place = true;  // by hint and check (MAP_EXCL where present)
#ifdef MAP_PREFAULT_READ
    caps_.populate = true;
#endif
#ifdef MAP_NOSYNC
    caps_.nosync = true;
#endif
#if defined(MAP_FIXED) && defined(MAP_EXCL)
    caps_.fixed_noreplace = true;
#endif
  }

  std::string_view name() const noexcept override { return "bsd"; }

 protected:
  Result<int> os_map_flags(const MapRequest& req) const noexcept override {
    if (req.map_sync || req.huge != HugePages::none) return Error(Errc::eopnotsupp, EOPNOTSUPP);
    int f = 0;
#ifdef MAP_PREFAULT_READ
    if (req.populate) f |= MAP_PREFAULT_READ;
#endif
#ifdef MAP_NOSYNC
    if (req.nosync) f |= MAP_NOSYNC;
#endif
    return f;
  }

  int noreplace_flags() const noexcept override {
#if defined(MAP_FIXED) && defined(MAP_EXCL)
    return MAP_FIXED | MAP_EXCL;
#else
    return 0;
#endif
  }
};

}  // namespace

// No asymmetric barrier here: the access gate uses CPU fences on both sides.
bool heavy_barrier_available() noexcept { return false; }
void heavy_barrier() noexcept {}

std::shared_ptr<MappingBackend> make_backend() {
  static const std::shared_ptr<MappingBackend> backend = std::make_shared<BsdBackend>();
  return backend;
}

}  // namespace emmap
