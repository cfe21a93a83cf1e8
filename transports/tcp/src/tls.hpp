#pragma once

// Mutual TLS for the TCP tier, on OpenSSL 3: the context made from a
// node's files, the channel that encrypts a link's bytes, the handshake
// step, and the peer's identity from its certificate.

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include <openssl/ssl.h>

#include "courier/stream/channel.hpp"
#include "courier/tcp/tcp_transport.hpp"

namespace courier::tcp {

struct ssl_ctx_free {
  void operator()(SSL_CTX* ctx) const noexcept {
    SSL_CTX_free(ctx);
  }
};

struct ssl_free {
  void operator()(SSL* ssl) const noexcept {
    SSL_free(ssl);
  }
};

using ssl_ptr = std::unique_ptr<SSL, ssl_free>;

/// A node's TLS settings: TLS 1.2 at least (1.3 preferred), its
/// certificate and key, the CAs it trusts, and a certificate required of
/// every peer, both ways. No session tickets or resumption: every link
/// shows its certificate.
///
/// Thread safety: immutable once made; new_session() from any thread.
class tls_context {
public:
  /// Reads the files; invalid_argument says which one is wrong and why.
  static expected<std::shared_ptr<tls_context>> make(const tls_files& files);

  /// A session on connected socket `fd`, as a client or a server.
  expected<ssl_ptr> new_session(int fd, bool server) const;

private:
  explicit tls_context(SSL_CTX* ctx) : ctx_(ctx) {
  }

  std::unique_ptr<SSL_CTX, ssl_ctx_free> ctx_;
};

/// Where a handshake stands after one step.
enum class handshake_state { done, wants_read, wants_write, failed };

/// One non-blocking step of the handshake; `failure` says why it failed.
handshake_state handshake_step(SSL* ssl, std::string& failure);

/// The peer's certificate, as a peer_identity (its subject in RFC 2253
/// form; DNS names, IP addresses and URIs of its subject alternative
/// names, as written).
peer_identity identity_of(SSL* ssl);

/// What OpenSSL's error queue says, emptied; `fallback` if it says nothing.
std::string last_ssl_error(std::string fallback);

/// The bytes of a link through a TLS session on its socket. One lock
/// serializes the session: OpenSSL's SSL objects are not for two threads at
/// once (a reader and a writer).
class tls_channel final : public stream::channel {
public:
  explicit tls_channel(ssl_ptr ssl);

  std::size_t receive(iovec* parts, std::size_t count,
                      std::optional<error>& failure) override;

  std::size_t send(const iovec* parts, std::size_t count,
                   std::optional<error>& failure) override;

  bool holds_input() override;

private:
  /// Whether OpenSSL may hold input not handed out yet: bytes it read
  /// ahead (records, decrypted or not) that receive() left because its
  /// parts were full. Otherwise input can only come from the socket (a
  /// part of a record waits for the rest from it). Written under mu_, read
  /// without: a poller asks the socket first (poll) and enters OpenSSL only
  /// when it has bytes (an idle poll is then one system call, as on a plain
  /// socket, and leaves the session free for the writer).
  std::atomic<bool> buffered_{false};
  int fd_;
  std::mutex mu_;
  ssl_ptr ssl_;          // guarded by mu_
  std::string staging_;  // guarded by mu_: parts gathered for one SSL_write
};

} // namespace courier::tcp
