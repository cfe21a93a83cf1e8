// Compaction: the live state of every sealed segment (messages still
// queued or dead, the de-duplication window, a clock reading) is written
// to one new segment that takes the number of the newest sealed one and
// replaces them all. Crash-safe at every step (docs/disk-format.md,
// "Compaction").

#include <algorithm>
#include <cstdio>

#include "courier/durable/crash_point.hpp"
#include "store_impl.hpp"

namespace courier::durable {

expected<void> store::impl::compact() {
  std::lock_guard compaction_guard{compaction_mu_};
  std::uint64_t from = 0;
  std::uint64_t upto = 0;
  std::string data;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> placed; // id, bytes
  std::vector<std::uint64_t> covered;
  {
    std::lock_guard guard{mu_};
    if (auto why = refusal_locked())
      return *why;
    for (auto& [n, s] : segments_)
      if (n < active_number_)
        covered.push_back(n);
    if (covered.empty()
        || (covered.size() == 1 && segments_[covered[0]].compacted))
      return {};
    from = covered.front();
    upto = covered.back();
    format::segment_header h;
    h.flags = format::flag_compacted;
    h.number = upto;
    h.first_sequence = 1;
    h.covers_from = from;
    h.next_message_id = next_id_;
    data = format::encode_segment_header(h);
    std::uint64_t seq = 1;
    std::string body;
    {
      format::writer w{body};
      format::encode_clock(w, clock_->now());
    }
    format::append_record(data, seq++, 0, format::record_type::clock, body);
    format::append_record(data, seq++, 1, format::record_type::dedup_table,
                          dedup_.encode());
    std::vector<const message_state*> live;
    for (auto& [id, m] : messages_)
      if (m.segment <= upto)
        live.push_back(&m);
    std::sort(live.begin(), live.end(),
              [](auto* a, auto* b) { return a->id < b->id; });
    std::uint32_t pos = 2;
    for (auto* m : live) {
      format::message_body b;
      b.id = m->id;
      b.queue = m->queue;
      b.producer_id = m->options.producer_id;
      b.producer_epoch = m->options.producer_epoch;
      b.sequence = m->options.sequence;
      b.priority = m->options.priority;
      b.time_to_reach_queue_ns = m->options.time_to_reach_queue.count();
      b.time_to_be_received_ns = m->options.time_to_be_received.count();
      b.stored_at = m->stored_at;
      b.attempts = m->attempts;
      if (m->stage == message_stage::dead) {
        b.dead_reason = static_cast<std::uint8_t>(m->reason);
        b.dead_detail = m->detail;
        b.died_wall_ns = m->died_wall_ns;
      }
      b.payload = m->payload;
      body.clear();
      format::encode(body, b);
      auto before = data.size();
      format::append_record(data, seq++, pos++, format::record_type::message,
                            body);
      placed.emplace_back(m->id, data.size() - before);
    }
  }
  char name[48];
  std::snprintf(name, sizeof(name), "/compact-%016llx.tmp",
                static_cast<unsigned long long>(upto));
  auto tmp = opt_.directory + name;
  auto give_up = [&](error why) -> expected<void> {
    (void)fs_->remove(tmp);
    return why;
  };
  {
    auto f = fs_->open(tmp, true);
    if (!f)
      return give_up(f.error());
    if (auto ok = (*f)->truncate(0); !ok)
      return give_up(ok.error());
    if (auto ok = (*f)->write_at(0, data.data(), data.size()); !ok)
      return give_up(ok.error());
    if (auto ok = (*f)->sync(); !ok)
      return give_up(ok.error());
  }
  if (auto ok = fs_->rename(tmp, segment_path(upto)); !ok)
    return give_up(ok.error());
  crash_point("mid_compaction");
  auto fatal = [&](error why) -> expected<void> {
    std::vector<entry> none;
    stop_store(why, none);
    return error{errc::data_loss, why.message()};
  };
  if (auto ok = fs_->sync_dir(opt_.directory); !ok)
    return fatal(ok.error());
  for (auto n : covered)
    if (n != upto)
      if (auto ok = fs_->remove(segment_path(n)); !ok)
        return fatal(ok.error());
  if (auto ok = fs_->sync_dir(opt_.directory); !ok)
    return fatal(ok.error());
  std::lock_guard guard{mu_};
  for (auto n : covered)
    segments_.erase(n);
  auto& seg = segments_[upto];
  seg = segment_info{data.size(), 0, true};
  for (auto [id, bytes] : placed) {
    auto mi = messages_.find(id);
    if (mi == messages_.end())
      continue;
    mi->second.segment = upto;
    mi->second.record_bytes = bytes;
    seg.live_bytes += bytes;
  }
  return {};
}

} // namespace courier::durable
