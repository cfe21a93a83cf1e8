// Opening a store: find the segments, finish or undo an interrupted
// compaction, replay every record in order, cut a torn tail off the last
// segment, refuse anything else that is damaged (docs/disk-format.md,
// "Recovery").

#include <algorithm>
#include <cstdio>
#include <map>

#include "courier/durable/crc32c.hpp"
#include "segment_reader.hpp"
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

/// Boot ids compared as two words: recovery compares one per message.
bool same_boot(const boot_id& a, const boot_id& b) {
  static_assert(sizeof(boot_id) == 16);
  return load_u64(reinterpret_cast<const char*>(a.data()))
           == load_u64(reinterpret_cast<const char*>(b.data()))
         && load_u64(reinterpret_cast<const char*>(a.data()) + 8)
              == load_u64(reinterpret_cast<const char*>(b.data()) + 8);
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

  std::map<boot_id, boot_frame> frames;
  std::optional<clock_reading> last_clock;
  auto saw_clock = [&](const clock_reading& c) {
    if (!last_clock || !same_boot(last_clock->boot, c.boot)
        || c.boottime_ns > last_clock->boottime_ns)
      last_clock = c;
  };
  // The boots that stored readings are few: a message keeps an index into
  // this list until every reading is rebased below.
  std::vector<boot_id> boots;
  std::uint32_t last_boot = 0;
  auto boot_index = [&](const boot_id& b) -> std::uint32_t {
    if (!boots.empty() && same_boot(boots[last_boot], b))
      return last_boot;
    auto i = std::find(boots.begin(), boots.end(), b);
    if (i == boots.end())
      i = boots.insert(i, b);
    last_boot = static_cast<std::uint32_t>(i - boots.begin());
    return last_boot;
  };
  std::string_view last_queue;
  std::uint32_t last_queue_index = 0;

  auto corrupt
    = [&](std::uint64_t n, std::uint64_t offset, const std::string& why) {
        return error{errc::data_loss,
                     "the durable store in " + dir + " is damaged: " + paths[n]
                       + " at offset " + std::to_string(offset) + ": " + why
                       + "; it does not open (no record is ever skipped); see "
                         "docs/operations.md, \"When the store stops\""};
      };

  std::optional<std::uint64_t> active;
  // Declared after segs: destroyed (its thread stopped) before the files.
  std::vector<detail::segment_reader::job> jobs;
  for (auto& [n, s] : segs)
    if (s.header)
      jobs.push_back({s.f.get(), s.size});
  detail::segment_reader scan{std::move(jobs)};
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
    if (auto ok = scan.start_segment(); !ok)
      return ok.error();
    ++report_.segments;
    next_id_ = std::max(next_id_, s.header->next_message_id);
    auto expected_seq = s.header->first_sequence;
    std::uint64_t offset = format::segment_header_size;
    std::uint64_t end = s.size;
    while (offset < end) {
      auto bytes = scan.record_at(offset);
      if (!bytes)
        return bytes.error();
      format::record_view rv;
      auto problem = format::read_record(*bytes, rv);
      if (problem != format::record_problem::none
          || rv.sequence != expected_seq) {
        std::string why = format::to_string(problem);
        if (problem == format::record_problem::none)
          why = "record sequence " + std::to_string(rv.sequence) + " where "
                + std::to_string(expected_seq) + " belongs";
        if (!last)
          return corrupt(n, offset, why + " (in a sealed segment)");
        // Everything from here on decides between a torn tail and
        // corruption.
        std::string rest(end - offset, '\0');
        auto got = s.f->read_at(offset, rest.data(), rest.size());
        if (!got)
          return got.error();
        rest.resize(*got);
        if (auto later = later_batch(rest, 0, expected_seq))
          return corrupt(n, offset,
                         why
                           + "; a record of a later batch follows at "
                             "offset "
                           + std::to_string(offset + *later));
        // A torn tail: the last batch never finished its fsync.
        scan.stop();
        report_.truncated_bytes = end - offset;
        report_.truncated_file = paths[n];
        report_.truncated_at = offset;
        if (auto ok = s.f->truncate(offset); !ok)
          return ok.error();
        if (auto ok = s.f->sync(); !ok)
          return ok.error();
        end = offset;
        break;
      }
      using format::record_type;
      format::reader r{rv.body};
      bool ok = true;
      switch (rv.type) {
        case record_type::message: {
          // The hot path of recovery: no allocation but the table's.
          format::message_view b;
          if (!format::decode(rv.body, b)) {
            ok = false;
            break;
          }
          auto& m = messages_.insert(b.id);
          if (m.stage == message_stage::dead)
            dead_.erase(b.id);
          if (b.queue != last_queue) {
            last_queue_index = queue_index_locked(b.queue);
            last_queue = queues_[last_queue_index].name;
          }
          m = message_state{};
          m.segment = n;
          m.offset = offset;
          m.record_bytes = static_cast<std::uint32_t>(rv.total_size);
          m.payload_bytes = static_cast<std::uint32_t>(b.payload.size());
          m.stored_ns = b.stored_at.boottime_ns;
          m.stored_wall_ns = b.stored_at.wall_ns;
          m.boot = boot_index(b.stored_at.boot);
          m.reach_ns = b.time_to_reach_queue_ns;
          m.receive_ns = b.time_to_be_received_ns;
          m.attempts = b.attempts;
          m.queue = last_queue_index;
          m.priority = b.priority;
          m.stage = message_stage::queued;
          if (b.dead_reason != 0) {
            m.stage = message_stage::dead;
            dead_[b.id] = dead_info{static_cast<dead_reason>(b.dead_reason),
                                    std::string{b.dead_detail}, b.died_wall_ns};
          }
          saw_clock(b.stored_at);
          next_id_ = std::max(next_id_, b.id + 1);
          if (b.producer_id != 0)
            dedup_.mark({b.producer_id, b.producer_epoch}, b.sequence);
          break;
        }
        case record_type::attempt: {
          auto id = r.u64();
          auto count = r.u32();
          ok = r.done();
          if (auto* m = messages_.find(id); ok && m != nullptr)
            m->attempts = std::max(m->attempts, count);
          break;
        }
        case record_type::remove: {
          auto id = r.u64();
          ok = r.done();
          if (ok) {
            dead_.erase(id);
            messages_.erase(id);
          }
          break;
        }
        case record_type::dead: {
          // Checked all the same when the message is gone already.
          dead_info scratch;
          auto id = r.u64();
          ok = read_dead(rv.body, scratch);
          if (auto* m = messages_.find(id); ok && m != nullptr) {
            m->stage = message_stage::dead;
            dead_[id] = std::move(scratch);
          }
          break;
        }
        case record_type::replay: {
          clock_reading at;
          auto id = r.u64();
          ok = read_replay(rv.body, at);
          saw_clock(at);
          if (auto* m = messages_.find(id); ok && m != nullptr) {
            m->stored_ns = at.boottime_ns;
            m->stored_wall_ns = at.wall_ns;
            m->boot = boot_index(at.boot);
            m->attempts = 0;
            m->stage = message_stage::queued;
            dead_.erase(id);
          }
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
    std::shared_ptr<file> f = std::move(s.f);
    segments_[n] = segment_info{
      end, 0, (s.header->flags & format::flag_compacted) != 0, f};
    if (last && !(s.header->flags & format::flag_compacted)) {
      active = n;
      active_file_ = f;
      active_size_ = end;
      next_sequence_ = expected_seq;
    }
  }
  scan.stop();

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
  // Per boot: the sum of the frames' deltas that lead into this one, or
  // none known (then the age is measured on the wall clock).
  std::vector<std::optional<std::int64_t>> shift(boots.size());
  for (std::size_t i = 0; i < boots.size(); ++i) {
    auto b = boots[i];
    std::int64_t delta = 0;
    bool known = true;
    for (int hops = 0; b != now.boot && hops < 4096; ++hops) {
      auto f = frames.find(b);
      if (f == frames.end()) {
        known = false;
        break;
      }
      delta += f->second.delta;
      b = f->second.next;
    }
    if (known)
      shift[i] = delta;
  }
  std::lock_guard guard{mu_};
  auto seg = segments_.end();
  messages_.for_each([&](std::uint64_t id, message_state& m) {
    if (auto d = shift[m.boot])
      m.stored_ns += *d;
    else
      m.stored_ns = now.boottime_ns
                    - std::max<std::int64_t>(0, now.wall_ns - m.stored_wall_ns);
    m.boot = 0;
    total_messages_ += 1;
    total_bytes_ += m.payload_bytes;
    if (seg == segments_.end() || seg->first != m.segment)
      seg = segments_.find(m.segment);
    if (seg != segments_.end())
      seg->second.live_bytes += m.record_bytes;
    // In id order: each FIFO is built by appending.
    index_locked(id, m, true);
    if (m.stage == message_stage::dead)
      ++report_.dead_letters;
    else
      ++report_.messages;
  });
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
