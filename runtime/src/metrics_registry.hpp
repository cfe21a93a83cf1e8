#pragma once

// The node's counters and histograms that no other seam owns: per actor
// name (bounded: max_actor_series names, then one shared series), the
// in-process tier, retired links' totals per tier. Per link counters live
// in link_info (remote.hpp), dead letters and refusals in node_impl.
//
// The hot path touches only relaxed atomics reached through a pointer set
// once (name_slot::stats, link_info): no lookup, no lock per message.
// Histograms are fixed log2 buckets of nanoseconds (courier/metrics.hpp).
//
// Thread safety: every function is thread-safe. stats_for and retire take
// the registry's lock (at spawn and when a link closes); record() and the
// counters are lock-free.

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "courier/metrics.hpp"

namespace courier::detail {

struct link_info;

/// A latency histogram of fixed log2 buckets, as atomics.
class log2_histogram {
public:
  void record(std::chrono::nanoseconds elapsed) noexcept {
    auto ns = elapsed.count() <= 0 ? std::uint64_t{1}
                                   : static_cast<std::uint64_t>(elapsed.count());
    // ns <= 2^b exactly when bit_width(ns - 1) <= b.
    auto bits = static_cast<unsigned>(std::bit_width(ns - 1));
    std::size_t i = bits <= histogram_first_log2 ? 0 : bits - histogram_first_log2;
    if (i >= histogram_buckets)
      i = histogram_buckets - 1;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }

  /// Adds this histogram's counts to `out`.
  void add_to(histogram_snapshot& out) const noexcept;

private:
  std::array<std::atomic<std::uint64_t>, histogram_buckets> buckets_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

/// The clock of every histogram.
using metrics_clock = std::chrono::steady_clock;

/// The counters of one actor name, or of the names past the cap.
struct actor_stats {
  explicit actor_stats(std::string name) : name(std::move(name)) {
  }

  const std::string name;
  std::atomic<std::uint64_t> restarts{0};
  /// Letters its actors handed to mailboxes of this node.
  std::atomic<std::uint64_t> sent_local{0};
  log2_histogram handling; // its count is the messages handled
  log2_histogram request_rtt;
};

class metrics_registry {
public:
  explicit metrics_registry(bool enabled) : enabled_(enabled) {
  }

  bool enabled() const noexcept {
    return enabled_;
  }

  /// The counters of `name`: its own for the first max_actor_series names,
  /// then the shared `other_actors` series; null when metrics are off.
  /// Takes the registry's lock: call it when a name is bound, not per
  /// message.
  actor_stats* stats_for(std::string_view name);

  /// Counts a letter handed to a mailbox here by `sender` (null: a plain
  /// thread).
  void count_local(actor_stats* sender) noexcept {
    if (sender != nullptr)
      sender->sent_local.fetch_add(1, std::memory_order_relaxed);
    else if (enabled_)
      from_threads_.fetch_add(1, std::memory_order_relaxed);
  }

  /// Keeps the totals of a link that closed, for its tier's counters.
  void retire(const link_info& link);

  /// Adds the links gone to `out.routes` (down), but those whose (peer,
  /// tier) is up there again.
  void add_gone_routes(metrics_snapshot& out) const;

  /// The metrics of one live link.
  static route_metrics route_of(const link_info& link);

  /// Adds the per-actor series (handled, restarts, histograms; not the
  /// mailbox depths) and the tier totals of retired links and of the
  /// in-process tier to `out`.
  void add_to(metrics_snapshot& out) const;

  /// The series of `name` in `out.actors` (out.actors sorted by name).
  static actor_metrics* find(metrics_snapshot& out, std::string_view name);

private:
  const bool enabled_;
  mutable std::mutex mu_;
  std::deque<actor_stats> stats_;                     // guarded by mu_
  std::map<std::string, actor_stats*, std::less<>> by_name_; // guarded by mu_
  std::map<std::string, tier_metrics> retired_;       // guarded by mu_
  // The last counts of links gone, by (peer, tier): shown down until a
  // link to the peer on that tier is up again.
  std::map<std::pair<std::string, std::string>, route_metrics> gone_; // mu_
  std::atomic<std::uint64_t> from_threads_{0};
};

} // namespace courier::detail
