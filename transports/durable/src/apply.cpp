// The state changes of durable records: applied once their batch is on
// disk (apply_locked), or undone when their batch hit a full disk
// (roll_back_locked). Recovery reads dead and replay records with the
// same functions.

#include "store_impl.hpp"

namespace courier::durable {

bool store::impl::read_dead(std::string_view body, dead_info& d) {
  format::reader r{body};
  r.u64();
  d.reason = static_cast<dead_reason>(r.u8());
  d.detail = std::string{r.bytes()};
  d.died_wall_ns = r.i64();
  return r.done();
}

bool store::impl::read_replay(std::string_view body, clock_reading& at) {
  format::reader r{body};
  r.u64();
  at = format::decode_clock(r);
  return r.done();
}

// -- applying durable entries -------------------------------------------------

void store::impl::apply_locked(entry& e) {
  using format::record_type;
  if (!e.has_record)
    return;
  if (e.type == record_type::message) {
    auto& q = queues_[e.message.queue];
    q.pending -= 1;
    q.bytes -= e.message.payload_bytes; // index_locked adds it back
    auto& m = messages_.insert(e.id);
    m = e.message;
    m.segment = e.segment;
    m.offset = e.offset;
    m.record_bytes = static_cast<std::uint32_t>(e.record_bytes);
    segments_[e.segment].live_bytes += e.record_bytes;
    if (e.producer_id != 0) {
      dedup_.mark({e.producer_id, e.producer_epoch}, e.sequence);
      pending_dedup_.erase({e.producer_id, e.producer_epoch, e.sequence});
    }
    index_locked(e.id, m, true);
    return;
  }
  // The other records change a message that may be gone already.
  auto* found = messages_.find(e.id);
  if (found == nullptr)
    return;
  auto& m = *found;
  switch (e.type) {
    case record_type::remove: {
      if (m.stage == message_stage::dead)
        dead_.erase(e.id);
      else
        unindex_locked(m);
      total_messages_ -= 1;
      total_bytes_ -= m.payload_bytes;
      auto si = segments_.find(m.segment);
      if (si != segments_.end())
        si->second.live_bytes -= m.record_bytes;
      messages_.erase(e.id);
      break;
    }
    case record_type::dead:
      unindex_locked(m);
      read_dead(e.body, dead_[e.id]);
      m.stage = message_stage::dead;
      m.busy = false;
      break;
    case record_type::replay: {
      clock_reading at;
      read_replay(e.body, at);
      m.stored_ns = at.boottime_ns;
      m.stored_wall_ns = at.wall_ns;
      m.attempts = 0;
      m.stage = message_stage::queued;
      m.busy = false;
      dead_.erase(e.id);
      index_locked(e.id, m, false);
      break;
    }
    default:
      break;
  }
}

void store::impl::roll_back_locked(entry& e) {
  using format::record_type;
  if (!e.has_record)
    return;
  if (e.type == record_type::message) {
    auto& q = queues_[e.message.queue];
    q.pending -= 1;
    q.bytes -= e.message.payload_bytes;
    total_messages_ -= 1;
    total_bytes_ -= e.message.payload_bytes;
    pending_dedup_.erase({e.producer_id, e.producer_epoch, e.sequence});
    return;
  }
  auto* found = messages_.find(e.id);
  if (found == nullptr)
    return;
  auto& m = *found;
  switch (e.type) {
    case record_type::remove:
    case record_type::replay:
      m.busy = false;
      // A purged message was taken out of the claimable set.
      if (m.stage == message_stage::queued)
        enqueue_ready_locked(e.id, m);
      break;
    case record_type::dead:
      // Back in the queue; a later claim, expiry or failure retries.
      m.busy = false;
      if (m.stage == message_stage::claimed)
        --queues_[m.queue].in_flight;
      enqueue_ready_locked(e.id, m);
      break;
    default:
      break;
  }
}

} // namespace courier::durable
