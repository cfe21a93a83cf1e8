// Helpers the CLI's subcommands share: errors, output, name checks.

#include <algorithm>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli.hpp"

namespace courier::cli {

int fail(const error& err) {
  std::cerr << "courier: " << err.to_string() << "\n";
  return exit_failed;
}

int print_rows(const nlohmann::ordered_json& rows, bool json,
               std::string (*text_line)(const nlohmann::ordered_json& row)) {
  if (json) {
    std::cout << rows.dump() << "\n";
    return exit_ok;
  }
  for (const auto& row : rows)
    std::cout << text_line(row) << "\n";
  return exit_ok;
}

std::string plain(const nlohmann::ordered_json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::vector<std::string> nodes_to_ask(node& self, const std::string& only) {
  if (!only.empty())
    return {only};
  std::vector<std::string> out;
  for (const auto& info : self.nodes())
    if (info.name != self.name())
      out.push_back(info.name);
  return out;
}

expected<std::string> holder_of(node& self, const std::string& name) {
  // The CLI's node holds no actors, so find() fails for every name; for a
  // malformed one it says invalid_argument. The runtime's rule, not a copy.
  if (auto local = self.find(name); local.code() == errc::invalid_argument)
    return std::move(local).error();
  auto at = name.find('@');
  auto actor = name.substr(0, at);
  for (auto& held : self.machine_names(actor))
    if (held.actor == actor && held.node != self.name()
        && (at == std::string::npos || held.node == name.substr(at + 1)))
      return held.node;
  return error{errc::not_found,
               "no actor named '" + name + "' on this machine"};
}

/// A day: longer waits are more likely a typo than a plan.
constexpr long max_timeout_ms = 24L * 3600 * 1000;

std::shared_ptr<long> add_timeout(CLI::App& sub, const std::string& help) {
  auto timeout_ms = std::make_shared<long>(5000);
  sub.add_option("--timeout", *timeout_ms, help)
    ->check(CLI::Range(1L, max_timeout_ms))
    ->capture_default_str();
  return timeout_ms;
}

expected<void> check_pattern(const std::string& pattern) {
  // The characters of names (docs/directory.md) and the two wildcards: a
  // pattern with anything else could match no name at all.
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'
           || c == '*' || c == '?';
  };
  if (std::all_of(pattern.begin(), pattern.end(), allowed))
    return {};
  return error{errc::invalid_argument,
               "'" + pattern
                 + "' is not a pattern: a pattern holds letters, digits, "
                   "'_', '-', '.' and the wildcards '*' (any run of "
                   "characters) and '?' (one character)"};
}

} // namespace courier::cli
