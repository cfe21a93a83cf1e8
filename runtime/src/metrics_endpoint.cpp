#include "metrics_endpoint.hpp"

#include <charconv>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

namespace courier::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct metrics_endpoint::state {
  // Before io: sessions still queued in io count down as it goes.
  std::size_t open = 0; // connections; touched on the server's thread only
  text_source source;
  std::string address;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  // Waits after a failed accept (out of descriptors, say) so that the
  // server does not spin on it.
  asio::steady_timer pause{io};
  std::thread thread;
};

namespace {

/// The answer to one request head (line and headers).
std::string answer_to(std::string_view head,
                      const metrics_endpoint::text_source& source) {
  auto reply = [](std::string_view status, std::string_view type,
                  std::string_view body) {
    std::string out = "HTTP/1.1 ";
    out.append(status)
      .append("\r\nContent-Type: ")
      .append(type)
      .append("\r\nContent-Length: ")
      .append(std::to_string(body.size()))
      .append("\r\nConnection: close\r\n\r\n")
      .append(body);
    return out;
  };
  auto line = head.substr(0, head.find("\r\n"));
  auto sp1 = line.find(' ');
  auto sp2 = line.find(' ', sp1 == line.npos ? line.npos : sp1 + 1);
  if (sp1 == line.npos || sp2 == line.npos
      || line.substr(sp2 + 1).substr(0, 5) != "HTTP/")
    return reply("400 Bad Request", "text/plain", "malformed request line\n");
  auto method = line.substr(0, sp1);
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  if (target != "/metrics")
    return reply("404 Not Found", "text/plain", "only /metrics is here\n");
  if (method != "GET" && method != "HEAD")
    return reply("405 Method Not Allowed", "text/plain", "GET /metrics\n");
  auto text
    = reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", source());
  if (method == "HEAD")
    text.resize(text.find("\r\n\r\n") + 4);
  return text;
}

/// One connection: read a head, write the answer, close; cut at the
/// deadline.
class session : public std::enable_shared_from_this<session> {
public:
  session(metrics_endpoint::state& owner, tcp::socket socket)
    : owner_(owner), socket_(std::move(socket)), timer_(owner.io),
      buffer_(metrics_endpoint::max_request) {
    ++owner_.open;
  }

  ~session() {
    --owner_.open;
  }

  void run() {
    timer_.expires_after(metrics_endpoint::connection_timeout);
    timer_.async_wait(
      [self = shared_from_this()](boost::system::error_code ec) {
        if (!ec)
          self->close();
      });
    asio::async_read_until(
      socket_, buffer_, "\r\n\r\n",
      [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
        self->on_head(ec, n);
      });
  }

private:
  void on_head(boost::system::error_code ec, std::size_t n) {
    if (ec == asio::error::not_found) { // the head passed max_request
      respond("HTTP/1.1 431 Request Header Fields Too Large\r\n"
              "Content-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    if (ec) {
      close();
      return;
    }
    std::string_view head{asio::buffer_cast<const char*>(buffer_.data()), n};
    respond(answer_to(head, owner_.source));
  }

  void respond(std::string text) {
    out_ = std::move(text);
    asio::async_write(
      socket_, asio::buffer(out_),
      [self = shared_from_this()](boost::system::error_code, std::size_t) {
        boost::system::error_code ignored;
        self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
        self->close();
      });
  }

  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    timer_.cancel();
  }

  metrics_endpoint::state& owner_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  asio::streambuf buffer_;
  std::string out_;
};

void accept_next(metrics_endpoint::state& st) {
  st.acceptor.async_accept(
    [&st](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !st.acceptor.is_open())
        return;
      if (ec) {
        st.pause.expires_after(std::chrono::milliseconds{100});
        st.pause.async_wait([&st](boost::system::error_code waited) {
          if (!waited)
            accept_next(st);
        });
        return;
      }
      if (st.open < metrics_endpoint::max_connections) {
        std::make_shared<session>(st, std::move(socket))->run();
      } else {
        boost::system::error_code ignored;
        socket.close(ignored); // over the cap: closed at once
      }
      accept_next(st);
    });
}

} // namespace

expected<std::unique_ptr<metrics_endpoint>>
metrics_endpoint::start(std::string_view address, text_source source) {
  auto bad = [address](const std::string& why) {
    return error{errc::invalid_argument,
                 "metrics_listen '" + std::string{address} + "': " + why
                   + " (\"host:port\", e.g. \"127.0.0.1:9464\")"};
  };
  auto colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return bad("no host:port");
  auto host = std::string{address.substr(0, colon)};
  auto port_text = address.substr(colon + 1);
  unsigned port = 0;
  auto [end, failed] = std::from_chars(
    port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || failed != std::errc{}
      || end != port_text.data() + port_text.size() || port > 65535)
    return bad("the port is a number from 0 to 65535");
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost")
    host = "127.0.0.1";
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec)
    return bad("'" + host + "' is not a numeric address");
  auto st = std::make_unique<state>();
  st->source = std::move(source);
  tcp::endpoint at{ip, static_cast<unsigned short>(port)};
  if (st->acceptor.open(at.protocol(), ec)
      || st->acceptor.set_option(tcp::acceptor::reuse_address(true), ec)
      || st->acceptor.bind(at, ec) || st->acceptor.listen(64, ec))
    return error{errc::unavailable, "metrics_listen '" + std::string{address}
                                      + "': " + ec.message()};
  auto bound = st->acceptor.local_endpoint(ec);
  if (ec)
    return error{errc::unavailable, "metrics_listen: " + ec.message()};
  st->address = bound.address().is_v6()
                  ? "[" + bound.address().to_string() + "]:"
                  : bound.address().to_string() + ":";
  st->address += std::to_string(bound.port());
  accept_next(*st);
  st->thread = std::thread{[raw = st.get()] { raw->io.run(); }};
  return std::unique_ptr<metrics_endpoint>{new metrics_endpoint{std::move(st)}};
}

metrics_endpoint::metrics_endpoint(std::unique_ptr<state> st) noexcept
  : state_(std::move(st)) {}

metrics_endpoint::~metrics_endpoint() {
  state_->io.stop();
  if (state_->thread.joinable())
    state_->thread.join();
}

const std::string& metrics_endpoint::address() const noexcept {
  return state_->address;
}

} // namespace courier::detail
