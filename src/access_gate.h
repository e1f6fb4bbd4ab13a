// AccessGate: a reader-writer gate whose read side costs no atomic
// read-modify-write and shares no cache line between threads.
//
// Data accesses (reads, writes, atomics, sync) enter as readers and may run
// in parallel on every thread; close and resize enter as the writer, which
// waits until no reader is inside. Each thread owns a record with a few
// "inside gate G" slots (a hazard-pointer scheme): a reader publishes the
// gate in its own slot, then checks the writer flag; the writer raises the
// flag, then scans every thread's slots.
//
// The store-then-load on each side needs a full fence between them. Where
// the OS offers an asymmetric barrier (Linux membarrier), the writer pays a
// system call and the reader only a compiler fence; elsewhere both sides
// use a CPU fence. See heavy_barrier() in platform/backend.h.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace emmap {

namespace gate_detail {

inline constexpr int kSlotsPerThread = 4;  // nesting depth of reader sections per thread

struct alignas(64) ThreadRecord {
  std::atomic<const void*> inside[kSlotsPerThread] = {};
  std::atomic<bool> owned{false};
  ThreadRecord* next = nullptr;  // global list, append-only: records are reused, never freed
};

ThreadRecord* acquire_my_record() noexcept;  // first use on a thread

// Plain pointer, constant-initialised (constinit: without it C++ calls a
// TLS wrapper, and checks for one, on every access).
// initial-exec keeps it a single %fs-relative load even inside the NIF's
// dlopen'ed library (glibc reserves static TLS room for such small uses).
extern thread_local constinit ThreadRecord* tl_record __attribute__((tls_model("initial-exec")));

inline ThreadRecord* my_record() noexcept {
  ThreadRecord* r = tl_record;
  return r ? r : acquire_my_record();
}
ThreadRecord* all_records() noexcept;
// Never written: its address is the slot of a reader counted on a gate's
// overflow_readers_ (a global, not a gate member, so that the gate's
// layout, which is inside every Mapping, stays that of libemmap.so.0).
extern std::atomic<const void*> overflow_slot;
extern const bool asymmetric;  // decided once, at load, from the platform
void heavy_fence() noexcept;   // writer side

// Reader side: inline, it is on every access.
inline void light_fence() noexcept {
  if (asymmetric) {
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the writer's heavy barrier does the rest
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

}  // namespace gate_detail

class AccessGate {
 public:
  // A reader section. With `wait` false it does not block behind a writer:
  // entered() is then false and nothing is held.
  class Reader {
   public:
    explicit Reader(AccessGate& g, bool wait = true) noexcept : gate_(g), slot_(g.enter(wait)) {}
    ~Reader() {
      if (slot_) gate_.leave(slot_);
    }
    bool entered() const noexcept { return slot_ != nullptr; }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

   private:
    AccessGate& gate_;
    // The slot this reader published itself in (gate_detail::overflow_slot
    // for a reader counted in overflow_readers_); null: not entered.
    std::atomic<const void*>* slot_;
  };

  // Exclusive section: returns once no reader is inside; readers that come
  // later wait (or fail, without `wait`) until unlock().
  void lock() noexcept;
  void unlock() noexcept;

 private:
  // Returns the slot to give back to leave(), or null when not entered
  // (only without `wait`). The slot is returned, not stored through a
  // pointer, so that a Reader lives in registers on the hot paths.
  std::atomic<const void*>* enter(bool wait) noexcept {
    gate_detail::ThreadRecord* rec = gate_detail::my_record();
    std::atomic<const void*>* s = nullptr;
    for (auto& candidate : rec->inside) {
      if (candidate.load(std::memory_order_relaxed) == nullptr) {
        s = &candidate;
        break;
      }
    }
    if (s == nullptr) [[unlikely]] return enter_overflow(wait);
    for (;;) {
      s->store(this, std::memory_order_relaxed);
      gate_detail::light_fence();
      if (!writer_.load(std::memory_order_acquire)) [[likely]] return s;
      s->store(nullptr, std::memory_order_release);
      if (!wait) return nullptr;
      std::lock_guard<std::mutex> until_the_writer_is_done(writer_mutex_);
    }
  }

  void leave(std::atomic<const void*>* slot) noexcept {
    if (slot == &gate_detail::overflow_slot) [[unlikely]] {
      overflow_readers_.fetch_sub(1, std::memory_order_release);
      return;
    }
    slot->store(nullptr, std::memory_order_release);
  }

  // Deeper nesting than kSlotsPerThread: a shared counter (slow, but
  // correct). Returns &gate_detail::overflow_slot, or null when not entered.
  std::atomic<const void*>* enter_overflow(bool wait) noexcept;
  // The same as libemmap.so.0 first exported it, for programs built
  // against those headers (whose inline enter() calls it): true when
  // entered, and *slot set to null, which their inline leave() takes for
  // an overflow reader.
  bool enter_overflow(bool wait, std::atomic<const void*>** slot) noexcept;

  std::atomic<bool> writer_{false};
  std::atomic<std::int64_t> overflow_readers_{0};
  std::mutex writer_mutex_;
};

}  // namespace emmap
