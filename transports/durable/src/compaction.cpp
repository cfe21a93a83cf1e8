// Compaction: the live state of every sealed segment (messages still
// queued or dead, the de-duplication window, a clock reading) is written
// to one new segment that takes the number of the newest sealed one and
// replaces them all. Crash-safe at every step (docs/disk-format.md,
// "Compaction").

#include <algorithm>
#include <cstdio>
#include <tuple>

#include "courier/durable/crash_point.hpp"
#include "store_impl.hpp"

namespace courier::durable {

expected<void> store::impl::compact() {
  std::lock_guard compaction_guard{compaction_mu_};
  std::uint64_t from = 0;
  std::uint64_t upto = 0;
  std::vector<std::uint64_t> covered;
  // What each live message's record is to say, taken under mu_; the
  // records are read and rewritten without it. A change after this
  // snapshot has its own record in a later segment, which recovery reads
  // after this one.
  struct live_message {
    message_state state;
    record_location where;
    dead_info dead;
  };
  std::vector<live_message> live;
  std::string dedup;
  clock_reading now;
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
    messages_.for_each([&](std::uint64_t id, const message_state& m) {
      if (m.segment > upto)
        return;
      live_message l{m, locate_locked(id, m), {}};
      if (m.stage == message_stage::dead)
        if (auto d = dead_.find(id); d != dead_.end())
          l.dead = d->second;
      live.push_back(std::move(l));
    });
    dedup = dedup_.encode();
    now = clock_->now();
  }
  format::segment_header h;
  h.flags = format::flag_compacted;
  h.number = upto;
  h.first_sequence = 1;
  h.covers_from = from;
  {
    std::lock_guard guard{mu_};
    h.next_message_id = next_id_;
  }
  auto data = format::encode_segment_header(h);
  std::uint64_t seq = 1;
  std::string body;
  {
    format::writer w{body};
    format::encode_clock(w, now);
  }
  format::append_record(data, seq++, 0, format::record_type::clock, body);
  format::append_record(data, seq++, 1, format::record_type::dedup_table,
                        dedup);
  // (id, offset, bytes) of each rewritten record
  std::vector<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>> placed;
  placed.reserve(live.size());
  std::uint32_t pos = 2;
  std::string buffer;
  std::vector<record_location> where;
  constexpr std::size_t group = 1024;
  for (std::size_t i = 0; i < live.size(); i += group) {
    auto count = std::min(group, live.size() - i);
    where.clear();
    for (std::size_t j = 0; j < count; ++j)
      where.push_back(live[i + j].where);
    auto bodies = read_records(where, buffer);
    if (!bodies)
      return bodies.error();
    for (std::size_t j = 0; j < count; ++j) {
      auto& l = live[i + j];
      auto b = (*bodies)[j];
      b.stored_at
        = clock_reading{now.boot, l.state.stored_ns, l.state.stored_wall_ns};
      b.attempts = l.state.attempts;
      b.dead_reason = 0;
      b.dead_detail = {};
      b.died_wall_ns = 0;
      if (l.state.stage == message_stage::dead) {
        b.dead_reason = static_cast<std::uint8_t>(l.dead.reason);
        b.dead_detail = l.dead.detail;
        b.died_wall_ns = l.dead.died_wall_ns;
      }
      body.clear();
      format::encode(body, b);
      auto before = data.size();
      format::append_record(data, seq++, pos++, format::record_type::message,
                            body);
      placed.emplace_back(b.id, before, data.size() - before);
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
  std::shared_ptr<file> written;
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
    // Kept open across the rename: the payloads are read from it.
    written = std::move(*f);
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
  seg = segment_info{data.size(), 0, true, written};
  // The number may be the one recent_bytes_ came from (an active segment
  // sealed by a rotation whose batch then failed): its offsets are void.
  if (recent_segment_ <= upto) {
    recent_bytes_.clear();
    recent_segment_ = 0;
  }
  for (auto [id, offset, bytes] : placed) {
    auto* m = messages_.find(id);
    if (m == nullptr)
      continue;
    m->segment = upto;
    m->offset = offset;
    m->record_bytes = static_cast<std::uint32_t>(bytes);
    seg.live_bytes += bytes;
  }
  return {};
}

} // namespace courier::durable
