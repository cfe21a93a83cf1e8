// Subcommands that look at the machine: nodes, names, find, routes. Each
// builds its rows once, as JSON, and prints them in the form asked for, so
// the text and JSON forms always show the same things.

#include <chrono>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "courier/v1/control.pb.h"

namespace courier::cli {

namespace {

using row = nlohmann::ordered_json;

// -- nodes --------------------------------------------------------------------

row node_row(const node_info& info) {
  return {{"name", info.name},
          {"pid", info.pid},
          {"uid", info.uid},
          {"session", info.session}};
}

std::string node_line(const row& r) {
  return plain(r["name"]) + "  pid " + plain(r["pid"]) + "  uid "
         + plain(r["uid"]) + "  session " + plain(r["session"]);
}

// -- names and find -----------------------------------------------------------

row name_row(const std::string& actor, const std::string& holder) {
  return {{"name", actor}, {"node", holder}};
}

std::string name_line(const row& r) {
  return plain(r["name"]) + "  " + plain(r["node"]);
}

// -- routes -------------------------------------------------------------------

row route_row(const std::string& from, const v1::Route& route) {
  return {{"node", from},
          {"peer", route.peer()},
          {"tier", route.tier()},
          {"note", route.note()},
          {"messages_out", route.messages_out()},
          {"messages_in", route.messages_in()}};
}

std::string route_line(const row& r) {
  return plain(r["node"]) + " -> " + plain(r["peer"]) + "  " + plain(r["tier"])
         + "  (" + plain(r["note"]) + ")  out " + plain(r["messages_out"])
         + " in " + plain(r["messages_in"]);
}

/// Appends the routes `peer` reports to `rows`, leaving out the link of the
/// CLI's own query; a node that does not answer is reported on stderr.
void add_routes_of(node& self, const std::string& peer,
                   std::chrono::milliseconds timeout, row& rows) {
  auto report = self.send<v1::RoutesReport>("courier.node." + peer,
                                            v1::RoutesQuery{}, timeout);
  if (!report) {
    std::cerr << "courier: " << peer << ": " << report.error().to_string()
              << "\n";
    return;
  }
  for (const auto& route : (*report)->routes())
    if (route.peer() != self.name())
      rows.push_back(route_row(peer, route));
}

} // namespace

command nodes_command(CLI::App&) {
  return [](node& self, const global_options& global) {
    auto rows = row::array();
    for (const auto& info : self.nodes())
      if (info.name != self.name())
        rows.push_back(node_row(info));
    return print_rows(rows, global.json, node_line);
  };
}

command names_command(CLI::App& sub) {
  auto pattern = std::make_shared<std::string>("*");
  sub
    .add_option("PATTERN", *pattern,
                "a glob over names: '*' any run of characters, '?' one")
    ->capture_default_str();
  return [pattern](node& self, const global_options& global) {
    if (auto checked = check_pattern(*pattern); !checked)
      return fail(checked.error());
    auto rows = row::array();
    for (const auto& held : self.machine_names(*pattern))
      if (held.node != self.name())
        rows.push_back(name_row(held.actor, held.node));
    return print_rows(rows, global.json, name_line);
  };
}

command find_command(CLI::App& sub) {
  auto name = std::make_shared<std::string>();
  sub.add_option("NAME", *name, "an actor name, or actor@node")->required();
  return [name](node& self, const global_options& global) {
    auto holder = holder_of(self, *name);
    if (!holder)
      return fail(holder.error());
    auto actor = name->substr(0, name->find('@'));
    return print_rows(row::array({name_row(actor, *holder)}), global.json,
                      name_line);
  };
}

command routes_command(CLI::App& sub) {
  auto timeout_ms = add_timeout(sub, "how long each node may take (ms)");
  return [timeout_ms](node& self, const global_options& global) {
    auto rows = row::array();
    for (const auto& info : self.nodes())
      if (info.name != self.name())
        add_routes_of(self, info.name, std::chrono::milliseconds{*timeout_ms},
                      rows);
    return print_rows(rows, global.json, route_line);
  };
}

} // namespace courier::cli
