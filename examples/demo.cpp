// The README's main job (C++ part): maps a temporary file, writes, reads,
// counts atomically, grows the map while an earlier pointer stays valid,
// and syncs. Prints each step; exits non-zero if any step misbehaves.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

#include "emmap.h"

namespace {
int fail(const char* what, emmap::Error e) {
  std::fprintf(stderr, "demo: %s failed: %.*s\n", what, static_cast<int>(e.name().size()), e.name().data());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "/tmp/emmap-demo-" + std::to_string(::getpid()) + ".bin";
  emmap::OpenOptions o;
  o.write = o.create = o.auto_unlink = true;
  o.size = 4096;
  auto opened = emmap::Mapping::open(path, 0, 0, o);
  if (!opened) return fail("open", opened.error());
  emmap::Mapping& m = *opened->mapping;
  std::printf("mapped %s: %llu bytes on the %.*s backend\n", path.c_str(),
              static_cast<unsigned long long>(m.size()), static_cast<int>(m.backend().name().size()),
              m.backend().name().data());

  if (auto e = m.write(100, "hello, mmap", 11)) return fail("write", e);
  char buf[11];
  auto n = m.read(100, buf, sizeof buf);
  if (!n) return fail("read", n.error());
  std::printf("read back: %.*s\n", static_cast<int>(*n), buf);

  for (int i = 0; i < 5; ++i) (void)m.atomic_fetch(emmap::AtomicOp::add, 0, 3);
  auto v = m.atomic_load(0);
  if (!v || *v != 15) return fail("atomics", v ? emmap::Error(emmap::Errc::einval) : v.error());
  std::printf("counter after 5 atomic adds of 3: %lld\n", static_cast<long long>(*v));

  auto pinned = m.pin();
  if (!pinned) return fail("pin", pinned.error());
  const char* early = nullptr;
  (void)m.with_range(100, 11, [&](const char* p, std::size_t, emmap::Region&) -> emmap::Result<int> {
    early = p;
    return 0;
  });
  if (!m.backend().capabilities().resize) {
    // darwin: no resize by contract, and the map says so instead of faking it.
    auto refused = m.resize(256u << 20);
    std::printf("resize on this backend: %s (as documented)\n", refused ? "ok?!" : refused.error().name().data());
    if (refused || refused.error() != emmap::Errc::fixed_size) return fail("resize refusal", emmap::Errc::einval);
    if (auto e = m.sync()) return fail("sync", e);
    m.close();
    return 0;
  }
  auto grown = m.resize(256u << 20);
  if (!grown) return fail("resize", grown.error());
  std::printf("grew to %llu bytes; a pointer taken before still reads: %.11s\n",
              static_cast<unsigned long long>(*grown), early);
  if (std::memcmp(early, "hello, mmap", 11) != 0) return fail("pointer after resize", emmap::Errc::einval);
  if (auto e = m.write((256u << 20) - 5, "tail!", 5)) return fail("write at the new end", e);
  if (auto e = m.sync()) return fail("sync", e);
  std::printf("synced; closing (the file is removed: auto_unlink)\n");
  m.close();
  return 0;
}
