// From settings to a node_config: a transport per tier, the log, and the
// file reading around parse.cpp.

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <system_error>
#include <utility>

#include <cerrno>
#include <cstring>

#include "courier/config/config_file.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#if COURIER_CONFIG_HAVE_TCP
#include "courier/tcp/tcp_transport.hpp"
#endif
#if COURIER_CONFIG_HAVE_GRPC
#include "courier/grpc_tier/grpc_transport.hpp"
#endif

namespace courier {

namespace {

/// Makes one tier's factory from the file's settings.
struct tier_maker {
  std::string_view name;
  transport_factory (*make)(const node_settings& settings);
};

/// Every tier a file can register, in the order they are registered. The
/// tcp and grpc tiers are here when their CMake targets (courier::tcp,
/// courier::grpc_tier) are built; until then a file may still name them,
/// and make_node_config() says they are missing.
constexpr tier_maker tier_makers[] = {
  {"shm", [](const node_settings&) { return shm::factory(); }},
  {"pipe", [](const node_settings&) { return pipe::factory(); }},
#if COURIER_CONFIG_HAVE_TCP
  {"tcp",
   [](const node_settings& settings) {
     return tcp::factory(settings.tcp.value_or(tcp::options{}));
   }},
#endif
#if COURIER_CONFIG_HAVE_GRPC
  {"grpc",
   [](const node_settings& settings) {
     return grpc_tier::factory(settings.grpc.value_or(grpc_tier::options{}));
   }},
#endif
};

const char* level_name(log_level level) {
  switch (level) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warning:
      return "warning";
    case log_level::error:
      return "error";
  }
  return "?";
}

} // namespace

std::vector<std::string> buildable_tiers() {
  std::vector<std::string> names;
  for (const auto& maker : tier_makers)
    names.emplace_back(maker.name);
  return names;
}

expected<node_config> make_node_config(node_settings settings) {
  auto config = std::move(settings.node);
  for (const auto& tier : settings.tiers) {
    auto maker
      = std::find_if(std::begin(tier_makers), std::end(tier_makers),
                     [&tier](const tier_maker& m) { return m.name == tier; });
    if (maker == std::end(tier_makers))
      return error{errc::unimplemented,
                   settings.source + ": [tiers." + tier + "]: this program "
                     + "was built without the " + tier + " tier"};
    config.transports.emplace_back(tier, maker->make(settings));
  }
  if (settings.gateway)
    config.plugins.emplace_back("gateway",
                                gateway::plugin(std::move(*settings.gateway)));
  if (settings.log_threshold) {
    config.log
      = [threshold = *settings.log_threshold,
         json = config.log_format == log_format::json,
         who = config.name.empty() ? std::string{"courier"} : config.name](
          log_level level, std::string_view line) {
          if (level < threshold)
            return;
          // One write per line, so lines of several threads do not mix.
          // A JSON line is a whole object already.
          std::string text = json ? std::string{}
                                  : who + ": " + level_name(level) + ": ";
          text += line;
          text += '\n';
          std::cerr << text << std::flush;
        };
  }
  return config;
}

expected<node_settings> read_node_settings(const std::filesystem::path& file) {
  std::error_code failed;
  if (!std::filesystem::exists(file, failed))
    return error{errc::not_found,
                 "no configuration file '" + file.string() + "'"};
  if (std::filesystem::is_directory(file, failed))
    return error{errc::invalid_argument,
                 "'" + file.string()
                   + "' is a folder, not a configuration "
                     "file"};
  std::ifstream in{file, std::ios::binary};
  if (!in) {
    int saved = errno;
    return error{saved == EACCES ? errc::permission_denied : errc::internal,
                 "cannot read the configuration file '" + file.string()
                   + "': " + std::strerror(saved)};
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return error{errc::internal,
                 "cannot read the configuration file '" + file.string() + "'"};
  auto base = file.parent_path();
  return parse_node_settings(text.str(), file.string(),
                             base.empty() ? std::filesystem::path{"."} : base);
}

expected<node_config> load_node_config(const std::filesystem::path& file) {
  auto settings = read_node_settings(file);
  if (!settings)
    return std::move(settings).error();
  return make_node_config(std::move(*settings));
}

expected<node_config> load_node_config_from_string(std::string_view toml,
                                                   std::string_view source) {
  auto settings = parse_node_settings(toml, source);
  if (!settings)
    return std::move(settings).error();
  return make_node_config(std::move(*settings));
}

} // namespace courier
