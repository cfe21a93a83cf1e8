#include "supervisor.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <memory>
#include <optional>

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launch.hpp"
#include "log_file.hpp"
#include "observer.hpp"
#include "state.hpp"

namespace courier::deploy::detail {

namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

/// How often a starting node's names are looked up in the directory.
constexpr auto name_poll = 10ms;

std::string text_of(milliseconds d) {
  if (d.count() % 1000 == 0)
    return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

std::string describe_exit(int status) {
  if (WIFEXITED(status))
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string{"killed by SIG"} + (name != nullptr ? name : "?");
  }
  return "ended (status " + std::to_string(status) + ")";
}

/// One supervised node: its spec, its process, its restart history.
struct supervised {
  const node_spec* spec = nullptr;
  std::optional<launch_plan> plan;
  std::string config_file;
  node_state state = node_state::waiting;
  bool ever_up = false; ///< reached running once (or has no names)
  launched process;
  int restarts = 0;
  std::deque<clock::time_point> recent_restarts;
  milliseconds next_backoff{0};
  clock::time_point started{};
  clock::time_point due{}; ///< restart, start deadline or kill deadline
  bool killed = false;     ///< SIGKILL sent (stop, or a start too slow)
  bool timed_out = false;  ///< killed for not registering its names
  std::int64_t started_at_ms = 0;
  std::string last_exit;
  std::string reason;
  std::unique_ptr<log_file> log;
};

class supervisor {
public:
  supervisor(const system_spec& system, int ready_fd,
             std::function<void(std::string_view)> echo,
             std::function<void(milliseconds)> on_up)
    : system_(system),
      ready_fd_(ready_fd),
      echo_(std::move(echo)),
      on_up_(std::move(on_up)),
      log_(log_path(system), system.max_log_size) {
  }

  expected<void> run();

private:
  void say(const std::string& node, const std::string& text);
  expected<void> prepare();
  void start(supervised& n);
  void advance_start();
  void check_names();
  void on_exit(pid_t pid, int status);
  void restart_or_give_up(supervised& n);
  void begin_stop();
  void advance_stop();
  void drain(supervised& n);
  void report_up();
  void report_failure(const std::string& why);
  void save();
  int poll_timeout() const;
  bool all_down() const;

  const system_spec& system_;
  int ready_fd_;
  std::function<void(std::string_view)> echo_;
  std::function<void(milliseconds)> on_up_;
  log_file log_;
  std::optional<node> observer_;
  std::vector<supervised> nodes_; ///< in start order
  std::size_t next_start_ = 0;
  bool reported_up_ = false;
  bool stopping_ = false;
  std::size_t stop_index_ = 0; ///< nodes_[0, stop_index_) still to stop
  clock::time_point began_ = clock::now();
  std::int64_t began_ms_ = unix_ms();
  clock::time_point next_name_check_{};
  bool dirty_ = true;
};

void supervisor::say(const std::string& node, const std::string& text) {
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::tm parts{};
  ::gmtime_r(&now, &parts);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &parts);
  auto line = std::string{stamp} + " " + (node.empty() ? system_.name : node)
              + ": " + text + "\n";
  log_.write(line);
  if (echo_)
    echo_(line);
}

expected<void> supervisor::prepare() {
  auto order = start_order(system_);
  if (!order)
    return std::move(order).error();
  std::error_code failed;
  for (auto i : *order) {
    supervised n;
    n.spec = &system_.nodes[i];
    n.next_backoff = n.spec->backoff;
    if (!n.spec->config.empty())
      n.config_file = n.spec->config;
    if (!n.spec->settings.empty()) {
      std::filesystem::create_directories(config_dir(system_), failed);
      ::chmod(config_dir(system_).c_str(), 0755);
      n.config_file = (config_dir(system_) / (n.spec->name + ".toml")).string();
      std::ofstream{n.config_file, std::ios::trunc} << n.spec->settings;
      ::chmod(n.config_file.c_str(), 0644);
    }
    auto plan = plan_launch(system_, *n.spec, n.config_file);
    if (!plan)
      return error{plan.code(), "node '" + n.spec->name
                                  + "': " + plan.error().message()};
    n.plan = std::move(*plan);
    n.log = std::make_unique<log_file>(log_path(system_, n.spec->name),
                                       system_.max_log_size);
    nodes_.push_back(std::move(n));
  }
  stop_index_ = nodes_.size();
  return {};
}

void supervisor::start(supervised& n) {
  auto process = launch(*n.plan);
  n.started = clock::now();
  n.killed = false;
  n.timed_out = false;
  if (!process) {
    n.last_exit = process.error().message();
    say(n.spec->name, "did not start: " + n.last_exit);
    n.process = {};
    restart_or_give_up(n);
    return;
  }
  n.process = *process;
  n.started_at_ms = unix_ms();
  n.state = node_state::starting;
  n.due = n.started + n.spec->start_timeout;
  say(n.spec->name, "started, pid " + std::to_string(n.process.pid)
                      + (n.plan->switch_user ? " as " + n.plan->user : ""));
  next_name_check_ = clock::now();
  dirty_ = true;
}

void supervisor::advance_start() {
  while (next_start_ < nodes_.size()) {
    auto& n = nodes_[next_start_];
    if (n.state == node_state::waiting) {
      for (const auto& needed : n.spec->depends_on)
        for (const auto& other : nodes_)
          if (other.spec->name == needed
              && (other.state == node_state::failed
                  || other.state == node_state::blocked)) {
            n.state = node_state::blocked;
            n.reason = "depends on '" + needed + "', which "
                       + std::string{to_string(other.state)};
            say(n.spec->name, "not started: " + n.reason);
            dirty_ = true;
          }
      if (n.state == node_state::waiting) {
        start(n);
        return;
      }
    }
    // The next node waits until this one has registered its names (or
    // will not: given up, blocked, or ended by its restart type).
    if (!n.ever_up && n.state != node_state::failed
        && n.state != node_state::blocked && n.state != node_state::exited)
      return;
    ++next_start_;
  }
  report_up();
}

void supervisor::check_names() {
  auto now = clock::now();
  std::vector<supervised*> waiting;
  for (auto& n : nodes_)
    if (n.state == node_state::starting) {
      if (n.spec->names.empty()) {
        n.state = node_state::running;
        n.ever_up = true;
        dirty_ = true;
      } else if (now >= n.due && !n.killed) {
        n.reason = "did not register its names within "
                   + text_of(n.spec->start_timeout);
        say(n.spec->name, n.reason + ": killing it");
        n.timed_out = true;
        n.killed = true;
        ::kill(n.process.pid, SIGKILL);
      } else if (!n.killed) {
        waiting.push_back(&n);
      }
    }
  if (waiting.empty() || now < next_name_check_)
    return;
  next_name_check_ = now + name_poll;
  auto held = names_by_pid(*observer_);
  for (auto* n : waiting) {
    auto& names = held[n->process.pid];
    bool all = std::all_of(n->spec->names.begin(), n->spec->names.end(),
                           [&](const std::string& name) {
                             return std::find(names.begin(), names.end(), name)
                                    != names.end();
                           });
    if (!all)
      continue;
    n->state = node_state::running;
    n->ever_up = true;
    n->reason.clear();
    auto took = std::chrono::duration_cast<milliseconds>(clock::now()
                                                         - n->started);
    say(n->spec->name, "running: its names are registered after "
                         + std::to_string(took.count()) + " ms");
    dirty_ = true;
  }
}

void supervisor::drain(supervised& n) {
  if (n.process.output_fd < 0)
    return;
  char buffer[65536];
  for (;;) {
    auto got = ::read(n.process.output_fd, buffer, sizeof buffer);
    if (got > 0) {
      n.log->write({buffer, static_cast<std::size_t>(got)});
      continue;
    }
    if (got < 0 && errno == EINTR)
      continue;
    if (got == 0 || errno != EAGAIN) {
      ::close(n.process.output_fd);
      n.process.output_fd = -1;
    }
    return;
  }
}

void supervisor::on_exit(pid_t pid, int status) {
  auto it = std::find_if(nodes_.begin(), nodes_.end(),
                         [pid](const supervised& n) {
                           return n.process.pid == pid;
                         });
  if (it == nodes_.end())
    return;
  auto& n = *it;
  drain(n);
  if (n.process.output_fd >= 0)
    ::close(n.process.output_fd);
  if (n.process.stdin_fd >= 0)
    ::close(n.process.stdin_fd);
  n.process = {};
  n.started_at_ms = 0;
  n.last_exit = describe_exit(status);
  dirty_ = true;
  if (n.state == node_state::stopping || stopping_) {
    n.state = node_state::stopped;
    say(n.spec->name, "stopped: " + n.last_exit);
    return;
  }
  say(n.spec->name, n.last_exit);
  // Whoever looks at a dead node's entries removes them: looked at now,
  // they are gone before its next incarnation claims its names again.
  (void)names_by_pid(*observer_);
  bool normal = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !n.timed_out;
  if (n.spec->restart == restart_type::temporary
      || (n.spec->restart == restart_type::transient && normal)) {
    n.state = node_state::exited;
    say(n.spec->name, "not restarted (restart = "
                        + std::string{n.spec->restart
                                          == restart_type::temporary
                                        ? "temporary"
                                        : "transient"}
                        + ")");
    return;
  }
  restart_or_give_up(n);
}

void supervisor::restart_or_give_up(supervised& n) {
  auto now = clock::now();
  dirty_ = true;
  // A node that ran for a whole period is healthy again: the backoff
  // starts over.
  if (now - n.started >= n.spec->period)
    n.next_backoff = n.spec->backoff;
  while (!n.recent_restarts.empty()
         && now - n.recent_restarts.front() >= n.spec->period)
    n.recent_restarts.pop_front();
  if (static_cast<int>(n.recent_restarts.size()) >= n.spec->intensity) {
    n.state = node_state::failed;
    n.reason = "given up: " + std::to_string(n.recent_restarts.size())
               + " restarts within " + text_of(n.spec->period)
               + " (intensity " + std::to_string(n.spec->intensity)
               + "), then " + n.last_exit;
    say(n.spec->name, n.reason);
    return;
  }
  n.recent_restarts.push_back(now);
  n.state = node_state::backoff;
  n.due = now + n.next_backoff;
  say(n.spec->name, "restarting in " + text_of(n.next_backoff));
  n.next_backoff = std::min(n.next_backoff * 2, n.spec->max_backoff);
}

void supervisor::begin_stop() {
  if (stopping_)
    return;
  stopping_ = true;
  say("", "stopping, in reverse start order");
  for (auto& n : nodes_)
    if (n.process.pid <= 0
        && (n.state == node_state::waiting || n.state == node_state::backoff)) {
      n.state = node_state::stopped;
      dirty_ = true;
    }
}

void supervisor::advance_stop() {
  auto now = clock::now();
  while (stop_index_ > 0) {
    auto& n = nodes_[stop_index_ - 1];
    if (n.process.pid <= 0) {
      --stop_index_;
      continue;
    }
    if (n.state != node_state::stopping) {
      n.state = node_state::stopping;
      n.due = now + n.spec->grace;
      n.killed = false;
      ::close(n.process.stdin_fd);
      n.process.stdin_fd = -1;
      if (n.spec->stop == stop_method::sigterm)
        ::kill(n.process.pid, SIGTERM);
      say(n.spec->name, std::string{"stopping: "}
                          + (n.spec->stop == stop_method::sigterm
                               ? "SIGTERM"
                               : "stdin closed")
                          + ", SIGKILL after " + text_of(n.spec->grace));
      dirty_ = true;
    } else if (now >= n.due && !n.killed) {
      say(n.spec->name, "still there after its grace: SIGKILL");
      ::kill(n.process.pid, SIGKILL);
      n.killed = true;
    }
    return; // one node at a time
  }
}

void supervisor::report_up() {
  if (reported_up_)
    return;
  reported_up_ = true;
  auto took = std::chrono::duration_cast<milliseconds>(clock::now() - began_);
  std::string failed;
  for (const auto& n : nodes_)
    if (n.state == node_state::failed || n.state == node_state::blocked)
      failed += (failed.empty() ? "" : "; ") + n.spec->name + ": " + n.reason;
  if (stopping_ && next_start_ < nodes_.size())
    failed = "stopped before every node had started";
  std::string line;
  if (failed.empty()) {
    say("", "up: " + std::to_string(nodes_.size()) + " nodes in "
              + std::to_string(took.count()) + " ms");
    line = "up " + std::to_string(took.count()) + "\n";
  } else {
    say("", "started, but not every node: " + failed);
    line = "failed " + failed + "\n";
  }
  save(); // `ps` right after `up` returns shows what `up` said
  if (ready_fd_ >= 0) {
    (void)!::write(ready_fd_, line.data(), line.size());
    ::close(ready_fd_);
    ready_fd_ = -1;
  }
  if (on_up_)
    on_up_(took);
}

void supervisor::report_failure(const std::string& why) {
  say("", why);
  reported_up_ = true;
  save();
  if (ready_fd_ >= 0) {
    auto line = "failed " + why + "\n";
    (void)!::write(ready_fd_, line.data(), line.size());
    ::close(ready_fd_);
    ready_fd_ = -1;
  }
}

void supervisor::save() {
  if (!dirty_)
    return;
  dirty_ = false;
  system_status status;
  status.system = system_.name;
  status.file = system_.file.string();
  status.supervisor_pid = ::getpid();
  status.started_at_ms = began_ms_;
  for (const auto& n : nodes_)
    status.nodes.push_back({n.spec->name, std::max(0, n.process.pid),
                            n.plan->user, n.state,
                            n.restarts, n.started_at_ms, n.last_exit, n.reason,
                            {}});
  write_state(system_, status);
}

int supervisor::poll_timeout() const {
  auto now = clock::now();
  auto until = now + 1s;
  for (const auto& n : nodes_) {
    if (n.state == node_state::starting)
      until = std::min(until, std::max(now, std::min(n.due, next_name_check_)));
    if (n.state == node_state::backoff || n.state == node_state::stopping)
      until = std::min(until, n.due);
  }
  auto wait = std::chrono::duration_cast<milliseconds>(until - now).count();
  return static_cast<int>(std::max<long>(wait, 0));
}

bool supervisor::all_down() const {
  return std::none_of(nodes_.begin(), nodes_.end(), [](const supervised& n) {
    return n.process.pid > 0;
  });
}

expected<void> supervisor::run() {
  say("", "supervisor pid " + std::to_string(::getpid()) + " for "
            + system_.file.string());
  if (auto prepared = prepare(); !prepared) {
    report_failure(prepared.error().message());
    return prepared;
  }
  // Blocked in every thread (the node's inherit the mask), taken from the
  // signalfd instead.
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP})
    sigaddset(&handled, sig);
  ::pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  int signals = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  auto observer = start_observer(system_, "courier-up." + system_.name,
                                 [this](std::string_view line) {
                                   say("", std::string{line});
                                 });
  if (!observer) {
    ::close(signals);
    report_failure("cannot start the supervisor's node: "
                   + observer.error().to_string());
    return std::move(observer).error();
  }
  observer_.emplace(std::move(*observer));

  for (;;) {
    if (!stopping_) {
      advance_start();
      check_names();
      advance_start(); // the next node, at once when this one is up
      auto now = clock::now();
      for (auto& n : nodes_)
        if (n.state == node_state::backoff && now >= n.due) {
          ++n.restarts;
          start(n);
        }
    } else {
      advance_stop();
      if (all_down())
        break;
    }
    save();

    std::vector<pollfd> fds{{signals, POLLIN, 0}};
    for (const auto& n : nodes_)
      if (n.process.output_fd >= 0)
        fds.push_back({n.process.output_fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), poll_timeout()) < 0 && errno != EINTR)
      break;
    for (std::size_t i = 1; i < fds.size(); ++i)
      if (fds[i].revents != 0)
        for (auto& n : nodes_)
          if (n.process.output_fd == fds[i].fd)
            drain(n);
    signalfd_siginfo info{};
    while (::read(signals, &info, sizeof info) == sizeof info) {
      if (info.ssi_signo == SIGCHLD) {
        int status = 0;
        pid_t pid;
        while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0)
          on_exit(pid, status);
      } else {
        say("", std::string{"SIG"} + sigabbrev_np(static_cast<int>(info.ssi_signo)));
        begin_stop();
      }
    }
  }
  ::close(signals);
  if (!reported_up_)
    report_up();
  // Entries of nodes that could not clean up (SIGKILL) go when someone
  // looks: the supervisor looks once more before it leaves.
  (void)names_by_pid(*observer_);
  observer_.reset();
  say("", "stopped");
  return {};
}

} // namespace

expected<void> supervise(const system_spec& system, int lock_fd, int ready_fd,
                         std::function<void(std::string_view)> echo,
                         std::function<void(milliseconds)> on_up) {
  record_supervisor(lock_fd);
  std::error_code failed;
  std::filesystem::create_directories(system.logs_dir, failed);
  expected<void> result;
  {
    supervisor running{system, ready_fd, std::move(echo), std::move(on_up)};
    result = running.run();
  }
  remove_state(system);
  ::close(lock_fd);
  return result;
}

} // namespace courier::deploy::detail
