#include "courier/shm/shm_transport.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace courier::shm {

namespace {

constexpr std::uint32_t hello_magic = 0x4d485343; // "CSHM"

struct handover {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint64_t capacity;
};

error os_error(const std::string& what) {
  return error{errc::unavailable, what + ": " + std::strerror(errno)};
}

/// Sends our ring's memfd with a small header.
expected<void> send_ring(int sock, int fd, std::uint64_t capacity) {
  handover header{hello_magic, 1, capacity};
  iovec iov{&header, sizeof header};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  auto* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  if (::sendmsg(sock, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof header))
    return os_error("cannot hand over the ring");
  return {};
}

/// Receives the peer's ring: one header and exactly one descriptor.
expected<int> receive_ring(int sock, deadline until) {
  pollfd pfd{sock, POLLIN, 0};
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    until.remaining());
  if (::poll(&pfd, 1, static_cast<int>(std::max<long long>(left.count(), 0)))
      <= 0)
    return error{errc::deadline_exceeded, "the peer did not hand over its ring"};
  handover header{};
  iovec iov{&header, sizeof header};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  auto n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  std::vector<int> fds;
  for (auto* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      auto count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.push_back(fd);
      }
    }
  auto refuse = [&](const std::string& why) -> expected<int> {
    for (int fd : fds)
      ::close(fd);
    return error{errc::invalid_argument, why};
  };
  if (n != static_cast<ssize_t>(sizeof header) || (msg.msg_flags & MSG_CTRUNC))
    return refuse("a malformed ring handover");
  if (header.magic != hello_magic || header.version != 1)
    return refuse("a ring handover of an unknown kind");
  if (fds.size() != 1)
    return refuse("a ring handover without exactly one descriptor");
  return fds.front();
}

using clock_type = std::chrono::steady_clock;

/// One link: our producer into the peer's ring, our consumer of the peer's.
/// Frames are read by the link's reader thread, and also by whoever calls
/// poll_once() (a scheduler's idle thread): one at a time, under read_mu_,
/// so that on_frame still sees them one by one and in order.
class shm_link final : public link,
                       public std::enable_shared_from_this<shm_link> {
public:
  shm_link(int sock, peer_identity peer, producer out, consumer in,
           const transport_options& options, const transport_limits& limits)
    : sock_(sock),
      peer_(peer),
      out_(std::move(out)),
      in_(std::move(in)),
      options_(options),
      limits_(limits),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      frame_limit_(limits.max_frame),
      applied_limit_(limits.max_frame) {
  }

  ~shm_link() override {
    release();
    ::close(wake_);
    ::close(sock_);
  }

  /// The owner let go: close, and wait for the link's threads here, on the
  /// owner's thread (a poller may hold the last reference); idempotent.
  /// The owner may also let go on one of those threads (the frame it hands
  /// over can end the actor owning the link): that thread, which holds the
  /// link alive, is not waited for but left to end by itself.
  void release() {
    close();
    std::lock_guard guard{threads_mu_};
    for (auto* thread : {&reader_, &watcher_, &writer_}) {
      if (!thread->joinable())
        continue;
      if (thread->get_id() == std::this_thread::get_id())
        thread->detach();
      else
        thread->join();
    }
  }

  void start(std::shared_ptr<link_events> events) override {
    {
      std::lock_guard guard{write_mu_};
      writer_events_ = events;
    }
    {
      std::lock_guard guard{read_mu_};
      events_ = std::move(events);
    }
    std::lock_guard guard{threads_mu_};
    // Each thread holds the link while it runs (see release()).
    reader_ = std::thread{[self = shared_from_this()] { self->read_loop(); }};
    watcher_ = std::thread{[self = shared_from_this()] { self->watch_loop(); }};
  }

  /// Hands over one frame if a whole one is there and nobody else is
  /// reading; never waits. True if it delivered one.
  bool poll_once() {
    std::unique_lock guard{read_mu_, std::try_to_lock};
    if (!guard.owns_lock() || done_ || !events_ || paused_)
      return false;
    // One writer at a time (read_mu_): no read-modify-write needed.
    polls_.store(polls_.load(std::memory_order_relaxed) + 1,
                 std::memory_order_relaxed);
    apply_frame_limit();
    auto got = in_.try_read(poll_buf_);
    if (!got && refuse_frame(got.error()))
      return false;
    if (!got || !*got)
      return false; // errors are the reader thread's to report
    deliver(poll_buf_);
    if (!events_->wants_more())
      pause_reading();
    return true;
  }

  /// Writes at once when the ring has room and nothing waits before the
  /// frame; otherwise queues it for the link's writer thread, which waits
  /// for room, so no caller ever waits for a slow or stalled peer.
  expected<void> write(frame out) override {
    if (out.size() > limits_.max_frame)
      return error{errc::resource_exhausted,
                   "a frame of " + std::to_string(out.size())
                     + " bytes is over the limit of "
                     + std::to_string(limits_.max_frame)};
    std::unique_lock guard{write_mu_};
    if (closed_)
      return error{errc::unavailable, "the link is closed"};
    if (failed_)
      return *failed_;
    if (!draining_ && out_.fits(out.size()))
      return write_now(out); // there is room: it does not wait
    if (queued_bytes_ + out.size() > limits_.max_queued)
      return error{errc::resource_exhausted,
                   "the link's outbound queue is full"};
    queued_bytes_ += out.size();
    queue_.push_back(std::move(out));
    if (!draining_) {
      draining_ = true;
      guard.unlock();
      start_writer();
    } else {
      queued_.notify_one();
    }
    return {};
  }

  bool writable() override {
    std::lock_guard guard{write_mu_};
    if (queued_bytes_ <= limits_.max_queued / 2)
      return true;
    wants_room_ = true; // the writer thread calls on_writable()
    return false;
  }

  void limit_frames(std::size_t max_frame) override {
    frame_limit_.store(std::min(max_frame, limits_.max_frame),
                       std::memory_order_release);
  }

  void pause_reading() override {
    std::lock_guard guard{pause_mu_};
    paused_ = ++pauses_ > 0;
  }

  void resume_reading() override {
    {
      std::lock_guard guard{pause_mu_};
      paused_ = --pauses_ > 0;
    }
    resumed_.notify_all();
  }

  /// Closes at once, or, with frames queued, once the writer thread has
  /// written them (for at most write_timeout).
  void close() override {
    if (closed_.exchange(true))
      return;
    {
      std::lock_guard guard{pause_mu_};
    }
    resumed_.notify_all(); // a paused reader ends
    {
      std::lock_guard guard{write_mu_}; // no write in the middle
      closed_at_ = clock_type::now();
      if (draining_) // what is queued gets write_timeout to leave
        out_.limit_waits(closed_at_ + options_.write_timeout);
      else
        out_.close();
    }
    queued_.notify_all();
    in_.close();
    std::uint64_t one = 1;
    auto n = ::write(wake_, &one, sizeof one);
    (void)n;
  }

  const peer_identity& peer() const noexcept override {
    return peer_;
  }

private:
  /// True if a scheduler polled this link since the reader thread last
  /// asked (`seen` is the reader's): the reader then leaves the ring to the
  /// poller instead of spinning beside it. A counter, not a time: a poller
  /// calls this link millions of times a second, and reading the clock each
  /// time was a sixth of its work.
  bool polled_since(std::uint64_t& seen) const noexcept {
    auto now = polls_.load(std::memory_order_relaxed);
    return std::exchange(seen, now) != now;
  }

  // -- writing ------------------------------------------------------------------

  /// Writes `out` into the ring (under write_mu_, or by the writer thread
  /// while draining_), waiting for room as long as it takes: a close bounds
  /// the wait (producer::limit_waits).
  expected<void> write_now(frame& out) {
    // Up to two parts go into the ring as they are (an envelope and a large
    // field it refers to); more are gathered first.
    std::string_view parts[2];
    int count = 0;
    out.for_each_part([&](std::string_view part) {
      if (count < 2)
        parts[count] = part;
      ++count;
    });
    std::string flat;
    if (count > 2) {
      flat = std::move(out).flatten();
      parts[0] = flat;
      parts[1] = {};
    }
    return out_.write(
      std::as_bytes(std::span{parts[0].data(), parts[0].size()}),
      std::as_bytes(std::span{parts[1].data(), parts[1].size()}),
      deadline::never());
  }

  void start_writer() {
    std::lock_guard guard{threads_mu_};
    if (writer_.joinable()) {
      queued_.notify_one();
      return;
    }
    // It holds the link while it runs (see release()).
    writer_ = std::thread{[self = shared_from_this()] { self->write_loop(); }};
  }

  /// The writer thread: writes the queue in order, waiting for room as
  /// long as it takes (a closed link: until write_timeout after the close),
  /// and says when the queue is down to half (writable()).
  void write_loop() {
    std::unique_lock guard{write_mu_};
    for (;;) {
      queued_.wait(guard, [&] { return !queue_.empty() || closed_.load(); });
      if (queue_.empty()) { // closed, and everything written
        draining_ = false;
        out_.close();
        return;
      }
      auto next = std::move(queue_.front());
      queue_.pop_front();
      auto size = next.size();
      guard.unlock();
      auto written = write_now(next);
      next = frame{}; // lets go of what it kept alive
      guard.lock();
      queued_bytes_ -= size;
      if (!written) { // the peer is gone, the ring broken, or time is up
        failed_ = written.error(); // later writes fail at once
        queued_bytes_ = 0;
        queue_.clear();
        draining_ = false;
        out_.close();
        guard.unlock();
        close(); // the reader ends, and reports a broken ring as the reason
        return;
      }
      bool room = wants_room_ && queued_bytes_ <= limits_.max_queued / 2;
      if (room)
        wants_room_ = false;
      if (queue_.empty())
        draining_ = false; // writers write directly again
      if (room && writer_events_) {
        auto events = writer_events_;
        guard.unlock();
        events->on_writable();
        guard.lock();
      }
    }
  }

  // -- reading ------------------------------------------------------------------

  /// Makes the next read take limit_frames() into account (under read_mu_).
  void apply_frame_limit() {
    auto limit = frame_limit_.load(std::memory_order_acquire);
    if (limit != applied_limit_) {
      in_.limit_messages(limit);
      applied_limit_ = limit;
    }
  }

  /// For a read that failed with `why` (under read_mu_): true, and the link
  /// closes, if it was a frame over a limit lowered by limit_frames(); the
  /// ring skips frames over transport_limits::max_frame and reads on.
  bool refuse_frame(const error& why) {
    if (why.code() != errc::resource_exhausted
        || applied_limit_ >= limits_.max_frame)
      return false;
    refusal_ = error{errc::resource_exhausted,
                     "the peer sent a frame over the limit of "
                       + std::to_string(applied_limit_) + " bytes"};
    close();
    return true;
  }

  /// Hands over the frame read into `buf` (under read_mu_): a large one
  /// with its bulk apart if the receiver asks, copied into a string it
  /// handed back earlier (no fresh memory to fault in).
  void deliver(const std::vector<std::byte>& buf) {
    std::string_view bytes{reinterpret_cast<const char*>(buf.data()),
                           buf.size()};
    if (bytes.size() > split_above) {
      auto cut = events_->split(bytes.substr(0, split_above), bytes.size());
      if (cut.size > 0 && cut.at <= split_above
          && cut.size <= bytes.size() - cut.at) {
        split_frame frame;
        frame.bulk_at = cut.at;
        frame.bulk = events_->take_buffer(cut.size);
        frame.bulk.assign(bytes.substr(cut.at, cut.size));
        frame.rest.reserve(bytes.size() - cut.size);
        frame.rest.append(bytes.substr(0, cut.at));
        frame.rest.append(bytes.substr(cut.at + cut.size));
        events_->on_split_frame(std::move(frame));
        return;
      }
    }
    if (!events_->on_frame_here(bytes))
      events_->on_frame(std::string{bytes});
  }

  /// Frames larger than this are offered to link_events::split(), with this
  /// much of their start.
  static constexpr std::size_t split_above = std::size_t{64} << 10;

  void read_loop() {
    std::vector<std::byte> buf;
    error reason{errc::unavailable, "the peer closed the link"};
    std::uint64_t polls_seen = 0;
    for (;;) {
      // Wait for work without taking it: a poller may take it first.
      if (polled_since(polls_seen)) {
        std::this_thread::sleep_for(std::chrono::microseconds{500});
        continue;
      }
      (void)in_.wait_unread(deadline::never(), options_.policy);
      {
        std::unique_lock pause{pause_mu_};
        if (paused_) {
          resumed_.wait(pause, [&] { return !paused_ || closed_.load(); });
          if (!closed_)
            continue;
        }
      }
      std::lock_guard guard{read_mu_};
      apply_frame_limit();
      auto got = in_.try_read(buf);
      if (got && !*got && in_.mid_message()) { // the rest is on its way
        auto rest = in_.read(buf, deadline::never());
        got = rest ? expected<bool>{true} : expected<bool>{rest.error()};
      }
      if (got) {
        if (*got) {
          deliver(buf);
          if (!events_->wants_more())
            pause_reading();
        }
        continue;
      }
      if (refuse_frame(got.error()))
        break;
      if (got.code() == errc::resource_exhausted)
        continue; // too large: skipped by the ring, the rest goes on
      if (got.code() == errc::cancelled)
        reason = peer_gone_ ? error{errc::unavailable, "the peer is gone"}
                            : error{errc::cancelled, "closed locally"};
      else if (got.code() == errc::data_loss)
        reason = got.error(); // a broken ring: never trust it again
      break;
    }
    std::shared_ptr<link_events> events;
    {
      std::lock_guard guard{read_mu_};
      done_ = true; // no poller delivers after this
      events = events_;
      if (refusal_)
        reason = *refusal_;
    }
    {
      std::lock_guard guard{write_mu_};
      writer_events_.reset(); // no on_writable after on_closed
      if (failed_ && failed_->code() == errc::data_loss)
        reason = *failed_; // our outgoing ring, broken by the peer
    }
    close();
    events->on_closed(reason);
  }

  /// The socket says when the peer is gone, however it went.
  void watch_loop() {
    pollfd fds[2] = {{sock_, POLLIN | POLLRDHUP, 0}, {wake_, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0 && errno == EINTR)
        continue;
      if (fds[1].revents != 0)
        return; // closed locally
      if (fds[0].revents != 0) {
        char c;
        if (::recv(sock_, &c, 1, MSG_DONTWAIT) <= 0) {
          peer_gone_ = true;
          in_.close();  // wakes the reader
          out_.close(); // and a writer waiting for room
          return;
        }
      }
    }
  }

  int sock_;
  peer_identity peer_;
  producer out_;
  consumer in_;
  transport_options options_;
  transport_limits limits_;
  int wake_;
  std::mutex read_mu_;                   // one reader at a time
  std::shared_ptr<link_events> events_;  // guarded by read_mu_
  bool done_ = false;                    // guarded by read_mu_
  std::vector<std::byte> poll_buf_;      // guarded by read_mu_
  std::atomic<std::uint64_t> polls_{0};  // written under read_mu_
  std::atomic<std::size_t> frame_limit_;  // see limit_frames()
  std::size_t applied_limit_;            // guarded by read_mu_
  std::optional<error> refusal_;         // guarded by read_mu_
  std::mutex threads_mu_;
  std::mutex write_mu_;
  std::condition_variable queued_;       // with write_mu_: queue_ or closed_
  std::deque<frame> queue_;              // guarded by write_mu_
  std::size_t queued_bytes_ = 0;         // guarded by write_mu_
  bool draining_ = false;  // guarded by write_mu_: the writer thread owns
                           // the ring until queue_ is empty
  bool wants_room_ = false;              // guarded by write_mu_
  clock_type::time_point closed_at_;     // guarded by write_mu_
  std::optional<error> failed_;          // guarded by write_mu_: why the
                                         // writer thread gave up
  // The writer thread's handle on events_ (for on_writable), without
  // read_mu_, which a reader waiting for a message's rest holds; guarded by
  // write_mu_, cleared before on_closed.
  std::shared_ptr<link_events> writer_events_;
  std::atomic<bool> closed_{false};
  std::mutex pause_mu_;
  std::condition_variable resumed_;
  int pauses_ = 0;                  // guarded by pause_mu_
  std::atomic<bool> paused_{false}; // pauses_ > 0, for pollers
  std::atomic<bool> peer_gone_{false};
  std::thread reader_;
  std::thread watcher_;
  std::thread writer_; // started at the first full ring
};

ring_options ring_settings(const transport_options& options,
                           const transport_limits& limits) {
  ring_options out;
  out.policy = options.policy;
  out.spin_budget = options.spin_budget;
  out.yield_while_spinning = options.yield_while_spinning;
  out.max_message_size = limits.max_frame;
  return out;
}

/// Both sides' half of the handshake once the socket is connected.
expected<std::shared_ptr<shm_link>> establish(int sock, bool connector,
                                          const transport_options& options,
                                          const transport_limits& limits,
                                          deadline until) {
  auto peer = kernel_peer_of(sock);
  if (!peer.kernel || peer.kernel->uid != ::getuid()) {
    ::close(sock); // shared memory only between processes of one user
    return error{errc::permission_denied,
                 "shared memory is only for this user; "
                   + peer.describe() + " is not"};
  }
  auto fail = [&](error why) -> expected<std::shared_ptr<shm_link>> {
    ::close(sock);
    return why;
  };
  auto mine = segment::create(options.ring_capacity);
  if (!mine)
    return fail(mine.error());
  auto peer_fd = expected<int>{errc::internal, "not yet"};
  if (connector) {
    if (auto sent = send_ring(sock, mine->fd(), mine->capacity()); !sent)
      return fail(sent.error());
    peer_fd = receive_ring(sock, until);
  } else {
    peer_fd = receive_ring(sock, until);
    if (peer_fd)
      if (auto sent = send_ring(sock, mine->fd(), mine->capacity()); !sent) {
        ::close(*peer_fd);
        return fail(sent.error());
      }
  }
  if (!peer_fd)
    return fail(peer_fd.error());
  auto theirs = segment::attach(*peer_fd); // validates size, seals, header
  if (!theirs)
    return fail(theirs.error());
  auto settings = ring_settings(options, limits);
  auto out = producer::open(std::move(*mine), settings);
  if (!out)
    return fail(out.error());
  auto in = consumer::open(std::move(*theirs), settings);
  if (!in)
    return fail(in.error());
  return std::make_shared<shm_link>(sock, peer, std::move(*out),
                                    std::move(*in), options, limits);
}

class shm_transport final : public transport {
public:
  shm_transport(transport_options options, transport_limits limits)
    : options_(options),
      limits_(limits),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  }

  ~shm_transport() override {
    stop();
    ::close(wake_);
  }

  std::string_view name() const noexcept override {
    return "shm";
  }

  /// Nodes of the same user on the same host only: the rings are memory
  /// the peer maps, and no other user's process may touch them.
  reach_result reach(const node_place& self,
                     const node_place& peer) const override {
    if (!self.same_host(peer))
      return {0, "another host"};
    if (peer.uid != self.uid)
      return {0, "another user (uid " + std::to_string(peer.uid) + ")"};
    return {20, "same user, same machine"};
  }

  /// Listens for ring handovers on <local_dir>/<node>.shm (<node>.<tier>.shm
  /// when registered under another name than "shm").
  expected<std::string>
  listen(const listen_context& where,
         std::function<void(std::unique_ptr<link>)> on_accept) override {
    if (where.local_dir.empty())
      return error{errc::failed_precondition,
                   "the shm tier needs a directory for its socket"};
    auto endpoint = where.local_endpoint(name(), ".shm");
    sockaddr_un addr{};
    if (endpoint.size() >= sizeof addr.sun_path)
      return error{errc::invalid_argument,
                   "the socket path '" + endpoint + "' is too long"};
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, endpoint.c_str(), endpoint.size() + 1);
    ::unlink(endpoint.c_str());
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
        || ::listen(listener_, 64) != 0)
      return os_error("cannot listen on " + endpoint);
    ::chmod(endpoint.c_str(), 0600); // this user only, as the tier
    endpoint_ = endpoint;
    on_accept_ = std::move(on_accept);
    acceptor_ = std::thread{[this] { accept_loop(); }};
    return endpoint;
  }

  expected<std::unique_ptr<link>> connect(const std::string& endpoint,
                                          deadline until) override {
    int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (endpoint.size() >= sizeof addr.sun_path) {
      ::close(sock);
      return error{errc::invalid_argument, "the socket path is too long"};
    }
    std::memcpy(addr.sun_path, endpoint.c_str(), endpoint.size() + 1);
    if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      auto why = os_error("cannot connect to " + endpoint);
      ::close(sock);
      return why;
    }
    auto made = establish(sock, true, options_, limits_, until);
    if (!made)
      return std::move(made).error();
    return adopt(std::move(*made));
  }

  bool pollable() const noexcept override {
    return true;
  }

  bool poll() override {
    std::unique_lock guard{links_mu_, std::try_to_lock};
    if (!guard.owns_lock())
      return false;
    bool delivered = false;
    for (auto i = links_.begin(); i != links_.end();) {
      if (auto live = i->lock()) {
        delivered |= live->poll_once();
        ++i;
      } else {
        i = links_.erase(i);
      }
    }
    return delivered;
  }

  void stop() override {
    if (stopped_.exchange(true))
      return;
    std::uint64_t one = 1;
    auto n = ::write(wake_, &one, sizeof one);
    (void)n;
    if (acceptor_.joinable())
      acceptor_.join();
    if (listener_ >= 0)
      ::close(listener_);
    if (!endpoint_.empty())
      ::unlink(endpoint_.c_str());
  }

private:
  /// Registers a new link for polling and wraps it for its owner.
  std::unique_ptr<link> adopt(std::shared_ptr<shm_link> made) {
    {
      std::lock_guard guard{links_mu_};
      links_.push_back(made);
    }
    return std::unique_ptr<link>{new shared_link<shm_link>(std::move(made))};
  }

  void accept_loop() {
    pollfd fds[2] = {{listener_, POLLIN, 0}, {wake_, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0 && errno == EINTR)
        continue;
      if (fds[1].revents != 0)
        return;
      int sock = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (sock < 0)
        continue;
      // A handshake is two small messages; a peer that stalls is dropped
      // at the deadline (this loop serves one handshake at a time).
      auto made = establish(sock, false, options_, limits_,
                            deadline{std::chrono::seconds{2}});
      if (made)
        on_accept_(adopt(std::move(*made)));
    }
  }

  transport_options options_;
  transport_limits limits_;
  int wake_;
  int listener_ = -1;
  std::string endpoint_;
  std::function<void(std::unique_ptr<link>)> on_accept_;
  std::thread acceptor_;
  std::atomic<bool> stopped_{false};
  std::mutex links_mu_;
  std::vector<std::weak_ptr<shm_link>> links_; // guarded by links_mu_
};

} // namespace

transport_factory factory(transport_options options) {
  return [options](transport_limits limits)
           -> expected<std::unique_ptr<transport>> {
    // Room for two of the largest frames: a writer that waits for
    // writable() never meets a full queue.
    limits.max_queued = std::max(limits.max_queued, 2 * limits.max_frame);
    if (options.ring_capacity < 4096
        || (options.ring_capacity & (options.ring_capacity - 1)) != 0)
      return error{errc::invalid_argument,
                   "the ring capacity must be a power of two, at least 4 KiB"};
    return std::unique_ptr<transport>{new shm_transport(options, limits)};
  };
}

} // namespace courier::shm
