// A MappingBackend over the real one whose "disk" models a power loss. The
// disk holds what sync() made durable, plus pages the test writes back
// early (a kernel may write any dirty page back at any moment, any number
// of times). crash_image() is one file that could be found after the power
// is cut now: every page is its durable version or, if dirty, possibly its
// current one; the length is the durable one or the current one.
//
// sync() makes the range durable in the model and calls no msync: the
// model is the disk, and the tests stay fast.
//
// With `pmem` the file is persistent memory (the backend says forced, so
// maps persist by flush): the unit that reaches the media is a 64-byte
// cache line, not a page. A store is durable only once persist() flushed
// its line, or when the CPU evicts the line (write_back_random, any dirty
// line at any moment); a crash image holds any subset of the dirty lines.
// A line that reaches the media past the durable length brings the length
// with it (MAP_SYNC: the file's metadata is durable at the write fault). Before every call the
// backend runs `on_call`: the test's crash points (and where it
// interleaves a second handle's operations).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend.h"

namespace emmap::test {

class PowerLossBackend final : public MappingBackend {
 public:
  static constexpr std::size_t kPage = 4096;

  // `durable`: what the disk holds when the model starts (the file's bytes).
  PowerLossBackend(std::shared_ptr<MappingBackend> real, std::string path, std::string durable, bool pmem = false)
      : real_(std::move(real)), path_(std::move(path)), disk_(std::move(durable)), disk_size_(disk_.size()),
        pmem_(pmem), unit_(pmem ? kCacheLine : kPage) {}
  ~PowerLossBackend() override {
    if (fd_ >= 0) ::close(fd_);
  }

  std::function<void()> on_call;  // runs before every backend call
  bool lock_held() const { return lock_depth_ > 0; }
  int syncs() const { return syncs_; }
  int persists() const { return persists_; }

  // The file as the page cache holds it now.
  std::string current() const {
    if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0) return {};
    std::string out(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(done));
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    out.resize(done);
    return out;
  }

  // The kernel writes one dirty page back (and, sometimes, the length).
  void write_back_random(std::mt19937_64& rng) {
    const std::string cur = current();
    std::vector<std::size_t> dirty;
    for (std::size_t p = 0; p * unit_ < cur.size(); ++p) {
      if (unit(disk_, p) != unit(cur, p)) dirty.push_back(p);
    }
    if (!dirty.empty()) store_unit(cur, dirty[rng() % dirty.size()]);
    if (rng() % 3 == 0) disk_size_ = cur.size();
  }

  // The kernel writes page `p` back (its current bytes become durable).
  void write_back_page(std::size_t p) {
    const std::string cur = current();
    if (p * kPage < cur.size()) {
      for (std::size_t u = p * kPage / unit_; u < (p + 1) * kPage / unit_ && u * unit_ < cur.size(); ++u) store_unit(cur, u);
    }
  }

  // What the disk holds if the power goes now and no dirty page made it.
  std::string durable_image() const {
    std::string img = disk_.substr(0, std::min(disk_.size(), disk_size_));
    img.resize(disk_size_, '\0');
    return img;
  }

  // The durable image with pages `pages` as they are now (written back early).
  std::string image_with(const std::vector<std::size_t>& pages) const {
    std::string img = durable_image();
    const std::string cur = current();
    for (std::size_t p : pages) {
      if (p * kPage >= cur.size()) continue;
      const std::size_t n = std::min(kPage, cur.size() - p * kPage);
      if (img.size() < p * kPage + n) img.resize(p * kPage + n, '\0');
      img.replace(p * kPage, n, cur, p * kPage, n);
    }
    return img;
  }

  std::string crash_image(std::mt19937_64& rng) const {
    const std::string cur = current();
    const std::size_t size = rng() % 2 ? disk_size_ : cur.size();
    std::string img(size, '\0');
    for (std::size_t p = 0; p * unit_ < size; ++p) {
      std::string bytes = unit(disk_, p);
      const std::string now = unit(cur, p);
      if (p * unit_ < cur.size() && bytes != now && rng() % 2) bytes = now;
      const std::size_t n = std::min(unit_, size - p * unit_);
      bytes.resize(unit_, '\0');
      img.replace(p * unit_, n, bytes, 0, n);
    }
    return img;
  }

  // ---- MappingBackend --------------------------------------------------------------
  std::string_view name() const noexcept override { return real_->name(); }
  const Capabilities& capabilities() const noexcept override { return real_->capabilities(); }
  std::size_t page_size() const noexcept override { return real_->page_size(); }
  Result<FileId> open_file(const char* p, const FileOpen& h) noexcept override {
    tick();
    return real_->open_file(p, h);
  }
  Error close_file(FileId fd) noexcept override {
    tick();
    return real_->close_file(fd);
  }
  Result<FileStat> stat_file(FileId fd) noexcept override {
    tick();
    return real_->stat_file(fd);
  }
  Error set_file_size(FileId fd, std::uint64_t s, std::uint64_t at_most = UINT64_MAX) noexcept override {
    tick();
    return real_->set_file_size(fd, s, at_most);
  }
  Error allocate(FileId fd, std::uint64_t o, std::uint64_t l) noexcept override {
    tick();
    return real_->allocate(fd, o, l);
  }
  Error unlink(const char* p) noexcept override {
    tick();
    return real_->unlink(p);
  }
  Error unlink_if_same(const char* p, FileId fd) noexcept override {
    tick();
    return real_->unlink_if_same(p, fd);
  }
  Result<bool> names_file(const char* p, FileId fd) const noexcept override { return real_->names_file(p, fd); }
  Result<FileId> duplicate_file(FileId fd) noexcept override {
    tick();
    return real_->duplicate_file(fd);
  }
  Result<void*> reserve(std::size_t l, void* at) noexcept override {
    tick();
    return real_->reserve(l, at);
  }
  Error extend_reservation(void* b, std::size_t o, std::size_t n) noexcept override {
    tick();
    return real_->extend_reservation(b, o, n);
  }
  Error map_into(void* at, const MapRequest& r) noexcept override {
    tick();
    Error e = real_->map_into(at, r);
    if (!e && r.fd != kNoFile) {
      forget(reinterpret_cast<std::uintptr_t>(at), r.length);
      maps_.push_back({reinterpret_cast<std::uintptr_t>(at), r.length, r.file_offset});
    }
    return e;
  }
  Error zero_fill(void* at, std::size_t l) noexcept override {
    tick();
    forget(reinterpret_cast<std::uintptr_t>(at), l);
    return real_->zero_fill(at, l);
  }
  Error unreserve_tail(void* at, std::size_t l) noexcept override {
    tick();
    forget(reinterpret_cast<std::uintptr_t>(at), l);
    return real_->unreserve_tail(at, l);
  }
  Error release(void* b, std::size_t l) noexcept override {
    tick();
    forget(reinterpret_cast<std::uintptr_t>(b), l);
    return real_->release(b, l);
  }
  // fdatasync semantics for the range: its bytes and the file's length. The
  // kernel writes the pages one at a time, in file order: each is taken as
  // it is at that moment, with a crash point (and `between_pages`) before
  // every page but the first.
  std::function<void(std::uint64_t file_page)> between_pages;
  Error sync(void* a, std::size_t l, FileId, bool) noexcept override {
    tick();
    ++syncs_;
    const auto from = reinterpret_cast<std::uintptr_t>(a);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // file byte ranges, in map order
    for (const Map& m : maps_) {
      const std::uintptr_t lo = std::max(from, m.at), hi = std::min(from + l, m.at + m.len);
      if (lo < hi) ranges.emplace_back(m.file_offset + (lo - m.at), m.file_offset + (hi - m.at));
    }
    std::sort(ranges.begin(), ranges.end());
    bool first = true;
    for (const auto& [off, end] : ranges) {
      for (std::uint64_t p = off / kPage * kPage; p < end; p += kPage) {
        if (!first) {
          if (between_pages) between_pages(p / kPage);
          tick();
        }
        first = false;
        const std::string cur = current();  // the page as it is now
        const std::uint64_t lo = std::max(p, off), hi = std::min<std::uint64_t>({p + kPage, end, cur.size()});
        if (lo >= hi) continue;
        if (disk_.size() < hi) disk_.resize(hi, '\0');
        disk_.replace(lo, hi - lo, cur, lo, hi - lo);
      }
    }
    disk_size_ = current().size();
    return {};
  }
  // Persistent memory: the lines of the range reach the media now (taken
  // as they are at this moment); no system call, so no msync in the model.
  void persist(const void* a, std::size_t l, Persistence p) noexcept override {
    tick();
    ++persists_;
    if (p != Persistence::flush || l == 0) return;
    const auto from = reinterpret_cast<std::uintptr_t>(a) / kCacheLine * kCacheLine;
    const auto to = reinterpret_cast<std::uintptr_t>(a) + l;
    const std::string cur = current();
    for (const Map& m : maps_) {
      const std::uintptr_t lo = std::max(from, m.at), hi = std::min(to, m.at + m.len);
      for (std::uintptr_t x = lo; x < hi; x += kCacheLine) {
        const std::uint64_t off = m.file_offset + (x - m.at);
        if (off < cur.size()) store_unit(cur, off / unit_);
      }
    }
  }
  bool pmem_forced() const noexcept override { return pmem_; }
  Persistence dax_persistence() const noexcept override { return Persistence::flush; }
  Result<bool> probe_mapped(void* a, std::size_t l) const noexcept override { return real_->probe_mapped(a, l); }
  Error advise(void* a, std::size_t l, Advice ad) noexcept override {
    tick();
    return real_->advise(a, l, ad);
  }
  Error lock(void* a, std::size_t l) noexcept override {
    tick();
    return real_->lock(a, l);
  }
  Error shared_lock_init(void* m) const noexcept override {
    tick();
    return real_->shared_lock_init(m);
  }
  Result<LockState> shared_lock_acquire(void* m, std::uint32_t w) const noexcept override {
    tick();
    auto r = real_->shared_lock_acquire(m, w);
    if (r && *r != LockState::busy) ++lock_depth_;
    return r;
  }
  void shared_lock_consistent(void* m) const noexcept override { real_->shared_lock_consistent(m); }
  void shared_lock_release(void* m) const noexcept override {
    tick();
    real_->shared_lock_release(m);
    --lock_depth_;
  }
  Result<bool> lock_file(FileId fd, bool ex, bool wait) const noexcept override {
    tick();
    return real_->lock_file(fd, ex, wait);
  }
  void unlock_file(FileId fd) const noexcept override { real_->unlock_file(fd); }

 private:
  struct Map {
    std::uintptr_t at;
    std::size_t len;
    std::uint64_t file_offset;
  };

  void tick() const {
    if (on_call) on_call();
  }

  std::string unit(const std::string& bytes, std::size_t p) const {
    if (p * unit_ >= bytes.size()) return std::string(unit_, '\0');
    std::string s = bytes.substr(p * unit_, unit_);
    s.resize(unit_, '\0');
    return s;
  }
  // Unit `p` (a page, or a line with pmem) of `cur` reaches the disk.
  void store_unit(const std::string& cur, std::size_t p) {
    const std::size_t off = p * unit_, n = std::min(unit_, cur.size() - off);
    if (disk_.size() < off + n) disk_.resize(off + n, '\0');
    disk_.replace(off, n, cur, off, n);
    if (pmem_ && off + n > disk_size_) disk_size_ = cur.size();  // MAP_SYNC: the length came with it
  }
  // [at, at+len) no longer maps the file (cut the ranges it covers).
  void forget(std::uintptr_t at, std::size_t len) {
    std::vector<Map> kept;
    for (const Map& m : maps_) {
      if (m.at + m.len <= at || at + len <= m.at) {
        kept.push_back(m);
        continue;
      }
      if (m.at < at) kept.push_back({m.at, at - m.at, m.file_offset});
      if (m.at + m.len > at + len) {
        const std::uintptr_t s = at + len;
        kept.push_back({s, m.at + m.len - s, m.file_offset + (s - m.at)});
      }
    }
    maps_.swap(kept);
  }

  std::shared_ptr<MappingBackend> real_;
  std::string path_;
  std::string disk_;
  std::size_t disk_size_;
  std::vector<Map> maps_;
  mutable int fd_ = -1;
  mutable int lock_depth_ = 0;
  int syncs_ = 0;
  int persists_ = 0;
  bool pmem_ = false;
  std::size_t unit_ = kPage;
};

}  // namespace emmap::test
