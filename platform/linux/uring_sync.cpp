#include "uring_sync.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <new>
#include <thread>

#include "errors.h"

#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

namespace emmap::linux_uring {

#ifdef HAVE_LIBURING

namespace {

struct Job {
  int fd;
  SyncDone done;
};

class Ring {
 public:
  bool ok() const { return ok_; }

  Ring() {
    // 64 submissions in flight before eagain; the completion queue is twice
    // that. Completions are signalled through an eventfd, so the waiting
    // thread blocks in read(2), not in io_uring_enter(2): tools that
    // serialise threads (valgrind) know read blocks and let others run.
    if (::io_uring_queue_init(64, &ring_, 0) != 0) return;
    efd_ = ::eventfd(0, EFD_CLOEXEC);
    if (efd_ < 0 || ::io_uring_register_eventfd(&ring_, efd_) != 0) {
      if (efd_ >= 0) ::close(efd_);
      ::io_uring_queue_exit(&ring_);
      return;
    }
    ok_ = true;
  }

  Error submit(int fd, SyncDone done) {
    Job* job = new (std::nothrow) Job{fd, std::move(done)};
    if (!job) return Error(Errc::enomem, ENOMEM);
    std::lock_guard<std::mutex> g(mu_);
    // The completion thread starts with the first job: a process that never
    // syncs asynchronously (or a child after fork) has none.
    if (!reaper_.joinable()) {
      try {
        reaper_ = std::thread([this] { run(); });
      } catch (...) {
        delete job;
        return Error(Errc::eagain, EAGAIN);
      }
    }
    io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
    if (!sqe) {
      ::io_uring_submit(&ring_);  // make room, then try once more
      sqe = ::io_uring_get_sqe(&ring_);
    }
    if (!sqe) {
      delete job;
      return Error(Errc::eagain, EAGAIN);
    }
    ::io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    ::io_uring_sqe_set_data(sqe, job);
    // A failed submit (-EBUSY while completions back up) leaves the entry in
    // the submission ring, where the next submit picks it up: the job is
    // owned by the ring either way.
    (void)::io_uring_submit(&ring_);
    return {};
  }

 private:
  void run() {
    for (;;) {
      eventfd_t n;
      if (::eventfd_read(efd_, &n) != 0 && errno != EINTR) return;
      io_uring_cqe* cqe = nullptr;
      while (::io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe) {
        auto* job = static_cast<Job*>(::io_uring_cqe_get_data(cqe));
        const int res = cqe->res;
        ::io_uring_cqe_seen(&ring_, cqe);
        if (!job) continue;
        ::close(job->fd);
        job->done(res < 0 ? Error(posix::errc_from_errno(-res), -res) : Error());
        delete job;
      }
    }
  }

  io_uring ring_{};
  int efd_ = -1;
  bool ok_ = false;
  std::mutex mu_;
  std::thread reaper_;
};

// Lives for the whole process (never destroyed: its thread may be waiting
// when static destructors run at exit).
Ring* ring() {
  static Ring* r = new Ring();
  return r->ok() ? r : nullptr;
}

}  // namespace

bool available() noexcept { return ring() != nullptr; }

Error submit_fsync(FileId fd, SyncDone done) noexcept {
  Ring* r = ring();
  if (!r) return Error(Errc::eopnotsupp, EOPNOTSUPP);
  return r->submit(fd, std::move(done));
}

#else  // built without liburing: the core uses its background thread

bool available() noexcept { return false; }
Error submit_fsync(FileId, SyncDone) noexcept { return Error(Errc::eopnotsupp, EOPNOTSUPP); }

#endif

}  // namespace emmap::linux_uring
