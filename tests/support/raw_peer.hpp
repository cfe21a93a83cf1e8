#pragma once

// Hostile peers on a node's named-pipe endpoint: raw AF_UNIX clients that
// speak the wire format (docs/wire-format.md) by hand, or not at all, and
// the memory of a node run as a child process.

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include "courier/v1/control.pb.h"
#include "courier/v1/envelope.pb.h"

namespace courier::testing {

/// The link protocol this build speaks (remote.cpp).
inline constexpr std::uint32_t link_protocol = 3;

/// Reads one frame (a 4-byte little-endian length, then the body) with
/// `read_exactly(char* at, std::size_t size) -> bool`.
template <class ReadExactly>
bool read_framed(std::string& body, ReadExactly&& read_exactly) {
  unsigned char header[4];
  if (!read_exactly(reinterpret_cast<char*>(header), 4))
    return false;
  body.resize(std::size_t{header[0]} | std::size_t{header[1]} << 8
              | std::size_t{header[2]} << 16 | std::size_t{header[3]} << 24);
  return read_exactly(body.data(), body.size());
}

/// A raw client socket on a node's endpoint.
class raw_client {
public:
  explicit raw_client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr),
                           sizeof addr)
                 == 0;
  }

  /// A plaintext TCP client on 127.0.0.1:<port> (the TCP tier).
  struct tcp_port {
    int port;
  };

  explicit raw_client(tcp_port where) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(where.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr),
                           sizeof addr)
                 == 0;
  }

  ~raw_client() {
    ::close(fd_);
  }

  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  bool connected() const {
    return connected_;
  }

  void send_bytes(const std::string& bytes) {
    auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    (void)n; // the peer may have closed already: that is what we test
  }

  /// A frame: its length (4 bytes, little endian) and `body`.
  static std::string framed(const std::string& body) {
    auto size = static_cast<std::uint32_t>(body.size());
    std::string header{static_cast<char>(size), static_cast<char>(size >> 8),
                       static_cast<char>(size >> 16),
                       static_cast<char>(size >> 24)};
    return header + body;
  }

  void send_frame(const std::string& body) {
    send_bytes(framed(body));
  }

  /// Writes all of `bytes` unless the peer stops taking them for `stall`
  /// or closes: false then. Never reads.
  bool send_all(const std::string& bytes,
                std::chrono::milliseconds stall = std::chrono::seconds{3}) {
    std::size_t at = 0;
    while (at < bytes.size()) {
      auto n = ::send(fd_, bytes.data() + at, bytes.size() - at,
                      MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        at += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return false;
      pollfd pfd{fd_, POLLOUT, 0};
      if (::poll(&pfd, 1, static_cast<int>(stall.count())) <= 0
          || (pfd.revents & (POLLHUP | POLLERR)) != 0)
        return false;
    }
    return true;
  }

  /// Reads one frame's body; false on timeout or a close.
  bool read_frame(std::string& body, std::chrono::milliseconds timeout
                                     = std::chrono::seconds{5}) {
    auto until = std::chrono::steady_clock::now() + timeout;
    auto read_exactly = [&](char* at, std::size_t size) {
      while (size > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
        pollfd pfd{fd_, POLLIN, 0};
        if (left.count() <= 0
            || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
          return false;
        auto n = ::recv(fd_, at, size, 0);
        if (n <= 0)
          return false;
        at += n;
        size -= static_cast<std::size_t>(n);
      }
      return true;
    };
    return read_framed(body, read_exactly);
  }

  /// Says hello as node "intruder" of this process, and reads the answer:
  /// true if the link was accepted.
  bool say_hello();

  /// Waits until the node has closed the connection, without reading what
  /// it sent; false on timeout.
  bool hung_up(std::chrono::milliseconds timeout) {
    pollfd pfd{fd_, POLLRDHUP, 0};
    return ::poll(&pfd, 1, static_cast<int>(timeout.count())) > 0
           && (pfd.revents & (POLLRDHUP | POLLHUP)) != 0;
  }

  /// Reads until the node closes the connection; false on timeout.
  bool closed_by_peer(std::chrono::milliseconds timeout
                      = std::chrono::seconds{5}) {
    auto until = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
        continue;
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0)
        return true;
      received_.append(buf, static_cast<std::size_t>(n));
    }
  }

  const std::string& received() const {
    return received_;
  }

private:
  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

/// A Hello from node "intruder", claiming `pid` and `uid`.
inline std::string hello_frame(int pid, unsigned uid) {
  v1::Hello hello;
  hello.set_protocol(link_protocol);
  hello.mutable_node()->set_name("intruder");
  hello.mutable_node()->set_pid(pid);
  hello.mutable_node()->set_uid(uid);
  v1::Envelope env;
  env.set_kind(v1::KIND_SYSTEM);
  env.set_type_name("courier.v1.Hello");
  hello.SerializeToString(env.mutable_payload());
  return env.SerializeAsString();
}

inline bool raw_client::say_hello() {
  if (!send_all(framed(hello_frame(::getpid(), ::getuid()))))
    return false;
  std::string body;
  v1::Envelope env;
  v1::HelloAck ack;
  return read_frame(body) && env.ParseFromString(body)
         && ack.ParseFromString(env.payload()) && !ack.has_refused();
}

/// A line of /proc/<pid>/status ("VmRSS", "VmHWM"), in bytes; 0 if absent.
inline std::size_t process_memory(pid_t pid, const std::string& field) {
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  std::string key;
  while (status >> key) {
    if (key == field + ":") {
      std::size_t kib = 0;
      status >> kib;
      return kib << 10;
    }
    std::string rest;
    std::getline(status, rest);
  }
  return 0;
}

/// Starts measuring a process's peak memory (VmHWM) afresh.
inline void reset_peak_memory(pid_t pid) {
  std::ofstream{"/proc/" + std::to_string(pid) + "/clear_refs"} << "5";
}

} // namespace courier::testing
