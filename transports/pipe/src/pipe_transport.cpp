#include "courier/pipe/pipe_transport.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>

#include "courier/stream/stream_link.hpp"

namespace courier::pipe {

namespace {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;
using courier::stream::stream_link;

/// A link over an accepted or connected AF_UNIX socket; the peer is who
/// SO_PEERCRED says.
std::shared_ptr<stream_link> make_link(asio::io_context& io,
                                       stream::socket socket,
                                       const transport_limits& limits) {
  auto peer = kernel_peer_of(socket.native_handle());
  auto fd = socket.release();
  courier::stream::socket generic{
    io, asio::generic::stream_protocol{AF_UNIX, 0}, fd};
  auto bytes = std::make_unique<courier::stream::plain_channel>(fd);
  return std::make_shared<stream_link>(std::move(generic), std::move(bytes),
                                       std::move(peer), limits);
}

class pipe_transport final : public transport {
public:
  explicit pipe_transport(const transport_limits& limits) : limits_(limits) {
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
    asio::post(io_.context(), [this] { accept_next(); });
    return endpoint;
  }

  expected<std::unique_ptr<link>> connect(const std::string& endpoint,
                                          deadline) override {
    // A local connect completes or fails at once: no need to wait.
    stream::socket socket{io_.context()};
    boost::system::error_code ec;
    socket.connect(stream::endpoint(endpoint), ec);
    if (ec)
      return error{errc::unavailable,
                   "cannot connect to " + endpoint + ": " + ec.message()};
    auto impl = make_link(io_.context(), std::move(socket), limits_);
    links_.track(impl);
    return std::unique_ptr<link>{new shared_link<stream_link>(std::move(impl))};
  }

  /// Receives, on the calling thread, what the links' sockets hold.
  bool pollable() const noexcept override {
    return true;
  }

  bool poll() override {
    return links_.poll();
  }

  void polling_stopped() override {
    links_.stopped();
  }

  void stop() override {
    if (stopped_.exchange(true))
      return;
    asio::post(io_.context(), [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
    });
    links_.retire();
    io_.stop(); // closing links write what they queued (bounded)
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
        auto impl = make_link(io_.context(), std::move(socket), limits_);
        links_.track(impl);
        on_accept_(
          std::unique_ptr<link>{new shared_link<stream_link>(std::move(impl))});
      }
      accept_next();
    });
  }

  transport_limits limits_;
  courier::stream::io_thread io_;
  courier::stream::polled_links links_{io_.context()}; // what poll() reads
  stream::acceptor acceptor_{io_.context()};
  std::function<void(std::unique_ptr<link>)> on_accept_;
  std::string endpoint_;
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
