// The hole walk that gives a sparse file's holes blocks (allocate, at open
// and growth of a shared writable map) against a writer that stores into
// each hole between the walk's SEEK_HOLE and SEEK_DATA. lseek is wrapped
// here (this executable's definition wins over libc's for the core, which
// is linked in statically) so the race happens on every step, not 1 run in
// 100. A hole left without blocks is a store lost to SIGBUS once the disk
// is full; the walk must never report success with one left.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <gtest/gtest.h>

#include "backend.h"
#include "test_util.h"

namespace {

int g_fd = -1;     // the file whose walk is raced
int g_races = 0;   // how many more SEEK_DATA calls a "writer" runs ahead of
int g_seeks = 0;   // lseek calls on g_fd

using LseekFn = off_t (*)(int, off_t, int);

off_t raced_lseek(LseekFn real, int fd, off_t off, int whence) {
  if (fd == g_fd) {
    ++g_seeks;
    if (whence == SEEK_DATA && g_races > 0) {
      --g_races;
      const char z = 0;  // another process stores into the hole just found
      if (::pwrite(fd, &z, 1, off) != 1) std::abort();
    }
  }
  return real(fd, off, whence);
}

}  // namespace

// Both names: the core is built with _FILE_OFFSET_BITS=64 (it calls
// lseek64), but a build without it would call lseek.
extern "C" off_t wrapped_lseek(int fd, off_t off, int whence) __asm__("lseek");
extern "C" off_t wrapped_lseek(int fd, off_t off, int whence) {
  static const auto real = reinterpret_cast<LseekFn>(::dlsym(RTLD_NEXT, "lseek"));
  return raced_lseek(real, fd, off, whence);
}
extern "C" off_t wrapped_lseek64(int fd, off_t off, int whence) __asm__("lseek64");
extern "C" off_t wrapped_lseek64(int fd, off_t off, int whence) {
  static const auto real = reinterpret_cast<LseekFn>(::dlsym(RTLD_NEXT, "lseek64"));
  return raced_lseek(real, fd, off, whence);
}

namespace {

using emmap::test::TempDir;  // NOLINT

constexpr off_t kPage = 4096;
constexpr off_t kPages = 256;

// Allocates a wholly sparse file of kPages pages with `races` stores racing
// the walk; returns the bytes with blocks after (st_blocks).
long long allocated_after(int races, emmap::Error* result) {
  TempDir d;
  const std::string path = d.file("sparse");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, kPage * kPages) != 0) std::abort();
  g_fd = fd;
  g_races = races;
  g_seeks = 0;
  *result = emmap::make_backend()->allocate(fd, 0, kPage * kPages);
  g_fd = -1;
  struct stat st {};
  ::fstat(fd, &st);
  ::close(fd);
  return static_cast<long long>(st.st_blocks) * 512;
}

bool walk_applies() {
  const auto b = emmap::make_backend();
  if (b->name() == "darwin") return false;  // reserves with F_PREALLOCATE, no hole walk
  // A file system that cannot reserve blocks leaves every file sparse.
  TempDir d;
  const std::string path = d.file("probe");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const bool ok = fd >= 0 && ::posix_fallocate(fd, 0, kPage) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

TEST(HoleWalk, EveryHoleGetsBlocksWhenAWriterStaysAheadOfTheWalk) {
  if (!walk_applies()) GTEST_SKIP() << "no hole walk here (darwin, or a file system without fallocate)";
  for (int races : {1, 3, 7, 8, 9, 65, 300}) {
    emmap::Error e;
    const long long have = allocated_after(races, &e);
    EXPECT_EQ(e, emmap::Error()) << races << " races: " << e.name();
    EXPECT_GE(have, kPage * kPages) << races << " races: allocate answered ok with part of the file still a hole";
    EXPECT_GT(g_seeks, 1) << "the walk did not run: the race was never tried";
  }
}

}  // namespace
