#include "format.hpp"

#include "courier/durable/crc32c.hpp"

namespace courier::durable::format {

namespace {

void store_u32(char* p, std::uint32_t v) {
  if constexpr (std::endian::native == std::endian::big)
    v = __builtin_bswap32(v);
  std::memcpy(p, &v, sizeof v);
}

void store_u64(char* p, std::uint64_t v) {
  if constexpr (std::endian::native == std::endian::big)
    v = __builtin_bswap64(v);
  std::memcpy(p, &v, sizeof v);
}

} // namespace

std::string encode_segment_header(const segment_header& h) {
  std::string out;
  writer w{out};
  w.raw(segment_magic, sizeof(segment_magic));
  w.u32(format_version);
  w.u32(h.flags);
  w.u64(h.number);
  w.u64(h.first_sequence);
  w.u64(h.covers_from);
  w.u64(h.next_message_id);
  w.u32(0);
  w.u32(crc32c(out.data(), segment_header_size - 4));
  return out;
}

std::optional<segment_header> decode_segment_header(std::string_view b) {
  if (b.size() < segment_header_size)
    return std::nullopt;
  if (std::memcmp(b.data(), segment_magic, sizeof(segment_magic)) != 0)
    return std::nullopt;
  if (load_u32(b.data() + segment_header_size - 4)
      != crc32c(b.data(), segment_header_size - 4))
    return std::nullopt;
  if (load_u32(b.data() + 8) != format_version)
    return std::nullopt;
  segment_header h;
  h.flags = load_u32(b.data() + 12);
  h.number = load_u64(b.data() + 16);
  h.first_sequence = load_u64(b.data() + 24);
  h.covers_from = load_u64(b.data() + 32);
  h.next_message_id = load_u64(b.data() + 40);
  return h;
}

void seal_record(char* record, std::size_t total, std::uint64_t sequence,
                 std::uint32_t batch_pos, record_type type) {
  store_u32(record + 4, static_cast<std::uint32_t>(total - record_header_size));
  store_u64(record + 8, sequence);
  store_u32(record + 16, batch_pos);
  record[20] = static_cast<char>(type);
  record[21] = record[22] = record[23] = 0;
  store_u32(record, crc32c(record + 4, total - 4));
}

void append_record(std::string& out, std::uint64_t sequence,
                   std::uint32_t batch_pos, record_type type,
                   std::string_view body) {
  auto start = out.size();
  out.resize(start + record_header_size);
  out.append(body);
  seal_record(out.data() + start, record_header_size + body.size(), sequence,
              batch_pos, type);
}

const char* to_string(record_problem p) noexcept {
  switch (p) {
    case record_problem::none:
      return "no problem";
    case record_problem::truncated_header:
      return "the file ends inside a record header";
    case record_problem::bad_length:
      return "the record length is impossible";
    case record_problem::truncated_body:
      return "the file ends inside a record body";
    case record_problem::bad_crc:
      return "the record's CRC32C does not match";
    case record_problem::bad_type:
      return "unknown record type (with a valid CRC)";
  }
  return "?";
}

record_problem read_record(std::string_view b, record_view& out) {
  if (b.size() < record_header_size)
    return record_problem::truncated_header;
  auto length = load_u32(b.data() + 4);
  if (length > max_record_body)
    return record_problem::bad_length;
  if (b.size() - record_header_size < length)
    return record_problem::truncated_body;
  auto crc = crc32c(b.data() + 4, record_header_size - 4 + length);
  if (crc != load_u32(b.data()))
    return record_problem::bad_crc;
  auto type = static_cast<std::uint8_t>(b[20]);
  if (type < 1 || type > 8)
    return record_problem::bad_type;
  out.sequence = load_u64(b.data() + 8);
  out.batch_pos = load_u32(b.data() + 16);
  out.type = static_cast<record_type>(type);
  out.body = b.substr(record_header_size, length);
  out.total_size = record_header_size + length;
  return record_problem::none;
}

void encode_clock(writer& w, const clock_reading& c) {
  w.raw(c.boot.data(), c.boot.size());
  w.i64(c.boottime_ns);
  w.i64(c.wall_ns);
}

clock_reading decode_clock(reader& r) {
  clock_reading c;
  r.raw(c.boot.data(), c.boot.size());
  c.boottime_ns = r.i64();
  c.wall_ns = r.i64();
  return c;
}

void encode(std::string& out, const message_view& m) {
  // One resize, then stores at known offsets (the layout of decode()).
  auto start = out.size();
  out.resize(start + 102 + m.queue.size() + m.dead_detail.size()
             + m.payload.size());
  char* p = out.data() + start;
  auto put_bytes = [&](std::string_view s) {
    store_u32(p, static_cast<std::uint32_t>(s.size()));
    if (!s.empty())
      std::memcpy(p + 4, s.data(), s.size());
    p += 4 + s.size();
  };
  store_u64(p, m.id);
  p += 8;
  put_bytes(m.queue);
  store_u64(p, m.producer_id);
  store_u32(p + 8, m.producer_epoch);
  store_u64(p + 12, m.sequence);
  p[20] = static_cast<char>(m.priority);
  store_u64(p + 21, static_cast<std::uint64_t>(m.time_to_reach_queue_ns));
  store_u64(p + 29, static_cast<std::uint64_t>(m.time_to_be_received_ns));
  std::memcpy(p + 37, m.stored_at.boot.data(), m.stored_at.boot.size());
  store_u64(p + 53, static_cast<std::uint64_t>(m.stored_at.boottime_ns));
  store_u64(p + 61, static_cast<std::uint64_t>(m.stored_at.wall_ns));
  store_u32(p + 69, m.attempts);
  p[73] = static_cast<char>(m.dead_reason);
  p += 74;
  put_bytes(m.dead_detail);
  store_u64(p, static_cast<std::uint64_t>(m.died_wall_ns));
  p += 8;
  put_bytes(m.payload);
}

bool decode(std::string_view in, message_view& m) {
  // The hot path of recovery: the fixed fields are read at known offsets
  // after one bounds check per variable-length field (the layout is
  // docs/disk-format.md's).
  constexpr std::size_t fixed = 8 + 8 + 4 + 8 + 1 + 8 + 8 + 16 + 8 + 8 + 4 + 1;
  const char* p = in.data();
  std::size_t left = in.size();
  auto take_bytes = [&](std::string_view& out) {
    if (left < 4)
      return false;
    auto n = load_u32(p);
    if (left - 4 < n)
      return false;
    out = std::string_view{p + 4, n};
    p += 4 + n;
    left -= 4 + std::size_t{n};
    return true;
  };
  if (left < 8)
    return false;
  m.id = load_u64(p);
  p += 8;
  left -= 8;
  if (!take_bytes(m.queue) || left < fixed - 8)
    return false;
  m.producer_id = load_u64(p);
  m.producer_epoch = load_u32(p + 8);
  m.sequence = load_u64(p + 12);
  m.priority = static_cast<std::uint8_t>(p[20]);
  m.time_to_reach_queue_ns = static_cast<std::int64_t>(load_u64(p + 21));
  m.time_to_be_received_ns = static_cast<std::int64_t>(load_u64(p + 29));
  std::memcpy(m.stored_at.boot.data(), p + 37, m.stored_at.boot.size());
  m.stored_at.boottime_ns = static_cast<std::int64_t>(load_u64(p + 53));
  m.stored_at.wall_ns = static_cast<std::int64_t>(load_u64(p + 61));
  m.attempts = load_u32(p + 69);
  m.dead_reason = static_cast<std::uint8_t>(p[73]);
  p += fixed - 8;
  left -= fixed - 8;
  if (!take_bytes(m.dead_detail) || left < 8)
    return false;
  m.died_wall_ns = static_cast<std::int64_t>(load_u64(p));
  p += 8;
  left -= 8;
  return take_bytes(m.payload) && left == 0 && m.priority <= 7;
}

} // namespace courier::durable::format
