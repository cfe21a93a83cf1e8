#pragma once

// Running a system (system_file.hpp): a supervisor process starts its nodes
// in order, restarts them by their policy, keeps their logs, and stops
// them in reverse order. `courier up`, `down`, `ps` and `logs` are thin
// over these functions; docs/deploy.md describes the semantics and the
// files under the run dir.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "courier/deploy/system_file.hpp"
#include "courier/error.hpp"

namespace courier::deploy {

/// Where a supervised node is in its life.
enum class node_state {
  waiting,  ///< not started yet: an earlier node is still starting
  starting, ///< running, its names not all registered yet
  running,  ///< running, with its names registered
  backoff,  ///< ended, to be restarted after its backoff
  stopping, ///< asked to stop
  stopped,  ///< stopped by the supervisor
  exited,   ///< ended and, by its restart type, not restarted
  failed,   ///< ended too often: given up
  blocked,  ///< never started: a node it depends on failed
};

[[nodiscard]] std::string_view to_string(node_state state) noexcept;

/// One supervised node, as `courier ps` shows it.
struct node_status {
  std::string name;
  /// Its process while it has one; 0 otherwise.
  int pid = 0;
  std::string user;
  node_state state = node_state::waiting;
  /// Restarts since the supervisor started.
  int restarts = 0;
  /// When its current process started (Unix time, ms); 0 without one.
  std::int64_t started_at_ms = 0;
  /// How its last process ended ("exited with status 1", "killed by
  /// SIGKILL"), or empty.
  std::string last_exit;
  /// Why it failed or is blocked, or empty.
  std::string reason;
  /// The actor names its process holds in the node directory
  /// (add_names_held() fills them in).
  std::vector<std::string> names_held;
};

/// A running system, as its supervisor last wrote it down.
struct system_status {
  std::string system;
  std::string file;
  int supervisor_pid = 0;
  std::int64_t started_at_ms = 0;
  /// In start order.
  std::vector<node_status> nodes;
};

/// Runs `system` in this process: takes its lock, starts its nodes,
/// supervises them until SIGINT, SIGTERM or SIGHUP, then stops them in
/// reverse order and removes its state. Blocks until then. `echo` also
/// gets every line of the supervisor's log, and `on_up` runs once when
/// the start is over (every node running, or some given up).
///
/// Errors: already_exists when the system is up already (the message says
/// which supervisor holds it); what starting the supervisor's own node
/// returns. A node that fails is reported in the log and by `ps`, not here.
/// Thread safety: call it from a single-threaded process's main thread
/// (it blocks signals for the whole process and forks).
[[nodiscard]] expected<void>
run_system(const system_spec& system,
           std::function<void(std::string_view)> echo = {},
           std::function<void(std::chrono::milliseconds)> on_up = {});

/// Starts a detached supervisor for `system` (double fork and setsid) and
/// waits until its start is over. Returns how long the start took (from
/// the supervisor's start until every node has registered its names).
///
/// Errors: already_exists when the system is up; unavailable naming the
/// node when a node was given up while starting (the supervisor keeps
/// running the others: `down` stops them); internal when the supervisor
/// died. Call it before the process has started any thread (it forks).
[[nodiscard]] expected<std::chrono::milliseconds>
start_detached(const system_spec& system);

/// Stops `system`'s supervisor (SIGTERM; it stops the nodes in reverse
/// order, SIGKILL after each one's grace) and waits until it has exited.
/// Returns false if the system was not up (state left by a supervisor
/// that was killed is removed).
///
/// Errors: deadline_exceeded when the supervisor is still there after
/// every node's grace and ten seconds more.
[[nodiscard]] expected<bool> stop_system(const system_spec& system);

/// The state the system's supervisor last wrote; not_found when the
/// system is not up.
[[nodiscard]] expected<system_status> read_status(const system_spec& system);

/// Fills in each node's names_held from the node directory, read through
/// a node of this process's own (the runtime's directory interface).
/// Starts threads. Errors: what starting that node returns.
[[nodiscard]] expected<void> add_names_held(const system_spec& system,
                                            system_status& status);

/// True while a supervisor runs `system`.
[[nodiscard]] bool is_up(const system_spec& system);

/// The log file of node `node`, or the supervisor's when `node` is empty.
[[nodiscard]] std::filesystem::path log_path(const system_spec& system,
                                             std::string_view node = {});

} // namespace courier::deploy
