#pragma once

// The seam for services that run beside a node for as long as it runs:
// the gRPC gateway (courier::gateway::plugin(), target courier::gateway)
// is one. A plug-in is made once the node has started, from the node
// itself (lent, as to durable delivery), and stopped before the node stops
// its actors; it uses the public verbs only. The runtime knows nothing else
// about it, so a plug-in and its heavy dependencies stay in their own
// target.
//
//   courier::node_config config;
//   config.plugins.emplace_back("gateway", courier::gateway::plugin({}));
//   auto node = courier::node::start(std::move(config));
//   node->plugin_address("gateway"); // "127.0.0.1:40123"

#include <functional>
#include <memory>
#include <string>

#include "courier/error.hpp"

namespace courier {

class node;

class node_plugin {
public:
  virtual ~node_plugin() = default;

  /// Where it serves ("127.0.0.1:40123", "unix:/run/app/gw.sock"), once
  /// started; empty when it serves nowhere. node::plugin_address() reads it.
  virtual std::string address() const {
    return {};
  }

  /// The node stops: the plug-in finishes with it (no verb after this
  /// returns). Called once, before the node stops its actors, plug-ins in
  /// the reverse order of node_config::plugins.
  virtual void stop() noexcept = 0;
};

/// Makes a plug-in once the node has started. `host` is lent until
/// node_plugin::stop(). An error fails node::start() with it.
using plugin_factory
  = std::function<expected<std::unique_ptr<node_plugin>>(node& host)>;

} // namespace courier
