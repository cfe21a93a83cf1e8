#pragma once

// Durable delivery for a node (docs/durable.md): the plug-in behind
// post_options::durable. Give the factory to node_config::durable:
//
//   cfg.durable = courier::durable::delivery({.store = {.directory = dir}});
//   node.post("billing", order, {.durable = true,
//                                .time_to_be_received = 10min});
//
// What it does with the node's store (store.hpp):
// - a durable post is appended to the outgoing queue "out:<name>" and
//   acknowledged after the fsync;
// - a forwarder moves each outgoing queue, in order and in batches, to
//   the node that holds the name (over whatever tier the route has, as a
//   courier.v1.DurableTransfer), or to this node's own incoming queue, and
//   removes the messages once the receiving node has them on its disk; a
//   name nobody holds, a route that is down or a receiving node without a
//   store keeps them, tried again with backoff until time_to_reach_queue;
// - a receiving node appends the items to "in:<name>" (a triple it has
//   seen is a duplicate, acknowledged and not stored again) and answers
//   after the fsync;
// - a dispatcher hands each incoming queue's messages, one at a time and
//   in order, to the actor as a request, and removes a message only when
//   the handler has returned (up to dispatch_batch handled messages wait
//   for their removals' fsync together); a handler that fails is tried again with
//   backoff, and after max_attempts the message is a dead letter (poison)
//   and the ones behind it go on.
// The node's actor "courier.durable.<node>" runs the verbs and answers the
// administration requests of `courier queues` and `courier deadletters`.

#include <chrono>
#include <cstddef>

#include "courier/durable/store.hpp"
#include "courier/options.hpp"

namespace courier::durable {

struct delivery_options {
  /// The node's store; `store.directory` is required (one node per
  /// directory). on_dead_letter is the plug-in's own.
  store_options store;
  /// A handler still running after this is taken as failed (and the
  /// message tried again: keep it above the slowest handler).
  std::chrono::milliseconds handler_timeout{30'000};
  /// How long the forwarder waits for the receiving node's acknowledgement
  /// of one transfer before it sends it again.
  std::chrono::milliseconds forward_timeout{5'000};
  /// Backoff after a failed forward or handler, doubled up to retry_max;
  /// retry_max is also how often a queue whose name is away is looked at.
  std::chrono::milliseconds retry_min{20};
  std::chrono::milliseconds retry_max{1'000};
  /// An incoming queue's handler gets up to this many messages in a row
  /// (in order, one at a time) before the dispatcher waits for their
  /// removals to be durable: more is faster (removals share fsyncs), and
  /// is also how many handled messages a crash may hand again.
  std::size_t dispatch_batch = 16;
  /// One transfer holds at most this many messages and bytes.
  std::size_t forward_batch = 256;
  std::size_t forward_batch_bytes = 1u << 20;
};

/// The factory for node_config::durable. node::start fails with the
/// store's error if it cannot open it (data_loss names the file and the
/// offset of a corrupt record; failed_precondition: another node has it).
durable_factory delivery(delivery_options options);

} // namespace courier::durable
