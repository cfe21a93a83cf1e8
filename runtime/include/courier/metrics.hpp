#pragma once

// What a node counts and times, as a snapshot (node::metrics()), and its
// Prometheus text exposition. docs/operations.md lists every metric.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "courier/notices.hpp"

namespace courier {

/// Buckets of a latency histogram: bucket i counts durations of at most
/// 2^(i + histogram_first_log2) ns (1.024 µs, 2.048 µs, ... 8.6 s); the
/// last one counts the rest (+Inf).
inline constexpr std::size_t histogram_buckets = 25;
inline constexpr unsigned histogram_first_log2 = 10;

/// Actors with a series of their own, by name; the names after these share
/// the series of actor `other_actors`.
inline constexpr std::size_t max_actor_series = 256;
inline constexpr const char* other_actors = "other";

/// A latency histogram, not cumulative: `buckets[i]` counts the samples of
/// bucket i alone.
struct histogram_snapshot {
  std::array<std::uint64_t, histogram_buckets> buckets{};
  std::uint64_t count = 0;
  std::uint64_t sum_ns = 0;

  /// The upper bound of bucket i in seconds (infinity for the last).
  static double upper_bound(std::size_t i) noexcept;
};

/// One actor name (or `other_actors`) on this node.
struct actor_metrics {
  std::string name;
  /// Messages its handlers ran for (posts and requests), all incarnations.
  std::uint64_t handled = 0;
  /// Restarts by its supervisor.
  std::uint64_t restarts = 0;
  /// Posts waiting in its mailbox now (all its live incarnations).
  std::uint64_t mailbox_depth = 0;
  /// How long its handlers ran.
  histogram_snapshot handling;
  /// Round trips of requests to it from this node, request to answer.
  histogram_snapshot request_rtt;
};

/// One link to another node.
struct route_metrics {
  std::string peer;
  std::string tier;
  bool up = false;
  std::uint64_t messages_out = 0; ///< posts and requests written
  std::uint64_t messages_in = 0;  ///< envelopes read
  std::uint64_t bytes_out = 0;
  std::uint64_t bytes_in = 0;
  /// Bytes posted to the peer and not yet written to the link.
  std::uint64_t queued_bytes = 0;
  /// Round trips of requests over this link, written to answered.
  histogram_snapshot request_rtt;
};

/// Totals of one tier, over its links alive and gone. The in-process tier
/// counts letters between actors and threads of this node.
struct tier_metrics {
  std::string tier;
  std::uint64_t messages_out = 0;
  std::uint64_t messages_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t bytes_in = 0;
};

/// Refusals by the rules (docs/security.md), per verb.
struct refusal_metrics {
  std::string verb;
  std::string reason;
  std::uint64_t count = 0;
};

/// One durable queue of the node's store (docs/durable.md): "out:NAME"
/// waits to reach NAME's node, "in:NAME" for NAME's handler.
struct durable_queue_metrics {
  std::string queue;
  std::uint64_t depth = 0; ///< waiting or being handled
  std::uint64_t in_flight = 0;
  std::uint64_t bytes = 0;
  /// Since the oldest message was stored (wall clock); 0 when empty.
  double oldest_age_seconds = 0;
};

/// Everything a node counts, at one moment. Counters only grow while the
/// node lives; gauges (depths, link state) are as of the snapshot.
struct metrics_snapshot {
  std::string node;
  /// node_config::metrics: false leaves the per-actor counts and every
  /// histogram empty.
  bool enabled = false;
  std::vector<tier_metrics> tiers;   ///< sorted by tier
  std::vector<route_metrics> routes; ///< sorted by peer, then tier
  std::vector<actor_metrics> actors; ///< sorted by name
  std::array<std::uint64_t, dead_letter_reason_count> dead_letters{};
  std::vector<refusal_metrics> refusals; ///< sorted by verb
  /// With durable delivery (node_config::durable): the deepest queues (at
  /// most 100), sorted by name, and the dead letters kept in the store.
  std::vector<durable_queue_metrics> durable_queues;
  std::uint64_t durable_dead_letters = 0;
};

/// The snapshot in Prometheus text exposition format, version 0.0.4.
std::string to_prometheus(const metrics_snapshot& snapshot);

} // namespace courier
