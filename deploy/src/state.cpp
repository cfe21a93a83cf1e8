// The run dir's files: the lock that makes a system run once, and the state
// file that `ps` reads.

#include "state.hpp"

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace courier::deploy {

std::string_view to_string(node_state state) noexcept {
  switch (state) {
    case node_state::waiting:
      return "waiting";
    case node_state::starting:
      return "starting";
    case node_state::running:
      return "running";
    case node_state::backoff:
      return "backoff";
    case node_state::stopping:
      return "stopping";
    case node_state::stopped:
      return "stopped";
    case node_state::exited:
      return "exited";
    case node_state::failed:
      return "failed";
    case node_state::blocked:
      return "blocked";
  }
  return "unknown";
}

namespace detail {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

fs::path lock_path(const system_spec& system) {
  return system.run_dir / "up.lock";
}

fs::path state_path(const system_spec& system) {
  return system.run_dir / "state.json";
}

fs::path config_dir(const system_spec& system) {
  return system.run_dir / "config";
}

std::int64_t unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

expected<int> take_lock(const system_spec& system) {
  std::error_code failed;
  fs::create_directories(system.run_dir, failed);
  if (failed)
    return error{errc::permission_denied,
                 "cannot create the run dir " + system.run_dir.string() + ": "
                   + failed.message()};
  auto path = lock_path(system);
  // A supervisor that stops removes the lock file while holding it; one
  // that locked the removed file tries again on the new one.
  for (;;) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      return error{errc::permission_denied,
                   "cannot open " + path.string() + ": " + std::strerror(errno)};
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      auto pid = supervisor_pid(system);
      return error{errc::already_exists,
                   "system '" + system.name + "' is already up (supervisor pid "
                     + std::to_string(pid) + ", run dir "
                     + system.run_dir.string() + "): 'courier down "
                     + system.file.string() + "' stops it"};
    }
    struct stat held {};
    struct stat named {};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0
        && held.st_ino == named.st_ino && held.st_dev == named.st_dev)
      return fd;
    ::close(fd);
  }
}

void record_supervisor(int fd) {
  auto text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0)
    (void)!::pwrite(fd, text.data(), text.size(), 0);
}

int supervisor_pid(const system_spec& system) {
  std::ifstream in{lock_path(system)};
  int pid = 0;
  in >> pid;
  return pid;
}

void write_state(const system_spec& system, const system_status& status) {
  json nodes = json::array();
  for (const auto& node : status.nodes)
    nodes.push_back({{"name", node.name},
                     {"pid", node.pid},
                     {"user", node.user},
                     {"state", to_string(node.state)},
                     {"restarts", node.restarts},
                     {"started_at_ms", node.started_at_ms},
                     {"last_exit", node.last_exit},
                     {"reason", node.reason}});
  json out{{"system", status.system},
           {"file", status.file},
           {"supervisor_pid", status.supervisor_pid},
           {"started_at_ms", status.started_at_ms},
           {"nodes", std::move(nodes)}};
  auto path = state_path(system);
  auto temporary = path;
  temporary += ".tmp";
  {
    std::ofstream file{temporary, std::ios::trunc};
    file << out.dump(2) << "\n";
  }
  std::error_code ignored;
  fs::rename(temporary, path, ignored);
}

expected<system_status> read_state(const system_spec& system) {
  std::ifstream in{state_path(system)};
  if (!in)
    return error{errc::not_found, "system '" + system.name + "' is not up"};
  auto parsed = json::parse(in, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object())
    return error{errc::data_loss, state_path(system).string()
                                    + " is not a state file"};
  system_status status;
  status.system = parsed.value("system", "");
  status.file = parsed.value("file", "");
  status.supervisor_pid = parsed.value("supervisor_pid", 0);
  status.started_at_ms = parsed.value("started_at_ms", std::int64_t{0});
  for (const auto& row : parsed.value("nodes", json::array())) {
    node_status node;
    node.name = row.value("name", "");
    node.pid = row.value("pid", 0);
    node.user = row.value("user", "");
    auto state = row.value("state", "");
    for (auto s : {node_state::waiting, node_state::starting,
                   node_state::running, node_state::backoff,
                   node_state::stopping, node_state::stopped,
                   node_state::exited, node_state::failed, node_state::blocked})
      if (to_string(s) == state)
        node.state = s;
    node.restarts = row.value("restarts", 0);
    node.started_at_ms = row.value("started_at_ms", std::int64_t{0});
    node.last_exit = row.value("last_exit", "");
    node.reason = row.value("reason", "");
    status.nodes.push_back(std::move(node));
  }
  return status;
}

void remove_state(const system_spec& system) {
  std::error_code ignored;
  fs::remove(state_path(system), ignored);
  fs::remove_all(config_dir(system), ignored);
  fs::remove(lock_path(system), ignored);
  fs::remove(system.run_dir, ignored); // only if empty: the logs may be in it
}

} // namespace detail

} // namespace courier::deploy
