#include "queue.h"

#include <atomic>
#include <cstring>

#include "crc32c.h"

namespace emmap::queue {
namespace {

constexpr char kMagic[8] = {'E', 'M', 'M', 'A', 'P', 'Q', 'U', 'E'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kRecMagic = 0x51520000u;
constexpr std::uint64_t kRecHeader = 24;
constexpr std::uint64_t kLockOffset = 256;
constexpr std::uint64_t kMinCapacity = 4096;

struct State {
  std::uint64_t head, tail, wrap, capacity, count, pop_seq, push_seq;
  std::uint32_t crc, zero;
};
static_assert(sizeof(State) == 64);

struct Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t header_size;
  std::uint64_t current;
  std::uint64_t initial;
  char boot[32];
  State slot[2];
};
static_assert(sizeof(Header) <= kLockOffset);

constexpr std::uint64_t round8(std::uint64_t v) { return (v + 7) & ~std::uint64_t{7}; }
constexpr std::uint64_t rec_size(std::uint64_t len) { return round8(kRecHeader + len); }

std::uint32_t state_crc(const State& s) { return crc32c(0, &s, offsetof(State, crc)); }

std::uint32_t record_crc(std::uint32_t kind_word, std::uint32_t len, std::uint64_t seq, const void* payload) {
  unsigned char head[16];
  std::memcpy(head, &kind_word, 4);
  std::memcpy(head + 4, &len, 4);
  std::memcpy(head + 8, &seq, 8);
  return crc32c(crc32c(0, head, sizeof head), payload, len);
}

// The queue seen through the map (valid inside Mapping::with_map).
struct View {
  char* base;
  std::uint64_t avail;  // bytes of data area the map holds
  Header* h;
  char* data;

  View(char* b, std::uint64_t size)
      : base(b), avail(size > kHeaderSize ? size - kHeaderSize : 0), h(reinterpret_cast<Header*>(b)),
        data(b + kHeaderSize) {}

  bool formatted() const { return std::memcmp(h->magic, kMagic, sizeof kMagic) == 0 && h->version == kVersion; }
  std::atomic_ref<std::uint64_t> current() const { return std::atomic_ref<std::uint64_t>(h->current); }
  const State& live() const { return h->slot[current().load(std::memory_order_acquire) & 1]; }

  void commit(State next) const {
    next.crc = state_crc(next);
    next.zero = 0;
    const std::uint64_t other = (current().load(std::memory_order_relaxed) & 1) ^ 1;
    h->slot[other] = next;
    current().store(other, std::memory_order_release);  // the commit point: one 8-byte store
  }

  // A record at `pos` that ends by `limit`, with sequence `seq`: its payload
  // length, or nothing if anything about it is wrong.
  std::optional<std::uint32_t> check(std::uint64_t pos, std::uint64_t limit, std::uint64_t seq) const {
    if (pos % 8 != 0 || pos > limit || limit - pos < kRecHeader) return std::nullopt;
    const char* r = data + pos;
    std::uint32_t kind_word, len, crc;
    std::uint64_t rseq;
    std::memcpy(&kind_word, r, 4);
    std::memcpy(&len, r + 4, 4);
    std::memcpy(&rseq, r + 8, 8);
    std::memcpy(&crc, r + 16, 4);
    if ((kind_word & 0xFFFF0000u) != kRecMagic || rseq != seq) return std::nullopt;
    if (rec_size(len) > limit - pos) return std::nullopt;
    if (record_crc(kind_word, len, rseq, r + kRecHeader) != crc) return std::nullopt;
    return len;
  }

  void write(std::uint64_t pos, std::uint8_t kind, const void* payload, std::uint32_t len, std::uint64_t seq) const {
    char* r = data + pos;
    const std::uint32_t kind_word = kRecMagic | kind;
    const std::uint32_t crc = record_crc(kind_word, len, seq, payload);
    const std::uint32_t zero = 0;
    std::memcpy(r, &kind_word, 4);
    std::memcpy(r + 4, &len, 4);
    std::memcpy(r + 8, &seq, 8);
    std::memcpy(r + 16, &crc, 4);
    std::memcpy(r + 20, &zero, 4);
    std::memcpy(r + kRecHeader, payload, len);
    std::memset(r + kRecHeader + len, 0, rec_size(len) - kRecHeader - len);
  }
};

// Structural sanity of a state slot against the map it lives in.
bool plausible(const State& s) {
  if (state_crc(s) != s.crc) return false;
  if (s.capacity % 8 || s.head % 8 || s.tail % 8 || s.wrap % 8) return false;
  if (s.head > s.capacity || s.tail > s.capacity || s.wrap > s.capacity) return false;
  if (s.wrap ? !(s.tail <= s.head && s.head <= s.wrap) : s.head > s.tail) return false;
  if (s.push_seq - s.pop_seq != s.count) return false;
  return true;  // a capacity beyond the map (file cut short) is repaired by recover()
}

// Re-checks every live record; cuts the queue at the first bad one. Used at
// open and whenever a lock holder died. Returns how many records were cut.
Result<std::uint64_t> recover(const View& v) {
  if (!v.formatted()) return Error(Errc::corrupt);
  State s = v.live();
  if (!plausible(s)) {
    s = v.h->slot[(v.current().load() & 1) ^ 1];  // the previous state, from before a torn commit
    if (!plausible(s)) return Error(Errc::corrupt);
  }
  State next = s;
  next.capacity = std::min(s.capacity, v.avail & ~std::uint64_t{7});  // a file cut short keeps what it holds
  struct Segment {
    std::uint64_t from, to;
  };
  const Segment segments[2] = {{s.head, s.wrap ? s.wrap : s.tail}, {0, s.tail}};
  const int nseg = s.wrap ? 2 : 1;
  std::uint64_t pos = s.head, seq = s.pop_seq, kept = 0;
  bool cut = false;
  int seg = 0;
  for (; seg < nseg; ++seg) {
    pos = segments[seg].from;
    const std::uint64_t to = std::min(segments[seg].to, next.capacity);
    while (pos < to) {
      auto len = v.check(pos, to, seq);
      if (!len) break;
      pos += rec_size(*len);
      ++seq;
      ++kept;
    }
    if (pos != segments[seg].to) {  // a bad record, or the file ended first
      cut = true;
      break;
    }
  }
  if (cut) {
    next.tail = pos;
    if (seg == 0) next.wrap = 0;  // keep [head, pos); a second segment goes with it
  }
  next.count = kept;
  next.push_seq = s.pop_seq + kept;
  if (next.count == 0) next.head = next.tail = next.wrap = 0;
  const std::uint64_t dropped = s.count > kept ? s.count - kept : 0;
  if (std::memcmp(&next, &v.live(), offsetof(State, crc)) != 0) v.commit(next);
  return dropped;
}

// The robust cross-process lock in the header, taken at one address and
// released at the same one (the generation it lives in stays pinned).
class QueueLock {
 public:
  explicit QueueLock(Mapping& m) : m_(m) {}
  ~QueueLock() {
    if (held_) m_.backend().shared_lock_release(lock_);
  }
  QueueLock(const QueueLock&) = delete;
  QueueLock& operator=(const QueueLock&) = delete;

  Error acquire(Wait w) {
    auto r = m_.with_range(
        0, kHeaderSize,
        [&](const char* d, std::size_t n, Region& region) -> Result<int> {
          if (n < kHeaderSize) return Error(Errc::corrupt);
          pin_ = region.shared_from_this();
          lock_ = const_cast<char*>(d) + kLockOffset;
          return 0;
        },
        w);
    if (!r) return r.error() == Errc::eof ? Error(Errc::corrupt) : r.error();
    auto st = m_.backend().shared_lock_acquire(lock_, w == Wait::yes);
    if (!st) return st.error();
    if (*st == LockState::busy) return Errc::ebusy;
    held_ = true;
    owner_died_ = *st == LockState::owner_died;
    return {};
  }

  // After a dead holder's mess is repaired.
  bool needs_repair() const { return owner_died_; }
  void repaired() {
    if (owner_died_) m_.backend().shared_lock_consistent(lock_);
    owner_died_ = false;
  }

 private:
  Mapping& m_;
  std::shared_ptr<Region> pin_;
  void* lock_ = nullptr;
  bool held_ = false;
  bool owner_died_ = false;
};

// Runs `f(view, state, &grow_to)` under the lock with the map big enough for
// the live state (another process may have grown the file), repairing first
// if the previous holder died; f asks for a bigger map through grow_to and
// is then called again. `after()` runs still under the lock but outside the
// map's access gate (where the map itself may be resized).
template <typename F, typename After>
Error locked(Mapping& m, Wait w, F&& f, After&& after) {
  QueueLock lock(m);
  if (Error e = lock.acquire(w)) return e;
  bool followed = false;  // the map was already made to follow the file once
  for (;;) {
    std::uint64_t need_size = 0, follow_size = 0;
    Error e = m.with_map(
        [&](char* base, std::uint64_t size) -> Error {
          View v(base, size);
          if (!v.formatted()) return Errc::corrupt;
          if (lock.needs_repair() || !plausible(v.live())) {
            auto r = recover(v);  // a dead holder's work, or a damaged state
            if (!r) return r.error();
            lock.repaired();
          }
          if (v.live().capacity > v.avail) {
            if (!followed) {
              follow_size = kHeaderSize + v.live().capacity;  // another process grew the file
              return {};
            }
            auto r = recover(v);  // the file is shorter than the state says: keep what it holds
            if (!r) return r.error();
          }
          return f(v, v.live(), &need_size);
        },
        true, w);
    if (e) return e;
    if (need_size == 0 && follow_size == 0) return after();
    if (w == Wait::no) return Errc::ebusy;  // remapping blocks: the caller retries where it may
    if (follow_size) {
      // Where the map cannot follow (no resize), recover() keeps what it holds.
      auto g = m.ensure_size(follow_size, false);
      if (!g && g.error() != Errc::fixed_size) return g.error();
      followed = true;
      continue;
    }
    auto g = m.ensure_size(need_size);
    if (!g) return g.error() == Errc::fixed_size ? Error(Errc::full) : g.error();
  }
}

template <typename F>
Error locked(Mapping& m, Wait w, F&& f) {
  return locked(m, w, std::forward<F>(f), [] { return Error(); });
}

// The fast path: one access-gate section in which the lock is only tried,
// so nothing can move the map meanwhile (no pin, no remap). Answers
// nothing (nullopt) when the slow path must run: lock busy, the map must
// follow or grow the file, a resize or close in progress.
template <typename F>
std::optional<Error> fast(Mapping& m, F&& f) {
  std::optional<Error> out;
  const MappingBackend& backend = m.backend();
  Error e = m.with_map(
      [&](char* base, std::uint64_t size) -> Error {
        View v(base, size);
        if (size < kHeaderSize || !v.formatted()) {
          out = Error(Errc::corrupt);
          return {};
        }
        void* lock = base + kLockOffset;
        auto st = backend.shared_lock_acquire(lock, false);
        if (!st) return {};
        if (*st == LockState::busy) return {};
        if (*st == LockState::owner_died) {
          auto r = recover(v);
          if (!r) {
            backend.shared_lock_release(lock);  // still inconsistent: the next taker tries again
            out = r.error();
            return {};
          }
          backend.shared_lock_consistent(lock);
        }
        const State& s = v.live();
        if (!plausible(s) || s.capacity > v.avail) {
          backend.shared_lock_release(lock);
          return {};
        }
        std::uint64_t grow_to = 0;
        Error fe = f(v, s, &grow_to);
        backend.shared_lock_release(lock);
        if (!grow_to) out = fe;
        return {};
      },
      true, Wait::no);
  if (e && e != Errc::ebusy) return e;
  return out;
}

// Gives an empty queue's extra space back: the file shrinks to the initial
// capacity. Runs under the lock, outside the gate.
Error shrink_if_empty(Mapping& m, bool& wanted, std::uint64_t initial) {
  if (!wanted) return {};
  auto r = m.resize(kHeaderSize + initial);
  if (!r && r.error() != Errc::fixed_size) return r.error();
  return {};
}

}  // namespace

Result<OpenReport> open(Mapping& m, std::uint64_t initial_capacity) {
  initial_capacity = round8(std::max(initial_capacity, kMinCapacity));
  OpenReport report;
  const std::string boot = m.backend().boot_id();
  Error e = m.with_file_lock([&]() -> Error {
    // Set-up, one process at a time: format a new file, or renew a lock
    // that an earlier boot left behind.
    if (m.size() == 0) {  // a new, empty file
      auto g = m.ensure_size(kHeaderSize + initial_capacity);
      if (!g) return g.error();
    }
    if (m.size() < kHeaderSize) return Errc::corrupt;  // too short to be a queue
    Error fmt = m.with_map(
        [&](char* base, std::uint64_t size) -> Error {
          View v(base, size);
          if (!v.formatted()) {
            static const Header zero{};
            if (std::memcmp(v.h, &zero, sizeof zero) != 0) return Errc::corrupt;  // somebody else's file
            if (v.avail < kMinCapacity) return Errc::einval;
            v.h->version = kVersion;
            v.h->header_size = static_cast<std::uint32_t>(kHeaderSize);
            v.h->initial = std::min(initial_capacity, v.avail & ~std::uint64_t{7});
            std::memset(v.h->boot, 0, sizeof v.h->boot);
            std::memcpy(v.h->boot, boot.data(), std::min(boot.size(), sizeof v.h->boot));
            if (Error le = m.backend().shared_lock_init(base + kLockOffset)) return le;
            State s{};
            s.capacity = v.avail & ~std::uint64_t{7};
            v.h->current = 1;
            v.commit(s);  // writes slot 0 and makes it current
            std::atomic_thread_fence(std::memory_order_release);
            std::memcpy(v.h->magic, kMagic, sizeof kMagic);  // last: a torn format is never taken as valid
            report.initialised = true;
            return {};
          }
          if (!boot.empty() && std::strncmp(v.h->boot, boot.c_str(), sizeof v.h->boot) != 0) {
            // The lock word is from another boot: no process of this boot holds it.
            if (Error le = m.backend().shared_lock_init(base + kLockOffset)) return le;
            std::memset(v.h->boot, 0, sizeof v.h->boot);
            std::memcpy(v.h->boot, boot.data(), std::min(boot.size(), sizeof v.h->boot));
            return {};
          }
          // A lock word that no living process can hold (damaged bytes, a
          // holder gone without the OS noticing) would stall every taker.
          auto checked = m.backend().shared_lock_check(base + kLockOffset);
          return checked ? Error() : checked.error();
        },
        true);
    return fmt;
  });
  if (e) return e;
  // Check every record under the queue lock (others may be using it).
  e = locked(m, Wait::yes, [&](const View& v, const State&, std::uint64_t*) -> Error {
    auto r = recover(v);
    if (!r) return r.error();
    report.dropped = *r;
    report.count = v.live().count;
    return {};
  });
  if (e) return e;
  return report;
}

Error push(Mapping& m, std::uint8_t kind, const void* data, std::size_t len, bool fixed_size, bool sync, Wait w) {
  if (len > UINT32_MAX) return Errc::einval;
  const std::uint64_t need = rec_size(len);
  std::uint64_t written_at = 0;
  auto body = [&](const View& v, const State& s, std::uint64_t* grow_to) -> Error {
    State next = s;
    std::uint64_t pos;
    if (!s.wrap && s.tail + need <= s.capacity) {
      pos = s.tail;
      next.tail = pos + need;
    } else if (!s.wrap && need <= s.head) {
      pos = 0;  // wrap around: the end of the ring has no room, its start has
      next.wrap = s.tail;
      next.tail = need;
    } else if (s.wrap && s.tail + need <= s.head) {
      pos = s.tail;
      next.tail = pos + need;
    } else {
      if (fixed_size) return Errc::full;
      // Grow so the record fits after the live data, unwrapped.
      const std::uint64_t required = (s.wrap ? s.wrap + s.tail : s.tail) + need;
      std::uint64_t cap = s.capacity;
      while (cap < required) {
        const std::uint64_t nc = resize_policy(cap, m.options().max_inc_size, 4096);
        if (nc == 0) return Errc::efbig;
        cap = round8(nc);
      }
      if (cap > v.avail) {
        *grow_to = kHeaderSize + cap;  // map (and file) first, then come back
        return {};
      }
      // The map holds it: move [0, tail) after [head, wrap) and commit.
      if (s.wrap) std::memmove(v.data + s.wrap, v.data, s.tail);
      next.tail = s.wrap ? s.wrap + s.tail : s.tail;
      next.wrap = 0;
      next.capacity = cap;
      v.commit(next);
      *grow_to = 0;
      // Place the record in the grown ring (same lock, no other change meanwhile).
      State grown = v.live();
      pos = grown.tail;
      next = grown;
      next.tail = pos + need;
    }
    v.write(pos, kind, data, static_cast<std::uint32_t>(len), s.push_seq);
    next.count = s.count + 1;
    next.push_seq = s.push_seq + 1;
    v.commit(next);
    written_at = pos;
    return {};
  };
  auto quick = fast(m, body);
  Error e = quick ? *quick : locked(m, w, body);
  if (e) return e;
  if (sync) {
    // The record, then the header that commits it (both before returning).
    if (Error se = m.sync(kHeaderSize + written_at, need)) return se;
    if (Error se = m.sync(0, kHeaderSize)) return se;
  }
  return {};
}

Result<bool> pop_into(Mapping& m, bool peek, bool purge, bool sync, Wait w, Visitor visit, void* ctx,
                      Errc visit_error) {
  bool found = false, shrink = false;
  std::uint64_t initial = 0;
  auto body = [&](const View& v, const State& s, std::uint64_t*) -> Error {
    initial = v.h->initial;
    if (s.count == 0) {
      shrink = purge && s.capacity > initial;
      if (shrink) {
        State next = s;
        next.capacity = initial;
        v.commit(next);
      }
      return {};
    }
    const std::uint64_t limit = s.wrap ? s.wrap : s.tail;
    auto len = v.check(s.head, limit, s.pop_seq);
    if (!len) return Errc::corrupt;  // recover() at the next open cuts it off
    const char* r = v.data + s.head;
    std::uint32_t kind_word;
    std::memcpy(&kind_word, r, 4);
    if (!visit(ctx, static_cast<std::uint8_t>(kind_word & 0xFF), r + kRecHeader, *len)) return visit_error;
    found = true;
    if (peek) return {};
    State next = s;
    next.head = s.head + rec_size(*len);
    next.count = s.count - 1;
    next.pop_seq = s.pop_seq + 1;
    if (s.wrap && next.head == s.wrap) {
      next.head = 0;  // the end segment is used up: what is left is [0, tail)
      next.wrap = 0;
    }
    if (next.count == 0) {
      next.head = next.tail = next.wrap = 0;  // empty: start from the front again
      if (purge && s.capacity > initial) {
        next.capacity = initial;
        shrink = true;
      }
    }
    v.commit(next);
    return {};
  };
  // Shrinking the file needs the slow path (outside the gate, still locked).
  std::optional<Error> quick;
  if (!purge) quick = fast(m, body);
  Error e = quick ? *quick : locked(m, w, body, [&] { return shrink_if_empty(m, shrink, initial); });
  if (e) return e;
  if (sync && !peek && found) {
    if (Error se = m.sync(0, kHeaderSize)) return se;
  }
  return found;
}

Result<std::optional<Item>> pop(Mapping& m, bool peek, bool purge, bool sync, Wait w) {
  Item item{};
  auto r = pop_into(
      m, peek, purge, sync, w,
      [](void* ctx, std::uint8_t kind, const char* data, std::size_t len) -> bool {
        auto* it = static_cast<Item*>(ctx);
        it->kind = kind;
        try {
          it->data.assign(data, len);
        } catch (...) {
          return false;
        }
        return true;
      },
      &item);
  if (!r) return r.error();
  if (!*r) return std::optional<Item>();
  return std::optional<Item>(std::move(item));
}

Result<std::uint64_t> length(Mapping& m, Wait w) {
  std::uint64_t n = 0;
  auto body = [&](const View&, const State& s, std::uint64_t*) -> Error {
    n = s.count;
    return {};
  };
  auto quick = fast(m, body);
  Error e = quick ? *quick : locked(m, w, body);
  if (e) return e;
  return n;
}

Error purge(Mapping& m, bool sync, Wait w) {
  bool shrink = false;
  std::uint64_t initial = 0;
  Error e = locked(
      m, w,
      [&](const View& v, const State& s, std::uint64_t*) -> Error {
        initial = v.h->initial;
        State next = s;
        next.head = next.tail = next.wrap = next.count = 0;
        next.pop_seq = next.push_seq = s.push_seq;
        shrink = s.capacity > initial;
        next.capacity = std::min(s.capacity, initial);
        v.commit(next);
        return {};
      },
      [&] { return shrink_if_empty(m, shrink, initial); });
  if (e) return e;
  if (sync) return m.sync(0, kHeaderSize);
  return {};
}

}  // namespace emmap::queue
