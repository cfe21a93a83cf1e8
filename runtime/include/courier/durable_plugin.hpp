#pragma once

// The seam durable delivery plugs into (ARCHITECTURE.md section 6). The
// runtime knows durable messages only through this interface: a post with
// post_options::durable goes to the plug-in, and a durable transfer that
// another node's plug-in sent to one of this node's names is handed to it
// by the link, after the link authorized it as a post to that name. The
// plug-in that ships with Courier is courier::durable::delivery()
// (courier/durable/delivery.hpp, target courier::durable); it does the
// rest (its store, the forwarding, the handlers) through the public verbs.

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "courier/error.hpp"
#include "courier/message.hpp"
#include "courier/metrics.hpp"
#include "courier/options.hpp"
#include "courier/trace.hpp"

namespace courier {

class durable_plugin {
public:
  virtual ~durable_plugin() = default;

  /// A durable post from any thread (an actor's included): returns the
  /// message's id once it is on this node's disk, or fails without having
  /// stored it (invalid_argument, resource_exhausted, unavailable,
  /// data_loss). `trace` is the message's own span (not valid(): none),
  /// for its handler to continue.
  virtual expected<std::uint64_t> post(std::string_view to, const message& msg,
                                       const post_options& options,
                                       const trace_context& trace) = 0;

  /// A courier.v1.DurableTransfer for `target`, a name held on this node,
  /// from another node. `answer` gets a courier.v1.DurableTransferAck once
  /// the items are stored, or an error; it may be called on any thread.
  /// Called on a link's thread: must not block.
  virtual void accept(std::string_view target, message transfer,
                      std::function<void(expected<message>)> answer) = 0;

  /// Adds the store's queues and dead letters to a metrics snapshot
  /// (durable_queues, durable_dead_letters). Any thread; must not block on
  /// the disk.
  virtual void add_metrics(metrics_snapshot& snapshot) const {
    (void)snapshot;
  }

  /// The node stops: the plug-in finishes with the node (no verb after
  /// this returns). Called once, before the node stops its actors.
  virtual void stop() noexcept = 0;
};

} // namespace courier
