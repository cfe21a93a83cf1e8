#pragma once

// What the subcommands of the `courier` CLI share.
//
// A subcommand is one setup function: it declares its arguments on its
// CLI11 subcommand and returns the work to run once the CLI's node is up.
// Adding one is that function plus one line in courier.cpp's table.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "courier/courier.hpp"

namespace CLI {
class App;
} // namespace CLI

namespace courier::cli {

/// Exit statuses, the same for every subcommand.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failed = 1; ///< the reason went to stderr
inline constexpr int exit_usage = 2;

/// Options every subcommand takes, before or after its name.
struct global_options {
  std::string dir;
  /// The cluster registry (node_config::registry); empty: the directory.
  std::string registry;
  /// The CLI's own node name; empty: cli-<pid>. Across hosts it is the
  /// name the CLI's certificate must carry.
  std::string name;
  bool json = false;
  /// A node configuration file (docs/configuration.md) for the CLI's own
  /// node; empty for the defaults.
  std::string config;
};

/// A subcommand's work once the CLI's node is up; returns the exit status.
using command = std::function<int(node& self, const global_options& global)>;

/// Declares a subcommand's arguments on `sub` and returns its work, which
/// reads them once parsing is done.
using command_setup = command (*)(CLI::App& sub);

/// The work of a subcommand that needs no node (`cert`): the CLI starts
/// none for it.
using offline_command = std::function<int(const global_options& global)>;
using offline_setup = offline_command (*)(CLI::App& sub);

// -- subcommands (lookup_commands.cpp, message_commands.cpp) -----------------

command nodes_command(CLI::App& sub);
command names_command(CLI::App& sub);
command find_command(CLI::App& sub);
command routes_command(CLI::App& sub);
command post_command(CLI::App& sub);
command send_command(CLI::App& sub);
// gateway_command.cpp
command gateway_command(CLI::App& sub);

// -- metrics (stats_commands.cpp) --------------------------------------------

command stats_command(CLI::App& sub);
command top_command(CLI::App& sub);

// -- durable queues and dead letters (queue_commands.cpp) --------------------

command queues_command(CLI::App& sub);
command queue_command(CLI::App& sub);
command deadletters_command(CLI::App& sub);

// -- subcommands without a node ----------------------------------------------

// cert_command.cpp

offline_command cert_command(CLI::App& sub);

// -- a system from one file (deploy_commands.cpp) ----------------------------

offline_command up_command(CLI::App& sub);
offline_command down_command(CLI::App& sub);
offline_command ps_command(CLI::App& sub);
offline_command logs_command(CLI::App& sub);

// -- shared helpers (support.cpp) --------------------------------------------

/// Prints "courier: <code>: <text>" on stderr; returns exit_failed.
int fail(const error& err);

/// Prints `rows` (a JSON array) as one line of JSON, or each row as the
/// line `text_line` makes of it: both forms show the same rows.
int print_rows(const nlohmann::ordered_json& rows, bool json,
               std::string (*text_line)(const nlohmann::ordered_json& row));

/// A JSON value as plain text: strings without quotes, the rest as JSON.
std::string plain(const nlohmann::ordered_json& value);

/// The nodes to ask: `only`, or every node of the directory but the CLI's.
std::vector<std::string> nodes_to_ask(node& self, const std::string& only);

/// The node holding `name` ("actor" or "actor@node") on this machine, other
/// than the CLI's own: invalid_argument when the name is malformed,
/// not_found when nobody holds it.
expected<std::string> holder_of(node& self, const std::string& name);

/// Declares --timeout MS (default 5000, 1 ms to a day) on `sub`; the result
/// holds the value after parsing.
std::shared_ptr<long> add_timeout(CLI::App& sub, const std::string& help);

/// invalid_argument unless `pattern` is a glob that could match a name:
/// name characters plus '*' and '?'.
expected<void> check_pattern(const std::string& pattern);

} // namespace courier::cli
