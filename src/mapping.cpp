#include "mapping.h"

#include "background.h"

#include <atomic>
#include <cstring>
#include <limits>
#include <tuple>

namespace emmap {

namespace {

constexpr std::uint64_t kHeadroom = 1ull << 30;  // address space reserved for growth, per map
constexpr std::uint64_t kMaxMapLen = 1ull << 46;  // 64 TiB: beyond any real map, below the VA limit

constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t g) { return (v + g - 1) / g * g; }

}  // namespace

// Unlinks the file (auto_unlink) once every generation and the handle are gone.
class Mapping::FileLife {
 public:
  FileLife(std::shared_ptr<MappingBackend> b, std::string path, bool unlink)
      : backend_(std::move(b)), path_(std::move(path)), unlink_(unlink) {}
  ~FileLife() {
    if (unlink_) (void)backend_->unlink(path_.c_str());
  }
  void disarm() noexcept { unlink_ = false; }  // the open failed: the file is not ours to remove

 private:
  std::shared_ptr<MappingBackend> backend_;
  std::string path_;
  bool unlink_;
};

Region::~Region() {
  for (int& g : guards_) unguard_range(g);  // before the range can be handed to somebody else
  if (leak_) return;                        // pieces of it may be somebody else's
  if (lost_to_ > lost_from_) {
    char* const end = alloc_ + alloc_len_;
    if (base_ + lost_from_ > alloc_) (void)backend_->release(alloc_, static_cast<std::size_t>(base_ + lost_from_ - alloc_));
    if (end > base_ + lost_to_) (void)backend_->release(base_ + lost_to_, static_cast<std::size_t>(end - (base_ + lost_to_)));
    return;
  }
  (void)backend_->release(alloc_, alloc_len_);
}

void Region::guard() noexcept {
  if (!guarded_) return;
  int fresh[kMaxGuards] = {-1, -1};
  int n = 0;
  auto piece = [&](char* from, char* to) {
    if (to > from && n < kMaxGuards) fresh[n++] = guard_range(from, static_cast<std::size_t>(to - from), &truncated_);
  };
  if (lost_taken_) {
    if (!leak_) {
      piece(alloc_, base_ + lost_from_);
      piece(base_ + lost_to_, alloc_ + alloc_len_);
    }
  } else {
    piece(alloc_, alloc_ + alloc_len_);
  }
  // The new guards are in place before the old ones go: no moment is
  // unguarded. If the table had no room for one of them, the old guards
  // stay (they still cover what was reserved before).
  bool all = true;
  for (int i = 0; i < n; ++i) all = all && fresh[i] >= 0;
  if (!all && (guards_[0] >= 0 || guards_[1] >= 0)) {
    for (int i = 0; i < n; ++i) unguard_range(fresh[i]);
    return;
  }
  for (int& g : guards_) unguard_range(g);
  for (int i = 0; i < kMaxGuards; ++i) guards_[i] = fresh[i];
}

void Region::lose(std::size_t from, std::size_t to, bool taken) noexcept {
  if (lost_to_ > lost_from_) {
    leak_ = true;  // a second one: keep no account, release nothing
  } else {
    lost_from_ = from;
    lost_to_ = to;
  }
  lost_taken_ = lost_taken_ || taken;
  reserved_ = std::min(reserved_, from);
  guard();
}

std::uint64_t resize_policy(std::uint64_t current, std::uint64_t max_inc, std::size_t page) noexcept {
  if (max_inc == 0) max_inc = kDefaultMaxIncSize;
  std::uint64_t next;
  if (current == 0) {
    next = page;
  } else if (current < max_inc) {
    next = current * 2;  // current < max_inc <= 2^64-1, but doubling may still wrap
    if (next < current) return 0;
  } else {
    if (current > std::numeric_limits<std::uint64_t>::max() - max_inc) return 0;
    next = current + max_inc;
  }
  return next;
}

std::size_t Mapping::granularity() const noexcept {
  if (devdax_align_) return static_cast<std::size_t>(devdax_align_);  // the device refuses anything else
  switch (options_.huge) {
    case HugePages::none: return backend_->page_size();
    case HugePages::default_size:
    case HugePages::size_2mb: return 2u << 20;
    case HugePages::size_1gb: return 1u << 30;
  }
  return backend_->page_size();
}

MapRequest Mapping::request(std::size_t from, std::size_t to) const noexcept {
  MapRequest r;
  r.fd = fd_;
  r.file_offset = fd_ == kNoFile ? 0 : aligned_offset_ + from;
  r.length = to - from;
  r.writable = options_.write;
  r.sharing = options_.sharing;
  r.populate = options_.populate;
  r.nocache = options_.nocache;
  r.noreserve = options_.noreserve;
  r.uninitialized = options_.uninitialized;
  r.map_sync = options_.map_sync;
  r.nosync = options_.auto_unlink;  // the file is thrown away: periodic flushing is wasted I/O
  r.huge = options_.huge;
  return r;
}

Result<std::shared_ptr<Region>> Mapping::new_region(std::size_t map_len, void* at) noexcept {
  const std::size_t gran = granularity();
  const std::size_t page = backend_->page_size();
  // A fixed address or a fixed size never grows: no head-room, just a guard
  // page that catches overruns.
  const bool growable = at == nullptr && !options_.fixed_size && backend_->capabilities().resize;
  std::size_t want = map_len + (growable ? std::max<std::size_t>(map_len, kHeadroom) : 0) + gran;
  const std::size_t slack = at == nullptr && gran > page ? gran : 0;  // to align huge pages
  Result<void*> r = backend_->reserve(want + slack, at);
  if (!r && growable) {
    want = map_len + gran;  // the address space is fragmented: settle for no head-room
    r = backend_->reserve(want + slack, at);
  }
  if (!r) return r.error();
  char* alloc = static_cast<char*>(*r);
  char* base = reinterpret_cast<char*>(round_up(reinterpret_cast<std::uintptr_t>(alloc), gran));
  std::shared_ptr<Region> region;
  try {
    region = std::make_shared<Region>(backend_, alloc, want + slack, base, want, file_);
  } catch (...) {
    (void)backend_->release(alloc, want + slack);
    return Error(Errc::enomem);
  }
  if (map_len > 0) {
    if (Error e = backend_->map_into(base, request(0, map_len))) return e;  // the region goes, mapped or not
    if (options_.mlock) {
      if (Error e = backend_->lock(base, map_len)) return e;
    }
  }
  region->readable_ = map_len;
  region->guarded_ = true;
  region->guard();
  return region;
}

void Mapping::restore(std::size_t from, std::size_t to) noexcept {
  Region& r = *region_;
  char* const base = r.base_;
  auto whole = backend_->probe_mapped(base + from, to - from);
  if (whole && *whole) return;  // the failure changed nothing (Linux 6.12+, or it failed early)
  // A hole: take it back while it is free (exactly there, never over
  // somebody else's memory), then put zeros where reads were allowed.
  auto back = backend_->reserve(to - from, base + from);
  if (back) {
    const std::size_t zero_to = std::min(to, std::max(from, r.readable_));
    if (zero_to > from) (void)backend_->zero_fill(base + from, zero_to - from);  // else the guard answers reads
    return;
  }
  // eexist: somebody mapped into the hole meanwhile. Anything else: it is
  // still free, we just could not map it.
  r.lose(from, to, back.error() == Errc::eexist);
}

Result<Mapping::Opened> Mapping::open(std::string_view path, std::uint64_t offset, std::uint64_t length,
                                      const OpenOptions& o, std::shared_ptr<MappingBackend> backend) {
  if (!backend) return Error(Errc::einval);
  const Capabilities& caps = backend->capabilities();
  const std::size_t page = backend->page_size();

  // ---- options that contradict each other or this platform ----
  if (o.fixed && o.address == 0) return Error(Errc::einval);
  if (o.address % page != 0) return Error(Errc::einval);
  if (o.map_sync && (o.sharing == Sharing::private_ || o.anonymous)) return Error(Errc::einval);
  // dax_if_available on a private or anonymous map changes nothing: such a
  // map is never on DAX, and the option's point is not to fail where not.
  if (o.truncate && !o.write) return Error(Errc::einval);
  if (o.anonymous && offset != 0) return Error(Errc::einval);
  if (!o.anonymous && path.find('\0') != std::string_view::npos) return Error(Errc::einval);
  // Forced persistent memory (tests, development): no MAP_SYNC is asked for.
  const bool forced = !o.anonymous && o.write && o.sharing != Sharing::private_ && backend->pmem_forced();
  if (o.map_sync && !caps.map_sync && !forced) return Error(Errc::eopnotsupp);
  if (o.huge != HugePages::none && (!caps.huge_pages || !o.anonymous)) return Error(Errc::eopnotsupp);

  std::shared_ptr<Mapping> m;
  try {
    m.reset(new Mapping());
    m->path_.assign(path);
  } catch (...) {
    return Error(Errc::enomem);
  }
  m->backend_ = backend;
  m->options_ = o;
  if (o.nonblock) m->ignored_ |= kIgnoredNonblock;  // MAP_NONBLOCK has been a no-op since Linux 2.6.23
  // noreserve also keeps a shared writable file's holes sparse (see below).
  if (o.noreserve && !caps.noreserve && (o.anonymous || !o.write || o.sharing == Sharing::private_))
    m->ignored_ |= kIgnoredNoreserve;
  if (o.nocache && !caps.nocache) m->ignored_ |= kIgnoredNocache;
  if (o.uninitialized && (!caps.uninitialized || !o.anonymous)) m->ignored_ |= kIgnoredUninitialized;
  if (o.sharing == Sharing::shared_validate && !caps.shared_validate) m->ignored_ |= kIgnoredSharedValidate;

  // ---- the file ----
  bool existed = false;
  bool regular = false;
  std::uint64_t file_size = 0;
  // On failure the half-made Mapping's destructor closes the descriptor; a
  // file this call created is removed again.
  auto fail = [&](Error e) -> Result<Opened> {
    if (m->file_) m->file_->disarm();
    if (!existed && !o.anonymous && m->fd_ != kNoFile) (void)backend->unlink(m->path_.c_str());
    return e;
  };
  if (!o.anonymous) {
    FileOpen how;
    how.write = o.write;
    how.truncate = o.truncate;
    how.mode = o.mode;
    Result<FileId> fd = Error(Errc::enoent);
    if (o.create) {
      how.create = how.exclusive = true;
      fd = backend->open_file(m->path_.c_str(), how);
      if (!fd && fd.error() == Errc::eexist) {
        how.create = how.exclusive = false;
        fd = backend->open_file(m->path_.c_str(), how);
        existed = true;
      }
    } else {
      fd = backend->open_file(m->path_.c_str(), how);
      existed = true;
    }
    if (!fd) return fd.error();
    m->fd_ = *fd;
    auto st = backend->stat_file(m->fd_);
    if (!st) return fail(st.error());
    file_size = st->size;
    regular = st->regular;
    auto dd = backend->device_dax(m->fd_);
    if (!dd) return fail(dd.error());
    if (*dd) {
      // Device DAX: no file system under it (nothing to truncate, allocate
      // or resize), shared maps only, aligned to the device's alignment.
      const DeviceDax dev = **dd;
      // Never destructive: no truncate, no auto_unlink (it would remove the
      // device node); an address of one's own must be aligned like the map.
      if (o.truncate || o.auto_unlink || o.sharing == Sharing::private_ || o.address % dev.align != 0)
        return fail(Errc::einval);
      const std::uint64_t want = length ? length : o.size && !o.fit ? *o.size : 0;
      if (offset % dev.align || want % dev.align || offset > dev.size || want > dev.size - offset)
        return fail(Errc::einval);
      m->devdax_align_ = dev.align;
      m->options_.fixed_size = true;
      m->options_.map_sync = false;  // synchronous by nature: no file system metadata
      m->persistence_ = backend->dax_persistence();
      file_size = dev.size;
      regular = false;
      length = want ? want : dev.size - offset;
    }
  }
  if (!m->devdax_align_ && forced) {
    m->options_.map_sync = false;
    m->persistence_ = backend->dax_persistence();
    m->pmem_forced_ = m->persistence_ != Persistence::msync;
  } else if (!m->devdax_align_ && o.map_sync) {
    m->persistence_ = backend->dax_persistence();
  }
  // dax_if_available: MAP_SYNC is tried when the memory is mapped (below).
  const bool try_dax = !m->devdax_align_ && !forced && !o.map_sync && o.dax_if_available && !o.anonymous &&
                       o.sharing != Sharing::private_ && caps.map_sync;

  // ---- the length ----
  std::uint64_t len = length;
  if (len == 0) {
    // `fit`: an existing file's own length wins, unless it is empty (a file
    // created and not yet written, e.g. by a crash right after creation).
    const bool use_size = o.size && !(o.fit && existed && file_size > 0);
    len = use_size ? *o.size : (file_size > offset ? file_size - offset : 0);
  }
  if (offset > std::numeric_limits<std::uint64_t>::max() - len) return fail(Errc::einval);
  if (len > kMaxMapLen || offset > kMaxMapLen * 1024) return fail(Errc::enomem);
  if (!o.anonymous && o.write && !m->devdax_align_) {
    // Blocks for what the map adds past the end, and for the holes of a
    // file someone made sparse (a store there on a full disk would be a
    // SIGBUS): not for `noreserve`, private maps (their stores never reach
    // the file) or devices.
    m->fill_holes_ = regular && !o.noreserve && o.sharing != Sharing::private_;
    const std::uint64_t from = m->fill_holes_ ? std::min(offset, file_size) : file_size;
    // A failure leaves the length as it was (the backend's contract): there
    // is nothing to undo, and undoing could cut a range another handle
    // grew meanwhile.
    if (offset + len > from) {
      if (Error e = backend->allocate(m->fd_, from, offset + len - from)) return fail(e);
    }
  } else if (!o.anonymous && offset + len > file_size) {
    len = file_size > offset ? file_size - offset : 0;  // read-only: the file is what it is
  }

  // ---- the memory ----
  const std::size_t gran = m->granularity();
  m->aligned_offset_ = offset - offset % gran;
  m->delta_ = static_cast<std::size_t>(offset % gran);
  const std::size_t map_len = len == 0 ? 0 : round_up(m->delta_ + len, gran);
  if (o.auto_unlink && !o.anonymous) {
    try {
      m->file_ = std::make_shared<FileLife>(backend, m->path_, true);
    } catch (...) {
      return fail(Errc::enomem);
    }
  }
  if (try_dax) m->options_.map_sync = true;
  auto region = m->new_region(map_len, reinterpret_cast<void*>(o.address));
  if (try_dax) {
    if (region) {
      m->persistence_ = backend->dax_persistence();
    } else if (region.error() == Errc::eopnotsupp || region.error() == Errc::einval) {
      m->options_.map_sync = false;  // not on DAX: an ordinary shared map
      region = m->new_region(map_len, reinterpret_cast<void*>(o.address));
    }
  }
  if (!region) return fail(region.error());
  m->region_ = std::move(*region);
  m->data_ = m->region_->base() + m->delta_;
  m->size_ = len;
  m->size_seen_.store(len, std::memory_order_relaxed);
  m->mapped_len_ = map_len;
  return Opened{std::move(m), existed};
}

Mapping::~Mapping() { close(); }

void Mapping::close() noexcept {
  gate_.lock();
  region_.reset();  // unmapped now, or when the last pin goes
  file_.reset();
  if (fd_ != kNoFile) (void)backend_->close_file(fd_);
  fd_ = kNoFile;
  data_ = nullptr;
  closed_.store(true, std::memory_order_release);
  gate_.unlock();
}

bool Mapping::closed() const noexcept { return closed_.load(std::memory_order_acquire); }

std::uint64_t Mapping::size() const noexcept { return size_seen_.load(std::memory_order_relaxed); }

Result<std::size_t> Mapping::read(std::uint64_t pos, void* dst, std::size_t len, Wait w) noexcept {
  return with_range(
      pos, len,
      [dst](const char* p, std::size_t n, Region&) -> Result<std::size_t> {
        if (n > 0) std::memcpy(dst, p, n);
        return n;
      },
      w);
}

Error Mapping::write(std::uint64_t pos, const void* src, std::size_t len, Wait w) noexcept {
  return with_writable(
      pos, len,
      [this, src](char* p, std::size_t n) -> Error {
        store(p, src, n);
        return {};
      },
      w);
}

Result<std::shared_ptr<Region>> Mapping::pin() noexcept {
  AccessGate::Reader in(gate_);
  if (!region_) return Error(Errc::closed);
  return region_;
}

// ---- atomics ---------------------------------------------------------------

// The atomics are inline (mapping.h), so callers built against this header
// need no call; their symbols stay in the library for programs built when
// they were not (taking their addresses emits them here, exported).
[[gnu::used]] const auto kExportedAtomics = std::make_tuple(
    &Mapping::atomic_fetch, &Mapping::atomic_cas, &Mapping::atomic_load, &Mapping::atomic_store);

// ---- size and durability -------------------------------------------------

Result<std::uint64_t> Mapping::resize(std::uint64_t new_size) noexcept {
  gate_.lock();
  auto r = resize_locked(new_size);
  gate_.unlock();
  return r;
}

Result<std::uint64_t> Mapping::ensure_size(std::uint64_t min_size, bool grow_file) noexcept {
  gate_.lock();
  Result<std::uint64_t> r = size_;
  if (!region_) {
    r = Error(Errc::closed);
  } else if (size_ < min_size) {
    std::uint64_t target = min_size;
    if (!grow_file && fd_ != kNoFile) {
      auto st = backend_->stat_file(fd_);
      const std::uint64_t offset = aligned_offset_ + delta_;
      if (!st) {
        target = 0;
        r = st.error();
      } else {
        target = std::min(min_size, st->size > offset ? st->size - offset : 0);
      }
    }
    if (target > size_) r = resize_locked(target);
  }
  gate_.unlock();
  return r;
}

Result<std::uint64_t> Mapping::grow() noexcept {
  // The size is read under the same exclusive gate as the resize: two
  // concurrent grows never set a size below one already reached.
  gate_.lock();
  Result<std::uint64_t> r = Error(Errc::closed);
  if (region_) {
    const std::uint64_t next = resize_policy(size_, options_.max_inc_size, backend_->page_size());
    r = next == 0 ? Result<std::uint64_t>(Error(Errc::efbig)) : resize_locked(next);
  }
  gate_.unlock();
  return r;
}

Result<std::uint64_t> Mapping::follow_file() noexcept {
  gate_.lock();
  Result<std::uint64_t> r = size_;
  if (!region_) {
    r = Error(Errc::closed);
  } else if (fd_ != kNoFile) {
    auto st = backend_->stat_file(fd_);
    const std::uint64_t offset = aligned_offset_ + delta_;
    if (!st) {
      r = st.error();
    } else {
      const std::uint64_t target = st->size > offset ? st->size - offset : 0;
      if (target != size_) r = resize_locked(target, false);
    }
  }
  gate_.unlock();
  return r;
}

Error Mapping::announce(bool wait) noexcept {
  if (announced_.load(std::memory_order_acquire)) return {};
  AccessGate::Reader in(gate_);
  if (!region_) return Errc::closed;
  if (fd_ == kNoFile) return {};  // anonymous memory: nobody else can map it
  auto r = backend_->lock_file(fd_, false, wait);
  if (!r) return r.error();
  if (!*r) return Errc::ebusy;
  announced_.store(true, std::memory_order_release);
  return {};
}

Result<bool> Mapping::try_alone() noexcept {
  AccessGate::Reader in(gate_);
  if (!region_) return Error(Errc::closed);
  if (fd_ == kNoFile) return true;
  auto r = backend_->lock_file(fd_, true, false);
  if (r && !*r && announced_.load(std::memory_order_acquire)) {
    // A failed conversion may have dropped the shared lock: take it again.
    auto back = backend_->lock_file(fd_, false, true);
    if (!back) return back.error();
  }
  return r;
}

void Mapping::end_alone() noexcept {
  AccessGate::Reader in(gate_);
  if (!region_ || fd_ == kNoFile) return;
  if (announced_.load(std::memory_order_acquire)) {
    (void)backend_->lock_file(fd_, false, true);  // back to shared
  } else {
    backend_->unlock_file(fd_);
  }
}

Result<FileId> Mapping::duplicate_file() noexcept {
  AccessGate::Reader in(gate_);
  if (!region_) return Error(Errc::closed);
  if (fd_ == kNoFile) return Error(Errc::einval);
  return backend_->duplicate_file(fd_);
}

Result<std::uint64_t> Mapping::resize_locked(std::uint64_t new_size, bool change_file) noexcept {
  if (!region_) return Error(Errc::closed);
  if (options_.fixed_size || !backend_->capabilities().resize) return Error(Errc::fixed_size);
  if (new_size > kMaxMapLen) return Error(Errc::enomem);
  if (new_size == size_) return new_size;
  const std::size_t gran = granularity();
  const std::size_t new_map = new_size == 0 ? 0 : round_up(delta_ + new_size, gran);
  std::uint64_t file_size = 0;
  if (fd_ != kNoFile) {
    auto st = backend_->stat_file(fd_);
    if (!st) return st.error();
    file_size = st->size;
  }
  return new_size > size_ ? grow_locked(new_size, new_map, file_size, change_file)
                          : shrink_locked(new_size, new_map, file_size, change_file);
}

// Growth: the file (blocks reserved), then the address space (in place,
// in an extended reservation, or in a new generation). Any failure leaves
// the map as it was; the file keeps a length it reached (see below).
Result<std::uint64_t> Mapping::grow_locked(std::uint64_t new_size, std::size_t new_map, std::uint64_t file_size,
                                           bool change_file) noexcept {
  const std::uint64_t user_offset = aligned_offset_ + delta_;
  if (fd_ != kNoFile) {
    const std::uint64_t end = user_offset + new_size;
    if (end > file_size) {
      if (!change_file) return Error(Errc::einval);  // the file changed again meanwhile
      if (!options_.write) return Error(Errc::eacces);
    }
    if (options_.write) {
      // Following a file someone else changed (change_file false) never
      // changes it: no blocks, and allocate could raise a length cut meanwhile.
      const std::uint64_t from = fill_holes_ && change_file ? std::min(user_offset + size_, file_size) : file_size;
      if (end > from) {
        if (Error e = backend_->allocate(fd_, from, end - from)) return e;
      }
    }
  }
  // Past this point the file keeps the length it reached: another handle,
  // here or in another process, may map and write that range already.
  auto fail = [](Error e) -> Result<std::uint64_t> { return e; };
  if (new_map > mapped_len_) {
    Region& r = *region_;
    const std::size_t gran = granularity();
    // Keep a guard page after the map: grow in place only while it fits.
    bool in_place = new_map < r.reserved_;
    if (!in_place && options_.address == 0 && backend_->capabilities().extend_in_place && !r.leak_ &&
        r.lost_to_ == 0 && r.alloc_ + r.alloc_len_ == r.base_ + r.reserved_) {
      const std::size_t want = new_map + std::max<std::size_t>(new_map, kHeadroom) + gran;
      const std::size_t more = want - r.reserved_;
      if (!backend_->extend_reservation(r.alloc_, r.alloc_len_, r.alloc_len_ + more)) {
        r.alloc_len_ += more;
        r.reserved_ = want;
        r.guard();  // the grown reservation is guarded before the old guard goes
        in_place = true;
      }
    }
    if (in_place) {
      char* const base = r.base_;
      if (Error e = backend_->map_into(base + mapped_len_, request(mapped_len_, new_map))) {
        restore(mapped_len_, new_map);
        return fail(e);
      }
      if (options_.mlock) {
        if (Error e = backend_->lock(base + mapped_len_, new_map - mapped_len_)) {
          // Not what was asked for: back to zeros / reservation, as before.
          const std::size_t zero_to = std::min(new_map, std::max(mapped_len_, r.readable_));
          Error z = zero_to > mapped_len_ ? backend_->zero_fill(base + mapped_len_, zero_to - mapped_len_) : Error();
          Error u = new_map > zero_to ? backend_->unreserve_tail(base + zero_to, new_map - zero_to) : Error();
          if (z || u) restore(mapped_len_, new_map);
          return fail(e);
        }
      }
      r.readable_ = std::max(r.readable_, new_map);
    } else {
      if (options_.address != 0) return fail(Errc::enomem);  // a fixed map cannot move
      auto fresh = new_region(new_map, nullptr);
      if (!fresh) return fail(fresh.error());
      // Private and anonymous memory lives only in the old generation: carry
      // it over. Shared file pages are the same page-cache pages already.
      if (fd_ == kNoFile || options_.sharing == Sharing::private_)
        std::memcpy((*fresh)->base() + delta_, data_, size_);
      region_ = std::move(*fresh);  // the old one lives on while pinned
      data_ = region_->base() + delta_;
    }
  }
  mapped_len_ = std::max(mapped_len_, new_map);
  size_ = new_size;
  size_seen_.store(new_size, std::memory_order_relaxed);
  return new_size;
}

// Shrinking: the tail of the map becomes read-only zero pages first, so a
// view taken before reads zeros there and never touches a page past the
// file's end (a fault there, taken by a thread that is then preempted,
// could not be told from a truncation by somebody else). Then the file.
// If the file refuses, its pages are mapped back and nothing changed.
Result<std::uint64_t> Mapping::shrink_locked(std::uint64_t new_size, std::size_t new_map, std::uint64_t file_size,
                                             bool change_file) noexcept {
  const std::uint64_t user_offset = aligned_offset_ + delta_;
  Region& r = *region_;
  const bool tail = new_map < mapped_len_;
  // Puts the file's pages back over [new_map, mapped_len_); if even that
  // fails the bytes there cannot be served: the map ends at new_size (the
  // file keeps its length), which is consistent if not what was asked.
  auto put_back = [&](Error e) -> Result<std::uint64_t> {
    if (!backend_->map_into(r.base_ + new_map, request(new_map, mapped_len_))) return e;
    restore(new_map, mapped_len_);
    mapped_len_ = new_map;
    size_ = new_size;
    size_seen_.store(new_size, std::memory_order_relaxed);
    return e;
  };
  if (tail) {
    if (Error e = backend_->zero_fill(r.base_ + new_map, mapped_len_ - new_map)) {
      auto whole = backend_->probe_mapped(r.base_ + new_map, mapped_len_ - new_map);
      if (whole && *whole) return e;  // the failure changed nothing: the tail is still there
      // The failed call took the tail away (a hole): what the shrink was for.
      // Take the hole back as zeros and go on.
      restore(new_map, mapped_len_);
    }
  }
  // Give the file back its bytes only where we made them: a shared,
  // writable map that reached the end of the file.
  if (change_file && fd_ != kNoFile && options_.write && options_.sharing != Sharing::private_ &&
      user_offset + size_ >= file_size) {
    // Only if no other handle grew it past this map's end meanwhile: its
    // range is not ours to cut.
    if (Error e = backend_->set_file_size(fd_, user_offset + new_size, user_offset + size_))
      return tail ? put_back(e) : Result<std::uint64_t>(e);
  }
  if (tail) mapped_len_ = new_map;
  size_ = new_size;
  size_seen_.store(new_size, std::memory_order_relaxed);
  return new_size;
}

Error Mapping::sync(std::uint64_t pos, std::uint64_t len) noexcept {
  AccessGate::Reader in(gate_);
  if (!region_) return Errc::closed;
  return sync_inside(pos, len);
}

Error Mapping::sync_inside(std::uint64_t pos, std::uint64_t len) noexcept {
  if (pos > size_) return Errc::einval;
  len = std::min(len, size_ - pos);
  if (len == 0) return {};
  if (persistence_ != Persistence::msync) {
    // Persistent memory: exactly the range's lines, no system call. A
    // flush touches the page like a load: a page lost to truncation is
    // caught by the guard and answered as for any access.
    if (Error e = begin_access()) return e;
    backend_->persist(data_ + pos, static_cast<std::size_t>(len), persistence_);
    return access_faulted();
  }
  const std::size_t page = backend_->page_size();
  const auto start = reinterpret_cast<std::uintptr_t>(data_ + pos) / page * page;
  const auto end = reinterpret_cast<std::uintptr_t>(data_ + pos) + len;
  return backend_->sync(reinterpret_cast<void*>(start), end - start, fd_, options_.map_sync);
}

Error Mapping::sync() noexcept { return sync(0, std::numeric_limits<std::uint64_t>::max()); }

namespace {
// Async sync jobs in flight in the process. A tight loop of sync_async
// calls otherwise queues without bound, a duplicate descriptor each, until
// the process has no descriptor left for anything else.
std::atomic<int> g_async_syncs{0};
}  // namespace

Error Mapping::sync_async(SyncDone user_done) noexcept {
  if (g_async_syncs.fetch_add(1, std::memory_order_relaxed) >= kMaxAsyncSyncs) {
    g_async_syncs.fetch_sub(1, std::memory_order_relaxed);
    return Errc::eagain;
  }
  struct Slot {  // gives the place back unless a job took it over
    bool held = true;
    ~Slot() {
      if (held) g_async_syncs.fetch_sub(1, std::memory_order_relaxed);
    }
  } slot;
  SyncDone done;
  try {
    done = [user_done = std::move(user_done)](Error e) {
      g_async_syncs.fetch_sub(1, std::memory_order_relaxed);  // first: the reply may ask for the next one
      user_done(e);
    };
  } catch (...) {
    return Errc::enomem;
  }
  // Everything the job needs is taken under the gate, so a close or resize
  // meanwhile cannot pull it away: a duplicate descriptor, and (for the
  // thread path) a pin on the memory, which stays mapped until the job ends.
  FileId dup = kNoFile;
  std::shared_ptr<Region> pinned;
  void* start = nullptr;
  std::size_t len = 0;
  {
    AccessGate::Reader in(gate_);
    if (!region_) return Errc::closed;
    if (fd_ != kNoFile && options_.sharing != Sharing::private_) {
      auto d = backend_->duplicate_file(fd_);
      if (!d) return d.error();
      dup = *d;
      const std::size_t page = backend_->page_size();
      const auto first = reinterpret_cast<std::uintptr_t>(data_) / page * page;
      start = reinterpret_cast<void*>(first);
      len = static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(data_) + size_ - first);
      pinned = region_;
    }
  }
  // Persistent memory: the background thread flushes the whole map (no
  // system call, so no io_uring either).
  const Persistence persistence = persistence_;
  if (dup != kNoFile && persistence == Persistence::msync && backend_->capabilities().async_fsync) {
    if (!backend_->submit_async_fsync(dup, done)) {
      slot.held = false;  // the completion gives it back
      return {};
    }
    // Not taken (ring full): the thread below does it.
  }
  auto backend = backend_;
  const bool map_sync = options_.map_sync;
  const bool queued = run_in_background([=, pinned = std::move(pinned), done = std::move(done)] {
    Error e;
    if (dup != kNoFile) {
      if (persistence != Persistence::msync) {
        // As sync/1 answers: a lost page is an error, not a flushed one.
        if (pinned->truncated()) {
          e = Errc::truncated;
        } else if (len) {
          t_fault = kFaultNone;
          backend->persist(start, len, persistence);
          e = access_faulted();
        }
      } else {
        e = len ? backend->sync(start, len, dup, map_sync) : Error();
      }
      (void)backend->close_file(dup);
    }
    done(e);
  });
  if (!queued) {
    if (dup != kNoFile) (void)backend_->close_file(dup);
    return Errc::enomem;
  }
  slot.held = false;
  return {};
}

Error Mapping::advise(std::uint64_t pos, std::uint64_t len, Advice advice) noexcept {
  AccessGate::Reader in(gate_);
  if (!region_) return Errc::closed;
  if (pos > size_) return Errc::einval;
  len = std::min(len, size_ - pos);
  if (len == 0) return {};
  const std::size_t page = backend_->page_size();
  const auto start = reinterpret_cast<std::uintptr_t>(data_ + pos) / page * page;
  const auto end = reinterpret_cast<std::uintptr_t>(data_ + pos) + len;
  return backend_->advise(reinterpret_cast<void*>(start), end - start, advice);
}

}  // namespace emmap
