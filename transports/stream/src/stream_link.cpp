#include "courier/stream/stream_link.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <boost/asio/post.hpp>

namespace courier::stream {

namespace {

namespace asio = boost::asio;

/// Bytes read from the socket at a time; a frame larger than this is read
/// straight into its own string.
constexpr std::size_t read_buffer_size = std::size_t{64} << 10;

/// How long a closing link may take to send what it queued; then it shuts
/// with the rest unsent (a peer that stopped reading).
constexpr auto close_linger = std::chrono::seconds{2};

/// Receives one reader makes in a row (each at most read_buffer_size, or
/// the rest of a large frame) before it lets others have the thread.
constexpr int max_receives_per_turn = 16;

/// Parts handed to one gathering send, and bytes the I/O thread sends
/// before it lets other links have the thread.
constexpr std::size_t max_parts = 64;
constexpr std::size_t max_bytes_per_turn = std::size_t{1} << 20;

error closed_by_peer() {
  return error{errc::unavailable, "the peer closed the link"};
}

error from_errno(int code) {
  if (code == ECONNRESET || code == EPIPE)
    return closed_by_peer();
  // The network gave up on the peer (retransmissions unanswered, no route
  // left): the peer may be alive, but cannot be reached.
  if (code == ETIMEDOUT || code == EHOSTUNREACH || code == ENETUNREACH)
    return error{errc::deadline_exceeded,
                 std::string{"the network lost the peer: "}
                   + std::strerror(code)};
  return error{errc::unavailable,
               std::string{"link error: "} + std::strerror(code)};
}

error from_asio(boost::system::error_code ec) {
  if (ec == asio::error::eof || ec == asio::error::connection_reset
      || ec == asio::error::broken_pipe)
    return closed_by_peer();
  if (ec == asio::error::operation_aborted)
    return error{errc::cancelled, "closed locally"};
  return error{errc::unavailable, "link error: " + ec.message()};
}

/// The protocol to hand a released descriptor back to Asio with.
boost::asio::generic::stream_protocol protocol_of(int fd) {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  return {local.ss_family, 0};
}

std::chrono::steady_clock::rep now() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

} // namespace

// -- channel ---------------------------------------------------------------------

std::size_t plain_channel::receive(iovec* parts, std::size_t count,
                                   std::optional<error>& failure) {
  msghdr msg{};
  msg.msg_iov = parts;
  msg.msg_iovlen = count;
  for (;;) {
    auto n = ::recvmsg(fd_, &msg, MSG_DONTWAIT);
    if (n > 0)
      return static_cast<std::size_t>(n);
    if (n == 0) {
      failure = closed_by_peer();
      return 0;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      failure = from_errno(errno);
    return 0;
  }
}

std::size_t plain_channel::send(const iovec* parts, std::size_t count,
                                std::optional<error>& failure) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(parts);
  msg.msg_iovlen = count;
  for (;;) {
    auto n = ::sendmsg(fd_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
      return static_cast<std::size_t>(n);
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      failure = from_errno(errno);
    return 0;
  }
}

// -- outbound_frame ----------------------------------------------------------------

outbound_frame::outbound_frame(frame out) : body(std::move(out)) {
  auto size = static_cast<std::uint32_t>(body.size());
  header[0] = static_cast<unsigned char>(size);
  header[1] = static_cast<unsigned char>(size >> 8);
  header[2] = static_cast<unsigned char>(size >> 16);
  header[3] = static_cast<unsigned char>(size >> 24);
}

// -- stream_link -------------------------------------------------------------------

stream_link::stream_link(stream::socket socket, std::unique_ptr<channel> bytes,
                         peer_identity peer, const transport_limits& limits,
                         liveness live)
  : socket_(std::move(socket)),
    fd_(socket_.native_handle()),
    protocol_(protocol_of(fd_)),
    bytes_(std::move(bytes)),
    peer_(std::move(peer)),
    limits_(limits),
    live_(live),
    frame_limit_(limits.max_frame),
    last_read_(now()),
    last_sent_(now()),
    in_(read_buffer_size) {
}

void stream_link::start(std::shared_ptr<link_events> events) {
  asio::post(socket_.get_executor(), [self = shared_from_this(), events] {
    {
      std::lock_guard guard{self->read_mu_};
      self->events_ = std::move(events);
      self->last_read_ = now();
      self->arm();
    }
    self->settle_polling();
    if (self->live_.heartbeat.count() > 0 || self->live_.silence.count() > 0) {
      self->ticker_.emplace(self->socket_.get_executor());
      self->tick();
    }
  });
}

expected<void> stream_link::write(frame body) {
  return write(std::move(body), false);
}

expected<void> stream_link::write_more(frame body) {
  return write(std::move(body), true);
}

void stream_link::flush() {
  std::lock_guard guard{mu_};
  if (!writing_ && !pending_.empty())
    send_pending();
}

/// Queues a frame; unless `more` come, sends the queue straight from this
/// thread when the I/O thread is not sending.
expected<void> stream_link::write(frame body, bool more) {
  if (body.size() > limits_.max_frame)
    return error{errc::resource_exhausted,
                 "a frame of " + std::to_string(body.size())
                   + " bytes is over the limit of "
                   + std::to_string(limits_.max_frame)};
  outbound_frame out{std::move(body)};
  std::lock_guard guard{mu_};
  if (closed_)
    return error{errc::unavailable, "the link is closed"};
  if (queued_bytes_ + out.size() > limits_.max_queued)
    return error{errc::resource_exhausted, "the link's outbound queue is full"};
  queued_bytes_ += out.size();
  pending_.push_back(std::move(out));
  if (!writing_ && !more)
    send_pending();
  return {};
}

void stream_link::pause_reading() {
  // Posted: a reader calling it from inside a hand-over holds read_mu_.
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    std::lock_guard guard{self->read_mu_};
    ++self->pauses_;
  });
}

void stream_link::resume_reading() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    std::lock_guard guard{self->read_mu_};
    if (--self->pauses_ == 0) {
      self->read_waits_ = false;
      self->last_read_ = now(); // silence while paused was ours
      self->arm(); // also reads what a poller left when it paused
    }
  });
}

void stream_link::limit_frames(std::size_t max_frame) {
  frame_limit_.store(std::min(max_frame, limits_.max_frame),
                     std::memory_order_release);
}

void stream_link::recycle(std::string buffer) {
  if (buffer.capacity() < read_buffer_size)
    return; // small frames come out of in_
  std::lock_guard guard{spare_mu_};
  if (buffer.capacity() > spare_.capacity())
    spare_ = std::move(buffer);
}

bool stream_link::writable() {
  std::lock_guard guard{mu_};
  if (queued_bytes_ <= limits_.max_queued / 2)
    return true;
  wants_room_ = true; // on_write_ready() calls on_writable()
  return false;
}

/// Closes once the frames queued so far are sent.
void stream_link::close() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (self->closing_)
      return;
    self->closing_ = true;
    self->settle_polling(); // the socket back in the reactor
    self->close_by_ = clock::now() + close_linger;
    {
      std::lock_guard guard{self->mu_};
      if (!self->writing_ && !self->pending_.empty())
        self->send_pending(); // frames held back for more
    }
    self->linger_.emplace(self->socket_.get_executor());
    self->finish_close();
  });
}

/// I/O thread, closing: shuts once the queue is sent and, on a network
/// socket, the peer has taken every byte (TCP queues the end of the stream
/// behind bytes the kernel still holds, so a peer that does not read would
/// never see it); at close_by_ at the latest, with a reset and the rest
/// dropped. Bounded: a peer that does not read cannot keep the link, and
/// what is queued for it, alive.
void stream_link::finish_close() {
  if (shut_)
    return;
  bool sending;
  {
    std::lock_guard guard{mu_};
    sending = writing_;
  }
  int unsent = 0;
  boost::system::error_code ec;
  auto local = socket_.local_endpoint(ec);
  if (!sending && !ec && local.protocol().family() != AF_UNIX)
    ::ioctl(socket_.native_handle(), SIOCOUTQ, &unsent);
  if (!sending && unsent <= 0)
    return shut(error{errc::cancelled, "closed locally"});
  if (clock::now() >= close_by_)
    return shut(error{errc::cancelled, "closed locally (unsent frames dropped)"},
                true);
  linger_->expires_after(std::chrono::milliseconds{20});
  linger_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec)
      self->finish_close();
  });
}

// -- writing ------------------------------------------------------------------------

/// Under mu_: sends the queue, in gathering sends, as far as the socket
/// takes it without blocking (so writers stay in order and never meet the
/// I/O thread); what is left is the I/O thread's (writing_), which sends it
/// when the socket has room.
void stream_link::send_pending() {
  std::array<iovec, max_parts> parts;
  std::size_t turn = 0;
  while (!pending_.empty() && turn < max_bytes_per_turn) {
    std::size_t count = 0;
    for (auto& frame : pending_) {
      frame.unsent([&](const char* data, std::size_t size) {
        parts[count++] = iovec{const_cast<char*>(data), size};
        return count < max_parts;
      });
      if (count == max_parts)
        break;
    }
    std::optional<error> failure;
    auto sent = bytes_->send(parts.data(), count, failure);
    if (failure) {
      // The peer stopped reading (it closed). Its last frames, a refusal
      // say, may still wait in our receive buffer: stop writing, keep
      // reading, and close at its end of stream.
      closed_ = true;
      pending_.clear();
      queued_bytes_ = 0;
      return;
    }
    if (sent == 0)
      break; // the socket is full
    last_sent_.store(now(), std::memory_order_relaxed);
    turn += sent;
    while (sent > 0) {
      auto& front = pending_.front();
      auto left = front.size() - front.sent;
      if (sent < left) {
        front.sent += sent;
        break;
      }
      sent -= left;
      queued_bytes_ -= front.size();
      pending_.pop_front();
    }
  }
  if (pending_.empty() || writing_)
    return;
  writing_ = true;
  asio::post(socket_.get_executor(),
             [self = shared_from_this()] { self->wait_writable(); });
}

/// I/O thread: sends the queue once the socket has room.
void stream_link::wait_writable() {
  {
    std::lock_guard guard{read_mu_};
    if (released_) { // waiting needs the reactor: reading goes back to it
      take_socket_locked();
      arm();
    }
  }
  socket_.async_wait(stream::socket::wait_write,
                     [self = shared_from_this()](boost::system::error_code ec) {
                       self->on_write_ready(ec);
                     });
}

void stream_link::on_write_ready(boost::system::error_code ec) {
  bool room = false;
  bool done = false;
  {
    std::lock_guard guard{mu_};
    if (ec || shut_ || closed_) {
      writing_ = false;
      closed_ = true;
      pending_.clear();
      queued_bytes_ = 0;
      return;
    }
    send_pending();
    if (wants_room_ && queued_bytes_ <= limits_.max_queued / 2) {
      wants_room_ = false;
      room = !closed_; // a failure says so by on_closed
    }
    if (pending_.empty() || closed_) {
      writing_ = false;
      done = true;
    }
  }
  if (room && events_)
    events_->on_writable();
  if (!done)
    wait_writable();
  else if (closing_)
    finish_close();
  else if (polling_ && polling_->polled.load(std::memory_order_acquire)
           && !std::exchange(release_queued_, true))
    polling_->to_release.push_back(weak_from_this()); // at the next look
}

// -- reading ------------------------------------------------------------------------

/// I/O thread, under read_mu_: waits for input, unless paused, shut,
/// failed or waiting already.
void stream_link::arm() {
  if (shut_ || failed_ || armed_ || released_)
    return;
  if (pauses_ > 0) {
    read_waits_ = true; // resume_reading() arms again
    return;
  }
  armed_ = true;
  if (bytes_->holds_input()) { // the socket may have nothing more to say
    asio::post(socket_.get_executor(),
               [self = shared_from_this(), round = wait_round_] {
                 self->on_readable({}, round);
               });
    return;
  }
  socket_.async_wait(stream::socket::wait_read,
                     [self = shared_from_this(), round = wait_round_](
                       boost::system::error_code ec) {
                       self->on_readable(ec, round);
                     });
}

/// I/O thread: the socket has input (or an error), unless the wait was of
/// a round since cancelled by releasing the socket.
void stream_link::on_readable(boost::system::error_code ec,
                              std::uint64_t round) {
  std::optional<error> failure;
  {
    std::lock_guard guard{read_mu_};
    if (round != wait_round_)
      return;
    armed_ = false;
    if (shut_ || failed_)
      return; // failed_: a poller posted the shut
    if (ec)
      failure = from_asio(ec);
    else
      failure = receive();
    if (!failure)
      arm();
  }
  if (failure)
    shut(std::move(*failure));
}

void stream_link::polling_changed() {
  asio::post(socket_.get_executor(),
             [self = shared_from_this()] { self->settle_polling(); });
}

/// I/O thread: out of the reactor while the tier is polled, unless the
/// link waits to write or closes; in it otherwise, its read wait armed.
void stream_link::settle_polling() {
  release_queued_ = false;
  bool release = polling_ && polling_->polled.load(std::memory_order_acquire)
                 && !closing_;
  if (release) {
    std::lock_guard guard{mu_};
    release = !writing_;
  }
  std::lock_guard guard{read_mu_};
  if (shut_ || !events_ || release == released_)
    return;
  if (!release) {
    take_socket_locked();
    arm();
    return;
  }
  boost::system::error_code ec;
  socket_.release(ec); // its read wait ends aborted, of an older round
  if (ec)
    return;
  released_ = true;
  armed_ = false;
  ++wait_round_;
}

/// I/O thread, under read_mu_: the released socket back into the reactor.
/// Should that fail, the link fails (and shut() closes the descriptor).
void stream_link::take_socket_locked() {
  if (!released_)
    return;
  auto ec = rejoin_reactor_locked();
  if (!ec)
    return;
  failed_ = true;
  asio::post(socket_.get_executor(),
             [self = shared_from_this(), why = from_asio(ec)] {
               self->shut(why);
             });
}

/// Under read_mu_: hands the released descriptor back to Asio. On a
/// failure it stays released: ours to close.
boost::system::error_code stream_link::rejoin_reactor_locked() {
  boost::system::error_code ec;
  socket_.assign(protocol_, fd_, ec);
  if (!ec)
    released_ = false;
  return ec;
}

bool stream_link::poll_once() {
  std::unique_lock guard{read_mu_, std::try_to_lock};
  if (!guard.owns_lock() || !events_ || shut_ || failed_ || pauses_ > 0)
    return false;
  auto before = handed_;
  if (auto failure = receive())
    asio::post(socket_.get_executor(),
               [self = shared_from_this(), why = std::move(*failure)] {
                 self->shut(why);
               });
  return handed_ != before;
}

/// Under read_mu_: receives and hands over what the socket holds now,
/// without blocking, until it holds no more, the receiver pauses, or
/// max_receives_per_turn receives were made (a peer that writes without
/// pause then holds neither a polling thread nor the I/O thread). A failure
/// (the end of the stream, a read error, a frame over the limit) marks the
/// link failed and is returned, for the I/O thread to shut it.
std::optional<error> stream_link::receive() {
  for (int turn = 0; turn < max_receives_per_turn && pauses_ == 0; ++turn) {
    std::optional<error> failure;
    auto got = targets_.empty() ? receive_buffered(failure)
                                : receive_large(failure);
    if (failure) {
      failed_ = true;
      return failure;
    }
    if (!got)
      return std::nullopt;
  }
  return std::nullopt;
}

std::size_t stream_link::receive_into(iovec* parts, std::size_t count,
                                      std::optional<error>& failure) {
  auto n = bytes_->receive(parts, count, failure);
  if (n > 0)
    last_read_.store(now(), std::memory_order_relaxed);
  return n;
}

/// Receives into the read buffer and hands over the whole frames in it;
/// false when the socket held nothing.
bool stream_link::receive_buffered(std::optional<error>& failure) {
  if (in_begin_ > 0) { // keep the unparsed tail at the front
    std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  iovec part{in_.data() + in_end_, in_.size() - in_end_};
  auto n = receive_into(&part, 1, failure);
  if (n == 0)
    return false;
  in_end_ += n;
  parse(failure);
  return true;
}

/// Hands over every whole frame in the buffer (and skips heartbeats); a
/// frame larger than the buffer is then read on its own (targets_).
void stream_link::parse(std::optional<error>& failure) {
  const auto limit = frame_limit_.load(std::memory_order_acquire);
  while (in_end_ - in_begin_ >= 4) {
    const auto* at = reinterpret_cast<const unsigned char*>(in_.data())
                     + in_begin_;
    std::size_t size = std::uint32_t{at[0]} | std::uint32_t{at[1]} << 8
                       | std::uint32_t{at[2]} << 16
                       | std::uint32_t{at[3]} << 24;
    if (size > limit) {
      deliver_ready(); // the frames before it were fine
      failure = error{errc::resource_exhausted,
                      "the peer sent a frame of " + std::to_string(size)
                        + " bytes, over the limit of " + std::to_string(limit)};
      return;
    }
    auto have = in_end_ - in_begin_ - 4;
    if (have >= size) {
      if (size > 0) // an empty frame is a heartbeat
        ready_.emplace_back(in_.data() + in_begin_ + 4, size);
      in_begin_ += 4 + size;
      continue;
    }
    if (4 + size <= in_.size())
      break; // it will fit: read more
    deliver_ready();
    start_large(size, have);
    return;
  }
  deliver_ready();
}

/// Starts reading a frame of `size` bytes, larger than the buffer, whose
/// first `have` bytes are at in_begin_ + 4: straight into a string of its
/// own (a recycled one if there is one: its bytes need no clearing), or, if
/// the receiver wants its bulk apart, into two strings.
void stream_link::start_large(std::size_t size, std::size_t have) {
  const char* head = in_.data() + in_begin_ + 4;
  if (events_) {
    auto cut = events_->split({head, have}, size);
    if (cut.size > 0 && cut.at <= have && cut.size <= size - cut.at)
      return start_split(size, have, cut);
  }
  {
    std::lock_guard guard{spare_mu_};
    big_ = std::exchange(spare_, {});
  }
  big_.resize(size);
  std::memcpy(big_.data(), head, have);
  in_begin_ = in_end_ = 0;
  split_reading_ = false;
  targets_ = {iovec{big_.data() + have, size - have}};
}

/// As start_large, in two strings: the run `cut`, and the rest.
void stream_link::start_split(std::size_t size, std::size_t have,
                              frame_range cut) {
  const char* head = in_.data() + in_begin_ + 4;
  split_ = split_frame{};
  split_.bulk_at = cut.at;
  split_.bulk = events_->take_buffer(cut.size);
  if (split_.bulk.capacity() < cut.size) {
    std::lock_guard guard{spare_mu_};
    if (spare_.capacity() >= cut.size)
      split_.bulk = std::exchange(spare_, {});
  }
  split_.bulk.resize(cut.size);
  split_.rest.resize(size - cut.size);
  auto bulk_read = std::min(have - cut.at, cut.size);
  auto rest_read = cut.at + (have - cut.at - bulk_read);
  std::memcpy(split_.rest.data(), head, cut.at);
  std::memcpy(split_.bulk.data(), head + cut.at, bulk_read);
  std::memcpy(split_.rest.data() + cut.at, head + cut.at + bulk_read,
              rest_read - cut.at);
  in_begin_ = in_end_ = 0;
  split_reading_ = true;
  targets_.clear();
  if (bulk_read < cut.size)
    targets_.push_back(
      iovec{split_.bulk.data() + bulk_read, cut.size - bulk_read});
  if (rest_read < split_.rest.size())
    targets_.push_back(iovec{split_.rest.data() + rest_read,
                             split_.rest.size() - rest_read});
  if (targets_.empty())
    finish_large();
}

/// Receives the rest of a large frame; false when the socket held nothing.
bool stream_link::receive_large(std::optional<error>& failure) {
  auto n = receive_into(targets_.data(), targets_.size(), failure);
  if (n == 0)
    return false;
  while (n > 0) {
    auto& front = targets_.front();
    auto step = std::min(n, front.iov_len);
    front.iov_base = static_cast<char*>(front.iov_base) + step;
    front.iov_len -= step;
    n -= step;
    if (front.iov_len == 0)
      targets_.erase(targets_.begin());
  }
  if (targets_.empty())
    finish_large();
  return true;
}

/// Hands over the large frame just read.
void stream_link::finish_large() {
  if (split_reading_)
    hand_over([&](link_events& events) {
      events.on_split_frame(std::exchange(split_, {}));
    });
  else
    deliver(std::exchange(big_, {}));
}

/// Hands what was read to the receiver with `fn(link_events&)`, then stops
/// reading if the receiver has enough (link_events::wants_more).
template <class F>
void stream_link::hand_over(F&& fn) {
  if (!events_)
    return;
  fn(*events_);
  ++handed_;
  if (!events_->wants_more())
    ++pauses_;
}

/// Hands over the frames of one read together.
void stream_link::deliver_ready() {
  if (ready_.empty())
    return;
  hand_over([&](link_events& events) { events.on_frames(ready_); });
  ready_.clear();
}

void stream_link::deliver(std::string frame) {
  hand_over([&](link_events& events) { events.on_frame(std::move(frame)); });
}

// -- liveness -----------------------------------------------------------------------

/// I/O thread, every so often: a heartbeat if nothing was sent for a
/// while; the end of the link if nothing came in for too long.
void stream_link::tick() {
  if (shut_)
    return;
  using std::chrono::milliseconds;
  auto at = now();
  auto since = [&](const std::atomic<clock::rep>& then) {
    return std::chrono::duration_cast<milliseconds>(
      clock::duration{at - then.load(std::memory_order_relaxed)});
  };
  if (live_.silence.count() > 0) {
    bool paused;
    {
      std::lock_guard guard{read_mu_};
      paused = pauses_ > 0;
      if (paused)
        last_read_ = at; // not reading is not silence
    }
    if (!paused && since(last_read_) >= live_.silence) {
      shut(error{errc::deadline_exceeded,
                 "nothing came from the peer for "
                   + std::to_string(since(last_read_).count()) + " ms"});
      return;
    }
  }
  if (live_.heartbeat.count() > 0 && since(last_sent_) >= live_.heartbeat) {
    std::lock_guard guard{mu_};
    if (!closed_ && pending_.empty() && !writing_) {
      pending_.emplace_back(frame{});
      queued_bytes_ += pending_.back().size();
      send_pending();
    }
  }
  // Often enough to keep both bounds within a tenth of their figure.
  auto step = std::min(live_.heartbeat.count() > 0 ? live_.heartbeat
                                                   : live_.silence,
                       live_.silence.count() > 0 ? live_.silence / 10
                                                 : live_.heartbeat);
  ticker_->expires_after(std::max(step, milliseconds{10}));
  ticker_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec)
      self->tick();
  });
}

/// Closes once and reports once; `abort` resets the connection instead of
/// queueing the end of the stream behind bytes the peer will not read (on
/// TCP, the kernel would keep them, and the peer would never learn).
void stream_link::shut(error reason, bool abort) {
  {
    std::lock_guard guard{read_mu_};
    if (shut_)
      return;
    shut_ = true;
  }
  if (linger_)
    linger_->cancel();
  if (ticker_)
    ticker_->cancel();
  {
    std::lock_guard guard{mu_};
    closed_ = true;
  }
  std::shared_ptr<link_events> events;
  {
    // No poller reads from here on (they check shut_ under read_mu_).
    std::lock_guard guard{read_mu_};
    if (released_ && rejoin_reactor_locked()) {
      ::close(fd_); // Asio would not take it back: nobody else will close it
      released_ = false;
    }
    // Closing with unread input makes Linux reset the peer's side, and a
    // reset can swallow our last frames (a refusal, say). Discard what is
    // waiting, unread and unparsed, first; bounded by the socket buffer.
    char sink[4096];
    for (int i = 0; i < 64; ++i)
      if (::recv(socket_.native_handle(), sink, sizeof sink, MSG_DONTWAIT)
          <= 0)
        break;
    boost::system::error_code ignored;
    if (abort) {
      linger now{1, 0};
      ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_LINGER, &now,
                   sizeof now);
    } else {
      socket_.shutdown(stream::socket::shutdown_both, ignored);
    }
    socket_.close(ignored);
    events = std::move(events_);
  }
  if (events)
    events->on_closed(reason);
}

// -- polled_links -------------------------------------------------------------------

polled_links::polled_links(asio::io_context& io) : watchdog_(io) {
}

void polled_links::track(const std::shared_ptr<stream_link>& link) {
  link->follow_polling(state_);
  std::lock_guard guard{mu_};
  auto next = std::make_shared<list>();
  for (const auto& weak : *std::atomic_load(&links_))
    if (!weak.expired())
      next->push_back(weak);
  next->push_back(link);
  std::atomic_store(&links_, std::shared_ptr<const list>{std::move(next)});
}

bool polled_links::poll() {
  state_->polls.fetch_add(1, std::memory_order_relaxed);
  if (!state_->watched.load(std::memory_order_relaxed)
      && !state_->retired.load(std::memory_order_relaxed)
      && !state_->watched.exchange(true, std::memory_order_acq_rel))
    asio::post(watchdog_.get_executor(), [this] {
      polls_seen_ = state_->polls.load(std::memory_order_relaxed);
      watch();
    });
  auto links = std::atomic_load(&links_);
  bool any = false;
  for (const auto& weak : *links)
    if (auto link = weak.lock())
      any |= link->poll_once();
  return any;
}

void polled_links::stopped() {
  set_polled(false);
  // The polls so far came before the sleep: the watch's next look must
  // not count them as polling still going on.
  if (state_->watched.load(std::memory_order_acquire))
    asio::post(watchdog_.get_executor(), [this] {
      polls_seen_ = state_->polls.load(std::memory_order_relaxed);
    });
}

void polled_links::retire() {
  state_->retired.store(true, std::memory_order_release);
  set_polled(false);
  asio::post(watchdog_.get_executor(), [this] { watchdog_.cancel(); });
}

void polled_links::set_polled(bool polled) {
  if (state_->polled.exchange(polled, std::memory_order_acq_rel) == polled)
    return;
  for (const auto& weak : *std::atomic_load(&links_))
    if (auto link = weak.lock())
      link->polling_changed();
}

/// I/O thread, every watchdog_period while polls come: a whole period of
/// polls releases the links; a period without one takes them back and
/// ends the watch (the next poll starts another).
void polled_links::watch() {
  watchdog_.expires_after(watchdog_period);
  watchdog_.async_wait([this](boost::system::error_code ec) {
    auto polls = state_->polls.load(std::memory_order_relaxed);
    if (ec || state_->retired.load(std::memory_order_acquire)
        || polls == polls_seen_) {
      // Polling ended (or the tier stops): the links rejoin the reactor,
      // those waiting to leave it again with them.
      state_->to_release.clear();
      state_->watched.store(false, std::memory_order_release);
      if (!ec)
        set_polled(false);
      return;
    }
    polls_seen_ = polls;
    set_polled(true);
    // Links that rejoined the reactor to write leave it again.
    for (const auto& weak : std::exchange(state_->to_release, {}))
      if (auto link = weak.lock())
        link->polling_changed();
    watch();
  });
}

// -- io_thread ----------------------------------------------------------------------

io_thread::io_thread() : work_(asio::make_work_guard(io_)) {
  std::promise<void> done;
  finished_ = done.get_future();
  thread_ = std::thread{[this, done = std::move(done)]() mutable {
    io_.run();
    done.set_value();
  }};
}

io_thread::~io_thread() {
  stop();
}

void io_thread::stop() {
  if (!thread_.joinable())
    return;
  work_.reset();
  if (finished_.wait_for(close_linger) != std::future_status::ready)
    io_.stop();
  thread_.join();
}

} // namespace courier::stream

