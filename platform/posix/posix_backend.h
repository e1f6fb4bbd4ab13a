// PosixBackend: everything the POSIX backends share. An OS backend derives
// from it and overrides only what its OS does differently (extra mmap flags,
// block allocation, durable sync, in-place growth); see platform/linux,
// platform/darwin and platform/bsd.
#pragma once

#include "backend.h"

namespace emmap::posix {

class PosixBackend : public MappingBackend {
 public:
  PosixBackend();

  std::size_t page_size() const noexcept override { return page_size_; }
  const Capabilities& capabilities() const noexcept override { return caps_; }

  Result<FileId> open_file(const char* path, const FileOpen& how) noexcept override;
  Error close_file(FileId fd) noexcept override;
  Result<FileStat> stat_file(FileId fd) noexcept override;
  Error set_file_size(FileId fd, std::uint64_t size, std::uint64_t only_if_at_most) noexcept override;
  Error allocate(FileId fd, std::uint64_t offset, std::uint64_t len) noexcept override;
  Error unlink(const char* path) noexcept override;
  Error unlink_if_same(const char* path, FileId fd) noexcept override;
  Result<bool> names_file(const char* path, FileId fd) const noexcept override;
  Result<FileId> duplicate_file(FileId fd) noexcept override;

  Result<void*> reserve(std::size_t len, void* at) noexcept override;
  Error extend_reservation(void* base, std::size_t old_len, std::size_t new_len) noexcept override;
  Error map_into(void* at, const MapRequest& req) noexcept override;
  Error zero_fill(void* at, std::size_t len) noexcept override;
  Error unreserve_tail(void* at, std::size_t len) noexcept override;
  Error release(void* base, std::size_t len) noexcept override;
  Result<bool> probe_mapped(void* addr, std::size_t len) const noexcept override;

  Error sync(void* addr, std::size_t len, FileId fd, bool map_sync) noexcept override;
  Error advise(void* addr, std::size_t len, Advice advice) noexcept override;
  Error lock(void* addr, std::size_t len) noexcept override;

  Error shared_lock_init(void* mem) const noexcept override;
  Result<LockState> shared_lock_acquire(void* mem, std::uint32_t wait_ms) const noexcept override;
  void shared_lock_consistent(void* mem) const noexcept override;
  void shared_lock_release(void* mem) const noexcept override;
  Result<bool> lock_file(FileId fd, bool exclusive, bool wait) const noexcept override;
  void unlock_file(FileId fd) const noexcept override;

 protected:
  // mmap flags this OS adds to a request, or an error when the request
  // asks for something this OS cannot honour. The base knows only POSIX.
  virtual Result<int> os_map_flags(const MapRequest& req) const noexcept;
  // The flag that makes a non-MAP_FIXED mmap fail instead of replacing or
  // moving (MAP_FIXED_NOREPLACE, MAP_FIXED|MAP_EXCL), or 0 when the OS has
  // none; with 0 the address is passed as a hint and checked afterwards.
  virtual int noreplace_flags() const noexcept { return 0; }
  // Places a PROT_NONE range exactly at `at` or fails with eexist.
  Result<void*> reserve_exact(std::size_t len, void* at) noexcept;
  // Checks RLIMIT_FSIZE before a file grows, so the process gets efbig
  // instead of a SIGXFSZ that would kill it.
  static Error check_file_size_limit(std::uint64_t size) noexcept;
  // allocate() checks the file is regular (devices: enodev past their end,
  // never written), gives the holes of [offset, min(end, length)) blocks
  // with fill_holes (no lock: the length does not change), then, if the
  // file is shorter than `end`, takes the length lock, reads the length
  // again and calls extend(). Only holes (SEEK_HOLE) are touched: file
  // systems that reserve a whole fallocate range even where blocks exist
  // (XFS) would refuse a full file on a nearly full disk, and tmpfs would
  // walk every page.
  // Gives [from, to) of the file (inside its length) blocks where it has
  // holes. The portable version uses posix_fallocate; without it nothing.
  virtual Error fill_holes(FileId fd, std::uint64_t from, std::uint64_t to) noexcept;
  // Raises the length from `size` to `end` with blocks reserved. `locked`:
  // the length lock excludes every other emmap length change, so the raise
  // may be ftruncate (which does not lose other processes' stores to the
  // old last block as fallocate mode 0 and posix_fallocate do on Linux
  // ext4); unlocked it must be a raise that can never lower the length.
  // Should leave the length unchanged when it fails (the portable version
  // may leave it longer, never shorter).
  virtual Error extend(FileId fd, std::uint64_t size, std::uint64_t end, bool locked) noexcept;
  // Calls fill(fd, a, b) for each hole [a, b) of [from, to) (SEEK_HOLE);
  // after kEmptyHolesInARow holes that data filled before fill could run
  // (a concurrent writer), fill(fd, a, to) once for all that is left.
  static constexpr int kEmptyHolesInARow = 8;
  static Error for_each_hole(FileId fd, std::uint64_t from, std::uint64_t to,
                             Error (*fill)(FileId, std::uint64_t, std::uint64_t)) noexcept;
  // Raises the length to `end` by writing zeros from `size` (reserves the
  // blocks on file systems that do not share them). Regular files only.
  static Error append_zeros(FileId fd, std::uint64_t size, std::uint64_t end) noexcept;

  // The lock every length change by emmap takes. Where the OS has open-
  // file-description locks (Linux F_OFD_SETLKW): a write lock on one byte
  // far past any data (fcntl locks may lie past the end), on a description
  // of its own (/proc/self/fd/N opened again, so a handle shared with a
  // forked process is excluded too); Linux fcntl locks do not interact with
  // the queue's flock. held() is false when the file system has no locks
  // (ENOLCK): extend() then raises the length in a way that cannot lower it.
  // Elsewhere (macOS, FreeBSD) only the threads of this process are
  // excluded (a mutex) and held() is false: a classic fcntl lock there
  // conflicts with the queue's own flock and is dropped by any close of the
  // file in the process.
  class LengthLock {
   public:
    explicit LengthLock(FileId fd) noexcept;
    ~LengthLock();
    LengthLock(const LengthLock&) = delete;
    LengthLock& operator=(const LengthLock&) = delete;
    bool held() const noexcept { return held_; }

   private:
    int own_ = -1;
    bool held_ = false;
  };

  // Which shared lock this OS gets: a robust pthread mutex where the
  // system has them, else the owner-pid lock (darwin has no robust mutexes).
  bool use_robust_mutex_ = false;

  Capabilities caps_;

 private:
  std::size_t page_size_;
};

}  // namespace emmap::posix
