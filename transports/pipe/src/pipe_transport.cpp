#include "courier/pipe/pipe_transport.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

namespace courier::pipe {

namespace {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

/// One frame on its way out: its length prefix, its body, and how many of
/// their bytes are written already.
struct outbound_frame {
  explicit outbound_frame(frame out) : body(std::move(out)) {
    auto size = static_cast<std::uint32_t>(body.size());
    header = {static_cast<unsigned char>(size),
              static_cast<unsigned char>(size >> 8),
              static_cast<unsigned char>(size >> 16),
              static_cast<unsigned char>(size >> 24)};
  }

  std::size_t size() const noexcept {
    return header.size() + body.size();
  }

  /// Calls `fn(const char*, std::size_t)` for the bytes not yet written,
  /// part by part, while it returns true.
  template <class F>
  void unwritten(F&& fn) const {
    auto skip = written;
    bool more = true;
    auto visit = [&](std::string_view part) {
      if (!more)
        return;
      if (skip >= part.size()) {
        skip -= part.size();
        return;
      }
      more = fn(part.data() + skip, part.size() - skip);
      skip = 0;
    };
    visit(std::string_view{reinterpret_cast<const char*>(header.data()),
                           header.size()});
    body.for_each_part(visit);
  }

  std::array<unsigned char, 4> header;
  frame body;
  std::size_t written = 0;
};

/// Bytes read from the socket at a time; a frame larger than this is read
/// straight into its own string.
constexpr std::size_t read_buffer_size = std::size_t{64} << 10;

/// How long a closing link may take to write what it queued; then it shuts
/// with the rest unwritten (a peer that stopped reading).
constexpr auto close_linger = std::chrono::seconds{2};

/// Receives one reader makes in a row (each at most read_buffer_size, or
/// the rest of a large frame) before it lets others have the thread.
constexpr int max_receives_per_turn = 16;

/// Frames (or bytes) handed to one gathering write.
constexpr std::size_t max_batch_frames = 64;
constexpr std::size_t max_batch_bytes = std::size_t{1} << 20;

/// One AF_UNIX connection. Reads happen on the I/O thread, or on a
/// scheduler thread that polls the tier (see "reading"). A write goes
/// straight to the socket from the writer's thread when nothing is queued
/// (no hop to the I/O thread); otherwise it joins the queue, which the I/O
/// thread writes in batches, one gathering write for many frames.
class pipe_link final : public link,
                        public std::enable_shared_from_this<pipe_link> {
public:
  pipe_link(stream::socket socket, const transport_limits& limits)
    : socket_(std::move(socket)),
      limits_(limits),
      frame_limit_(limits.max_frame),
      peer_(kernel_peer_of(socket_.native_handle())),
      in_(read_buffer_size) {
  }

  void start(std::shared_ptr<link_events> events) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), events] {
      std::lock_guard guard{self->read_mu_};
      self->events_ = std::move(events);
      self->arm();
    });
  }

  expected<void> write(frame body) override {
    return write(std::move(body), false);
  }

  expected<void> write_more(frame body) override {
    return write(std::move(body), true);
  }

  void flush() override {
    std::lock_guard guard{mu_};
    if (!writing_ && !pending_.empty())
      write_pending();
  }

  /// Queues a frame; unless `more` come, writes the queue straight from this
  /// thread when the I/O thread is not writing.
  expected<void> write(frame body, bool more) {
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
      return error{errc::resource_exhausted,
                   "the link's outbound queue is full"};
    queued_bytes_ += out.size();
    pending_.push_back(std::move(out));
    if (!writing_ && !more)
      write_pending();
    return {};
  }

  void pause_reading() override {
    // Posted: a reader calling it from inside a hand-over holds read_mu_.
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      std::lock_guard guard{self->read_mu_};
      ++self->pauses_;
    });
  }

  void resume_reading() override {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      std::lock_guard guard{self->read_mu_};
      if (--self->pauses_ == 0) {
        self->read_waits_ = false;
        self->arm(); // also reads what a poller left when it paused
      }
    });
  }

  void limit_frames(std::size_t max_frame) override {
    frame_limit_.store(std::min(max_frame, limits_.max_frame),
                       std::memory_order_release);
  }

  void recycle(std::string buffer) override {
    if (buffer.capacity() < read_buffer_size)
      return; // small frames come out of in_
    std::lock_guard guard{spare_mu_};
    if (buffer.capacity() > spare_.capacity())
      spare_ = std::move(buffer);
  }

  bool writable() override {
    std::lock_guard guard{mu_};
    if (queued_bytes_ <= limits_.max_queued / 2)
      return true;
    wants_room_ = true; // on_written() calls on_writable()
    return false;
  }

  /// The owner let go: close (in the background, bounded by stop()).
  void release() {
    close();
  }

  /// Closes once the frames queued so far are written.
  void close() override {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      bool idle;
      {
        std::lock_guard guard{self->mu_};
        if (!self->writing_ && !self->pending_.empty()) {
          self->writing_ = true; // frames held back for more: write them
          self->drain_locked();
        }
        idle = !self->writing_;
      }
      if (idle) {
        self->shut(error{errc::cancelled, "closed locally"});
        return;
      }
      // Bounded: a peer that does not read cannot keep the link, and what
      // is queued for it, alive.
      self->linger_.emplace(self->socket_.get_executor());
      self->linger_->expires_after(close_linger);
      self->linger_->async_wait([self](boost::system::error_code ec) {
        if (!ec)
          self->shut(error{errc::cancelled, "closed locally (unwritten "
                                            "frames dropped)"});
      });
    });
  }

  const peer_identity& peer() const noexcept override {
    return peer_;
  }

private:
  friend class pipe_transport; // poll_once()

  // -- writing ------------------------------------------------------------------

  /// With the I/O thread not writing: writes the queue from this thread, in
  /// gathering writes, as far as the socket takes it without blocking (under
  /// mu_, so writers stay in order and never meet the I/O thread); what is
  /// left goes to the I/O thread, which also finds and reports failures.
  void write_pending() {
    constexpr std::size_t max_parts = 64;
    std::array<iovec, max_parts> parts;
    while (!pending_.empty()) {
      std::size_t count = 0;
      for (auto& frame : pending_) {
        frame.unwritten([&](const char* data, std::size_t size) {
          parts[count++] = iovec{const_cast<char*>(data), size};
          return count < max_parts;
        });
        if (count == max_parts)
          break;
      }
      msghdr msg{};
      msg.msg_iov = parts.data();
      msg.msg_iovlen = count;
      auto n = ::sendmsg(socket_.native_handle(), &msg,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0)
        break;
      auto sent = static_cast<std::size_t>(n);
      while (sent > 0) {
        auto& front = pending_.front();
        auto left = front.size() - front.written;
        if (sent < left) {
          front.written += sent;
          break;
        }
        sent -= left;
        queued_bytes_ -= front.size();
        pending_.pop_front();
      }
      if (!pending_.empty() && pending_.front().written > 0)
        break; // the socket is full
    }
    if (pending_.empty())
      return;
    writing_ = true;
    asio::post(socket_.get_executor(),
               [self = shared_from_this()] { self->drain(); });
  }

  /// On the I/O thread: writes the queue, a batch at a time.
  void drain() {
    std::lock_guard guard{mu_};
    drain_locked();
  }

  void drain_locked() {
    if (pending_.empty() || shut_) {
      writing_ = false;
      if (closing_ && !shut_)
        asio::post(socket_.get_executor(), [self = shared_from_this()] {
          self->shut(error{errc::cancelled, "closed locally"});
        });
      return;
    }
    std::size_t bytes = 0;
    while (!pending_.empty() && batch_.size() < max_batch_frames
           && bytes < max_batch_bytes) {
      bytes += pending_.front().size() - pending_.front().written;
      batch_.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    // The buffers point into batch_, which no longer moves.
    buffers_.clear();
    for (auto& frame : batch_)
      frame.unwritten([&](const char* data, std::size_t size) {
        buffers_.push_back(asio::buffer(data, size));
        return true;
      });
    asio::async_write(socket_, buffers_,
                      [self = shared_from_this()](boost::system::error_code ec,
                                                  std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(boost::system::error_code ec) {
    bool room = false;
    {
      std::lock_guard guard{mu_};
      for (auto& frame : batch_)
        queued_bytes_ -= frame.size();
      batch_.clear();
      if (wants_room_ && (ec || queued_bytes_ <= limits_.max_queued / 2)) {
        wants_room_ = false;
        room = !ec; // a failure says so by on_closed
      }
      if (ec) {
        // The peer stopped reading (it closed). Its last frames, a refusal
        // say, may still wait in our receive buffer: stop writing, keep
        // reading, and close at its end of stream.
        closed_ = true;
        writing_ = false;
        pending_.clear();
        queued_bytes_ = 0;
        return;
      }
    }
    if (room && events_)
      events_->on_writable();
    drain();
  }

  // -- reading ------------------------------------------------------------------
  //
  // The I/O thread waits until the socket is readable (async_wait) and then
  // receives what is there without blocking; so do the scheduler threads
  // that poll the tier (scheduler_policy::latency, pipe_transport::poll),
  // which then hand frames to actors with no thread woken. Either way under
  // read_mu_: one reader at a time, so frames reach the receiver one at a
  // time and in order. Only the I/O thread arms waits and shuts the link;
  // a poller that meets the end of the stream or a bad frame leaves it to
  // the I/O thread (post).

  /// I/O thread, under read_mu_: waits for input, unless paused, shut,
  /// failed or waiting already.
  void arm() {
    if (shut_ || failed_ || armed_)
      return;
    if (pauses_ > 0) {
      read_waits_ = true; // resume_reading() arms again
      return;
    }
    armed_ = true;
    socket_.async_wait(stream::socket::wait_read,
                       [self = shared_from_this()](
                         boost::system::error_code ec) {
                         self->on_readable(ec);
                       });
  }

  /// I/O thread: the socket has input (or an error).
  void on_readable(boost::system::error_code ec) {
    std::optional<error> failure;
    {
      std::lock_guard guard{read_mu_};
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

  /// A scheduler thread polling: receives what the socket holds, if no one
  /// else is reading; true if a frame was handed over.
  bool poll_once() {
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
  /// pause then holds neither a polling thread nor the I/O thread, whose
  /// other links and writes wait behind it). A failure (the end of the
  /// stream, a read error, a frame over the limit) marks the link failed and
  /// is returned, for the I/O thread to shut it.
  std::optional<error> receive() {
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

  /// Receives into `parts` without blocking: the bytes received, 0 when the
  /// socket holds none; sets `failure` at the end of the stream or on an
  /// error.
  std::size_t receive_into(iovec* parts, std::size_t count,
                           std::optional<error>& failure) {
    msghdr msg{};
    msg.msg_iov = parts;
    msg.msg_iovlen = count;
    for (;;) {
      auto n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT);
      if (n > 0)
        return static_cast<std::size_t>(n);
      if (n == 0) {
        failure = error{errc::unavailable, "the peer closed the link"};
        return 0;
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      failure = errno == ECONNRESET || errno == EPIPE
                  ? error{errc::unavailable, "the peer closed the link"}
                  : error{errc::unavailable,
                          std::string{"link error: "} + std::strerror(errno)};
      return 0;
    }
  }

  /// Receives into the read buffer and hands over the whole frames in it;
  /// false when the socket held nothing.
  bool receive_buffered(std::optional<error>& failure) {
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

  /// Hands over every whole frame in the buffer; a frame larger than the
  /// buffer is then read on its own (targets_).
  void parse(std::optional<error>& failure) {
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
                          + " bytes, over the limit of "
                          + std::to_string(limit)};
        return;
      }
      auto have = in_end_ - in_begin_ - 4;
      if (have >= size) {
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
  /// own (a recycled one if there is one: its bytes need no clearing), or,
  /// if the receiver wants its bulk apart, into two strings.
  void start_large(std::size_t size, std::size_t have) {
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
  void start_split(std::size_t size, std::size_t have, frame_range cut) {
    const char* head = in_.data() + in_begin_ + 4;
    split_ = split_frame{};
    split_.bulk_at = cut.at;
    split_.bulk = events_->take_buffer();
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

  /// Receives the rest of a large frame; false when the socket held
  /// nothing.
  bool receive_large(std::optional<error>& failure) {
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
  void finish_large() {
    if (split_reading_)
      hand_over([&](link_events& events) {
        events.on_split_frame(std::exchange(split_, {}));
      });
    else
      deliver(std::exchange(big_, {}));
  }

  /// Hands what was read to the receiver with `fn(link_events&)`, then
  /// stops reading if the receiver has enough (link_events::wants_more).
  template <class F>
  void hand_over(F&& fn) {
    if (!events_)
      return;
    fn(*events_);
    ++handed_;
    if (!events_->wants_more())
      ++pauses_;
  }

  /// Hands over the frames of one read together.
  void deliver_ready() {
    if (ready_.empty())
      return;
    hand_over([&](link_events& events) { events.on_frames(ready_); });
    ready_.clear();
  }

  void deliver(std::string frame) {
    hand_over([&](link_events& events) { events.on_frame(std::move(frame)); });
  }

  static error from_asio(boost::system::error_code ec) {
    if (ec == asio::error::eof || ec == asio::error::connection_reset
        || ec == asio::error::broken_pipe)
      return error{errc::unavailable, "the peer closed the link"};
    if (ec == asio::error::operation_aborted)
      return error{errc::cancelled, "closed locally"};
    return error{errc::unavailable, "link error: " + ec.message()};
  }

  /// Closes once and reports once.
  void shut(error reason) {
    {
      std::lock_guard guard{read_mu_};
      if (shut_)
        return;
      shut_ = true;
    }
    if (linger_)
      linger_->cancel();
    {
      std::lock_guard guard{mu_};
      closed_ = true;
    }
    std::shared_ptr<link_events> events;
    {
      // No poller reads from here on (they check shut_ under read_mu_).
      std::lock_guard guard{read_mu_};
      // Closing with unread input makes Linux reset the peer's side, and a
      // reset can swallow our last frames (a refusal, say). Discard what is
      // waiting, unread and unparsed, first; bounded by the socket buffer.
      char sink[4096];
      for (int i = 0; i < 64; ++i)
        if (::recv(socket_.native_handle(), sink, sizeof sink, MSG_DONTWAIT)
            <= 0)
          break;
      boost::system::error_code ignored;
      socket_.shutdown(stream::socket::shutdown_both, ignored);
      socket_.close(ignored);
      events = std::move(events_);
    }
    if (events)
      events->on_closed(reason);
  }

  stream::socket socket_;
  transport_limits limits_;
  std::atomic<std::size_t> frame_limit_; // see limit_frames()
  peer_identity peer_;
  std::optional<asio::steady_timer> linger_; // I/O thread only: see close()
  bool closing_ = false;                  // I/O thread only
  // The reading side, guarded by read_mu_ (see "reading"). events_ is set
  // and cleared by the I/O thread under it, which may read it without.
  std::mutex read_mu_;
  std::shared_ptr<link_events> events_;
  std::vector<char> in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  std::string big_;                // a large frame being read
  split_frame split_;              // or a large frame in two strings
  bool split_reading_ = false;     // which of the two
  std::vector<iovec> targets_;     // what is left of it to read
  std::vector<std::string> ready_; // frames read, to hand over
  std::uint64_t handed_ = 0;       // hand-overs so far (poll_once)
  int pauses_ = 0;                 // see pause_reading
  bool read_waits_ = false;        // arm() once resumed
  bool armed_ = false;             // an async_wait is pending
  bool failed_ = false;            // receive() failed: the I/O thread shuts
  bool shut_ = false;              // written by the I/O thread
  std::mutex mu_;
  std::deque<outbound_frame> pending_;    // guarded by mu_
  std::vector<outbound_frame> batch_;     // guarded by mu_; being written
  std::vector<asio::const_buffer> buffers_; // guarded by mu_; of batch_
  bool wants_room_ = false; // guarded by mu_: writable() said no
  std::mutex spare_mu_;
  std::string spare_; // guarded by spare_mu_: see recycle()
  bool writing_ = false;  // guarded by mu_: the I/O thread owns the socket's
                          // writing side (a batch in flight or queued)
  bool closed_ = false;          // guarded by mu_
  std::size_t queued_bytes_ = 0; // guarded by mu_
};

class pipe_transport final : public transport {
public:
  explicit pipe_transport(const transport_limits& limits)
    : limits_(limits), work_(asio::make_work_guard(io_)) {
    std::promise<void> done;
    finished_ = done.get_future();
    thread_ = std::thread{[this, done = std::move(done)]() mutable {
      io_.run();
      done.set_value();
    }};
  }

  ~pipe_transport() override {
    stop();
  }

  std::string_view name() const noexcept override {
    return "pipe";
  }

  /// Every node of the same machine (boot and network namespace): same
  /// user, another user or another login session alike; whether the peer
  /// may link is the authenticator's call, on its credentials.
  reach_result reach(const node_place& self,
                     const node_place& peer) const override {
    if (!self.same_host(peer))
      return {0, "another host"};
    if (peer.uid != self.uid)
      return {10, "another user (uid " + std::to_string(peer.uid) + ")"};
    if (peer.session != self.session)
      return {10, "another login session"};
    return {10, "same user"};
  }

  /// Listens on <local_dir>/<node>.sock (<node>.<tier>.sock when registered
  /// under another name than "pipe").
  expected<std::string>
  listen(const listen_context& where,
         std::function<void(std::unique_ptr<link>)> on_accept) override {
    if (where.local_dir.empty())
      return error{errc::failed_precondition,
                   "the pipe tier needs a directory for its socket"};
    auto endpoint = where.local_endpoint(name(), ".sock");
    if (endpoint.size() >= sizeof(sockaddr_un::sun_path))
      return error{errc::invalid_argument,
                   "the socket path '" + endpoint + "' is too long"};
    boost::system::error_code ec;
    ::unlink(endpoint.c_str()); // a stale socket of a dead incarnation
    acceptor_.open(stream(), ec);
    if (!ec)
      acceptor_.bind(stream::endpoint(endpoint), ec);
    if (!ec)
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return error{errc::unavailable,
                   "cannot listen on " + endpoint + ": " + ec.message()};
    ::chmod(endpoint.c_str(), 0666);
    endpoint_ = endpoint;
    on_accept_ = std::move(on_accept);
    asio::post(io_, [this] { accept_next(); });
    return endpoint;
  }

  expected<std::unique_ptr<link>> connect(const std::string& endpoint,
                                          deadline) override {
    // A local connect completes or fails at once: no need to wait.
    stream::socket socket{io_};
    boost::system::error_code ec;
    socket.connect(stream::endpoint(endpoint), ec);
    if (ec)
      return error{errc::unavailable,
                   "cannot connect to " + endpoint + ": " + ec.message()};
    auto impl = std::make_shared<pipe_link>(std::move(socket), limits_);
    track(impl);
    return std::unique_ptr<link>{new shared_link<pipe_link>(std::move(impl))};
  }

  /// Receives, on the calling thread, what the links' sockets hold.
  bool poll() override {
    auto links = std::atomic_load(&links_);
    bool any = false;
    for (const auto& weak : *links)
      if (auto link = weak.lock())
        any |= link->poll_once();
    return any;
  }

  void stop() override {
    if (stopped_.exchange(true))
      return;
    asio::post(io_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
    });
    // Let links that are closing write what they queued; the I/O thread
    // ends when nothing is left to do. Bounded: a peer that stopped reading
    // cannot hold us.
    work_.reset();
    if (finished_.wait_for(std::chrono::seconds{2})
        != std::future_status::ready)
      io_.stop();
    if (thread_.joinable())
      thread_.join();
    if (!endpoint_.empty())
      ::unlink(endpoint_.c_str());
  }

private:
  void accept_next() {
    acceptor_.async_accept([this](boost::system::error_code ec,
                                  stream::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open())
        return;
      if (!ec) {
        auto impl = std::make_shared<pipe_link>(std::move(socket), limits_);
        track(impl);
        on_accept_(std::unique_ptr<link>{new shared_link<pipe_link>(std::move(impl))});
      }
      accept_next();
    });
  }

  /// Adds a link to those poll() reads (and forgets the links gone).
  void track(const std::shared_ptr<pipe_link>& link) {
    std::lock_guard guard{track_mu_};
    auto next = std::make_shared<std::vector<std::weak_ptr<pipe_link>>>();
    for (const auto& weak : *links_)
      if (!weak.expired())
        next->push_back(weak);
    next->push_back(link);
    std::atomic_store(&links_,
                      std::shared_ptr<const std::vector<std::weak_ptr<pipe_link>>>{
                        std::move(next)});
  }

  transport_limits limits_;
  std::mutex track_mu_; // one track() at a time
  // What poll() reads: replaced whole, read without a lock.
  std::shared_ptr<const std::vector<std::weak_ptr<pipe_link>>> links_
    = std::make_shared<const std::vector<std::weak_ptr<pipe_link>>>();
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  stream::acceptor acceptor_{io_};
  std::function<void(std::unique_ptr<link>)> on_accept_;
  std::string endpoint_;
  std::thread thread_;
  std::future<void> finished_;
  std::atomic<bool> stopped_{false};
};

} // namespace

transport_factory factory() {
  return [](transport_limits limits) -> expected<std::unique_ptr<transport>> {
    // Room for two of the largest frames with their length prefixes: a
    // writer that waits for writable() never meets a full queue.
    limits.max_queued = std::max(
      limits.max_queued, 2 * (limits.max_frame + sizeof(std::uint32_t)));
    try {
      return std::unique_ptr<transport>{new pipe_transport(limits)};
    } catch (const std::exception& ex) {
      return error{errc::internal,
                   std::string{"cannot start the pipe tier: "} + ex.what()};
    }
  };
}

} // namespace courier::pipe
