#pragma once

// A real etcd (Debian's etcd-server, /usr/bin/etcd) for the registry's
// tests: one member on free loopback ports, its data in a fresh temp
// directory, short raft timings so that leases of 1 s are allowed. Started
// by the constructor (healthy when it returns), killed and removed by the
// destructor.

#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace courier::testing {

/// A loopback TCP port nobody listens on right now (the kernel's pick for
/// port 0; a race with another process taking it is possible, so callers
/// retry when a server cannot bind it).
inline std::uint16_t free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind a loopback port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// GETs `path` from 127.0.0.1:`port`; the whole answer, or empty if there
/// is none within `timeout`.
inline std::string http_get(std::uint16_t port, const std::string& path,
                            std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string answer;
  auto wait = [&](short events) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      until - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    pollfd pfd{fd, events, 0};
    return ::poll(&pfd, 1, static_cast<int>(left.count())) == 1;
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
      && errno != EINPROGRESS) {
    ::close(fd);
    return {};
  }
  int err = 0;
  socklen_t len = sizeof err;
  std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (wait(POLLOUT) && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0
      && err == 0
      && ::send(fd, request.data(), request.size(), MSG_NOSIGNAL)
           == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    while (wait(POLLIN)) {
      auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0)
        break;
      answer.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return answer;
}

class etcd_server {
public:
  /// Starts etcd and waits until it reports healthy (throws if it does
  /// not within 30 s, after a few tries on fresh ports).
  etcd_server() {
    char pattern[] = "/tmp/courier-etcd-XXXXXX";
    if (::mkdtemp(pattern) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    std::string last;
    for (int attempt = 0; attempt < 5; ++attempt) {
      client_port_ = free_loopback_port();
      peer_port_ = free_loopback_port();
      if (client_port_ == peer_port_)
        continue;
      data_generation_ = attempt;
      spawn(data_generation_);
      if (wait_healthy(std::chrono::seconds{30}))
        return;
      last = log_tail();
      kill();
    }
    remove_dir();
    throw std::runtime_error("etcd did not start: " + last);
  }

  ~etcd_server() {
    kill();
    remove_dir();
  }

  etcd_server(const etcd_server&) = delete;
  etcd_server& operator=(const etcd_server&) = delete;

  /// The registry URL for node_config::registry.
  std::string url() const {
    return "etcd://127.0.0.1:" + std::to_string(client_port_);
  }

  std::uint16_t client_port() const noexcept {
    return client_port_;
  }

  pid_t pid() const noexcept {
    return pid_;
  }

  /// Kills etcd with SIGKILL and reaps it (no-op if it is not running).
  void kill() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  /// Kills etcd and starts it again on the same ports, with its data
  /// (`keep_data`) or with none, as a member that lost its disk would.
  /// Throws if it does not come back healthy.
  void restart(bool keep_data) {
    kill();
    if (!keep_data)
      ++data_generation_;
    spawn(data_generation_);
    if (!wait_healthy(std::chrono::seconds{30}))
      throw std::runtime_error("etcd did not restart: " + log_tail());
  }

  /// The last lines etcd logged (for failure messages).
  std::string log_tail() const {
    std::string text;
    if (FILE* f = std::fopen((dir_ + "/etcd.log").c_str(), "r")) {
      char buf[4096];
      std::size_t n = 0;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        text.append(buf, n);
      std::fclose(f);
    }
    return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
  }

private:
  void spawn(int generation) {
    auto client = "http://127.0.0.1:" + std::to_string(client_port_);
    auto peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    // One flag and its value a line.
    // clang-format off
    std::vector<std::string> argv{
      "/usr/bin/etcd",
      "--name", "courier-test",
      "--data-dir", dir_ + "/data-" + std::to_string(generation),
      "--listen-client-urls", client,
      "--advertise-client-urls", client,
      "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer,
      "--initial-cluster", "courier-test=" + peer,
      // etcd's smallest lease TTL is 1.5 election timeouts: 750 ms here.
      "--heartbeat-interval", "50",
      "--election-timeout", "500",
      "--logger", "zap",
      "--log-outputs", "stderr"};
    // clang-format on
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    auto log = dir_ + "/etcd.log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                     O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    int rc
      = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      remove_dir();
      throw std::runtime_error(std::string{"cannot start /usr/bin/etcd: "}
                               + std::strerror(rc));
    }
  }

  /// Polls /health until etcd says true; false if it exits or the time
  /// is up.
  bool wait_healthy(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1; // exited (a port taken meanwhile, say)
        return false;
      }
      auto answer
        = http_get(client_port_, "/health", std::chrono::milliseconds{500});
      if (answer.find("\"health\":\"true\"") != std::string::npos)
        return true;
      // A poll interval: etcd offers nothing to block on until it is up.
      ::usleep(20'000);
    }
    return false;
  }

  void remove_dir() {
    std::error_code ignored;
    if (!dir_.empty())
      std::filesystem::remove_all(dir_, ignored);
  }

  std::string dir_;
  std::uint16_t client_port_ = 0;
  std::uint16_t peer_port_ = 0;
  pid_t pid_ = -1;
  int data_generation_ = 0; // names the data dir: data-<n>
};

} // namespace courier::testing
