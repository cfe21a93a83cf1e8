#include "courier/pipe/pipe_transport.hpp"

#include <array>
#include <atomic>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace courier::pipe {

namespace {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

peer_credentials credentials_of(stream::socket& socket) {
  peer_credentials out;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred,
                   &len)
      == 0) {
    out.pid = cred.pid;
    out.uid = cred.uid;
    out.gid = cred.gid;
  }
  return out;
}

/// One AF_UNIX connection. All socket work happens on the I/O thread; other
/// threads only post to it.
class pipe_link final : public link,
                        public std::enable_shared_from_this<pipe_link> {
public:
  pipe_link(stream::socket socket, const transport_limits& limits)
    : socket_(std::move(socket)), limits_(limits), peer_(credentials_of(socket_)) {
  }

  void start(std::shared_ptr<link_events> events) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), events] {
      self->events_ = std::move(events);
      self->read_header();
    });
  }

  expected<void> write(std::string frame) override {
    if (frame.size() > limits_.max_frame)
      return error{errc::resource_exhausted,
                   "a frame of " + std::to_string(frame.size())
                     + " bytes is over the limit of "
                     + std::to_string(limits_.max_frame)};
    {
      std::lock_guard guard{mu_};
      if (closed_)
        return error{errc::unavailable, "the link is closed"};
      if (queued_bytes_ + frame.size() > limits_.max_queued)
        return error{errc::resource_exhausted,
                     "the link's outbound queue is full"};
      queued_bytes_ += frame.size();
    }
    asio::post(socket_.get_executor(),
               [self = shared_from_this(), frame = std::move(frame)]() mutable {
                 self->queue_.push_back(std::move(frame));
                 if (self->queue_.size() == 1)
                   self->write_next();
               });
    return {};
  }

  /// Closes once the frames queued so far are written.
  void close() override {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      if (self->queue_.empty())
        self->shut(error{errc::cancelled, "closed locally"});
    });
  }

  const peer_credentials& peer() const noexcept override {
    return peer_;
  }

private:
  void read_header() {
    asio::async_read(socket_, asio::buffer(header_),
                     [self = shared_from_this()](boost::system::error_code ec,
                                                 std::size_t) {
                       self->on_header(ec);
                     });
  }

  void on_header(boost::system::error_code ec) {
    if (ec)
      return shut(from_asio(ec));
    std::uint32_t size = std::uint32_t{header_[0]}
                         | std::uint32_t{header_[1]} << 8
                         | std::uint32_t{header_[2]} << 16
                         | std::uint32_t{header_[3]} << 24;
    if (size > limits_.max_frame)
      return shut(error{errc::resource_exhausted,
                        "the peer sent a frame of " + std::to_string(size)
                          + " bytes, over the limit of "
                          + std::to_string(limits_.max_frame)});
    body_.resize(size);
    asio::async_read(socket_, asio::buffer(body_),
                     [self = shared_from_this()](boost::system::error_code ec,
                                                 std::size_t) {
                       self->on_body(ec);
                     });
  }

  void on_body(boost::system::error_code ec) {
    if (ec)
      return shut(from_asio(ec));
    if (events_)
      events_->on_frame(std::move(body_));
    body_ = std::string{};
    if (!shut_)
      read_header();
  }

  void write_next() {
    auto& frame = queue_.front();
    auto size = static_cast<std::uint32_t>(frame.size());
    out_header_ = {static_cast<unsigned char>(size),
                   static_cast<unsigned char>(size >> 8),
                   static_cast<unsigned char>(size >> 16),
                   static_cast<unsigned char>(size >> 24)};
    std::array<asio::const_buffer, 2> buffers{asio::buffer(out_header_),
                                              asio::buffer(frame)};
    asio::async_write(socket_, buffers,
                      [self = shared_from_this()](boost::system::error_code ec,
                                                  std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(boost::system::error_code ec) {
    {
      std::lock_guard guard{mu_};
      queued_bytes_ -= queue_.front().size();
    }
    queue_.pop_front();
    if (ec) {
      // The peer stopped reading (it closed). Its last frames, a refusal
      // say, may still wait in our receive buffer: stop writing, keep
      // reading, and close at its end of stream.
      std::lock_guard guard{mu_};
      closed_ = true;
      for (auto& frame : queue_)
        queued_bytes_ -= frame.size();
      queue_.clear();
      return;
    }
    if (!queue_.empty())
      write_next();
    else if (closing_)
      shut(error{errc::cancelled, "closed locally"});
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
    if (shut_)
      return;
    shut_ = true;
    {
      std::lock_guard guard{mu_};
      closed_ = true;
    }
    // Closing with unread input makes Linux reset the peer's side, and a
    // reset can swallow our last frames (a refusal, say). Discard what is
    // waiting, unread and unparsed, first; bounded by the socket buffer.
    char sink[4096];
    for (int i = 0; i < 64; ++i)
      if (::recv(socket_.native_handle(), sink, sizeof sink, MSG_DONTWAIT) <= 0)
        break;
    boost::system::error_code ignored;
    socket_.shutdown(stream::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (auto events = std::move(events_))
      events->on_closed(reason);
  }

  stream::socket socket_;
  transport_limits limits_;
  peer_credentials peer_;
  std::shared_ptr<link_events> events_;
  std::array<unsigned char, 4> header_{};
  std::array<unsigned char, 4> out_header_{};
  std::string body_;
  std::deque<std::string> queue_; // I/O thread only
  bool shut_ = false;             // I/O thread only
  bool closing_ = false;          // I/O thread only
  std::mutex mu_;
  bool closed_ = false;           // guarded by mu_
  std::size_t queued_bytes_ = 0;  // guarded by mu_
};

/// Hands the link to its owner while keeping the shared_ptr that async
/// operations hold.
class link_handle final : public link {
public:
  explicit link_handle(std::shared_ptr<pipe_link> impl) : impl_(std::move(impl)) {
  }

  ~link_handle() override {
    impl_->close();
  }

  void start(std::shared_ptr<link_events> events) override {
    impl_->start(std::move(events));
  }

  expected<void> write(std::string frame) override {
    return impl_->write(std::move(frame));
  }

  void close() override {
    impl_->close();
  }

  const peer_credentials& peer() const noexcept override {
    return impl_->peer();
  }

private:
  std::shared_ptr<pipe_link> impl_;
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

  expected<void>
  listen(const std::string& endpoint,
         std::function<void(std::unique_ptr<link>)> on_accept) override {
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
    return {};
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
    return std::unique_ptr<link>{new link_handle(std::move(impl))};
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
        on_accept_(std::unique_ptr<link>{new link_handle(std::move(impl))});
      }
      accept_next();
    });
  }

  transport_limits limits_;
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
  return [](const transport_limits& limits)
           -> expected<std::unique_ptr<transport>> {
    try {
      return std::unique_ptr<transport>{new pipe_transport(limits)};
    } catch (const std::exception& ex) {
      return error{errc::internal,
                   std::string{"cannot start the pipe tier: "} + ex.what()};
    }
  };
}

} // namespace courier::pipe
