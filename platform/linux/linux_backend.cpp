// Linux: MAP_POPULATE, MAP_SHARED_VALIDATE|MAP_SYNC (DAX), MAP_FIXED_NOREPLACE,
// MAP_NORESERVE, MAP_UNINITIALIZED, MAP_HUGETLB, fallocate(2), eADR and
// device DAX from sysfs (the cache-line flush itself is platform/posix/pmem.cpp).
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
#include <sys/sysmacros.h>
#include <dirent.h>
#include <climits>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

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

  // eADR: the CPU caches are in the persistence domain when the NVDIMM
  // regions say so (<sysfs>/bus/nd/devices/region*/persistence_domain is
  // "cpu_cache"). Only when every region says it: a file may lie on any of
  // them, and a wrong "yes" loses data where a wrong "no" costs flushes.
  Persistence dax_persistence() const noexcept override {
    const std::string dir = sysfs_root() + "/bus/nd/devices";
    int regions = 0;
    bool all_cpu_cache = true;
    if (DIR* d = ::opendir(dir.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        if (std::strncmp(e->d_name, "region", 6) != 0) continue;
        ++regions;
        std::string domain;
        if (!read_sysfs(dir + "/" + e->d_name + "/persistence_domain", &domain) || domain != "cpu_cache")
          all_cpu_cache = false;
      }
      ::closedir(d);
    }
    if (regions > 0 && all_cpu_cache) return Persistence::eadr;
    return PosixBackend::dax_persistence();
  }

  // Device DAX: a character device whose sysfs node (<sysfs>/dev/char/M:m)
  // belongs to the dax subsystem; its size and alignment come from there
  // (`align` of the device since Linux 5.10, else its region's
  // device/dax_region/align). EMMAP_DEVDAX_STANDIN=M:m:PATH makes the
  // regular file at PATH pass for device M:m (tests only: there is no
  // device DAX on an ordinary machine).
  Result<std::optional<DeviceDax>> device_dax(FileId fd) const noexcept override {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return posix::last_error();
    unsigned maj = 0, min = 0;
    if (S_ISCHR(st.st_mode)) {
      maj = major(st.st_rdev);
      min = minor(st.st_rdev);
    } else if (!standin(st, &maj, &min)) {
      return std::optional<DeviceDax>();
    }
    try {
      const std::string node = sysfs_root() + "/dev/char/" + std::to_string(maj) + ":" + std::to_string(min);
      char link[PATH_MAX];
      const ssize_t n = ::readlink((node + "/subsystem").c_str(), link, sizeof link - 1);
      if (n <= 0) return std::optional<DeviceDax>();  // no such node: an ordinary device
      link[n] = '\0';
      const char* base = std::strrchr(link, '/');
      if (std::strcmp(base ? base + 1 : link, "dax") != 0) return std::optional<DeviceDax>();
      DeviceDax dd;
      std::string v;
      if (!read_sysfs(node + "/size", &v) || !parse_u64(v, &dd.size)) return Error(Errc::enodev, ENODEV);
      if (!(read_sysfs(node + "/align", &v) && parse_u64(v, &dd.align)) &&
          !(read_sysfs(node + "/device/dax_region/align", &v) && parse_u64(v, &dd.align)))
        return Error(Errc::enodev, ENODEV);
      if (dd.align == 0 || (dd.align & (dd.align - 1)) != 0 || dd.align % page_size() != 0)
        return Error(Errc::enodev, ENODEV);  // the kernel's alignments are powers of two
      return std::optional<DeviceDax>(dd);
    } catch (...) {
      return Error(Errc::enomem, ENOMEM);
    }
  }

 private:
  static std::string sysfs_root() {
    const char* r = std::getenv("EMMAP_SYSFS_ROOT");
    return r && *r ? r : "/sys";
  }
  // The first line of a small sysfs attribute, without the newline.
  static bool read_sysfs(const std::string& path, std::string* out) noexcept {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[128];
    ssize_t n;
    do n = ::read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n < 0) return false;
    std::size_t len = static_cast<std::size_t>(n);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) --len;
    try {
      out->assign(buf, len);
    } catch (...) {
      return false;
    }
    return true;
  }
  // Decimal (or 0x hex) digits only: strtoull alone takes a sign ("-1" is
  // 2^64-1) and leading blanks.
  static bool parse_u64(const std::string& s, std::uint64_t* v) noexcept {
    if (s.empty() || s[0] < '0' || s[0] > '9') return false;
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(s.c_str(), &end, 0);
    if (errno != 0 || *end != '\0') return false;
    *v = x;
    return true;
  }
  static bool standin(const struct stat& st, unsigned* maj, unsigned* min) noexcept {
    const char* v = std::getenv("EMMAP_DEVDAX_STANDIN");
    if (!v) return false;
    unsigned a = 0, b = 0;
    int used = 0;
    if (std::sscanf(v, "%u:%u:%n", &a, &b, &used) != 2 || used == 0) return false;
    struct stat other {};
    if (::stat(v + used, &other) != 0 || other.st_dev != st.st_dev || other.st_ino != st.st_ino) return false;
    *maj = a;
    *min = b;
    return true;
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
