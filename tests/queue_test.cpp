// The persistent queue: order, wrap-around, growth, space reuse, recovery
// from corruption and from a lock holder's death, several processes.
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "faulty_backend.h"
#include "queue.h"
#include "test_util.h"

namespace emmap::test {
namespace {

std::shared_ptr<queue::Queue> open_queue_file(const std::string& path, std::uint64_t capacity, bool fixed = false,
                                              queue::Durability d = queue::Durability::never) {
  OpenOptions o;
  o.write = o.create = o.fit = true;
  o.size = queue::kHeaderSize + capacity;
  auto r = Mapping::open(path, 0, 0, o);
  if (!r) return nullptr;
  queue::Options qo;
  qo.fixed_size = fixed;
  qo.durability = d;
  auto q = queue::Queue::open(r->mapping, capacity, qo);
  if (!q) return nullptr;
  return *q;
}

// Opens a queue over an existing file; the error when it cannot.
Result<std::shared_ptr<queue::Queue>> open_existing(const std::string& path, std::uint64_t capacity) {
  OpenOptions o;
  o.write = true;
  auto r = Mapping::open(path, 0, 0, o);
  if (!r) return r.error();
  return queue::Queue::open(r->mapping, capacity, {});
}

std::string item(int i, std::size_t size = 0) {
  std::string s = "item-" + std::to_string(i);
  if (s.size() < size) s.resize(size, static_cast<char>('a' + i % 26));
  return s;
}

bool can_grow() { return make_backend()->capabilities().resize; }

Error push(queue::Queue& q, const std::string& s) { return q.push(queue::kBinary, s.data(), s.size()); }

std::optional<std::string> pop(queue::Queue& q, bool peek = false, bool purge = false) {
  auto r = q.take(peek ? queue::Take::peek : purge ? queue::Take::pop_and_purge : queue::Take::pop);
  EXPECT_TRUE(r.ok()) << (r ? "" : r.error().name());
  if (!r || !*r) return std::nullopt;
  return (*r)->data;
}

// In a forked child: takes the queue's lock the way a push does (a map of
// its own, as another program would), or exits 2 (no map) or 3 (no lock).
// Returns holding it; the map stays (leaked on purpose) for the child's life.
void hold_queue_lock(const std::string& f) {
  OpenOptions o;
  o.write = true;
  auto r = Mapping::open(f, 0, 0, o);
  if (!r) ::_exit(2);
  auto pin = r->mapping->pin();
  auto st = make_backend()->shared_lock_acquire((*pin)->base() + queue::kLockOffset, MappingBackend::kForever);
  if (!st || *st != LockState::acquired) ::_exit(3);
  new std::shared_ptr<Mapping>(r->mapping);  // never unmapped while the child lives
}

TEST(Queue, FifoOrderPeekLength) {
  TempDir d;
  auto m = open_queue_file(d.file("q"), 4096);
  ASSERT_TRUE(m);
  EXPECT_EQ(*m->length(), 0u);
  EXPECT_EQ(pop(*m), std::nullopt);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(push(*m, item(i)), Error());
  EXPECT_EQ(*m->length(), 10u);
  EXPECT_EQ(pop(*m, true), item(0));
  EXPECT_EQ(pop(*m, true), item(0)) << "peek takes nothing";
  for (int i = 0; i < 10; ++i) EXPECT_EQ(pop(*m), item(i));
  EXPECT_EQ(pop(*m), std::nullopt);
  auto kinds = m->push(queue::kTerm, "t", 1);
  ASSERT_EQ(kinds, Error());
  auto r = m->take(queue::Take::pop);
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_EQ((*r)->kind, queue::kTerm);
}

TEST(Queue, WrapsAroundAndGrowsWhileWrappedKeepingOrder) {
  TempDir d;
  auto m = open_queue_file(d.file("w"), 4096);
  ASSERT_TRUE(m);
  int next_push = 0, next_pop = 0;
  // Keep about 3 KiB live so the ring wraps many times.
  for (int round = 0; round < 2000; ++round) {
    while (next_push - next_pop < 20) ASSERT_EQ(push(*m, item(next_push++, 120)), Error());
    for (int k = 0; k < 7; ++k) ASSERT_EQ(pop(*m), item(next_pop++, 120));
  }
  EXPECT_EQ(m->mapping().size(), queue::kHeaderSize + 4096) << "a short queue reuses its ring";
  if (!can_grow()) {
    // No resize on this backend: a queue that cannot grow says full.
    Error e;
    while (!(e = push(*m, item(next_push++, 300)))) {
    }
    EXPECT_EQ(e, Errc::full);
    return;
  }
  // Now far more than fits: growth (possibly while wrapped) keeps the order.
  for (int i = 0; i < 500; ++i) ASSERT_EQ(push(*m, item(next_push++, 300)), Error());
  EXPECT_GT(m->mapping().size(), queue::kHeaderSize + 4096);
  while (next_pop < next_push) {
    const int i = next_pop++;
    ASSERT_EQ(pop(*m), item(i, i < next_push - 500 ? 120 : 300)) << i;
  }
  EXPECT_EQ(*m->length(), 0u);
}

TEST(Queue, KeptShortOverFiftyThousandCyclesStaysSmall) {
  TempDir d;
  auto m = open_queue_file(d.file("short"), 256 << 10);
  ASSERT_TRUE(m);
  const std::string payload(200, 'p');
  for (int i = 0; i < 50000; ++i) {
    ASSERT_EQ(push(*m, payload), Error());
    if (i % 3 != 2) {
      ASSERT_TRUE(pop(*m));  // drifts up to a small backlog, then drains
    }
    if (i % 1000 == 999) {
      while (pop(*m)) {
      }
    }
  }
  EXPECT_LE(file_size(d.file("short")), 4u << 20);
}

TEST(Queue, FixedSizeIsFullAndPurgeGivesSpaceBack) {
  TempDir d;
  auto f = open_queue_file(d.file("fixed"), 4096, true);
  ASSERT_TRUE(f);
  int n = 0;
  Error e;
  while (!(e = push(*f, item(n, 100)))) ++n;
  EXPECT_EQ(e, Errc::full);
  EXPECT_GT(n, 10);
  EXPECT_EQ(pop(*f), item(0, 100));
  EXPECT_EQ(push(*f, item(999, 100)), Error()) << "room again after a pop";
  if (!can_grow()) return;  // the rest grows the file

  auto g = open_queue_file(d.file("grow"), 4096);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(push(*g, item(i, 100)), Error());
  EXPECT_GT(file_size(d.file("grow")), 100000u);
  for (int i = 0; i < 999; ++i) ASSERT_TRUE(pop(*g, false, true));
  EXPECT_GT(file_size(d.file("grow")), 100000u) << "not empty yet";
  EXPECT_EQ(pop(*g, false, true), item(999, 100));
  EXPECT_EQ(file_size(d.file("grow")), queue::kHeaderSize + 4096) << "pop_and_purge shrank it";
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(push(*g, item(i, 100)), Error());
  ASSERT_EQ(g->purge(), Error());
  EXPECT_EQ(*g->length(), 0u);
  EXPECT_EQ(file_size(d.file("grow")), queue::kHeaderSize + 4096);
  ASSERT_EQ(push(*g, "after purge"), Error());
  EXPECT_EQ(pop(*g), "after purge");
}

TEST(Queue, ReopenKeepsOrderAndRefusesForeignFiles) {
  TempDir d;
  {
    auto m = open_queue_file(d.file("r"), 16384);
    for (int i = 0; i < 100; ++i) ASSERT_EQ(push(*m, item(i, 50)), Error());
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(pop(*m));
  }
  auto m = open_queue_file(d.file("r"), 16384);
  ASSERT_TRUE(m);
  EXPECT_EQ(*m->length(), 70u);
  for (int i = 30; i < 100; ++i) EXPECT_EQ(pop(*m), item(i, 50));

  write_file(d.file("foreign"), std::string(8192, 'x'));
  EXPECT_EQ(open_existing(d.file("foreign"), 4096).error(), Errc::corrupt);
  EXPECT_EQ(read_file(d.file("foreign"), 0, 8192), std::string(8192, 'x'));
}

// Writes `n` items, closes, and returns the path's bytes.
std::string make_queue_bytes(const TempDir& d, const std::string& name, int n) {
  auto m = open_queue_file(d.file(name), 16384);
  for (int i = 0; i < n; ++i) EXPECT_EQ(push(*m, item(i, 40)), Error());
  m->close();
  return read_file(d.file(name), 0, 1 << 20);
}

// Opens a damaged file: never a crash, never a wrong item; what is
// returned is a prefix of what was pushed, in order.
void expect_prefix_or_error(const std::string& path, int pushed) {
  auto q = open_existing(path, 16384);
  if (!q) {
    EXPECT_TRUE(q.error() == Errc::corrupt || q.error() == Errc::einval || q.error() == Errc::unsupported_version)
        << q.error().name();
    return;
  }
  int i = 0;
  for (;;) {
    auto p = (*q)->take(queue::Take::pop);
    if (!p) {
      EXPECT_EQ(p.error(), Errc::corrupt);
      break;
    }
    if (!*p) break;
    ASSERT_LT(i, pushed);
    EXPECT_EQ((*p)->data, item(i, 40)) << "item " << i;
    ++i;
  }
}

TEST(Queue, CorruptionRecoversToTheLastValidRecordOrSaysCorrupt) {
  TempDir d;
  const std::string good = make_queue_bytes(d, "good", 50);
  // A flipped byte in the 20th record: the first 19 survive.
  std::string bad = good;
  const std::size_t rec = queue::kHeaderSize + 19 * 64 + 30;  // records of 40 bytes take 64
  bad[rec] ^= 0x5A;
  write_file(d.file("flip"), bad);
  {
    auto q = open_existing(d.file("flip"), 16384);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ((*q)->report().count, 19u);
    EXPECT_EQ((*q)->report().dropped, 31u);
    for (int i = 0; i < 19; ++i) EXPECT_EQ(pop(**q), item(i, 40));
    EXPECT_EQ(pop(**q), std::nullopt);
  }
  // A broken magic: not a queue any more.
  bad = good;
  bad[0] = 'X';
  write_file(d.file("magic"), bad);
  EXPECT_EQ(open_existing(d.file("magic"), 16384).error(), Errc::corrupt);
  // Truncated in the middle of the records.
  write_file(d.file("cut"), good.substr(0, queue::kHeaderSize + 1000));
  expect_prefix_or_error(d.file("cut"), 50);
  // Garbage after the tail (a torn push) changes nothing.
  bad = good;
  for (std::size_t i = queue::kHeaderSize + 50 * 64; i < queue::kHeaderSize + 60 * 64; ++i) bad[i] = '\xEE';
  write_file(d.file("torn"), bad);
  {
    auto q = open_existing(d.file("torn"), 16384);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ((*q)->report().count, 50u);
  }
}

TEST(Queue, FuzzedFilesNeverCrashOrLie) {
  TempDir d;
  const std::string good = make_queue_bytes(d, "seed", 60);
  std::mt19937_64 rng(12345);
  const int runs = std::getenv("EMMAP_TEST_UNDER_VALGRIND") ? 40 : 400;
  for (int run = 0; run < runs; ++run) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < flips; ++k) {
      // Mostly in the header and the first records, where it matters most.
      const std::size_t at = rng() % 3 == 0 ? rng() % 512 : queue::kHeaderSize + rng() % (60 * 64);
      bad[at] = static_cast<char>(rng());
    }
    if (rng() % 5 == 0) bad.resize(rng() % bad.size());
    const std::string path = d.file("fuzz" + std::to_string(run));
    write_file(path, bad);
    expect_prefix_or_error(path, 60);
    ::unlink(path.c_str());
  }
}

TEST(Queue, AHolderKilledWithTheLockDoesNotStallOthers) {
  TempDir d;
  auto m = open_queue_file(d.file("dead"), 4096);
  ASSERT_TRUE(m);
  ASSERT_EQ(push(*m, "before"), Error());
  Children kids;
  const pid_t child = kids.fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Take the queue's lock the way a push does, then die holding it.
    hold_queue_lock(d.file("dead"));
    ::kill(::getpid(), SIGKILL);
  }
  const int status = kids.wait(child);
  ASSERT_TRUE(status >= 0 && WIFSIGNALED(status)) << "the child must die holding the lock";
  ASSERT_EQ(push(*m, "after"), Error()) << "the next taker repairs and goes on";
  EXPECT_EQ(pop(*m), "before");
  EXPECT_EQ(pop(*m), "after");
  EXPECT_EQ(pop(*m), std::nullopt);
}

// try_pop's claims: the claimed head is left to its claimer (pops, claims
// and erase elsewhere answer ebusy, peeks see it), commit pops exactly it,
// release gives it back; claim after claim in a tight loop never trips over
// the previous claim's release, still on its way to the holder thread.
Errc keep(void*, std::uint8_t, const char*, std::size_t) { return Errc::ok; }

Errc copy_to(void* ctx, std::uint8_t, const char* data, std::size_t len) {
  static_cast<std::string*>(ctx)->assign(data, len);
  return Errc::ok;
}

TEST(Queue, AClaimedHeadGoesToItsClaimerOnly) {
  TempDir d;
  auto m = open_queue_file(d.file("claim"), 64 << 10);  // room for all: darwin cannot grow
  auto other = open_existing(d.file("claim"), 64 << 10);
  ASSERT_TRUE(m && other.ok());
  auto empty = m->claim(keep, nullptr);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, nullptr) << "nothing to claim";
  for (int i = 0; i < 3; ++i) ASSERT_EQ(push(*m, item(i)), Error());
  std::string got;
  auto c = m->claim(copy_to, &got);
  ASSERT_TRUE(c.ok() && *c);
  EXPECT_EQ(got, item(0));
  for (queue::Queue* q : {m.get(), other->get()}) {
    EXPECT_EQ(q->take(queue::Take::pop).error(), Errc::ebusy);
    EXPECT_EQ(q->claim(keep, nullptr).error(), Errc::ebusy);
    EXPECT_EQ(q->purge(), Errc::ebusy) << "erase waits for the claimer";
    EXPECT_EQ(*q->purge(true, Wait::yes), false) << "items queued: nothing to give back";
    EXPECT_EQ(pop(*q, true), item(0)) << "a peek sees the claimed head";
  }
  ASSERT_EQ(m->commit(**c, false), Error());
  EXPECT_EQ(m->commit(**c, false), Errc::estale) << "a claim pops once";
  EXPECT_EQ(pop(**other, true), item(1));
  auto again = (*other)->claim(keep, nullptr);
  ASSERT_TRUE(again.ok() && *again);
  queue::Queue::release(**again);
  EXPECT_EQ((*other)->commit(**again, false), Errc::estale) << "released: no longer the claimer";
  for (int i = 3; i < 503; ++i) ASSERT_EQ(push(*m, item(i)), Error());
  for (int i = 1; i < 503; ++i) {
    auto ci = m->claim(copy_to, &got);
    ASSERT_TRUE(ci.ok() && *ci) << i << ": " << (ci ? "empty" : ci.error().name());
    ASSERT_EQ(got, item(i));
    ASSERT_EQ(m->commit(**ci, i == 502), Error());
  }
  EXPECT_EQ(pop(*m), std::nullopt);
}

// The claiming process dies (SIGKILL) while its claim is out: the claim is
// void and the item is the head again, for a pop as for a claim.
TEST(Queue, AClaimOfADeadProcessIsVoid) {
  TempDir d;
  auto m = open_queue_file(d.file("dead-claim"), 4096);
  ASSERT_TRUE(m);
  ASSERT_EQ(push(*m, "claimed"), Error());
  ASSERT_EQ(push(*m, "next"), Error());
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  Children kids;
  const pid_t child = kids.fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto q = open_existing(d.file("dead-claim"), 4096);
    if (!q) ::_exit(2);
    auto c = (*q)->claim(keep, nullptr);
    if (!c || !*c) ::_exit(3);
    (void)!::write(ready[1], "c", 1);
    for (;;) ::pause();  // killed holding the claim
  }
  ::close(ready[1]);
  char b = 0;
  ASSERT_EQ(::read(ready[0], &b, 1), 1) << "the child claimed the head";
  ::close(ready[0]);
  EXPECT_EQ(m->take(queue::Take::pop).error(), Errc::ebusy) << "claimed by a live process";
  ::kill(child, SIGKILL);
  const int status = kids.wait(child);
  ASSERT_TRUE(status >= 0 && WIFSIGNALED(status));
  EXPECT_EQ(pop(*m), "claimed") << "its claim died with it";
  std::string got;
  auto c = m->claim(copy_to, &got);
  ASSERT_TRUE(c.ok() && *c);
  EXPECT_EQ(got, "next");
  ASSERT_EQ(m->commit(**c, false), Error());
}

// Issue 8, case 1: handle A drains with pop_and_purge (the file shrinks
// back), then handle B, whose map still had the old size, pushes until its
// ring wraps and must grow. B must see the smaller file first: nothing
// acknowledged is lost and B keeps working.
TEST(Queue, AHandleNeverActsOnAStaleFileSize) {
  TempDir d;
  // Where the backend cannot resize (darwin) nothing grows or shrinks: the
  // same steps run in a ring big enough for them.
  const std::uint64_t cap = can_grow() ? 4096 : 65536;
  auto a = open_queue_file(d.file("stale"), cap);
  auto b = open_queue_file(d.file("stale"), cap);
  ASSERT_TRUE(a && b);
  std::vector<std::string> pushed;
  auto push_b = [&](int n) {
    for (int i = 0; i < n; ++i) {
      pushed.push_back(item(static_cast<int>(pushed.size()), 100));
      ASSERT_EQ(push(*b, pushed.back()), Error()) << pushed.size();
    }
  };
  push_b(100);  // B grows the file
  if (can_grow()) {
    EXPECT_GT(file_size(d.file("stale")), queue::kHeaderSize + 4096);
  }
  std::size_t popped = 0;
  while (auto r = pop(*a, false, true)) {
    EXPECT_EQ(*r, pushed[popped++]);
  }
  EXPECT_EQ(popped, 100u);
  EXPECT_EQ(file_size(d.file("stale")), queue::kHeaderSize + cap) << "A's pop_and_purge shrank it";
  push_b(30);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(pop(*a), pushed[popped++]);
  push_b(61);  // wraps, then grows while wrapped
  while (auto r = pop(*b)) EXPECT_EQ(*r, pushed[popped++]);
  EXPECT_EQ(popped, pushed.size()) << "acknowledged items lost";
  EXPECT_EQ(push(*b, "still works"), Error());
  EXPECT_EQ(pop(*a), "still works");
}

// Issue 8, case 4: a waiter that gets EOWNERDEAD and then leaves early
// (here: the state it must repair is damaged) must leave the lock usable;
// the next taker repairs once the damage is gone. Without that the mutex
// becomes ENOTRECOVERABLE and glibc's next blocking lock never returns.
TEST(Queue, ALockTakenFromADeadHolderStaysUsableAfterAnEarlyReturn) {
  TempDir d;
  const std::string f = d.file("owner");
  auto m = open_queue_file(f, 4096);
  ASSERT_TRUE(m);
  ASSERT_EQ(push(*m, "before"), Error());
  Children kids;
  const pid_t child = kids.fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    hold_queue_lock(f);
    ::kill(::getpid(), SIGKILL);
  }
  int status = kids.wait(child);
  ASSERT_TRUE(status >= 0 && WIFSIGNALED(status));
  // Damage both state slots: the repair the dead holder calls for fails.
  const std::string good = read_file(f, 0, queue::kHeaderSize);
  std::string bad = good;
  for (std::size_t i = 64; i < 256; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5A);
  {
    int fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_EQ(::pwrite(fd, bad.data(), 256, 0), 256);
    ::close(fd);
  }
  EXPECT_EQ(push(*m, "during").code(), Errc::corrupt);
  {
    int fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_EQ(::pwrite(fd, good.data(), 256, 0), 256);
    ::close(fd);
  }
  // In a child with a deadline, so a lock that never returns fails the test
  // instead of hanging it.
  const pid_t taker = kids.fork();
  ASSERT_GE(taker, 0);
  if (taker == 0) {
    auto q = open_queue_file(f, 4096);
    ::_exit(q && !push(*q, "after") ? 0 : 4);
  }
  status = kids.wait(taker, std::chrono::seconds(10));
  ASSERT_NE(status, -1) << "the next taker hung on the lock";
  EXPECT_TRUE(exited_ok(status)) << status;
  EXPECT_EQ(pop(*m), "before");
  EXPECT_EQ(pop(*m), "after");
}

// Liveness is decided by the OS, never by guessing from a thread id (which
// names another process, or none, in another PID namespace): while another
// process has the queue open and holds its lock, an opener never takes the
// lock over, even when the holder's thread id means nothing here.
TEST(Queue, AnOpenerNeverStealsALockThatAnotherLiveHandleHolds) {
  TempDir d;
  const std::string f = d.file("steal");
  ASSERT_TRUE(open_queue_file(f, 4096));
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  Children kids;
  const pid_t child = kids.fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto q = open_queue_file(f, 4096);
    if (!q) ::_exit(2);
    auto pin = q->mapping().pin();
    void* lock = (*pin)->base() + queue::kLockOffset;
    auto st = make_backend()->shared_lock_acquire(lock, MappingBackend::kForever);
    if (!st || *st != LockState::acquired) ::_exit(3);
#if defined(__GLIBC__)
    // What a holder in another PID namespace looks like from here: a thread
    // id that no process of ours has.
    static_cast<pthread_mutex_t*>(lock)->__data.__owner = 0x3FFFFFF0;
#endif
    (void)!::write(ready[1], "r", 1);
    for (;;) ::pause();
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  auto q = open_queue_file(f, 4096);
  ASSERT_TRUE(q) << "open must not wait for the queue's lock";
  EXPECT_FALSE(q->report().recovered) << "another handle is open: no set-up, no recovery";
  EXPECT_EQ(q->push(queue::kBinary, "x", 1, Wait::no).code(), Errc::ebusy) << "the lock was taken over";
  q->close();
  ::kill(child, SIGKILL);
  (void)kids.wait(child);
  ::close(ready[0]);
  ::close(ready[1]);
  // Alone with the file now: the lock is renewed whatever state it was left in.
  auto alone = open_queue_file(f, 4096);
  ASSERT_TRUE(alone);
  EXPECT_TRUE(alone->report().recovered);
  EXPECT_EQ(push(*alone, "renewed"), Error());
  EXPECT_EQ(pop(*alone), "renewed");
}

// Review finding: a handle whose map was shorter than the file (a file
// lengthened from outside, or by a growth that failed half way) took
// "capacity > my map" for "the file was cut short" and recovered, cutting
// off records other handles had acknowledged. A handle follows the file
// before it believes anything was cut.
TEST(Queue, AHandleBehindALongerFileFollowsItInsteadOfCutting) {
  if (!can_grow()) GTEST_SKIP() << "no growth on this backend: no capacity beyond a handle's map";
  TempDir d;
  const std::string f = d.file("longer");
  auto a = open_queue_file(f, 4096);
  ASSERT_TRUE(a);
  ASSERT_EQ(::truncate(f.c_str(), queue::kHeaderSize + (1 << 20)), 0);  // lengthened from outside
  auto b = open_queue_file(f, 4096);  // maps the longer file
  ASSERT_TRUE(b);
  for (int i = 0; i < 60; ++i) ASSERT_EQ(push(*b, item(i, 200)), Error());  // grows within b's map
  EXPECT_EQ(*a->length(), 60u) << "acknowledged pushes cut off by a handle's 'recovery'";
  for (int i = 0; i < 60; ++i) EXPECT_EQ(pop(*a), item(i, 200));
  auto st = a->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->epoch, 1u) << "nothing was recovered";
}

// Review finding: the header's initial capacity is outside the checksummed
// state. A damaged one (here unaligned) made purge and pop_and_purge commit
// a state that failed its own checks, so the next step fell back to the
// state before: the purged item came back. Such a state is never committed.
TEST(Queue, ADamagedInitialCapacityNeverResurrectsItems) {
  TempDir d;
  const std::string f = d.file("initial");
  {
    auto q = open_queue_file(f, 8192);
    ASSERT_TRUE(q);
  }
  const std::uint64_t bad = 4100;
  int fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_EQ(::pwrite(fd, &bad, 8, 24), 8);
  ::close(fd);
  auto q = open_queue_file(f, 8192);
  ASSERT_TRUE(q);
  ASSERT_EQ(push(*q, "purged"), Error());
  ASSERT_EQ(q->purge(), Error());
  EXPECT_EQ(pop(*q), std::nullopt) << "a purged item came back";
  ASSERT_EQ(push(*q, "only"), Error());
  EXPECT_EQ(pop(*q, false, true), "only");
  EXPECT_EQ(pop(*q), std::nullopt) << "a popped item came back";
}

// Review findings: a format cut short by a crash (fields written, magic
// not yet) stays ours and is done again; one queue handle per map (a
// second shares its open file description, so it would think itself alone
// and renew a lock that is held); an initial capacity past any map is einval.
TEST(Queue, TornFormatsSecondHandlesOnOneMapAndHugeCapacities) {
  TempDir d;
  const std::string f = d.file("torn");
  std::string bytes(queue::kHeaderSize + 4096, '\0');
  std::memcpy(bytes.data(), "EMMAPQF*", 8);  // what a killed formatter leaves first
  bytes[8] = 2;
  bytes[24] = 16;
  write_file(f, bytes);
  auto q = open_queue_file(f, 4096);
  ASSERT_TRUE(q) << "a format cut short is refused for good";
  EXPECT_TRUE(q->report().initialised);
  ASSERT_EQ(push(*q, "x"), Error());
  EXPECT_EQ(pop(*q), "x");

  auto again = queue::Queue::open(std::shared_ptr<Mapping>(q, &q->mapping()), 4096, {});
  EXPECT_EQ(again.error(), Errc::einval) << "two queue handles on one map";
  EXPECT_EQ(push(*q, "still mine"), Error());

  OpenOptions o;
  o.write = o.create = o.fit = true;
  o.size = queue::kHeaderSize + 4096;
  auto m = Mapping::open(d.file("huge"), 0, 0, o);
  ASSERT_TRUE(m);
  EXPECT_EQ(queue::Queue::open(m->mapping, ~std::uint64_t{0} - 3, {}).error(), Errc::einval);
}

// Review finding: a lock holder that makes no progress (stopped, frozen)
// held every caller in pthread_mutex_lock, and on a VM every dirty I/O
// scheduler with them. With Wait::briefly the wait is bounded: ebusy comes
// back after about kBriefWaitMs, and the caller retries from somewhere cheap.
TEST(Queue, ABriefWaitForAStuckHolderIsBounded) {
  TempDir d;
  const std::string f = d.file("stuck");
  auto q = open_queue_file(f, 4096);
  ASSERT_TRUE(q);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  Children kids;
  const pid_t child = kids.fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    hold_queue_lock(f);
    (void)!::write(ready[1], "r", 1);
    for (;;) ::pause();  // holds it, alive, making no progress
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(q->push(queue::kBinary, "x", 1, Wait::briefly), Errc::ebusy);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(queue::kBriefWaitMs / 2));
  EXPECT_LT(waited, std::chrono::seconds(2)) << "the wait was not bounded";
  ::kill(child, SIGKILL);
  (void)kids.wait(child);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_EQ(q->push(queue::kBinary, "after", 5, Wait::briefly), Error()) << "the dead holder is repaired";
  EXPECT_EQ(pop(*q), "after");
}

// Review finding ("fsyncgate"): after a failed write-back Linux marks the
// pages clean and reports the error once; a later sync says ok although
// the data never reached the disk. So a failed sync is never followed by a
// trusted one: every handle (also a `never` one) first rewrites the header
// and the live records and syncs them; until that works it answers eio.
TEST(Queue, AFailedSyncIsNotTrustedAgainUntilTheLiveRecordsAreRewritten) {
  TempDir d;
  const std::string f = d.file("eio");
  auto faulty = std::make_shared<FaultyBackend>(make_backend());
  auto open_with = [&](queue::Durability dur) -> std::shared_ptr<queue::Queue> {
    OpenOptions o;
    o.write = o.create = o.fit = true;
    o.size = queue::kHeaderSize + 4096;
    auto m = Mapping::open(f, 0, 0, o, faulty);
    if (!m) return nullptr;
    queue::Options qo;
    qo.durability = dur;
    auto q = queue::Queue::open(m->mapping, 4096, qo);
    return q ? *q : nullptr;
  };
  auto always = open_with(queue::Durability::always);
  auto never = open_with(queue::Durability::never);
  ASSERT_TRUE(always && never);
  ASSERT_EQ(push(*always, "before"), Error());
  ASSERT_EQ(push(*never, "unsynced"), Error());
  faulty->fail_syncs = 3;  // this push's, then two rewrites'
  EXPECT_EQ(push(*always, "refused"), Errc::eio);
  // Every handle rewrites before it goes on; while the rewrite's sync fails, eio.
  EXPECT_EQ(push(*never, "x").code(), Errc::eio);
  EXPECT_EQ(always->length().error(), Errc::eio);
  const int before = faulty->sync_calls;
  EXPECT_EQ(push(*always, "after"), Error()) << "the rewrite worked: trusted again";
  EXPECT_GE(faulty->sync_calls - before, 2) << "a rewrite sync, then the push's own";
  EXPECT_EQ(*never->length(), 3u) << "a push whose sync failed is not in the queue";
  EXPECT_EQ(pop(*never), "before");
  EXPECT_EQ(pop(*never), "unsynced");
  EXPECT_EQ(pop(*never), "after");
  EXPECT_EQ(pop(*never), std::nullopt);
}

TEST(Queue, SeveralProcessesPopEveryItemExactlyOnceInProducerOrder) {
  TempDir d;
  // Growth under contention where the backend can grow; room up front where not.
  const std::uint64_t cap = can_grow() ? 8192 : 1 << 20;
  auto m = open_queue_file(d.file("mp"), cap);
  ASSERT_TRUE(m);
  const int per_producer = std::getenv("EMMAP_TEST_UNDER_VALGRIND") ? 300 : 5000;
  constexpr int kProducers = 2, kConsumers = 2;
  Children kids;
  std::vector<pid_t> producers, consumers;
  for (int p = 0; p < kProducers; ++p) {
    const pid_t pid = kids.fork();
    if (pid == 0) {
      auto q = open_queue_file(d.file("mp"), cap);
      if (!q) ::_exit(2);
      for (int i = 0; i < per_producer; ++i) {
        const std::string s = std::to_string(p) + ":" + std::to_string(i);
        if (q->push(queue::kBinary, s.data(), s.size())) ::_exit(3);
      }
      ::_exit(0);
    }
    producers.push_back(pid);
  }
  // Consumers write what they popped, in order, to files of their own, and
  // stop at a "stop" item (pushed once the producers are done: no guess
  // from an empty queue, which a slow producer on a busy machine fools).
  for (int c = 0; c < kConsumers; ++c) {
    const pid_t pid = kids.fork();
    if (pid == 0) {
      auto q = open_queue_file(d.file("mp"), cap);
      if (!q) ::_exit(2);
      std::string log;
      for (;;) {
        auto r = q->take(queue::Take::pop);
        if (!r) ::_exit(4);
        if (!*r) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          continue;
        }
        if ((*r)->data == "stop") break;
        log += (*r)->data + "\n";
      }
      write_file(d.file("consumer" + std::to_string(c)), log);
      ::_exit(0);
    }
    consumers.push_back(pid);
  }
  for (pid_t k : producers) EXPECT_TRUE(exited_ok(kids.wait(k)));
  for (int c = 0; c < kConsumers; ++c) ASSERT_EQ(push(*m, "stop"), Error());
  for (pid_t k : consumers) EXPECT_TRUE(exited_ok(kids.wait(k)));
  std::map<std::string, int> seen;
  for (int c = 0; c < kConsumers; ++c) {
    const std::string log = read_file(d.file("consumer" + std::to_string(c)), 0, 64 << 20);
    std::map<int, int> last;  // producer -> last index seen by this consumer
    std::size_t at = 0;
    while (at < log.size()) {
      const std::size_t nl = log.find('\n', at);
      const std::string s = log.substr(at, nl - at);
      at = nl + 1;
      ++seen[s];
      const int p = std::stoi(s.substr(0, s.find(':')));
      const int i = std::stoi(s.substr(s.find(':') + 1));
      auto it = last.find(p);
      if (it != last.end()) {
        EXPECT_LT(it->second, i) << "producer order broken in consumer " << c;
      }
      last[p] = i;
    }
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kProducers * per_producer));
  for (const auto& [s, n] : seen) EXPECT_EQ(n, 1) << s << " popped " << n << " times";
  EXPECT_EQ(*m->length(), 0u);
}

}  // namespace
}  // namespace emmap::test
