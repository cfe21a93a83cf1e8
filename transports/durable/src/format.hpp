#pragma once

// The on-disk format of the store (docs/disk-format.md is the reference):
// segment headers, record framing and the bodies of each record type. All
// integers are little-endian. Pure functions; no I/O.

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "courier/durable/clock.hpp"

namespace courier::durable::format {

inline constexpr char segment_magic[8]
  = {'C', 'R', 'D', 'U', 'R', 'S', 'E', 'G'};
inline constexpr std::uint32_t format_version = 1;
inline constexpr std::size_t segment_header_size = 56;
inline constexpr std::size_t record_header_size = 24;
/// A record body larger than this is refused on write and is corruption
/// on read.
inline constexpr std::uint32_t max_record_body = 64u << 20;

inline constexpr std::uint32_t flag_compacted = 1;

struct segment_header {
  std::uint32_t flags = 0;
  std::uint64_t number = 0;
  /// The sequence of the segment's first record.
  std::uint64_t first_sequence = 1;
  /// Compacted segments: the first segment number they replace.
  std::uint64_t covers_from = 0;
  /// Message ids below this were used (compacted segments keep it, as the
  /// records that used them may be gone).
  std::uint64_t next_message_id = 1;
};

inline std::uint32_t load_u32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big)
    v = __builtin_bswap32(v);
  return v;
}

inline std::uint64_t load_u64(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big)
    v = __builtin_bswap64(v);
  return v;
}

std::string encode_segment_header(const segment_header& h);

/// Decodes the first segment_header_size bytes; nullopt if the magic,
/// version or CRC is wrong.
std::optional<segment_header> decode_segment_header(std::string_view bytes);

enum class record_type : std::uint8_t {
  message = 1,
  attempt = 2,
  remove = 3,
  dead = 4,
  replay = 5,
  dedup_table = 6,
  boot = 7,
  clock = 8,
};

/// Fills in the header of the `total` bytes at `record` (a header's room,
/// then the body): length, sequence, position, type, and the CRC32C over
/// bytes [4, total), i.e. everything after the CRC field.
void seal_record(char* record, std::size_t total, std::uint64_t sequence,
                 std::uint32_t batch_pos, record_type type);

/// Appends a record of `body` to `out` (seal_record).
void append_record(std::string& out, std::uint64_t sequence,
                   std::uint32_t batch_pos, record_type type,
                   std::string_view body);

struct record_view {
  std::uint64_t sequence = 0;
  std::uint32_t batch_pos = 0;
  record_type type{};
  std::string_view body;
  std::size_t total_size = 0;
};

/// Why a record could not be read at an offset.
enum class record_problem {
  none,
  truncated_header,
  bad_length,
  truncated_body,
  bad_crc,
  bad_type,
};

const char* to_string(record_problem p) noexcept;

/// Reads the record at the start of `bytes`.
record_problem read_record(std::string_view bytes, record_view& out);

// -- bodies -------------------------------------------------------------------

class writer {
public:
  explicit writer(std::string& out) : out_(out) {}
  void u8(std::uint8_t v) {
    out_.push_back(static_cast<char>(v));
  }
  void u32(std::uint32_t v) {
    if constexpr (std::endian::native == std::endian::big)
      v = __builtin_bswap32(v);
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void u64(std::uint64_t v) {
    if constexpr (std::endian::native == std::endian::big)
      v = __builtin_bswap64(v);
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void i64(std::int64_t v) {
    u64(static_cast<std::uint64_t>(v));
  }
  void bytes(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }
  void raw(const void* p, std::size_t n) {
    out_.append(static_cast<const char*>(p), n);
  }

private:
  std::string& out_;
};

/// Bounds-checked reads; after any overrun ok() is false and reads yield 0.
class reader {
public:
  explicit reader(std::string_view in) : in_(in) {}
  std::uint8_t u8() {
    if (!need(1))
      return 0;
    return static_cast<std::uint8_t>(in_[pos_++]);
  }
  std::uint32_t u32() {
    if (!need(4))
      return 0;
    pos_ += 4;
    return load_u32(in_.data() + pos_ - 4);
  }
  std::uint64_t u64() {
    if (!need(8))
      return 0;
    pos_ += 8;
    return load_u64(in_.data() + pos_ - 8);
  }
  std::int64_t i64() {
    return static_cast<std::int64_t>(u64());
  }
  std::string_view bytes() {
    auto n = u32();
    if (!need(n))
      return {};
    auto s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void raw(void* p, std::size_t n) {
    if (!need(n)) {
      std::memset(p, 0, n);
      return;
    }
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }
  bool ok() const {
    return ok_;
  }
  /// True when every read was in bounds and nothing is left over.
  bool done() const {
    return ok_ && pos_ == in_.size();
  }

private:
  bool need(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

/// A message record's body: appended, or its whole state in a compacted
/// segment. The strings point into bytes the caller keeps (decoding one
/// copies nothing).
struct message_view {
  std::uint64_t id = 0;
  std::string_view queue;
  std::uint64_t producer_id = 0;
  std::uint32_t producer_epoch = 0;
  std::uint64_t sequence = 0;
  std::uint8_t priority = 0;
  std::int64_t time_to_reach_queue_ns = 0;
  std::int64_t time_to_be_received_ns = 0;
  clock_reading stored_at;
  std::uint32_t attempts = 0;
  std::uint8_t dead_reason = 0;
  std::string_view dead_detail;
  std::int64_t died_wall_ns = 0;
  std::string_view payload;
};

void encode(std::string& out, const message_view& m);
bool decode(std::string_view in, message_view& m);

void encode_clock(writer& w, const clock_reading& c);
clock_reading decode_clock(reader& r);

} // namespace courier::durable::format
