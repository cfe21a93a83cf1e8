// TOML text to node_settings: every key checked for its name, type and
// value, every error placed at its file, line and column.
//
// A key is one entry in a table below: its name, as node_config has it,
// and the function that reads it. A field added to node_config gets a line
// here and a row in docs/configuration.md.

#include <algorithm>
#include <limits>
#include <span>
#include <utility>

#include <toml++/toml.h>

#include "courier/config/config_file.hpp"
#include "values.hpp"

namespace courier {

namespace {

using namespace config_detail;
namespace fs = std::filesystem;

/// Where a later check points: a value's key and its place.
struct pending_tier_check {
  std::string tier;
  std::string key;
  toml::source_region where;
};

/// What the reading functions share: the file's name and folder, the
/// settings they fill in, and checks that wait for the whole file.
struct parse_state {
  std::string source;
  fs::path base;
  node_settings settings;
  std::vector<pending_tier_check> preferred;

  /// invalid_argument "source:line:column: key: what".
  error at(const toml::source_region& where, std::string_view key,
           std::string_view what) const {
    std::string text = source;
    if (where.begin.line != 0)
      text += ":" + std::to_string(where.begin.line) + ":"
              + std::to_string(where.begin.column);
    text += ": ";
    if (!key.empty())
      text += std::string{key} + ": ";
    text += what;
    return error{errc::invalid_argument, std::move(text)};
  }

  /// The same error, at a value, from a reason values.cpp gave.
  error at(const toml::node& value, std::string_view key,
           const error& reason) const {
    return at(value.source(), key, reason.message());
  }
};

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

error wrong_type(const parse_state& state, const toml::node& value,
                 std::string_view key, std::string_view expected_type) {
  return state.at(value.source(), key,
                  "expects " + std::string{expected_type} + ", not "
                    + std::string{type_name(value.type())});
}

// -- typed values ------------------------------------------------------------

expected<std::string> read_string(const parse_state& state,
                                  const toml::node& value,
                                  std::string_view key) {
  if (auto* text = value.as_string())
    return text->get();
  return wrong_type(state, value, key, "a string");
}

expected<bool> read_bool(const parse_state& state, const toml::node& value,
                         std::string_view key) {
  if (auto* flag = value.as_boolean())
    return flag->get();
  return wrong_type(state, value, key, "a boolean (true or false)");
}

expected<std::int64_t> read_integer(const parse_state& state,
                                    const toml::node& value,
                                    std::string_view key, std::int64_t min,
                                    std::int64_t max) {
  auto* number = value.as_integer();
  if (!number)
    return wrong_type(state, value, key, "an integer");
  if (number->get() < min || number->get() > max)
    return state.at(value.source(), key,
                    std::to_string(number->get()) + " is out of range: from "
                      + std::to_string(min) + " to " + std::to_string(max));
  return number->get();
}

/// A duration of at least `min`: a string with a unit (values.hpp).
expected<std::chrono::microseconds>
read_duration(const parse_state& state, const toml::node& value,
              std::string_view key, std::chrono::microseconds min) {
  auto* text = value.as_string();
  if (!text)
    return wrong_type(state, value, key,
                      "a duration as a string with a unit, e.g. \"500ms\"");
  auto parsed = parse_duration(text->get());
  if (!parsed)
    return state.at(value, key, parsed.error());
  if (*parsed < min)
    return state.at(value.source(), key,
                    "'" + text->get() + "' is too short: at least "
                      + (min.count() % 1000 == 0
                           ? std::to_string(min.count() / 1000) + "ms"
                           : std::to_string(min.count()) + "us"));
  return *parsed;
}

/// A duration in whole milliseconds, at least one.
expected<std::chrono::milliseconds> read_milliseconds(const parse_state& state,
                                                      const toml::node& value,
                                                      std::string_view key) {
  auto parsed = read_duration(state, value, key, std::chrono::milliseconds{1});
  if (!parsed)
    return std::move(parsed).error();
  if (parsed->count() % 1000 != 0)
    return state.at(value.source(), key,
                    "'" + value.as_string()->get()
                      + "' is not a whole number of milliseconds");
  return std::chrono::duration_cast<std::chrono::milliseconds>(*parsed);
}

/// A byte count: an integer, or a string with a unit (values.hpp).
expected<std::uint64_t> read_size(const parse_state& state,
                                  const toml::node& value,
                                  std::string_view key) {
  if (auto* number = value.as_integer()) {
    if (number->get() < 0)
      return state.at(value.source(), key,
                      std::to_string(number->get()) + " is negative");
    return static_cast<std::uint64_t>(number->get());
  }
  auto* text = value.as_string();
  if (!text)
    return wrong_type(state, value, key,
                      "a size: an integer (bytes) or a string such as "
                      "\"4MiB\"");
  auto parsed = parse_size(text->get());
  if (!parsed)
    return state.at(value, key, parsed.error());
  return *parsed;
}

expected<std::vector<unsigned>> read_ids(const parse_state& state,
                                         const toml::node& value,
                                         std::string_view key) {
  auto* list = value.as_array();
  if (!list)
    return wrong_type(state, value, key, "an array of integers");
  std::vector<unsigned> ids;
  for (const auto& element : *list) {
    // 2^32 - 1 is (uid_t) -1, "no user" to the kernel.
    auto id = read_integer(state, element, key, 0,
                           std::numeric_limits<unsigned>::max() - 1);
    if (!id)
      return std::move(id).error();
    ids.push_back(static_cast<unsigned>(*id));
  }
  return ids;
}

/// One row per key of a table: its name and the function that reads it.
template <class Target>
struct field {
  std::string_view name;
  expected<void> (*read)(parse_state& state, const toml::node& value,
                         const std::string& key, Target& target);
};

/// Reads every key of `table` with its row in `fields`; an unknown key is
/// an error at the key. `prefix` is the table's dotted path ("" at the
/// top, "tiers.tcp." below).
template <class Target>
expected<void> read_table(parse_state& state, const toml::table& table,
                          std::string_view prefix,
                          std::span<const field<Target>> fields,
                          Target& target) {
  for (const auto& [name, value] : table) {
    auto key = std::string{prefix} + std::string{name.str()};
    auto row
      = std::find_if(fields.begin(), fields.end(),
                     [&name](const auto& f) { return f.name == name.str(); });
    if (row == fields.end())
      return state.at(name.source(), key, "unknown key");
    if (auto read = row->read(state, value, key, target); !read)
      return read;
  }
  return {};
}

template <class Target>
expected<void> read_subtable(parse_state& state, const toml::node& value,
                             const std::string& key,
                             std::span<const field<Target>> fields,
                             Target& target) {
  auto* table = value.as_table();
  if (!table)
    return wrong_type(state, value, key, "a table");
  return read_table(state, *table, key + ".", fields, target);
}

// -- [limits] ----------------------------------------------------------------

constexpr std::uint64_t min_frame = 4096;

constexpr field<transport_limits> limit_fields[] = {
  {"max_frame",
   [](parse_state& state, const toml::node& value, const std::string& key,
      transport_limits& limits) -> expected<void> {
     auto size = read_size(state, value, key);
     if (!size)
       return std::move(size).error();
     if (*size < min_frame)
       return state.at(value.source(), key,
                       std::to_string(*size)
                         + " bytes is too small: a frame holds at least "
                         + std::to_string(min_frame));
     limits.max_frame = *size;
     return {};
   }},
  {"max_queued",
   [](parse_state& state, const toml::node& value, const std::string& key,
      transport_limits& limits) -> expected<void> {
     auto size = read_size(state, value, key);
     if (!size)
       return std::move(size).error();
     limits.max_queued = *size;
     return {};
   }},
};

// -- [tiers.tcp] -------------------------------------------------------------

/// A TLS file: a path, relative ones resolved against the file's folder,
/// and the file must be there.
expected<std::string> read_tls_path(const parse_state& state,
                                    const toml::node& value,
                                    const std::string& key) {
  auto text = read_string(state, value, key);
  if (!text)
    return text;
  if (text->empty())
    return state.at(value.source(), key, "an empty path");
  fs::path path = *text;
  if (path.is_relative() && !state.base.empty())
    path = state.base / path;
  std::error_code failed;
  if (!fs::is_regular_file(path, failed))
    return state.at(value.source(), key,
                    "'" + path.string() + "' is not a file");
  return path.string();
}

constexpr field<tcp::tls_files> tls_fields[] = {
  {"certificate",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::tls_files& tls) -> expected<void> {
     auto path = read_tls_path(state, value, key);
     if (!path)
       return std::move(path).error();
     tls.certificate = std::move(*path);
     return {};
   }},
  {"private_key",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::tls_files& tls) -> expected<void> {
     auto path = read_tls_path(state, value, key);
     if (!path)
       return std::move(path).error();
     tls.private_key = std::move(*path);
     return {};
   }},
  {"ca",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::tls_files& tls) -> expected<void> {
     auto path = read_tls_path(state, value, key);
     if (!path)
       return std::move(path).error();
     tls.ca = std::move(*path);
     return {};
   }},
};

constexpr field<tcp::options> tcp_fields[] = {
  {"listen",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (auto ok = check_address(*text, true); !ok)
       return state.at(value, key, ok.error());
     tcp.listen = std::move(*text);
     return {};
   }},
  {"advertise",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (!text->empty())
       if (auto ok = check_address(*text, false); !ok)
         return state.at(value, key, ok.error());
     tcp.advertise = std::move(*text);
     return {};
   }},
  {"allow_plaintext",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     auto flag = read_bool(state, value, key);
     if (!flag)
       return std::move(flag).error();
     tcp.allow_plaintext = *flag;
     return {};
   }},
  {"heartbeat",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     tcp.heartbeat = *ms;
     return {};
   }},
  {"unreachable_after",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     tcp.unreachable_after = *ms;
     return {};
   }},
  {"max_handshaking",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     auto count = read_integer(state, value, key, 1, 65535);
     if (!count)
       return std::move(count).error();
     tcp.max_handshaking = static_cast<std::size_t>(*count);
     return {};
   }},
  {"handshake_timeout",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     tcp.handshake_timeout = *ms;
     return {};
   }},
  {"tls",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     tcp::tls_files tls;
     if (auto read
         = read_subtable<tcp::tls_files>(state, value, key, tls_fields, tls);
         !read)
       return read;
     // Mutual TLS takes all three; one missing is a half-made setup.
     for (auto [name, path] : {std::pair{"certificate", &tls.certificate},
                               std::pair{"private_key", &tls.private_key},
                               std::pair{"ca", &tls.ca}})
       if (path->empty())
         return state.at(value.source(), key,
                         "'" + std::string{name}
                           + "' is missing: mutual TLS needs certificate, "
                             "private_key and ca");
     tcp.tls = std::move(tls);
     return {};
   }},
};

// -- [tiers] -----------------------------------------------------------------

/// The tiers a file may name, in the order they are registered. A new tier
/// is a row here (with its settings' fields, if any) and a maker in
/// tiers.cpp.
constexpr std::string_view tier_names[] = {"shm", "pipe", "tcp"};

expected<void> read_tiers(parse_state& state, const toml::node& value,
                          const std::string& key) {
  auto* table = value.as_table();
  if (!table)
    return wrong_type(state, value, key, "a table");
  for (const auto& [name, tier] : *table) {
    auto tier_key = key + "." + std::string{name.str()};
    if (std::find(std::begin(tier_names), std::end(tier_names), name.str())
        == std::end(tier_names))
      return state.at(name.source(), tier_key,
                      "not a known tier (shm, pipe, tcp)");
    if (name.str() == "tcp") {
      tcp::options tcp;
      if (auto read
          = read_subtable<tcp::options>(state, tier, tier_key, tcp_fields, tcp);
          !read)
        return read;
      if (tcp.unreachable_after <= tcp.heartbeat)
        return state.at(tier.source(), tier_key + ".unreachable_after",
                        std::to_string(tcp.unreachable_after.count())
                          + "ms is not longer than heartbeat ("
                          + std::to_string(tcp.heartbeat.count())
                          + "ms): every quiet link would be cut");
      state.settings.tcp = std::move(tcp);
    } else {
      // shm and pipe have no settings: [tiers.shm] only registers the tier.
      auto* settings = tier.as_table();
      if (!settings)
        return wrong_type(state, tier, tier_key, "a table");
      for (const auto& [setting, ignored] : *settings)
        return state.at(setting.source(),
                        tier_key + "." + std::string{setting.str()},
                        "unknown key: the " + std::string{name.str()}
                          + " tier has no settings");
    }
  }
  for (auto name : tier_names)
    if (table->contains(name))
      state.settings.tiers.emplace_back(name);
  return {};
}

// -- the top level -----------------------------------------------------------

expected<void> read_preferred_tiers(parse_state& state, const toml::node& value,
                                    const std::string& key) {
  auto* list = value.as_array();
  if (!list)
    return wrong_type(state, value, key,
                      "an array of tables { nodes = \"glob\", tier = "
                      "\"name\" }");
  for (const auto& element : *list) {
    auto* entry = element.as_table();
    if (!entry)
      return wrong_type(state, element, key,
                        "tables { nodes = \"glob\", tier = \"name\" }");
    std::string nodes;
    std::string tier;
    for (const auto& [name, item] : *entry) {
      auto item_key = key + "." + std::string{name.str()};
      if (name.str() != "nodes" && name.str() != "tier")
        return state.at(name.source(), item_key, "unknown key");
      auto text = read_string(state, item, item_key);
      if (!text)
        return std::move(text).error();
      if (name.str() == "nodes") {
        if (!valid_pattern(*text))
          return state.at(item.source(), item_key,
                          "'" + *text
                            + "' is not a pattern of node names: letters, "
                              "digits, '_', '-', '.', '*' and '?'");
        nodes = std::move(*text);
      } else {
        state.preferred.push_back({*text, item_key, item.source()});
        tier = std::move(*text);
      }
    }
    if (nodes.empty() || tier.empty())
      return state.at(element.source(), key,
                      "entries need both 'nodes' and 'tier'");
    state.settings.node.preferred_tiers.emplace_back(std::move(nodes),
                                                     std::move(tier));
  }
  return {};
}

template <class Enum, std::size_t N>
expected<Enum>
read_choice(const parse_state& state, const toml::node& value,
            std::string_view key,
            const std::pair<std::string_view, Enum> (&choices)[N]) {
  auto text = read_string(state, value, key);
  if (!text)
    return std::move(text).error();
  std::string names;
  for (const auto& [name, choice] : choices) {
    if (name == *text)
      return choice;
    names += (names.empty() ? "" : ", ") + std::string{name};
  }
  return state.at(value.source(), key,
                  "'" + *text + "' is not one of " + names);
}

constexpr std::pair<std::string_view, scheduler_policy> schedulers[] = {
  {"automatic", scheduler_policy::automatic},
  {"work_stealing", scheduler_policy::work_stealing},
  {"sharing", scheduler_policy::sharing},
  {"latency", scheduler_policy::latency},
};

constexpr std::pair<std::string_view, log_level> log_levels[] = {
  {"debug", log_level::debug},
  {"info", log_level::info},
  {"warning", log_level::warning},
  {"error", log_level::error},
};

constexpr field<node_settings> node_fields[] = {
  {"name",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (!text->empty() && !valid_name(*text))
       return state.at(value.source(), key,
                       "'" + *text
                         + "' is not a node name: letters, digits, '_', "
                           "'-', '.', not starting with '.'");
     settings.node.name = std::move(*text);
     return {};
   }},
  {"join_directory",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto flag = read_bool(state, value, key);
     if (!flag)
       return std::move(flag).error();
     settings.node.join_directory = *flag;
     return {};
   }},
  {"directory",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     settings.node.directory = std::move(*text);
     return {};
   }},
  {"preferred_tiers",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings&) { return read_preferred_tiers(state, value, key); }},
  {"limits",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto& limits = settings.node.limits;
     if (auto read = read_subtable<transport_limits>(state, value, key,
                                                     limit_fields, limits);
         !read)
       return read;
     if (limits.max_queued < 2 * limits.max_frame)
       return state.at(value.source(), key + ".max_queued",
                       std::to_string(limits.max_queued)
                         + " bytes is less than twice max_frame ("
                         + std::to_string(2 * limits.max_frame) + ")");
     return {};
   }},
  {"max_mailbox",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto count = read_integer(state, value, key, 0,
                               std::numeric_limits<std::int64_t>::max());
     if (!count)
       return std::move(count).error();
     settings.node.max_mailbox = static_cast<std::size_t>(*count);
     return {};
   }},
  {"allowed_uids",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto ids = read_ids(state, value, key);
     if (!ids)
       return std::move(ids).error();
     settings.node.allowed_uids = std::move(*ids);
     return {};
   }},
  {"allowed_gids",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto ids = read_ids(state, value, key);
     if (!ids)
       return std::move(ids).error();
     settings.node.allowed_gids = std::move(*ids);
     return {};
   }},
  {"handshake_timeout",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     settings.node.handshake_timeout = *ms;
     return {};
   }},
  {"recursion_limit",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto depth = read_integer(state, value, key, 1, 10000);
     if (!depth)
       return std::move(depth).error();
     settings.node.recursion_limit = static_cast<int>(*depth);
     return {};
   }},
  {"worker_threads",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto count = read_integer(state, value, key, 0, 1024);
     if (!count)
       return std::move(count).error();
     settings.node.worker_threads = static_cast<std::size_t>(*count);
     return {};
   }},
  {"scheduler",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto policy = read_choice(state, value, key, schedulers);
     if (!policy)
       return std::move(policy).error();
     settings.node.scheduler = *policy;
     return {};
   }},
  {"idle_spin",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto spin = read_duration(state, value, key, std::chrono::microseconds{0});
     if (!spin)
       return std::move(spin).error();
     settings.node.idle_spin = *spin;
     return {};
   }},
  {"log_level",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto level = read_choice(state, value, key, log_levels);
     if (!level)
       return std::move(level).error();
     settings.log_threshold = *level;
     return {};
   }},
  {"tiers",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings&) { return read_tiers(state, value, key); }},
  // Being added in parallel; each is a row here once node_config has it:
  // - "registry" (string, the etcd endpoints) and "registry_lease" (a
  //   duration, read_milliseconds) for node_config::registry and
  //   node_config::registry_lease, the cluster-wide directory;
  // - "rules" (an array of tables: principal pattern, actor pattern, verbs)
  //   for node_config::rules, the authorization rules.
};

} // namespace

expected<node_settings> parse_node_settings(std::string_view toml,
                                            std::string_view source,
                                            const fs::path& base) {
  parse_state state;
  state.source = std::string{source};
  state.base = base;
  state.settings.source = state.source;
  toml::table root;
  try {
    root = toml::parse(toml, source);
  } catch (const toml::parse_error& failed) {
    return state.at(failed.source(), "", failed.description());
  }
  if (auto read
      = read_table<node_settings>(state, root, "", node_fields, state.settings);
      !read)
    return std::move(read).error();
  // Whole-file checks: a preferred tier must be one the file registers.
  for (const auto& check : state.preferred) {
    const auto& tiers = state.settings.tiers;
    if (std::find(std::begin(tier_names), std::end(tier_names), check.tier)
        == std::end(tier_names))
      return state.at(check.where, check.key,
                      "'" + check.tier
                        + "' is not a known tier (shm, pipe, tcp)");
    if (std::find(tiers.begin(), tiers.end(), check.tier) == tiers.end())
      return state.at(check.where, check.key,
                      "'" + check.tier
                        + "' is not a tier of this node; add [tiers."
                        + check.tier + "]");
  }
  return std::move(state.settings);
}

} // namespace courier
