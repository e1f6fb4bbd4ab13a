#include "uring_sync.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>

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

int real_submit(void* ring) { return ::io_uring_submit(static_cast<io_uring*>(ring)); }
std::atomic<SubmitFn> g_submit{real_submit};

constexpr unsigned kEntries = 64;  // submissions in flight at most; the completion queue holds twice that

class Ring {
 public:
  bool ok() const { return ok_; }

  Ring() {
    // Completions are signalled through an eventfd, so the waiting thread
    // blocks in poll/read, not in io_uring_enter(2): tools that serialise
    // threads (valgrind) know those block and let others run.
    if (::io_uring_queue_init(kEntries, &ring_, 0) != 0) return;
    efd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd_ < 0 || ::io_uring_register_eventfd(&ring_, efd_) != 0) {
      if (efd_ >= 0) ::close(efd_);
      ::io_uring_queue_exit(&ring_);
      return;
    }
    ok_ = true;
  }

  Error submit(int fd, SyncDone done) {
    std::lock_guard<std::mutex> g(mu_);
    // No more in flight than the submission ring holds: the completion
    // queue (twice as large) can then never overflow, the cause of a
    // submit failing with EBUSY.
    if (in_flight_ >= kEntries) return Error(Errc::eagain, EAGAIN);
    Job* job = new (std::nothrow) Job{fd, std::move(done)};
    if (!job) return Error(Errc::enomem, ENOMEM);
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
    if (!sqe) {  // entries of a failed submit still wait there: push them in first
      (void)g_submit.load()(&ring_);
      sqe = ::io_uring_get_sqe(&ring_);
    }
    if (!sqe) {
      delete job;
      return Error(Errc::eagain, EAGAIN);
    }
    ::io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    ::io_uring_sqe_set_data(sqe, job);
    ++in_flight_;
    // From here the job is the ring's: a submit that fails (EINTR, EAGAIN,
    // ENOMEM) leaves the entry published in the submission ring, and the
    // completion thread submits it again until the kernel takes it. The
    // caller's {emmap_sync, Ref, _} always comes.
    if (g_submit.load()(&ring_) < 0) {
      resubmit_ = true;
      (void)::eventfd_write(efd_, 1);  // wake the completion thread to retry
    }
    return {};
  }

 private:
  void run() {
    for (;;) {
      // While an entry waits to be submitted, look again every millisecond.
      pollfd p{efd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, resubmit_.load() ? 1 : -1);
      if (ready > 0) {
        eventfd_t n;
        (void)::eventfd_read(efd_, &n);
      }
      if (resubmit_.load()) {
        std::lock_guard<std::mutex> g(mu_);
        if (g_submit.load()(&ring_) >= 0) resubmit_ = false;
      }
      io_uring_cqe* cqe = nullptr;
      while (::io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe) {
        auto* job = static_cast<Job*>(::io_uring_cqe_get_data(cqe));
        const int res = cqe->res;
        ::io_uring_cqe_seen(&ring_, cqe);
        if (!job) continue;
        ::close(job->fd);
        job->done(res < 0 ? Error(posix::errc_from_errno(-res), -res) : Error());
        delete job;
        std::lock_guard<std::mutex> g(mu_);
        --in_flight_;
      }
    }
  }

  io_uring ring_{};
  int efd_ = -1;
  bool ok_ = false;
  std::mutex mu_;
  unsigned in_flight_ = 0;        // guarded by mu_
  std::atomic<bool> resubmit_{false};
  std::thread reaper_;
};

}  // namespace

void set_submit_for_tests(SubmitFn f) noexcept { g_submit.store(f ? f : real_submit); }

namespace {

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
void set_submit_for_tests(SubmitFn) noexcept {}

#endif

}  // namespace emmap::linux_uring
