#include "ext_size.h"

#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

namespace emmap::nif {
namespace {

// Words on a 64-bit heap, generous where the VM's layout varies by release.
constexpr std::size_t kWord = 8;
constexpr std::size_t kFloatWords = 2;
constexpr std::size_t kBignumWords = 2;      // header (+ a spare) besides the digits
// An external pid, port or reference besides its id words, and the node
// table entry (with its DistEntry, ~880 bytes in ERTS 25) that decoding one
// of an unknown node creates: counted for every one, as if each named a
// different node.
constexpr std::size_t kRemoteIdWords = 12 + 128;
constexpr std::size_t kRefcBinWords = 8;     // a ProcBin on the heap, the off-heap Binary header
constexpr std::size_t kSubBinWords = 8;      // a bitstring's sub-binary
constexpr std::size_t kFunWords = 16;        // a fun's header, besides its free variables
constexpr std::size_t kMapPairWords = 8;     // a large map's HAMT nodes and pair (6.5 words in ERTS 25)
constexpr std::size_t kHeapBinMax = 64;      // binaries up to this size live on the heap

// What is left to read: `n` terms, or `n` bytes to step over.
struct Task {
  bool skip;
  std::size_t n;
};

class Walker {
 public:
  Walker(const unsigned char* p, std::size_t len) : p_(p), end_(p + len) {}

  std::optional<std::size_t> run() {
    if (!u8(131)) return std::nullopt;
    try {
      todo_.push_back({false, 1});
      while (!todo_.empty()) {
        Task& t = todo_.back();
        if (t.skip) {
          const std::size_t n = t.n;
          todo_.pop_back();
          if (!take(n)) return std::nullopt;
          continue;
        }
        if (--t.n == 0) todo_.pop_back();
        if (!term()) return std::nullopt;
      }
    } catch (const std::bad_alloc&) {
      return SIZE_MAX;  // no memory even to look: certainly none to decode it
    }
    if (p_ != end_) return std::nullopt;
    return words_ > (SIZE_MAX - bytes_) / kWord ? SIZE_MAX : words_ * kWord + bytes_;
  }

 private:
  bool have(std::size_t n) const { return static_cast<std::size_t>(end_ - p_) >= n; }
  bool take(std::size_t n) {
    if (!have(n)) return false;
    p_ += n;
    return true;
  }
  bool u8(unsigned expect) {
    if (!have(1) || *p_ != expect) return false;
    ++p_;
    return true;
  }
  bool be(std::size_t width, std::size_t* out) {
    if (!have(width)) return false;
    std::size_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v = v << 8 | p_[i];
    p_ += width;
    *out = v;
    return true;
  }
  void add(std::size_t words) { words_ = words > SIZE_MAX - words_ ? SIZE_MAX : words_ + words; }
  void terms(std::size_t n) {
    if (n > 0) todo_.push_back({false, n});
  }
  // A node atom, then `tail` bytes (ids, creation).
  void node_then(std::size_t tail) {
    todo_.push_back({true, tail});
    todo_.push_back({false, 1});
  }
  bool binary(std::size_t len) {
    if (!have(len)) return false;
    if (len <= kHeapBinMax) {
      add(2 + (len + kWord - 1) / kWord);
    } else {
      add(kRefcBinWords);
      bytes_ = len > SIZE_MAX - bytes_ ? SIZE_MAX : bytes_ + len;
    }
    p_ += len;
    return true;
  }

  // Reads one term's tag and fixed part; its children go on the to-do list.
  bool term() {
    if (!have(1)) return false;
    const unsigned tag = *p_++;
    std::size_t n = 0;
    switch (tag) {
      case 97: return take(1);                           // SMALL_INTEGER_EXT
      case 98: return take(4);                           // INTEGER_EXT (fits a small on 64 bits)
      case 70: add(kFloatWords); return take(8);         // NEW_FLOAT_EXT
      case 99: add(kFloatWords); return take(31);        // FLOAT_EXT
      case 82: return take(1);                           // ATOM_CACHE_REF
      case 100: case 118: return be(2, &n) && take(n);   // ATOM_EXT, ATOM_UTF8_EXT
      case 115: case 119: return be(1, &n) && take(n);   // SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT
      case 106: return true;                             // NIL_EXT
      case 104:                                          // SMALL_TUPLE_EXT
      case 105:                                          // LARGE_TUPLE_EXT
        if (!be(tag == 104 ? 1 : 4, &n)) return false;
        if (!have(n)) return false;                      // each element takes a byte at least
        add(1 + n);
        terms(n);
        return true;
      case 107:                                          // STRING_EXT: a list of small integers
        if (!be(2, &n)) return false;
        add(2 * n);
        return take(n);
      case 108:                                          // LIST_EXT: elements, then the tail
        if (!be(4, &n) || !have(n)) return false;
        add(2 * n);
        terms(n + 1);
        return true;
      case 116:                                          // MAP_EXT
        if (!be(4, &n) || n > SIZE_MAX / 2 || !have(2 * n)) return false;
        add(4 + kMapPairWords * n);
        terms(2 * n);
        return true;
      case 109:                                          // BINARY_EXT
        return be(4, &n) && binary(n);
      case 77:                                           // BIT_BINARY_EXT
        if (!be(4, &n) || !take(1)) return false;
        add(kSubBinWords);
        return binary(n);
      case 110:                                          // SMALL_BIG_EXT
      case 111:                                          // LARGE_BIG_EXT
        if (!be(tag == 110 ? 1 : 4, &n) || !take(1)) return false;
        add(kBignumWords + (n + kWord - 1) / kWord);
        return take(n);
      case 103: add(kRemoteIdWords); node_then(9); return true;   // PID_EXT
      case 88: add(kRemoteIdWords); node_then(12); return true;   // NEW_PID_EXT
      case 102: add(kRemoteIdWords); node_then(5); return true;   // PORT_EXT
      case 89: add(kRemoteIdWords); node_then(8); return true;    // NEW_PORT_EXT
      case 120: add(kRemoteIdWords); node_then(12); return true;  // V4_PORT_EXT
      case 101: add(kRemoteIdWords); node_then(5); return true;   // REFERENCE_EXT
      case 114:                                          // NEW_REFERENCE_EXT: Len, node, creation(1), ids
      case 90:                                           // NEWER_REFERENCE_EXT: Len, node, creation(4), ids
        if (!be(2, &n)) return false;
        add(kRemoteIdWords + n);
        node_then((tag == 114 ? 1 : 4) + 4 * n);
        return true;
      case 113:                                          // EXPORT_EXT: module, function, arity
        add(kFunWords);
        terms(3);
        return true;
      case 112: {                                        // NEW_FUN_EXT: Size, Arity, Uniq, Index, NumFree,
        std::size_t size = 0;                            // then module, old index, old uniq, pid, free vars
        if (!be(4, &size) || size < 4 + 1 + 16 + 4 + 4 || !have(size - 4) || !take(1 + 16 + 4) || !be(4, &n))
          return false;
        add(kFunWords + n);
        terms(4 + n);
        return true;
      }
      case 117: {                                        // FUN_EXT: NumFree, pid, module, index, uniq, free vars
        if (!be(4, &n)) return false;
        add(kFunWords + n);
        terms(4 + n);
        return true;
      }
      default:
        return false;                                    // compressed (80), or a tag of a later release
    }
  }

  const unsigned char* p_;
  const unsigned char* const end_;
  std::vector<Task> todo_;
  std::size_t words_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace

std::optional<std::size_t> decoded_bytes(const unsigned char* ext, std::size_t len) noexcept {
  return Walker(ext, len).run();
}

std::optional<std::size_t> compressed_decoded_bytes(const unsigned char* ext, std::size_t len) noexcept {
  if (len < 6 || ext[0] != 131 || ext[1] != 80) return std::nullopt;
  const std::size_t u = std::size_t{ext[2]} << 24 | std::size_t{ext[3]} << 16 | std::size_t{ext[4]} << 8 | ext[5];
  // No tag takes more than 16 bytes of heap per byte of input (a STRING_EXT
  // list) except remote pids, ports and references with their node table
  // entries, which are left out here: counting them (112 bytes a byte)
  // would refuse large compressed items that fit (a probe past RAM + swap
  // fails under the kernel's default overcommit).
  return u * 16 + 4096;
}

bool can_allocate(std::size_t bytes) noexcept {
  void* p = std::malloc(bytes);
  std::free(p);
  return p != nullptr;
}

}  // namespace emmap::nif
