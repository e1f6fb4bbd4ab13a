// The persistent FIFO queue: format, commit protocol and recovery. No
// syscalls here: memory comes from a Mapping, the cross-process lock and
// the boot id from the backend.
//
// File format (native byte order)
// -------------------------------
//   0    magic "EMMAPQUE"
//   8    version u32 (1), header size u32 (4096)
//   16   current u64: which state slot is live (0 or 1)
//   24   initial capacity u64 (what pop_and_purge shrinks back to)
//   32   boot id (32 bytes): the boot that last initialised the lock
//   64   state slot 0 (64 bytes)     128 state slot 1 (64 bytes)
//   256  the cross-process lock (128 bytes)
//   4096 data area: `capacity` bytes of records
//
// State slot: head, tail, wrap, capacity, count, pop_seq, push_seq (u64),
// crc32c of those 56 bytes (u32), 0 (u32). Records live in [head, tail)
// or, when wrapped (wrap != 0), in [head, wrap) then [0, tail).
//
// Record (8-byte aligned): u32 0x51520000|kind, u32 len, u64 seq, u32
// crc32c(kind word, len, seq, payload), u32 0, payload, zero padding.
//
// Commit protocol: every change writes the *other* state slot, then flips
// `current` with one 8-byte store. A push writes its record first and
// commits after, so a process killed at any instant leaves either the old
// state or the new one, never a torn record inside [head, tail). All of it
// happens under the robust lock; a holder's death is repaired by the next
// taker (recover()), which re-checks every live record.
//
// Durability: with `sync` the record and the header page are msync'ed
// before push/pop return (survives power loss); without, a push survives
// the death of any process (the page cache has it) but not a power loss.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "mapping.h"

namespace emmap::queue {

inline constexpr std::uint64_t kHeaderSize = 4096;
inline constexpr std::uint8_t kTerm = 1;    // payload is term_to_binary output
inline constexpr std::uint8_t kBinary = 2;  // payload is a raw binary

struct Item {
  std::uint8_t kind;
  std::string data;
};

struct OpenReport {
  bool initialised = false;     // a new queue was written
  std::uint64_t dropped = 0;    // live records found corrupt and cut off
  std::uint64_t count = 0;      // items in the queue
};

// Formats a new (all-zero) file with `initial_capacity` bytes of data area,
// or checks and recovers an existing queue. Serialised against other
// processes opening the same file. Errors: corrupt (not a queue, or a
// header nothing can be recovered from), einval (anonymous map, capacity
// too small), resize errors.
Result<OpenReport> open(Mapping& m, std::uint64_t initial_capacity);

// Appends one item. Grows the file when full unless `fixed_size`.
// Errors: full, einval (item larger than 4 GiB), corrupt, closed, ebusy
// (Wait::no and the lock is held elsewhere, or growth is needed).
Error push(Mapping& m, std::uint8_t kind, const void* data, std::size_t len, bool fixed_size, bool sync,
           Wait w = Wait::yes);

// Takes (or with `peek` just reads) the oldest item; nullopt when empty.
// With `purge` an emptied queue gives its space back (the file shrinks to
// the initial capacity). Errors: corrupt, closed, ebusy.
Result<std::optional<Item>> pop(Mapping& m, bool peek, bool purge, bool sync, Wait w = Wait::yes);

// The same, handing the item to `visit(ctx, kind, data, len)` while it is
// still in the map (under the lock): copy or decode it there, no copy in
// between. A false from visit (out of memory, undecodable) leaves the item
// queued. Returns false when the queue was empty. Errors: as pop, and
// whatever visit said through `*visit_error`.
using Visitor = bool (*)(void* ctx, std::uint8_t kind, const char* data, std::size_t len);
Result<bool> pop_into(Mapping& m, bool peek, bool purge, bool sync, Wait w, Visitor visit, void* ctx,
                      Errc visit_error = Errc::enomem);

Result<std::uint64_t> length(Mapping& m, Wait w = Wait::yes);

// Drops every item and shrinks the file back. Errors: closed, ebusy.
Error purge(Mapping& m, bool sync, Wait w = Wait::yes);

}  // namespace emmap::queue
