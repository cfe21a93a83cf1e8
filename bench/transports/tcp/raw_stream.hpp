#pragma once

// The raw twin of the TCP tier: a TCP socket with TCP_NODELAY, optionally
// wrapped in an OpenSSL session (TLS_method, TLS 1.2 at least, a
// certificate required both ways, no tickets: what the tier configures),
// carrying frames of [u32 length][u8 mode][body]. One write per frame; reads
// are buffered. The serving side is a child process that echoes (mode 0),
// swallows (mode 1) or acks with a 1-byte frame (mode 2).
//
// Thread safety: none; one thread per raw_stream.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>

namespace courier::bench {

/// Frame modes of the raw protocol.
enum class raw_mode : char { echo = 0, swallow = 1, ack = 2 };

/// A node's files for the raw twin's TLS (the same PEM files the tier uses).
struct raw_tls_files {
  std::string certificate;
  std::string private_key;
  std::string ca;
};

/// A blocking byte stream over a connected socket, plain or TLS.
class raw_stream {
public:
  /// Takes `fd` (connected); with `tls`, runs the handshake as a client or
  /// server first. ok() says whether that worked.
  raw_stream(int fd, const raw_tls_files* tls, bool server);
  ~raw_stream();

  raw_stream(const raw_stream&) = delete;
  raw_stream& operator=(const raw_stream&) = delete;

  bool ok() const {
    return ok_;
  }

  /// The negotiated protocol and cipher ("plain" without TLS).
  std::string cipher() const;

  /// Writes all of `bytes` (one write(2) or SSL_write call while the
  /// kernel takes everything, which it does on a blocking socket).
  bool write_all(std::string_view bytes);

  /// The next frame's body (mode byte first), read through a buffer; empty
  /// at the end of the stream. Valid until the next call.
  bool next_frame(std::string_view& body);

private:
  long read_some(char* into, std::size_t size);

  int fd_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool ok_ = false;
  std::vector<char> in_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

/// A frame of `body_size` bytes (at least 1) whose first byte is `mode`,
/// with its length prefix: what a writer hands to write_all.
std::string raw_frame(raw_mode mode, std::size_t body_size);

/// A TCP connection to host:port with TCP_NODELAY; -1 on failure.
int raw_dial(const std::string& host, int port);

/// The serving child: listens on `host` (port 0), prints the port on
/// stdout, accepts one connection and serves it until it ends.
int raw_serve(const std::string& host, const raw_tls_files* tls);

} // namespace courier::bench
