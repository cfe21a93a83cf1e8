#pragma once

// A link over a connected stream socket: what the pipe and TCP tiers share.
// Frames are a 4-byte little-endian length and the envelope
// (docs/wire-format.md); a frame of length 0 is a heartbeat, never handed
// over. Bytes go through a channel (channel.hpp): plain, or TLS.
//
// Reading. The I/O thread waits until the socket is readable (async_wait)
// and then receives what is there without blocking; so do scheduler threads
// that poll the tier (transport::poll), which then hand frames to actors
// with no thread woken. Either way under read_mu_: one reader at a time, so
// frames reach the receiver one at a time and in order. Only the I/O thread
// arms waits and shuts the link; a poller that meets the end of the stream
// or a bad frame leaves it to the I/O thread.
//
// Writing. A write goes straight to the socket from the writer's thread
// when nothing is queued (no hop to the I/O thread); otherwise it joins the
// queue, which the I/O thread sends in gathering writes when the socket has
// room.
//
// Polled links leave the I/O thread's epoll. While a scheduler thread
// polls the tier, the I/O thread would still be woken by every frame that
// arrives (Asio registers sockets edge-triggered, whether a wait is pending
// or not) only to find the poller had read it: a context switch and an
// inter-processor interrupt per frame. So while the tier is polled
// (poll_state: polls kept coming for a whole watchdog_period, so that a
// poller that spins briefly between sparse frames moves nothing), each
// link releases its socket from Asio's reactor and the pollers alone read
// it. When polling stops (the scheduler's poller goes to sleep, or no poll
// came for a watchdog_period while it ran a long job), the link takes the
// socket back and arms its wait, which reports input that came in between.
// A link that must wait to write, or closes, takes it back first; one
// that took it back to write leaves again at the watchdog's next look, not
// as soon as the write is done (a sender of large frames that often finds
// its socket full would otherwise leave and rejoin the reactor, three
// system calls, per wait).
//
// Liveness (when configured): a link that has sent nothing for `heartbeat`
// sends an empty frame; a link that has received nothing for `silence`
// while it was reading is closed with deadline_exceeded (the peer is
// unreachable).
//
// Lock order: read_mu_, then mu_, then spare_mu_; the channel's own lock
// is taken last.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "courier/stream/channel.hpp"
#include "courier/transport.hpp"

namespace courier::stream {

using socket = boost::asio::generic::stream_protocol::socket;

/// Heartbeats and the detection bound of a link; zero turns each off.
struct liveness {
  std::chrono::milliseconds heartbeat{0};
  std::chrono::milliseconds silence{0};
};

/// One frame on its way out: its length prefix, its body, and how many of
/// their bytes are sent already.
struct outbound_frame {
  explicit outbound_frame(frame out);

  std::size_t size() const noexcept {
    return sizeof header + body.size();
  }

  /// Calls `fn(const char*, std::size_t)` for the bytes not yet sent, part
  /// by part, while it returns true.
  template <class F>
  void unsent(F&& fn) const {
    auto skip = sent;
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
    visit(std::string_view{reinterpret_cast<const char*>(header),
                           sizeof header});
    body.for_each_part(visit);
  }

  unsigned char header[4];
  frame body;
  std::size_t sent = 0;
};

class stream_link;

/// Whether the links of a tier are being polled, shared by the tier's
/// polled_links and its links.
struct poll_state {
  std::atomic<bool> polled{false};     // the links are out of the reactor
  std::atomic<std::uint64_t> polls{0}; // poll() calls so far
  std::atomic<bool> watched{false};    // the watchdog runs
  std::atomic<bool> retired{false};    // the tier stops: never again
  /// I/O thread: links that took their socket back to write while polled,
  /// to leave again at the watchdog's next look.
  std::vector<std::weak_ptr<stream_link>> to_release;
};

/// Thread safety: as courier::link; poll_once() from any thread.
class stream_link final : public link,
                          public std::enable_shared_from_this<stream_link> {
public:
  stream_link(stream::socket socket, std::unique_ptr<channel> bytes,
              peer_identity peer, const transport_limits& limits,
              liveness live = {});

  void start(std::shared_ptr<link_events> events) override;
  expected<void> write(frame body) override;
  expected<void> write_more(frame body) override;
  void flush() override;
  void pause_reading() override;
  void resume_reading() override;
  void limit_frames(std::size_t max_frame) override;
  void recycle(std::string buffer) override;
  bool writable() override;
  void close() override;

  const peer_identity& peer() const noexcept override {
    return peer_;
  }

  /// The owner let go: close (in the background, bounded by the tier's
  /// stop()).
  void release() {
    close();
  }

  /// A scheduler thread polling: receives what the socket holds, if no one
  /// else is reading; true if a frame was handed over.
  bool poll_once();

  /// Follows `state` (before start()): the link leaves the I/O thread's
  /// epoll while the tier is polled.
  void follow_polling(std::shared_ptr<poll_state> state) {
    polling_ = std::move(state);
  }

  /// The tier's poll_state changed: the I/O thread settles the link.
  void polling_changed();

private:
  expected<void> write(frame body, bool more);

  // writing (under mu_)
  void send_pending();
  void wait_writable();
  void on_write_ready(boost::system::error_code ec);
  void notify_room();

  // reading (under read_mu_)
  void arm();
  void on_readable(boost::system::error_code ec, std::uint64_t round);
  std::optional<error> receive();
  std::size_t receive_into(iovec* parts, std::size_t count,
                           std::optional<error>& failure);
  bool receive_buffered(std::optional<error>& failure);
  void parse(std::optional<error>& failure);
  void start_large(std::size_t size, std::size_t have);
  void start_split(std::size_t size, std::size_t have, frame_range cut);
  bool receive_large(std::optional<error>& failure);
  void finish_large();
  template <class F>
  void hand_over(F&& fn);
  void deliver_ready();
  void deliver(std::string frame);

  // polling (I/O thread)
  void settle_polling();
  void take_socket_locked();
  boost::system::error_code rejoin_reactor_locked();

  // liveness (I/O thread)
  void tick();

  void finish_close();
  void shut(error reason, bool abort = false);

  using clock = std::chrono::steady_clock;

  stream::socket socket_;
  int fd_;                                // socket_'s, also while released
  boost::asio::generic::stream_protocol protocol_; // to take it back
  std::shared_ptr<poll_state> polling_; // the tier's, if polled
  std::unique_ptr<channel> bytes_;
  peer_identity peer_;
  transport_limits limits_;
  liveness live_;
  std::atomic<std::size_t> frame_limit_; // see limit_frames()
  std::atomic<clock::rep> last_read_;    // when bytes last came in
  std::atomic<clock::rep> last_sent_;    // when bytes last went out
  std::optional<boost::asio::steady_timer> linger_; // I/O thread: close()
  std::optional<boost::asio::steady_timer> ticker_; // I/O thread: tick()
  bool closing_ = false;                            // I/O thread only
  clock::time_point close_by_;                      // I/O thread: close()
  // The reading side, guarded by read_mu_. events_ is set and cleared by
  // the I/O thread under it, which may read it without.
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
  std::uint64_t wait_round_ = 0;   // waits of older rounds were cancelled
  bool released_ = false;          // socket_ is out of the reactor
  bool release_queued_ = false;    // I/O thread: in poll_state::to_release
  bool failed_ = false;            // receive() failed: the I/O thread shuts
  bool shut_ = false;              // written by the I/O thread
  // The writing side.
  std::mutex mu_;
  std::deque<outbound_frame> pending_; // guarded by mu_
  bool writing_ = false;    // guarded by mu_: the I/O thread sends the queue
  bool wants_room_ = false; // guarded by mu_: writable() said no
  bool closed_ = false;     // guarded by mu_
  std::size_t queued_bytes_ = 0; // guarded by mu_
  std::mutex spare_mu_;
  std::string spare_; // guarded by spare_mu_: see recycle()
};

/// The links a tier's poll() reads: replaced whole on each change and read
/// without a lock, so polling threads never wait for each other.
///
/// Thread safety: all member functions are thread-safe.
class polled_links {
public:
  /// Polls for this long release the links from the reactor; no poll for
  /// this long takes them back (a poller running a long job).
  static constexpr auto watchdog_period = std::chrono::milliseconds{1};

  /// `io`: the tier's I/O thread's, which must outlive this.
  explicit polled_links(boost::asio::io_context& io);

  /// Adds a link (and forgets the links gone).
  void track(const std::shared_ptr<stream_link>& link);

  /// Receives, on the calling thread, what the links' sockets hold; true
  /// if a frame was handed over.
  bool poll();

  /// The scheduler's poller goes to sleep (transport::polling_stopped).
  void stopped();

  /// The tier stops: the links go back to the reactor for good and the
  /// watchdog ends, so that the I/O thread can run out of work.
  void retire();

private:
  using list = std::vector<std::weak_ptr<stream_link>>;
  void set_polled(bool polled);
  void watch(); // I/O thread

  std::mutex mu_; // one track() at a time
  std::shared_ptr<const list> links_ = std::make_shared<const list>();
  std::shared_ptr<poll_state> state_ = std::make_shared<poll_state>();
  boost::asio::steady_timer watchdog_; // I/O thread
  std::uint64_t polls_seen_ = 0;       // I/O thread
};

/// A stream tier's I/O thread: one thread runs the context from
/// construction until stop().
///
/// Thread safety: context() from any thread; stop() once at a time.
class io_thread {
public:
  io_thread();
  ~io_thread();

  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;

  boost::asio::io_context& context() noexcept {
    return io_;
  }

  /// Lets the work left (closing links writing what they queued) finish
  /// for up to two seconds, then stops the context and joins the thread: a
  /// peer that stopped reading cannot hold it. Idempotent.
  void stop();

private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type>
    work_;
  std::future<void> finished_;
  std::thread thread_;
};

} // namespace courier::stream

