#include "courier/tcp/tcp_transport.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "address.hpp"
#include "courier/stream/stream_link.hpp"
#include "tls.hpp"

namespace courier::tcp {

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using courier::stream::stream_link;

/// A descriptor closed at the end of its scope unless released.
class unique_fd {
public:
  explicit unique_fd(int fd = -1) noexcept : fd_(fd) {
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  int get() const noexcept {
    return fd_;
  }
  int release() noexcept {
    return std::exchange(fd_, -1);
  }

private:
  int fd_;
};

/// Waits until `fd` is ready for `events` or `until` passes; false then.
bool wait_for(int fd, short events, deadline until) {
  for (;;) {
    auto left = until.remaining();
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    if (ms <= 0)
      return false;
    pollfd p{fd, events, 0};
    auto n = ::poll(&p, 1, static_cast<int>(std::min<long long>(ms, 1000)));
    if (n > 0)
      return true;
    if (n < 0 && errno != EINTR)
      return false;
  }
}

void set_no_delay(int fd) {
  int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

std::string address_text(const tcp::endpoint& endpoint) {
  auto host = endpoint.address().to_string();
  if (endpoint.address().is_v6())
    host = "[" + host + "]";
  return host + ":" + std::to_string(endpoint.port());
}

/// An accepted connection in its TLS handshake (I/O thread only).
struct handshake {
  handshake(tcp::socket s, ssl_ptr session)
    : socket(std::move(s)), ssl(std::move(session)),
      timer(socket.get_executor()) {
  }

  tcp::socket socket;
  ssl_ptr ssl;
  asio::steady_timer timer;
  bool over = false;
};

class tcp_transport final : public transport {
public:
  tcp_transport(const transport_limits& limits, options settings,
                std::shared_ptr<tls_context> tls)
    : limits_(limits),
      settings_(std::move(settings)),
      tls_(std::move(tls)) {
  }

  ~tcp_transport() override {
    stop();
  }

  std::string_view name() const noexcept override {
    return "tcp";
  }

  /// Nodes of other hosts; those of this host too, but only when nothing
  /// else reaches them (a test, or a tier refused). Rank 2 there, so that
  /// the gRPC tier (rank 1 on one host, 5 across hosts) stays below it.
  reach_result reach(const node_place& self,
                     const node_place& peer) const override {
    if (self.same_host(peer))
      return {2, "same host (TCP over the loopback, a last resort)"};
    if (self.host_id != peer.host_id || self.boot_id != peer.boot_id)
      return {10, "another host"};
    return {10, "another network namespace"};
  }

  expected<std::string>
  listen(const listen_context&,
         std::function<void(std::unique_ptr<link>)> on_accept) override {
    auto where = parse_address(settings_.listen, false);
    if (!where)
      return std::move(where).error();
    if (!tls_ && !settings_.allow_plaintext && !is_loopback(where->host))
      return error{errc::failed_precondition,
                   "the TCP tier would listen on " + where->host_port()
                     + " without TLS: configure tls, or allow_plaintext on "
                       "a trusted network"};
    auto host = is_wildcard(where->host) ? std::string{"0.0.0.0"}
                                         : where->host;
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(host, ec);
    if (ec)
      return error{errc::invalid_argument,
                   "the TCP tier listens on an IP address, not '" + host + "'"};
    tcp::endpoint endpoint{ip, where->port};
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec)
      acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
      acceptor_.bind(endpoint, ec);
    if (!ec)
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return error{errc::unavailable, "cannot listen on "
                                        + where->host_port() + ": "
                                        + ec.message()};
    address published;
    published.tls = static_cast<bool>(tls_);
    published.port = acceptor_.local_endpoint().port();
    if (!settings_.advertise.empty()) {
      auto told = parse_address(settings_.advertise, false);
      if (!told)
        return std::move(told).error();
      published.host = told->host;
      if (told->port != 0)
        published.port = told->port;
    } else if (is_wildcard(where->host)) {
      published.host = first_interface_address(where->host);
      if (published.host.empty())
        published.host = "127.0.0.1";
    } else {
      published.host = where->host;
    }
    on_accept_ = std::move(on_accept);
    asio::post(io_.context(), [this] { accept_next(); });
    return published.published();
  }

  /// Connects within `until`: the TCP connect, then the TLS handshake.
  expected<std::unique_ptr<link>> connect(const std::string& text,
                                          deadline until) override {
    auto where = parse_address(text, true);
    if (!where)
      return std::move(where).error();
    if (where->tls && !tls_)
      return error{errc::failed_precondition,
                   "the peer at " + where->host_port()
                     + " speaks TLS and this node has no certificate"};
    if (!where->tls && tls_)
      return error{errc::permission_denied,
                   "the peer at " + where->host_port()
                     + " speaks plaintext TCP and this node requires TLS"};
    if (!where->tls && !settings_.allow_plaintext
        && !is_loopback(where->host))
      return error{errc::permission_denied,
                   "plaintext TCP to " + where->host_port()
                     + " is not allowed (allow_plaintext)"};
    auto connected = dial(*where, until);
    if (!connected)
      return std::move(connected).error();
    unique_fd fd{*connected};
    peer_identity peer;
    std::unique_ptr<courier::stream::channel> bytes;
    if (tls_) {
      auto session = tls_->new_session(fd.get(), false);
      if (!session)
        return std::move(session).error();
      for (;;) {
        std::string why;
        auto state = handshake_step(session->get(), why);
        if (state == handshake_state::done)
          break;
        if (state == handshake_state::failed)
          return error{errc::unavailable, "TLS with " + where->host_port()
                                            + ": " + why};
        if (!wait_for(fd.get(),
                      state == handshake_state::wants_read ? POLLIN : POLLOUT,
                      until))
          return error{errc::deadline_exceeded,
                       "the TLS handshake with " + where->host_port()
                         + " did not finish in time"};
      }
      peer = identity_of(session->get());
      peer.address = where->host_port();
      bytes = std::make_unique<tls_channel>(std::move(*session));
    } else {
      peer.address = where->host_port();
      bytes = std::make_unique<courier::stream::plain_channel>(fd.get());
    }
    auto impl = make_link(fd.release(), std::move(bytes), std::move(peer));
    return std::unique_ptr<link>{new shared_link<stream_link>(std::move(impl))};
  }

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
      for (auto& shake : handshaking_)
        end(*shake);
      handshaking_.clear();
    });
    links_.retire();
    io_.stop(); // closing links send what they queued (bounded)
  }

private:
  /// A non-blocking TCP connect to `where`, waited for until `until`.
  expected<int> dial(const address& where, deadline until) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    auto port = std::to_string(where.port);
    if (auto rc = ::getaddrinfo(where.host.c_str(), port.c_str(), &hints,
                                &found);
        rc != 0)
      return error{errc::unavailable, "cannot resolve '" + where.host
                                        + "': " + ::gai_strerror(rc)};
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> all{found,
                                                             ::freeaddrinfo};
    std::string why = "no address";
    for (auto* ai = found; ai != nullptr; ai = ai->ai_next) {
      unique_fd fd{::socket(ai->ai_family,
                            SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
      if (fd.get() < 0) {
        why = std::strerror(errno);
        continue;
      }
      if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0
          && errno != EINPROGRESS) {
        why = std::strerror(errno);
        continue;
      }
      if (!wait_for(fd.get(), POLLOUT, until))
        return error{errc::deadline_exceeded,
                     "no answer from " + where.host_port() + " in time"};
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        why = std::strerror(err);
        continue;
      }
      set_no_delay(fd.get());
      return fd.release();
    }
    return error{errc::unavailable,
                 "cannot connect to " + where.host_port() + ": " + why};
  }

  std::shared_ptr<stream_link>
  make_link(int fd, std::unique_ptr<courier::stream::channel> bytes,
            peer_identity peer) {
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
    courier::stream::socket socket{
      io_.context(),
      asio::generic::stream_protocol{local.ss_family, IPPROTO_TCP}, fd};
    auto impl = std::make_shared<stream_link>(
      std::move(socket), std::move(bytes), std::move(peer), limits_,
      courier::stream::liveness{settings_.heartbeat,
                                settings_.unreachable_after});
    links_.track(impl);
    return impl;
  }

  void accept_next() {
    acceptor_.async_accept([this](boost::system::error_code ec,
                                  tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open())
        return;
      if (!ec)
        accepted(std::move(socket));
      accept_next();
    });
  }

  /// I/O thread: a new connection.
  void accepted(tcp::socket socket) {
    boost::system::error_code ec;
    auto remote = socket.remote_endpoint(ec);
    if (ec)
      return;
    set_no_delay(socket.native_handle());
    if (!tls_) {
      if (!settings_.allow_plaintext
          && !is_loopback(remote.address().to_string()))
        return; // plaintext from afar: not allowed (closed here)
      peer_identity peer;
      peer.address = address_text(remote);
      auto fd = socket.release();
      auto impl = make_link(
        fd, std::make_unique<courier::stream::plain_channel>(fd),
        std::move(peer));
      on_accept_(
        std::unique_ptr<link>{new shared_link<stream_link>(std::move(impl))});
      return;
    }
    auto session = tls_->new_session(socket.native_handle(), true);
    if (!session)
      return;
    // The cap: the oldest handshake makes room (a flood of connections that
    // never finish cannot shut out those that do).
    if (handshaking_.size() >= std::max<std::size_t>(settings_.max_handshaking, 1)) {
      end(*handshaking_.front());
      handshaking_.pop_front();
    }
    auto shake = std::make_shared<handshake>(std::move(socket),
                                             std::move(*session));
    handshaking_.push_back(shake);
    shake->timer.expires_after(settings_.handshake_timeout);
    shake->timer.async_wait([this, shake](boost::system::error_code ec) {
      if (!ec && !shake->over)
        finish(shake, false);
    });
    step(shake);
  }

  /// I/O thread: the next step of an accepted connection's handshake.
  void step(const std::shared_ptr<handshake>& shake) {
    if (shake->over)
      return;
    std::string why;
    auto state = handshake_step(shake->ssl.get(), why);
    if (state == handshake_state::done || state == handshake_state::failed)
      return finish(shake, state == handshake_state::done);
    shake->socket.async_wait(state == handshake_state::wants_read
                               ? tcp::socket::wait_read
                               : tcp::socket::wait_write,
                             [this, shake](boost::system::error_code ec) {
                               if (ec)
                                 finish(shake, false);
                               else
                                 step(shake);
                             });
  }

  void end(handshake& shake) {
    shake.over = true;
    boost::system::error_code ignored;
    shake.timer.cancel();
    shake.socket.close(ignored);
  }

  /// I/O thread: a handshake is over; a link if it succeeded.
  void finish(const std::shared_ptr<handshake>& shake, bool done) {
    if (shake->over)
      return;
    handshaking_.remove(shake);
    if (!done) {
      end(*shake);
      return;
    }
    shake->over = true;
    shake->timer.cancel();
    auto peer = identity_of(shake->ssl.get());
    boost::system::error_code ec;
    if (auto remote = shake->socket.remote_endpoint(ec); !ec)
      peer.address = address_text(remote);
    auto fd = shake->socket.release();
    auto impl = make_link(fd, std::make_unique<tls_channel>(std::move(shake->ssl)),
                          std::move(peer));
    on_accept_(
      std::unique_ptr<link>{new shared_link<stream_link>(std::move(impl))});
  }

  transport_limits limits_;
  const options settings_;
  const std::shared_ptr<tls_context> tls_; // null: plaintext
  courier::stream::io_thread io_;
  courier::stream::polled_links links_{io_.context()}; // what poll() reads
  tcp::acceptor acceptor_{io_.context()};
  std::function<void(std::unique_ptr<link>)> on_accept_;
  std::list<std::shared_ptr<handshake>> handshaking_; // I/O thread only
  std::atomic<bool> stopped_{false};
};

} // namespace

transport_factory factory(options settings) {
  return [settings = std::move(settings)](
           transport_limits limits) -> expected<std::unique_ptr<transport>> {
    // Room for two of the largest frames with their length prefixes: a
    // writer that waits for writable() never meets a full queue.
    limits.max_queued = std::max(
      limits.max_queued, 2 * (limits.max_frame + sizeof(std::uint32_t)));
    if (settings.unreachable_after.count() > 0
        && settings.heartbeat >= settings.unreachable_after)
      return error{errc::invalid_argument,
                   "the heartbeat must be shorter than unreachable_after"};
    std::shared_ptr<tls_context> tls;
    if (settings.tls) {
      auto made = tls_context::make(*settings.tls);
      if (!made)
        return std::move(made).error();
      tls = std::move(*made);
    }
    try {
      return std::unique_ptr<transport>{
        new tcp_transport(limits, settings, std::move(tls))};
    } catch (const std::exception& ex) {
      return error{errc::internal,
                   std::string{"cannot start the TCP tier: "} + ex.what()};
    }
  };
}

} // namespace courier::tcp
