// Core benchmarks: each emmap operation next to the plain-memory baseline it
// wraps, measured in the same run, then a table of throughput ratios
// (ours / baseline; 1.00 = as fast as the bare operation).
//
//   ./build/bench/core_bench            # all, then the ratio table
//   ./build/bench/core_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "mapping.h"

namespace {

constexpr std::size_t kMapSize = 64u << 20;
constexpr std::size_t kSmall = 40;
constexpr std::size_t kLarge = 1u << 20;

struct Fixture {
  std::string path;
  std::shared_ptr<emmap::Mapping> map;
  std::vector<char> plain;          // the baseline's memory, same size
  std::vector<std::uint64_t> small_offsets;
  std::vector<std::uint64_t> large_offsets;

  Fixture() : plain(kMapSize, 1) {
    const char* t = std::getenv("TMPDIR");
    path = std::string(t && *t ? t : "/tmp") + "/emmap-bench-" + std::to_string(::getpid());
    emmap::OpenOptions o;
    o.write = o.create = o.auto_unlink = o.populate = true;
    o.size = kMapSize;
    auto r = emmap::Mapping::open(path, 0, 0, o);
    if (!r) {
      std::fprintf(stderr, "cannot map %s: %s\n", path.c_str(), r.error().name().data());
      std::exit(1);
    }
    map = r->mapping;
    for (std::size_t i = 0; i < kMapSize; i += 4096) (void)map->write(i, plain.data(), 4096);
    std::mt19937_64 rng(42);
    for (int i = 0; i < 4096; ++i) {
      small_offsets.push_back(rng() % (kMapSize - kSmall));
      large_offsets.push_back(rng() % (kMapSize - kLarge));
    }
  }
};

Fixture& fx() {
  static Fixture f;
  return f;
}

void BM_read_40B_baseline_memcpy(benchmark::State& st) {
  auto& f = fx();
  char buf[kSmall];
  std::size_t i = 0;
  for (auto _ : st) {
    std::memcpy(buf, f.plain.data() + f.small_offsets[i++ & 4095], kSmall);
    benchmark::DoNotOptimize(buf);
  }
}
void BM_read_40B_emmap(benchmark::State& st) {
  auto& f = fx();
  char buf[kSmall];
  std::size_t i = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(f.map->read(f.small_offsets[i++ & 4095], buf, kSmall));
    benchmark::DoNotOptimize(buf);
  }
}
void BM_read_1MiB_baseline_memcpy(benchmark::State& st) {
  auto& f = fx();
  std::vector<char> buf(kLarge);
  std::size_t i = 0;
  for (auto _ : st) {
    std::memcpy(buf.data(), f.plain.data() + f.large_offsets[i++ & 4095], kLarge);
    benchmark::DoNotOptimize(buf.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * kLarge));
}
void BM_read_1MiB_emmap(benchmark::State& st) {
  auto& f = fx();
  std::vector<char> buf(kLarge);
  std::size_t i = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(f.map->read(f.large_offsets[i++ & 4095], buf.data(), kLarge));
    benchmark::DoNotOptimize(buf.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * kLarge));
}
void BM_atomic_add_baseline_std_atomic(benchmark::State& st) {
  static std::atomic<std::int64_t> counter{0};
  for (auto _ : st) benchmark::DoNotOptimize(counter.fetch_add(1));
}
void BM_atomic_add_emmap(benchmark::State& st) {
  auto& f = fx();
  for (auto _ : st) benchmark::DoNotOptimize(f.map->atomic_fetch(emmap::AtomicOp::add, 4096, 1));
}
void BM_atomic_load_baseline_std_atomic(benchmark::State& st) {
  static std::atomic<std::int64_t> counter{0};
  for (auto _ : st) benchmark::DoNotOptimize(counter.load());
}
void BM_atomic_load_emmap(benchmark::State& st) {
  auto& f = fx();
  for (auto _ : st) benchmark::DoNotOptimize(f.map->atomic_load(4096));
}

// What the SIGBUS protection adds to every access: clear the thread's
// fault note before touching the map, test it after, and test the map's
// truncated flag. No system call (a sigsetjmp saving the mask would cost a
// sigprocmask each time). Measured alone, beside an empty access.
void BM_sigbus_guard_baseline_plain(benchmark::State& st) {
  auto& f = fx();
  std::size_t i = 0;
  for (auto _ : st) benchmark::DoNotOptimize(f.plain[f.small_offsets[i++ & 4095]]);
}
void BM_sigbus_guard_emmap(benchmark::State& st) {
  auto& f = fx();
  std::atomic<bool> truncated{false};
  std::size_t i = 0;
  for (auto _ : st) {
    if (truncated.load(std::memory_order_relaxed)) break;
    emmap::t_fault = emmap::kFaultNone;
    benchmark::DoNotOptimize(f.plain[f.small_offsets[i++ & 4095]]);
    if (emmap::t_fault != emmap::kFaultNone) break;
  }
}

// Alternate baseline and ours so drift on a noisy machine hits both.
BENCHMARK(BM_read_40B_baseline_memcpy);
BENCHMARK(BM_read_40B_emmap);
BENCHMARK(BM_read_1MiB_baseline_memcpy);
BENCHMARK(BM_read_1MiB_emmap);
BENCHMARK(BM_atomic_add_baseline_std_atomic);
BENCHMARK(BM_atomic_add_emmap);
BENCHMARK(BM_atomic_add_baseline_std_atomic)->Threads(2);
BENCHMARK(BM_atomic_add_emmap)->Threads(2);
BENCHMARK(BM_atomic_load_baseline_std_atomic);
BENCHMARK(BM_atomic_load_emmap);
BENCHMARK(BM_sigbus_guard_baseline_plain);
BENCHMARK(BM_sigbus_guard_emmap);

// Collects the mean CPU time per iteration of every run, by name.
class Collector : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, std::vector<double>> times;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (r.run_type == Run::RT_Iteration) times[r.benchmark_name()].push_back(r.GetAdjustedRealTime());
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Collector c;
  benchmark::RunSpecifiedBenchmarks(&c);
  std::printf("\n%-34s %12s %12s %8s\n", "operation (ours vs baseline)", "ours ns/op", "base ns/op", "ratio");
  for (const auto& [name, t] : c.times) {
    auto pos = name.find("_emmap");
    if (pos == std::string::npos) continue;
    std::string op = name.substr(3, pos - 3);
    std::string suffix = name.substr(pos + 6);  // e.g. "/threads:2"
    for (const auto& [bname, bt] : c.times) {
      if (bname.rfind("BM_" + op + "_baseline", 0) == 0 && bname.size() >= suffix.size() &&
          bname.compare(bname.size() - suffix.size(), suffix.size(), suffix) == 0 &&
          (suffix.empty() == (bname.find('/') == std::string::npos))) {
        const double ours = median(t), base = median(bt);
        std::printf("%-34s %12.2f %12.2f %7.2fx\n", (op + suffix).c_str(), ours, base, base / ours);
      }
    }
  }
  std::printf("ratio = baseline time / emmap time (throughput of emmap relative to the bare operation)\n");
  benchmark::Shutdown();
  return 0;
}
