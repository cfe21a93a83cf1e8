#include "local_listener.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>

namespace courier::gateway {

namespace {

std::string os_error(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

/// Whether a process answers at the socket `address` names.
bool answered(const sockaddr_un& address) {
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0)
    return false;
  bool live = ::connect(probe, reinterpret_cast<const sockaddr*>(&address),
                        sizeof address)
              == 0;
  ::close(probe);
  return live;
}

} // namespace

expected<std::unique_ptr<local_listener>>
local_listener::open(const std::string& path, unsigned mode) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address.sun_path)
    return error{errc::invalid_argument,
                 "the gateway's socket path '" + path + "' is empty or longer than "
                   + std::to_string(sizeof address.sun_path - 1) + " bytes"};
  std::memcpy(address.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return error{errc::unavailable, os_error("the gateway's socket")};
  auto fail = [&](errc code, std::string text) {
    ::close(fd);
    return error{code, std::move(text)};
  };
  auto bind = [&] {
    return ::bind(fd, reinterpret_cast<const sockaddr*>(&address),
                  sizeof address);
  };
  if (bind() != 0) {
    if (errno != EADDRINUSE)
      return fail(errno == ENOENT || errno == ENOTDIR ? errc::invalid_argument
                                                      : errc::unavailable,
                  os_error("binding '" + path + "'"));
    // A socket file is there: another gateway's, or one a killed process
    // left. Only the first is in the way.
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))
      return fail(errc::already_exists,
                  "'" + path + "' exists and is not a socket");
    if (answered(address))
      return fail(errc::already_exists,
                  "a process already listens on '" + path + "'");
    ::unlink(path.c_str());
    if (bind() != 0)
      return fail(errc::unavailable, os_error("binding '" + path + "'"));
  }
  // Nobody can connect before listen(): the mode is in place first.
  if (::chmod(path.c_str(), mode) != 0 || ::listen(fd, 128) != 0) {
    auto why = os_error("listening on '" + path + "'");
    ::unlink(path.c_str());
    return fail(errc::unavailable, std::move(why));
  }
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    auto why = os_error("the gateway's eventfd");
    ::unlink(path.c_str());
    return fail(errc::unavailable, std::move(why));
  }
  return std::unique_ptr<local_listener>{new local_listener{fd, wake, path}};
}

local_listener::local_listener(int fd, int wake, std::string path)
  : fd_(fd), wake_(wake), path_(std::move(path)) {}

local_listener::~local_listener() {
  std::uint64_t one = 1;
  (void)!::write(wake_, &one, sizeof one);
  if (thread_.joinable())
    thread_.join();
  ::close(fd_);
  ::close(wake_);
  ::unlink(path_.c_str());
}

void local_listener::serve(grpc::Server& server) {
  thread_ = std::thread{[this, &server] { accept_loop(server); }};
}

void local_listener::accept_loop(grpc::Server& server) {
  pollfd watched[2] = {{fd_, POLLIN, 0}, {wake_, POLLIN, 0}};
  for (;;) {
    if (::poll(watched, 2, -1) < 0 && errno != EINTR)
      return;
    if (watched[1].revents != 0)
      return; // stopping
    if (watched[0].revents == 0)
      continue;
    int peer = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (peer < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
          || errno == ENOMEM) // out of descriptors: let some close first
        (void)::poll(&watched[1], 1, 100);
      continue;
    }
    auto who = kernel_peer_of(peer);
    if (!who.kernel) { // the kernel always says on a unix socket; if not, no
      ::close(peer);
      continue;
    }
    {
      std::lock_guard guard{mu_};
      callers_[peer] = *who.kernel;
    }
    grpc::AddInsecureChannelFromFd(&server, peer);
  }
}

std::optional<kernel_credentials>
local_listener::caller(std::string_view peer) const {
  constexpr std::string_view prefix = "fd:";
  if (!peer.starts_with(prefix))
    return std::nullopt;
  int fd = -1;
  auto digits = peer.substr(prefix.size());
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), fd);
  if (ec != std::errc{} || end != digits.data() + digits.size())
    return std::nullopt;
  std::lock_guard guard{mu_};
  auto found = callers_.find(fd);
  if (found == callers_.end())
    return std::nullopt;
  return found->second;
}

} // namespace courier::gateway
