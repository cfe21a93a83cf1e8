// Reading messages back: the store keeps where each message record is
// (message_table.hpp) and reads the record when a caller wants the
// payload, from the bytes committed lately if they still hold it
// (recent_bytes_), else from its segment file, outside the store's mutex.

#include <cstring>

#include "store_impl.hpp"

namespace courier::durable {

store::impl::record_location
store::impl::locate_locked(std::uint64_t id, const message_state& m) const {
  record_location at;
  at.id = id;
  at.segment = m.segment;
  at.offset = m.offset;
  at.bytes = m.record_bytes;
  if (auto si = segments_.find(m.segment); si != segments_.end())
    at.f = si->second.f;
  return at;
}

void store::impl::fill_recent_locked(std::vector<record_location>& where,
                                     std::string& buffer) const {
  std::uint64_t total = 0;
  for (auto& w : where)
    total += w.bytes;
  buffer.resize(total);
  std::uint64_t at = 0;
  for (auto& w : where) {
    if (w.segment == recent_segment_ && w.offset >= recent_at_
        && w.offset + w.bytes <= recent_at_ + recent_bytes_.size()) {
      std::memcpy(buffer.data() + at,
                  recent_bytes_.data() + (w.offset - recent_at_), w.bytes);
      w.filled = true;
    }
    at += w.bytes;
  }
}

void store::impl::remember_recent_locked(std::uint64_t segment,
                                         std::uint64_t offset,
                                         std::string_view bytes) {
  constexpr std::size_t keep = 1u << 20;
  if (segment != recent_segment_
      || offset != recent_at_ + recent_bytes_.size()) {
    recent_bytes_.clear();
    recent_segment_ = segment;
    recent_at_ = offset;
  }
  recent_bytes_.append(bytes);
  if (recent_bytes_.size() > 2 * keep) {
    auto drop = recent_bytes_.size() - keep;
    recent_bytes_.erase(0, drop);
    recent_at_ += drop;
  }
}

expected<std::vector<format::message_view>>
store::impl::read_records(const std::vector<record_location>& where,
                          std::string& buffer) const {
  // Records next to each other in a segment (a queue's messages mostly
  // are) come in with one read.
  constexpr std::uint64_t max_read = 1u << 20;
  std::vector<std::uint64_t> starts; // offset of each record in buffer
  starts.reserve(where.size());
  std::uint64_t total = 0;
  for (auto& w : where) {
    starts.push_back(total);
    total += w.bytes;
  }
  buffer.resize(total); // keeps what fill_recent_locked put there
  auto failed = [&](const record_location& w, const std::string& why) {
    return error{errc::data_loss, "the durable store in " + opt_.directory
                                    + " cannot read message "
                                    + std::to_string(w.id) + " (segment "
                                    + std::to_string(w.segment) + ", offset "
                                    + std::to_string(w.offset) + "): " + why};
  };
  for (std::size_t i = 0; i < where.size();) {
    if (where[i].filled) {
      ++i;
      continue;
    }
    auto j = i + 1;
    auto span = std::uint64_t{where[i].bytes};
    while (j < where.size() && !where[j].filled && where[j].f == where[i].f
           && where[j].offset == where[i].offset + span
           && span + where[j].bytes <= max_read) {
      span += where[j].bytes;
      ++j;
    }
    if (!where[i].f)
      return failed(where[i], "its segment is not open");
    auto got
      = where[i].f->read_at(where[i].offset, buffer.data() + starts[i], span);
    if (!got)
      return failed(where[i], got.error().message());
    if (*got != span)
      return failed(where[i], "the segment ends before the record");
    i = j;
  }
  std::vector<format::message_view> out(where.size());
  for (std::size_t i = 0; i < where.size(); ++i) {
    format::record_view rv;
    auto problem = format::read_record(
      std::string_view{buffer}.substr(starts[i], where[i].bytes), rv);
    if (problem != format::record_problem::none)
      return failed(where[i], format::to_string(problem));
    if (rv.type != format::record_type::message
        || rv.total_size != where[i].bytes || !format::decode(rv.body, out[i])
        || out[i].id != where[i].id)
      return failed(where[i], "the record there is not this message's");
  }
  return out;
}

stored_message store::impl::copy_out(std::uint64_t id, const message_state& m,
                                     const format::message_view& body,
                                     std::int64_t now) const {
  stored_message out;
  out.id = id;
  out.queue = queues_[m.queue].name;
  out.payload = body.payload;
  out.options.producer_id = body.producer_id;
  out.options.producer_epoch = body.producer_epoch;
  out.options.sequence = body.sequence;
  out.options.priority = m.priority;
  out.options.time_to_reach_queue = std::chrono::nanoseconds{m.reach_ns};
  out.options.time_to_be_received = std::chrono::nanoseconds{m.receive_ns};
  out.attempts = m.attempts;
  out.stored_wall_ns = m.stored_wall_ns;
  out.age
    = std::chrono::nanoseconds{std::max<std::int64_t>(0, now - m.stored_ns)};
  return out;
}

std::vector<stored_message>
store::impl::read_out(const std::vector<std::uint64_t>& ids,
                      const std::vector<record_location>& where,
                      const std::vector<message_state>& states) const {
  std::vector<stored_message> out;
  auto now = clock_->now().boottime_ns;
  std::string buffer;
  // One message at a time after a failed read, so that one record that
  // cannot be read leaves out that message only.
  auto bodies = read_records(where, buffer);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (bodies) {
      out.push_back(copy_out(ids[i], states[i], (*bodies)[i], now));
      continue;
    }
    std::string one;
    if (auto body = read_records({where[i]}, one))
      out.push_back(copy_out(ids[i], states[i], (*body)[0], now));
  }
  return out;
}

} // namespace courier::durable
