// The store's operations on its in-memory state: validating, reserving
// and submitting records to the writer. What happens once a record is
// durable is in apply.cpp; the public wrappers in store_api.cpp.

#include <algorithm>

#include "courier/durable/crash_point.hpp"
#include "store_impl.hpp"

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
  auto age = now - m.stored_ns;
  auto reach = m.reach_ns;
  auto receive = m.receive_ns;
  bool reach_out = reach > 0 && age >= reach;
  bool receive_out = receive > 0 && age >= receive;
  if (reach_out && (!receive_out || reach <= receive))
    return dead_reason::time_to_reach_queue;
  if (receive_out)
    return dead_reason::time_to_be_received;
  return std::nullopt;
}

void store::impl::add_deadlines_locked(std::uint64_t id,
                                       const message_state& m) {
  for (auto ttl : {m.reach_ns, m.receive_ns})
    if (ttl > 0)
      deadlines_.emplace(m.stored_ns + ttl, id);
}

std::uint32_t store::impl::queue_index_locked(std::string_view name) {
  if (auto i = queue_names_.find(name); i != queue_names_.end())
    return i->second;
  auto index = static_cast<std::uint32_t>(queues_.size());
  queues_.emplace_back().name = std::string{name};
  queue_names_.emplace(std::string{name}, index);
  return index;
}

void store::impl::index_locked(std::uint64_t id, message_state& m, bool fresh) {
  if (m.stage == message_stage::dead)
    return;
  auto& q = queues_[m.queue];
  ++q.depth;
  q.bytes += m.payload_bytes;
  if (m.stage == message_stage::claimed)
    ++q.in_flight;
  else if (fresh)
    q.fifo(m.priority).push_back(id);
  else
    enqueue_ready_locked(id, m);
  add_deadlines_locked(id, m);
}

void store::impl::unindex_locked(message_state& m) {
  auto& q = queues_[m.queue];
  --q.depth;
  q.bytes -= m.payload_bytes;
  if (m.stage == message_stage::claimed)
    --q.in_flight;
}

void store::impl::enqueue_ready_locked(std::uint64_t id, message_state& m) {
  m.stage = message_stage::queued;
  auto& q = queues_[m.queue];
  // Still in the FIFO (no claim got that far): it is found there.
  if (auto& fifo = q.fresh[m.priority];
      fifo && !fifo->empty() && id >= fifo->front())
    return;
  q.returned.emplace(static_cast<std::uint8_t>(7 - m.priority), id);
}

void store::impl::kill_locked(std::uint64_t id, message_state& m,
                              dead_reason reason, std::string detail,
                              done_callback done) {
  m.busy = true;
  entry e;
  e.has_record = true;
  e.type = format::record_type::dead;
  format::writer w{e.body};
  w.u64(id);
  w.u8(static_cast<std::uint8_t>(reason));
  w.bytes(detail);
  auto now = clock_->now();
  w.i64(now.wall_ns);
  e.id = id;
  if (opt_.on_dead_letter) {
    auto dead = std::make_shared<dead_letter>();
    dead->reason = reason;
    dead->detail = std::move(detail);
    dead->died_wall_ns = now.wall_ns;
    // The payload is read once the death is durable, outside mu_ (the
    // hook runs on the writer thread after the batch).
    auto where = locate_locked(id, m);
    format::message_view none;
    dead->message = copy_out(id, m, none, now.boottime_ns);
    e.on_done = [this, where = std::move(where), hook = opt_.on_dead_letter,
                 dead, done = std::move(done)](expected<void> r) {
      if (r) {
        std::string buffer;
        if (auto body = read_records({where}, buffer)) {
          auto& b = (*body)[0];
          dead->message.payload = b.payload;
          dead->message.options.producer_id = b.producer_id;
          dead->message.options.producer_epoch = b.producer_epoch;
          dead->message.options.sequence = b.sequence;
        }
        hook(*dead);
      }
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
  auto qi = queue_index_locked(queue);
  auto& q = queues_[qi];
  auto q_count = q.depth + q.pending;
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
  entry e;
  e.id = next_id_++;
  auto& m = e.message;
  auto now = clock_->now();
  m.stored_ns = now.boottime_ns;
  m.stored_wall_ns = now.wall_ns;
  m.reach_ns = options.time_to_reach_queue.count();
  m.receive_ns = options.time_to_be_received.count();
  m.payload_bytes = static_cast<std::uint32_t>(payload.size());
  m.queue = qi;
  m.priority = options.priority;
  m.stage = message_stage::queued;
  e.has_record = true;
  e.type = format::record_type::message;
  format::message_view body;
  body.id = e.id;
  body.queue = queue;
  body.producer_id = options.producer_id;
  body.producer_epoch = options.producer_epoch;
  body.sequence = options.sequence;
  body.priority = options.priority;
  body.time_to_reach_queue_ns = m.reach_ns;
  body.time_to_be_received_ns = m.receive_ns;
  body.stored_at = now;
  body.payload = payload;
  // Encoded into a buffer this thread keeps (submit_locked copies it into
  // the batch): no allocation per message.
  thread_local std::string encoded;
  encoded.clear();
  format::encode(encoded, body);
  q.pending += 1;
  q.bytes += payload.size();
  total_messages_ += 1;
  total_bytes_ += payload.size();
  if (options.producer_id != 0)
    pending_dedup_.insert(tuple);
  e.producer_id = options.producer_id;
  e.producer_epoch = options.producer_epoch;
  e.sequence = options.sequence;
  e.on_append = std::move(done);
  submit_locked(std::move(e), encoded);
  if (encoded.capacity() > (64u << 10))
    std::string{}.swap(encoded); // a large message's room is not kept
}

expected<std::vector<stored_message>>
store::impl::claim(std::string_view queue, std::size_t max, bool counted) {
  std::vector<std::uint64_t> taken;
  std::vector<record_location> where;
  std::string buffer;
  {
    std::lock_guard guard{mu_};
    if (auto why = refusal_locked())
      return *why;
    auto qn = queue_names_.find(queue);
    if (qn == queue_names_.end())
      return std::vector<stored_message>{};
    auto& q = queues_[qn->second];
    auto now_steady = steady_ns();
    while (!delayed_.empty() && delayed_.begin()->first <= now_steady) {
      auto id = delayed_.begin()->second;
      delayed_.erase(delayed_.begin());
      auto* m = messages_.find(id);
      if (m != nullptr && m->stage == message_stage::queued && !m->busy)
        enqueue_ready_locked(id, *m);
    }
    auto now = clock_->now().boottime_ns;
    auto claimable = [&](std::uint64_t id) -> message_state* {
      auto* m = messages_.find(id);
      return m != nullptr && m->stage == message_stage::queued && !m->busy
               ? m
               : nullptr;
    };
    for (int p = 7; p >= 0 && taken.size() < max; --p) {
      auto* fifo = q.fresh[static_cast<std::size_t>(p)].get();
      auto key = static_cast<std::uint8_t>(7 - p);
      while (taken.size() < max) {
        // The next at this priority: the lower id of the FIFO's front and
        // the first returned one.
        while (fifo != nullptr && !fifo->empty()
               && claimable(fifo->front()) == nullptr)
          fifo->pop_front();
        bool has_fresh = fifo != nullptr && !fifo->empty();
        auto ri = q.returned.lower_bound({key, 0});
        bool has_returned = ri != q.returned.end() && ri->first == key;
        if (!has_fresh && !has_returned)
          break;
        std::uint64_t id;
        if (has_returned && (!has_fresh || ri->second < fifo->front())) {
          id = ri->second;
          q.returned.erase(ri);
        } else {
          id = fifo->front();
          fifo->pop_front();
        }
        auto* m = claimable(id);
        if (m == nullptr)
          continue; // a returned one that left since
        if (auto timer = expired_locked(*m, now)) {
          kill_locked(id, *m, *timer,
                      std::string{to_string(*timer)} + " ran out", nullptr);
          continue;
        }
        if (counted && m->attempts >= opt_.max_attempts) {
          // Its last attempt did not end (the process died in the handler).
          kill_locked(id, *m, dead_reason::poison,
                      "attempt " + std::to_string(m->attempts)
                        + " never finished (the process stopped during it)",
                      nullptr);
          continue;
        }
        m->stage = message_stage::claimed;
        m->counted = counted;
        ++q.in_flight;
        taken.push_back(id);
        where.push_back(locate_locked(id, *m));
      }
    }
    fill_recent_locked(where, buffer);
  }
  if (taken.empty())
    return std::vector<stored_message>{};
  // The other payloads are read without mu_: appends and other claims go
  // on. The messages are claimed meanwhile, so nothing else touches them.
  auto bodies = read_records(where, buffer);
  std::lock_guard guard{mu_};
  if (auto why = refusal_locked())
    return *why;
  if (!bodies) {
    // As if the claim had not happened; the error says what is wrong.
    for (auto id : taken)
      if (auto* m = messages_.find(id);
          m != nullptr && m->stage == message_stage::claimed)
        requeue_locked(id, *m, {});
    return bodies.error();
  }
  auto now = clock_->now().boottime_ns;
  std::vector<stored_message> out;
  out.reserve(taken.size());
  for (std::size_t i = 0; i < taken.size(); ++i) {
    auto* m = messages_.find(taken[i]);
    if (m == nullptr || m->stage != message_stage::claimed)
      continue;
    if (counted) {
      ++m->attempts;
      submit_attempts_locked(taken[i], *m);
    }
    out.push_back(copy_out(taken[i], *m, (*bodies)[i], now));
  }
  return out;
}

store::impl::message_state*
store::impl::find_locked(std::unique_lock<std::mutex>& guard, std::uint64_t id,
                         message_stage stage, done_callback& done) {
  std::optional<error> why = refusal_locked();
  auto* m = messages_.find(id);
  if (!why && (m == nullptr || m->stage != stage || m->busy))
    why = error{errc::not_found, stage == message_stage::dead
                                   ? "no dead letter " + std::to_string(id)
                                   : "durable message " + std::to_string(id)
                                       + " is not claimed"};
  if (!why)
    return m;
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
  remove_locked(id, *m, std::move(done));
}

void store::impl::fail(std::uint64_t id, std::string reason, done_callback done,
                       std::chrono::milliseconds retry_after) {
  std::unique_lock guard{mu_};
  auto* found = find_locked(guard, id, message_stage::claimed, done);
  if (found == nullptr)
    return;
  auto& m = *found;
  if (m.attempts >= opt_.max_attempts) {
    kill_locked(id, m, dead_reason::poison,
                "failed " + std::to_string(m.attempts)
                  + " times; last: " + reason,
                std::move(done));
    return;
  }
  auto now = clock_->now().boottime_ns;
  if (auto timer = expired_locked(m, now)) {
    kill_locked(id, m, *timer, std::string{to_string(*timer)} + " ran out",
                std::move(done));
    return;
  }
  requeue_locked(id, m, retry_after);
  // Acknowledged after the attempt count it raised is durable.
  entry e;
  e.on_done = std::move(done);
  submit_locked(std::move(e));
}

void store::impl::submit_attempts_locked(std::uint64_t id,
                                         const message_state& m) {
  entry e;
  e.has_record = true;
  e.type = format::record_type::attempt;
  format::writer w{e.body};
  w.u64(id);
  w.u32(m.attempts);
  e.id = id;
  submit_locked(std::move(e));
}

void store::impl::requeue_locked(std::uint64_t id, message_state& m,
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
      id);
  } else {
    enqueue_ready_locked(id, m);
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
    submit_attempts_locked(id, m);
  }
  requeue_locked(id, m, retry_after);
  return {};
}

void store::impl::remove_locked(std::uint64_t id, message_state& m,
                                done_callback done) {
  m.busy = true;
  entry e;
  e.has_record = true;
  e.type = format::record_type::remove;
  format::writer w{e.body};
  w.u64(id);
  e.id = id;
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
  if (auto qn = queue_names_.find(queue); qn != queue_names_.end()) {
    // Every queued message: the ready ones and those waiting out a
    // retry_after (claimed ones finish their handling). A removal that
    // fails (disk full) puts its message back through
    // enqueue_ready_locked, which finds the FIFOs empty.
    auto index = qn->second;
    std::vector<std::uint64_t> ids;
    messages_.for_each([&](std::uint64_t id, const message_state& m) {
      if (m.queue == index && m.stage == message_stage::queued && !m.busy)
        ids.push_back(id);
    });
    auto& q = queues_[index];
    for (auto& fifo : q.fresh)
      fifo.reset();
    q.returned.clear();
    for (auto id : ids) {
      remove_locked(id, *messages_.find(id), nullptr);
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
    remove_locked(id, *m, std::move(done));
}

std::vector<stored_message> store::impl::peek(std::string_view queue,
                                              std::size_t max) const {
  std::vector<std::uint64_t> ids;
  std::vector<record_location> where;
  std::vector<message_state> states;
  {
    std::lock_guard guard{mu_};
    auto qn = queue_names_.find(queue);
    if (qn == queue_names_.end() || max == 0)
      return {};
    // The first `max` in queue order among the members (claimed ones
    // included): one pass over the table, a bounded heap. peek is for
    // people and for a node's start, not for a message's path.
    auto index = qn->second;
    using key = std::pair<std::uint8_t, std::uint64_t>; // (7 - priority, id)
    std::vector<key> heap;
    messages_.for_each([&](std::uint64_t id, const message_state& m) {
      if (m.queue != index || m.stage == message_stage::dead)
        return;
      key k{static_cast<std::uint8_t>(7 - m.priority), id};
      if (heap.size() < max) {
        heap.push_back(k);
        std::push_heap(heap.begin(), heap.end());
      } else if (k < heap.front()) {
        std::pop_heap(heap.begin(), heap.end());
        heap.back() = k;
        std::push_heap(heap.begin(), heap.end());
      }
    });
    std::sort_heap(heap.begin(), heap.end());
    for (auto& k : heap) {
      auto* m = messages_.find(k.second);
      ids.push_back(k.second);
      where.push_back(locate_locked(k.second, *m));
      states.push_back(*m);
    }
  }
  return read_out(ids, where, states);
}

std::vector<queue_info> store::impl::queues() const {
  std::lock_guard guard{mu_};
  std::vector<std::int64_t> oldest(queues_.size(), 0);
  messages_.for_each([&](std::uint64_t, const message_state& m) {
    if (m.stage == message_stage::dead)
      return;
    auto& o = oldest[m.queue];
    if (o == 0 || m.stored_wall_ns < o)
      o = m.stored_wall_ns;
  });
  std::vector<queue_info> out;
  for (auto& [name, index] : queue_names_) {
    auto& q = queues_[index];
    if (q.depth == 0 && q.pending == 0)
      continue;
    queue_info info;
    info.name = name;
    info.depth = q.depth;
    info.in_flight = q.in_flight;
    info.bytes = q.bytes;
    info.oldest_wall_ns = oldest[index];
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<dead_letter> store::impl::dead_letters() const {
  std::vector<std::uint64_t> ids;
  std::vector<record_location> where;
  std::vector<message_state> states;
  std::vector<dead_letter> out;
  {
    std::lock_guard guard{mu_};
    for (auto& [id, d] : dead_) {
      auto* m = messages_.find(id);
      if (m == nullptr)
        continue;
      ids.push_back(id);
      where.push_back(locate_locked(id, *m));
      states.push_back(*m);
      dead_letter letter;
      letter.reason = d.reason;
      letter.detail = d.detail;
      letter.died_wall_ns = d.died_wall_ns;
      out.push_back(std::move(letter));
    }
  }
  auto messages = read_out(ids, where, states);
  // read_out leaves out what it cannot read: match by id.
  std::vector<dead_letter> readable;
  readable.reserve(messages.size());
  std::size_t j = 0;
  for (std::size_t i = 0; i < ids.size() && j < messages.size(); ++i) {
    if (messages[j].id != ids[i])
      continue;
    out[i].message = std::move(messages[j++]);
    readable.push_back(std::move(out[i]));
  }
  return readable;
}

void store::impl::replay(std::uint64_t id, done_callback done) {
  std::unique_lock guard{mu_};
  auto* found = find_locked(guard, id, message_stage::dead, done);
  if (found == nullptr)
    return;
  auto& m = *found;
  auto& q = queues_[m.queue];
  if (q.depth + q.pending + 1 > opt_.queue_quota.max_messages
      || q.bytes + m.payload_bytes > opt_.queue_quota.max_bytes) {
    guard.unlock();
    return done(error{errc::resource_exhausted,
                      "durable queue '" + q.name + "' is at its quota"});
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
    auto* m = messages_.find(id);
    // A claimed message is its handler's; fail() checks the timers.
    if (m == nullptr || m->stage != message_stage::queued || m->busy)
      continue;
    auto timer = expired_locked(*m, now);
    if (!timer)
      continue;
    // Its FIFO entry stays behind: claims skip it.
    kill_locked(id, *m, *timer, std::string{to_string(*timer)} + " ran out",
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
