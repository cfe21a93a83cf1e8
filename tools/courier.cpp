// courier: look at and talk to the nodes of this machine.
//
//   courier [--dir DIR] [--json] nodes
//   courier [--dir DIR] [--json] names [PATTERN]
//   courier [--dir DIR] [--json] find NAME
//   courier [--dir DIR] [--json] routes [--timeout MS]
//   courier [--dir DIR] post NAME TYPE JSON
//   courier [--dir DIR] [--json] send NAME TYPE JSON [--timeout MS]
//   courier [--dir DIR] [--json] stats [NODE] [--timeout MS]
//   courier [--dir DIR] top [NODE] [--interval MS] [--rows N] [--once]
//   courier [--dir DIR] [--json] queues [NODE]
//   courier [--dir DIR] queue peek NAME [N] [--node NODE]
//   courier [--dir DIR] [--json] queue purge NAME [--node NODE]
//   courier [--dir DIR] [--json] deadletters [NODE]
//   courier [--dir DIR] [--json] deadletters replay (ID|--all) [--node NODE]
//   courier [--json] cert ca --out DIR [--name CN] [--days N] [--force]
//   courier [--json] cert node NAME --ca DIR --out DIR [--san SAN]...
//                    [--days N] [--not-before OFFSET] [--not-after OFFSET]
//                    [--force]
//   courier [--name NODE] gateway [--listen HOST:PORT]
//                    [--certificate F --private-key F --ca F]
//   courier up [-d] [--check] FILE
//   courier down FILE
//   courier [--json] ps FILE
//   courier logs FILE [NODE] [-f]
//
// Every subcommand but cert, up, down, ps and logs also takes --config
// FILE, settings for the CLI's own node (docs/configuration.md), --name
// NODE, its node's name (the one its certificate names, across hosts), and
// --registry
// etcd://HOST:PORT[,...], to look at the nodes and names of a cluster
// registry (docs/directory.md) instead of the machine's directory. --dir,
// --config, --registry and --json may also follow the subcommand; each
// subcommand has --help. Exit status: 0 success, 1 the operation failed
// (the reason is printed on stderr as "courier: <code>: <text>"), 2 bad
// usage.

#include <iostream>
#include <optional>
#include <string>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "courier/config/config_file.hpp"
#include "courier/pipe/pipe_transport.hpp"

using namespace courier;
using namespace courier::cli;

namespace {

/// One subcommand: its name, its one-line help, and its setup.
struct subcommand {
  const char* name;
  const char* help;
  command_setup setup;
};

/// Every subcommand; a new one is a setup function and a line here.
constexpr subcommand subcommands[] = {
  {"nodes", "live nodes of this machine: pid, uid, login session",
   nodes_command},
  {"names", "names held on this machine, matching a glob", names_command},
  {"find", "which node holds NAME", find_command},
  {"routes", "each node's routes and the tier each takes", routes_command},
  {"post", "fire and forget a message given as JSON", post_command},
  {"send", "call an actor and print its reply as JSON", send_command},
  {"stats", "what each node counts: messages, bytes, latencies, depths",
   stats_command},
  {"top", "a live view of the busiest actors and routes", top_command},
  {"gateway", "serve the verbs to gRPC clients until SIGINT or SIGTERM",
   gateway_command},
  {"queues", "each node's durable queues: depth, in flight, bytes, oldest",
   queues_command},
  {"queue", "peek into or purge a durable queue", queue_command},
  {"deadletters", "durable dead letters (reason, attempts, times); replay",
   deadletters_command},
};

/// A subcommand that starts no node.
struct offline_subcommand {
  const char* name;
  const char* help;
  offline_setup setup;
};

constexpr offline_subcommand offline_subcommands[] = {
  {"cert", "make a development CA and node certificates for mutual TLS",
   cert_command},
  {"up", "start a system of nodes from its file and supervise them",
   up_command},
  {"down", "stop a system started with up -d", down_command},
  {"ps", "the processes of a running system", ps_command},
  {"logs", "a node's output (or the supervisor's log)", logs_command},
};

/// Parses the command line into `global` and either `run` or `offline`.
/// Returns an exit status when nothing is left to run: 0 after --help,
/// exit_usage after bad usage (both printed).
std::optional<int> parse(int argc, char** argv, global_options& global,
                         command& run, offline_command& offline) {
  CLI::App app{"Look at and talk to the Courier nodes of this machine.",
               "courier"};
  app.add_option("--dir", global.dir,
                 "the node directory (default: $COURIER_DIR, else "
                 "/tmp/courier, or /run/courier for root)");
  app.add_option("--registry", global.registry,
                 "a cluster registry, etcd://HOST:PORT[,HOST:PORT...] "
                 "(default: none, the node directory alone)");
  app
    .add_option("--name", global.name,
                "the CLI's own node name (default: cli-<pid>); across hosts, "
                "the node its TLS certificate names")
    ->type_name("NODE");
  app.add_flag("--json", global.json, "print machine-readable JSON");
  app
    .add_option("--config", global.config,
                "settings of the CLI's own node from a TOML file "
                "(docs/configuration.md): its directory, tiers, limits; "
                "its name stays cli-<pid>, and --dir wins over its "
                "directory")
    ->type_name("FILE");
  // At most one subcommand; none is caught below, after CLI11 has named
  // any stray argument (it checks the count first).
  app.require_subcommand(0, 1);
  app.fallthrough(); // --dir and --json also after the subcommand
  app.footer("Exit status: 0 success, 1 the operation failed (\"courier: "
             "<code>: <text>\" on stderr), 2 bad usage.");
  for (const auto& entry : subcommands) {
    auto* sub = app.add_subcommand(entry.name, entry.help);
    sub->callback([&run, work = entry.setup(*sub)] { run = work; });
  }
  for (const auto& entry : offline_subcommands) {
    auto* sub = app.add_subcommand(entry.name, entry.help);
    sub->callback([&offline, work = entry.setup(*sub)] { offline = work; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? exit_ok : exit_usage;
  }
  if (!run && !offline) {
    std::cerr << "courier: a subcommand is required\n" << app.help();
    return exit_usage;
  }
  return std::nullopt;
}

/// Starts the CLI's own node, which reaches others over the named pipe, or
/// the tiers of --config. Subcommands leave it out of what they list.
expected<node> start_node(const global_options& global) {
  node_config config;
  if (!global.config.empty()) {
    auto loaded = load_node_config(global.config);
    if (!loaded)
      return std::move(loaded).error();
    config = std::move(*loaded);
  }
  // Its own name, never the file's: that would be taken by the node the
  // file is for. Nor its plug-ins: the file's gateway address is that
  // node's too.
  config.plugins.clear();
  config.name = global.name.empty() ? "cli-" + std::to_string(::getpid())
                                    : global.name;
  if (!global.dir.empty() || global.config.empty())
    config.directory = global.dir;
  if (!global.registry.empty())
    config.registry = global.registry;
  if (config.transports.empty())
    config.transports = {{"pipe", pipe::factory()}};
  config.log = [](log_level level, std::string_view line) {
    if (level >= log_level::warning)
      std::cerr << "courier: " << line << "\n";
  };
  return node::start(std::move(config));
}

} // namespace

int main(int argc, char** argv) {
  global_options global;
  command run;
  offline_command offline;
  if (auto status = parse(argc, argv, global, run, offline))
    return *status;
  if (offline)
    return offline(global);
  auto self = start_node(global);
  if (!self)
    return fail(self.error());
  return run(*self, global);
}
