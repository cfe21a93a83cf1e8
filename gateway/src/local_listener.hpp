#pragma once

// The gateway's local socket ("unix:/path" in options::listen): gRPC over
// an AF_UNIX socket whose callers are who the kernel says they are. gRPC
// 1.51 serves unix sockets itself but tells a call nothing of its peer's
// credentials, so the gateway accepts the connections, reads SO_PEERCRED,
// and hands each to gRPC as a file descriptor; a call's peer() is then
// "fd:<n>", which maps back to the credentials read at accept.

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "courier/error.hpp"
#include "courier/transport.hpp"

namespace grpc {
class Server;
}

namespace courier::gateway {

/// Thread safety: caller() may be called from any thread; the others from
/// the owner's.
class local_listener {
public:
  /// Binds `path` with permissions `mode` (set before it listens, so
  /// nobody connects under wider ones) and listens. A stale socket left at
  /// the path (nobody answers it) is replaced; a live one is
  /// already_exists; a path too long or in a missing folder is
  /// invalid_argument.
  [[nodiscard]] static expected<std::unique_ptr<local_listener>>
  open(const std::string& path, unsigned mode);

  /// Stops accepting, and removes the socket file.
  ~local_listener();

  local_listener(const local_listener&) = delete;
  local_listener& operator=(const local_listener&) = delete;

  /// Accepts connections for `server` on a thread of its own until the
  /// listener goes.
  void serve(grpc::Server& server);

  /// The kernel's word on the caller whose call's peer() is `peer`; none
  /// when the call did not come through this socket.
  std::optional<kernel_credentials> caller(std::string_view peer) const;

private:
  local_listener(int fd, int wake, std::string path);

  void accept_loop(grpc::Server& server);

  int fd_;
  int wake_; // an eventfd: written once to stop the accepting thread
  std::string path_;
  std::thread thread_;
  mutable std::mutex mu_;
  // By descriptor: gRPC closes one only once its connection is gone, and
  // the next connection that gets the number overwrites the entry before
  // gRPC sees it, so an entry is always its connection's.
  std::unordered_map<int, kernel_credentials> callers_; // guarded by mu_
};

} // namespace courier::gateway
