#pragma once

// A node's configuration from a TOML file whose keys are the names of
// node_config's fields, plus a [tiers] table that registers transports by
// name. docs/configuration.md describes every key. Link `courier::config`.
//
//   auto config = courier::load_node_config("/etc/courier/billing.toml");
//   if (!config) { ... config.error().to_string() names file:line:column }
//   auto node = courier::node::start(std::move(*config));

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "courier/error.hpp"
#include "courier/gateway/gateway.hpp"
#include "courier/options.hpp"
#include "courier/grpc_tier/grpc_transport.hpp"
#include "courier/tcp/tcp_transport.hpp"

namespace courier {

/// What a configuration file says, before its tiers become transports.
///
/// Thread safety: a value type.
struct node_settings {
  /// Every node_config field the file sets; the others keep node_config's
  /// defaults. `transports` and `log` stay empty: make_node_config() fills
  /// them in from `tiers` and `log_threshold`.
  node_config node;
  /// The file's log_level: lines at or above it go to stderr. None leaves
  /// node_config::log empty (the runtime then prints warnings and errors).
  std::optional<log_level> log_threshold;
  /// The tables of [tiers], in the order tiers are registered: shm, pipe,
  /// tcp, grpc. Empty when the file has no [tiers].
  std::vector<std::string> tiers;
  /// [tiers.tcp], when the file has it. Relative TLS paths are already
  /// resolved against the file's folder.
  std::optional<tcp::options> tcp;
  /// [tiers.grpc], when the file has it (TLS paths resolved alike).
  std::optional<grpc_tier::options> grpc;
  /// [gateway], when the file has it: make_node_config() adds the gRPC
  /// gateway as the node's plug-in "gateway" (docs/gateway.md).
  std::optional<gateway::options> gateway;
  /// The file's name as errors show it ("<string>" for text).
  std::string source;
};

/// Parses a configuration from TOML text. `source` names it in errors;
/// relative TLS paths are resolved against `base` (the current directory
/// when empty).
///
/// Errors: invalid_argument, its message starting "source:line:column:"
/// and naming the key, for TOML syntax, an unknown key, a value of the
/// wrong type, or a bad value (a negative duration, an unknown scheduler,
/// an unknown tier, a missing certificate file...).
[[nodiscard]] expected<node_settings>
parse_node_settings(std::string_view toml, std::string_view source = "<string>",
                    const std::filesystem::path& base = {});

/// Reads and parses the configuration file `file`: as parse_node_settings,
/// plus not_found or permission_denied when it cannot be read.
[[nodiscard]] expected<node_settings>
read_node_settings(const std::filesystem::path& file);

/// A node_config from parsed settings: their fields, a transport factory
/// per tier (each with its settings), and a stderr log when the file set
/// log_level. unimplemented when a tier is not part of this build.
[[nodiscard]] expected<node_config> make_node_config(node_settings settings);

/// read_node_settings() then make_node_config(): what a node started from
/// a file needs.
[[nodiscard]] expected<node_config>
load_node_config(const std::filesystem::path& file);

/// parse_node_settings() then make_node_config(), for text (tests, or a
/// configuration embedded in a program).
[[nodiscard]] expected<node_config>
load_node_config_from_string(std::string_view toml,
                             std::string_view source = "<string>");

/// The tiers this build can make from a file: shm, pipe, and tcp and grpc
/// once their targets are built in.
[[nodiscard]] std::vector<std::string> buildable_tiers();

} // namespace courier
