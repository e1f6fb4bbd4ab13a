// AccessGate: a reader-writer gate whose read side touches no shared cache
// line. Data accesses (reads, writes, atomics, sync) enter as readers and
// may run in parallel on every scheduler thread; close and resize enter as
// the writer, which waits until no reader is inside. A reader costs one
// atomic add and one load on a counter that belongs, in practice, to its
// own thread: no lock word bounced between cores on the hot path.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

namespace emmap {

class AccessGate {
 public:
  static constexpr std::size_t kSlots = 32;

  // Enters as a reader; returns the slot to pass to leave(). Blocks while a
  // writer is inside.
  std::size_t enter() noexcept {
    const std::size_t s = my_slot();
    for (;;) {
      slots_[s].readers.fetch_add(1, std::memory_order_seq_cst);
      if (!writer_.load(std::memory_order_seq_cst)) return s;
      slots_[s].readers.fetch_sub(1, std::memory_order_release);
      // Wait for the writer on its mutex rather than spinning.
      std::lock_guard<std::mutex> wait(writer_mutex_);
    }
  }

  // Enters as a reader unless a writer is inside or waiting; never blocks.
  // Returns false (and holds nothing) when it would have to wait.
  bool try_enter(std::size_t& slot) noexcept {
    const std::size_t s = my_slot();
    slots_[s].readers.fetch_add(1, std::memory_order_seq_cst);
    if (!writer_.load(std::memory_order_seq_cst)) {
      slot = s;
      return true;
    }
    slots_[s].readers.fetch_sub(1, std::memory_order_release);
    return false;
  }

  void leave(std::size_t s) noexcept { slots_[s].readers.fetch_sub(1, std::memory_order_release); }

  // Exclusive section: no reader runs while it is held.
  void lock() noexcept {
    writer_mutex_.lock();
    writer_.store(true, std::memory_order_seq_cst);
    for (auto& slot : slots_) {
      while (slot.readers.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    }
  }

  void unlock() noexcept {
    writer_.store(false, std::memory_order_release);
    writer_mutex_.unlock();
  }

  // A reader section; with `wait` false it may fail to enter (entered()
  // false) instead of blocking behind a writer.
  class Reader {
   public:
    explicit Reader(AccessGate& g, bool wait = true) noexcept : gate_(g) {
      if (wait) {
        slot_ = g.enter();
        entered_ = true;
      } else {
        entered_ = g.try_enter(slot_);
      }
    }
    ~Reader() {
      if (entered_) gate_.leave(slot_);
    }
    bool entered() const noexcept { return entered_; }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

   private:
    AccessGate& gate_;
    std::size_t slot_ = 0;
    bool entered_ = false;
  };

 private:
  static std::size_t my_slot() noexcept {
    static std::atomic<std::size_t> next{0};
    thread_local const std::size_t slot = next.fetch_add(1, std::memory_order_relaxed) % kSlots;
    return slot;
  }

  struct alignas(64) Slot {
    std::atomic<std::int64_t> readers{0};
  };
  Slot slots_[kSlots];
  std::atomic<bool> writer_{false};
  std::mutex writer_mutex_;
};

}  // namespace emmap
