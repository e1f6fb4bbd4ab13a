// The NIF's estimate of what decoding an external term will allocate
// (nif/ext_size.cpp): never below what the VM builds, never so far above
// that a term which fits is refused, and no estimate at all for input it
// cannot read. The cases and their decoded sizes (erts_debug:flat_size/1
// words, plus the bytes of off-heap binaries) come from OTP 25's
// term_to_binary.
#include <gtest/gtest.h>

#include <string>

#include "ext_size.h"

namespace emmap::nif {
namespace {

struct Case {
  const char* name;
  const char* hex;
  std::size_t decoded;
};

const Case kCases[] = {
    {"small int", "836105", 0},
    {"int", "8362000186A0", 0},
    {"neg int", "8362FFFFFFFD", 0},
    {"bignum", "836E1A000000000000000000000000000000000000000000000000000001", 40},
    {"float", "83463FF8000000000000", 16},
    {"atom", "8364000568656C6C6F", 0},
    {"nil", "836A", 0},
    {"string", "836B0006616263646566", 96},
    {"int list", "836C00000004610162000003E862000186A06E09000000000000000000406A", 88},
    {"improper", "836C000000016400016164000162", 16},
    {"tuple", "8368046400016161016A6800", 40},
    {"empty tuple", "836800", 0},
    {"small bin", "836D0000000A30313233343536373839", 32},
    {"big bin", "836D0000006478787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878", 148},
    {"bits", "834D000000010320", 64},
    {"big bits", "834D0000005105797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797908", 88},
    {"small map", "837400000002640001616101640001626B00020102", 96},
    {"big map", "83740000002861216121610C610C61176117611D611D611E611E61276127611A611A611F611F610B610B6125612561096109612061206122612261196119611C611C6106610661266126610D610D6128612861146114610F610F610E610E6102610261076107610161016108610861036103611161116116611661156115610461046124612461186118610A610A61236123611B611B61136113610561056112611261106110", 1216},
    {"pid", "835864000D6E6F6E6F6465406E6F686F7374000000090000000000000000", 0},
    {"ref", "835A000364000D6E6F6E6F6465406E6F686F7374000000000000585227640001AF2CC1BA", 24},
    {"port", "835964000D6E6F6E6F6465406E6F686F73740000000000000000", 0},
    {"fun", "83700000004A01763EFA1949B2E322065B43E25F2B9D28000000000000000064000665787467656E61006203B1F7D05864000D6E6F6E6F6465406E6F686F7374000000090000000000000000", 40},
    {"closure", "83700000004A01763EFA1949B2E322065B43E25F2B9D28000000010000000064000665787467656E61016203B1F7D05864000D6E6F6E6F6465406E6F686F7374000000090000000000000000", 40},
    {"export", "83716400056C697374736400036D61706102", 40},
    {"nested", "836C000000056802640001786C00000003463FF00000000000006D000000016274000000016400016B6801640001766A6802640001786C00000003463FF00000000000006D000000016274000000016400016B6801640001766A6802640001786C00000003463FF00000000000006D000000016274000000016400016B6801640001766A6802640001786C00000003463FF00000000000006D000000016274000000016400016B6801640001766A6802640001786C00000003463FF00000000000006D000000016274000000016400016B6801640001766A6A", 960},
    {"list of nils", "836C000000146A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A", 320},
};

std::string unhex(const char* hex) {
  std::string out;
  for (const char* p = hex; p[0] && p[1]; p += 2) out.push_back(static_cast<char>(std::stoi(std::string(p, 2), nullptr, 16)));
  return out;
}

std::optional<std::size_t> bound(const std::string& ext) {
  return decoded_bytes(reinterpret_cast<const unsigned char*>(ext.data()), ext.size());
}

TEST(ExtSize, BoundsWhatTheVmBuilds) {
  for (const Case& c : kCases) {
    const auto b = bound(unhex(c.hex));
    ASSERT_TRUE(b.has_value()) << c.name;
    EXPECT_GE(*b, c.decoded) << c.name;
    // Pids, ports and references (a fun holds its creator's pid) also count
    // a node table entry (~1 KiB).
    const std::string name = c.name;
    const bool has_id = name == "pid" || name == "port" || name == "ref" || name == "fun" || name == "closure";
    const std::size_t node = has_id ? 1024 : 0;
    EXPECT_LE(*b, 4 * c.decoded + 256 + node) << c.name << ": so loose a term that fits would be refused";
  }
}

TEST(ExtSize, ALongListIsCountedNotRecursed) {
  // [1, 2, ..., 1000000]: 16 bytes a cell; the walker keeps no per-element state.
  std::string ext = "\x83\x6c";
  const std::uint32_t n = 1000000;
  for (int s = 24; s >= 0; s -= 8) ext.push_back(static_cast<char>(n >> s));
  for (std::uint32_t i = 0; i < n; ++i) ext += "\x61\x01";
  ext.push_back('\x6a');
  const auto b = bound(ext);
  ASSERT_TRUE(b.has_value());
  EXPECT_GE(*b, 16u * n);
  EXPECT_LE(*b, 17u * n);
}

TEST(ExtSize, ACompressedTermIsBoundedByItsUncompressedSize) {
  // lists:seq(1, 2000) compressed: 9,241 bytes uncompressed, 32,000 decoded.
  const auto b = compressed_decoded_bytes(reinterpret_cast<const unsigned char*>(unhex("835000002419789C").data()), 8);
  ASSERT_TRUE(b.has_value());
  EXPECT_GE(*b, 32000u);
  EXPECT_FALSE(compressed_decoded_bytes(reinterpret_cast<const unsigned char*>(unhex("836A").data()), 2).has_value());
  EXPECT_FALSE(bound(unhex("835000002419789C")).has_value()) << "the walker does not read compressed terms";
}

TEST(ExtSize, UnreadableInputHasNoEstimate) {
  for (const Case& c : kCases) {
    const std::string ext = unhex(c.hex);
    for (std::size_t cut = 0; cut < ext.size(); ++cut)
      EXPECT_FALSE(bound(ext.substr(0, cut)).has_value()) << c.name << " cut at " << cut;
    EXPECT_FALSE(bound(ext + '\x6a').has_value()) << c.name << " with a byte after it";
  }
  EXPECT_FALSE(bound(unhex("8350000000")).has_value()) << "a compressed term";
  EXPECT_FALSE(bound(unhex("8479")).has_value()) << "no version byte";
  EXPECT_FALSE(bound(unhex("83FF")).has_value()) << "an unknown tag";
  // A list claiming more elements than the input has bytes.
  EXPECT_FALSE(bound(unhex("836CFFFFFFFF6A")).has_value());
  EXPECT_FALSE(bound(unhex("8374FFFFFFFF")).has_value());
}

}  // namespace
}  // namespace emmap::nif
