// The cross-process lock of PosixBackend: a robust process-shared pthread
// mutex where the system has them, else an owner-pid word. Both survive the
// death of a holder: the next taker gets LockState::owner_died.
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <new>
#include <thread>
#include <ctime>

#include "errors.h"
#include "posix_backend.h"

namespace emmap::posix {

namespace {

// ---- owner-pid lock --------------------------------------------------------
// The word holds pid << 32 | a per-thread tag (threads of one process must
// exclude each other too). A waiter that finds the owner's pid gone (kill 0
// says ESRCH) takes the lock over and reports owner_died. Limit: a dead
// owner's pid reused by a new process keeps the lock until that one exits,
// and a pid is only meaningful in the checker's own PID namespace; the queue
// re-initialises the lock whenever no other handle has the file open (see
// lock_file), which covers both.

std::uint64_t my_owner_word() {
  static std::atomic<std::uint32_t> next_tag{1};
  thread_local const std::uint32_t tag = next_tag.fetch_add(1, std::memory_order_relaxed);
  return static_cast<std::uint64_t>(static_cast<std::uint32_t>(::getpid())) << 32 | tag;
}

std::atomic_ref<std::uint64_t> owner_ref(void* mem) { return std::atomic_ref<std::uint64_t>(*static_cast<std::uint64_t*>(mem)); }

bool owner_alive(std::uint64_t word) {
  const auto pid = static_cast<pid_t>(word >> 32);
  if (pid <= 0) return false;          // damaged: kill(0 or negative) would name process groups
  if (pid == ::getpid()) return true;  // a thread of ours: it will let go
  return !(::kill(pid, 0) != 0 && errno == ESRCH);
}

Result<LockState> pid_lock_acquire(void* mem, std::uint32_t wait_ms) {
  auto owner = owner_ref(mem);
  const std::uint64_t me = my_owner_word();
  auto pause = std::chrono::microseconds(20);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    std::uint64_t cur = 0;
    if (owner.compare_exchange_strong(cur, me, std::memory_order_acquire)) return LockState::acquired;
    if (cur == me) return Error(Errc::edeadlk, EDEADLK);
    if (!owner_alive(cur) && owner.compare_exchange_strong(cur, me, std::memory_order_acquire))
      return LockState::owner_died;
    if (wait_ms == 0) return LockState::busy;
    if (wait_ms != MappingBackend::kForever && std::chrono::steady_clock::now() >= deadline) return LockState::busy;
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(1)) pause *= 2;
  }
}

#if defined(HAVE_ROBUST_MUTEX)
pthread_mutex_t* mutex_at(void* mem) { return static_cast<pthread_mutex_t*>(mem); }
static_assert(sizeof(pthread_mutex_t) <= kSharedLockBytes);
#endif

}  // namespace

Error PosixBackend::shared_lock_init(void* mem) const noexcept {
#if defined(HAVE_ROBUST_MUTEX)
  if (use_robust_mutex_) {
    pthread_mutexattr_t attr;
    int r = ::pthread_mutexattr_init(&attr);
    if (r == 0) r = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (r == 0) r = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (r == 0) r = ::pthread_mutex_init(new (mem) pthread_mutex_t, &attr);
    ::pthread_mutexattr_destroy(&attr);
    return r == 0 ? Error() : Error(errc_from_errno(r), r);
  }
#endif
  owner_ref(mem).store(0, std::memory_order_release);
  return {};
}

Result<LockState> PosixBackend::shared_lock_acquire(void* mem, std::uint32_t wait_ms) const noexcept {
#if defined(HAVE_ROBUST_MUTEX)
  if (use_robust_mutex_) {
    int r;
    if (wait_ms == 0) {
      r = ::pthread_mutex_trylock(mutex_at(mem));
    } else if (wait_ms == kForever) {
      r = ::pthread_mutex_lock(mutex_at(mem));
    } else {
      // Robust mutexes take an absolute CLOCK_REALTIME deadline.
      struct timespec until {};
      ::clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += wait_ms / 1000;
      until.tv_nsec += static_cast<long>(wait_ms % 1000) * 1000000L;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
      }
      do {
        r = ::pthread_mutex_timedlock(mutex_at(mem), &until);
      } while (r == EINTR);
    }
    if (r == 0) return LockState::acquired;
    if (r == EOWNERDEAD) return LockState::owner_died;
    if (r == EBUSY || r == ETIMEDOUT) return LockState::busy;
    return Error(errc_from_errno(r), r);
  }
#endif
  return pid_lock_acquire(mem, wait_ms);
}

void PosixBackend::shared_lock_consistent(void* mem) const noexcept {
#if defined(HAVE_ROBUST_MUTEX)
  if (use_robust_mutex_) {
    (void)::pthread_mutex_consistent(mutex_at(mem));
    return;
  }
#endif
  (void)mem;  // the owner word is ours already
}

void PosixBackend::shared_lock_release(void* mem) const noexcept {
#if defined(HAVE_ROBUST_MUTEX)
  if (use_robust_mutex_) {
    (void)::pthread_mutex_unlock(mutex_at(mem));
    return;
  }
#endif
  owner_ref(mem).store(0, std::memory_order_release);
}

Result<bool> PosixBackend::lock_file(FileId fd, bool exclusive, bool wait) const noexcept {
  const int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
  for (;;) {
    if (::flock(fd, op) == 0) return true;
    if (errno == EWOULDBLOCK && !wait) return false;
    if (errno != EINTR) return last_error();
  }
}

void PosixBackend::unlock_file(FileId fd) const noexcept { (void)::flock(fd, LOCK_UN); }

}  // namespace emmap::posix
