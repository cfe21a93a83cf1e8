#include "grpc_link.hpp"

#include <algorithm>
#include <atomic>
#include <vector>

#include <grpcpp/support/slice.h>

namespace courier::grpc_tier {

namespace {

/// How long a closing link may take to write what it queued; then the call
/// is cancelled with the rest unsent (a peer that stopped reading).
constexpr auto close_linger = std::chrono::seconds{2};

/// Frames up to this size are copied into a slice of gRPC's own; larger
/// ones are lent to gRPC where they lie, and released once it is done.
constexpr std::size_t copy_below = 1024;

/// A read buffer handed back by recycle() is kept when at least this large.
constexpr std::size_t spare_from = std::size_t{64} << 10;

using clock = grpc_link::clock;

clock::rep now_rep() {
  return clock::now().time_since_epoch().count();
}

/// A frame lent to gRPC: freed when the last of its slices is.
struct lent_frame {
  explicit lent_frame(frame f, int slices) : body(std::move(f)), left(slices) {
  }
  frame body;
  std::atomic<int> left;
};

void release_part(void* user_data) {
  auto* lent = static_cast<lent_frame*>(user_data);
  if (lent->left.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete lent;
}

void release_string(void* user_data) {
  delete static_cast<std::string*>(user_data);
}

/// The frame as one gRPC message, without a copy of its large parts.
::grpc::ByteBuffer to_buffer(frame out) {
  if (out.size() < copy_below) {
    std::string flat;
    std::string_view bytes;
    if (out.aliases()) {
      flat = std::move(out).flatten();
      bytes = flat;
    } else {
      out.for_each_part([&](std::string_view part) { bytes = part; });
    }
    ::grpc::Slice slice{bytes.data(), bytes.size()};
    return ::grpc::ByteBuffer{&slice, 1};
  }
  if (!out.aliases()) {
    auto* bytes = new std::string{std::move(out).flatten()};
    ::grpc::Slice slice{bytes->data(), bytes->size(), release_string, bytes};
    return ::grpc::ByteBuffer{&slice, 1};
  }
  int count = 0;
  out.for_each_part([&](std::string_view) { ++count; });
  auto* lent = new lent_frame{std::move(out), count};
  std::vector<::grpc::Slice> slices;
  slices.reserve(static_cast<std::size_t>(count));
  lent->body.for_each_part([&](std::string_view part) {
    slices.emplace_back(const_cast<char*>(part.data()), part.size(),
                        release_part, lent);
  });
  return ::grpc::ByteBuffer{slices.data(), slices.size()};
}

/// Why a call that ended by itself ended, in Courier's terms.
error reason_of(const ::grpc::Status& status) {
  auto text = status.error_message();
  switch (status.error_code()) {
    case ::grpc::StatusCode::OK:
    case ::grpc::StatusCode::CANCELLED:
      return error{errc::unavailable, "the peer closed the link"};
    case ::grpc::StatusCode::RESOURCE_EXHAUSTED:
      return error{errc::resource_exhausted, "the link's stream: " + text};
    case ::grpc::StatusCode::DEADLINE_EXCEEDED:
      return error{errc::deadline_exceeded, "the link's stream: " + text};
    case ::grpc::StatusCode::UNAVAILABLE:
      // gRPC's keepalive pings went unanswered: the network lost the peer,
      // which may be alive (unreachable, not gone).
      if (text.find("keepalive") != std::string::npos)
        return error{errc::deadline_exceeded,
                     "the network lost the peer: " + text};
      return error{errc::unavailable, "the peer closed the link (" + text + ")"};
    case ::grpc::StatusCode::UNAUTHENTICATED:
    case ::grpc::StatusCode::PERMISSION_DENIED:
      return error{errc::permission_denied, "the link's stream: " + text};
    default:
      return error{errc::unavailable,
                   "the link's stream ended: code "
                     + std::to_string(static_cast<int>(status.error_code()))
                     + " " + text};
  }
}

/// What the peer is told when we break a call off: resource_exhausted as
/// itself, anything else as a cancel (the peer's link then reads "closed").
::grpc::Status status_of(const error& why) {
  return ::grpc::Status{why.code() == errc::resource_exhausted
                          ? ::grpc::StatusCode::RESOURCE_EXHAUSTED
                          : ::grpc::StatusCode::CANCELLED,
                        why.message()};
}

} // namespace

grpc_link::grpc_link(peer_identity peer, const transport_limits& limits,
                     liveness live, bool server)
  : peer_(std::move(peer)),
    limits_(limits),
    live_(live),
    server_(server),
    frame_limit_(limits.max_frame),
    last_read_(now_rep()),
    last_sent_(now_rep()) {
}

void grpc_link::attach(call_ops* ops) {
  std::lock_guard guard{mu_};
  ops_ = ops;
}

template <class F>
void grpc_link::with_call(lock_type& lock, F&& fn) {
  ++in_call_;
  auto* ops = ops_;
  lock.unlock();
  fn(*ops);
  lock.lock();
  --in_call_;
}

// -- reading -----------------------------------------------------------------

void grpc_link::start(std::shared_ptr<link_events> events) {
  lock_type lock{mu_};
  started_ = true;
  last_read_ = now_rep();
  if (done_) {
    // The call ended before anyone listened: say so now.
    auto why = reason_.value_or(error{errc::unavailable, "the link ended"});
    lock.unlock();
    events->on_closed(why);
    return;
  }
  events_ = std::move(events);
  if (pauses_ == 0 && !reading_)
    start_read(lock);
}

/// Starts the next read if reading may go on (reading_ is set either way
/// by the caller's protocol: see on_read_done).
void grpc_link::start_read(lock_type& lock) {
  if (read_over_ || released_ || aborted_ || !started_) {
    reading_ = false;
    return;
  }
  reading_ = true;
  with_call(lock, [this](call_ops& ops) { ops.read(&incoming_); });
}

void grpc_link::on_read_done(bool ok) {
  lock_type lock{mu_};
  if (!ok) {
    reading_ = false;
    read_over_ = true;
    if (server_ && !closing_) {
      // The client half-closed: it is done with the link. Write what is
      // queued, then finish.
      if (!reason_)
        reason_ = error{errc::unavailable, "the peer closed the link"};
      closing_ = true;
      close_by_ = clock::now() + close_linger;
    }
    maybe_end(lock);
    maybe_release(lock);
    return;
  }
  last_read_ = now_rep();
  auto size = incoming_.Length();
  auto limit = frame_limit_.load(std::memory_order_acquire);
  if (size > limit) {
    reading_ = false;
    incoming_.Clear();
    break_off(lock, error{errc::resource_exhausted,
                          "a frame of " + std::to_string(size)
                            + " bytes is over the limit of "
                            + std::to_string(limit)});
    return;
  }
  // A heartbeat says only that the peer lives; frames that come after a
  // local close are not handed over (the link is going).
  if (size > 0 && !closing_ && events_) {
    auto events = events_;
    lock.unlock(); // reading_ stays set: no other read starts meanwhile
    deliver(events);
    bool more = events->wants_more();
    lock.lock();
    if (!more)
      ++pauses_;
  } else {
    incoming_.Clear();
  }
  if (pauses_ > 0)
    reading_ = false;
  else
    start_read(lock);
}

/// Hands the frame read over: in place when the receiver takes it so, as a
/// string otherwise.
void grpc_link::deliver(std::shared_ptr<link_events>& events) {
  ::grpc::Slice single;
  if (incoming_.TrySingleSlice(&single).ok()) {
    std::string_view bytes{reinterpret_cast<const char*>(single.begin()),
                           single.size()};
    if (!events->on_frame_here(bytes))
      events->on_frame(std::string{bytes});
    incoming_.Clear();
    return;
  }
  std::vector<::grpc::Slice> slices;
  (void)incoming_.Dump(&slices);
  std::string out;
  {
    std::lock_guard guard{spare_mu_};
    out = std::move(spare_);
  }
  out.clear();
  out.reserve(incoming_.Length());
  for (const auto& slice : slices)
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  incoming_.Clear();
  events->on_frame(std::move(out));
}

void grpc_link::pause_reading() {
  std::lock_guard guard{mu_};
  ++pauses_;
}

void grpc_link::resume_reading() {
  lock_type lock{mu_};
  if (--pauses_ > 0)
    return;
  last_read_ = now_rep(); // silence while paused was ours
  if (!reading_)
    start_read(lock);
}

void grpc_link::limit_frames(std::size_t max_frame) {
  frame_limit_.store(std::min(max_frame, limits_.max_frame),
                     std::memory_order_release);
}

void grpc_link::recycle(std::string buffer) {
  if (buffer.capacity() < spare_from)
    return;
  std::lock_guard guard{spare_mu_};
  if (buffer.capacity() > spare_.capacity())
    spare_ = std::move(buffer);
}

// -- writing -----------------------------------------------------------------

expected<void> grpc_link::write(frame out) {
  auto size = out.size();
  if (size > limits_.max_frame)
    return error{errc::resource_exhausted,
                 "a frame of " + std::to_string(size)
                   + " bytes is over the limit of "
                   + std::to_string(limits_.max_frame)};
  auto buffer = to_buffer(std::move(out));
  lock_type lock{mu_};
  if (closing_ || released_)
    return error{errc::unavailable, "the link is closed"};
  if (queued_bytes_ + size > limits_.max_queued)
    return error{errc::resource_exhausted, "the link's outbound queue is full"};
  queued_bytes_ += size;
  queue_.push_back({std::move(buffer), size});
  if (!writing_)
    start_write(lock);
  return {};
}

void grpc_link::start_write(lock_type& lock) {
  if (queue_.empty() || ended_ || aborted_ || released_)
    return;
  writing_ = true;
  in_flight_ = std::move(queue_.front());
  queue_.pop_front();
  with_call(lock, [this](call_ops& ops) { ops.write(&in_flight_.buffer); });
}

void grpc_link::on_write_done(bool ok) {
  lock_type lock{mu_};
  queued_bytes_ -= in_flight_.size;
  in_flight_ = {};
  writing_ = false;
  last_sent_ = now_rep();
  if (!ok) {
    // The stream is broken: nothing more leaves, and the read side (or
    // the closing deadline) ends the link.
    queued_bytes_ = 0;
    queue_.clear();
    if (!closing_) {
      closing_ = true;
      close_by_ = clock::now() + close_linger;
    }
    maybe_release(lock);
  } else if (!queue_.empty()) {
    start_write(lock);
  } else {
    maybe_end(lock);
    maybe_release(lock);
  }
  if (wants_room_ && queued_bytes_ <= limits_.max_queued / 2) {
    wants_room_ = false;
    auto events = events_;
    lock.unlock();
    if (events)
      events->on_writable();
  }
}

void grpc_link::on_writes_done() {
  // The half-close went out; the server's finish (a failed read here)
  // follows.
}

bool grpc_link::writable() {
  std::lock_guard guard{mu_};
  if (queued_bytes_ <= limits_.max_queued / 2)
    return true;
  wants_room_ = true; // on_write_done() calls on_writable()
  return false;
}

// -- closing -----------------------------------------------------------------

void grpc_link::close() {
  lock_type lock{mu_};
  if (closing_)
    return;
  closing_ = true;
  close_by_ = clock::now() + close_linger;
  if (!reason_)
    reason_ = error{errc::cancelled, "closed locally"};
  maybe_end(lock);
  maybe_release(lock);
}

/// Ends our writes once the queue is written.
void grpc_link::maybe_end(lock_type& lock) {
  if (!closing_ || ended_ || aborted_ || released_ || writing_
      || !queue_.empty())
    return;
  ended_ = true;
  if (!server_) // the server's end is its Finish, in maybe_release()
    with_call(lock, [](call_ops& ops) { ops.end_writes(); });
}

/// Gives the call back to gRPC once nothing more will be asked of it.
void grpc_link::maybe_release(lock_type& lock) {
  if (released_ || in_call_ > 0 || ops_ == nullptr)
    return;
  bool ready = server_ ? ended_ || aborted_
                       // The client's call ends with its status; a read
                       // that failed says it came. Without a read in flight
                       // (never started, or cancelled) nothing waits for it.
                       : read_over_ || aborted_ || (ended_ && !reading_);
  if (!ready)
    return;
  released_ = true;
  auto* ops = ops_;
  lock.unlock();
  ops->release();
  lock.lock();
}

void grpc_link::break_off(lock_type& lock, error why) {
  if (!reason_)
    reason_ = std::move(why);
  if (!closing_) {
    closing_ = true;
    close_by_ = clock::now();
  }
  queue_.clear();
  queued_bytes_ = in_flight_.size;
  if (!aborted_ && !released_) {
    aborted_ = true;
    auto status = status_of(*reason_);
    with_call(lock, [&status](call_ops& ops) { ops.abort(status); });
  }
  maybe_release(lock);
}

void grpc_link::fail(error why) {
  lock_type lock{mu_};
  break_off(lock, std::move(why));
}

void grpc_link::on_cancel() {
  lock_type lock{mu_};
  if (!reason_)
    reason_ = error{errc::unavailable, "the peer closed the link"};
  // A cancelled call fails every operation; it only needs its Finish.
  closing_ = true;
  aborted_ = true;
  read_over_ = true;
  queue_.clear();
  queued_bytes_ = in_flight_.size;
  maybe_release(lock);
}

void grpc_link::on_done(const ::grpc::Status& status) {
  lock_type lock{mu_};
  done_ = true;
  if (!reason_)
    reason_ = reason_of(status);
  auto events = std::move(events_);
  auto why = *reason_;
  lock.unlock();
  if (events)
    events->on_closed(why);
}

// -- liveness ----------------------------------------------------------------

bool grpc_link::tick(clock::time_point now) {
  lock_type lock{mu_};
  if (done_)
    return false;
  if (released_)
    return true; // gRPC ends the call; on_done follows
  auto since = [&](const std::atomic<clock::rep>& then) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
      now - clock::time_point{clock::duration{then.load()}});
  };
  if (closing_) {
    if (now >= close_by_ && !aborted_)
      break_off(lock, error{errc::cancelled,
                            "closed locally (unsent frames dropped)"});
    else
      maybe_release(lock);
    return true;
  }
  if (live_.silence.count() > 0 && started_) {
    if (pauses_ > 0)
      last_read_ = now.time_since_epoch().count(); // not reading: not silence
    else if (since(last_read_) >= live_.silence) {
      break_off(lock, error{errc::deadline_exceeded,
                            "nothing came from the peer for "
                              + std::to_string(since(last_read_).count())
                              + " ms"});
      return true;
    }
  }
  if (live_.heartbeat.count() > 0 && !writing_ && queue_.empty()
      && since(last_sent_) >= live_.heartbeat) {
    queue_.push_back({to_buffer(frame{}), 0});
    start_write(lock);
  }
  return true;
}

} // namespace courier::grpc_tier
