#include "metrics_registry.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "remote.hpp"

namespace courier {

double histogram_snapshot::upper_bound(std::size_t i) noexcept {
  if (i + 1 >= histogram_buckets)
    return std::numeric_limits<double>::infinity();
  return std::ldexp(1.0, static_cast<int>(i + histogram_first_log2)) * 1e-9;
}

} // namespace courier

namespace courier::detail {

void log2_histogram::add_to(histogram_snapshot& out) const noexcept {
  for (std::size_t i = 0; i < histogram_buckets; ++i) {
    auto n = buckets_[i].load(std::memory_order_relaxed);
    out.buckets[i] += n;
    out.count += n;
  }
  out.sum_ns += sum_ns_.load(std::memory_order_relaxed);
}

actor_stats* metrics_registry::stats_for(std::string_view name) {
  if (!enabled_)
    return nullptr;
  std::lock_guard guard{mu_};
  if (auto i = by_name_.find(name); i != by_name_.end())
    return i->second;
  // The shared series is made first: it exists whatever the names.
  if (by_name_.empty()) {
    auto& other = stats_.emplace_back(other_actors, true);
    by_name_.emplace(other.name, &other);
  }
  if (by_name_.size() > max_actor_series)
    return by_name_.find(std::string_view{other_actors})->second;
  auto& stats = stats_.emplace_back(std::string{name}, false);
  by_name_.emplace(stats.name, &stats);
  return &stats;
}

route_metrics metrics_registry::route_of(const link_info& link) {
  route_metrics r;
  r.peer = link.peer;
  r.tier = link.tier;
  r.up = link.open.load(std::memory_order_relaxed);
  r.messages_out = link.messages_out.load(std::memory_order_relaxed);
  r.messages_in = link.messages_in.load(std::memory_order_relaxed);
  r.bytes_out = link.bytes_out.load(std::memory_order_relaxed);
  r.bytes_in = link.bytes_in.load(std::memory_order_relaxed);
  r.queued_bytes = link.backlog->bytes.load(std::memory_order_relaxed);
  link.request_rtt.add_to(r.request_rtt);
  return r;
}

void metrics_registry::add_gone_routes(metrics_snapshot& out) const {
  std::lock_guard guard{mu_};
  for (const auto& [key, route] : gone_) {
    bool back = std::any_of(
      out.routes.begin(), out.routes.end(), [&](const route_metrics& r) {
        return r.up && r.peer == key.first && r.tier == key.second;
      });
    if (!back)
      out.routes.push_back(route);
  }
}

void metrics_registry::retire(const link_info& link) {
  auto last = route_of(link);
  last.up = false;
  last.queued_bytes = 0;
  std::lock_guard guard{mu_};
  gone_[{link.peer, link.tier}] = std::move(last);
  auto& tier = retired_[link.tier];
  tier.tier = link.tier;
  tier.messages_out += link.messages_out.load(std::memory_order_relaxed);
  tier.messages_in += link.messages_in.load(std::memory_order_relaxed);
  tier.bytes_out += link.bytes_out.load(std::memory_order_relaxed);
  tier.bytes_in += link.bytes_in.load(std::memory_order_relaxed);
}

actor_metrics* metrics_registry::find(metrics_snapshot& out,
                                      std::string_view name) {
  auto i = std::lower_bound(
    out.actors.begin(), out.actors.end(), name,
    [](const actor_metrics& x, std::string_view y) { return x.name < y; });
  return i != out.actors.end() && i->name == name ? &*i : nullptr;
}

void metrics_registry::add_to(metrics_snapshot& out) const {
  std::uint64_t local = from_threads_.load(std::memory_order_relaxed);
  std::lock_guard guard{mu_};
  for (const auto& [name, stats] : by_name_) { // sorted by name
    actor_metrics a;
    a.name = name;
    a.restarts = stats->restarts.load(std::memory_order_relaxed);
    stats->handling.add_to(a.handling);
    stats->request_rtt.add_to(a.request_rtt);
    a.handled = stats->handled.load(std::memory_order_relaxed);
    local += stats->sent_local.load(std::memory_order_relaxed);
    out.actors.push_back(std::move(a));
  }
  auto tier_of = [&out](const std::string& name) -> tier_metrics& {
    for (auto& t : out.tiers)
      if (t.tier == name)
        return t;
    out.tiers.push_back({name, 0, 0, 0, 0});
    return out.tiers.back();
  };
  for (const auto& [name, totals] : retired_) {
    auto& t = tier_of(name);
    t.messages_out += totals.messages_out;
    t.messages_in += totals.messages_in;
    t.bytes_out += totals.bytes_out;
    t.bytes_in += totals.bytes_in;
  }
  auto& inproc = tier_of("in-process");
  inproc.messages_out += local;
  inproc.messages_in += local;
}

} // namespace courier::detail
