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

/// Adds `n` to a counter. With `sole` the caller is its only writer (an
/// actor's own series, written by the actor's handlers one at a time): a
/// relaxed load and store, without the locked instruction of fetch_add.
inline void add(std::atomic<std::uint64_t>& counter, std::uint64_t n,
                bool sole) noexcept {
  if (sole)
    counter.store(counter.load(std::memory_order_relaxed) + n,
                  std::memory_order_relaxed);
  else
    counter.fetch_add(n, std::memory_order_relaxed);
}

/// One message in timing_sample is timed: reading the clock twice costs
/// ~95 ns on this project's VMs, 7 % of an in-process round trip. Handlers
/// are sampled per actor name (its 1st, 9th, 17th... message), requests
/// per requesting thread; counts stay exact.
inline constexpr std::uint64_t timing_sample = 8;

/// Whether the calling thread times the request it sends now.
inline bool sample_request() noexcept {
  thread_local std::uint64_t sent = 0;
  return sent++ % timing_sample == 0;
}

/// A latency histogram of fixed log2 buckets, as atomics.
class log2_histogram {
public:
  /// Records one sample; `sole` as for add().
  void record(std::chrono::nanoseconds elapsed, bool sole = false) noexcept {
    auto ns = elapsed.count() <= 0
                ? std::uint64_t{1}
                : static_cast<std::uint64_t>(elapsed.count());
    // ns <= 2^b exactly when bit_width(ns - 1) <= b.
    auto bits = static_cast<unsigned>(std::bit_width(ns - 1));
    std::size_t i
      = bits <= histogram_first_log2 ? 0 : bits - histogram_first_log2;
    if (i >= histogram_buckets)
      i = histogram_buckets - 1;
    add(buckets_[i], 1, sole);
    add(sum_ns_, ns, sole);
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
  actor_stats(std::string name, bool shared)
    : name(std::move(name)), shared(shared) {}

  const std::string name;
  /// The series of the names past the cap, written by many actors at once;
  /// an actor's own series is written by its handlers alone, one at a time
  /// (but request_rtt, written by the requesters, and restarts).
  const bool shared;

  /// Counts a message about to be handled; true if it is to be timed
  /// (timing_sample).
  bool count_handled() noexcept {
    auto n = handled.load(std::memory_order_relaxed);
    if (shared)
      n = handled.fetch_add(1, std::memory_order_relaxed);
    else
      handled.store(n + 1, std::memory_order_relaxed);
    return n % timing_sample == 0;
  }

  /// Records the time one handler ran.
  void timed(std::chrono::nanoseconds elapsed) noexcept {
    handling.record(elapsed, !shared);
  }

  std::atomic<std::uint64_t> restarts{0};
  /// Messages its handlers ran for.
  std::atomic<std::uint64_t> handled{0};
  /// Letters its actors handed to mailboxes of this node.
  std::atomic<std::uint64_t> sent_local{0};
  log2_histogram handling; // a sample: see timing_sample
  log2_histogram request_rtt;
};

class metrics_registry {
public:
  explicit metrics_registry(bool enabled) : enabled_(enabled) {}

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
    if (sender != nullptr) // on the sending actor's thread
      add(sender->sent_local, 1, !sender->shared);
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
  std::deque<actor_stats> stats_;                            // guarded by mu_
  std::map<std::string, actor_stats*, std::less<>> by_name_; // guarded by mu_
  std::map<std::string, tier_metrics> retired_;              // guarded by mu_
  // The last counts of links gone, by (peer, tier): shown down until a
  // link to the peer on that tier is up again.
  std::map<std::pair<std::string, std::string>, route_metrics> gone_; // mu_
  std::atomic<std::uint64_t> from_threads_{0};
};

} // namespace courier::detail
