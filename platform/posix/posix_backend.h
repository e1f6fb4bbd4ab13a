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
  Error set_file_size(FileId fd, std::uint64_t size) noexcept override;
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
  // allocate() validates, takes the file's length lock, reads the length
  // (`size`) and then calls this to reserve [offset, end) and raise the
  // length to `end` if it is shorter. It must never lower the length, and
  // should leave it unchanged when it fails. The portable version raises
  // the length with ftruncate first, then posix_fallocate fills the range
  // (inside the file by then: posix_fallocate raising the length itself
  // loses other processes' stores to the last block on Linux ext4, as
  // fallocate mode 0 does); without posix_fallocate it writes zeros past
  // the end. It may leave the file longer when it fails.
  virtual Error allocate_locked(FileId fd, std::uint64_t offset, std::uint64_t end, std::uint64_t size) noexcept;
  // Raises the length to `end` by writing zeros from `size` (reserves the
  // blocks on file systems that do not share them). Under the length lock.
  static Error append_zeros(FileId fd, std::uint64_t size, std::uint64_t end) noexcept;

  // The lock every length change by emmap takes, in every process: a write
  // lock on one byte far past any data (fcntl locks may lie past the end),
  // owned by the open file description where the OS has such locks (Linux
  // F_OFD_SETLKW; they do not interact with the queue's flock there), else a
  // process-wide mutex plus a classic F_SETLKW. Without it two handles that
  // each read the length and then set theirs can lower a length the other
  // just raised, and the bytes written there are gone. Where the file system
  // has no locks (ENOLCK) the change goes ahead unlocked.
  class LengthLock {
   public:
    explicit LengthLock(FileId fd) noexcept;
    ~LengthLock();
    LengthLock(const LengthLock&) = delete;
    LengthLock& operator=(const LengthLock&) = delete;

   private:
    FileId fd_;
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
