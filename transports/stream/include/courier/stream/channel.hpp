#pragma once

// The byte layer under a stream link: how bytes go in and out of a
// connected socket without blocking. Plain sockets move them with
// recvmsg/sendmsg; TLS encrypts and decrypts them in between
// (transports/tcp). The link above does framing, queues, limits and
// liveness, the same for every stream tier.

#include <cstddef>
#include <optional>

#include <sys/uio.h>

#include "courier/error.hpp"

namespace courier::stream {

/// Thread safety: receive() is called by one reader at a time and send() by
/// one writer at a time, but a reader and a writer may call at once.
class channel {
public:
  virtual ~channel() = default;

  /// Receives into `parts` without blocking: the bytes received, 0 when
  /// there are none now. At the end of the stream or on an error, returns 0
  /// and sets `failure`.
  virtual std::size_t receive(iovec* parts, std::size_t count,
                              std::optional<error>& failure) = 0;

  /// Sends from `parts` without blocking: the bytes taken, 0 when the
  /// socket takes none now. On an error, returns 0 and sets `failure`.
  virtual std::size_t send(const iovec* parts, std::size_t count,
                           std::optional<error>& failure) = 0;

  /// Bytes the channel has taken from the socket but not handed out yet
  /// (decrypted records): the reader must receive again before it waits
  /// for the socket to be readable.
  virtual bool holds_input() {
    return false;
  }
};

/// recvmsg/sendmsg on a socket's descriptor.
class plain_channel final : public channel {
public:
  explicit plain_channel(int fd) noexcept : fd_(fd) {
  }

  std::size_t receive(iovec* parts, std::size_t count,
                      std::optional<error>& failure) override;

  std::size_t send(const iovec* parts, std::size_t count,
                   std::optional<error>& failure) override;

private:
  int fd_;
};

} // namespace courier::stream
