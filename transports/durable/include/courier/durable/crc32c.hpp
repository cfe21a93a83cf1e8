#pragma once

// CRC32C (Castagnoli), computed with the CPU's SSE4.2 crc32 instruction.

#include <cstddef>
#include <cstdint>

#include "courier/error.hpp"

namespace courier::durable {

/// Returns ok when this CPU has the SSE4.2 crc32 instruction the store
/// needs, else `unimplemented` with a sentence saying so. The store checks
/// it on open; crc32c() must not be called where it fails.
[[nodiscard]] expected<void> check_crc32c_support();

/// Extends `crc` (0 to start) with `size` bytes at `data`: the CRC32C of
/// the concatenation, with the usual pre- and post-inversion, so
/// crc32c("123456789", 9) == 0xE3069283.
///
/// Thread safety: a pure function.
std::uint32_t crc32c(const void* data, std::size_t size,
                     std::uint32_t crc = 0) noexcept;

} // namespace courier::durable
