#pragma once

// For tests of the TCP tier: certificates minted by courier cert's library,
// a node's TCP endpoint from its record, and raw clients (plaintext or
// TLS) that speak to it by hand.

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "cert.hpp"
#include "courier/tcp/tcp_transport.hpp"
#include "process.hpp"
#include "raw_peer.hpp"
#include "test_support.hpp"

namespace courier::testing {

/// A CA and a certificate per node in <dir>/certs (or `folder`).
inline std::string mint_certs(const temp_dir& dir,
                              const std::vector<std::string>& nodes,
                              const std::string& folder = "certs") {
  auto certs = dir.path() + "/" + folder;
  cert::ca_request ca;
  ca.out = certs;
  REQUIRE(cert::make_ca(ca));
  for (const auto& name : nodes) {
    cert::node_request node;
    node.name = name;
    node.ca = certs;
    node.out = certs;
    REQUIRE(cert::make_node_certificate(node));
  }
  return certs;
}

inline tcp::tls_files tls_files_of(const std::string& certs,
                                   const std::string& node) {
  return {certs + "/" + node + ".pem", certs + "/" + node + ".key",
          certs + "/ca.pem"};
}

/// The port of a node's TCP endpoint, as its record publishes it.
inline int tcp_port_of(node& n, const std::string& name) {
  for (const auto& info : n.nodes()) {
    if (info.name != name)
      continue;
    for (std::size_t i = 0; i < info.tiers.size(); ++i)
      if (info.tiers[i] == "tcp") {
        const auto& address = info.addresses.at(i);
        return std::stoi(address.substr(address.rfind(':') + 1));
      }
  }
  FAIL("node " << name << " publishes no TCP endpoint");
  return -1;
}

/// A raw TCP client on 127.0.0.1.
class tcp_client {
public:
  explicit tcp_client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr)
                 == 0;
  }

  ~tcp_client() {
    if (ssl_ != nullptr)
      SSL_free(ssl_);
    if (ctx_ != nullptr)
      SSL_CTX_free(ctx_);
    ::close(fd_);
  }

  tcp_client(const tcp_client&) = delete;
  tcp_client& operator=(const tcp_client&) = delete;

  bool connected() const {
    return connected_;
  }

  int fd() const {
    return fd_;
  }

  void send_bytes(const std::string& bytes) {
    auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    (void)n; // the peer may have closed already: that is what we test
  }

  /// True once the peer has closed the connection (within `timeout`);
  /// whatever it sent before is skipped.
  bool closed_by_peer(std::chrono::milliseconds timeout = patience) {
    auto until = std::chrono::steady_clock::now() + timeout;
    char sink[4096];
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0)
        continue;
      auto n = ::recv(fd_, sink, sizeof sink, 0);
      if (n <= 0)
        return true;
    }
    return false;
  }

  /// A frame: its length (4 bytes, little endian) and `body`.
  static std::string framed(const std::string& body) {
    auto size = static_cast<std::uint32_t>(body.size());
    std::string out{static_cast<char>(size), static_cast<char>(size >> 8),
                    static_cast<char>(size >> 16),
                    static_cast<char>(size >> 24)};
    return out + body;
  }

  enum class outcome { refused, open };

  /// A TLS handshake as a client with `files` (an empty certificate: none),
  /// then a wait for what the server says: refused if the handshake fails
  /// or the server ends the connection within `wait`, open if it waits for
  /// our hello. (In TLS 1.3 the server judges the client's certificate
  /// after the client has finished; its refusal is an alert that follows.)
  outcome tls_outcome(const tcp::tls_files& files,
                      std::chrono::milliseconds wait = 500ms) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, files.ca.c_str(), nullptr);
    if (!files.certificate.empty()) {
      SSL_CTX_use_certificate_chain_file(ctx_, files.certificate.c_str());
      SSL_CTX_use_PrivateKey_file(ctx_, files.private_key.c_str(),
                                  SSL_FILETYPE_PEM);
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    timeval tv{static_cast<time_t>(wait.count() / 1000),
               static_cast<suseconds_t>(wait.count() % 1000 * 1000)};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (SSL_connect(ssl_) != 1)
      return outcome::refused;
    char answer[256];
    if (SSL_read(ssl_, answer, sizeof answer) > 0)
      return outcome::open; // it spoke first: not a refusal either
    // A read that timed out (SO_RCVTIMEO) is one OpenSSL would retry.
    auto code = SSL_get_error(ssl_, -1);
    return code == SSL_ERROR_WANT_READ ? outcome::open : outcome::refused;
  }

  /// A TLS handshake as a client with `files`: true once established.
  /// Reads block for at most `wait` after it.
  bool tls_connect(const tcp::tls_files& files,
                   std::chrono::milliseconds wait = std::chrono::seconds{5}) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, files.ca.c_str(), nullptr);
    SSL_CTX_use_certificate_chain_file(ctx_, files.certificate.c_str());
    SSL_CTX_use_PrivateKey_file(ctx_, files.private_key.c_str(),
                                SSL_FILETYPE_PEM);
    ssl_ = SSL_new(ctx_);
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE
                         | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_fd(ssl_, fd_);
    timeval tv{static_cast<time_t>(wait.count() / 1000),
               static_cast<suseconds_t>(wait.count() % 1000 * 1000)};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    // OpenSSL writes with write(): a peer that closed must fail the write
    // (EPIPE), not end the test with SIGPIPE.
    ::signal(SIGPIPE, SIG_IGN);
    return SSL_connect(ssl_) == 1;
  }

  /// Writes all of `bytes` through TLS unless the peer stops taking them
  /// for `stall` or closes: false then. Never reads frames.
  bool tls_send_all(const std::string& bytes,
                    std::chrono::milliseconds stall = std::chrono::seconds{3}) {
    std::size_t at = 0;
    while (at < bytes.size()) {
      ::pollfd room{fd_, POLLOUT, 0};
      if (::poll(&room, 1, static_cast<int>(stall.count())) <= 0
          || (room.revents & (POLLHUP | POLLERR)) != 0)
        return false;
      // Room for at least a record: this write does not block for long.
      auto chunk = std::min<std::size_t>(bytes.size() - at, 16u << 10);
      auto n = SSL_write(ssl_, bytes.data() + at, static_cast<int>(chunk));
      if (n <= 0)
        return false;
      at += static_cast<std::size_t>(n);
    }
    return true;
  }

  /// Reads one frame's body through TLS; false on timeout or a close.
  bool tls_read_frame(std::string& body) {
    auto read_exactly = [&](char* at, std::size_t size) {
      while (size > 0) {
        auto n = SSL_read(ssl_, at, static_cast<int>(size));
        if (n <= 0)
          return false;
        at += n;
        size -= static_cast<std::size_t>(n);
      }
      return true;
    };
    return read_framed(body, read_exactly);
  }

  /// Waits until the node has closed the connection, without reading what
  /// it sent; false on timeout.
  bool hung_up(std::chrono::milliseconds timeout) {
    ::pollfd p{fd_, POLLRDHUP, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0
           && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
  }

private:
  int fd_ = -1;
  bool connected_ = false;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

} // namespace courier::testing
