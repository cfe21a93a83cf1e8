// TOML text to node_settings: every key checked for its name, type and
// value, every error placed at its file, line and column.
//
// A key is one entry in a table below: its name, as node_config has it,
// and the function that reads it (reader.hpp has the typed readers). A
// field added to node_config gets a line here and a row in
// docs/configuration.md.

#include <algorithm>
#include <array>
#include <limits>
#include <span>
#include <utility>

#include <toml++/toml.h>

#include "courier/config/config_file.hpp"
#include "courier/access.hpp"
#include "reader.hpp"
#include "values.hpp"

namespace courier {

namespace {

using namespace config_detail;

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
  {"spare_buffers",
   [](parse_state& state, const toml::node& value, const std::string& key,
      transport_limits& limits) -> expected<void> {
     auto size = read_size(state, value, key);
     if (!size)
       return std::move(size).error();
     limits.spare_buffers = *size;
     return {};
   }},
};

// -- [tiers.tcp], [tiers.grpc] ----------------------------------------------

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

/// A [*.tls] table: mutual TLS takes all three files; one missing is a
/// half-made setup.
expected<tcp::tls_files> read_mutual_tls(parse_state& state,
                                         const toml::node& value,
                                         const std::string& key) {
  tcp::tls_files tls;
  if (auto read
      = read_subtable<tcp::tls_files>(state, value, key, tls_fields, tls);
      !read)
    return std::move(read).error();
  for (auto [name, path] : {std::pair{"certificate", &tls.certificate},
                            std::pair{"private_key", &tls.private_key},
                            std::pair{"ca", &tls.ca}})
    if (path->empty())
      return state.at(value.source(), key,
                      "'" + std::string{name}
                        + "' is missing: mutual TLS needs certificate, "
                          "private_key and ca");
  return tls;
}

/// The keys the network tiers share: tcp::options and grpc_tier::options
/// name them alike.
template <class Options>
constexpr field<Options> network_fields[] = {
  {"listen",
   [](parse_state& state, const toml::node& value, const std::string& key,
      Options& tier) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (auto ok = check_address(*text, true); !ok)
       return state.at(value, key, ok.error());
     tier.listen = std::move(*text);
     return {};
   }},
  {"advertise",
   [](parse_state& state, const toml::node& value, const std::string& key,
      Options& tier) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (!text->empty())
       if (auto ok = check_address(*text, false); !ok)
         return state.at(value, key, ok.error());
     tier.advertise = std::move(*text);
     return {};
   }},
  {"allow_plaintext",
   [](parse_state& state, const toml::node& value, const std::string& key,
      Options& tier) -> expected<void> {
     auto flag = read_bool(state, value, key);
     if (!flag)
       return std::move(flag).error();
     tier.allow_plaintext = *flag;
     return {};
   }},
  {"heartbeat",
   [](parse_state& state, const toml::node& value, const std::string& key,
      Options& tier) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     tier.heartbeat = *ms;
     return {};
   }},
  {"unreachable_after",
   [](parse_state& state, const toml::node& value, const std::string& key,
      Options& tier) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     tier.unreachable_after = *ms;
     return {};
   }},
  {"handshake_timeout",
   [](parse_state& state, const toml::node& value, const std::string& key,
      Options& tier) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     tier.handshake_timeout = *ms;
     return {};
   }},
  {"tls",
   [](parse_state& state, const toml::node& value, const std::string& key,
      Options& tier) -> expected<void> {
     auto tls = read_mutual_tls(state, value, key);
     if (!tls)
       return std::move(tls).error();
     tier.tls = std::move(*tls);
     return {};
   }},
};

/// Keys of the TCP tier alone.
constexpr field<tcp::options> tcp_only_fields[] = {
  {"max_handshaking",
   [](parse_state& state, const toml::node& value, const std::string& key,
      tcp::options& tcp) -> expected<void> {
     auto count = read_integer(state, value, key, 1, 65535);
     if (!count)
       return std::move(count).error();
     tcp.max_handshaking = static_cast<std::size_t>(*count);
     return {};
   }},
};

/// `first` then `second`, as one table.
template <class Target, std::size_t N, std::size_t M>
constexpr std::array<field<Target>, N + M>
joined_fields(const field<Target> (&first)[N], const field<Target> (&second)[M]) {
  std::array<field<Target>, N + M> out{};
  std::copy(std::begin(first), std::end(first), out.begin());
  std::copy(std::begin(second), std::end(second), out.begin() + N);
  return out;
}

constexpr auto tcp_fields = joined_fields(network_fields<tcp::options>,
                                          tcp_only_fields);

/// [tiers.<name>] of a network tier: its keys, and a detection bound longer
/// than the heartbeat.
template <class Options>
expected<void> read_network_tier(parse_state& state, const toml::node& tier,
                                 const std::string& tier_key,
                                 std::span<const field<Options>> fields,
                                 std::optional<Options>& into) {
  Options settings;
  if (auto read = read_subtable<Options>(state, tier, tier_key, fields,
                                         settings);
      !read)
    return read;
  if (settings.unreachable_after <= settings.heartbeat)
    return state.at(tier.source(), tier_key + ".unreachable_after",
                    std::to_string(settings.unreachable_after.count())
                      + "ms is not longer than heartbeat ("
                      + std::to_string(settings.heartbeat.count())
                      + "ms): every quiet link would be cut");
  into = std::move(settings);
  return {};
}

// -- [tiers] -----------------------------------------------------------------

/// The tiers a file may name, in the order they are registered. A new tier
/// is a row here (with its settings' fields, if any) and a maker in
/// tiers.cpp.
constexpr std::string_view tier_names[] = {"shm", "pipe", "tcp", "grpc"};

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
                      "not a known tier (shm, pipe, tcp, grpc)");
    if (name.str() == "tcp") {
      if (auto read = read_network_tier<tcp::options>(
            state, tier, tier_key, tcp_fields, state.settings.tcp);
          !read)
        return read;
    } else if (name.str() == "grpc") {
      if (auto read = read_network_tier<grpc_tier::options>(
            state, tier, tier_key, network_fields<grpc_tier::options>,
            state.settings.grpc);
          !read)
        return read;
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

/// [[rules]]: tables { principal = "...", names = "glob", verbs = "post,send" }
/// (docs/security.md), each checked as node::start() would.
expected<void> read_rules(parse_state& state, const toml::node& value,
                          const std::string& key,
                          std::vector<access_rule>& rules) {
  auto* list = value.as_array();
  if (!list)
    return wrong_type(state, value, key,
                      "an array of tables { principal, names, verbs }");
  for (const auto& element : *list) {
    auto* entry = element.as_table();
    if (!entry)
      return wrong_type(state, element, key,
                        "tables { principal, names, verbs }");
    access_rule rule;
    bool has_verbs = false;
    for (const auto& [name, item] : *entry) {
      auto item_key = key + "." + std::string{name.str()};
      if (name.str() != "principal" && name.str() != "names"
          && name.str() != "verbs")
        return state.at(name.source(), item_key, "unknown key");
      auto text = read_string(state, item, item_key);
      if (!text)
        return std::move(text).error();
      if (name.str() == "principal") {
        rule.principal = std::move(*text);
      } else if (name.str() == "names") {
        rule.names = std::move(*text);
      } else {
        auto allowed = parse_verbs(*text);
        if (!allowed)
          return state.at(item.source(), item_key,
                          allowed.error().message());
        rule.allowed = *allowed;
        has_verbs = true;
      }
    }
    if (rule.principal.empty() || !has_verbs)
      return state.at(element.source(), key,
                      "rules need a 'principal' and 'verbs'");
    if (auto checked = check_rule(rule); !checked)
      return state.at(element.source(), key, checked.error().message());
    rules.push_back(std::move(rule));
  }
  return {};
}

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

constexpr std::pair<std::string_view, log_format> log_formats[] = {
  {"text", log_format::text},
  {"json", log_format::json},
};

// -- [gateway] ---------------------------------------------------------------

/// A duration field of a struct: `target.*member` in whole milliseconds.
#define COURIER_MS_FIELD(Struct, member)                                       \
  field<Struct> {                                                              \
    #member, [](parse_state& state, const toml::node& value,                   \
                const std::string& key, Struct& target) -> expected<void> {    \
      auto ms = read_milliseconds(state, value, key);                          \
      if (!ms)                                                                 \
        return std::move(ms).error();                                          \
      target.member = *ms;                                                     \
      return {};                                                               \
    }                                                                          \
  }

constexpr field<gateway::keepalive> keepalive_fields[] = {
  COURIER_MS_FIELD(gateway::keepalive, time),
  COURIER_MS_FIELD(gateway::keepalive, timeout),
  COURIER_MS_FIELD(gateway::keepalive, min_client_ping_interval),
  {"max_ping_strikes",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::keepalive& alive) -> expected<void> {
     auto count = read_integer(state, value, key, 0, 1000);
     if (!count)
       return std::move(count).error();
     alive.max_ping_strikes = static_cast<int>(*count);
     return {};
   }},
  COURIER_MS_FIELD(gateway::keepalive, max_idle),
  COURIER_MS_FIELD(gateway::keepalive, max_age),
  COURIER_MS_FIELD(gateway::keepalive, max_age_grace),
};

constexpr field<gateway::options> gateway_fields[] = {
  {"listen",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::options& gw) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (text->starts_with("unix:")) {
       if (text->size() == 5)
         return state.at(value.source(), key, "'unix:' names no socket");
       fs::path path = text->substr(5);
       if (path.is_relative() && !state.base.empty())
         path = state.base / path;
       gw.listen = "unix:" + path.string();
       return {};
     }
     if (auto ok = check_address(*text, true); !ok)
       return state.at(value, key, ok.error());
     gw.listen = std::move(*text);
     return {};
   }},
  {"allow_plaintext",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::options& gw) -> expected<void> {
     auto flag = read_bool(state, value, key);
     if (!flag)
       return std::move(flag).error();
     gw.allow_plaintext = *flag;
     return {};
   }},
  {"socket_mode",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::options& gw) -> expected<void> {
     auto mode = read_integer(state, value, key, 0, 0777); // 0o660 in TOML
     if (!mode)
       return std::move(mode).error();
     gw.socket_mode = static_cast<unsigned>(*mode);
     return {};
   }},
  {"max_message",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::options& gw) -> expected<void> {
     auto size = read_size(state, value, key);
     if (!size)
       return std::move(size).error();
     if (*size < min_frame || *size > std::numeric_limits<std::int32_t>::max())
       return state.at(value.source(), key,
                       std::to_string(*size) + " bytes: from "
                         + std::to_string(min_frame) + " bytes to 2 GiB");
     gw.max_message = *size;
     return {};
   }},
  COURIER_MS_FIELD(gateway::options, default_deadline),
  COURIER_MS_FIELD(gateway::options, health_interval),
  {"tls",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::options& gw) -> expected<void> {
     auto tls = read_mutual_tls(state, value, key);
     if (!tls)
       return std::move(tls).error();
     gw.tls = std::move(*tls);
     return {};
   }},
  {"services",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::options& gw) -> expected<void> {
     auto* table = value.as_table();
     if (!table)
       return wrong_type(state, value, key,
                         "a table { \"pkg.Service\" = \"actor\" }");
     for (const auto& [service, actor] : *table) {
       auto service_key = key + "." + std::string{service.str()};
       auto name = read_string(state, actor, service_key);
       if (!name)
         return std::move(name).error();
       gw.services[std::string{service.str()}] = std::move(*name);
     }
     return {};
   }},
  {"rules",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::options& gw) -> expected<void> {
     std::vector<access_rule> rules;
     if (auto read = read_rules(state, value, key, rules); !read)
       return read;
     gw.rules = std::move(rules);
     return {};
   }},
  {"keepalive",
   [](parse_state& state, const toml::node& value, const std::string& key,
      gateway::options& gw) -> expected<void> {
     return read_subtable<gateway::keepalive>(state, value, key,
                                              keepalive_fields, gw.keepalive);
   }},
};

#undef COURIER_MS_FIELD

expected<void> read_gateway(parse_state& state, const toml::node& value,
                            const std::string& key) {
  gateway::options gw;
  if (auto read
      = read_subtable<gateway::options>(state, value, key, gateway_fields, gw);
      !read)
    return read;
  if (gw.listen.starts_with("unix:") && gw.tls)
    return state.at(value.source(), key,
                    "a local socket (listen = \"unix:...\") takes no tls: "
                    "the kernel says who its callers are");
  state.settings.gateway = std::move(gw);
  return {};
}

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
  {"metrics",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto flag = read_bool(state, value, key);
     if (!flag)
       return std::move(flag).error();
     settings.node.metrics = *flag;
     return {};
   }},
  {"metrics_listen",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     if (!text->empty())
       if (auto ok = check_address(*text, true); !ok)
         return state.at(value, key, ok.error());
     settings.node.metrics_listen = std::move(*text);
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
  {"host",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     settings.node.host = std::move(*text);
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
  {"log_format",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto format = read_choice(state, value, key, log_formats);
     if (!format)
       return std::move(format).error();
     settings.node.log_format = *format;
     return {};
   }},
  {"trace",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto flag = read_bool(state, value, key);
     if (!flag)
       return std::move(flag).error();
     settings.node.trace = *flag;
     return {};
   }},
  {"tiers",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings&) { return read_tiers(state, value, key); }},
  {"gateway",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings&) { return read_gateway(state, value, key); }},
  {"registry",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto text = read_string(state, value, key);
     if (!text)
       return std::move(text).error();
     settings.node.registry = std::move(*text);
     return {};
   }},
  {"registry_lease",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     settings.node.registry_lease = *ms;
     return {};
   }},
  {"registry_timeout",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     settings.node.registry_timeout = *ms;
     return {};
   }},
  {"rules",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) {
     return read_rules(state, value, key, settings.node.rules);
   }},
  {"seeds",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto* list = value.as_array();
     if (!list)
       return wrong_type(state, value, key,
                         "an array of strings \"node@tls://host:port\"");
     for (const auto& element : *list) {
       auto text = read_string(state, element, key);
       if (!text)
         return std::move(text).error();
       auto parsed = parse_seed(*text);
       if (!parsed)
         return state.at(element.source(), key, parsed.error().message());
       settings.node.seeds.push_back(std::move(*parsed));
     }
     return {};
   }},
  {"seed_cache_ttl",
   [](parse_state& state, const toml::node& value, const std::string& key,
      node_settings& settings) -> expected<void> {
     auto ms = read_milliseconds(state, value, key);
     if (!ms)
       return std::move(ms).error();
     settings.node.seed_cache_ttl = *ms;
     return {};
   }},
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
