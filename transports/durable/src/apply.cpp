// The state changes of durable records: applied once their batch is on
// disk (apply_locked), or undone when their batch hit a full disk
// (roll_back_locked). Recovery reads dead and replay records with the
// same functions.

#include "store_impl.hpp"

namespace courier::durable {

bool store::impl::read_dead(std::string_view body, message_state& m) {
  format::reader r{body};
  r.u64();
  m.reason = static_cast<dead_reason>(r.u8());
  m.detail = std::string{r.bytes()};
  m.died_wall_ns = r.i64();
  m.stage = message_stage::dead;
  return r.done();
}

bool store::impl::read_replay(std::string_view body, message_state& m) {
  format::reader r{body};
  r.u64();
  m.stored_at = format::decode_clock(r);
  m.attempts = 0;
  m.reason = dead_reason::none;
  m.detail.clear();
  m.stage = message_stage::queued;
  return r.done();
}

// -- applying durable entries -------------------------------------------------

void store::impl::apply_locked(entry& e) {
  using format::record_type;
  if (!e.has_record)
    return;
  if (e.type == record_type::message) {
    auto& m = *e.message;
    auto& q = queues_[m.queue];
    q.pending -= 1;
    q.bytes -= m.payload.size(); // index_locked adds it back
    m.segment = e.segment;
    m.record_bytes = e.record_bytes;
    segments_[e.segment].live_bytes += e.record_bytes;
    if (m.options.producer_id != 0) {
      dedup_.mark({m.options.producer_id, m.options.producer_epoch},
                  m.options.sequence);
      pending_dedup_.erase(
        {m.options.producer_id, m.options.producer_epoch, m.options.sequence});
    }
    auto [it, fresh] = messages_.emplace(m.id, std::move(m));
    (void)fresh;
    index_locked(it->second);
    return;
  }
  // The other records change a message that may be gone already.
  auto mi = messages_.find(e.id);
  if (mi == messages_.end())
    return;
  auto& m = mi->second;
  switch (e.type) {
    case record_type::remove: {
      if (m.stage == message_stage::dead)
        dead_.erase(m.id);
      else
        unindex_locked(m);
      total_messages_ -= 1;
      total_bytes_ -= m.payload.size();
      auto si = segments_.find(m.segment);
      if (si != segments_.end())
        si->second.live_bytes -= m.record_bytes;
      messages_.erase(mi);
      break;
    }
    case record_type::dead:
      unindex_locked(m);
      read_dead(e.body, m);
      m.busy = false;
      dead_.insert(m.id);
      break;
    case record_type::replay:
      read_replay(e.body, m);
      m.busy = false;
      dead_.erase(m.id);
      index_locked(m);
      break;
    default:
      break;
  }
}

void store::impl::roll_back_locked(entry& e) {
  using format::record_type;
  if (!e.has_record)
    return;
  if (e.type == record_type::message) {
    auto& m = *e.message;
    auto& q = queues_[m.queue];
    q.pending -= 1;
    q.bytes -= m.payload.size();
    total_messages_ -= 1;
    total_bytes_ -= m.payload.size();
    pending_dedup_.erase(
      {m.options.producer_id, m.options.producer_epoch, m.options.sequence});
    return;
  }
  auto mi = messages_.find(e.id);
  if (mi == messages_.end())
    return;
  auto& m = mi->second;
  switch (e.type) {
    case record_type::remove:
    case record_type::replay:
      m.busy = false;
      // A purged message was taken out of the claimable set.
      if (m.stage == message_stage::queued)
        enqueue_ready_locked(m);
      break;
    case record_type::dead:
      // Back in the queue; a later claim, expiry or failure retries.
      m.busy = false;
      if (m.stage == message_stage::claimed)
        --queues_[m.queue].in_flight;
      enqueue_ready_locked(m);
      break;
    default:
      break;
  }
}

} // namespace courier::durable
