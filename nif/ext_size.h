// How much memory decoding an external term (term_to_binary's format) will
// take, found without decoding it.
//
// enif_binary_to_term cannot fail for lack of memory: the VM aborts
// ("Cannot allocate N bytes of memory"). A queue item decoded under a
// memory limit (RLIMIT_AS, a container's cap) must answer {error, enomem}
// instead and stay queued, so before decoding a large item the NIF asks the
// allocator for what the term will need and gives it back.
#pragma once

#include <cstddef>
#include <optional>

namespace emmap::nif {

// An upper bound, in bytes, of the process-heap words plus the off-heap
// binary bytes that decoding `ext` (starting with the version byte 131)
// builds; nullopt when it is not a term this walker reads (a compressed
// term, a tag of a later OTP, a truncated input): the VM then decides.
// SIZE_MAX when the walk itself ran out of memory.
std::optional<std::size_t> decoded_bytes(const unsigned char* ext, std::size_t len) noexcept;

// For a compressed term (131, 80, UncompressedSize, zlib data), which this
// walker cannot read without inflating it: 16 bytes per uncompressed byte
// (the most any tag takes, remote pids, ports and references' node table
// entries left out). nullopt when it is not a compressed term.
std::optional<std::size_t> compressed_decoded_bytes(const unsigned char* ext, std::size_t len) noexcept;

// True when `bytes` could be allocated right now (one allocation, freed at
// once). Large sizes go to mmap, so a memory limit refuses them here
// instead of in the VM.
bool can_allocate(std::size_t bytes) noexcept;

}  // namespace emmap::nif
