#include "access_gate.h"

#include <chrono>
#include <thread>

#include "backend.h"

namespace emmap {
namespace gate_detail {

namespace {

std::atomic<ThreadRecord*> g_records{nullptr};

ThreadRecord* acquire_record() noexcept {
  for (ThreadRecord* r = g_records.load(std::memory_order_acquire); r; r = r->next) {
    bool expected = false;
    if (!r->owned.load(std::memory_order_relaxed) &&
        r->owned.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
      return r;
  }
  auto* r = new ThreadRecord();
  r->owned.store(true, std::memory_order_relaxed);
  ThreadRecord* head = g_records.load(std::memory_order_relaxed);
  do {
    r->next = head;
  } while (!g_records.compare_exchange_weak(head, r, std::memory_order_release, std::memory_order_relaxed));
  return r;
}

// Gives the record back when its thread exits.
struct RecordOwner {
  ThreadRecord* record = nullptr;
  ~RecordOwner() {
    if (!record) return;
    for (auto& s : record->inside) s.store(nullptr, std::memory_order_relaxed);
    tl_record = nullptr;
    record->owned.store(false, std::memory_order_release);
  }
};

}  // namespace

thread_local constinit ThreadRecord* tl_record __attribute__((tls_model("initial-exec"))) = nullptr;

ThreadRecord* acquire_my_record() noexcept {
  thread_local RecordOwner owner;
  if (!owner.record) owner.record = acquire_record();
  tl_record = owner.record;
  return owner.record;
}

ThreadRecord* all_records() noexcept { return g_records.load(std::memory_order_acquire); }

const bool asymmetric = heavy_barrier_available();

std::atomic<const void*> overflow_slot{nullptr};

void heavy_fence() noexcept {
  if (asymmetric) {
    heavy_barrier();
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

}  // namespace gate_detail

std::atomic<const void*>* AccessGate::enter_overflow(bool wait) noexcept {
  for (;;) {
    overflow_readers_.fetch_add(1, std::memory_order_seq_cst);
    if (!writer_.load(std::memory_order_seq_cst)) return &gate_detail::overflow_slot;
    overflow_readers_.fetch_sub(1, std::memory_order_release);
    if (!wait) return nullptr;
    std::lock_guard<std::mutex> until_the_writer_is_done(writer_mutex_);
  }
}

bool AccessGate::enter_overflow(bool wait, std::atomic<const void*>** slot) noexcept {
  if (enter_overflow(wait) == nullptr) return false;
  *slot = nullptr;
  return true;
}

namespace {

// Waits for a reader to leave: readers stay for one copy, so yield first;
// past that, sleep briefly, which also lets tools that run one thread at a
// time (valgrind) schedule the reader.
template <typename Cond>
void wait_while(Cond still_inside) {
  for (int spins = 0; still_inside(); ++spins) {
    if (spins < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

}  // namespace

void AccessGate::lock() noexcept {
  writer_mutex_.lock();
  writer_.store(true, std::memory_order_seq_cst);
  gate_detail::heavy_fence();
  for (gate_detail::ThreadRecord* r = gate_detail::all_records(); r; r = r->next) {
    for (auto& s : r->inside) {
      wait_while([&] { return s.load(std::memory_order_acquire) == this; });
    }
  }
  wait_while([&] { return overflow_readers_.load(std::memory_order_acquire) != 0; });
}

void AccessGate::unlock() noexcept {
  writer_.store(false, std::memory_order_release);
  writer_mutex_.unlock();
}

}  // namespace emmap
