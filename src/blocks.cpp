#include "blocks.h"

#include <atomic>
#include <cstring>
#include <mutex>
#include <shared_mutex>

namespace emmap::blocks {
namespace {

constexpr char kMagic[8] = {'E', 'M', 'M', 'A', 'P', 'B', 'L', 'K'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kMaxBlock = 1u << 30;
constexpr std::uint32_t kFree = 0, kWriting = 1, kUsed = 2;

struct Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t block;
  std::uint64_t capacity;
  std::uint64_t count;
  std::uint64_t free_hint;
  std::uint64_t reserved[3];
};
static_assert(sizeof(Header) == kHeaderSize);

constexpr std::uint32_t state_of(std::uint32_t w) { return w & 3u; }
// The next word of a slot: a new sequence, so readers notice every change.
constexpr std::uint32_t next(std::uint32_t w, std::uint32_t state) { return ((w >> 2) + 1) << 2 | state; }

std::uint64_t slot_size(std::uint32_t block) { return (8 + std::uint64_t{block} + 7) / 8 * 8; }

std::atomic_ref<std::uint64_t> field(std::uint64_t& f) { return std::atomic_ref<std::uint64_t>(f); }

// A formatted storage seen through the map, valid inside Mapping::with_map.
struct View {
  char* base;
  Header* h;
  std::uint32_t block;
  std::uint64_t slot;
  std::uint64_t capacity;  // slots that exist in the header *and* fit in the map

  static Result<View> of(char* base, std::uint64_t size) {
    if (size < kHeaderSize || reinterpret_cast<std::uintptr_t>(base) % 8 != 0) return Error(Errc::corrupt);
    auto* h = reinterpret_cast<Header*>(base);
    if (std::memcmp(h->magic, kMagic, sizeof kMagic) != 0 || h->version != kVersion || h->block == 0 ||
        h->block > kMaxBlock)
      return Error(Errc::corrupt);
    View v{base, h, h->block, slot_size(h->block), 0};
    const std::uint64_t fits = (size - kHeaderSize) / v.slot;
    const std::uint64_t cap = field(h->capacity).load(std::memory_order_acquire);
    v.capacity = cap < fits ? cap : fits;  // a header claiming more than the file holds is not trusted
    return v;
  }

  char* slot_at(std::uint64_t i) const { return base + kHeaderSize + i * slot; }
  std::atomic_ref<std::uint32_t> word(std::uint64_t i) const {
    return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(slot_at(i)));
  }
  std::uint32_t& len(std::uint64_t i) const { return *reinterpret_cast<std::uint32_t*>(slot_at(i) + 4); }
  char* payload(std::uint64_t i) const { return slot_at(i) + 8; }

  // Copies a used block consistently (seqlock) into what sink gives; eof
  // when the slot is not used. Never throws: the sink reports no room.
  Result<std::size_t> copy(std::uint64_t i, Sink sink, void* ctx) const {
    for (;;) {
      const std::uint32_t w1 = word(i).load(std::memory_order_acquire);
      if (state_of(w1) != kUsed) return Error(Errc::eof);
      const std::uint32_t n = std::atomic_ref<std::uint32_t>(len(i)).load(std::memory_order_relaxed);
      if (n > block) return Error(Errc::corrupt);
      char* out = sink(ctx, n);
      if (!out) return Error(Errc::enomem);
      std::memcpy(out, payload(i), n);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (word(i).load(std::memory_order_relaxed) == w1) return std::size_t{n};
    }
  }

  void lower_hint(std::uint64_t i) const {
    auto hint = field(h->free_hint);
    // seq_cst: the freeing store before it and this load pair with a store's
    // hint move and its second look (advance_hint), so one of them sees the other.
    std::uint64_t cur = hint.load(std::memory_order_seq_cst);
    while (i < cur && !hint.compare_exchange_weak(cur, i, std::memory_order_release)) {
    }
  }
};

// What a store found when no slot was free.
struct Grow {
  std::uint64_t capacity;
  std::uint64_t slot;
};

}  // namespace

Error init(Mapping& m, std::uint32_t block_size, Wait w) {
  if (block_size == 0 || block_size > kMaxBlock) return Errc::einval;
  if (Error e = m.announce(w != Wait::no)) return e;
  const std::uint64_t need = kHeaderSize + slot_size(block_size);
  if (m.size() < need) {
    if (m.closed()) return Errc::closed;
    auto g = m.ensure_size(need);
    // A map that cannot grow (fixed_size, or a backend without resize):
    // no room for one slot, as store() says when every slot is taken.
    if (!g) return g.error() == Errc::fixed_size ? Error(Errc::full) : g.error();
  }
  return m.with_map(
      [&](char* base, std::uint64_t size) -> Error {
        if (size < need) return Errc::einval;  // shrunk meanwhile
        if (reinterpret_cast<std::uintptr_t>(base) % 8 != 0) return Errc::einval;
        auto* h = reinterpret_cast<Header*>(base);
        if (std::memcmp(h->magic, kMagic, sizeof kMagic) == 0) {
          if (h->version != kVersion) return Errc::corrupt;
          return h->block == block_size ? Error() : Error(Errc::einval);
        }
        static const Header zero{};
        if (std::memcmp(h, &zero, sizeof zero) != 0) return Errc::corrupt;  // someone else's data
        h->version = kVersion;
        h->block = block_size;
        h->capacity = (size - kHeaderSize) / slot_size(block_size);
        h->count = 0;
        h->free_hint = 0;
        std::atomic_thread_fence(std::memory_order_release);
        std::memcpy(h->magic, kMagic, sizeof kMagic);  // last: a torn format is never taken as valid
        return {};
      },
      true, w);
}

// This handle's writes against its own repair pass: shared, and for a
// caller that must not block (Wait::no) only if free at once.
class WriteTurn {
 public:
  WriteTurn(Mapping& m, Wait w) : lock_(m.format_lock(), std::defer_lock) {
    if (w == Wait::no) {
      ok_ = lock_.try_lock();
    } else {
      lock_.lock();
      ok_ = true;
    }
  }
  bool ok() const { return ok_; }

 private:
  std::shared_lock<std::shared_mutex> lock_;
  bool ok_ = false;
};

// Moves the free hint from `from` to `to` after a scan saw every slot in
// [from, to) taken. A slot freed during the scan did not lower the hint (it
// was not below it), so the range is looked at once more after the move:
// a free slot found there lowers the hint again. A free from now on finds
// the hint above it and lowers it itself.
static void advance_hint(const View& v, std::uint64_t from, std::uint64_t to) {
  auto hint = field(v.h->free_hint);
  std::uint64_t expect = from;
  if (to == from || !hint.compare_exchange_strong(expect, to, std::memory_order_seq_cst)) return;
  for (std::uint64_t j = from; j < to; ++j) {
    if (state_of(v.word(j).load(std::memory_order_seq_cst)) == kFree) {
      v.lower_hint(j);
      return;
    }
  }
}

// Slots a store that must not block looks at per call.
constexpr std::uint64_t kScanBudget = 1024;

Result<std::uint64_t> store(Mapping& m, const void* data, std::size_t len, Wait w) {
  // Other processes' repairs must know this handle may be mid-write.
  if (Error e = m.announce(w != Wait::no)) return e;
  WriteTurn turn(m, w);
  if (!turn.ok()) return Error(Errc::ebusy);
  for (;;) {
    Grow grow{};
    auto r = m.with_map(
        [&](char* base, std::uint64_t size) -> Result<std::uint64_t> {
          auto v = View::of(base, size);
          if (!v) return v.error();
          if (len > v->block) return Error(Errc::einval);
          auto hint = field(v->h->free_hint);
          const std::uint64_t from = hint.load(std::memory_order_acquire);
          // A caller on a normal scheduler looks at a bounded run of slots
          // (each may be a page fault away); past it, the hint moves on and
          // the caller goes on where it can block (ebusy -> dirty).
          const std::uint64_t end =
              w == Wait::no && v->capacity - std::min(from, v->capacity) > kScanBudget ? from + kScanBudget : v->capacity;
          for (std::uint64_t i = from; i < end; ++i) {
            auto word = v->word(i);
            std::uint32_t cur = word.load(std::memory_order_relaxed);
            if (state_of(cur) != kFree) continue;
            if (!word.compare_exchange_strong(cur, next(cur, kWriting), std::memory_order_acquire)) continue;
            std::memcpy(v->payload(i), data, len);
            std::atomic_ref<std::uint32_t>(v->len(i)).store(static_cast<std::uint32_t>(len), std::memory_order_relaxed);
            std::uint32_t writing = next(cur, kWriting);
            if (!word.compare_exchange_strong(writing, next(writing, kUsed), std::memory_order_release))
              continue;  // a concurrent repair reclaimed the slot: take another
            field(v->h->count).fetch_add(1, std::memory_order_relaxed);
            advance_hint(*v, from, i + 1);
            return i;
          }
          if (end < v->capacity) {
            advance_hint(*v, from, end);
            return Error(Errc::ebusy);
          }
          grow = {v->capacity, v->slot};
          return Error(Errc::full);
        },
        true, w);
    if (r || r.error() != Errc::full || grow.slot == 0) return r;
    // Every slot is taken: grow the file (policy: double), then publish the
    // new capacity. Growing may block, so a caller that cannot wait retries.
    if (w == Wait::no) return Error(Errc::ebusy);
    const std::uint64_t want_cap = grow.capacity < 16 ? 16 : grow.capacity * 2;
    auto g = m.ensure_size(kHeaderSize + want_cap * grow.slot);
    if (!g) return g.error() == Errc::fixed_size ? Error(Errc::full) : g.error();
    auto published = m.with_map(
        [&](char* base, std::uint64_t size) -> Error {
          auto v = View::of(base, size);
          if (!v) return v.error();
          const std::uint64_t fits = (size - kHeaderSize) / v->slot;
          auto cap = field(v->h->capacity);
          std::uint64_t cur = cap.load(std::memory_order_relaxed);
          while (cur < fits && !cap.compare_exchange_weak(cur, fits, std::memory_order_release)) {
          }
          return {};
        },
        true, w);
    if (published) return published;
  }
}

// A std::string as a sink: room or nullptr, never an exception.
static char* string_sink(void* ctx, std::size_t n) {
  auto* s = static_cast<std::string*>(ctx);
  try {
    s->resize(n);
  } catch (...) {
    return nullptr;
  }
  return s->data();
}

Result<std::size_t> read_into(Mapping& m, std::uint64_t addr, Sink sink, void* ctx, Wait w) {
  return m.with_map(
      [&](char* base, std::uint64_t size) -> Result<std::size_t> {
        auto v = View::of(base, size);
        if (!v) return v.error();
        if (addr >= v->capacity) return Error(Errc::einval);
        return v->copy(addr, sink, ctx);
      },
      false, w);
}

Result<std::string> read(Mapping& m, std::uint64_t addr, Wait w) {
  std::string out;
  auto r = read_into(m, addr, string_sink, &out, w);
  if (!r) return r.error();
  return out;
}

Result<bool> free(Mapping& m, std::uint64_t addr, Wait w) {
  WriteTurn turn(m, w);  // a whole repair pass recounts: no free half counted meanwhile
  if (!turn.ok()) return Error(Errc::ebusy);
  return m.with_map(
      [&](char* base, std::uint64_t size) -> Result<bool> {
        auto v = View::of(base, size);
        if (!v) return v.error();
        if (addr >= v->capacity) return Error(Errc::einval);
        auto word = v->word(addr);
        std::uint32_t cur = word.load(std::memory_order_relaxed);
        do {
          if (state_of(cur) != kUsed) return false;
        } while (!word.compare_exchange_weak(cur, next(cur, kFree), std::memory_order_seq_cst));
        field(v->h->count).fetch_sub(1, std::memory_order_relaxed);
        v->lower_hint(addr);
        return true;
      },
      true, w);
}

Result<std::uint64_t> scan(Mapping& m, std::uint64_t start, std::uint64_t count, const Visitor& f, Wait w) {
  return m.with_map(
      [&](char* base, std::uint64_t size) -> Result<std::uint64_t> {
        auto v = View::of(base, size);
        if (!v) return v.error();
        std::uint64_t i = start, found = 0;
        std::string buf;
        for (; i < v->capacity && found < count; ++i) {
          auto n = v->copy(i, string_sink, &buf);
          if (!n) {
            if (n.error() == Errc::enomem) return n.error();
            continue;  // free, or an impossible length: repair's business
          }
          f(i, std::string_view(buf.data(), *n));
          ++found;
        }
        return i >= v->capacity ? kEof : i;
      },
      false, w);
}

Result<std::uint64_t> repair(Mapping& m, std::uint64_t start, std::uint64_t count, Wait w) {
  // No store or free of this handle is in flight while the pass runs.
  std::unique_lock<std::shared_mutex> exclusive(m.format_lock(), std::defer_lock);
  if (w == Wait::no) {
    if (!exclusive.try_lock()) return Error(Errc::ebusy);
  } else {
    exclusive.lock();
  }
  // A slot "being written" is a dead writer's only if no other handle (in
  // any process) has the file open; otherwise it may be a live store's,
  // and freeing it would let another store write over it. Left for a pass
  // that runs alone.
  auto alone = m.try_alone();
  if (!alone) return alone.error();
  struct Back {
    Mapping& m;
    bool on;
    ~Back() {
      if (on) m.end_alone();
    }
  } back{m, *alone};
  const bool free_writing = *alone;
  return m.with_map(
      [&](char* base, std::uint64_t size) -> Result<std::uint64_t> {
        auto v = View::of(base, size);
        if (!v) return v.error();
        const std::uint64_t end = count > v->capacity - std::min(start, v->capacity) ? v->capacity : start + count;
        std::uint64_t used = 0, first_free = kEof;
        for (std::uint64_t i = start; i < end; ++i) {
          auto word = v->word(i);
          std::uint32_t cur = word.load(std::memory_order_acquire);
          const bool bad_len = state_of(cur) == kUsed && v->len(i) > v->block;
          if ((state_of(cur) == kWriting && free_writing) || state_of(cur) == 3u || bad_len) {
            if (word.compare_exchange_strong(cur, next(cur, kFree), std::memory_order_release)) cur = next(cur, kFree);
          }
          if (state_of(cur) == kUsed) ++used;
          else if (state_of(cur) == kFree && first_free == kEof) first_free = i;
        }
        if (first_free != kEof) v->lower_hint(first_free);
        if (start == 0 && end == v->capacity) {  // a whole pass: the counters are facts now
          field(v->h->count).store(used, std::memory_order_relaxed);
          field(v->h->free_hint).store(first_free == kEof ? v->capacity : first_free, std::memory_order_release);
        }
        return end >= v->capacity ? kEof : end;
      },
      true, w);
}

}  // namespace emmap::blocks
