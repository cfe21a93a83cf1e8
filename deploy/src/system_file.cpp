// TOML text to a system_spec: every key checked for its name, type and
// value, every error placed at its file, line and column. The typed readers
// and the table rows are the node configuration's (config/src/reader.hpp),
// so both kinds of file follow one set of value rules; a node's inline
// `settings` are checked by the node configuration's parser itself.

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include <unistd.h>

#include <toml++/toml.h>

#include "courier/config/config_file.hpp"
#include "courier/deploy/system_file.hpp"
#include "reader.hpp"
#include "values.hpp"

namespace courier::deploy {

namespace {

using namespace config_detail;

/// "file:line:column" of a place, for checks made after parsing.
std::string position(const parse_state& state, const toml::source_region& at) {
  return state.source + ":" + std::to_string(at.begin.line) + ":"
         + std::to_string(at.begin.column);
}

expected<std::vector<std::string>> read_strings(const parse_state& state,
                                                const toml::node& value,
                                                std::string_view key) {
  auto* list = value.as_array();
  if (!list)
    return wrong_type(state, value, key, "an array of strings");
  std::vector<std::string> out;
  for (const auto& element : *list) {
    auto text = read_string(state, element, key);
    if (!text)
      return std::move(text).error();
    out.push_back(std::move(*text));
  }
  return out;
}

/// Names of nodes and actors (docs/directory.md), one or many.
expected<std::vector<std::string>> read_names(const parse_state& state,
                                              const toml::node& value,
                                              std::string_view key) {
  auto names = read_strings(state, value, key);
  if (!names)
    return names;
  for (const auto& name : *names)
    if (!valid_name(name))
      return state.at(value.source(), key,
                      "'" + name + "' is not a name: letters, digits, '_', "
                      "'-', '.', not starting with '.'");
  return names;
}

/// A path, relative ones taken from the system file's folder.
expected<std::string> read_path(const parse_state& state,
                                const toml::node& value, std::string_view key) {
  auto text = read_string(state, value, key);
  if (!text)
    return text;
  if (text->empty())
    return state.at(value.source(), key, "an empty path");
  std::filesystem::path path = *text;
  if (path.is_relative())
    path = state.base / path;
  return path.lexically_normal().string();
}

expected<std::chrono::milliseconds>
read_ms(const parse_state& state, const toml::node& value, std::string_view key) {
  return read_milliseconds(state, value, key);
}

/// Reads a node's inline settings with the node configuration's parser and
/// renders them as the TOML file the node will be given. Its errors point
/// into the system file: at the key they name, else at the table.
expected<std::string> read_settings(const parse_state& state,
                                    const toml::node& value,
                                    const std::string& key) {
  auto* table = value.as_table();
  if (!table)
    return wrong_type(state, value, key, "a table of node settings");
  std::ostringstream text;
  text << toml::toml_formatter{*table};
  constexpr std::string_view inner = "<settings>";
  auto parsed = parse_node_settings(text.str(), inner, state.base);
  if (parsed)
    return text.str();
  // "<settings>:line:column: key: why" or "<settings>: why".
  std::string message = parsed.error().message();
  auto rest = message.substr(std::min(message.size(), inner.size()));
  if (!rest.empty() && rest[0] == ':') {
    auto after_position = rest.find(": ");
    rest = after_position == std::string::npos ? rest
                                               : rest.substr(after_position + 2);
  }
  auto colon = rest.find(": ");
  if (colon != std::string::npos) {
    auto inner_key = rest.substr(0, colon);
    if (auto* at = table->at_path(inner_key).node())
      return state.at(at->source(), key + "." + inner_key,
                      rest.substr(colon + 2));
  }
  return state.at(value.source(), key, rest);
}

// -- a node -----------------------------------------------------------------

template <class Enum, std::size_t N>
expected<void> read_enum(const parse_state& state, const toml::node& value,
                         const std::string& key,
                         const std::pair<std::string_view, Enum> (&choices)[N],
                         Enum& target) {
  auto chosen = read_choice(state, value, key, choices);
  if (!chosen)
    return std::move(chosen).error();
  target = *chosen;
  return {};
}

constexpr std::pair<std::string_view, restart_type> restart_types[] = {
  {"permanent", restart_type::permanent},
  {"transient", restart_type::transient},
  {"temporary", restart_type::temporary},
};

constexpr std::pair<std::string_view, stop_method> stop_methods[] = {
  {"sigterm", stop_method::sigterm},
  {"stdin", stop_method::stdin},
};

/// Stores a value read by `read` into `target`, or passes its error on.
template <class T, class U>
expected<void> store(expected<T> value, U& target) {
  if (!value)
    return std::move(value).error();
  target = std::move(*value);
  return {};
}

constexpr field<node_spec> node_fields[] = {
  {"name",
   [](parse_state&, const toml::node&, const std::string&,
      node_spec&) -> expected<void> { return {}; }}, // read first, below
  {"program",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (text->empty())
       return state.at(value.source(), key, "an empty program");
     node.positions["program"] = position(state, value.source());
     if (text->find('/') == std::string::npos) {
       node.program = *text; // searched in PATH
       return {};
     }
     return store(read_path(state, value, key), node.program);
   }},
  {"args",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return store(read_strings(state, value, key), node.args); }},
  {"config",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) {
     node.positions["config"] = position(state, value.source());
     return store(read_path(state, value, key), node.config);
   }},
  {"settings",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return store(read_settings(state, value, key), node.settings); }},
  {"user",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) {
     node.positions["user"] = position(state, value.source());
     return store(read_string(state, value, key), node.user);
   }},
  {"env",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) -> expected<void> {
     auto* table = value.as_table();
     if (!table)
       return wrong_type(state, value, key, "a table of strings");
     for (const auto& [name, setting] : *table) {
       auto text = read_string(state, setting, key + "." + std::string{name.str()});
       if (!text)
         return std::move(text).error();
       node.env[std::string{name.str()}] = std::move(*text);
     }
     return {};
   }},
  {"cwd",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) {
     node.positions["cwd"] = position(state, value.source());
     return store(read_path(state, value, key), node.cwd);
   }},
  {"names",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return store(read_names(state, value, key), node.names); }},
  {"depends_on",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) {
     node.positions["depends_on"] = position(state, value.source());
     return store(read_names(state, value, key), node.depends_on);
   }},
  {"restart",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return read_enum(state, value, key, restart_types, node.restart); }},
  {"intensity",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) -> expected<void> {
     auto n = read_integer(state, value, key, 0, 1000);
     if (!n)
       return std::move(n).error();
     node.intensity = static_cast<int>(*n);
     return {};
   }},
  {"period",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return store(read_ms(state, value, key), node.period); }},
  {"backoff",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return store(read_ms(state, value, key), node.backoff); }},
  {"max_backoff",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return store(read_ms(state, value, key), node.max_backoff); }},
  {"start_timeout",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return store(read_ms(state, value, key), node.start_timeout); }},
  {"grace",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return store(read_ms(state, value, key), node.grace); }},
  {"stop",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_spec& node) { return read_enum(state, value, key, stop_methods, node.stop); }},
};

/// One `[[nodes]]` table: its name first, so that errors name the node.
expected<node_spec> read_node(parse_state& state, const toml::node& value,
                              std::size_t index) {
  auto where = "nodes[" + std::to_string(index) + "]";
  auto* table = value.as_table();
  if (!table)
    return wrong_type(state, value, where, "a table");
  node_spec node;
  node.positions["node"] = position(state, value.source());
  auto* name = table->get("name");
  if (!name)
    return state.at(value.source(), where, "a node needs a name");
  auto read_name = read_string(state, *name, where + ".name");
  if (!read_name)
    return std::move(read_name).error();
  if (!valid_name(*read_name))
    return state.at(name->source(), where + ".name",
                    "'" + *read_name + "' is not a name: letters, digits, "
                    "'_', '-', '.', not starting with '.'");
  node.name = *read_name;
  node.cwd = state.base.string();
  auto prefix = "nodes." + node.name + ".";
  if (auto read = read_table(state, *table, prefix,
                             std::span<const field<node_spec>>{node_fields},
                             node);
      !read)
    return std::move(read).error();
  if (node.program.empty())
    return state.at(value.source(), prefix + "program", "missing: a node "
                    "needs the program to run");
  if (!node.config.empty() && !node.settings.empty())
    return state.at(value.source(), prefix + "settings",
                    "give either a config file or inline settings, not both");
  if (node.max_backoff < node.backoff)
    return state.at(value.source(), prefix + "max_backoff",
                    "shorter than backoff");
  return node;
}

// -- the file ----------------------------------------------------------------

constexpr field<system_spec> system_fields[] = {
  {"name",
   [](parse_state& state, const toml::node& value, const std::string& key,
      system_spec& system) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (!valid_name(*text))
       return state.at(value.source(), key, "'" + *text + "' is not a name");
     system.name = std::move(*text);
     return {};
   }},
  {"directory",
   [](parse_state& state, const toml::node& value, const std::string& key,
      system_spec& system) { return store(read_path(state, value, key), system.directory); }},
  {"run_dir",
   [](parse_state& state, const toml::node& value, const std::string& key,
      system_spec& system) { return store(read_path(state, value, key), system.run_dir); }},
  {"logs_dir",
   [](parse_state& state, const toml::node& value, const std::string& key,
      system_spec& system) { return store(read_path(state, value, key), system.logs_dir); }},
  {"max_log_size",
   [](parse_state& state, const toml::node& value, const std::string& key,
      system_spec& system) -> expected<void> {
     auto size = read_size(state, value, key);
     if (!size)
       return std::move(size).error();
     if (*size < 4096)
       return state.at(value.source(), key, "smaller than 4KiB");
     system.max_log_size = *size;
     return {};
   }},
  {"nodes",
   [](parse_state& state, const toml::node& value, const std::string& key,
      system_spec& system) -> expected<void> {
     auto* list = value.as_array();
     if (!list)
       return wrong_type(state, value, key, "an array of tables ([[nodes]])");
     std::size_t index = 0;
     for (const auto& element : *list) {
       auto node = read_node(state, element, index++);
       if (!node)
         return std::move(node).error();
       for (const auto& other : system.nodes)
         if (other.name == node->name)
           return state.at(element.source(), key,
                           "two nodes named '" + node->name + "'");
       system.nodes.push_back(std::move(*node));
     }
     return {};
   }},
};

/// Where a system's state goes when its file does not say.
std::filesystem::path default_run_dir(const std::string& name) {
  if (::geteuid() == 0)
    return std::filesystem::path{"/run/courier-up"} / name;
  return std::filesystem::path{"/tmp/courier-up-" + std::to_string(::geteuid())}
         / name;
}

/// The checks that span nodes: dependencies on known nodes.
expected<void> check_dependencies(const parse_state& state,
                                  const system_spec& system) {
  for (const auto& node : system.nodes)
    for (const auto& needed : node.depends_on) {
      bool known = std::any_of(system.nodes.begin(), system.nodes.end(),
                               [&](const auto& n) { return n.name == needed; });
      if (!known || needed == node.name)
        return error{errc::invalid_argument,
                     node.positions.at("depends_on") + ": nodes." + node.name
                       + ".depends_on: "
                       + (known ? "a node cannot depend on itself"
                                : "'" + needed + "' is not a node of "
                                  + state.source)};
    }
  return {};
}

/// The file's text to a system; `default_name` names the system unless
/// the text does.
expected<system_spec> parse_system(std::string_view toml_text,
                                   std::string_view source,
                                   const std::filesystem::path& base,
                                   std::string default_name) {
  parse_state state;
  state.source = std::string{source};
  state.base = base.empty() ? std::filesystem::current_path() : base;
  toml::table parsed;
  try {
    parsed = toml::parse(toml_text, source);
  } catch (const toml::parse_error& failure) {
    return state.at(failure.source(), "", std::string{failure.description()});
  }
  system_spec system;
  system.name = std::move(default_name);
  if (auto read = read_table(state, parsed, "",
                             std::span<const field<system_spec>>{system_fields},
                             system);
      !read)
    return std::move(read).error();
  if (system.nodes.empty())
    return state.at(toml::source_region{}, "nodes",
                    "the file describes no node ([[nodes]])");
  if (auto checked = check_dependencies(state, system); !checked)
    return std::move(checked).error();
  if (system.run_dir.empty())
    system.run_dir = default_run_dir(system.name);
  if (system.logs_dir.empty())
    system.logs_dir = system.run_dir / "logs";
  return system;
}

} // namespace

expected<system_spec> parse_system_file(std::string_view toml_text,
                                        std::string_view source,
                                        const std::filesystem::path& base) {
  return parse_system(toml_text, source, base, "system");
}

expected<system_spec> read_system_file(const std::filesystem::path& file) {
  std::error_code failed;
  auto absolute = std::filesystem::absolute(file, failed).lexically_normal();
  std::ifstream in{absolute};
  if (!in) {
    if (!std::filesystem::exists(absolute, failed))
      return error{errc::not_found, file.string() + ": no such file"};
    return error{errc::permission_denied, file.string() + ": cannot be read"};
  }
  std::stringstream text;
  text << in.rdbuf();
  auto stem = absolute.stem().string();
  auto system = parse_system(text.str(), file.string(), absolute.parent_path(),
                             valid_name(stem) ? stem : "system");
  if (system)
    system->file = absolute;
  return system;
}

} // namespace courier::deploy
