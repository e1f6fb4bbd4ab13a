#include "posix_backend.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <climits>
#include <limits>
#include <mutex>

#include "errors.h"

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif

#include "sigbus.h"

namespace emmap {

int guard_range(void* base, std::size_t len, std::atomic<bool>* truncated) noexcept {
  return sigbus::guard(base, len, truncated);
}
void unguard_range(int token) noexcept { sigbus::unguard(token); }

// Backends without an asynchronous path say so; the core then syncs on a
// background thread of its own.
Error MappingBackend::submit_async_fsync(FileId, SyncDone) noexcept { return Error(Errc::eopnotsupp, EOPNOTSUPP); }

}  // namespace emmap

namespace emmap::posix {

namespace {

// Runs a syscall-like function until it stops failing with EINTR.
template <typename F>
auto retry_eintr(F f) {
  for (;;) {
    auto r = f();
    if (r != -1 || errno != EINTR) return r;
  }
}

int prot_for(bool writable) { return writable ? PROT_READ | PROT_WRITE : PROT_READ; }

}  // namespace

PosixBackend::PosixBackend() {
  const long ps = ::sysconf(_SC_PAGESIZE);
  page_size_ = ps > 0 ? static_cast<std::size_t>(ps) : 4096;
  // Growth maps more of the file into our own reservation, which is plain
  // POSIX; backends that cannot (darwin, by the contract) turn it off.
  caps_.resize = true;
  caps_.extend_in_place = true;  // hint + check works everywhere
#if defined(HAVE_ROBUST_MUTEX)
  use_robust_mutex_ = true;
#endif
}

Result<FileId> PosixBackend::open_file(const char* path, const FileOpen& how) noexcept {
  int flags = O_CLOEXEC | (how.write ? O_RDWR : O_RDONLY);
  if (how.create) flags |= O_CREAT;
  if (how.create && how.exclusive) flags |= O_EXCL;
  if (how.truncate && how.write) flags |= O_TRUNC;
  const int fd = retry_eintr([&] { return ::open(path, flags, static_cast<mode_t>(how.mode)); });
  if (fd < 0) return last_error();
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const Error e = last_error();
    ::close(fd);
    return e;
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Error(Errc::eisdir, EISDIR);
  }
  // The umask would turn {chmod, 8#644} into something else; the caller's
  // mode is the contract for files we create.
  if (how.create && how.exclusive && ::fchmod(fd, static_cast<mode_t>(how.mode)) != 0) {
    const Error e = last_error();
    ::close(fd);
    return e;
  }
  return fd;
}

Error PosixBackend::close_file(FileId fd) noexcept {
  // close(2) must not be retried on EINTR: the descriptor is gone either way.
  if (::close(fd) != 0 && errno != EINTR) return last_error();
  return {};
}

Result<FileStat> PosixBackend::stat_file(FileId fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return last_error();
  FileStat out;
  out.size = st.st_size > 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  out.regular = S_ISREG(st.st_mode);
  return out;
}

Error PosixBackend::check_file_size_limit(std::uint64_t size) noexcept {
  if (size > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
    return Error(Errc::efbig, EFBIG);
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      size > static_cast<std::uint64_t>(rl.rlim_cur))
    return Error(Errc::efbig, EFBIG);
  return {};
}

namespace {
// Far past any file emmap can map (kMaxMapLen), and within every off_t.
constexpr off_t kLengthLockByte = off_t{1} << 62;
#if !defined(F_OFD_SETLKW)
std::mutex g_length_mu;  // threads of this process; other processes are not excluded here
#endif

bool regular(const struct stat& st) { return S_ISREG(st.st_mode); }
std::uint64_t length_of(const struct stat& st) { return st.st_size > 0 ? static_cast<std::uint64_t>(st.st_size) : 0; }
}  // namespace

PosixBackend::LengthLock::LengthLock(FileId fd) noexcept {
#if defined(F_OFD_SETLKW)
  // A description of our own: one shared with another process (a handle
  // opened before fork) would not exclude it.
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  own_ = retry_eintr([&] { return ::open(path, O_RDWR | O_CLOEXEC); });
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = kLengthLockByte;
  fl.l_len = 1;
  held_ = own_ >= 0 && retry_eintr([&] { return ::fcntl(own_, F_OFD_SETLKW, &fl); }) == 0;
#else
  (void)fd;
  g_length_mu.lock();
#endif
}

PosixBackend::LengthLock::~LengthLock() {
#if defined(F_OFD_SETLKW)
  if (own_ >= 0) ::close(own_);  // drops the lock with the description
#else
  g_length_mu.unlock();
#endif
}

Error PosixBackend::set_file_size(FileId fd, std::uint64_t size, std::uint64_t only_if_at_most) noexcept {
  LengthLock lock(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return last_error();
  const std::uint64_t now = length_of(st);
  // Another handle made it longer than this one knew: its range stays.
  if (now > only_if_at_most) return {};
  // RLIMIT_FSIZE only bounds growth: a shrink under a smaller limit is fine.
  if (size > now) {
    if (Error e = check_file_size_limit(size)) return e;
  }
  if (retry_eintr([&] { return ::ftruncate(fd, static_cast<off_t>(size)); }) != 0)
    return last_error();
  return {};
}

Error PosixBackend::allocate(FileId fd, std::uint64_t offset, std::uint64_t len) noexcept {
  if (len == 0) return {};
  if (offset > UINT64_MAX - len) return Error(Errc::efbig, EFBIG);
  const std::uint64_t end = offset + len;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return last_error();
  // Devices are what they are: nothing to reserve, and never written here.
  if (!regular(st)) return end > length_of(st) ? Error(Errc::enodev, ENODEV) : Error();
  // Holes inside the file get blocks first, without the lock: that never
  // changes the length, so it need not wait behind another handle's growth.
  std::uint64_t size = length_of(st);
  if (offset < size) {
    if (Error e = fill_holes(fd, offset, std::min(end, size))) return e;
  }
  if (end <= size) return {};
  if (Error e = check_file_size_limit(end)) return e;
  LengthLock lock(fd);
  if (::fstat(fd, &st) != 0) return last_error();
  const std::uint64_t now = length_of(st);
  if (now > size && offset < now) {  // another handle grew it meanwhile, maybe sparse
    if (Error e = fill_holes(fd, std::max(offset, size), std::min(end, now))) return e;
  }
  if (end <= now) return {};
  return extend(fd, now, end, lock.held());
}

Error PosixBackend::append_zeros(FileId fd, std::uint64_t size, std::uint64_t end) noexcept {
  static const char zeros[4096] = {};
  std::uint64_t pos = size;
  while (pos < end) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof zeros, end - pos));
    const ssize_t w = retry_eintr([&] { return ::pwrite(fd, zeros, n, static_cast<off_t>(pos)); });
    if (w < 0) return last_error();  // longer now, never shorter: another handle may map it
    pos += static_cast<std::uint64_t>(w);
  }
  return {};
}

Error PosixBackend::for_each_hole(FileId fd, std::uint64_t from, std::uint64_t to,
                                  Error (*fill)(FileId, std::uint64_t, std::uint64_t)) noexcept {
#if defined(SEEK_HOLE) && defined(SEEK_DATA)
  std::uint64_t pos = from;
  // Another process can write into a hole between the two lseeks (ext4
  // reports reserved, unwritten blocks as a hole until a page there is
  // dirty): then the hole is empty and the walk asks again from there.
  // Holes only ever turn into data, so asking again moves on. A writer
  // storing page after page can keep one step ahead of the walk, though:
  // after a few empty answers in a row the rest of the range is filled in
  // one call (reserving blocks that exist already changes nothing). The
  // walk never gives up with a hole left, or a full disk would be a SIGBUS
  // later instead of an error now.
  int empty = 0;
  while (pos < to) {
    const off_t hole = ::lseek(fd, static_cast<off_t>(pos), SEEK_HOLE);
    // A file system that cannot say (EINVAL) reports no hole: nothing to do.
    if (hole < 0) return errno == ENXIO || errno == EINVAL ? Error() : last_error();
    if (static_cast<std::uint64_t>(hole) >= to) return {};
    const off_t data = ::lseek(fd, hole, SEEK_DATA);
    std::uint64_t hole_end = to;
    if (data >= 0) hole_end = std::min(to, static_cast<std::uint64_t>(data));
    else if (errno != ENXIO) return last_error();  // ENXIO: a hole up to the end
    if (hole_end <= static_cast<std::uint64_t>(hole)) {
      if (++empty >= kEmptyHolesInARow) return fill(fd, static_cast<std::uint64_t>(hole), to);
      pos = static_cast<std::uint64_t>(hole);
      continue;
    }
    empty = 0;
    if (Error e = fill(fd, static_cast<std::uint64_t>(hole), hole_end)) return e;
    pos = hole_end;
  }
  return {};
#else
  (void)fd;
  (void)from;
  (void)to;
  (void)fill;
  return {};  // no way to find holes without reading: left sparse
#endif
}

Error PosixBackend::fill_holes(FileId fd, std::uint64_t from, std::uint64_t to) noexcept {
#if defined(HAVE_POSIX_FALLOCATE)
  return for_each_hole(fd, from, to, [](FileId f, std::uint64_t a, std::uint64_t b) -> Error {
    int r;
    do {
      r = ::posix_fallocate(f, static_cast<off_t>(a), static_cast<off_t>(b - a));
    } while (r == EINTR);
    // A file system that cannot reserve (ZFS, copy-on-write: EINVAL) has
    // nothing better to offer: the hole stays.
    if (r == 0 || r == EINVAL || r == EOPNOTSUPP) return {};
    return Error(errc_from_errno(r), r);
  });
#else
  (void)fd;
  (void)from;
  (void)to;
  return {};  // only writing could reserve, and that would overwrite others' stores
#endif
}

Error PosixBackend::extend(FileId fd, std::uint64_t size, std::uint64_t end, bool locked) noexcept {
#if defined(HAVE_POSIX_FALLOCATE)
  int r;
  if (locked) {
    // The length first, by ftruncate (posix_fallocate raising it itself
    // loses other processes' stores to the old last block on Linux ext4),
    // then the blocks, inside the file by then.
    if (retry_eintr([&] { return ::ftruncate(fd, static_cast<off_t>(end)); }) != 0) return last_error();
  }
  // Unlocked, posix_fallocate raises the length itself: it never lowers one.
  do {
    r = ::posix_fallocate(fd, static_cast<off_t>(size), static_cast<off_t>(end - size));
  } while (r == EINTR);
  if (r == EINVAL || r == EOPNOTSUPP) {
    if (locked) return {};  // nothing can reserve here (ZFS): the length alone
    return append_zeros(fd, size, end);
  }
  return r == 0 ? Error() : Error(errc_from_errno(r), r);  // may leave it longer, never shorter
#else
  (void)locked;
  return append_zeros(fd, size, end);
#endif
}

Error PosixBackend::unlink(const char* path) noexcept {
  if (::unlink(path) != 0) return last_error();
  return {};
}

Result<bool> PosixBackend::names_file(const char* path, FileId fd) const noexcept {
  struct stat by_path {}, by_fd {};
  if (::fstat(fd, &by_fd) != 0) return last_error();
  if (::stat(path, &by_path) != 0) return last_error();
  return by_path.st_dev == by_fd.st_dev && by_path.st_ino == by_fd.st_ino;
}

Error PosixBackend::unlink_if_same(const char* path, FileId fd) noexcept {
  auto same = names_file(path, fd);
  if (!same) return same.error();
  if (!*same) return Error(Errc::estale, ESTALE);
  return unlink(path);
}

Result<FileId> PosixBackend::duplicate_file(FileId fd) noexcept {
  const int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return last_error();
  return d;
}

Result<void*> PosixBackend::reserve_exact(std::size_t len, void* at) noexcept {
  if (reinterpret_cast<std::uintptr_t>(at) % page_size_ != 0) return Error(Errc::einval, EINVAL);
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | noreplace_flags();
#ifdef MAP_NORESERVE
  flags |= MAP_NORESERVE;
#endif
  void* p = ::mmap(at, len, PROT_NONE, flags, -1, 0);
  if (p == MAP_FAILED) {
    const Error e = last_error();
    // MAP_FIXED_NOREPLACE says EEXIST, MAP_EXCL says ENOMEM or EINVAL: one answer.
    return e == Errc::enomem || e == Errc::eexist ? Error(Errc::eexist, EEXIST) : e;
  }
  if (p != at) {
    // The OS took the address as a hint (no such flag, or a kernel that
    // predates it): never accept somewhere else.
    ::munmap(p, len);
    return Error(Errc::eexist, EEXIST);
  }
  return p;
}

Result<void*> PosixBackend::reserve(std::size_t len, void* at) noexcept {
  if (len == 0 || len % page_size_ != 0) return Error(Errc::einval, EINVAL);
  if (at != nullptr) return reserve_exact(len, at);
  int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_NORESERVE
  flags |= MAP_NORESERVE;
#endif
  void* p = ::mmap(nullptr, len, PROT_NONE, flags, -1, 0);
  if (p == MAP_FAILED) return last_error();
  return p;
}

Error PosixBackend::extend_reservation(void* base, std::size_t old_len, std::size_t new_len) noexcept {
  if (new_len <= old_len) return Error(Errc::einval, EINVAL);
  auto* end = static_cast<char*>(base) + old_len;
  auto r = reserve_exact(new_len - old_len, end);
  if (!r) return r.error() == Errc::eexist ? Error(Errc::enomem, ENOMEM) : r.error();
  return {};
}

Result<int> PosixBackend::os_map_flags(const MapRequest& req) const noexcept {
  // POSIX knows none of the optional flags: refuse the ones that change
  // meaning; the core lists the pure hints as ignored.
  if (req.map_sync || req.huge != HugePages::none) return Error(Errc::eopnotsupp, EOPNOTSUPP);
  return 0;
}

Error PosixBackend::map_into(void* at, const MapRequest& req) noexcept {
  auto extra = os_map_flags(req);
  if (!extra) return extra.error();
  int flags = MAP_FIXED | *extra;
  if (req.sharing == Sharing::private_) {
    flags |= MAP_PRIVATE;
  } else if (!(*extra & MAP_SHARED)) {
    flags |= MAP_SHARED;  // an OS override may have chosen MAP_SHARED_VALIDATE
  }
  if (req.fd == kNoFile) flags |= MAP_ANONYMOUS;
  void* p = ::mmap(at, req.length, prot_for(req.writable), flags, req.fd,
                   static_cast<off_t>(req.file_offset));
  // A failed MAP_FIXED may have dropped what was at `at` (before Linux
  // 6.12): the core knows what belongs there and puts it back.
  if (p == MAP_FAILED) return last_error();
  if (!caps_.populate && req.populate)
    (void)::posix_madvise(at, req.length, POSIX_MADV_WILLNEED);  // the hint degrades, it is never lost
  return {};
}

Error PosixBackend::zero_fill(void* at, std::size_t len) noexcept {
  int flags = MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_NORESERVE
  flags |= MAP_NORESERVE;
#endif
  if (::mmap(at, len, PROT_READ, flags, -1, 0) == MAP_FAILED) return last_error();
  return {};
}

Error PosixBackend::unreserve_tail(void* at, std::size_t len) noexcept {
  int flags = MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_NORESERVE
  flags |= MAP_NORESERVE;
#endif
  if (::mmap(at, len, PROT_NONE, flags, -1, 0) == MAP_FAILED) return last_error();
  return {};
}

Error PosixBackend::release(void* base, std::size_t len) noexcept {
  if (::munmap(base, len) != 0) return last_error();
  return {};
}

Result<bool> PosixBackend::probe_mapped(void* addr, std::size_t len) const noexcept {
  // mincore(2) fails with ENOMEM when part of the range is not mapped; it
  // looks at one page per vector byte, a few pages at a time here.
  unsigned char vec[64];
  auto* p = static_cast<char*>(addr);
  const std::size_t chunk = sizeof vec * page_size_;
  while (len > 0) {
    const std::size_t n = std::min(len, chunk);
    if (::mincore(p, n, reinterpret_cast<decltype(&vec[0])>(vec)) != 0) {
      if (errno == ENOMEM) return false;
      return last_error();
    }
    p += n;
    len -= n;
  }
  return true;
}

Error PosixBackend::sync(void* addr, std::size_t len, FileId fd, bool /*map_sync*/) noexcept {
  if (fd == kNoFile || len == 0) return {};  // anonymous memory has no storage to reach
  // MS_SYNC, never MS_ASYNC: the caller was promised durability on return.
  if (retry_eintr([&] { return ::msync(addr, len, MS_SYNC); }) != 0) return last_error();
  return {};
}

Error PosixBackend::advise(void* addr, std::size_t len, Advice advice) noexcept {
  int a = POSIX_MADV_NORMAL;
  switch (advice) {
    case Advice::normal: a = POSIX_MADV_NORMAL; break;
    case Advice::random: a = POSIX_MADV_RANDOM; break;
    case Advice::sequential: a = POSIX_MADV_SEQUENTIAL; break;
    case Advice::willneed: a = POSIX_MADV_WILLNEED; break;
    case Advice::dontneed: a = POSIX_MADV_DONTNEED; break;
  }
  if (len == 0) return {};
  const int r = ::posix_madvise(addr, len, a);  // returns the error, does not set errno
  return r == 0 ? Error() : Error(errc_from_errno(r), r);
}

Error PosixBackend::lock(void* addr, std::size_t len) noexcept {
  if (len == 0) return {};
  if (::mlock(addr, len) != 0) return last_error();
  return {};
}

}  // namespace emmap::posix
