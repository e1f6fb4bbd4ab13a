// Charging NIF calls to the calling process's timeslice by the time they
// took, not by the one reduction the VM charges for any NIF call.
//
// A call on a normal scheduler is bounded (about 1 ms at most), but many
// calls of a few microseconds each, for instance one-byte writes that each
// fault in a fresh page of a file, add up: 4,000 of them (one nominal
// timeslice of reductions) can hold the scheduler for 10 ms or more. So
// every call is timed with the CPU's cycle counter, the time above what a
// fast call takes is carried per scheduler thread for the running process,
// and whenever it makes up a whole percent of a timeslice it is charged
// with enif_consume_timeslice, which makes the process yield in time.
#pragma once

#include <erl_nif.h>

#include <chrono>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace emmap::nif {

// A cheap monotonic tick count: the time-stamp counter on x86, the virtual
// counter on arm64, the steady clock elsewhere.
inline std::uint64_t ticks() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#elif defined(__aarch64__)
  std::uint64_t v;
  asm volatile("mrs %0, cntvct_el0" : "=r"(v));
  return v;
#else
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
#endif
}

// Per scheduler thread: the process that ran last and its time not charged yet.
struct TimesliceCarry {
  ErlNifPid pid{};
  std::uint64_t ticks = 0;
};
inline thread_local constinit TimesliceCarry timeslice_carry{};

class Timeslice {
 public:
  // Measures ticks per microsecond against the steady clock (about 2 ms).
  void calibrate() noexcept {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const std::uint64_t k0 = ticks();
    auto t1 = t0;
    while (t1 - t0 < std::chrono::milliseconds(2)) t1 = Clock::now();
    const std::uint64_t k1 = ticks();
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count();
    std::uint64_t per_us = us > 0 ? (k1 - k0) / static_cast<std::uint64_t>(us) : 0;
    per_us_ = per_us > 0 ? per_us : 1000;  // a counter that does not move: assume 1 GHz
  }

  // Charges the calling process for a call that started at `start` ticks.
  void charge(ErlNifEnv* env, std::uint64_t start) const noexcept {
    const std::uint64_t spent = ticks() - start;
    if (spent < free_ticks()) return;  // the common case: a fast call
    TimesliceCarry& c = timeslice_carry;
    ErlNifPid self;
    if (!enif_self(env, &self)) return;  // not a process (never the case for a NIF call)
    if (std::memcmp(&self, &c.pid, sizeof self) != 0) {
      c.pid = self;
      c.ticks = 0;
    }
    c.ticks += spent;
    const std::uint64_t percent_ticks = per_us_ * kUsPerPercent;
    if (c.ticks < percent_ticks) return;
    std::uint64_t percent = c.ticks / percent_ticks;
    c.ticks -= percent * percent_ticks;
    enif_consume_timeslice(env, static_cast<int>(percent > 100 ? 100 : percent));
  }

 private:
  // A timeslice is nominally 1 ms, so a percent is 10 us.
  static constexpr std::uint64_t kUsPerPercent = 10;
  // A call of up to 1 us is the kind the VM's one reduction already covers.
  std::uint64_t free_ticks() const noexcept { return per_us_; }

  std::uint64_t per_us_ = 1000;
};

}  // namespace emmap::nif
