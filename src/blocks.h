// Block storage: fixed-size blocks in one mapped file, addressed by index.
//
// Format (native byte order; the first 64 bytes of the map):
//    0  magic     "EMMAPBLK"
//    8  version   u32 (1)
//   12  block     u32 largest payload of a block, in bytes
//   16  capacity  u64 number of slots in the file
//   24  count     u64 slots in use (maintained atomically; rebuilt by repair)
//   32  free_hint u64 no slot below it is free (lowest-free reuse)
//   40  reserved
// Slot i starts at 64 + i * slot_size, slot_size = round_up(8 + block, 8):
//    0  word  u32 = sequence << 2 | state (0 free, 1 being written, 2 used)
//    4  len   u32 payload length (<= block)
//    8  payload
// A store claims a free slot by CAS (free -> writing), writes, then
// publishes (-> used); readers copy under the sequence (a seqlock), so a
// concurrent free and re-store is never returned torn. Any address, valid
// or not, is answered from inside the storage: bounds are checked first.
// A crash mid-store leaves a slot "being written"; repair() frees it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "mapping.h"

namespace emmap::blocks {

inline constexpr std::uint64_t kHeaderSize = 64;
inline constexpr std::uint64_t kEof = UINT64_MAX;  // scan/repair: nothing left

// Formats an empty (all-zero) map, or checks an existing format. The map
// grows to hold at least one slot. Errors: einval (block size 0 or larger
// than 1 GiB, or different from the existing one), corrupt (not block
// storage), full (too small for one slot and cannot grow: fixed_size, or a
// backend without resize), eacces, closed, and resize errors.
Error init(Mapping& m, std::uint32_t block_size, Wait w = Wait::yes);

// Stores `len` bytes in the lowest free slot; returns its address. Grows the
// file when every slot is taken. Errors: full (every slot taken and the map
// cannot grow: fixed_size, or a backend without resize), einval
// (len > block size), corrupt (not formatted), closed, ebusy (Wait::no).
Result<std::uint64_t> store(Mapping& m, const void* data, std::size_t len, Wait w = Wait::yes);

// The block at `addr`. Errors: eof (free slot), einval (past the storage),
// corrupt, closed, ebusy, enomem.
Result<std::string> read(Mapping& m, std::uint64_t addr, Wait w = Wait::yes);

// The same, copied straight into a buffer the caller provides: sink(ctx, n)
// returns room for n bytes (it is asked again, with the new length, if the
// block changed under the copy), or nullptr when it cannot (the read then
// fails with enomem, or whatever the caller noted in ctx). Returns the
// block's length.
using Sink = char* (*)(void* ctx, std::size_t n);
Result<std::size_t> read_into(Mapping& m, std::uint64_t addr, Sink sink, void* ctx, Wait w = Wait::yes);

// Frees `addr`; true if it was in use. Errors: einval (past the storage),
// corrupt, closed, ebusy.
Result<bool> free(Mapping& m, std::uint64_t addr, Wait w = Wait::yes);

// Calls f(addr, bytes) for up to `count` used blocks from slot `start`;
// returns the slot to continue from, or kEof. Errors: corrupt, closed, ebusy.
using Visitor = std::function<void(std::uint64_t addr, std::string_view data)>;
Result<std::uint64_t> scan(Mapping& m, std::uint64_t start, std::uint64_t count, const Visitor& f,
                           Wait w = Wait::yes);

// Frees slots left half-written or with an impossible length in
// [start, start+count); returns the slot to continue from, or kEof. A pass
// that reaches the end from slot 0 also rebuilds `count` and `free_hint`.
// It runs exclusive with this handle's stores and frees; a half-written
// slot is freed only when no other handle (in any process) has the file
// open, since it may be a live store's there (a crash leaves such slots;
// repair at start-up, alone, frees them). Errors: corrupt, closed, ebusy.
Result<std::uint64_t> repair(Mapping& m, std::uint64_t start, std::uint64_t count, Wait w = Wait::yes);

}  // namespace emmap::blocks
