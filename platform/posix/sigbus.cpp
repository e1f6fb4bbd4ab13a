#include "sigbus.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "backend.h"

namespace emmap {

// Set by the handler on the faulting thread; read and cleared by the core
// after each access (see backend.h).
thread_local constinit std::uint8_t t_fault __attribute__((tls_model("initial-exec"))) = kFaultNone;

}  // namespace emmap

namespace emmap::sigbus {
namespace {

struct Slot {
  std::atomic<std::uintptr_t> start{0};
  std::atomic<std::uintptr_t> end{0};
  std::atomic<std::atomic<bool>*> truncated{nullptr};
};

Slot g_slots[kMaxGuarded];
std::atomic<std::size_t> g_high{0};  // slots in use are below this
struct sigaction g_previous_bus, g_previous_segv;
std::uintptr_t g_page = 4096;  // set at install: sysconf is not async-signal-safe
std::atomic<bool> g_installed{false};
std::mutex g_install_mu;

void chain(int sig, siginfo_t* info, void* uctx) {
  const struct sigaction& prev = sig == SIGBUS ? g_previous_bus : g_previous_segv;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) {
      prev.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    prev.sa_handler(sig);
    return;
  }
  // Default action: restore it; returning re-runs the access, which faults
  // again and ends the process as it would have without emmap.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
}

// Async-signal-safe: atomics and one mmap call.
void on_fault(int sig, siginfo_t* info, void* uctx) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  const std::size_t high = g_high.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < high; ++i) {
    const std::uintptr_t start = g_slots[i].start.load(std::memory_order_acquire);
    if (start == 0 || addr < start || addr >= g_slots[i].end.load(std::memory_order_acquire)) continue;
    std::uint8_t kind = kFaultLost;
    std::uintptr_t page = g_page;
    if (sig == SIGSEGV) {
      kind = kFaultHole;
    }
#if defined(BUS_MCEERR_AR) && defined(BUS_MCEERR_AO)
    else if (info->si_code == BUS_MCEERR_AR || info->si_code == BUS_MCEERR_AO) {
      kind = kFaultHardware;  // the page is poisoned; its size may be larger than a base page
      if (info->si_addr_lsb > 0 && static_cast<std::size_t>(info->si_addr_lsb) < 8 * sizeof(std::uintptr_t))
        page = std::max<std::uintptr_t>(page, std::uintptr_t{1} << info->si_addr_lsb);
    }
#endif
    void* at = reinterpret_cast<void*>(addr & ~(page - 1));
    // A private zero page, writable so a store in flight lands somewhere
    // harmless; the file itself is not touched.
    if (::mmap(at, page, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
      break;  // cannot repair: let the previous handler or the default decide
    if (kind == kFaultLost) {
      if (auto* flag = g_slots[i].truncated.load(std::memory_order_acquire))
        flag->store(true, std::memory_order_release);
    }
#if defined(BUS_MCEERR_AO)
    // "Action optional": reported for a poisoned page nobody is touching
    // right now; this thread's access did not fail.
    if (sig == SIGBUS && info->si_code == BUS_MCEERR_AO) return;
#endif
    t_fault = kind;
    return;  // the faulting instruction runs again, on the zero page
  }
  chain(sig, info, uctx);
}

}  // namespace

bool install() noexcept {
  if (g_installed.load(std::memory_order_acquire)) return true;
  std::lock_guard<std::mutex> g(g_install_mu);
  if (g_installed.load(std::memory_order_relaxed)) return true;
  const long ps = ::sysconf(_SC_PAGESIZE);
  if (ps > 0) g_page = static_cast<std::uintptr_t>(ps);
  struct sigaction sa {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGBUS, &sa, &g_previous_bus) != 0) return false;
  if (::sigaction(SIGSEGV, &sa, &g_previous_segv) != 0) {
    ::sigaction(SIGBUS, &g_previous_bus, nullptr);
    return false;
  }
  g_installed.store(true, std::memory_order_release);
  return true;
}

int guard(void* base, std::size_t len, std::atomic<bool>* truncated) noexcept {
  if (!install()) return -1;
  for (std::size_t i = 0; i < kMaxGuarded; ++i) {
    std::uintptr_t expected = 0;
    // Claim a free slot by its start word; the end and flag follow before
    // the slot can match (start is published last).
    std::atomic<bool>* no_flag = nullptr;
    if (g_slots[i].truncated.load(std::memory_order_relaxed) != nullptr) continue;
    if (!g_slots[i].truncated.compare_exchange_strong(no_flag, truncated, std::memory_order_acq_rel)) continue;
    g_slots[i].end.store(reinterpret_cast<std::uintptr_t>(base) + len, std::memory_order_relaxed);
    g_slots[i].start.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
    std::size_t high = g_high.load(std::memory_order_relaxed);
    while (high < i + 1 && !g_high.compare_exchange_weak(high, i + 1, std::memory_order_release)) {
    }
    (void)expected;
    return static_cast<int>(i);
  }
  return -1;
}

void unguard(int slot) noexcept {
  if (slot < 0 || static_cast<std::size_t>(slot) >= kMaxGuarded) return;
  g_slots[slot].start.store(0, std::memory_order_release);
  g_slots[slot].end.store(0, std::memory_order_relaxed);
  g_slots[slot].truncated.store(nullptr, std::memory_order_release);
}


}  // namespace emmap::sigbus
