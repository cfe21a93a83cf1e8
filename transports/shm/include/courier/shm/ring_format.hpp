#pragma once

// The byte layout of a ring segment, as constants. The prose version, with
// the rules a consumer enforces, is transports/shm/ring-format.md. Both peers
// run on the same host, so every integer is in the host's byte order.

#include <array>
#include <cstddef>
#include <cstdint>

namespace courier::shm::format {

/// The first 8 bytes of every segment: "COURSHM" and a NUL.
inline constexpr std::array<unsigned char, 8> magic
  = {'C', 'O', 'U', 'R', 'S', 'H', 'M', '\0'};

/// Bumped on any incompatible change of this layout.
inline constexpr std::uint32_t version = 1;

/// Bytes before the data area; the data area starts page-aligned.
inline constexpr std::size_t header_size = 4096;

// Offsets into the header. Each shared atomic word has its own 128-byte
// block (two cache lines, so adjacent-line prefetching cannot make the two
// peers' words interfere).
inline constexpr std::size_t magic_offset = 0;               // 8 bytes
inline constexpr std::size_t version_offset = 8;             // uint32
inline constexpr std::size_t header_size_offset = 12;        // uint32
inline constexpr std::size_t capacity_offset = 16;           // uint64
inline constexpr std::size_t write_position_offset = 128;    // atomic uint64
inline constexpr std::size_t read_position_offset = 256;     // atomic uint64
inline constexpr std::size_t consumer_sleeping_offset = 384; // atomic uint32
inline constexpr std::size_t producer_sleeping_offset = 512; // atomic uint32
inline constexpr std::size_t producer_closed_offset = 640;   // atomic uint32
inline constexpr std::size_t consumer_closed_offset = 768;   // atomic uint32

/// Every record starts with a 16-byte header {uint32 length, uint32 flags,
/// 8 reserved bytes} and is padded to a multiple of 16 bytes, so payloads
/// are 16-byte aligned (memcpy into malloc'd buffers then never hits the
/// slow 4 KiB-aliasing case of `rep movsb`, see ring-format.md).
inline constexpr std::size_t record_header_size = 16;
inline constexpr std::size_t record_alignment = 16;

/// Flags of a record header; all other bits must be zero.
inline constexpr std::uint32_t flag_first = 1; // first fragment of a message
inline constexpr std::uint32_t flag_last = 2;  // last fragment of a message
inline constexpr std::uint32_t flag_wrap = 4;  // padding up to the ring's end
inline constexpr std::uint32_t flag_abort = 8; // drop the partial message
inline constexpr std::uint32_t known_flags = 15;

/// Bytes of a record (header included, padding included) never exceed a
/// quarter of the capacity.
constexpr std::size_t max_record_size(std::size_t capacity) noexcept {
  return capacity / 4;
}

/// The largest fragment payload a ring of `capacity` bytes carries.
constexpr std::size_t max_fragment_size(std::size_t capacity) noexcept {
  return max_record_size(capacity) - record_header_size;
}

/// Bytes a record with `length` payload bytes occupies in the ring.
constexpr std::size_t record_size(std::size_t length) noexcept {
  return record_header_size
         + ((length + record_alignment - 1) & ~(record_alignment - 1));
}

} // namespace courier::shm::format
