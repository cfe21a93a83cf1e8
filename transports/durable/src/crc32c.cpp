// Compiled with -msse4.2 (CMakeLists.txt): the only file that uses the
// instruction, so nothing else needs the flag. check_crc32c_support() guards
// it at run time.

#include "courier/durable/crc32c.hpp"

#include <cstring>

#include <nmmintrin.h>

namespace courier::durable {

expected<void> check_crc32c_support() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("sse4.2"))
    return {errc::unimplemented,
            "the durable store needs a CPU with SSE4.2 (its crc32 "
            "instruction computes the records' CRC32C); this one has none"};
  return {};
}

std::uint32_t crc32c(const void* data, std::size_t size,
                     std::uint32_t crc) noexcept {
  auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t state = ~crc;
  while (size >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    state = _mm_crc32_u64(state, word);
    p += 8;
    size -= 8;
  }
  auto narrow = static_cast<std::uint32_t>(state);
  while (size > 0) {
    narrow = _mm_crc32_u8(narrow, *p++);
    --size;
  }
  return ~narrow;
}

} // namespace courier::durable
