// `courier up`, `down`, `ps` and `logs`: a system of node processes from one
// TOML file (docs/deploy.md). The work is courier::deploy's; these read the
// arguments and print. None starts the CLI's node: `up -d` forks, which it
// must do before any thread exists.

#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "courier/deploy/supervisor.hpp"

namespace courier::cli {

namespace {

using row = nlohmann::ordered_json;
using namespace std::chrono_literals;

/// The system file, with --dir as its directory unless the file names one.
expected<deploy::system_spec> load(const std::string& file,
                                   const global_options& global) {
  auto system = deploy::read_system_file(file);
  if (system && system->directory.empty() && !global.dir.empty())
    system->directory = global.dir;
  return system;
}

/// The work of a subcommand on one system.
using system_work
  = std::function<int(deploy::system_spec& system, const global_options&)>;

/// Declares FILE on `sub`; the command loads it (a bad file fails, naming
/// its line), then runs `work` on it.
offline_command on_system(CLI::App& sub, system_work work) {
  auto file = std::make_shared<std::string>();
  sub.add_option("FILE", *file, "the system file (docs/deploy.md)")
    ->required();
  return [file, work = std::move(work)](const global_options& global) {
    auto system = load(*file, global);
    if (!system)
      return fail(system.error());
    return work(*system, global);
  };
}

std::string uptime_text(std::int64_t started_at_ms) {
  if (started_at_ms <= 0)
    return "-";
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  auto s = std::max<std::int64_t>(0, (now - started_at_ms) / 1000);
  if (s < 60)
    return std::to_string(s) + "s";
  if (s < 3600)
    return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  return std::to_string(s / 3600) + "h" + std::to_string(s / 60 % 60) + "m";
}

row status_row(const deploy::node_status& node) {
  return {{"node", node.name},
          {"pid", node.pid},
          {"user", node.user},
          {"state", deploy::to_string(node.state)},
          {"restarts", node.restarts},
          {"uptime", uptime_text(node.started_at_ms)},
          {"started_at_ms", node.started_at_ms},
          {"names", node.names_held},
          {"last_exit", node.last_exit},
          {"reason", node.reason}};
}

std::string status_line(const row& r) {
  std::string names;
  for (const auto& name : r["names"])
    names += (names.empty() ? "" : ",") + name.get<std::string>();
  auto line = plain(r["node"]) + "  pid " + plain(r["pid"]) + "  user "
              + plain(r["user"]) + "  " + plain(r["state"]) + "  restarts "
              + plain(r["restarts"]) + "  up " + plain(r["uptime"]) + "  names "
              + (names.empty() ? "-" : names);
  if (!r["reason"].get<std::string>().empty())
    line += "  (" + plain(r["reason"]) + ")";
  return line;
}

int check_only(const deploy::system_spec& system) {
  auto order = deploy::start_order(system);
  std::cout << system.file.string() << ": system '" << system.name << "', "
            << system.nodes.size() << " nodes, start order:";
  for (auto i : *order)
    std::cout << " " << system.nodes[i].name;
  std::cout << "\n";
  return exit_ok;
}

/// Copies what `in` has beyond its position to stdout.
void copy_rest(std::ifstream& in) {
  char buffer[65536];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0)
    std::cout.write(buffer, in.gcount());
  std::cout.flush();
  in.clear();
}

/// Prints `path`, then, with `follow`, what is added to it (across
/// rotations) until the system is down.
int show_log(const deploy::system_spec& system,
             const std::filesystem::path& path, bool follow) {
  std::ifstream in{path, std::ios::binary};
  if (!in && !follow)
    return fail(error{errc::not_found, path.string() + ": no log yet"});
  struct stat shown {};
  ::stat(path.c_str(), &shown);
  copy_rest(in);
  while (follow) {
    bool up = deploy::is_up(system);
    struct stat now {};
    if (::stat(path.c_str(), &now) == 0
        && (now.st_ino != shown.st_ino || !in.is_open()
            || now.st_size < static_cast<off_t>(in.tellg()))) {
      // Rotated or new: what is left of the old file, then the new one.
      copy_rest(in);
      in = std::ifstream{path, std::ios::binary};
      shown = now;
    }
    copy_rest(in);
    if (!up)
      break;
    std::this_thread::sleep_for(100ms); // a poll interval for new output
  }
  return exit_ok;
}

} // namespace

offline_command up_command(CLI::App& sub) {
  auto detach = std::make_shared<bool>(false);
  auto check = std::make_shared<bool>(false);
  auto work = on_system(sub, [detach, check](deploy::system_spec& system,
                                             const global_options&) {
    auto problems = deploy::check_system(system);
    for (const auto& problem : problems)
      (void)fail(problem);
    if (!problems.empty())
      return exit_failed;
    if (*check)
      return check_only(system);
    if (*detach) {
      auto took = deploy::start_detached(system);
      if (!took)
        return fail(took.error());
      auto status = deploy::read_status(system);
      std::cout << "system '" << system.name << "' is up: "
                << system.nodes.size() << " nodes in " << took->count()
                << " ms (supervisor pid "
                << (status ? status->supervisor_pid : 0) << ")" << std::endl;
      return exit_ok;
    }
    auto ran = deploy::run_system(
      system, [](std::string_view line) { std::cerr << line << std::flush; },
      [&system](std::chrono::milliseconds took) {
        std::cout << "system '" << system.name << "' is up: "
                  << system.nodes.size() << " nodes in " << took.count()
                  << " ms; Ctrl-C stops it" << std::endl;
      });
    return ran ? exit_ok : fail(ran.error());
  });
  sub.add_flag("-d,--detach", *detach,
               "run the supervisor in the background and return once every "
               "node has registered its names");
  sub.add_flag("--check", *check,
               "validate the file (keys, programs, users, dependencies) and "
               "start nothing");
  sub.footer("In the foreground, Ctrl-C (or SIGTERM) stops the nodes in "
             "reverse order. A second `up` of a running system is refused.");
  return work;
}

offline_command down_command(CLI::App& sub) {
  return on_system(sub, [](deploy::system_spec& system, const global_options&) {
    auto stopped = deploy::stop_system(system);
    if (!stopped)
      return fail(stopped.error());
    std::cout << "system '" << system.name << "' "
              << (*stopped ? "is down" : "was not up") << std::endl;
    return exit_ok;
  });
}

offline_command ps_command(CLI::App& sub) {
  return on_system(sub, [](deploy::system_spec& system,
                           const global_options& global) {
    auto status = deploy::read_status(system);
    if (!status)
      return fail(status.error());
    if (auto named = deploy::add_names_held(system, *status); !named)
      return fail(named.error());
    auto rows = row::array();
    for (const auto& node : status->nodes)
      rows.push_back(status_row(node));
    return print_rows(rows, global.json, status_line);
  });
}

offline_command logs_command(CLI::App& sub) {
  auto node = std::make_shared<std::string>();
  auto follow = std::make_shared<bool>(false);
  auto work = on_system(sub, [node, follow](deploy::system_spec& system,
                                            const global_options&) {
    if (!node->empty()) {
      bool known = false;
      for (const auto& n : system.nodes)
        known = known || n.name == *node;
      if (!known)
        return fail(error{errc::not_found, "'" + *node + "' is not a node of "
                                             + system.file.string()});
    }
    return show_log(system, deploy::log_path(system, *node), *follow);
  });
  sub.add_option("NODE", *node,
                 "a node of the file (default: the supervisor's own log)");
  sub.add_flag("-f,--follow", *follow,
               "keep printing what is added, until the system is down");
  return work;
}

} // namespace courier::cli
