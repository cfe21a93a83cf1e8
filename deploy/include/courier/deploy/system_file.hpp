#pragma once

// A system file: the nodes of a multi-process system, how to start them,
// in which order, how to restart them, and where their logs go. `courier
// up` reads one (docs/deploy.md describes every key). Link
// `courier::deploy`.
//
//   auto system = courier::deploy::read_system_file("office.toml");
//   if (!system) { ... system.error().to_string() names file:line:column }
//   for (auto& problem : courier::deploy::check_system(*system)) { ... }

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "courier/error.hpp"

namespace courier::deploy {

/// When a node that ended is started again (Erlang/OTP's restart types).
enum class restart_type {
  permanent, ///< always
  transient, ///< only after an abnormal end: a non-zero status or a signal
  temporary, ///< never
};

/// How a node is asked to stop before SIGKILL.
enum class stop_method {
  sigterm, ///< its stdin is closed and it gets SIGTERM
  stdin,   ///< its stdin is closed, nothing more (programs that serve until
           ///< stdin closes and have no SIGTERM handler)
};

/// One node of a system: one supervised process.
///
/// Thread safety: a value type.
struct node_spec {
  /// The node's name in the system file: its log file, its row in `ps`.
  std::string name;
  /// The program, resolved: an absolute path, or a bare name searched in
  /// PATH when it is started.
  std::string program;
  std::vector<std::string> args;
  /// A node configuration file (docs/configuration.md), absolute; empty
  /// when none. Passed as `--config FILE` before `args`.
  std::string config;
  /// Inline node settings (the `settings` table), as TOML text with the
  /// keys of a node configuration file; empty when none. Written to the
  /// run dir when the node starts, then passed as `config` is.
  std::string settings;
  /// The user to run as; empty: the supervisor's own.
  std::string user;
  /// Added to the supervisor's environment (and COURIER_DIR when the
  /// system sets `directory`).
  std::map<std::string, std::string> env;
  /// The working directory, absolute.
  std::string cwd;
  /// Actor names the node registers: the next node starts once they are
  /// all held by this process in the node directory.
  std::vector<std::string> names;
  /// Nodes that must have registered their names before this one starts.
  std::vector<std::string> depends_on;
  restart_type restart = restart_type::permanent;
  /// At most `intensity` restarts within `period`; one more failure and
  /// the node is given up.
  int intensity = 3;
  std::chrono::milliseconds period{5000};
  /// The wait before the first restart, doubled after each one up to
  /// `max_backoff`, back to `backoff` once the node has run for `period`.
  std::chrono::milliseconds backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  /// How long the node may take to register its names.
  std::chrono::milliseconds start_timeout{10000};
  /// How long the node may take to stop before SIGKILL.
  std::chrono::milliseconds grace{5000};
  stop_method stop = stop_method::sigterm;
  /// Where each key was written ("file:line:column"), for later checks.
  std::map<std::string, std::string> positions;
};

/// A whole system file.
///
/// Thread safety: a value type.
struct system_spec {
  /// The system's name (the file's stem unless `name` is set).
  std::string name;
  /// The file, absolute.
  std::filesystem::path file;
  /// The node directory its nodes use (COURIER_DIR); empty: inherited.
  std::string directory;
  /// The supervisor's state: lock, state file, generated configurations.
  std::filesystem::path run_dir;
  /// A log file per node, and the supervisor's.
  std::filesystem::path logs_dir;
  /// A log file larger than this is renamed to `<file>.1` (replacing the
  /// previous one) and started again.
  std::uint64_t max_log_size = 10u << 20;
  /// The nodes, in the file's order.
  std::vector<node_spec> nodes;
};

/// Parses a system file's text. `source` names it in errors; relative
/// paths are taken from `base` (the current directory when empty).
///
/// Errors: invalid_argument, "source:line:column: key: why", for TOML
/// syntax, an unknown key, a wrong type or a bad value (node settings are
/// checked by the node configuration's own rules), a dependency on an
/// unknown node, two nodes of one name.
[[nodiscard]] expected<system_spec>
parse_system_file(std::string_view toml, std::string_view source = "<string>",
                  const std::filesystem::path& base = {});

/// Reads and parses the system file `file`: as parse_system_file, plus
/// not_found or permission_denied when it cannot be read.
[[nodiscard]] expected<system_spec>
read_system_file(const std::filesystem::path& file);

/// What parsing cannot see: every program exists and is executable, every
/// user exists (and this process may switch to it), every working
/// directory and configuration file is there, dependencies form no cycle.
/// Returns every problem found (empty when none), each naming its place.
[[nodiscard]] std::vector<error> check_system(const system_spec& system);

/// The order in which the nodes start: each after the nodes it depends
/// on, otherwise in the file's order: indexes into `system.nodes`, or
/// invalid_argument naming a cycle of dependencies.
[[nodiscard]] expected<std::vector<std::size_t>>
start_order(const system_spec& system);

/// The executable `program` names: itself when it holds a '/', else the
/// first executable of that name in PATH. not_found otherwise.
[[nodiscard]] expected<std::string> resolve_program(const std::string& program);

} // namespace courier::deploy
