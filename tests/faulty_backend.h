// A MappingBackend that forwards to the real one but can be told to fail
// chosen calls, so the core's error and fallback paths run on any machine.
//
// Two ways to inject:
//  * per method: fail_extend, fail_allocate, fail_map_into answer that error
//    for every call of their method;
//  * by position: the `fail_at`-th call that can fail (counted in `calls`,
//    from 1) answers `fail_with` (with `cascade`, so does every later call).
//    A test runs a path once to count its calls, then once per call index
//    and error.
// With `holes` an injected failure of a call that replaces memory
// (map_into, zero_fill, unreserve_tail) first unmaps its range, as a failed
// MAP_FIXED mmap may do on Linux before 6.12: the worst case the core must
// survive.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"

namespace emmap::test {

class FaultyBackend final : public MappingBackend {
 public:
  explicit FaultyBackend(std::shared_ptr<MappingBackend> real) : real_(std::move(real)) {}

  Error fail_extend;      // extend_reservation answers this when set
  Error fail_allocate;    // allocate answers this when set
  Error fail_map_into;    // map_into answers this when set
  Error fail_next_reserve;  // the next reserve answers this (once)
  bool room_after = false;  // reserve leaves free address space after what it returns (so it can be extended)
  int fail_syncs = 0;       // the next this many sync calls answer eio (then they work again)
  int sync_calls = 0;
  std::function<void()> on_map_into;  // runs inside map_into (e.g. to stall a resize)
  std::function<void()> on_sync;      // runs inside sync (e.g. to hold async jobs in flight)
  std::function<void()> on_set_file_size;  // runs before set_file_size (e.g. another handle grows the file)
  bool refuse_async = false;          // submit_async_fsync declines (ring full)
  int extend_calls = 0;
  int map_calls = 0;

  int fail_at = 0;        // 0: no positional failure
  Error fail_with;
  bool cascade = false;   // every call from fail_at on fails (a system that stays broken)
  bool holes = false;
  bool partial_allocate = false;  // an injected allocate failure first lengthens the file
  mutable int calls = 0;
  mutable std::vector<std::string> trace;  // names of the calls counted, in order
  mutable std::string failed;              // the call that was failed, if any

  std::string_view name() const noexcept override { return real_->name(); }
  const Capabilities& capabilities() const noexcept override { return real_->capabilities(); }
  std::size_t page_size() const noexcept override { return real_->page_size(); }
  Result<FileId> open_file(const char* p, const FileOpen& h) noexcept override {
    if (Error e = inject("open_file")) return e;
    return real_->open_file(p, h);
  }
  Error close_file(FileId fd) noexcept override {
    // A failed close still closes (POSIX leaves the descriptor closed).
    Error e = inject("close_file");
    Error r = real_->close_file(fd);
    return e ? e : r;
  }
  Result<FileStat> stat_file(FileId fd) noexcept override {
    if (Error e = inject("stat_file")) return e;
    return real_->stat_file(fd);
  }
  Error set_file_size(FileId fd, std::uint64_t s, std::uint64_t at_most = UINT64_MAX) noexcept override {
    if (Error e = inject("set_file_size")) return e;
    if (on_set_file_size) on_set_file_size();
    return real_->set_file_size(fd, s, at_most);
  }
  Error allocate(FileId fd, std::uint64_t o, std::uint64_t l) noexcept override {
    if (Error e = inject("allocate")) {
      // A failed posix_fallocate may leave the file longer (ENOSPC midway).
      if (partial_allocate) (void)real_->set_file_size(fd, o + l);
      return e;
    }
    return fail_allocate ? fail_allocate : real_->allocate(fd, o, l);
  }
  Error unlink(const char* p) noexcept override {
    if (Error e = inject("unlink")) return e;
    return real_->unlink(p);
  }
  Error unlink_if_same(const char* p, FileId fd) noexcept override {
    if (Error e = inject("unlink_if_same")) return e;
    return real_->unlink_if_same(p, fd);
  }
  Result<bool> names_file(const char* p, FileId fd) const noexcept override { return real_->names_file(p, fd); }
  Result<FileId> duplicate_file(FileId fd) noexcept override {
    if (Error e = inject("duplicate_file")) return e;
    return real_->duplicate_file(fd);
  }
  Error submit_async_fsync(FileId fd, SyncDone done) noexcept override {
    ++async_fsync_calls;
    if (refuse_async) return Errc::eagain;  // as a full ring: the core's thread does the sync
    return real_->submit_async_fsync(fd, std::move(done));
  }
  Result<void*> reserve(std::size_t l, void* at) noexcept override {
    if (fail_next_reserve) {
      const Error e = fail_next_reserve;
      fail_next_reserve = Error();
      return e;
    }
    if (Error e = inject("reserve")) return e;
    if (room_after && at == nullptr) {
      // Top-down mmap puts the next mapping right above a new one: take
      // more, give the top back, so the range after ours is free.
      constexpr std::size_t kRoom = std::size_t{4} << 30;  // address space only
      auto r = real_->reserve(l + kRoom, nullptr);
      if (r) (void)real_->release(static_cast<char*>(*r) + l, kRoom);
      return r;
    }
    return real_->reserve(l, at);
  }
  Error extend_reservation(void* b, std::size_t o, std::size_t n) noexcept override {
    ++extend_calls;
    if (Error e = inject("extend_reservation")) return e;
    return fail_extend ? fail_extend : real_->extend_reservation(b, o, n);
  }
  Error map_into(void* at, const MapRequest& r) noexcept override {
    ++map_calls;
    if (on_map_into) on_map_into();
    if (Error e = inject("map_into", at, r.length)) return e;
    return fail_map_into ? fail_map_into : real_->map_into(at, r);
  }
  Error zero_fill(void* at, std::size_t l) noexcept override {
    if (Error e = inject("zero_fill", at, l)) return e;
    return real_->zero_fill(at, l);
  }
  Error unreserve_tail(void* at, std::size_t l) noexcept override {
    if (Error e = inject("unreserve_tail", at, l)) return e;
    return real_->unreserve_tail(at, l);
  }
  Error release(void* b, std::size_t l) noexcept override { return real_->release(b, l); }
  Error sync(void* a, std::size_t l, FileId fd, bool ms) noexcept override {
    if (on_sync) on_sync();
    ++sync_calls;
    if (Error e = inject("sync")) return e;
    if (fail_syncs > 0) {
      --fail_syncs;
      return Error(Errc::eio, 5);
    }
    return real_->sync(a, l, fd, ms);
  }
  // Persistent memory: forwarded (persist counted; it can never fail).
  std::atomic<int> persist_calls{0};
  std::atomic<int> async_fsync_calls{0};
  void persist(const void* a, std::size_t l, Persistence p) noexcept override {
    ++persist_calls;
    real_->persist(a, l, p);
  }
  bool pmem_forced() const noexcept override { return real_->pmem_forced(); }
  Persistence dax_persistence() const noexcept override { return real_->dax_persistence(); }
  Result<std::optional<DeviceDax>> device_dax(FileId fd) const noexcept override {
    if (Error e = inject("device_dax")) return e;
    return real_->device_dax(fd);
  }
  Error advise(void* a, std::size_t l, Advice ad) noexcept override {
    if (Error e = inject("advise")) return e;
    return real_->advise(a, l, ad);
  }
  Error lock(void* a, std::size_t l) noexcept override {
    if (Error e = inject("lock")) return e;
    return real_->lock(a, l);
  }
  Result<bool> probe_mapped(void* a, std::size_t l) const noexcept override { return real_->probe_mapped(a, l); }
  Error shared_lock_init(void* m) const noexcept override { return real_->shared_lock_init(m); }
  Result<LockState> shared_lock_acquire(void* m, std::uint32_t w) const noexcept override {
    return real_->shared_lock_acquire(m, w);
  }
  void shared_lock_consistent(void* m) const noexcept override { real_->shared_lock_consistent(m); }
  void shared_lock_release(void* m) const noexcept override { real_->shared_lock_release(m); }
  Result<bool> lock_file(FileId fd, bool ex, bool wait) const noexcept override {
    if (Error e = inject("lock_file")) return e;
    return real_->lock_file(fd, ex, wait);
  }
  void unlock_file(FileId fd) const noexcept override { real_->unlock_file(fd); }

 private:
  Error inject(const char* what, void* at = nullptr, std::size_t len = 0) const {
    ++calls;
    trace.emplace_back(what);
    if (fail_at == 0 || calls < fail_at || (!cascade && calls != fail_at)) return {};
    if (failed.empty()) failed = what;
    if (holes && at != nullptr && len > 0) ::munmap(at, len);  // the old mapping is gone too
    return fail_with;
  }

  std::shared_ptr<MappingBackend> real_;
};

}  // namespace emmap::test
