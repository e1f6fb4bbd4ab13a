// Persistent memory on an ordinary machine (forced mode, EMMAP_PMEM_FORCE=1,
// set here before anything is opened): what a persist costs through the
// flush path next to msync of the same page, large writes with
// non-temporal stores next to memcpy + flush (the threshold), and a queue
// push with {sync, always} on both. The flush path's figures are those of
// the CPU's flush on DRAM-backed page cache: an upper bound of the
// instruction cost, not the latency of real persistent memory.
//
//   ./build/bench/pmem_bench
//   ./build/bench/pmem_bench --benchmark_filter=persist
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

#include "mapping.h"
#include "queue.h"

namespace {

constexpr std::size_t kMapSize = 16u << 20;

std::string temp_path(const char* what) {
  const char* t = std::getenv("TMPDIR");
  return std::string(t && *t ? t : "/tmp") + "/emmap-pmem-bench-" + what + "-" + std::to_string(::getpid());
}

std::shared_ptr<emmap::Mapping> open_map(const char* what, bool forced, std::uint64_t size = kMapSize) {
  if (forced) ::setenv("EMMAP_PMEM_FORCE", "1", 1);
  else ::unsetenv("EMMAP_PMEM_FORCE");
  emmap::OpenOptions o;
  o.write = o.create = o.auto_unlink = o.populate = true;
  o.size = size;
  auto r = emmap::Mapping::open(temp_path(what), 0, 0, o);
  ::unsetenv("EMMAP_PMEM_FORCE");
  if (!r) {
    std::fprintf(stderr, "cannot map: %s\n", r.error().name().data());
    std::exit(1);
  }
  if ((r->mapping->persistence() != emmap::Persistence::msync) != forced) {
    std::fprintf(stderr, "unexpected persistence\n");
    std::exit(1);
  }
  return r->mapping;
}

struct Maps {
  std::shared_ptr<emmap::Mapping> flush = open_map("flush", true);
  std::shared_ptr<emmap::Mapping> msync = open_map("msync", false);
  std::vector<char> src = std::vector<char>(1u << 20, 7);
};

Maps& maps() {
  static Maps m;
  return m;
}

// A store into the range, then the persist of [pos, pos+len): the line(s)
// are dirty every time, as after a real write.
void persist(benchmark::State& st, emmap::Mapping& m, std::size_t len) {
  std::uint64_t pos = 0;
  const char byte = 1;
  for (auto _ : st) {
    for (std::size_t i = 0; i < len; i += 64) (void)m.write(pos + i, &byte, 1);
    if (m.sync(pos, len)) st.SkipWithError("sync failed");
    pos = (pos + 4096) % (kMapSize - 4096);
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * len));
}

void BM_persist_flush(benchmark::State& st) { persist(st, *maps().flush, static_cast<std::size_t>(st.range(0))); }
void BM_persist_msync(benchmark::State& st) { persist(st, *maps().msync, static_cast<std::size_t>(st.range(0))); }
BENCHMARK(BM_persist_flush)->Arg(64)->Arg(4096);
BENCHMARK(BM_persist_msync)->Arg(64)->Arg(4096);

// Durable large writes: non-temporal stores + one fence (what
// Mapping::write does at and above kNtThreshold on a flush map) against
// memcpy + flush + fence, at sizes around the threshold.
template <typename Copy>
void durable_writes(benchmark::State& st, Copy copy) {
  const auto n = static_cast<std::size_t>(st.range(0));
  Maps& mp = maps();
  std::uint64_t pos = 0;
  for (auto _ : st) {
    auto e = mp.flush->with_writable(pos, n, [&](char* p, std::size_t len) -> emmap::Error {
      copy(p, mp.src.data(), len);
      emmap::pmem_fence();
      return {};
    });
    if (e) st.SkipWithError("write failed");
    pos = (pos + n + 4096) % (kMapSize - (1u << 20));
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * n));
}
void BM_write_durable_nt(benchmark::State& st) {
  durable_writes(st, [](char* p, const char* src, std::size_t len) { emmap::pmem_copy_nt(p, src, len); });
}
void BM_write_durable_memcpy_flush(benchmark::State& st) {
  durable_writes(st, [](char* p, const char* src, std::size_t len) {
    std::memcpy(p, src, len);
    emmap::pmem_flush(p, len);
  });
}
BENCHMARK(BM_write_durable_nt)->Arg(64)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Arg(4096)->Arg(65536);
BENCHMARK(BM_write_durable_memcpy_flush)->Arg(64)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Arg(4096)->Arg(65536);

// A queue push of 100 bytes with {sync, always}: forced persistent memory
// (record flushed, commit lines flushed, no system call) against msync.
void queue_push(benchmark::State& st, bool forced) {
  auto m = open_map(forced ? "qflush" : "qmsync", forced, 4096 + (1u << 20));
  emmap::queue::Options qo;
  qo.durability = emmap::queue::Durability::always;
  auto q = emmap::queue::Queue::open(m, 1u << 20, qo);
  if (!q) {
    st.SkipWithError("queue open failed");
    return;
  }
  const std::string item(100, 'x');
  std::uint64_t n = 0;
  for (auto _ : st) {
    if ((*q)->push(emmap::queue::kBinary, item.data(), item.size())) st.SkipWithError("push failed");
    if (++n % 4096 == 0) {
      st.PauseTiming();
      (void)(*q)->purge();
      st.ResumeTiming();
    }
  }
  (*q)->close();
}
void BM_queue_push_always_flush(benchmark::State& st) { queue_push(st, true); }
void BM_queue_push_always_msync(benchmark::State& st) { queue_push(st, false); }
BENCHMARK(BM_queue_push_always_flush);
BENCHMARK(BM_queue_push_always_msync);

}  // namespace

int main(int argc, char** argv) {
  std::printf("flush instruction: %s\n", std::string(emmap::flush_name(emmap::flush_instruction())).c_str());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
