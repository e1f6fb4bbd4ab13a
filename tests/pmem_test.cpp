// Persistent memory without a DAX device: forced mode (EMMAP_PMEM_FORCE=1,
// set by these tests themselves before they open anything), eADR and
// device DAX through a fake sysfs (EMMAP_SYSFS_ROOT) and a stand-in file
// (EMMAP_DEVDAX_STANDIN), the flush observed line by line through the
// test hook, system calls counted by a spying backend.
#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <tuple>

#include "faulty_backend.h"
#include "test_util.h"

namespace emmap::test {
namespace {

namespace fs = std::filesystem;

std::string read_via_fd(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

// Records the lines every persist flushes (the test hook of pmem.cpp).
class LineRecorder {
 public:
  LineRecorder() { set_flush_observer(&LineRecorder::seen, this); }
  ~LineRecorder() { set_flush_observer(nullptr, nullptr); }
  std::vector<std::uintptr_t> take() {
    std::lock_guard<std::mutex> lk(m_);
    return std::exchange(lines_, {});
  }

 private:
  static void seen(void* ctx, const void* line) {
    auto* self = static_cast<LineRecorder*>(ctx);
    std::lock_guard<std::mutex> lk(self->m_);
    self->lines_.push_back(reinterpret_cast<std::uintptr_t>(line));
  }
  std::mutex m_;
  std::vector<std::uintptr_t> lines_;
};

std::vector<std::uintptr_t> lines_of(const char* p, std::size_t len) {
  std::vector<std::uintptr_t> v;
  if (len == 0) return v;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  for (std::uintptr_t l = a / kCacheLine * kCacheLine; l < a + len; l += kCacheLine) v.push_back(l);
  return v;
}

// The environment these tests set, put back afterwards.
class Env {
 public:
  void set(const char* name, const std::string& value) {
    keep(name);
    ::setenv(name, value.c_str(), 1);
  }
  void unset(const char* name) {
    keep(name);
    ::unsetenv(name);
  }
  ~Env() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->had) ::setenv(it->name.c_str(), it->value.c_str(), 1);
      else ::unsetenv(it->name.c_str());
    }
  }

 private:
  void keep(const char* name) {
    const char* v = std::getenv(name);
    saved_.push_back({name, v ? v : "", v != nullptr});
  }
  struct Saved {
    std::string name, value;
    bool had;
  };
  std::vector<Saved> saved_;
};

// A directory tree that goes away with its subdirectories (a fake sysfs).
struct Tree {
  TempDir dir;
  std::string root = dir.file("sys");
  Tree() { fs::create_directories(root); }
  ~Tree() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  void put(const std::string& rel, const std::string& content) const {
    const fs::path p = fs::path(root) / rel;
    fs::create_directories(p.parent_path());
    write_file(p.string(), content);
  }
  void link(const std::string& rel, const std::string& target) const {
    const fs::path p = fs::path(root) / rel;
    fs::create_directories(p.parent_path());
    fs::create_directory_symlink(target, p);
  }
};

bool linux_backend() { return make_backend()->name() == "linux"; }

// Where the map's bytes start (nullptr when it is closed).
const char* base_of(Mapping& m) {
  const char* base = nullptr;
  (void)m.with_map([&](char* p, std::uint64_t) -> Error {
    base = p;
    return {};
  }, false);
  return base;
}

class Pmem : public ::testing::Test {
 protected:
  void SetUp() override {
    env.set("EMMAP_SYSFS_ROOT", sys.root);  // no NVDIMM regions: not eADR, whatever the machine has
    env.set("EMMAP_PMEM_FORCE", "1");       // before the first open of every test
    if (make_backend()->dax_persistence() == Persistence::msync)
      GTEST_SKIP() << "no cache-line flush instruction known for this CPU";
  }

  std::shared_ptr<Mapping> open(const std::string& path, std::uint64_t size, OpenOptions o = {},
                                std::shared_ptr<MappingBackend> b = make_backend()) {
    o.write = o.create = true;
    o.size = size;
    auto r = Mapping::open(path, 0, 0, o, std::move(b));
    EXPECT_TRUE(r.ok()) << (r ? "" : r.error().name());
    return r ? r->mapping : nullptr;
  }

  Env env;
  Tree sys;
  TempDir dir;
};

// ---- flush selection --------------------------------------------------------------

constexpr std::uint32_t bit(FlushInsn f) { return 1u << static_cast<unsigned>(f); }

TEST(PmemFlush, StrongestAvailableIsChosen) {
  const std::uint32_t all = bit(FlushInsn::clflush) | bit(FlushInsn::clflushopt) | bit(FlushInsn::clwb);
  EXPECT_EQ(choose_flush(all, nullptr), FlushInsn::clwb);
  EXPECT_EQ(choose_flush(bit(FlushInsn::clflush) | bit(FlushInsn::clflushopt), nullptr), FlushInsn::clflushopt);
  EXPECT_EQ(choose_flush(bit(FlushInsn::clflush), nullptr), FlushInsn::clflush);
  EXPECT_EQ(choose_flush(0, nullptr), FlushInsn::none);
  EXPECT_EQ(choose_flush(bit(FlushInsn::dc_cvac) | bit(FlushInsn::dc_cvap), nullptr), FlushInsn::dc_cvap);
}

TEST(PmemFlush, OverrideForcesAWeakerOneOnlyWhenTheCpuHasIt) {
  const std::uint32_t all = bit(FlushInsn::clflush) | bit(FlushInsn::clflushopt) | bit(FlushInsn::clwb);
  EXPECT_EQ(choose_flush(all, "clflush"), FlushInsn::clflush);
  EXPECT_EQ(choose_flush(all, "clflushopt"), FlushInsn::clflushopt);
  EXPECT_EQ(choose_flush(bit(FlushInsn::clflush), "clwb"), FlushInsn::clflush);  // refused: not there
  EXPECT_EQ(choose_flush(all, "bogus"), FlushInsn::clwb);
  EXPECT_EQ(choose_flush(all, ""), FlushInsn::clwb);
}

// Run twice by meson: as is, and with EMMAP_PMEM_FLUSH=clflush set for
// the whole process (the choice is made once, at load).
TEST(PmemFlush, ChosenAtLoadFromThisCpuAndTheEnvironment) {
  const char* forced = std::getenv("EMMAP_PMEM_FLUSH");
  EXPECT_EQ(flush_instruction(), choose_flush(available_flushes(), forced));
  if (forced && std::string(forced) == "clflush" && (available_flushes() & bit(FlushInsn::clflush))) {
    EXPECT_EQ(flush_instruction(), FlushInsn::clflush);
  }
  std::printf("    flush instruction: %s\n", std::string(flush_name(flush_instruction())).c_str());
#if defined(__x86_64__)
  EXPECT_NE(flush_instruction(), FlushInsn::none) << "every x86-64 has clflush";
#endif
}

TEST(PmemFlush, PersistFlushesEveryLineTouchedAndNothingElse) {
  LineRecorder rec;
  alignas(64) static char buf[64 * 8];
  for (const auto& [off, len] : std::vector<std::pair<std::size_t, std::size_t>>{
           {0, 1}, {0, 64}, {1, 64}, {63, 2}, {10, 200}, {64, 128}, {5, 0}, {100, 300}}) {
    make_backend()->persist(buf + off, len, Persistence::flush);
    EXPECT_EQ(rec.take(), lines_of(buf + off, len)) << off << "+" << len;
  }
  make_backend()->persist(buf, 256, Persistence::eadr);
  EXPECT_TRUE(rec.take().empty()) << "eADR: a fence, no flush";
}

// ---- forced mode ----------------------------------------------------------------------

TEST_F(Pmem, ForcedSharedMapPersistsByFlushWithNoSystemCall) {
  auto spy = std::make_shared<FaultyBackend>(make_backend());
  const std::string path = dir.file("f");
  auto m = open(path, 3 * 4096 + 100, {}, spy);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->persistence(), Persistence::flush);
  LineRecorder rec;
  const std::string data = pattern(3 * 4096 + 100, 7);
  ASSERT_EQ(m->write(0, data.data(), 100), Error());  // small: plain stores
  EXPECT_TRUE(rec.take().empty());
  const char* base = base_of(*m);
  ASSERT_TRUE(base);
  // Unaligned ranges: exactly the lines they touch, in order, once each.
  for (const auto& [pos, len] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
           {0, 1}, {3, 61}, {3, 62}, {63, 1}, {63, 2}, {100, 4000}, {4095, 2}, {7, 3 * 4096}, {0, 3 * 4096 + 100}}) {
    ASSERT_EQ(m->sync(pos, len), Error());
    const std::uint64_t n = std::min<std::uint64_t>(len, m->size() - pos);
    EXPECT_EQ(rec.take(), lines_of(base + pos, n)) << pos << "+" << len;
  }
  ASSERT_EQ(m->sync(), Error());
  EXPECT_EQ(rec.take(), lines_of(base, m->size()));
  EXPECT_EQ(m->sync(m->size(), 10), Error());  // empty range: nothing
  EXPECT_TRUE(rec.take().empty());
  EXPECT_EQ(m->sync(m->size() + 1, 10), Errc::einval);
  EXPECT_EQ(spy->sync_calls, 0) << "msync on a forced map";
  EXPECT_EQ(spy->persist_calls.load(), 10);
  // Written, synced: in the file (read through a descriptor of its own).
  ASSERT_EQ(m->write(0, data.data(), data.size()), Error());
  ASSERT_EQ(m->sync(), Error());
  EXPECT_EQ(read_via_fd(path), data);
  m->close();
}

TEST_F(Pmem, SyncOptionIsHonouredInForcedModeWithoutMapSync) {
  const std::string path = dir.file("s");
  OpenOptions o;
  o.map_sync = true;
  auto m = open(path, 8192, o);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->persistence(), Persistence::flush);
  EXPECT_FALSE(m->options().map_sync) << "MAP_SYNC asked of the kernel in forced mode";
  m->close();
  env.unset("EMMAP_PMEM_FORCE");
  // The same file is no DAX: `sync` cannot be had, dax_if_available falls back.
  auto r = Mapping::open(path, 0, 0, o);
  EXPECT_FALSE(r.ok());
  if (!r) {
    EXPECT_TRUE(r.error() == Errc::eopnotsupp || r.error() == Errc::einval) << r.error().name();
  }
  OpenOptions a;
  a.write = true;
  a.dax_if_available = true;
  auto spy = std::make_shared<FaultyBackend>(make_backend());
  auto d = Mapping::open(path, 0, 0, a, spy);
  ASSERT_TRUE(d.ok()) << d.error().name();
  EXPECT_EQ(d->mapping->persistence(), Persistence::msync);
  ASSERT_EQ(d->mapping->sync(), Error());
  EXPECT_EQ(spy->sync_calls, 1);
  EXPECT_EQ(spy->persist_calls.load(), 0);
}

TEST_F(Pmem, ForcedModeLeavesPrivateAndAnonymousMapsAlone) {
  OpenOptions p;
  p.sharing = Sharing::private_;
  auto m = open(dir.file("p"), 4096, p);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->persistence(), Persistence::msync);
  OpenOptions a;
  a.anonymous = true;
  a.write = true;
  a.size = 4096;
  auto an = Mapping::open("", 0, 0, a);
  ASSERT_TRUE(an.ok());
  EXPECT_EQ(an->mapping->persistence(), Persistence::msync);
  p.map_sync = true;
  EXPECT_EQ(Mapping::open(dir.file("p"), 0, 0, p).error(), Errc::einval);
}

TEST_F(Pmem, SyncAsyncOnAForcedMapFlushesInTheBackground) {
  auto spy = std::make_shared<FaultyBackend>(make_backend());
  const std::string path = dir.file("a");
  auto m = open(path, 2 * 4096, {}, spy);
  ASSERT_TRUE(m);
  const std::string data = pattern(2 * 4096, 3);
  ASSERT_EQ(m->write(0, data.data(), data.size()), Error());
  LineRecorder rec;
  std::atomic<int> done{0};
  std::atomic<bool> ok{false};
  ASSERT_EQ(m->sync_async([&](Error e) {
    ok = !e;
    done = 1;
  }),
            Error());
  for (int i = 0; i < 5000 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(done.load());
  EXPECT_TRUE(ok.load());
  EXPECT_EQ(spy->sync_calls, 0);
  EXPECT_EQ(spy->async_fsync_calls.load(), 0) << "io_uring fsync for a forced map";
  EXPECT_EQ(rec.take().size(), 2 * 4096 / kCacheLine);
  EXPECT_EQ(read_via_fd(path), data);
}

TEST_F(Pmem, LargeWritesGoAroundTheCacheAndAreInTheFile) {
  const std::string path = dir.file("w");
  auto m = open(path, 16384);
  ASSERT_TRUE(m);
  const char* base = base_of(*m);
  ASSERT_TRUE(base);
  LineRecorder rec;
  for (const auto& [pos, len] : std::vector<std::pair<std::uint64_t, std::size_t>>{
           {0, kNtThreshold}, {5, 1000}, {64, 4096}, {4000, 6001}, {100, kNtThreshold - 1}}) {
    const std::string data = pattern(len, pos + len);
    ASSERT_EQ(m->write(pos, data.data(), data.size()), Error());
    const auto lines = rec.take();
    if (len < kNtThreshold) {
      EXPECT_TRUE(lines.empty()) << "a small write is a plain copy";
    } else {
      // Every line of the range is durable after the write: flushed or
      // written around the cache (both reported to the observer).
      const auto want = lines_of(base + pos, len);
      EXPECT_EQ(std::set<std::uintptr_t>(lines.begin(), lines.end()), std::set<std::uintptr_t>(want.begin(), want.end()))
          << pos << "+" << len;
    }
    EXPECT_EQ(read_via_fd(path).substr(pos, len), data) << pos << "+" << len;
  }
}

TEST_F(Pmem, LargeWriteAndFlushOverATruncatedFileAnswerNotCrash) {
  const std::string path = dir.file("t");
  auto m = open(path, 4 * 4096);
  ASSERT_TRUE(m);
  ASSERT_EQ(::truncate(path.c_str(), 0), 0);  // another process cuts the file
  const std::string data = pattern(8192, 1);
  const Error w = m->write(4096, data.data(), data.size());
  EXPECT_TRUE(w == Errc::sigbus || w == Errc::truncated) << w.name();
  const Error s = m->sync();
  EXPECT_TRUE(s == Errc::sigbus || s == Errc::truncated) << s.name();
}

// A direct binary is a view of the map: written back over the map, source
// and destination overlap. The copy around the cache went front to back
// and read bytes it had already overwritten.
TEST_F(Pmem, AWriteFromTheMapItselfIsAMoveNotACopy) {
  const std::string path = dir.file("o");
  auto m = open(path, 16384);
  ASSERT_TRUE(m);
  const char* base = base_of(*m);
  ASSERT_TRUE(base);
  for (const auto& [from, to, len] : std::vector<std::tuple<std::uint64_t, std::uint64_t, std::size_t>>{
           {0, 100, 2000}, {100, 0, 2000}, {64, 65, kNtThreshold}, {4096, 4000, 5000}, {10, 10, 3000}}) {
    std::string image = pattern(16384, from + to + len);
    ASSERT_EQ(m->write(0, image.data(), image.size()), Error());
    ASSERT_EQ(m->write(to, base + from, len), Error());
    std::memmove(image.data() + to, image.data() + from, len);
    EXPECT_EQ(read_via_fd(path), image) << from << " -> " << to << ", " << len << " bytes";
  }
}

TEST_F(Pmem, SyncAsyncOfATruncatedForcedMapSaysSo) {
  const std::string path = dir.file("ta");
  auto m = open(path, 4 * 4096);
  ASSERT_TRUE(m);
  ASSERT_EQ(::truncate(path.c_str(), 0), 0);  // another process cuts the file
  const std::string data = pattern(64, 2);
  (void)m->write(0, data.data(), data.size());  // notices the cut (sigbus or truncated)
  std::atomic<int> done{0};
  std::atomic<int> code{-1};
  ASSERT_EQ(m->sync_async([&](Error e) {
    code = static_cast<int>(e.code());
    done = 1;
  }),
            Error());
  for (int i = 0; i < 5000 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(done.load());
  const Errc got = static_cast<Errc>(code.load());
  EXPECT_TRUE(got == Errc::truncated || got == Errc::sigbus) << Error(got).name() << ", as sync/1 would answer";
}

// ---- eADR -------------------------------------------------------------------------------

TEST_F(Pmem, EadrWhenEveryRegionSaysCpuCache) {
  if (!linux_backend()) GTEST_SKIP() << "eADR is read from Linux sysfs";
  sys.put("bus/nd/devices/region0/persistence_domain", "cpu_cache\n");
  sys.put("bus/nd/devices/region1/persistence_domain", "cpu_cache\n");
  sys.put("bus/nd/devices/ndbus0/persistence_domain", "whatever\n");  // not a region
  auto spy = std::make_shared<FaultyBackend>(make_backend());
  auto m = open(dir.file("e"), 8192, {}, spy);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->persistence(), Persistence::eadr);
  LineRecorder rec;
  const std::string data = pattern(8192, 9);
  ASSERT_EQ(m->write(0, data.data(), data.size()), Error());  // eADR: plain stores, the caches are persistent
  ASSERT_EQ(m->sync(3, 5000), Error());
  EXPECT_TRUE(rec.take().empty()) << "eADR flushed lines";
  EXPECT_EQ(spy->sync_calls, 0);
  EXPECT_EQ(spy->persist_calls.load(), 1);
  m->close();
  // One region that does not say so: flush.
  sys.put("bus/nd/devices/region2/persistence_domain", "memory_controller\n");
  auto f = open(dir.file("e2"), 8192);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->persistence(), Persistence::flush);
}

// ---- device DAX ---------------------------------------------------------------------------

class DeviceDaxTest : public Pmem {
 protected:
  static constexpr std::uint64_t kAlign = 2u << 20;
  static constexpr std::uint64_t kSize = 3 * kAlign;
  void SetUp() override {
    Pmem::SetUp();
    if (IsSkipped()) return;
    if (!linux_backend()) GTEST_SKIP() << "device DAX is Linux's";
    env.unset("EMMAP_PMEM_FORCE");  // a device DAX needs no forcing
    dev = dir.file("dax0.0");
    write_file(dev, std::string(kSize, '\0'));
    sys.put("devices/dax0.0/size", std::to_string(kSize) + "\n");
    sys.put("devices/dax0.0/align", std::to_string(kAlign) + "\n");
    sys.put("bus/dax/.keep", "");
    sys.link("devices/dax0.0/subsystem", sys.root + "/bus/dax");
    sys.link("dev/char/251:7", sys.root + "/devices/dax0.0");
    env.set("EMMAP_DEVDAX_STANDIN", "251:7:" + dev);
  }
  Result<Mapping::Opened> open_dev(std::uint64_t offset, std::uint64_t len, OpenOptions o = {},
                                   std::shared_ptr<MappingBackend> b = make_backend()) {
    o.write = true;
    return Mapping::open(dev, offset, len, o, std::move(b));
  }
  std::string dev;
};

TEST_F(DeviceDaxTest, SizeAndAlignmentComeFromSysfs) {
  auto spy = std::make_shared<FaultyBackend>(make_backend());
  auto r = open_dev(0, 0, {}, spy);
  ASSERT_TRUE(r.ok()) << r.error().name();
  auto& m = *r->mapping;
  EXPECT_EQ(m.size(), kSize);
  EXPECT_EQ(m.device_dax_align(), kAlign);
  EXPECT_EQ(m.persistence(), Persistence::flush);
  const char* base = base_of(m);
  ASSERT_TRUE(base);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(base) % kAlign, 0u) << "the map must be aligned like the device";
  EXPECT_EQ(m.resize(kSize + kAlign).error(), Errc::fixed_size);
  EXPECT_EQ(m.resize(kAlign).error(), Errc::fixed_size);
  const std::string data = pattern(5000, 4);
  ASSERT_EQ(m.write(kAlign + 3, data.data(), data.size()), Error());
  ASSERT_EQ(m.sync(kAlign + 3, data.size()), Error());
  EXPECT_EQ(spy->sync_calls, 0);
  EXPECT_EQ(std::count(spy->trace.begin(), spy->trace.end(), std::string("allocate")), 0)
      << "a device is never allocated";
  EXPECT_EQ(read_via_fd(dev).substr(kAlign + 3, data.size()), data);
  EXPECT_EQ(read_via_fd(dev).size(), kSize) << "the device's length changed";
  // A second range of it, aligned.
  auto part = open_dev(kAlign, 2 * kAlign);
  ASSERT_TRUE(part.ok()) << part.error().name();
  EXPECT_EQ(part->mapping->size(), 2 * kAlign);
  std::string back(data.size(), '\0');
  ASSERT_TRUE(part->mapping->read(3, back.data(), back.size()).ok());
  EXPECT_EQ(back, data);
}

TEST_F(DeviceDaxTest, UnalignedOrOutsideOrTruncatingIsEinval) {
  EXPECT_EQ(open_dev(4096, 0).error(), Errc::einval);
  EXPECT_EQ(open_dev(0, kAlign + 4096).error(), Errc::einval);
  EXPECT_EQ(open_dev(0, 4096).error(), Errc::einval);
  EXPECT_EQ(open_dev(kAlign, kSize).error(), Errc::einval);  // past its end
  EXPECT_EQ(open_dev(4 * kAlign, kAlign).error(), Errc::einval);
  EXPECT_EQ(open_dev(UINT64_MAX - kAlign + 1, kAlign).error(), Errc::einval);
  OpenOptions p;
  p.sharing = Sharing::private_;
  EXPECT_EQ(open_dev(0, 0, p).error(), Errc::einval);
  OpenOptions s;
  s.size = 4096;
  EXPECT_EQ(open_dev(0, 0, s).error(), Errc::einval);
  EXPECT_EQ(read_via_fd(dev).size(), kSize);
  // Nothing that would remove or move the device: auto_unlink would unlink
  // its node at close; an address of one's own must be aligned like it.
  OpenOptions u;
  u.auto_unlink = true;
  EXPECT_EQ(open_dev(0, 0, u).error(), Errc::einval);
  EXPECT_TRUE(std::filesystem::exists(dev)) << "the device node is gone";
  {
    auto probe = open_dev(0, kAlign);
    ASSERT_TRUE(probe.ok());
    const char* at = base_of(*probe->mapping);
    ASSERT_TRUE(at);
    probe->mapping->close();
    OpenOptions a;
    a.address = reinterpret_cast<std::uintptr_t>(at) + 4096;  // page-aligned, not device-aligned
    a.fixed = true;
    EXPECT_EQ(open_dev(0, kAlign, a).error(), Errc::einval);
  }
  // Last: O_TRUNC is ignored by a character device but not by the stand-in.
  OpenOptions t;
  t.truncate = true;
  EXPECT_EQ(open_dev(0, 0, t).error(), Errc::einval);
}

TEST_F(DeviceDaxTest, OlderKernelsAlignmentFromTheRegion) {
  std::error_code ec;
  fs::remove(fs::path(sys.root) / "devices/dax0.0/align", ec);
  sys.put("devices/region0/dax_region/align", std::to_string(kAlign) + "\n");
  sys.link("devices/dax0.0/device", sys.root + "/devices/region0");
  auto r = open_dev(0, 0);
  ASSERT_TRUE(r.ok()) << r.error().name();
  EXPECT_EQ(r->mapping->device_dax_align(), kAlign);
}

TEST_F(DeviceDaxTest, UnreadableSysfsIsEnodevAndOtherFilesAreNoDevice) {
  std::error_code ec;
  fs::remove(fs::path(sys.root) / "devices/dax0.0/size", ec);
  EXPECT_EQ(open_dev(0, 0).error(), Errc::enodev);
  sys.put("devices/dax0.0/size", "garbage\n");
  EXPECT_EQ(open_dev(0, 0).error(), Errc::enodev);
  sys.put("devices/dax0.0/size", std::to_string(kSize) + "\n");
  sys.put("devices/dax0.0/align", "1000\n");  // not a multiple of the page
  EXPECT_EQ(open_dev(0, 0).error(), Errc::enodev);
  // Any other file is what it always was.
  const std::string other = dir.file("plain");
  write_file(other, std::string(4096, 'x'));
  OpenOptions o;
  o.write = true;
  auto r = Mapping::open(other, 100, 0, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mapping->device_dax_align(), 0u);
  EXPECT_EQ(r->mapping->persistence(), Persistence::msync);
  // A stand-in spec that is not one: ignored.
  env.set("EMMAP_DEVDAX_STANDIN", "nonsense");
  auto n = open_dev(4096, 0);
  ASSERT_TRUE(n.ok()) << n.error().name();
  EXPECT_EQ(n->mapping->device_dax_align(), 0u);
}

}  // namespace
}  // namespace emmap::test
