// The public face of the supervisor: run in the foreground, start detached,
// stop, read the state. supervisor.cpp holds the loop itself.

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "courier/deploy/supervisor.hpp"
#include "observer.hpp"
#include "state.hpp"
#include "supervisor.hpp"

namespace courier::deploy {

using namespace std::chrono_literals;

namespace {

/// True once `pid` has exited: no such process, or a zombie (a daemon's
/// parent may be an init that does not reap).
bool process_gone(int pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string stat;
  if (!std::getline(in, stat))
    return true;
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size()
         && stat[close + 2] == 'Z';
}

} // namespace

std::filesystem::path log_path(const system_spec& system,
                               std::string_view node) {
  return system.logs_dir
         / (node.empty() ? std::string{"supervisor.log"}
                         : std::string{node} + ".log");
}

bool is_up(const system_spec& system) {
  int fd = ::open(detail::lock_path(system).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

expected<void> run_system(const system_spec& system,
                          std::function<void(std::string_view)> echo,
                          std::function<void(std::chrono::milliseconds)> on_up) {
  auto lock = detail::take_lock(system);
  if (!lock)
    return std::move(lock).error();
  return detail::supervise(system, *lock, -1, std::move(echo),
                           std::move(on_up));
}

expected<std::chrono::milliseconds> start_detached(const system_spec& system) {
  // Taken here, so that a second `up` hears at once; the daemon inherits
  // the locked descriptor and keeps it after this process has gone.
  auto lock = detail::take_lock(system);
  if (!lock)
    return std::move(lock).error();
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    ::close(*lock);
    return error{errc::internal,
                 std::string{"cannot make a pipe: "} + std::strerror(errno)};
  }
  pid_t first = ::fork();
  if (first < 0) {
    ::close(*lock);
    ::close(ready[0]);
    ::close(ready[1]);
    return error{errc::internal,
                 std::string{"cannot fork: "} + std::strerror(errno)};
  }
  if (first == 0) {
    // The first child leads a new session, then leaves: the daemon below
    // is no session leader and can never get a controlling terminal.
    ::close(ready[0]);
    ::setsid();
    pid_t daemon = ::fork();
    if (daemon != 0)
      ::_exit(daemon < 0 ? 1 : 0);
    ::umask(022);
    if (::chdir("/") != 0)
      ::_exit(1);
    int null = ::open("/dev/null", O_RDWR);
    for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO})
      ::dup2(null, fd);
    if (null > STDERR_FILENO)
      ::close(null);
    auto ran = detail::supervise(system, *lock, ready[1], {}, {});
    ::_exit(ran ? 0 : 1);
  }
  ::close(ready[1]);
  ::close(*lock); // the daemon holds its own copy
  int status = 0;
  ::waitpid(first, &status, 0);
  std::string report;
  char buffer[512];
  for (;;) {
    auto got = ::read(ready[0], buffer, sizeof buffer);
    if (got > 0)
      report.append(buffer, static_cast<std::size_t>(got));
    else if (got == 0 || errno != EINTR)
      break;
  }
  ::close(ready[0]);
  if (!report.empty() && report.back() == '\n')
    report.pop_back();
  if (report.rfind("up ", 0) == 0)
    return std::chrono::milliseconds{std::stoll(report.substr(3))};
  if (report.rfind("failed ", 0) == 0)
    return error{errc::unavailable,
                 "system '" + system.name + "': " + report.substr(7)
                   + " (see " + log_path(system).string() + ")"};
  return error{errc::internal, "the supervisor of '" + system.name
                                 + "' ended before it had started ("
                                 + log_path(system).string() + ")"};
}

expected<bool> stop_system(const system_spec& system) {
  if (!is_up(system)) {
    // A supervisor killed with SIGKILL leaves its state; its nodes had
    // SIGTERM from the kernel (their parent-death signal).
    detail::remove_state(system);
    return false;
  }
  auto pid = detail::supervisor_pid(system);
  if (pid <= 0 || ::kill(pid, SIGTERM) != 0)
    return error{errc::permission_denied,
                 "cannot signal the supervisor of '" + system.name
                   + "' (pid " + std::to_string(pid)
                   + "): " + std::strerror(errno)};
  std::chrono::milliseconds patience = 10s;
  for (const auto& node : system.nodes)
    patience += node.grace;
  auto until = std::chrono::steady_clock::now() + patience;
  // The lock goes first, the process a moment later: `down` returns when
  // both are gone.
  while (is_up(system) || !process_gone(pid)) {
    if (std::chrono::steady_clock::now() > until)
      return error{errc::deadline_exceeded,
                   "the supervisor of '" + system.name + "' (pid "
                     + std::to_string(pid) + ") is still running after "
                     + std::to_string(patience.count()) + " ms"};
    std::this_thread::sleep_for(10ms); // a poll interval for the lock
  }
  return true;
}

expected<system_status> read_status(const system_spec& system) {
  if (!is_up(system))
    return error{errc::not_found, "system '" + system.name + "' is not up"};
  return detail::read_state(system);
}

expected<void> add_names_held(const system_spec& system,
                              system_status& status) {
  auto observer = detail::start_observer(
    system, "courier-ps-" + std::to_string(::getpid()), {});
  if (!observer)
    return std::move(observer).error();
  auto held = detail::names_by_pid(*observer);
  for (auto& node : status.nodes)
    if (node.pid > 0)
      node.names_held = held[node.pid];
  return {};
}

} // namespace courier::deploy
