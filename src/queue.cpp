#include "queue.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <thread>

#include <unistd.h>

#include "background.h"
#include "crc32c.h"

namespace emmap::queue {
namespace {

constexpr char kMagic[8] = {'E', 'M', 'M', 'A', 'P', 'Q', 'U', 'E'};
// Written first when formatting (the real magic goes last): a format a
// crash cut short is recognised as ours and done again.
constexpr char kFormatting[8] = {'E', 'M', 'M', 'A', 'P', 'Q', 'F', '*'};
constexpr std::uint32_t kVersion = 2;
constexpr std::uint32_t kRecMagic = 0x51520000u;
constexpr std::uint64_t kRecHeader = 24;
constexpr std::uint64_t kMinCapacity = 4096;
constexpr std::uint64_t kNeedsRecovery = 1;  // header flags
constexpr std::uint64_t kStrict = 2;
constexpr std::uint64_t kIoError = 4;
constexpr std::uint64_t kClaimLockOffset = 640;
constexpr std::uint64_t kClaimOffset = 768;
static_assert(kLockOffset + kSharedLockBytes <= kClaimLockOffset &&
              kClaimLockOffset + kSharedLockBytes <= kClaimOffset);

struct State {
  std::uint64_t head, tail, wrap, capacity, count;
  std::uint64_t pop_seq, push_seq;
  std::uint64_t cut_seq;  // the first seq of the current epoch
  std::uint64_t last;
  std::uint64_t commits;
  std::uint32_t pop_epoch, epoch;
  std::uint32_t crc, zero;
};
static_assert(sizeof(State) == 96);

struct Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t header_size;
  std::uint64_t current;
  std::uint64_t initial;
  std::uint64_t layout;
  std::uint64_t flags;
  std::uint64_t repairs;
  std::uint64_t reserved;
  State slot[2];
  State durable;
};
static_assert(offsetof(Header, slot) == 64 && offsetof(Header, durable) == 256);
static_assert(sizeof(Header) <= kLockOffset && kLockOffset + kSharedLockBytes <= kHeaderSize);

constexpr std::uint64_t round8(std::uint64_t v) { return (v + 7) & ~std::uint64_t{7}; }
constexpr std::uint64_t rec_size(std::uint64_t len) { return round8(kRecHeader + len); }

std::uint32_t state_crc(const State& s) { return crc32c(0, &s, offsetof(State, crc)); }

std::uint32_t record_crc(std::uint32_t kind_word, std::uint32_t len, std::uint64_t seq, std::uint32_t epoch,
                         const void* payload) {
  unsigned char head[20];
  std::memcpy(head, &kind_word, 4);
  std::memcpy(head + 4, &len, 4);
  std::memcpy(head + 8, &seq, 8);
  std::memcpy(head + 16, &epoch, 4);
  return crc32c(crc32c(0, head, sizeof head), payload, len);
}

struct Segment {
  std::uint64_t from, to;
};

// The live records of `s` as at most two byte ranges of the data area.
int segments(const State& s, Segment out[2]) {
  if (s.count == 0) return 0;
  out[0] = {s.head, s.wrap ? s.wrap : s.tail};
  if (!s.wrap) return 1;
  out[1] = {0, s.tail};
  return 2;
}

// Structural sanity of a state slot (its records are checked separately).
bool plausible(const State& s) {
  if (state_crc(s) != s.crc) return false;
  if (s.capacity % 8 || s.head % 8 || s.tail % 8 || s.wrap % 8 || s.last % 8) return false;
  if (s.head > s.capacity || s.tail > s.capacity || s.wrap > s.capacity) return false;
  if (s.wrap ? !(s.tail <= s.head && s.head < s.wrap) : s.head > s.tail) return false;
  if (s.push_seq - s.pop_seq != s.count || s.cut_seq > s.push_seq) return false;
  if (s.pop_seq >= s.cut_seq ? s.pop_epoch != s.epoch : s.pop_epoch >= s.epoch) return false;
  if (s.count == 0 && (s.head || s.tail || s.wrap)) return false;
  if (s.count != 0 && s.last >= s.capacity) return false;
  return true;
}

struct RecordInfo {
  std::uint32_t len;
  std::uint32_t epoch;
};

// The queue seen through the map (valid inside Mapping::with_map).
struct View {
  char* base;
  std::uint64_t avail;  // bytes of data area the map holds
  Header* h;
  char* data;

  // On persistent memory (a flush/eadr map) the map, for commit(): a
  // store reaches the media line by line, in any order, unless flushed.
  Mapping* pmem = nullptr;

  View(char* b, std::uint64_t size)
      : base(b), avail(size > kHeaderSize ? (size - kHeaderSize) & ~std::uint64_t{7} : 0),
        h(reinterpret_cast<Header*>(b)), data(b + kHeaderSize) {}
  View(char* b, std::uint64_t size, Mapping& m) : View(b, size) {
    if (m.persistence() != Persistence::msync) pmem = &m;
  }

  bool formatted() const { return std::memcmp(h->magic, kMagic, sizeof kMagic) == 0 && h->version == kVersion; }
  std::atomic_ref<std::uint64_t> current() const { return std::atomic_ref<std::uint64_t>(h->current); }
  std::atomic_ref<std::uint64_t> layout() const { return std::atomic_ref<std::uint64_t>(h->layout); }
  std::atomic_ref<std::uint64_t> flags() const { return std::atomic_ref<std::uint64_t>(h->flags); }
  std::atomic_ref<std::uint64_t> claim_token() const {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base + kClaimOffset));
  }
  std::uint64_t& claim_seq() const { return *reinterpret_cast<std::uint64_t*>(base + kClaimOffset + 8); }
  void* claim_lock() const { return base + kClaimLockOffset; }
  const State& live() const { return h->slot[current().load(std::memory_order_acquire) & 1]; }
  const State& other() const { return h->slot[(current().load(std::memory_order_acquire) & 1) ^ 1]; }

  // A state that would not pass plausible() is never committed (a later
  // step would fall back to the other slot and resurrect what it undid).
  [[nodiscard]] Error commit(State next) const {
    next.commits = live().commits + 1;
    next.zero = 0;
    next.crc = state_crc(next);
    if (!plausible(next)) return Errc::corrupt;
    const std::uint64_t idle = (current().load(std::memory_order_relaxed) & 1) ^ 1;
    h->slot[idle] = next;
    if (pmem) {
      // Persistent memory: the slot's lines are on the media before the
      // word that points at them can be (an evicted `current` line beside
      // an older slot would bring back a state from two commits ago, or,
      // beside a half-written slot, leave no valid slot at all). Every
      // commit, strict file or not: recovery commits before the file is
      // strict, and a torn slot there with a second crash lost the queue.
      if (Error e = pmem->sync_inside(reinterpret_cast<char*>(&h->slot[idle]) - base, sizeof(State))) return e;
    }
    current().store(idle, std::memory_order_release);  // the commit point: one 8-byte store
    return {};
  }

  // The initial capacity, if the header's word for it is one we could have
  // written; else none (nothing shrinks).
  std::optional<std::uint64_t> initial(const State& s) const {
    const std::uint64_t i = h->initial;
    if (i % 8 || i < kMinCapacity || i > s.capacity) return std::nullopt;
    return i;
  }

  // The record at `pos` (ending by `limit`) if it is the one with sequence
  // `seq` and an epoch in [min_epoch, max_epoch]; nothing if anything about
  // it is wrong.
  std::optional<RecordInfo> check(std::uint64_t pos, std::uint64_t limit, std::uint64_t seq, std::uint32_t min_epoch,
                                  std::uint32_t max_epoch) const {
    if (pos % 8 != 0 || pos > limit || limit - pos < kRecHeader) return std::nullopt;
    const char* r = data + pos;
    std::uint32_t kind_word, len, crc, epoch;
    std::uint64_t rseq;
    std::memcpy(&kind_word, r, 4);
    std::memcpy(&len, r + 4, 4);
    std::memcpy(&rseq, r + 8, 8);
    std::memcpy(&crc, r + 16, 4);
    std::memcpy(&epoch, r + 20, 4);
    if ((kind_word & 0xFFFF0000u) != kRecMagic || rseq != seq) return std::nullopt;
    if (epoch < min_epoch || epoch > max_epoch) return std::nullopt;
    if (rec_size(len) > limit - pos) return std::nullopt;
    if (record_crc(kind_word, len, rseq, epoch, r + kRecHeader) != crc) return std::nullopt;
    return RecordInfo{len, epoch};
  }

  // The kind and the payload of the (checked) record at `pos`.
  std::uint8_t kind_at(std::uint64_t pos) const {
    std::uint32_t kind_word;
    std::memcpy(&kind_word, data + pos, 4);
    return static_cast<std::uint8_t>(kind_word & 0xFF);
  }
  const char* payload_at(std::uint64_t pos) const { return data + pos + kRecHeader; }

  // The length a record header at `pos` claims (0 when none fits there).
  std::uint64_t length_at(std::uint64_t pos, std::uint64_t limit) const {
    if (pos % 8 != 0 || pos > limit || limit - pos < kRecHeader) return 0;
    std::uint32_t len;
    std::memcpy(&len, data + pos + 4, 4);
    return len;
  }

  std::uint32_t epoch_at(std::uint64_t pos) const {
    std::uint32_t e;
    std::memcpy(&e, data + pos + 20, 4);
    return e;
  }

  void write(std::uint64_t pos, std::uint8_t kind, const void* payload, std::uint32_t len, std::uint64_t seq,
             std::uint32_t epoch) const {
    char* r = data + pos;
    const std::uint32_t kind_word = kRecMagic | kind;
    const std::uint32_t crc = record_crc(kind_word, len, seq, epoch, payload);
    std::memcpy(r, &kind_word, 4);
    std::memcpy(r + 4, &len, 4);
    std::memcpy(r + 8, &seq, 8);
    std::memcpy(r + 16, &crc, 4);
    std::memcpy(r + 20, &epoch, 4);
    std::memcpy(r + kRecHeader, payload, len);
    std::memset(r + kRecHeader + len, 0, rec_size(len) - kRecHeader - len);
  }

  // Could stable storage still hold a state with a record in [from, to)?
  // An unreadable copy is taken to say yes.
  bool durably_held(std::uint64_t from, std::uint64_t to) const {
    const State& d = h->durable;
    if (state_crc(d) != d.crc) return true;
    Segment seg[2];
    const int n = segments(d, seg);
    for (int i = 0; i < n; ++i) {
      if (from < seg[i].to && seg[i].from < to) return true;
    }
    return false;
  }
  void mark_durable(const State& s) const { h->durable = s; }
};

// The epochs a record with sequence `seq` may carry in state `s`, given the
// epoch of the record before it (`prev`): from the cut on exactly the
// current epoch, before it an older one, and never less than its
// predecessor's.
struct EpochRange {
  std::uint32_t min, max;
};
EpochRange epochs_for(const State& s, std::uint64_t seq, std::uint32_t prev) {
  if (seq >= s.cut_seq) return {std::max(prev, s.epoch), s.epoch};
  return {prev, s.epoch - 1};
}

// Re-checks every live record and works out the recovered state: the queue
// cut at the first bad record, the next epoch starting at the cut. The
// caller makes the kept records durable, then commits it, then makes the
// header durable (see Ctx::recover_durably). Returns how many were cut.
struct Recovered {
  State next;
  std::uint64_t dropped;
};
Result<Recovered> recover(const View& v) {
  if (!v.formatted()) return Error(Errc::corrupt);
  State s = v.live();
  if (!plausible(s)) {
    s = v.other();  // the previous state, from before a damaged commit
    if (!plausible(s)) return Error(Errc::corrupt);
  }
  if (s.epoch == UINT32_MAX) return Error(Errc::eoverflow);
  State next = s;
  next.capacity = std::min(s.capacity, v.avail);  // a file cut short keeps what it holds
  Segment seg[2];
  const int nseg = segments(s, seg);
  std::uint64_t pos = s.head, seq = s.pop_seq, kept = 0, last = 0;
  std::uint32_t prev = s.pop_epoch;
  bool cut = false;
  int i = 0;
  for (; i < nseg; ++i) {
    pos = seg[i].from;
    const std::uint64_t to = std::min(seg[i].to, next.capacity);
    while (pos < to) {
      const EpochRange e = kept == 0 ? EpochRange{s.pop_epoch, s.pop_epoch} : epochs_for(s, seq, prev);
      auto rec = v.check(pos, to, seq, e.min, e.max);
      if (!rec) break;
      last = pos;
      pos += rec_size(rec->len);
      ++seq;
      ++kept;
      prev = rec->epoch;
    }
    if (pos != seg[i].to) {  // a bad record, or the file ended first
      cut = true;
      break;
    }
  }
  if (cut) {
    next.tail = pos;
    if (i == 0) next.wrap = 0;  // keep [head, pos); a second segment goes with it
  }
  next.count = kept;
  next.push_seq = s.pop_seq + kept;
  next.cut_seq = next.push_seq;
  next.last = last;
  next.epoch = s.epoch + 1;
  if (kept == 0) {
    next.head = next.tail = next.wrap = next.last = 0;
    next.pop_epoch = next.epoch;
  }
  return Recovered{next, s.count - kept};
}

// ---- the claim holder ---------------------------------------------------------
// A claim must stay locked while the caller (an Erlang process, which moves
// between scheduler threads) runs code of its own, and a process-shared
// mutex belongs to the thread that locked it. So one thread per process
// takes and lets go of every claim lock: its death (the process's death)
// is what voids them. It only tries locks and lets go of them, so a
// request is answered within microseconds; callers wait for the answer
// (a released claim is free when release returns).
class Holder {
 public:
  struct Req {
    bool unlock = false;
    const MappingBackend* backend = nullptr;
    void* lock = nullptr;
    Result<LockState> result{LockState::busy};
    bool done = false;
    Req* next = nullptr;
  };

  // This process's holder. Never destroyed: the detached thread may be
  // waiting when statics die. A child forked after the parent made one
  // has the object but not its thread, so it makes its own.
  static Holder* get() noexcept {
    static std::mutex made_m;
    static Holder* made = nullptr;
    std::lock_guard<std::mutex> lk(made_m);
    if (!made || made->pid_ != ::getpid()) {
      try {
        made = new Holder();
      } catch (...) {
        made = nullptr;
      }
    }
    return made;
  }

  // Runs `r` on the holder thread and waits for it. A lock that is
  // owner-dead counts as acquired (the dead claimer's claim is void) and is
  // left consistent.
  Result<LockState> call(Req& r) noexcept {
    r.done = false;
    r.next = nullptr;
    std::unique_lock<std::mutex> lk(m_);
    if (tail_) tail_->next = &r; else head_ = &r;
    tail_ = &r;
    wake_.notify_one();
    done_.wait(lk, [&] { return r.done; });
    return r.result;
  }

 private:
  Holder() : pid_(::getpid()), thread_([this] { run(); }) { thread_.detach(); }

  void run() {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      wake_.wait(lk, [&] { return head_ != nullptr; });
      Req* r = head_;
      head_ = r->next;
      if (!head_) tail_ = nullptr;
      lk.unlock();
      Result<LockState> st = LockState::acquired;
      if (r->unlock) {
        r->backend->shared_lock_release(r->lock);
      } else {
        st = r->backend->shared_lock_acquire(r->lock, 0);
        // This thread holds the lock already: busy, as for anyone else
        // (the owner-word lock, without robust mutexes, says edeadlk).
        if (!st && st.error() == Errc::edeadlk) st = LockState::busy;
        if (st && *st == LockState::owner_died) {
          r->backend->shared_lock_consistent(r->lock);
          st = LockState::acquired;
        }
      }
      lk.lock();
      r->result = st;
      r->done = true;
      done_.notify_all();
    }
  }

  const pid_t pid_;
  std::mutex m_;
  std::condition_variable wake_, done_;
  Req* head_ = nullptr;
  Req* tail_ = nullptr;
  std::thread thread_;
};

// A token no other claim, in any process, is likely to carry.
std::uint64_t new_token() noexcept {
  static std::atomic<std::uint64_t> next = [] {
    std::uint64_t seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    try {
      std::random_device rd;
      seed ^= static_cast<std::uint64_t>(rd()) << 32 | rd();
    } catch (...) {
    }
    return seed | 1;
  }();
  std::uint64_t t;
  do t = next.fetch_add(0x9E3779B97F4A7C15ull, std::memory_order_relaxed);
  while (t == 0);
  return t;
}

}  // namespace

class Queue::Claim {
 public:
  ~Claim() { end(); }
  // Lets go of the claim lock (once), on the holder thread that took it.
  void end() noexcept {
    std::lock_guard<std::mutex> lk(m);
    if (!held) return;
    held = false;
    Holder::Req r;
    r.unlock = true;
    r.backend = &map->backend();
    r.lock = lock;
    (void)holder->call(r);
    pin.reset();
  }

  Holder* holder = nullptr;       // the one that holds the lock
  std::shared_ptr<Mapping> map;   // keeps the backend alive
  std::shared_ptr<Region> pin;    // the generation the lock was taken at
  void* lock = nullptr;
  std::uint64_t token = 0, seq = 0;
  bool held = false;
  std::mutex m;
};

// ---- the lock ----------------------------------------------------------------

// What a locked body sees, and what it can ask for. A body decides
// everything that needs blocking (slow) before it changes anything.
struct Queue::Ctx {
  const View& v;
  Mapping& m;
  const Options& o;
  bool can_block;               // the slow path with Wait::yes: may sync
  std::uint64_t grow_to = 0;    // the file must first hold this many bytes (nothing changed)
  std::uint64_t shrink_to = 0;  // after the body: the file shrinks to this
  bool slow = false;            // must run where it may block (nothing changed)

  bool strict() const { return o.durability != Durability::never || (v.flags().load() & kStrict); }

  // Whether the head may be popped: no claim is out, or `own` is the
  // claim, or the one out is void (its holder let go of the claim lock or
  // died: the lock is then free or owner-dead), in which case it is cleared.
  // ebusy while another live claim holds the head.
  Error head_free(const Claim* own) const {
    const std::uint64_t token = v.claim_token().load(std::memory_order_acquire);
    if (token == 0) return own ? Error(Errc::estale) : Error();
    if (own) return token == own->token ? Error() : Error(Errc::estale);
    const MappingBackend& b = m.backend();
    auto st = b.shared_lock_acquire(v.claim_lock(), 0);
    if (!st) return st.error();
    if (*st == LockState::busy) return Errc::ebusy;
    if (*st == LockState::owner_died) b.shared_lock_consistent(v.claim_lock());
    b.shared_lock_release(v.claim_lock());
    v.claim_token().store(0, std::memory_order_release);
    return {};
  }

  // Bytes [pos, pos+len) of the file on stable storage. A failure may mean
  // the kernel dropped pages it could not write (and calls them clean):
  // the file is marked so every handle rewrites before trusting a sync.
  Error sync_range(std::uint64_t pos, std::uint64_t len) const {
    Error e = m.sync_inside(pos, len);
    if (e) v.flags().fetch_or(kIoError);
    return e;
  }

  // Persistent memory: sync_range flushes exactly its bytes, and every
  // record of a strict file was flushed by its writer before the commit
  // that lists it (see push_body), so durability needs only the header's
  // commit lines: no msync of everything up to the tail.
  bool pmem() const { return v.pmem != nullptr; }

  // The live records' bytes (not the header) on stable storage.
  Error sync_live_records() const {
    Segment seg[2];
    const int n = segments(v.live(), seg);
    for (int i = 0; i < n; ++i) {
      if (Error e = sync_range(kHeaderSize + seg[i].from, seg[i].to - seg[i].from)) return e;
    }
    return {};
  }

  // The header (and so the live state) on stable storage; the durable copy
  // catches up. Only its first bytes matter (magic, current, flags, the two
  // slots); on a page-cache map this syncs the whole header page anyway.
  Error sync_header() const {
    if (Error e = sync_range(0, offsetof(Header, durable))) return e;
    v.mark_durable(v.live());
    return {};
  }

  // After a failed sync: dirty every page of the header and the live
  // records again (a read-modify-write of one word per page changes no
  // byte) and sync them; once that works the disk holds them for sure.
  Error heal() const {
    const State& s = v.live();
    const std::uint64_t end = kHeaderSize + (s.count == 0 ? 0 : s.wrap ? s.wrap : s.tail);
    const std::size_t page = m.backend().page_size();
    for (std::uint64_t p = 0; p < end; p += page)
      std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(v.base + p)).fetch_add(0);
    if (Error e = m.sync_inside(0, end)) return e;
    v.mark_durable(s);
    v.flags().fetch_and(~kIoError);
    return {};
  }

  // Recovery in a form that others can rely on. The kept records are made
  // durable as they were checked (so no page of theirs can come back older
  // after another power loss), then the cut and the next epoch are
  // committed and made durable, before any record carries that epoch.
  Result<std::uint64_t> recover_durably() const {
    auto r = recover(v);
    if (!r) return r.error();
    Segment seg[2];
    const int n = segments(r->next, seg);
    for (int i = 0; i < n; ++i) {
      if (Error e = sync_range(kHeaderSize + seg[i].from, seg[i].to - seg[i].from)) return e;
    }
    if (Error e = v.commit(r->next)) return e;
    if (Error e = sync_header()) return e;
    if (v.flags().fetch_and(~kNeedsRecovery) & kNeedsRecovery)
      std::atomic_ref<std::uint64_t>(v.h->repairs).fetch_add(1);
    return r->dropped;
  }
};

// The robust cross-process lock in the header, taken and released at one
// address (the generation it lives in stays pinned meanwhile). A holder's
// death is made consistent at once and left to the next locked step as a
// flag in the header, so no early return can leave the lock unusable.
class Queue::Lock {
 public:
  explicit Lock(Mapping& m) : m_(m) {}
  ~Lock() {
    if (held_) m_.backend().shared_lock_release(lock_);
  }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  Error acquire(Wait w) {
    auto r = m_.with_range(
        0, kHeaderSize,
        [&](const char* d, std::size_t n, Region& region) -> Result<int> {
          if (n < kHeaderSize) return Error(Errc::corrupt);
          pin_ = region.shared_from_this();
          header_ = const_cast<char*>(d);
          return 0;
        },
        w);
    if (!r) return r.error() == Errc::eof ? Error(Errc::corrupt) : r.error();
    lock_ = header_ + kLockOffset;
    const std::uint32_t wait_ms = w == Wait::no ? 0 : w == Wait::briefly ? kBriefWaitMs : MappingBackend::kForever;
    auto st = m_.backend().shared_lock_acquire(lock_, wait_ms);
    if (!st) return st.error();
    if (*st == LockState::busy) return Errc::ebusy;
    held_ = true;
    if (*st == LockState::owner_died) {
      View(header_, kHeaderSize).flags().fetch_or(kNeedsRecovery);
      m_.backend().shared_lock_consistent(lock_);
    }
    return {};
  }

 private:
  Mapping& m_;
  std::shared_ptr<Region> pin_;
  char* header_ = nullptr;
  void* lock_ = nullptr;
  bool held_ = false;
};

// Runs `body(Ctx&)` under the lock, with the map matching the file (another
// handle may have grown or shrunk it) and a state that is consistent (a
// dead holder's work re-checked, a failed sync's pages rewritten). A body
// that asks for growth is run again once the file is grown.
//
// A handle's own map is never evidence about the file: a state that claims
// more than this handle maps first makes it follow the file (others may
// have grown it, or something outside lengthened it); only a file that is
// really shorter than the state is "cut short" and recovered.
template <typename F>
Error Queue::locked(Wait w, F&& body) noexcept {
  Lock lock(*map_);
  if (Error e = lock.acquire(w)) return e;
  bool followed = false;  // the map was made to match the file in this call
  for (;;) {
    enum class Next { done, follow, grow } next = Next::done;
    std::uint64_t layout = 0, grow_to = 0, shrink_to = 0;
    Error e = map_->with_map(
        [&](char* base, std::uint64_t size) -> Error {
          if (size < kHeaderSize) return Errc::corrupt;
          View v(base, size, *map_);
          if (!v.formatted()) return Errc::corrupt;
          layout = v.layout().load(std::memory_order_acquire);
          if (layout != seen_layout_.load(std::memory_order_relaxed) ||
              (!followed && plausible(v.live()) && v.live().capacity > v.avail)) {
            next = Next::follow;  // the file's size changed, or this map is behind it
            return {};
          }
          Ctx c{v, *map_, options_, w != Wait::no};
          const std::uint64_t flags = v.flags().load();
          if ((flags & kNeedsRecovery) || !plausible(v.live()) || v.live().capacity > v.avail) {
            // A holder died, the state is damaged, or the file is shorter
            // than the state says (cut outside the queue): re-check it all.
            if (!c.can_block) return Errc::ebusy;
            auto r = c.recover_durably();
            if (!r) return r.error();
          }
          if (v.flags().load() & kIoError) {
            // A sync failed (here or in another handle): nothing is trusted
            // until the live records are written and synced again.
            if (!c.can_block) return Errc::ebusy;
            if (Error he = c.heal()) return he;
          }
          if (options_.durability != Durability::never && !(v.flags().load() & kStrict)) {
            // This handle's promise needs every handle's care from now on;
            // the durable copy must be right before anyone relies on it.
            // On persistent memory the records pushed so far were never
            // flushed: they are now, once.
            if (!c.can_block) return Errc::ebusy;
            if (c.pmem()) {
              if (Error pe = c.sync_live_records()) return pe;
            }
            if (Error se = c.sync_header()) return se;
            v.flags().fetch_or(kStrict);
          }
          if (Error be = body(c)) return be;
          if (c.slow) return Errc::ebusy;  // only asked for when it cannot block
          if (c.grow_to || c.shrink_to) {
            v.layout().store(layout + 1, std::memory_order_release);  // before the file changes
            grow_to = c.grow_to;
            shrink_to = c.shrink_to;
            if (grow_to) next = Next::grow;
          }
          return {};
        },
        true, w);
    if (e) return e;
    switch (next) {
      case Next::follow: {
        if (w == Wait::no) return Errc::ebusy;  // remapping blocks
        auto f = map_->follow_file();
        if (!f) return f.error();
        seen_layout_.store(layout, std::memory_order_relaxed);
        followed = true;
        continue;
      }
      case Next::grow: {
        if (w == Wait::no) return Errc::ebusy;
        auto g = map_->ensure_size(grow_to);
        // Only a map that now matches the file counts as caught up; a
        // failed growth leaves the layout bumped, so this handle (like the
        // others) follows whatever length the file was left with.
        if (!g) return g.error() == Errc::fixed_size ? Error(Errc::full) : g.error();
        seen_layout_.store(layout + 1, std::memory_order_relaxed);
        continue;
      }
      case Next::done:
        break;
    }
    if (shrink_to) {
      // Still under the lock, outside the gate. A map that cannot shrink
      // (fixed size, darwin) keeps its bytes; the state already says less.
      auto r = map_->resize(shrink_to);
      if (r) seen_layout_.store(layout + 1, std::memory_order_relaxed);
      if (!r && r.error() != Errc::fixed_size) return r.error();
    }
    return {};
  }
}

// The fast path: one access-gate section in which the lock is only tried,
// so nothing can move the map meanwhile. Answers nothing (nullopt) when
// the slow path must run: lock busy, a dead holder, the map behind the
// file, growth, or a body that must block.
template <typename F>
std::optional<Error> Queue::fast(F&& body) noexcept {
  std::optional<Error> out;
  const MappingBackend& backend = map_->backend();
  Error e = map_->with_map(
      [&](char* base, std::uint64_t size) -> Error {
        if (size < kHeaderSize) return {};
        View v(base, size, *map_);
        if (!v.formatted()) return {};
        void* lock = base + kLockOffset;
        auto st = backend.shared_lock_acquire(lock, 0);
        if (!st || *st == LockState::busy) return {};
        if (*st == LockState::owner_died) {
          v.flags().fetch_or(kNeedsRecovery);  // the slow path re-checks
          backend.shared_lock_consistent(lock);
          backend.shared_lock_release(lock);
          return {};
        }
        const State& s = v.live();
        const std::uint64_t flags = v.flags().load();
        if (v.layout().load(std::memory_order_acquire) != seen_layout_.load(std::memory_order_relaxed) ||
            (flags & (kNeedsRecovery | kIoError)) || (options_.durability != Durability::never && !(flags & kStrict)) ||
            !plausible(s) || s.capacity > v.avail) {
          backend.shared_lock_release(lock);
          return {};
        }
        Ctx c{v, *map_, options_, false};
        Error fe = body(c);
        backend.shared_lock_release(lock);
        if (!c.grow_to && !c.slow) out = fe;
        return {};
      },
      true, Wait::no);
  if (e && e != Errc::ebusy) return e;
  return out;
}

template <typename F>
Error Queue::run(Wait w, F&& body) noexcept {
  if (auto quick = fast(body)) return *quick;
  return locked(w, body);
}

// ---- open and close --------------------------------------------------------------

Result<std::shared_ptr<Queue>> Queue::open(std::shared_ptr<Mapping> m, std::uint64_t initial_capacity,
                                           const Options& o) noexcept {
  if (!m) return Error(Errc::einval);
  if (m->closed()) return Error(Errc::closed);
  if (!m->writable()) return Error(Errc::eacces);
  if (m->options().sharing == Sharing::private_) return Error(Errc::einval);
  if (initial_capacity > kMaxCapacity) return Error(Errc::einval);
  const std::uint64_t initial = round8(std::max(initial_capacity, kMinCapacity));
  // One queue handle per map: the liveness lock below belongs to the map's
  // open file description, which a second handle here would share.
  if (!m->claim()) return Error(Errc::einval);
  std::shared_ptr<Queue> q(new (std::nothrow) Queue(m, o));
  if (!q) {
    m->unclaim();
    return Error(Errc::enomem);
  }

  // A shared flock says "a handle is open" for as long as this one lives.
  // Whoever gets it exclusively is alone with the file: nobody can be
  // holding the queue's lock, so it may renew the lock and re-check every
  // record. Dropped by the OS when the process dies, in any PID namespace.
  auto fd = m->duplicate_file();
  if (!fd) return fd.error();
  q->live_fd_.store(*fd);
  const MappingBackend& b = m->backend();
  auto alone = b.lock_file(*fd, true, false);
  if (!alone) return alone.error();
  OpenReport& report = q->report_;
  if (*alone) {
    // Set-up and recovery before any other handle can open (they wait for
    // the shared lock): nobody may push under the old epoch meanwhile.
    report.recovered = true;
    Error e = q->setup_alone(initial);
    if (!e) {
      e = q->locked(Wait::yes, [&](Ctx& c) -> Error {
        auto r = c.recover_durably();
        if (!r) return r.error();
        report.dropped = *r;
        report.count = c.v.live().count;
        return {};
      });
    }
    if (e) return e;
    auto sh = b.lock_file(*fd, false, true);  // down to shared: others may open now
    if (!sh) return sh.error();
  } else {
    // Others are using it: it is set up and recovered. No queue lock here,
    // so a holder that is slow (or stuck) cannot stall an open.
    auto sh = b.lock_file(*fd, false, true);  // waits only for an opener that is alone
    if (!sh) return sh.error();
    Error e = m->with_map(
        [&](char* base, std::uint64_t size) -> Error {
          if (size < kHeaderSize) return Errc::corrupt;
          View v(base, size);
          if (std::memcmp(v.h->magic, kMagic, sizeof kMagic) != 0) return Errc::corrupt;
          if (v.h->version != kVersion) return Errc::unsupported_version;
          const State s = v.live();  // a snapshot for the report, without the lock
          report.count = plausible(s) ? s.count : 0;
          return {};
        },
        false);
    if (e) return e;
  }
  // The last handle of an auto_unlink queue may have removed the file while
  // this one waited for the shared lock: this handle would be alone with a
  // file nobody else can find. The caller opens again.
  if (o.auto_unlink) {
    auto same = b.names_file(m->path().c_str(), *fd);
    if (!same || !*same) return Error(Errc::estale);
  }
  if (o.durability == Durability::interval && o.sync_interval_ms > 0) schedule_sync(q, o.sync_interval_ms);
  return q;
}

void Queue::schedule_sync(std::weak_ptr<Queue> wq, std::uint32_t ms) noexcept {
  (void)run_in_background_after(std::chrono::milliseconds(ms), [wq, ms] {
    auto q = wq.lock();
    if (!q || q->map_->closed()) return;  // the handle is gone or closed: no more syncs
    // A failed sync is remembered in the file (every handle rewrites before
    // trusting the disk again); a lock held elsewhere waits for the next tick.
    (void)q->sync(Wait::briefly);
    schedule_sync(wq, ms);
  });
}

// Formats a new file, or renews the lock of an existing queue. Only with
// the exclusive file lock (no other handle is open).
Error Queue::setup_alone(std::uint64_t initial) noexcept {
  Mapping& m = *map_;
  if (m.size() == 0) {  // a new, empty file
    auto g = m.ensure_size(kHeaderSize + initial);
    if (!g) return g.error();
  }
  if (m.size() < kHeaderSize) return Errc::corrupt;  // too short to be a queue
  return m.with_map(
      [&](char* base, std::uint64_t size) -> Error {
        View v(base, size, m);
        if (std::memcmp(v.h->magic, kMagic, sizeof kMagic) == 0) {
          if (v.h->version != kVersion) return Errc::unsupported_version;
          // A word outside the checksummed state: one we could not have
          // written means no shrink (never a state that would not commit).
          if (!v.initial(v.live())) v.h->initial = std::max(kMinCapacity, v.live().capacity & ~std::uint64_t{7});
        } else {
          static const Header zero{};
          const bool torn = std::memcmp(v.h->magic, kFormatting, sizeof kFormatting) == 0;  // a format cut short
          if (!torn && std::memcmp(v.h, &zero, sizeof zero) != 0) return Errc::corrupt;  // somebody else's file
          if (v.avail < kMinCapacity) return Errc::einval;
          std::memcpy(v.h->magic, kFormatting, sizeof kFormatting);  // first: this file is being made a queue
          // Persistent memory: the marker is on the media before anything
          // else of the header can be (an evicted slot line beside a zero
          // first line was "somebody else's file" for ever after).
          if (v.pmem) {
            if (Error e = m.sync_inside(0, sizeof kFormatting)) return e;
          }
          std::atomic_thread_fence(std::memory_order_release);
          Header fresh{};
          std::memcpy(fresh.magic, kFormatting, sizeof kFormatting);
          fresh.version = kVersion;
          fresh.header_size = static_cast<std::uint32_t>(kHeaderSize);
          fresh.initial = std::min(initial, v.avail);
          fresh.current = 1;
          std::memcpy(v.h, &fresh, sizeof fresh);
          State s{};
          s.capacity = v.avail;
          if (Error e = v.commit(s)) return e;  // writes slot 0 and makes it current
          v.mark_durable(v.live());
          // Persistent memory: the header is on the media before the magic
          // that makes it valid can be (lines reach it in any order).
          if (v.pmem) {
            if (Error e = m.sync_inside(0, sizeof(Header))) return e;
          }
          std::atomic_thread_fence(std::memory_order_release);
          std::memcpy(v.h->magic, kMagic, sizeof kMagic);  // last: a torn format is never taken as valid
          if (v.pmem) {
            if (Error e = m.sync_inside(0, sizeof kMagic)) return e;
          }
          report_.initialised = true;
        }
        // Nobody else has the file open: whatever the lock word says (a
        // holder from before a crash, damage), no living process holds it.
        // The same for the claim lock: no process is left to hold a claim.
        std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base + kClaimOffset)).store(0);
        if (Error e = m.backend().shared_lock_init(base + kClaimLockOffset)) return e;
        return m.backend().shared_lock_init(base + kLockOffset);
      },
      true);
}

Queue::~Queue() {
  let_go();
  map_->unclaim();
}

void Queue::close() noexcept {
  map_->close();
  let_go();
}

void Queue::let_go() noexcept {
  const FileId fd = live_fd_.exchange(kNoFile);
  if (fd == kNoFile) return;
  MappingBackend& b = *map_->shared_backend();
  if (options_.auto_unlink) {
    // The last one out removes the file: give up our shared lock and see
    // whether an exclusive one can be had (no other handle has it open).
    b.unlock_file(fd);
    auto alone = b.lock_file(fd, true, false);
    if (alone && *alone) (void)b.unlink_if_same(map_->path().c_str(), fd);
  }
  (void)b.close_file(fd);
}

// ---- operations --------------------------------------------------------------------

Error Queue::push_body(Ctx& c, std::uint8_t kind, const void* data, std::uint32_t len) noexcept {
  const View& v = c.v;
  const State s = v.live();
  const std::uint64_t need = rec_size(len);
  const bool strict = c.strict();
  const bool always = c.o.durability == Durability::always;
  if (always && !c.can_block) {
    c.slow = true;
    return {};
  }
  State next = s;
  std::uint64_t pos;
  bool move = false;
  std::uint64_t grown_cap = 0;
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
    if (c.o.fixed_size) return Errc::full;
    // Grow so the record fits after the live data, unwrapped.
    const std::uint64_t live_end = s.wrap ? s.wrap + s.tail : s.tail;
    std::uint64_t cap = s.capacity;
    while (cap < live_end + need) {
      const std::uint64_t nc = resize_policy(cap, c.m.options().max_inc_size, 4096);
      if (nc == 0 || nc > UINT64_MAX - kHeaderSize) return Errc::efbig;
      cap = round8(nc);
    }
    if (cap > v.avail) {
      c.grow_to = kHeaderSize + cap;  // the file first, then come back
      return {};
    }
    move = s.wrap != 0 && s.tail != 0;
    if (move && strict && !c.can_block) {
      c.slow = true;  // the moved bytes are synced before the commit
      return {};
    }
    grown_cap = cap;
    pos = live_end;
  }
  // The bytes about to be written must not hold a record that the state on
  // stable storage still has (else a power loss now would lose it).
  const std::uint64_t move_from = s.wrap, move_to = s.wrap + s.tail;
  const bool reuse = strict && (v.durably_held(pos, pos + need) || (move && v.durably_held(move_from, move_to)));
  if (reuse && !c.can_block) {
    c.slow = true;
    return {};
  }
  if (reuse) {
    if (Error e = c.sync_header()) return e;
  }
  const State before = s;
  if (grown_cap) {
    State grown = s;
    if (s.wrap) {
      if (move) {
        // [0, tail) moves after [head, wrap): a copy in free space, durable
        // (when it matters) before the state that points at it.
        std::memmove(v.data + s.wrap, v.data, s.tail);
        if (strict) {
          if (Error e = c.sync_range(kHeaderSize + move_from, move_to - move_from)) return e;
        }
        if (s.last < s.tail) grown.last = s.last + s.wrap;
      }
      grown.tail = move_to;
      grown.wrap = 0;
    }
    grown.capacity = grown_cap;
    next = grown;
    next.tail = pos + need;
  }
  v.write(pos, kind, data, len, s.push_seq, s.epoch);
  if (strict && c.pmem()) {
    // Persistent memory: the record is on the media before any commit
    // that lists it (whichever handle commits next): flushed, fenced.
    if (Error e = c.sync_range(kHeaderSize + pos, need)) return e;
  }
  next.count = s.count + 1;
  next.push_seq = s.push_seq + 1;
  next.last = pos;
  if (s.count == 0) {
    next.pop_seq = s.push_seq;
    next.pop_epoch = s.epoch;
  }
  if (Error e = v.commit(next)) return e;
  if (always) {
    // Everything up to the new tail, whoever wrote it, and the header.
    const State& now = v.live();
    const std::uint64_t end = now.wrap ? now.wrap : now.tail;
    // Persistent memory: the records are flushed already (above, and by
    // every other writer of this strict file): the commit lines only.
    if (Error e = c.pmem() ? c.sync_range(0, offsetof(Header, durable)) : c.sync_range(0, kHeaderSize + end)) {
      (void)v.commit(before);  // not acknowledged: not in the queue either
      return e;
    }
    v.mark_durable(now);
  }
  return {};
}

Error Queue::push(std::uint8_t kind, const void* data, std::size_t len, Wait w) noexcept {
  if (len > UINT32_MAX - kRecHeader) return Errc::einval;
  return run(w, [&](Ctx& c) { return push_body(c, kind, data, static_cast<std::uint32_t>(len)); });
}

Result<bool> Queue::take(Take how, Visitor visit, void* ctx, Wait w) noexcept {
  return take_impl(how, visit, ctx, w, nullptr);
}

// The newest record, [last, ...): read only.
static Error visit_back(const View& v, const State& s, Visitor visit, void* ctx, bool can_block, bool* slow,
                        bool* found) {
  // Wrapped, the records are [head, wrap) then [0, tail).
  const std::uint64_t limit = s.wrap && s.last >= s.head ? s.wrap : s.tail;
  if (!can_block && v.length_at(s.last, limit) > kLargeRecord) {
    *slow = true;
    return {};
  }
  const std::uint64_t back_seq = s.push_seq - 1;
  auto rec = v.check(s.last, limit, back_seq, back_seq >= s.cut_seq ? s.epoch : s.pop_epoch, s.epoch);
  if (!rec) return Errc::corrupt;
  const Errc taken = visit(ctx, v.kind_at(s.last), v.payload_at(s.last), rec->len);
  if (taken != Errc::ok) return taken;
  *found = true;
  return {};
}

Result<bool> Queue::take_impl(Take how, Visitor visit, void* ctx, Wait w, const Claim* own) noexcept {
  bool found = false;
  auto body = [&](Ctx& c) -> Error {
    found = false;
    const View& v = c.v;
    const State s = v.live();
    if (how == Take::peek_back) {
      if (s.count == 0) return {};
      return visit_back(v, s, visit, ctx, c.can_block, &c.slow, &found);
    }
    const std::optional<std::uint64_t> initial = v.initial(s);
    const bool purge = how == Take::pop_and_purge;
    const bool always = c.o.durability == Durability::always;
    const bool shrink_after = purge && initial && s.capacity > *initial && s.count <= 1;
    if (((always && how != Take::peek) || shrink_after) && !c.can_block) {
      c.slow = true;
      return {};
    }
    if (how != Take::peek && (s.count > 0 || own)) {
      if (Error e = c.head_free(own)) return e;
      if (own && (s.count == 0 || s.pop_seq != own->seq)) return Errc::estale;
    }
    State next = s;
    if (s.count == 0) {
      if (!shrink_after) return {};
    } else {
      const std::uint64_t limit = s.wrap ? s.wrap : s.tail;
      // Checking (CRC32C) and handing out a large record takes long: only
      // where blocking is fine.
      if (!c.can_block && v.length_at(s.head, limit) > kLargeRecord) {
        c.slow = true;
        return {};
      }
      auto rec = v.check(s.head, limit, s.pop_seq, s.pop_epoch, s.pop_epoch);
      if (!rec) return Errc::corrupt;  // recovery at the next lone open cuts it off
      const Errc taken = visit(ctx, v.kind_at(s.head), v.payload_at(s.head), rec->len);
      if (taken != Errc::ok) return taken;
      found = true;
      if (how == Take::peek) return {};
      next.head = s.head + rec_size(rec->len);
      next.count = s.count - 1;
      next.pop_seq = s.pop_seq + 1;
      if (s.wrap && next.head == s.wrap) {
        next.head = 0;  // the end segment is used up: what is left is [0, tail)
        next.wrap = 0;
      }
      if (next.count == 0) {
        next.head = next.tail = next.wrap = next.last = 0;  // empty: start from the front again
        next.pop_epoch = s.epoch;
      } else {
        const std::uint64_t lim = next.wrap ? next.wrap : next.tail;
        if (next.head > lim || lim - next.head < kRecHeader) return Errc::corrupt;  // count and layout disagree
        next.pop_epoch = v.epoch_at(next.head);  // the whole record is checked when it is taken
        const EpochRange allowed = epochs_for(s, next.pop_seq, rec->epoch);
        if (next.pop_epoch < allowed.min || next.pop_epoch > allowed.max) return Errc::corrupt;
      }
    }
    if (shrink_after) next.capacity = *initial;
    const State before = s;
    if (Error e = v.commit(next)) {
      found = false;
      return e;
    }
    if (always) {
      if (Error e = c.sync_header()) {
        (void)v.commit(before);
        found = false;
        return e;
      }
    }
    if (own && found) v.claim_token().store(0, std::memory_order_release);  // popped: the claim is done
    if (shrink_after) c.shrink_to = kHeaderSize + *initial;
    return {};
  };
  Error e = run(w, body);
  if (e) return e;
  return found;
}

Result<std::shared_ptr<Queue::Claim>> Queue::claim(Visitor visit, void* ctx, Wait w) noexcept {
  Holder* holder = Holder::get();
  if (!holder) return Error(Errc::enomem);
  std::shared_ptr<Claim> cl;
  try {
    cl = std::make_shared<Claim>();
  } catch (...) {
    return Error(Errc::enomem);
  }
  // The claim lock is taken (and later let go of) at one address, in a
  // generation pinned for as long as the claim is out.
  auto pinned = map_->with_range(
      0, kHeaderSize,
      [&](const char* d, std::size_t n, Region& region) -> Result<int> {
        if (n < kHeaderSize) return Error(Errc::corrupt);
        cl->pin = region.shared_from_this();
        cl->lock = const_cast<char*>(d) + kClaimLockOffset;
        return 0;
      },
      w);
  if (!pinned) return pinned.error() == Errc::eof ? Error(Errc::corrupt) : pinned.error();
  cl->map = map_;
  cl->holder = holder;
  bool found = false;
  Error e = run(w, [&](Ctx& c) -> Error {
    found = false;
    const View& v = c.v;
    const State s = v.live();
    if (s.count == 0) return {};
    if (Error fe = c.head_free(nullptr)) return fe;
    const std::uint64_t limit = s.wrap ? s.wrap : s.tail;
    if (!c.can_block && v.length_at(s.head, limit) > kLargeRecord) {
      c.slow = true;
      return {};
    }
    auto rec = v.check(s.head, limit, s.pop_seq, s.pop_epoch, s.pop_epoch);
    if (!rec) return Errc::corrupt;
    Holder::Req req;
    req.backend = &c.m.backend();
    req.lock = cl->lock;
    auto st = holder->call(req);
    if (!st) return st.error();
    if (*st == LockState::busy) return Errc::ebusy;  // a claim just committed, its lock being let go of
    const Errc taken = visit(ctx, v.kind_at(s.head), v.payload_at(s.head), rec->len);
    cl->held = true;
    if (taken != Errc::ok) {
      cl->end();
      return taken;
    }
    cl->token = new_token();
    cl->seq = s.pop_seq;
    v.claim_seq() = s.pop_seq;
    v.claim_token().store(cl->token, std::memory_order_release);
    found = true;
    return {};
  });
  if (e) return e;
  if (!found) return std::shared_ptr<Claim>();
  return cl;
}

Result<Queue::ScanResult> Queue::scan(ScanPos from, std::size_t max, ScanVisitor visit, void* ctx, Wait w) noexcept {
  ScanResult out;
  Error e = run(w, [&](Ctx& c) -> Error {
    const View& v = c.v;
    const State s = v.live();
    out = ScanResult{};
    ScanPos at = from;
    if (s.count == 0 || at.seq >= s.push_seq) {
      out.next = {s.push_seq, s.tail};
      return {};
    }
    auto limit_of = [&](std::uint64_t pos) { return s.wrap && pos >= s.head ? s.wrap : s.tail; };
    auto step = [&](std::uint64_t pos, std::uint64_t len) {
      std::uint64_t next = pos + rec_size(len);
      if (s.wrap && next == s.wrap) next = 0;
      return next;
    };
    auto epoch_ok = [&](std::uint64_t seq) {
      return seq >= s.cut_seq ? EpochRange{s.epoch, s.epoch} : EpochRange{s.pop_epoch, s.epoch};
    };
    if (at.seq <= s.pop_seq) {
      at = {s.pop_seq, s.head};
    } else {
      const EpochRange er = epoch_ok(at.seq);
      if (!v.check(at.pos, limit_of(at.pos), at.seq, er.min, er.max)) {
        // The hint is stale (records moved by a grow): walk from the head,
        // only where taking long is fine.
        if (!c.can_block) {
          c.slow = true;
          return {};
        }
        std::uint64_t pos = s.head;
        for (std::uint64_t seq = s.pop_seq; seq < at.seq; ++seq) {
          const EpochRange r = epoch_ok(seq);
          auto rec = v.check(pos, limit_of(pos), seq, r.min, r.max);
          if (!rec) return Errc::corrupt;
          pos = step(pos, rec->len);
        }
        at.pos = pos;
      }
    }
    std::uint64_t bytes = 0;
    for (std::size_t n = 0; n < max && at.seq < s.push_seq; ++n) {
      const std::uint64_t limit = limit_of(at.pos);
      const std::uint64_t len = v.length_at(at.pos, limit);
      bytes += len;
      if (!c.can_block && bytes > kLargeRecord) {
        if (n == 0) {
          c.slow = true;
          return {};
        }
        break;  // enough for one call on a normal scheduler
      }
      const EpochRange r = epoch_ok(at.seq);
      auto rec = v.check(at.pos, limit, at.seq, r.min, r.max);
      if (!rec) return Errc::corrupt;
      const Errc taken = visit(ctx, at, v.kind_at(at.pos), v.payload_at(at.pos), rec->len);
      if (taken != Errc::ok) return taken;
      at = {at.seq + 1, step(at.pos, rec->len)};
    }
    out.next = at;
    out.more = at.seq < s.push_seq;
    return {};
  });
  if (e) return e;
  return out;
}

void Queue::release(Claim& cl) noexcept { cl.end(); }

Error Queue::commit(Claim& cl, bool purge, Wait w) noexcept {
  {
    std::lock_guard<std::mutex> lk(cl.m);
    if (!cl.held) return Errc::estale;
  }
  auto r = take_impl(purge ? Take::pop_and_purge : Take::pop,
                     [](void*, std::uint8_t, const char*, std::size_t) { return Errc::ok; }, nullptr, w, &cl);
  if (!r) return r.error();
  cl.end();
  return *r ? Error() : Error(Errc::estale);
}

Result<std::optional<Item>> Queue::take(Take how, Wait w) noexcept {
  Item item{};
  auto r = take(
      how,
      [](void* ctx, std::uint8_t kind, const char* data, std::size_t len) -> Errc {
        auto* it = static_cast<Item*>(ctx);
        it->kind = kind;
        try {
          it->data.assign(data, len);
        } catch (...) {
          return Errc::enomem;
        }
        return Errc::ok;
      },
      &item, w);
  if (!r) return r.error();
  if (!*r) return std::optional<Item>();
  return std::optional<Item>(std::move(item));
}

Result<std::uint64_t> Queue::length(Wait w) noexcept {
  std::uint64_t n = 0;
  Error e = run(w, [&](Ctx& c) -> Error {
    n = c.v.live().count;
    return {};
  });
  if (e) return e;
  return n;
}

Result<Stats> Queue::stats(Wait w) noexcept {
  Stats st;
  Error e = run(w, [&](Ctx& c) -> Error {
    const State& s = c.v.live();
    st.count = s.count;
    st.head = kHeaderSize + s.head;
    st.tail = kHeaderSize + s.tail;
    st.capacity = s.capacity;
    st.used = s.count == 0 ? 0 : s.wrap ? s.wrap - s.head + s.tail : s.tail - s.head;
    st.epoch = s.epoch;
    st.repairs = std::atomic_ref<std::uint64_t>(c.v.h->repairs).load();
    st.strict = (c.v.flags().load() & kStrict) != 0;
    st.syncs = syncs_.load(std::memory_order_relaxed);
    return {};
  });
  if (e) return e;
  return st;
}

Error Queue::purge(Wait w) noexcept {
  auto r = purge(false, w);
  return r ? Error() : r.error();
}

Result<bool> Queue::purge(bool only_if_empty, Wait w) noexcept {
  bool done = false;
  Error e = locked(w, [&](Ctx& c) -> Error {
    done = false;
    const View& v = c.v;
    const State s = v.live();
    if (only_if_empty && s.count > 0) return {};
    if (s.count > 0)
      if (Error fe = c.head_free(nullptr)) return fe;  // a claimed item is not dropped under its claimer
    const std::optional<std::uint64_t> initial = v.initial(s);
    const bool shrink = initial && s.capacity > *initial;
    const bool always = c.o.durability == Durability::always;
    if ((always || shrink) && !c.can_block) {
      c.slow = true;
      return {};
    }
    State next = s;
    next.head = next.tail = next.wrap = next.count = next.last = 0;
    next.pop_seq = next.push_seq = s.push_seq;
    next.pop_epoch = s.epoch;
    if (shrink) next.capacity = *initial;
    if (Error e = v.commit(next)) return e;
    if (always) {
      if (Error e = c.sync_header()) {
        (void)v.commit(s);
        return e;
      }
    }
    if (shrink) c.shrink_to = kHeaderSize + *initial;
    done = true;
    return {};
  });
  if (e) return e;
  return done;
}

Error Queue::sync(Wait w) noexcept {
  if (w == Wait::no) return Errc::ebusy;
  // Inside the lock: the kernel writes an msync's pages one at a time, so a
  // change made meanwhile could reach the disk beside a header from before
  // it (a record reused under a header that still lists it). Nothing
  // changes while this runs; what is committed now is durable after it.
  return locked(w, [&](Ctx& c) -> Error {
    // Persistent memory: on a strict file records are flushed by their
    // writers before their commits, so what is committed is durable once
    // the header is. A file that is not strict (only `never` handles) had
    // nobody flush its records: the live ones first, then the header.
    if (c.pmem() && !(c.v.flags().load() & kStrict)) {
      if (Error e = c.sync_live_records()) return e;
    }
    if (Error e = c.pmem() ? c.sync_header() : c.sync_range(0, UINT64_MAX)) return e;
    c.v.mark_durable(c.v.live());
    syncs_.fetch_add(1, std::memory_order_relaxed);
    return {};
  });
}

}  // namespace emmap::queue
