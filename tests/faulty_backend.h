// A MappingBackend that forwards to the real one but can be told to fail
// chosen calls, so the core's error and fallback paths run on any machine.
#pragma once

#include <functional>
#include <memory>

#include "backend.h"

namespace emmap::test {

class FaultyBackend final : public MappingBackend {
 public:
  explicit FaultyBackend(std::shared_ptr<MappingBackend> real) : real_(std::move(real)) {}

  Error fail_extend;      // extend_reservation answers this when set
  Error fail_allocate;    // allocate answers this when set
  Error fail_map_into;    // map_into answers this when set
  std::function<void()> on_map_into;  // runs inside map_into (e.g. to stall a resize)
  int extend_calls = 0;
  int map_calls = 0;

  std::string_view name() const noexcept override { return real_->name(); }
  const Capabilities& capabilities() const noexcept override { return real_->capabilities(); }
  std::size_t page_size() const noexcept override { return real_->page_size(); }
  Result<FileId> open_file(const char* p, const FileOpen& h) noexcept override { return real_->open_file(p, h); }
  Error close_file(FileId fd) noexcept override { return real_->close_file(fd); }
  Result<FileStat> stat_file(FileId fd) noexcept override { return real_->stat_file(fd); }
  Error set_file_size(FileId fd, std::uint64_t s) noexcept override { return real_->set_file_size(fd, s); }
  Error allocate(FileId fd, std::uint64_t o, std::uint64_t l) noexcept override {
    return fail_allocate ? fail_allocate : real_->allocate(fd, o, l);
  }
  Error unlink(const char* p) noexcept override { return real_->unlink(p); }
  Result<FileId> duplicate_file(FileId fd) noexcept override { return real_->duplicate_file(fd); }
  Error submit_async_fsync(FileId fd, SyncDone done) noexcept override {
    return real_->submit_async_fsync(fd, std::move(done));
  }
  Result<void*> reserve(std::size_t l, void* at) noexcept override { return real_->reserve(l, at); }
  Error extend_reservation(void* b, std::size_t o, std::size_t n) noexcept override {
    ++extend_calls;
    return fail_extend ? fail_extend : real_->extend_reservation(b, o, n);
  }
  Error map_into(void* at, const MapRequest& r) noexcept override {
    ++map_calls;
    if (on_map_into) on_map_into();
    return fail_map_into ? fail_map_into : real_->map_into(at, r);
  }
  Error zero_fill(void* at, std::size_t l) noexcept override { return real_->zero_fill(at, l); }
  Error unreserve_tail(void* at, std::size_t l) noexcept override { return real_->unreserve_tail(at, l); }
  Error release(void* b, std::size_t l) noexcept override { return real_->release(b, l); }
  Error sync(void* a, std::size_t l, FileId fd, bool ms) noexcept override { return real_->sync(a, l, fd, ms); }
  Error advise(void* a, std::size_t l, Advice ad) noexcept override { return real_->advise(a, l, ad); }
  Error lock(void* a, std::size_t l) noexcept override { return real_->lock(a, l); }
  Error shared_lock_init(void* m) const noexcept override { return real_->shared_lock_init(m); }
  Result<LockState> shared_lock_acquire(void* m, bool w) const noexcept override {
    return real_->shared_lock_acquire(m, w);
  }
  void shared_lock_consistent(void* m) const noexcept override { real_->shared_lock_consistent(m); }
  void shared_lock_release(void* m) const noexcept override { real_->shared_lock_release(m); }
  Result<bool> lock_file(FileId fd, bool ex, bool wait) const noexcept override {
    return real_->lock_file(fd, ex, wait);
  }
  void unlock_file(FileId fd) const noexcept override { real_->unlock_file(fd); }

 private:
  std::shared_ptr<MappingBackend> real_;
};

}  // namespace emmap::test
