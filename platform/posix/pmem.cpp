// Persistent memory, the CPU side: which cache-line flush this CPU has
// (chosen once, at load), the flush loop, the store fence and a copy with
// non-temporal stores. Shared by every backend: the instructions belong to
// the CPU, not the OS (only arm64's feature bit comes from the OS, through
// getauxval on Linux).
//
// The flush functions carry target attributes, so the build needs no
// -mclwb: the instruction is only executed where CPUID said it exists.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backend.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <emmintrin.h>
#define EMMAP_X86 1
#elif defined(__aarch64__)
#define EMMAP_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_DCPOP
#define HWCAP_DCPOP (1 << 16)  // Linux 4.16's bit for DC CVAP
#endif
#endif
#endif

namespace emmap {

namespace {

constexpr std::uint32_t bit(FlushInsn f) { return 1u << static_cast<unsigned>(f); }

std::atomic<FlushObserver> g_observer{nullptr};
std::atomic<void*> g_observer_ctx{nullptr};

#if EMMAP_X86
__attribute__((target("clwb"))) void flush_clwb(std::uintptr_t p, std::uintptr_t end) noexcept {
  for (; p < end; p += kCacheLine) __builtin_ia32_clwb(reinterpret_cast<void*>(p));
}
__attribute__((target("clflushopt"))) void flush_clflushopt(std::uintptr_t p, std::uintptr_t end) noexcept {
  for (; p < end; p += kCacheLine) __builtin_ia32_clflushopt(reinterpret_cast<void*>(p));
}
void flush_clflush(std::uintptr_t p, std::uintptr_t end) noexcept {
  for (; p < end; p += kCacheLine) __builtin_ia32_clflush(reinterpret_cast<const void*>(p));
}
#endif

#if EMMAP_ARM64
void flush_cvap(std::uintptr_t p, std::uintptr_t end) noexcept {
  // DC CVAP by its system-register encoding: assemblers without
  // armv8.2-a enabled reject the mnemonic.
  for (; p < end; p += kCacheLine) asm volatile("sys #3, c7, c12, #1, %0" : : "r"(p) : "memory");
}
void flush_cvac(std::uintptr_t p, std::uintptr_t end) noexcept {
  for (; p < end; p += kCacheLine) asm volatile("dc cvac, %0" : : "r"(p) : "memory");
}
#endif

FlushInsn select_at_load() noexcept { return choose_flush(available_flushes(), std::getenv("EMMAP_PMEM_FLUSH")); }

}  // namespace

std::uint32_t available_flushes() noexcept {
  std::uint32_t have = 0;
#if EMMAP_X86
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d) && (d & (1u << 19))) have |= bit(FlushInsn::clflush);
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    if (b & (1u << 23)) have |= bit(FlushInsn::clflushopt);
    if (b & (1u << 24)) have |= bit(FlushInsn::clwb);
  }
#elif EMMAP_ARM64
  have |= bit(FlushInsn::dc_cvac);
#if defined(__linux__)
  if (::getauxval(AT_HWCAP) & HWCAP_DCPOP) have |= bit(FlushInsn::dc_cvap);
#endif
#endif
  return have;
}

FlushInsn choose_flush(std::uint32_t available, const char* forced) noexcept {
  if (forced) {
    for (FlushInsn f : {FlushInsn::clflush, FlushInsn::clflushopt, FlushInsn::clwb}) {
      if (flush_name(f) == forced && (available & bit(f))) return f;
    }
  }
  // Strongest first: clwb keeps the line in the cache, clflushopt is
  // weakly ordered (one fence for many), clflush is serialising.
  for (FlushInsn f : {FlushInsn::clwb, FlushInsn::clflushopt, FlushInsn::clflush, FlushInsn::dc_cvap, FlushInsn::dc_cvac}) {
    if (available & bit(f)) return f;
  }
  return FlushInsn::none;
}

FlushInsn flush_instruction() noexcept {
  static const FlushInsn chosen = select_at_load();
  return chosen;
}

// Chosen when the library loads (not at the first persist), so a program
// can ask flush_instruction() and every persist takes the same one.
namespace {
[[maybe_unused]] const FlushInsn g_loaded = flush_instruction();
}

std::string_view flush_name(FlushInsn f) noexcept {
  switch (f) {
    case FlushInsn::none: return "none";
    case FlushInsn::clflush: return "clflush";
    case FlushInsn::clflushopt: return "clflushopt";
    case FlushInsn::clwb: return "clwb";
    case FlushInsn::dc_cvac: return "dc_cvac";
    case FlushInsn::dc_cvap: return "dc_cvap";
  }
  return "none";
}

void set_flush_observer(FlushObserver f, void* ctx) noexcept {
  g_observer_ctx.store(ctx, std::memory_order_relaxed);
  g_observer.store(f, std::memory_order_release);
}

void pmem_flush(const void* addr, std::size_t len) noexcept {
  if (len == 0) return;
  const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(addr) & ~(std::uintptr_t{kCacheLine} - 1);
  const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(addr) + len;
  if (FlushObserver obs = g_observer.load(std::memory_order_acquire)) {
    void* ctx = g_observer_ctx.load(std::memory_order_relaxed);
    for (std::uintptr_t p = first; p < end; p += kCacheLine) obs(ctx, reinterpret_cast<const void*>(p));
  }
  switch (flush_instruction()) {
#if EMMAP_X86
    case FlushInsn::clwb: flush_clwb(first, end); break;
    case FlushInsn::clflushopt: flush_clflushopt(first, end); break;
    case FlushInsn::clflush: flush_clflush(first, end); break;
#endif
#if EMMAP_ARM64
    case FlushInsn::dc_cvap: flush_cvap(first, end); break;
    case FlushInsn::dc_cvac: flush_cvac(first, end); break;
#endif
    default: break;
  }
}

void pmem_fence() noexcept {
#if EMMAP_X86
  __builtin_ia32_sfence();
#elif EMMAP_ARM64
  asm volatile("dsb ish" : : : "memory");
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

void pmem_copy_nt(void* dst, const void* src, std::size_t len) noexcept {
#if EMMAP_X86 && defined(__SSE2__)
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  // The head up to a line boundary and the tail after the last whole line
  // are plain stores, flushed; whole lines go around the cache.
  const std::size_t head = std::min(len, (kCacheLine - reinterpret_cast<std::uintptr_t>(d) % kCacheLine) % kCacheLine);
  if (head) {
    std::memcpy(d, s, head);
    pmem_flush(d, head);
    d += head;
    s += head;
    len -= head;
  }
  if (FlushObserver obs = g_observer.load(std::memory_order_acquire)) {
    // The lines written around the cache are durable after the fence too:
    // an observer sees them as flushed.
    void* ctx = g_observer_ctx.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i + kCacheLine <= len; i += kCacheLine) obs(ctx, d + i);
  }
  for (; len >= kCacheLine; len -= kCacheLine, d += kCacheLine, s += kCacheLine) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 48), e);
  }
  if (len) {
    std::memcpy(d, s, len);
    pmem_flush(d, len);
  }
#else
  std::memcpy(dst, src, len);
  pmem_flush(dst, len);
#endif
}

// ---- the backend's defaults (the Linux backend adds eADR and device DAX) ----------

void MappingBackend::persist(const void* addr, std::size_t len, Persistence p) noexcept {
  if (p == Persistence::flush) pmem_flush(addr, len);
  if (p != Persistence::msync) pmem_fence();
}

bool MappingBackend::pmem_forced() const noexcept {
  const char* v = std::getenv("EMMAP_PMEM_FORCE");
  return v && std::strcmp(v, "1") == 0;
}

Persistence MappingBackend::dax_persistence() const noexcept {
  return flush_instruction() == FlushInsn::none ? Persistence::msync : Persistence::flush;
}

Result<std::optional<DeviceDax>> MappingBackend::device_dax(FileId) const noexcept {
  return std::optional<DeviceDax>();
}

}  // namespace emmap
