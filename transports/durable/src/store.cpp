// The store's operations on its in-memory state: validating, reserving
// and submitting records to the writer. What happens once a record is
// durable is in apply.cpp; the public wrappers in store_api.cpp.

#include "store_impl.hpp"

#include "courier/durable/crash_point.hpp"

namespace courier::durable {

namespace {

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

} // namespace

// -- helpers ------------------------------------------------------------------

std::optional<error> store::impl::refusal_locked() const {
  if (stopped_)
    return error{errc::unavailable,
                 "the durable store stopped after an I/O error ("
                   + stopped_->message() + "); reopen it to recover"};
  if (closed_)
    return error{errc::unavailable, "the durable store is closed"};
  return std::nullopt;
}

bool store::impl::disk_full_locked() {
  if (!disk_full_)
    return false;
  auto now = steady_ns();
  if (now - last_space_probe_ns_ < 20'000'000)
    return true;
  last_space_probe_ns_ = now;
  auto free = fs_->free_bytes(opt_.directory);
  if (free && *free >= opt_.resume_free_bytes)
    disk_full_ = false;
  return disk_full_;
}

std::optional<dead_reason> store::impl::expired_locked(const message_state& m,
                                                       std::int64_t now) const {
  auto age = now - m.stored_at.boottime_ns;
  auto reach = m.options.time_to_reach_queue.count();
  auto receive = m.options.time_to_be_received.count();
  bool reach_out = reach > 0 && age >= reach;
  bool receive_out = receive > 0 && age >= receive;
  if (reach_out && (!receive_out || reach <= receive))
    return dead_reason::time_to_reach_queue;
  if (receive_out)
    return dead_reason::time_to_be_received;
  return std::nullopt;
}

void store::impl::add_deadlines_locked(const message_state& m) {
  for (auto ttl : {m.options.time_to_reach_queue.count(),
                   m.options.time_to_be_received.count()})
    if (ttl > 0)
      deadlines_.emplace(m.stored_at.boottime_ns + ttl, m.id);
}

stored_message store::impl::copy_out(const message_state& m,
                                     std::int64_t now) const {
  stored_message out;
  out.id = m.id;
  out.queue = m.queue;
  out.payload = m.payload;
  out.options = m.options;
  out.attempts = m.attempts;
  out.stored_wall_ns = m.stored_at.wall_ns;
  out.age = std::chrono::nanoseconds{
    std::max<std::int64_t>(0, now - m.stored_at.boottime_ns)};
  return out;
}

void store::impl::index_locked(message_state& m) {
  auto& q = queues_[m.queue];
  if (m.stage == message_stage::dead) {
    dead_.insert(m.id);
    return;
  }
  queue_state::key k{static_cast<std::uint8_t>(7 - m.options.priority), m.id};
  // Appends and recovery come in id order: the hint makes it O(1) for the
  // lowest priority present.
  q.all.emplace_hint(q.all.end(), k);
  q.bytes += m.payload.size();
  if (m.stage == message_stage::queued)
    q.ready.emplace_hint(q.ready.end(), k);
  else
    ++q.in_flight;
  add_deadlines_locked(m);
}

void store::impl::unindex_locked(message_state& m) {
  auto& q = queues_[m.queue];
  queue_state::key k{static_cast<std::uint8_t>(7 - m.options.priority), m.id};
  q.all.erase(k);
  q.ready.erase(k);
  q.bytes -= m.payload.size();
  if (m.stage == message_stage::claimed)
    --q.in_flight;
}

void store::impl::enqueue_ready_locked(message_state& m) {
  auto& q = queues_[m.queue];
  m.stage = message_stage::queued;
  q.ready.insert({static_cast<std::uint8_t>(7 - m.options.priority), m.id});
}

void store::impl::kill_locked(message_state& m, dead_reason reason,
                              std::string detail, done_callback done) {
  m.busy = true;
  entry e;
  e.has_record = true;
  e.type = format::record_type::dead;
  format::writer w{e.body};
  w.u64(m.id);
  w.u8(static_cast<std::uint8_t>(reason));
  w.bytes(detail);
  auto now = clock_->now();
  w.i64(now.wall_ns);
  e.id = m.id;
  if (opt_.on_dead_letter) {
    auto dead = std::make_shared<dead_letter>();
    dead->message = copy_out(m, now.boottime_ns);
    dead->reason = reason;
    dead->detail = std::move(detail);
    dead->died_wall_ns = now.wall_ns;
    e.on_done = [hook = opt_.on_dead_letter, dead,
                 done = std::move(done)](expected<void> r) {
      if (r)
        hook(*dead);
      if (done)
        done(std::move(r));
    };
  } else {
    e.on_done = std::move(done);
  }
  submit_locked(std::move(e));
}

// -- operations ---------------------------------------------------------------

void store::impl::append(std::string_view queue, std::string payload,
                         const message_options& options, append_callback done) {
  crash_point("before_append");
  if (queue.empty() || queue.size() > 255)
    return done(
      error{errc::invalid_argument, "a durable queue name has 1 to 255 bytes"});
  if (options.priority > 7)
    return done(error{errc::invalid_argument,
                      "priority " + std::to_string(options.priority)
                        + " is out of range 0 to 7"});
  if (options.time_to_reach_queue.count() < 0
      || options.time_to_be_received.count() < 0)
    return done(error{errc::invalid_argument, "negative time to live"});
  if (payload.size() > opt_.max_message_bytes)
    return done(error{errc::invalid_argument,
                      "a durable message of " + std::to_string(payload.size())
                        + " bytes is above the limit of "
                        + std::to_string(opt_.max_message_bytes)});
  std::unique_lock guard{mu_};
  if (auto why = refusal_locked()) {
    guard.unlock();
    return done(*why);
  }
  if (disk_full_locked()) {
    guard.unlock();
    return done(
      error{errc::resource_exhausted, "the durable store's disk is full ("
                                        + opt_.directory + "); it resumes when "
                                        + std::to_string(opt_.resume_free_bytes)
                                        + " bytes are free"});
  }
  auto tuple = std::make_tuple(options.producer_id, options.producer_epoch,
                               options.sequence);
  if (options.producer_id != 0
      && (dedup_.seen({options.producer_id, options.producer_epoch},
                      options.sequence)
          || pending_dedup_.count(tuple) != 0)) {
    // Acknowledged as a duplicate once everything before it is durable,
    // the original included.
    entry e;
    e.duplicate = true;
    e.on_append = std::move(done);
    submit_locked(std::move(e));
    return;
  }
  auto& q = queues_[std::string{queue}];
  auto q_count = q.all.size() + q.pending;
  if (q_count + 1 > opt_.queue_quota.max_messages
      || q.bytes + payload.size() > opt_.queue_quota.max_bytes) {
    guard.unlock();
    return done(
      error{errc::resource_exhausted,
            "durable queue '" + std::string{queue} + "' is at its quota ("
              + std::to_string(opt_.queue_quota.max_messages) + " messages, "
              + std::to_string(opt_.queue_quota.max_bytes) + " bytes)"});
  }
  if (total_messages_ + 1 > opt_.store_quota.max_messages
      || total_bytes_ + payload.size() > opt_.store_quota.max_bytes) {
    guard.unlock();
    return done(
      error{errc::resource_exhausted,
            "the durable store is at its quota ("
              + std::to_string(opt_.store_quota.max_messages) + " messages, "
              + std::to_string(opt_.store_quota.max_bytes) + " bytes)"});
  }
  auto m = std::make_unique<message_state>();
  m->id = next_id_++;
  m->queue = std::string{queue};
  m->options = options;
  m->stored_at = clock_->now();
  entry e;
  e.has_record = true;
  e.type = format::record_type::message;
  format::message_body body;
  body.id = m->id;
  body.queue = m->queue;
  body.producer_id = options.producer_id;
  body.producer_epoch = options.producer_epoch;
  body.sequence = options.sequence;
  body.priority = options.priority;
  body.time_to_reach_queue_ns = options.time_to_reach_queue.count();
  body.time_to_be_received_ns = options.time_to_be_received.count();
  body.stored_at = m->stored_at;
  body.payload = std::move(payload);
  format::encode(e.body, body);
  m->payload = std::move(body.payload);
  q.pending += 1;
  q.bytes += m->payload.size();
  total_messages_ += 1;
  total_bytes_ += m->payload.size();
  if (options.producer_id != 0)
    pending_dedup_.insert(tuple);
  e.id = m->id;
  e.message = std::move(m);
  e.on_append = std::move(done);
  submit_locked(std::move(e));
}

expected<std::vector<stored_message>> store::impl::claim(std::string_view queue,
                                                         std::size_t max, bool counted) {
  std::lock_guard guard{mu_};
  if (auto why = refusal_locked())
    return *why;
  std::vector<stored_message> out;
  auto qi = queues_.find(queue);
  if (qi == queues_.end())
    return out;
  auto& q = qi->second;
  auto now_steady = steady_ns();
  while (!delayed_.empty() && delayed_.begin()->first <= now_steady) {
    auto id = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    auto mi = messages_.find(id);
    if (mi != messages_.end() && mi->second.stage == message_stage::queued
        && !mi->second.busy)
      enqueue_ready_locked(mi->second);
  }
  auto now = clock_->now().boottime_ns;
  auto it = q.ready.begin();
  while (it != q.ready.end() && out.size() < max) {
    auto& m = messages_.at(it->second);
    it = q.ready.erase(it);
    if (auto timer = expired_locked(m, now)) {
      kill_locked(m, *timer, std::string{to_string(*timer)} + " ran out",
                  nullptr);
      continue;
    }
    if (counted && m.attempts >= opt_.max_attempts) {
      // Its last attempt did not end (the process died in the handler).
      kill_locked(m, dead_reason::poison,
                  "attempt " + std::to_string(m.attempts)
                    + " never finished (the process stopped during it)",
                  nullptr);
      continue;
    }
    m.stage = message_stage::claimed;
    m.counted = counted;
    ++q.in_flight;
    if (!counted) {
      out.push_back(copy_out(m, now));
      continue;
    }
    ++m.attempts;
    submit_attempts_locked(m);
    out.push_back(copy_out(m, now));
  }
  return out;
}

store::impl::message_state*
store::impl::find_locked(std::unique_lock<std::mutex>& guard, std::uint64_t id,
                         message_stage stage, done_callback& done) {
  std::optional<error> why = refusal_locked();
  auto mi = messages_.find(id);
  if (!why
      && (mi == messages_.end() || mi->second.stage != stage
          || mi->second.busy))
    why = error{errc::not_found, stage == message_stage::dead
                                   ? "no dead letter " + std::to_string(id)
                                   : "durable message " + std::to_string(id)
                                       + " is not claimed"};
  if (!why)
    return &mi->second;
  guard.unlock();
  done(*why);
  return nullptr;
}

void store::impl::complete(std::uint64_t id, done_callback done) {
  std::unique_lock guard{mu_};
  auto* m = find_locked(guard, id, message_stage::claimed, done);
  if (m == nullptr)
    return;
  crash_point("after_handler_before_removal");
  remove_locked(*m, std::move(done));
}

void store::impl::fail(std::uint64_t id, std::string reason, done_callback done,
                       std::chrono::milliseconds retry_after) {
  std::unique_lock guard{mu_};
  auto* found = find_locked(guard, id, message_stage::claimed, done);
  if (found == nullptr)
    return;
  auto& m = *found;
  if (m.attempts >= opt_.max_attempts) {
    kill_locked(m, dead_reason::poison,
                "failed " + std::to_string(m.attempts)
                  + " times; last: " + reason,
                std::move(done));
    return;
  }
  auto now = clock_->now().boottime_ns;
  if (auto timer = expired_locked(m, now)) {
    kill_locked(m, *timer, std::string{to_string(*timer)} + " ran out",
                std::move(done));
    return;
  }
  requeue_locked(m, retry_after);
  // Acknowledged after the attempt count it raised is durable.
  entry e;
  e.on_done = std::move(done);
  submit_locked(std::move(e));
}

void store::impl::submit_attempts_locked(const message_state& m) {
  entry e;
  e.has_record = true;
  e.type = format::record_type::attempt;
  format::writer w{e.body};
  w.u64(m.id);
  w.u32(m.attempts);
  e.id = m.id;
  submit_locked(std::move(e));
}

void store::impl::requeue_locked(message_state& m,
                                 std::chrono::milliseconds retry_after) {
  auto& q = queues_[m.queue];
  --q.in_flight;
  m.counted = false;
  if (retry_after.count() > 0) {
    m.stage = message_stage::queued;
    delayed_.emplace(
      steady_ns()
        + std::chrono::duration_cast<std::chrono::nanoseconds>(retry_after)
            .count(),
      m.id);
  } else {
    enqueue_ready_locked(m);
  }
}

expected<void> store::impl::release(std::uint64_t id,
                                    std::chrono::milliseconds retry_after) {
  std::unique_lock guard{mu_};
  std::optional<error> refused;
  done_callback note = [&refused](expected<void> r) {
    if (!r)
      refused = r.error();
  };
  auto* found = find_locked(guard, id, message_stage::claimed, note);
  if (found == nullptr)
    return *refused;
  auto& m = *found;
  if (m.counted && m.attempts > 0) {
    --m.attempts;
    submit_attempts_locked(m);
  }
  requeue_locked(m, retry_after);
  return {};
}

void store::impl::remove_locked(message_state& m, done_callback done) {
  m.busy = true;
  entry e;
  e.has_record = true;
  e.type = format::record_type::remove;
  format::writer w{e.body};
  w.u64(m.id);
  e.id = m.id;
  e.on_done = std::move(done);
  submit_locked(std::move(e));
}

void store::impl::purge(std::string_view queue,
                        std::function<void(expected<std::size_t>)> done) {
  std::unique_lock guard{mu_};
  if (auto why = refusal_locked()) {
    guard.unlock();
    return done(*why);
  }
  std::size_t n = 0;
  if (auto qi = queues_.find(queue); qi != queues_.end()) {
    // Every queued message: the ready ones and those waiting out a
    // retry_after (claimed ones finish their handling).
    auto& q = qi->second;
    for (const auto& key : q.all) {
      auto& m = messages_.at(key.second);
      if (m.stage != message_stage::queued || m.busy)
        continue;
      q.ready.erase(key);
      remove_locked(m, nullptr);
      ++n;
    }
  }
  // Answered after the last removal is durable.
  entry e;
  e.on_done = [n, done = std::move(done)](expected<void> r) {
    if (r)
      done(n);
    else
      done(r.error());
  };
  submit_locked(std::move(e));
}

void store::impl::discard(std::uint64_t id, done_callback done) {
  std::unique_lock guard{mu_};
  auto* m = find_locked(guard, id, message_stage::dead, done);
  if (m != nullptr)
    remove_locked(*m, std::move(done));
}

std::vector<stored_message> store::impl::peek(std::string_view queue,
                                              std::size_t max) const {
  std::lock_guard guard{mu_};
  std::vector<stored_message> out;
  auto qi = queues_.find(queue);
  if (qi == queues_.end())
    return out;
  auto now = clock_->now().boottime_ns;
  for (auto& k : qi->second.all) {
    if (out.size() >= max)
      break;
    out.push_back(copy_out(messages_.at(k.second), now));
  }
  return out;
}

std::vector<queue_info> store::impl::queues() const {
  std::lock_guard guard{mu_};
  std::vector<queue_info> out;
  for (auto& [name, q] : queues_) {
    if (q.all.empty() && q.pending == 0)
      continue;
    queue_info info;
    info.name = name;
    info.depth = q.all.size();
    info.in_flight = q.in_flight;
    info.bytes = q.bytes;
    for (auto& k : q.all) {
      auto wall = messages_.at(k.second).stored_at.wall_ns;
      if (info.oldest_wall_ns == 0 || wall < info.oldest_wall_ns)
        info.oldest_wall_ns = wall;
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<dead_letter> store::impl::dead_letters() const {
  std::lock_guard guard{mu_};
  std::vector<dead_letter> out;
  auto now = clock_->now().boottime_ns;
  for (auto id : dead_) {
    auto& m = messages_.at(id);
    dead_letter d;
    d.message = copy_out(m, now);
    d.reason = m.reason;
    d.detail = m.detail;
    d.died_wall_ns = m.died_wall_ns;
    out.push_back(std::move(d));
  }
  return out;
}

void store::impl::replay(std::uint64_t id, done_callback done) {
  std::unique_lock guard{mu_};
  auto* found = find_locked(guard, id, message_stage::dead, done);
  if (found == nullptr)
    return;
  auto& m = *found;
  auto& q = queues_[m.queue];
  if (q.all.size() + q.pending + 1 > opt_.queue_quota.max_messages
      || q.bytes + m.payload.size() > opt_.queue_quota.max_bytes) {
    guard.unlock();
    return done(error{errc::resource_exhausted,
                      "durable queue '" + m.queue + "' is at its quota"});
  }
  m.busy = true;
  entry e;
  e.has_record = true;
  e.type = format::record_type::replay;
  format::writer w{e.body};
  w.u64(id);
  format::encode_clock(w, clock_->now());
  e.id = id;
  e.on_done = std::move(done);
  submit_locked(std::move(e));
}

std::size_t store::impl::expire_due() {
  std::lock_guard guard{mu_};
  if (refusal_locked())
    return 0;
  auto now = clock_->now().boottime_ns;
  std::size_t n = 0;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto mi = messages_.find(id);
    if (mi == messages_.end())
      continue;
    auto& m = mi->second;
    // A claimed message is its handler's; fail() checks the timers.
    if (m.stage != message_stage::queued || m.busy)
      continue;
    auto timer = expired_locked(m, now);
    if (!timer)
      continue;
    queues_[m.queue].ready.erase(
      {static_cast<std::uint8_t>(7 - m.options.priority), m.id});
    kill_locked(m, *timer, std::string{to_string(*timer)} + " ran out",
                nullptr);
    ++n;
  }
  return n;
}

void store::impl::flush(done_callback done) {
  std::unique_lock guard{mu_};
  if (auto why = refusal_locked()) {
    guard.unlock();
    return done(*why);
  }
  entry e;
  e.on_done = std::move(done);
  submit_locked(std::move(e));
}

expected<void> store::impl::status() const {
  std::lock_guard guard{mu_};
  if (stopped_)
    return *stopped_;
  return {};
}

} // namespace courier::durable
