// What a system file's syntax cannot say: that its programs, users, folders
// and configuration files exist, and that its dependencies have an order.

#include <algorithm>
#include <cstdlib>
#include <functional>

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "courier/config/config_file.hpp"
#include "courier/deploy/system_file.hpp"

namespace courier::deploy {

namespace {

/// invalid_argument "file:line:column: nodes.<node>.<key>: what", at the
/// key's place (the node's when the key was not written).
error problem(const node_spec& node, const std::string& key,
              const std::string& what) {
  auto at = node.positions.find(key);
  const auto& where = at != node.positions.end() ? at->second
                                                  : node.positions.at("node");
  return error{errc::invalid_argument,
               where + ": nodes." + node.name + "." + key + ": " + what};
}

bool executable_file(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode)
         && ::access(path.c_str(), X_OK) == 0;
}

void check_node(const node_spec& node, std::vector<error>& problems) {
  if (auto program = resolve_program(node.program); !program)
    problems.push_back(problem(node, "program", program.error().message()));
  std::error_code failed;
  if (!std::filesystem::is_directory(node.cwd, failed))
    problems.push_back(
      problem(node, "cwd", "'" + node.cwd + "' is not a directory"));
  if (!node.config.empty())
    if (auto settings = read_node_settings(node.config); !settings)
      problems.push_back(problem(node, "config", settings.error().message()));
  if (!node.user.empty()) {
    auto* user = ::getpwnam(node.user.c_str());
    if (user == nullptr)
      problems.push_back(
        problem(node, "user", "no user named '" + node.user + "'"));
    else if (::geteuid() != 0 && user->pw_uid != ::geteuid())
      problems.push_back(problem(
        node, "user",
        "running as '" + node.user + "' needs root; this is uid "
          + std::to_string(::geteuid())));
  }
}

} // namespace

expected<std::string> resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (executable_file(program))
      return program;
    struct stat info {};
    return error{errc::not_found,
                 "'" + program + "' "
                   + (::stat(program.c_str(), &info) != 0
                        ? "does not exist"
                        : "is not an executable file")};
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  for (std::size_t at = 0; at <= dirs.size();) {
    auto end = dirs.find(':', at);
    if (end == std::string::npos)
      end = dirs.size();
    auto dir = dirs.substr(at, end - at);
    auto candidate = (dir.empty() ? std::string{"."} : dir) + "/" + program;
    if (executable_file(candidate))
      return candidate;
    at = end + 1;
  }
  return error{errc::not_found, "'" + program + "' is not in PATH"};
}

expected<std::vector<std::size_t>> start_order(const system_spec& system) {
  const auto count = system.nodes.size();
  auto index_of = [&](const std::string& name) {
    for (std::size_t i = 0; i < count; ++i)
      if (system.nodes[i].name == name)
        return i;
    return count;
  };
  // Depth-first, in the file's order: a node goes after everything it
  // depends on. A node met again while on the path closes a cycle.
  enum class mark { none, on_path, done };
  std::vector<mark> marks(count, mark::none);
  std::vector<std::size_t> order;
  std::vector<std::size_t> path;
  std::function<expected<void>(std::size_t)> visit;
  visit = [&](std::size_t i) -> expected<void> {
    if (marks[i] == mark::done)
      return {};
    if (marks[i] == mark::on_path) {
      std::string cycle;
      auto from = std::find(path.begin(), path.end(), i);
      for (auto it = from; it != path.end(); ++it)
        cycle += system.nodes[*it].name + " -> ";
      cycle += system.nodes[i].name;
      return problem(system.nodes[*from], "depends_on",
                     "the dependencies form a cycle: " + cycle);
    }
    marks[i] = mark::on_path;
    path.push_back(i);
    for (const auto& needed : system.nodes[i].depends_on)
      if (auto j = index_of(needed); j < count)
        if (auto visited = visit(j); !visited)
          return visited;
    path.pop_back();
    marks[i] = mark::done;
    order.push_back(i);
    return {};
  };
  for (std::size_t i = 0; i < count; ++i)
    if (auto visited = visit(i); !visited)
      return std::move(visited).error();
  return order;
}

std::vector<error> check_system(const system_spec& system) {
  std::vector<error> problems;
  for (const auto& node : system.nodes)
    check_node(node, problems);
  if (auto order = start_order(system); !order)
    problems.push_back(std::move(order).error());
  return problems;
}

} // namespace courier::deploy
