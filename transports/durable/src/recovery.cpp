// Opening a store: find the segments, finish or undo an interrupted
// compaction, replay every record in order, cut a torn tail off the last
// segment, refuse anything else that is damaged (docs/disk-format.md,
// "Recovery").

#include <algorithm>
#include <cstdio>
#include <map>

#include "courier/durable/crc32c.hpp"
#include "store_impl.hpp"

namespace courier::durable {

namespace {

using format::load_u32;
using format::load_u64;

std::optional<std::uint64_t> segment_number(const std::string& name) {
  // seg-<16 hex digits>.log
  if (name.size() != 24 || name.compare(0, 4, "seg-") != 0
      || name.compare(20, 4, ".log") != 0)
    return std::nullopt;
  std::uint64_t n = 0;
  for (std::size_t i = 4; i < 20; ++i) {
    char c = name[i];
    int v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                   : -1;
    if (v < 0)
      return std::nullopt;
    n = n << 4 | static_cast<std::uint64_t>(v);
  }
  return n;
}

/// After a bad record at `bad` (which should have had sequence
/// `expected`), is there a valid record of a later batch? Batches are
/// written one at a time, each after the previous one's fsync, so such a
/// record proves the bad one was durable once: corruption, not a torn
/// write. Returns its offset.
std::optional<std::size_t> later_batch(std::string_view data, std::size_t bad,
                                       std::uint64_t expected) {
  for (std::size_t off = bad + 1;
       off + format::record_header_size <= data.size(); ++off) {
    auto seq = load_u64(data.data() + off + 8);
    if (seq <= expected || seq - expected > (std::uint64_t{1} << 40))
      continue;
    auto pos = load_u32(data.data() + off + 16);
    if (pos > seq)
      continue;
    format::record_view rv;
    if (format::read_record(data.substr(off), rv)
        != format::record_problem::none)
      continue;
    if (seq - pos > expected)
      return off;
  }
  return std::nullopt;
}

struct boot_frame {
  boot_id next{};
  std::int64_t delta = 0;
};

} // namespace

expected<void> store::impl::recover() {
  const auto& dir = opt_.directory;
  if (auto ok = fs_->make_dir(dir); !ok)
    return ok.error();
  auto held = fs_->lock(dir);
  if (!held)
    return held.error();
  lock_ = std::move(*held);
  auto names = fs_->list(dir);
  if (!names)
    return names.error();
  bool dir_changed = false;
  std::map<std::uint64_t, std::string> paths;
  for (auto& name : *names) {
    if (name.starts_with("compact-") && name.ends_with(".tmp")) {
      // A compaction that did not reach its rename: never used.
      if (auto ok = fs_->remove(dir + "/" + name); !ok)
        return ok.error();
      dir_changed = true;
    } else if (auto n = segment_number(name)) {
      paths[*n] = dir + "/" + name;
    }
  }

  struct seg_file {
    std::unique_ptr<file> f;
    std::uint64_t size = 0;
    std::optional<format::segment_header> header;
  };
  std::map<std::uint64_t, seg_file> segs;
  for (auto& [n, path] : paths) {
    auto f = fs_->open(path, false);
    if (!f)
      return f.error();
    auto size = (*f)->size();
    if (!size)
      return size.error();
    std::string head(format::segment_header_size, '\0');
    auto got = (*f)->read_at(0, head.data(), head.size());
    if (!got)
      return got.error();
    head.resize(*got);
    seg_file s;
    s.f = std::move(*f);
    s.size = *size;
    s.header = format::decode_segment_header(head);
    segs.emplace(n, std::move(s));
  }
  // A compacted segment replaces the ones it covers; if they are still
  // here, the compaction stopped between its rename and their removal.
  for (auto& [n, s] : segs) {
    if (!s.header || !(s.header->flags & format::flag_compacted))
      continue;
    for (auto i = segs.begin(); i != segs.end() && i->first < n;) {
      if (i->first >= s.header->covers_from) {
        i->second.f.reset();
        if (auto ok = fs_->remove(paths[i->first]); !ok)
          return ok.error();
        dir_changed = true;
        i = segs.erase(i);
      } else {
        ++i;
      }
    }
  }
  if (dir_changed)
    if (auto ok = fs_->sync_dir(dir); !ok)
      return ok.error();

  std::uint64_t total_bytes = 0;
  for (auto& [n, s] : segs)
    total_bytes += s.size;
  // Message records take ~130 bytes and more.
  messages_.reserve(static_cast<std::size_t>(total_bytes / 128));

  std::map<boot_id, boot_frame> frames;
  std::optional<clock_reading> last_clock;
  auto saw_clock = [&](const clock_reading& c) {
    if (!last_clock || last_clock->boot != c.boot
        || c.boottime_ns > last_clock->boottime_ns)
      last_clock = c;
  };

  auto corrupt
    = [&](std::uint64_t n, std::uint64_t offset, const std::string& why) {
        return error{errc::data_loss,
                     "the durable store in " + dir + " is damaged: " + paths[n]
                       + " at offset " + std::to_string(offset) + ": " + why
                       + "; it does not open (no record is ever skipped); see "
                         "docs/operations.md, \"When the store stops\""};
      };

  std::optional<std::uint64_t> active;
  std::string data;
  for (auto it = segs.begin(); it != segs.end(); ++it) {
    auto n = it->first;
    auto& s = it->second;
    bool last = std::next(it) == segs.end();
    if (!s.header) {
      if (last && s.size <= format::segment_header_size) {
        // A segment whose creation a crash interrupted: it never held
        // a record.
        s.f.reset();
        if (auto ok = fs_->remove(paths[n]); !ok)
          return ok.error();
        if (auto ok = fs_->sync_dir(dir); !ok)
          return ok.error();
        break;
      }
      return corrupt(n, 0, "the segment header is damaged");
    }
    if (s.header->number != n)
      return corrupt(
        n, 16, "the header names segment " + std::to_string(s.header->number));
    // One buffer for every segment: its pages are faulted in once.
    data.resize(s.size);
    auto got = s.f->read_at(0, data.data(), data.size());
    if (!got)
      return got.error();
    data.resize(*got);
    ++report_.segments;
    next_id_ = std::max(next_id_, s.header->next_message_id);
    auto expected_seq = s.header->first_sequence;
    std::size_t offset = format::segment_header_size;
    while (offset < data.size()) {
      format::record_view rv;
      auto problem
        = format::read_record(std::string_view{data}.substr(offset), rv);
      std::string why = format::to_string(problem);
      if (problem == format::record_problem::none
          && rv.sequence != expected_seq) {
        problem = format::record_problem::bad_crc;
        why = "record sequence " + std::to_string(rv.sequence) + " where "
              + std::to_string(expected_seq) + " belongs";
      }
      if (problem != format::record_problem::none) {
        if (!last)
          return corrupt(n, offset, why + " (in a sealed segment)");
        if (auto later = later_batch(data, offset, expected_seq))
          return corrupt(n, offset,
                         why
                           + "; a record of a later batch follows at "
                             "offset "
                           + std::to_string(*later));
        // A torn tail: the last batch never finished its fsync.
        report_.truncated_bytes = data.size() - offset;
        report_.truncated_file = paths[n];
        report_.truncated_at = offset;
        if (auto ok = s.f->truncate(offset); !ok)
          return ok.error();
        if (auto ok = s.f->sync(); !ok)
          return ok.error();
        data.resize(offset);
        break;
      }
      using format::record_type;
      format::reader r{rv.body};
      bool ok = true;
      switch (rv.type) {
        case record_type::message: {
          format::message_body b;
          if (!format::decode(rv.body, b)) {
            ok = false;
            break;
          }
          auto& m = messages_[b.id];
          m = message_state{};
          m.id = b.id;
          m.queue = std::move(b.queue);
          m.payload = std::move(b.payload);
          m.options.producer_id = b.producer_id;
          m.options.producer_epoch = b.producer_epoch;
          m.options.sequence = b.sequence;
          m.options.priority = b.priority;
          m.options.time_to_reach_queue
            = std::chrono::nanoseconds{b.time_to_reach_queue_ns};
          m.options.time_to_be_received
            = std::chrono::nanoseconds{b.time_to_be_received_ns};
          m.stored_at = b.stored_at;
          m.attempts = b.attempts;
          m.reason = static_cast<dead_reason>(b.dead_reason);
          m.stage
            = b.dead_reason != 0 ? message_stage::dead : message_stage::queued;
          m.detail = std::move(b.dead_detail);
          m.died_wall_ns = b.died_wall_ns;
          m.segment = n;
          m.record_bytes = rv.total_size;
          saw_clock(m.stored_at);
          next_id_ = std::max(next_id_, m.id + 1);
          if (m.options.producer_id != 0)
            dedup_.mark({m.options.producer_id, m.options.producer_epoch},
                        m.options.sequence);
          break;
        }
        case record_type::attempt: {
          auto id = r.u64();
          auto count = r.u32();
          ok = r.done();
          if (auto mi = messages_.find(id); ok && mi != messages_.end())
            mi->second.attempts = std::max(mi->second.attempts, count);
          break;
        }
        case record_type::remove: {
          auto id = r.u64();
          ok = r.done();
          if (ok)
            messages_.erase(id);
          break;
        }
        case record_type::dead:
        case record_type::replay: {
          // Read into a scratch state when the message is gone already:
          // the body is checked all the same.
          message_state scratch;
          auto mi = messages_.find(r.u64());
          auto& m = mi != messages_.end() ? mi->second : scratch;
          ok = rv.type == record_type::dead ? read_dead(rv.body, m)
                                            : read_replay(rv.body, m);
          if (rv.type == record_type::replay)
            saw_clock(m.stored_at);
          break;
        }
        case record_type::dedup_table:
          ok = dedup_.merge(rv.body);
          break;
        case record_type::boot: {
          boot_id prev{};
          r.raw(prev.data(), prev.size());
          auto prev_boottime = r.i64();
          auto gap = r.i64();
          auto now = format::decode_clock(r);
          ok = r.done();
          frames[prev]
            = boot_frame{now.boot, now.boottime_ns - gap - prev_boottime};
          saw_clock(now);
          break;
        }
        case record_type::clock: {
          auto at = format::decode_clock(r);
          ok = r.done();
          saw_clock(at);
          break;
        }
      }
      if (!ok)
        return corrupt(n, offset,
                       "a record with a valid CRC has a malformed body");
      ++report_.records;
      offset += rv.total_size;
      ++expected_seq;
    }
    segments_[n] = segment_info{
      data.size(), 0, (s.header->flags & format::flag_compacted) != 0};
    if (last && !(s.header->flags & format::flag_compacted)) {
      active = n;
      active_file_ = std::move(s.f);
      active_size_ = data.size();
      next_sequence_ = expected_seq;
    }
  }

  // Time: rebase every stored reading into this boot (docs/disk-format.md,
  // "Time").
  auto now = clock_->now();
  if (last_clock && last_clock->boot != now.boot) {
    auto gap = std::max<std::int64_t>(0, now.wall_ns - last_clock->wall_ns);
    frames[last_clock->boot]
      = boot_frame{now.boot, now.boottime_ns - gap - last_clock->boottime_ns};
    entry e;
    e.has_record = true;
    e.type = format::record_type::boot;
    format::writer w{e.body};
    w.raw(last_clock->boot.data(), last_clock->boot.size());
    w.i64(last_clock->boottime_ns);
    w.i64(gap);
    format::encode_clock(w, now);
    std::lock_guard guard{mu_};
    submit_locked(std::move(e));
  } else {
    // The boot was alive now: bounds what a later reboot's downtime
    // estimate has to cover.
    entry e;
    e.has_record = true;
    e.type = format::record_type::clock;
    format::writer w{e.body};
    format::encode_clock(w, now);
    std::lock_guard guard{mu_};
    submit_locked(std::move(e));
  }
  std::lock_guard guard{mu_};
  // In id order, so that the queues' ordered sets are built by appending.
  std::vector<std::pair<std::uint64_t, message_state*>> in_order;
  in_order.reserve(messages_.size());
  for (auto& [id, m] : messages_)
    in_order.emplace_back(id, &m);
  std::sort(in_order.begin(), in_order.end(),
            [](auto& a, auto& b) { return a.first < b.first; });
  for (auto [id, mp] : in_order) {
    auto& m = *mp;
    auto& at = m.stored_at;
    for (int hops = 0; at.boot != now.boot && hops < 4096; ++hops) {
      auto f = frames.find(at.boot);
      if (f == frames.end()) {
        // No translation known: measure the age on the wall clock.
        at.boottime_ns = now.boottime_ns
                         - std::max<std::int64_t>(0, now.wall_ns - at.wall_ns);
        at.boot = now.boot;
        break;
      }
      at.boottime_ns += f->second.delta;
      at.boot = f->second.next;
    }
    at.boot = now.boot;
    total_messages_ += 1;
    total_bytes_ += m.payload.size();
    if (auto si = segments_.find(m.segment); si != segments_.end())
      si->second.live_bytes += m.record_bytes;
    index_locked(m);
    if (m.stage == message_stage::dead)
      ++report_.dead_letters;
    else
      ++report_.messages;
  }
  last_clock_record_ns_ = now.boottime_ns;
  if (active) {
    active_number_ = *active;
    return {};
  }
  auto number = segs.empty() ? 1 : segs.rbegin()->first + 1;
  mu_.unlock();
  auto ok = start_segment(number, next_sequence_);
  mu_.lock();
  return ok;
}

} // namespace courier::durable
