// CRC32C (Castagnoli): the SSE4.2 instruction where the CPU has it,
// checked once at load, else a table. Used by the persistent queue.
#pragma once

#include <cstddef>
#include <cstdint>

namespace emmap {

// Continues `crc` over [data, data+len); start with 0.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t len) noexcept;

// Which implementation runs here: "sse4.2" or "table".
const char* crc32c_impl() noexcept;

}  // namespace emmap
